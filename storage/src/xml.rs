//! The little XML S3 speaks to us: flat documents whose elements we need never nest inside an
//! element of the same name, so a scanner for `<tag>…</tag>` spans is enough and avoids a
//! general XML dependency.

/// Inner text of each top-most `<tag>` element inside `xml`, in document order. Self-closing
/// `<tag/>` gives an empty string.
pub(crate) fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut pos = 0;
    while let Some(i) = xml[pos..].find(&open) {
        let start = pos + i + open.len();
        // `<Key` must not match `<KeyCount>`: the name has to end here.
        let Some(next) = xml[start..].chars().next() else {
            break;
        };
        if !(next == '>' || next == '/' || next.is_ascii_whitespace()) {
            pos = start;
            continue;
        }
        let Some(gt) = xml[start..].find('>') else {
            break;
        };
        let head_end = start + gt;
        if xml[..head_end].ends_with('/') {
            out.push("");
            pos = head_end + 1;
            continue;
        }
        let body_start = head_end + 1;
        let Some(end) = xml[body_start..].find(&close) else {
            break;
        };
        out.push(&xml[body_start..body_start + end]);
        pos = body_start + end + close.len();
    }
    out
}

/// Unescaped text of the first `<tag>` element.
pub(crate) fn text(xml: &str, tag: &str) -> Option<String> {
    elements(xml, tag).first().map(|s| unescape(s))
}

/// Resolves the five predefined entities, numeric character references and CDATA sections.
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('&') && !s.contains("<![CDATA[") {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").unwrap_or(after.len());
            out.push_str(&after[..end]);
            rest = after.get(end + 3..).unwrap_or("");
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        if c == '&' {
            if let Some(semi) = rest.find(';') {
                let ent = &rest[1..semi];
                let decoded = match ent {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    _ => ent
                        .strip_prefix("#x")
                        .or_else(|| ent.strip_prefix("#X"))
                        .map(|h| u32::from_str_radix(h, 16))
                        .or_else(|| ent.strip_prefix('#').map(|d| d.parse::<u32>()))
                        .and_then(|r| r.ok())
                        .and_then(char::from_u32),
                };
                if let Some(d) = decoded {
                    out.push(d);
                    rest = &rest[semi + 1..];
                    continue;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Escapes text for an element body. Control characters that XML 1.0 cannot carry as literal
/// text are written as character references, which S3 accepts in keys.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 => out.push_str(&format!("&#x{:X};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// One object of a ListObjectsV2 page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedObject {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<std::time::SystemTime>,
}

/// One ListObjectsV2 page.
#[derive(Debug, Default)]
pub(crate) struct ListPage {
    pub objects: Vec<ListedObject>,
    pub next_token: Option<String>,
}

pub(crate) fn parse_list_v2(xml: &str) -> Result<ListPage, String> {
    if elements(xml, "ListBucketResult").is_empty() {
        return Err("response is not a ListBucketResult".to_owned());
    }
    let mut page = ListPage::default();
    for c in elements(xml, "Contents") {
        let key = text(c, "Key").ok_or("listed object without Key")?;
        let size = match text(c, "Size") {
            Some(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("bad Size for {key}"))?,
            None => 0,
        };
        // A time we cannot read must not become 1970, which every `-timestamp` restore would
        // then take for an old file.
        let last_modified = match text(c, "LastModified") {
            Some(t) => Some(
                crate::timefmt::parse_rfc3339(t.trim())
                    .ok_or_else(|| format!("unreadable LastModified {t:?} of {key}"))?,
            ),
            None => None,
        };
        page.objects.push(ListedObject {
            key,
            size,
            last_modified,
        });
    }
    let truncated = text(xml, "IsTruncated").is_some_and(|t| t.trim() == "true");
    if truncated {
        page.next_token = text(xml, "NextContinuationToken").filter(|t| !t.is_empty());
        if page.next_token.is_none() {
            return Err("truncated listing without NextContinuationToken".to_owned());
        }
    }
    Ok(page)
}

/// The parts of an S3 `<Error>` document we report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ErrorDoc {
    pub code: String,
    pub message: String,
    /// The region a redirect or AuthorizationHeaderMalformed error asks for.
    pub region: Option<String>,
}

pub(crate) fn parse_error(xml: &str) -> Option<ErrorDoc> {
    let body = elements(xml, "Error").into_iter().next()?;
    Some(ErrorDoc {
        code: text(body, "Code").unwrap_or_default(),
        message: text(body, "Message").unwrap_or_default(),
        region: text(body, "Region"),
    })
}

/// Failed keys of a DeleteObjects result, with their codes and messages.
pub(crate) fn parse_delete_errors(xml: &str) -> Vec<(String, String, String)> {
    elements(xml, "Error")
        .into_iter()
        .map(|e| {
            (
                text(e, "Key").unwrap_or_default(),
                text(e, "Code").unwrap_or_default(),
                text(e, "Message").unwrap_or_default(),
            )
        })
        .collect()
}

pub(crate) fn delete_request(keys: &[String], quiet: bool) -> String {
    let mut s = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    s.push_str(r#"<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#);
    for k in keys {
        s.push_str("<Object><Key>");
        s.push_str(&escape(k));
        s.push_str("</Key></Object>");
    }
    if quiet {
        s.push_str("<Quiet>true</Quiet>");
    }
    s.push_str("</Delete>");
    s
}

pub(crate) fn complete_multipart_request(etags: &[String]) -> String {
    let mut s = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    s.push_str(r#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#);
    for (i, etag) in etags.iter().enumerate() {
        s.push_str(&format!(
            "<Part><ETag>{}</ETag><PartNumber>{}</PartNumber></Part>",
            escape(etag),
            i + 1
        ));
    }
    s.push_str("</CompleteMultipartUpload>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_page() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/0000/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>p/0000/0000000000000001-0000000000000001.ltx</Key><LastModified>2024-05-01T12:00:01.500Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>575</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>p/0000/a&amp;b</Key><Size>0</Size><Owner><ID>x</ID></Owner></Contents>
<NextContinuationToken>tok/+=</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list_v2(xml).expect("parse");
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].size, 575);
        assert_eq!(page.objects[1].key, "p/0000/a&b");
        assert!(page.objects[0].last_modified.is_some());
        assert_eq!(page.next_token.as_deref(), Some("tok/+="));
        assert!(parse_list_v2("<Error/>").is_err());
        let bad = parse_list_v2(
            "<ListBucketResult><Contents><Key>p/k</Key><LastModified>soon</LastModified></Contents></ListBucketResult>",
        )
        .expect_err("unreadable time");
        assert!(bad.contains("p/k") && bad.contains("soon"), "{bad}");
    }

    #[test]
    fn error_doc() {
        let e = parse_error(
            "<?xml?><Error><Code>NoSuchBucket</Code><Message>The bucket does not exist</Message><BucketName>b</BucketName></Error>",
        )
        .expect("error");
        assert_eq!(e.code, "NoSuchBucket");
        assert_eq!(e.message, "The bucket does not exist");
        assert_eq!(parse_error("<Other/>"), None);
    }

    #[test]
    fn escaping_round_trip() {
        let k = "a<b>&\"c'\u{1}é";
        assert_eq!(unescape(&escape(k)), k);
        assert_eq!(unescape("<![CDATA[x<y]]>&#65;&#x42;"), "x<yAB");
        let d = delete_request(&["a&b".into()], true);
        assert!(d.contains("<Key>a&amp;b</Key>") && d.contains("<Quiet>true</Quiet>"));
        let errs = parse_delete_errors(
            "<DeleteResult><Deleted><Key>x</Key></Deleted><Error><Key>y</Key><Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>",
        );
        assert_eq!(errs, vec![("y".into(), "AccessDenied".into(), "no".into())]);
    }

    #[test]
    fn tag_names_must_match_whole() {
        assert_eq!(
            elements("<KeyCount>3</KeyCount><Key>k</Key>", "Key"),
            vec!["k"]
        );
    }
}

//! The PROPFIND answer (RFC 4918 `multistatus`): one `response` per member with its `href`
//! and the properties we ask for. Servers choose their own namespace prefixes (`D:`, `d:`,
//! `lp1:`, none), so elements are matched by local name.

use std::time::SystemTime;

use crate::xml::unescape;

/// One member of a listed collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The `href` as sent: percent-encoded, an absolute path or a full URL.
    pub href: String,
    pub collection: bool,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// The inner text of every top-most element named `local` (any prefix) in `xml`.
fn elements<'a>(xml: &'a str, local: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(i) = xml[pos..].find('<') {
        let name_start = pos + i + 1;
        let rest = &xml[name_start..];
        let name_len = rest
            .find(|c: char| c == '>' || c == '/' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let qname = &rest[..name_len];
        let is_match = !qname.is_empty()
            && !qname.starts_with(['/', '?', '!'])
            && qname.rsplit(':').next() == Some(local);
        let Some(gt) = rest.find('>') else { break };
        let after_head = name_start + gt + 1;
        if !is_match {
            pos = name_start;
            continue;
        }
        if rest[..gt].ends_with('/') {
            out.push("");
            pos = after_head;
            continue;
        }
        let close = format!("</{qname}");
        let Some(len) = xml[after_head..].find(&close) else {
            break;
        };
        out.push(&xml[after_head..after_head + len]);
        pos = after_head + len + close.len();
    }
    out
}

fn first_text(xml: &str, local: &str) -> Option<String> {
    elements(xml, local)
        .first()
        .map(|s| unescape(s).trim().to_owned())
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An RFC 1123 date (`Thu, 26 Nov 2026 12:59:41 GMT`), what `getlastmodified` carries.
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let mut it = s.split_whitespace();
    let _weekday = it.next()?;
    let day: u32 = it.next()?.parse().ok()?;
    let month = it.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    let year: u32 = it.next()?.parse().ok()?;
    let time = it.next()?;
    if !matches!(it.next(), Some("GMT" | "UTC" | "+0000")) {
        return None;
    }
    crate::timefmt::parse_rfc3339(&format!("{year:04}-{month:02}-{day:02}T{time}Z"))
}

/// Parses a `multistatus` document. Properties count only from a `propstat` whose status is
/// 200 (or that has none).
pub(crate) fn parse(xml: &str) -> Result<Vec<Entry>, String> {
    if elements(xml, "multistatus").is_empty() {
        return Err("the answer is not a DAV multistatus document".to_owned());
    }
    let mut out = Vec::new();
    for resp in elements(xml, "response") {
        let href = first_text(resp, "href").ok_or("a response without href")?;
        let mut e = Entry {
            href,
            collection: false,
            size: 0,
            modified: None,
        };
        for ps in elements(resp, "propstat") {
            if first_text(ps, "status").is_some_and(|st| !st.contains(" 200")) {
                continue;
            }
            for prop in elements(ps, "prop") {
                if let Some(rt) = elements(prop, "resourcetype").first() {
                    e.collection |= !elements(rt, "collection").is_empty();
                }
                if let Some(n) = first_text(prop, "getcontentlength") {
                    e.size = n
                        .parse()
                        .map_err(|_| format!("bad getcontentlength {n:?} for {}", e.href))?;
                }
                if let Some(d) = first_text(prop, "getlastmodified") {
                    e.modified = parse_http_date(&d);
                }
            }
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rclone_answer() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>/db/ltx/0/</D:href><D:propstat><D:prop><D:getlastmodified>Thu, 26 Nov 2026 12:59:40 GMT</D:getlastmodified><D:resourcetype><D:collection xmlns:D="DAV:"/></D:resourcetype><D:displayname>0</D:displayname></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response><D:response><D:href>/db/ltx/0/0000000000000001-0000000000000001.ltx</D:href><D:propstat><D:prop><D:getlastmodified>Thu, 26 Nov 2026 12:59:41 GMT</D:getlastmodified><D:getetag>"18eb99ccba63548ab"</D:getetag><D:resourcetype></D:resourcetype><D:getcontentlength>11</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#;
        let v = parse(xml).expect("parse");
        assert_eq!(v.len(), 2);
        assert!(v[0].collection && !v[1].collection);
        assert_eq!(v[1].size, 11);
        assert_eq!(
            v[1].modified,
            Some(UNIX_EPOCH + Duration::from_secs(1_795_697_981))
        );
    }

    #[test]
    fn other_prefixes_and_failed_propstats() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<multistatus xmlns="DAV:" xmlns:lp1="DAV:"><response><href>http://h:8/a%20b/x&amp;y.ltx</href>
<propstat><prop><lp1:getcontentlength>42</lp1:getcontentlength><resourcetype/></prop><status>HTTP/1.1 200 OK</status></propstat>
<propstat><prop><getlastmodified/></prop><status>HTTP/1.1 404 Not Found</status></propstat></response>
<d:response xmlns:d="DAV:"><d:href>/c/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop></d:propstat></d:response></multistatus>"#;
        let v = parse(xml).expect("parse");
        assert_eq!(v[0].href, "http://h:8/a%20b/x&y.ltx");
        assert_eq!(
            (v[0].size, v[0].collection, v[0].modified),
            (42, false, None)
        );
        assert!(v[1].collection);
        assert!(parse("<html>nope</html>").is_err());
        assert!(parse("<multistatus><response><propstat/></response></multistatus>").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:01 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(1))
        );
        assert_eq!(parse_http_date("Thu, 01 Foo 1970 00:00:01 GMT"), None);
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:01 PST"), None);
    }
}

//! How Azure requests prove who they are: a SAS token appended to the query, or a Shared Key
//! signature (HMAC-SHA256 over the canonicalized headers and resource, Blob service version
//! 2015-02-21 and later); and the HTTP date form `x-ms-date` and listings use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::Method;
use sha2::Sha256;

/// How requests prove who they are, in Litestream's order: SAS token, then Shared Key.
#[derive(Clone)]
pub(crate) enum Auth {
    Sas(crate::Secret),
    SharedKey {
        account: String,
        key: Vec<u8>,
    },
    /// A Microsoft Entra ID token of the process's identity (`identity`), when neither a key
    /// nor a SAS token is configured.
    Bearer,
    /// Why no request can be made (reported by every operation, as Litestream's `Init` is).
    Missing(String),
}

/// What a Shared Key signature covers of a request.
pub(crate) struct Signed<'a> {
    pub method: &'a Method,
    pub content_length: u64,
    /// The encoded request path (no query).
    pub path: &'a str,
    pub query: &'a [(&'static str, String)],
    /// Every header sent, lower-case names.
    pub headers: &'a [(String, String)],
}

/// The `Authorization` value of a Shared Key request.
pub(crate) fn shared_key(account: &str, key: &[u8], req: &Signed<'_>) -> Result<String, String> {
    let std_header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let mut sts = format!("{}\n", req.method.as_str());
    sts.push_str(&format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        std_header("content-encoding"),
        std_header("content-language"),
        if req.content_length == 0 {
            String::new()
        } else {
            req.content_length.to_string()
        },
        std_header("content-md5"),
        std_header("content-type"),
        "",
        std_header("if-modified-since"),
        std_header("if-match"),
        std_header("if-none-match"),
        std_header("if-unmodified-since"),
        std_header("range"),
    ));
    let mut ms: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| (k.as_str(), v.trim()))
        .collect();
    ms.sort();
    for (k, v) in ms {
        sts.push_str(&format!("{k}:{v}\n"));
    }
    sts.push_str(&format!("/{account}{}", req.path));
    let mut q: Vec<(String, &str)> = req
        .query
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    q.sort();
    for (k, v) in q {
        sts.push_str(&format!("\n{k}:{v}"));
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).map_err(|e| format!("abs: account key: {e}"))?;
    mac.update(sts.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(format!("SharedKey {account}:{sig}"))
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Sun, 06 Nov 1994 08:49:37 GMT` (the `x-ms-date` form), from the RFC 3339 text of `t`.
pub(crate) fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let iso = crate::timefmt::format_rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
    // 2006-01-02T15:04:05Z
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1);
    format!(
        "{}, {} {} {} {} GMT",
        WEEKDAYS[((secs / 86_400) % 7) as usize],
        iso.get(8..10).unwrap_or("01"),
        MONTHS[(month - 1) % 12],
        iso.get(0..4).unwrap_or("1970"),
        iso.get(11..19).unwrap_or("00:00:00"),
    )
}

/// Parses the `Sun, 06 Nov 1994 08:49:37 GMT` form (listing's `Creation-Time`).
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let mut it = s.split_whitespace().skip(1);
    let (day, mon, year, time) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let month = MONTHS.iter().position(|m| *m == mon)? + 1;
    let day: u32 = day.parse().ok()?;
    crate::timefmt::parse_rfc3339(&format!("{year}-{month:02}-{day:02}T{time}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        let now = UNIX_EPOCH + Duration::from_secs(1_795_665_906);
        assert_eq!(parse_http_date(&http_date(now)), Some(now));
    }

    /// A signature checked against one computed independently (python's hmac) over the
    /// string to sign that the Shared Key documentation lays out.
    #[test]
    fn shared_key_string_to_sign() {
        let key = base64::engine::general_purpose::STANDARD
            .decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
            .expect("key");
        let query = [
            ("restype", "container".to_owned()),
            ("comp", "list".to_owned()),
            ("prefix", "db/ltx/0/".to_owned()),
        ];
        let headers = vec![
            (
                "x-ms-date".to_owned(),
                "Sun, 06 Nov 1994 08:49:37 GMT".to_owned(),
            ),
            ("x-ms-version".to_owned(), "2021-12-02".to_owned()),
        ];
        let signed = Signed {
            method: &Method::GET,
            content_length: 0,
            path: "/devstoreaccount1/cont",
            query: &query,
            headers: &headers,
        };
        let auth = shared_key("devstoreaccount1", &key, &signed).expect("sign");
        // python3: base64(hmac_sha256(key, 'GET\n' + '\n' * 11 + 'x-ms-date:...\nx-ms-version:...\n/devstoreaccount1/devstoreaccount1/cont\ncomp:list\nprefix:db/ltx/0/\nrestype:container'))
        assert_eq!(
            auth,
            "SharedKey devstoreaccount1:40cvkUqqrb7pN04efmkf3vafgbmsGTrNIUi3TzKd/yE="
        );
    }
}

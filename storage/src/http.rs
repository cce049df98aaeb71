//! One plain HTTP(S) GET, for callers outside the backends (the engine's heartbeats). It goes
//! through the shared transport: HTTP/1.1 over TCP, or TLS via rustls with the
//! webpki roots (plus `AWS_CA_BUNDLE`).

use std::time::Duration;

use http_body_util::BodyExt;

use crate::transport::pool::parse_http_url;
use crate::transport::ReqBody;
use crate::transport::{HttpPool as Pool, Trust};

/// Sends `GET url` and reads the response; the status code on an answer, an error naming the
/// URL if it could not be sent or no answer came within `timeout`.
pub async fn http_get(url: &str, timeout: Duration) -> Result<u16, String> {
    let (target, path) =
        parse_http_url(url).ok_or_else(|| format!("{url}: not an http:// or https:// URL"))?;
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let trust = if target.https {
        Trust::Roots(None)
    } else {
        Trust::PlainOnly
    };
    let pool = Pool::shared(trust)?;
    let req = http::Request::get(path)
        .header(http::header::HOST, target.authority())
        .header(http::header::USER_AGENT, "ls-engine")
        .body(ReqBody::Empty)
        .map_err(|e| format!("{url}: {e}"))?;
    let attempt = async {
        let mut conn = pool
            .checkout(&target)
            .await
            .map_err(|e| format!("GET {url}: connect: {e}"))?;
        let resp = conn
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status().as_u16();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| format!("GET {url}: reading the response: {e}"))?;
        pool.checkin(conn);
        Ok(status)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("GET {url}: no response within {timeout:?}"))?
}

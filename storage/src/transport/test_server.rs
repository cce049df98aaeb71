//! A loopback HTTP/1.1 server for unit tests: answers each request (one per connection) with
//! what a closure returns for the request text, and records the requests.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) type Seen = Arc<Mutex<Vec<String>>>;

/// Serves up to `n` requests; returns the base URL and the requests seen.
pub(crate) async fn serve(
    n: usize,
    answer: impl Fn(&str) -> (u16, String) + Send + Sync + 'static,
) -> (String, Seen) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        for _ in 0..n {
            let Ok((mut sock, _)) = l.accept().await else {
                break;
            };
            let mut buf = vec![0u8; 16 * 1024];
            let mut len = 0;
            // Read the head, then as much body as its content-length says.
            while len < buf.len() {
                let Ok(k) = sock.read(&mut buf[len..]).await else {
                    break;
                };
                if k == 0 {
                    break;
                }
                len += k;
                if let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let body: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if len >= end + 4 + body {
                        break;
                    }
                }
            }
            let req = String::from_utf8_lossy(&buf[..len]).to_string();
            let (status, body) = answer(&req);
            if let Ok(mut v) = s.lock() {
                v.push(req);
            }
            // "HDRS:<lines>\n\n" before a body adds those header lines to the answer.
            let (extra, body) = match body.strip_prefix("HDRS:") {
                Some(rest) => {
                    let (h, b) = rest.split_once("\n\n").unwrap_or((rest, ""));
                    (format!("{}\r\n", h.replace('\n', "\r\n")), b.to_owned())
                }
                None => (String::new(), body),
            };
            let resp = format!(
                "HTTP/1.1 {status} X\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), seen)
}

//! The HTTP server on `addr` (docs/config-and-cli.md#metrics): `GET /metrics` in the Prometheus
//! text format. Litestream also serves Go's `/debug/pprof/` there, which has no equivalent here;
//! every other path is a 404, as it is there.
//!
//! An idle server is one task parked in `accept`: no timers, no polling. A connection's only
//! timer is hyper's header-read timeout, armed while that connection waits for a request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// The most a request line and headers may take (hyper answers 431 beyond it).
pub const MAX_HEAD: usize = 64 << 10;
/// `/metrics` takes no body; one larger than this is refused (413) unread.
const MAX_METRICS_BODY: usize = 64 << 10;

/// A problem with a listen-address key (`addr`, `mcp-addr`): its form, or binding it.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// The address does not parse as `host:port` or `[ipv6]:port`.
    #[error("config key {key}: {addr:?}: {msg}")]
    Invalid {
        /// The config key (`addr` or `mcp-addr`).
        key: &'static str,
        /// The address as configured.
        addr: String,
        /// What is wrong with it.
        msg: &'static str,
    },
    /// Listening on the address failed.
    #[error("config key {key}: cannot listen on {addr:?}: {source}")]
    Bind {
        /// The config key (`addr` or `mcp-addr`).
        key: &'static str,
        /// The address as configured.
        addr: String,
        /// The error from binding it.
        #[source]
        source: std::io::Error,
    },
}

pub use ls_config::parse_addr;

/// What an address without a host (`:9090`) listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoHost {
    /// Every interface, IPv6 and IPv4, as Go does (`addr`, Litestream's meaning).
    Everywhere,
    /// 127.0.0.1 only (`mcp-addr`: every interface must be asked for by name).
    Loopback,
}

/// Binds the listen address `addr` of config key `key`. An empty host means `no_host`;
/// every interface is IPv6 and IPv4 as Go does, falling back to IPv4 alone where IPv6 is
/// unavailable.
pub async fn bind_key(
    key: &'static str,
    addr: &str,
    no_host: NoHost,
) -> Result<TcpListener, AddrError> {
    let (host, port) = parse_addr(addr).map_err(|msg| AddrError::Invalid {
        key,
        addr: addr.to_owned(),
        msg,
    })?;
    let res = if host.is_empty() && no_host == NoHost::Loopback {
        TcpListener::bind(("127.0.0.1", port)).await
    } else if host.is_empty() {
        match TcpListener::bind(("::", port)).await {
            Err(e)
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                TcpListener::bind(("0.0.0.0", port)).await
            }
            r => r,
        }
    } else {
        TcpListener::bind((host.as_str(), port)).await
    };
    res.map_err(|source| AddrError::Bind {
        key,
        addr: addr.to_owned(),
        source,
    })
}

/// A bound metrics listener; [`MetricsServer::serve`] answers on it.
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Binds `addr` (the `addr` key).
    pub async fn bind(addr: &str) -> Result<MetricsServer, AddrError> {
        let listener = bind_key("addr", addr, NoHost::Everywhere).await?;
        Ok(MetricsServer { listener })
    }

    /// The address the listener is bound to (with the actual port when `addr` asked for 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the runtime stops.
    pub async fn serve(self) {
        serve_with(self.listener, "metrics", handle).await
    }
}

/// Answers each connection on `listener` with `handler`, until the runtime stops. `what`
/// names the server in logs.
pub async fn serve_with<F, Fut, B>(listener: TcpListener, what: &'static str, handler: F)
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, usually: back off instead of spinning on it.
                warn!(error = %e, "{what} server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handler));
            if let Err(e) = conn.await {
                debug!(error = %e, "{what} connection ended");
            }
        });
    }
}

async fn handle(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    let is_metrics = req.uri().path() == "/metrics";
    // Read (and dropped) within a bound, so no request can make the server hold much.
    if let Err(e) = Limited::new(req.into_body(), MAX_METRICS_BODY)
        .collect()
        .await
    {
        if e.is::<LengthLimitError>() {
            *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            *resp.body_mut() = Full::new(Bytes::from_static(b"request body too large\n"));
            return Ok(resp);
        }
    }
    if !is_metrics {
        *resp.status_mut() = StatusCode::NOT_FOUND;
        *resp.body_mut() = Full::new(Bytes::from_static(b"404 page not found\n"));
    } else {
        // Any method, as Litestream's handler answers (hyper drops the body for HEAD).
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        *resp.body_mut() = Full::new(Bytes::from(crate::metrics::render()));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_forms() {
        assert_eq!(parse_addr(":9090"), Ok((String::new(), 9090)));
        assert_eq!(parse_addr("127.0.0.1:9090"), Ok(("127.0.0.1".into(), 9090)));
        assert_eq!(parse_addr("localhost:0"), Ok(("localhost".into(), 0)));
        assert_eq!(parse_addr("[::1]:9090"), Ok(("::1".into(), 9090)));
        for bad in [
            "9090", "host:", ":", "::1:9090", "[::1]", "h:http", ":70000", "",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }
}

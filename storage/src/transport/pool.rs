//! HTTP/1.1 connections with a small keep-alive pool. HTTP/1.1 on purpose: an idle HTTP/1.1
//! connection costs nothing, while HTTP/2 PINGs were where Litestream's idle CPU went. Idle
//! connections are only checked when taken out of the pool, so an idle replica runs no timers.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::body::ReqBody;

/// Servers close idle keep-alive connections after a while (S3: ~20 s of idleness is common
/// for some gateways); reusing one older than this risks a reset mid-request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_IDLE_PER_HOST: usize = 16;
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection given back may take to finish its last response before it is
/// dropped instead of kept.
const READY_WAIT: Duration = Duration::from_secs(1);

/// Where to connect.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub https: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Target {
    /// The Host header value: the port only when it is not the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Splits `http[s]://host[:port][/path]` into a target and the path as written.
pub(crate) fn parse_http_url(url: &str) -> Option<(Target, String)> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return None;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let default = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, tail) = v6.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => default,
            None => return None,
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (authority.to_owned(), default),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((Target { https, host, port }, path.to_owned()))
}

/// A connection taken from the pool; give it back with [`HttpPool::checkin`] once its response
/// body has been read to the end, or drop it to close it.
pub(crate) struct Conn {
    pub sender: SendRequest<ReqBody>,
    target: Target,
}

struct Idle {
    sender: SendRequest<ReqBody>,
    since: Instant,
}

type IdleMap = Arc<Mutex<HashMap<Target, Vec<Idle>>>>;

pub(crate) struct HttpPool {
    tls: Option<TlsConnector>,
    /// Only connections ready for their next request: one given back before its connection
    /// task has seen the end of the last response joins once it has.
    idle: IdleMap,
}

impl std::fmt::Debug for HttpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPool")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// What a pool's TLS connections trust; pools are shared per value ([`HttpPool::shared`]), so a
/// connection made without verification is never handed to a replica that verifies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Trust {
    /// Plain HTTP only: no TLS settings are built (a broken CA bundle cannot stop it).
    PlainOnly,
    /// The built-in roots, `AWS_CA_BUNDLE` and this CA file, if any.
    Roots(Option<PathBuf>),
    /// Any certificate (`skip-verify`).
    SkipVerify,
}

impl HttpPool {
    /// The process's pool for `trust`, made on first use. Every replica with the same trust
    /// shares its idle connections (kept per host, at most [`MAX_IDLE_PER_HOST`]), so a
    /// thousand databases on one endpoint hold a few connections, not one or more each
    /// (docs/many-databases.md). Requests are signed one by one, never per connection, so
    /// replicas with different credentials can share. The pool lives while a replica holds it.
    pub fn shared(trust: Trust) -> Result<Arc<HttpPool>, String> {
        type Pools = Mutex<HashMap<(Trust, Option<std::ffi::OsString>), Weak<HttpPool>>>;
        static POOLS: OnceLock<Pools> = OnceLock::new();
        // The bundle is part of the key: the trust a pool was built with is the one it keeps.
        let bundle = match trust {
            Trust::Roots(_) => std::env::var_os("AWS_CA_BUNDLE").filter(|v| !v.is_empty()),
            _ => None,
        };
        let key = (trust, bundle);
        let mut pools = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pools.get(&key).and_then(Weak::upgrade) {
            return Ok(p);
        }
        let tls = match &key.0 {
            Trust::PlainOnly => None,
            Trust::Roots(ca) => Some(Arc::new(tls_config(false, ca.as_deref())?)),
            Trust::SkipVerify => Some(Arc::new(tls_config(true, None)?)),
        };
        let pool = Arc::new(HttpPool::new(tls));
        pools.retain(|_, p| p.strong_count() > 0);
        pools.insert(key, Arc::downgrade(&pool));
        Ok(pool)
    }

    pub fn new(tls: Option<Arc<ClientConfig>>) -> HttpPool {
        HttpPool {
            tls: tls.map(TlsConnector::from),
            idle: IdleMap::default(),
        }
    }

    pub async fn checkout(&self, target: &Target) -> io::Result<Conn> {
        loop {
            let candidate = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.get_mut(target).and_then(|v| v.pop())
            };
            let Some(c) = candidate else { break };
            if c.since.elapsed() > IDLE_TIMEOUT || !c.sender.is_ready() {
                continue;
            }
            return Ok(Conn {
                sender: c.sender,
                target: target.clone(),
            });
        }
        self.connect(target).await
    }

    /// Gives a connection back after its response was read to the end. Shared by many
    /// replicas, the pool must not hand out a connection whose task has not yet seen that end
    /// (the next request would wait on it), so such a one joins when it is ready.
    pub fn checkin(&self, mut conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        if conn.sender.is_ready() {
            keep(&self.idle, conn);
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let idle = Arc::downgrade(&self.idle);
        rt.spawn(async move {
            let ready = tokio::time::timeout(READY_WAIT, conn.sender.ready()).await;
            if let (Ok(Ok(())), Some(idle)) = (ready, idle.upgrade()) {
                keep(&idle, conn);
            }
        });
    }

    async fn connect(&self, target: &Target) -> io::Result<Conn> {
        let addr = (target.host.as_str(), target.port);
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {} timed out", target.authority()),
                )
            })??;
        tcp.set_nodelay(true)?;
        let tcp = QuickAck::new(tcp);
        let sender = if target.https {
            let tls = self
                .tls
                .as_ref()
                .ok_or_else(|| io::Error::other("https endpoint but TLS was not configured"))?;
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("TLS handshake with {} timed out", target.authority()),
                    )
                })??;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        };
        Ok(Conn {
            sender,
            target: target.clone(),
        })
    }
}

/// Puts a ready connection in the idle list of its host, dropping the stale ones there.
fn keep(idle: &Mutex<HashMap<Target, Vec<Idle>>>, conn: Conn) {
    let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
    let list = idle.entry(conn.target).or_default();
    list.retain(|c| c.since.elapsed() <= IDLE_TIMEOUT && !c.sender.is_closed());
    if list.len() < MAX_IDLE_PER_HOST {
        list.push(Idle {
            sender: conn.sender,
            since: Instant::now(),
        });
    }
}

/// A TCP stream that leaves Linux's interactive ("pingpong") ACK mode after each request it
/// sends, so that a response is acknowledged as soon as it arrives.
///
/// A kept-alive connection that alternates requests and responses is what Linux treats as
/// interactive: it delays ACKs by 40 ms or more, hoping to piggyback them on the next request.
/// A server that leaves Nagle's algorithm on (s3s-fs does) holds back a response's last,
/// partial segment until everything before it is acknowledged, so a 100-byte GET took 40 ms
/// on a reused connection (restore's header, trailer and page-index reads: ~80 ms of waiting).
/// `TCP_QUICKACK` once per request (at the first read after a write) clears the mode; sending
/// the next request sets it again. It does not remove the wait at the end of a long response
/// (1 MiB GETs one after another still waited ~40 ms each); `TCP_QUICKACK` after every read
/// does, but the extra ACKs cost more CPU on both ends than the waits cost a restore that
/// reads page data with a few long requests, as restore does.
struct QuickAck {
    tcp: TcpStream,
    wrote: bool,
}

impl QuickAck {
    fn new(tcp: TcpStream) -> QuickAck {
        QuickAck { tcp, wrote: false }
    }

    fn leave_pingpong(&self) {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local; the fd is
        // open for as long as `self.tcp`. Failure only costs the early ACK.
        unsafe {
            libc::setsockopt(
                self.tcp.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    fn note_write(&mut self, r: &Poll<io::Result<usize>>) {
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.wrote = true;
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.wrote) {
            this.leave_pingpong();
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.note_write(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.note_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// TLS client settings: webpki roots, plus PEM certificates from `AWS_CA_BUNDLE` and the
/// configured CA file; or no verification at all with `skip_verify`.
pub(crate) fn tls_config(
    skip_verify: bool,
    ca_file: Option<&Path>,
) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let bundle = std::env::var_os("AWS_CA_BUNDLE").filter(|v| !v.is_empty());
        for path in bundle.as_deref().map(Path::new).into_iter().chain(ca_file) {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA bundle {}: {e}", path.display()))?;
            let mut n = 0;
            for cert in certs {
                let cert =
                    cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
                // Bundles carry expired or odd roots; one bad entry should not cost the rest.
                if roots.add(cert).is_ok() {
                    n += 1;
                }
            }
            if n == 0 {
                return Err(format!("no usable certificates in {}", path.display()));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `skipVerify`: accepts any certificate but still checks handshake signatures, so the
/// session is at least bound to the key the server presented.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (t, p) = parse_http_url("http://127.0.0.1:9000/base/").expect("url");
        assert_eq!(
            t,
            Target {
                https: false,
                host: "127.0.0.1".into(),
                port: 9000
            }
        );
        assert_eq!(p, "/base/");
        assert_eq!(t.authority(), "127.0.0.1:9000");
        let (t, p) = parse_http_url("https://s3.amazonaws.com").expect("url");
        assert_eq!(
            (t.port, t.authority().as_str(), p.as_str()),
            (443, "s3.amazonaws.com", "")
        );
        let (t, _) = parse_http_url("http://[::1]:8080/x").expect("v6");
        assert_eq!(
            (t.host.as_str(), t.authority()),
            ("::1", "[::1]:8080".to_owned())
        );
        assert!(parse_http_url("ftp://x").is_none());
    }

    #[test]
    fn pools_are_shared_per_trust_and_die_with_their_last_user() {
        let a = HttpPool::shared(Trust::PlainOnly).expect("plain");
        let b = HttpPool::shared(Trust::PlainOnly).expect("plain");
        assert!(Arc::ptr_eq(&a, &b), "same trust, same pool");
        let v = HttpPool::shared(Trust::Roots(None)).expect("roots");
        let s = HttpPool::shared(Trust::SkipVerify).expect("skip");
        assert!(
            !Arc::ptr_eq(&a, &v) && !Arc::ptr_eq(&v, &s),
            "a trust per pool"
        );
        assert!(HttpPool::shared(Trust::Roots(Some("/nonexistent/ca.pem".into()))).is_err());
        let weak = Arc::downgrade(&s);
        drop(s);
        assert!(weak.upgrade().is_none(), "the registry holds no pool alive");
    }

    #[test]
    fn tls_configs_build() {
        assert!(tls_config(true, None).is_ok());
        assert!(tls_config(false, None).is_ok());
        assert!(tls_config(false, Some(Path::new("/nonexistent/ca.pem"))).is_err());
    }
}

//! A TCP proxy on 127.0.0.1 that counts the HTTP requests passing through it, put between an
//! engine and the S3 server to count replica requests, and that can hold every request from then
//! on (a server that stopped answering). Shared by the engine's tests and the e2e harness.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::io::Result;

/// Every request line of HTTP/1.1 ends with this; bodies (compressed LTX) almost never hold it.
const MARK: &[u8] = b" HTTP/1.1\r\n";

/// A request-counting proxy in front of one upstream server (see the module docs).
pub struct CountingProxy {
    /// Where the proxy listens (`127.0.0.1:<ephemeral port>`).
    pub addr: SocketAddr,
    count: Arc<AtomicU64>,
    hold: Arc<AtomicBool>,
}

impl CountingProxy {
    /// Listens on an ephemeral port and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let count = Arc::new(AtomicU64::new(0));
        let hold = Arc::new(AtomicBool::new(false));
        let (c, h) = (count.clone(), hold.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let (n, h) = (c.clone(), h.clone());
                std::thread::spawn(move || pipe(client, server, Some((n, h))));
                std::thread::spawn(move || pipe(s2, c2, None));
            }
        });
        Ok(Self { addr, count, hold })
    }

    /// [`CountingProxy::start`] in front of an HTTP test server's `http://ip:port` endpoint.
    pub fn in_front_of(endpoint: &str) -> Result<Self> {
        let addr = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Self::start(addr)
    }

    /// From now on, bytes sent to the server are held, never forwarded: connections stay open
    /// and no request gets an answer.
    pub fn hold(&self) {
        self.hold.store(true, Ordering::Relaxed);
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Copies `from` to `to`; on the way to the server (`count` set), counts requests and, once
/// held, stops forwarding (the connection stays open until the other side gives up).
fn pipe(mut from: TcpStream, mut to: TcpStream, count: Option<(Arc<AtomicU64>, Arc<AtomicBool>)>) {
    let mut buf = vec![0u8; 64 * 1024];
    // The last bytes of the previous read, so a mark split across reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((c, hold)) = &count {
            tail.extend_from_slice(&buf[..n]);
            let hits = tail.windows(MARK.len()).filter(|w| *w == MARK).count();
            c.fetch_add(hits as u64, Ordering::Relaxed);
            let keep = MARK.len() - 1;
            if tail.len() > keep {
                tail.drain(..tail.len() - keep);
            }
            // Counted, then held: the request arrived but gets no answer.
            while hold.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if from.peek(&mut [0u8; 1]).is_ok_and(|n| n == 0) {
                    return;
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

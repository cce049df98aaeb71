//! NATS over TLS (`tls: true`, `root-cas`): a nats-server of its own, started here with a
//! certificate a test CA signed. Without the CA the certificate is refused at once (not
//! retried), naming the server; with `root-cas` files go and come back.

use crate::common;
use test_support::nats as nats_env;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use storage::open_replica_from_config;

/// Our nats-server, stopped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the NATS test server"]
async fn tls_with_a_private_ca() {
    // The shared server's variables say that nats-server is installed and the test must run.
    nats_env::nats_server();
    let (dir, ca, cert, key) = common::test_certificates();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "--tls"])
        .arg("--tlscert")
        .arg(&cert)
        .arg("--tlskey")
        .arg(&key)
        .arg("-sd")
        .arg(dir.path().join("js"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start nats-server");
    let _server = Server(child);
    let url = format!("nats://localhost:{port}");

    // The bucket, made with a plain client that trusts the CA (JetStream may need a moment).
    let bucket = "tls-bucket";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let made = async {
            let client = async_nats::ConnectOptions::new()
                .require_tls(true)
                .add_root_certificates(ca.clone())
                .connect(url.as_str())
                .await
                .map_err(|e| e.to_string())?;
            async_nats::jetstream::new(client)
                .create_object_store(async_nats::jetstream::object_store::Config {
                    bucket: bucket.to_owned(),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match made {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("creating the bucket: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("creating the bucket: {e}"),
        }
    }

    let ca_path = ca.to_string_lossy().into_owned();
    let open = |keys: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
        open_replica_from_config("nats", Some(&format!("{url}/{bucket}")), pairs).expect("open")
    };

    // Without the CA: refused at once, naming the server.
    let untrusted = open(vec![("tls", "true".into())]);
    let s = common::refused_at_once(&*untrusted).await;
    assert!(s.contains(&url) && s.contains(bucket), "{s}");

    let r = open(vec![("tls", "true".into()), ("root-cas", ca_path)]);
    common::round_trip_over_tls(&*r, 0).await;
}

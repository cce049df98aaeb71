//! `webdavs://`: HTTPS to the WebDAV server through a TLS-terminating proxy whose certificate
//! a test CA signed. Untrusted, the certificate is refused at once (not retried); trusted
//! through `SSL_CERT_FILE` (as Go, hence Litestream, trusts it), files go and come back. A
//! test binary of its own because it sets the variable for the whole process.

use crate::common;
use test_support::webdav as webdav_env;

use storage::open_replica;
use webdav_env::webdav_server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the WebDAV test server"]
async fn webdavs_with_a_private_ca() {
    let srv = webdav_server();
    let (_dir, ca, cert, key) = common::test_certificates();
    let upstream = common::Server {
        endpoint: srv.url.clone(),
        access_key: String::new(),
        secret_key: String::new(),
        bucket: String::new(),
        data_dir: None,
    };
    let port = common::tls_proxy(&upstream, &cert, &key).await;
    let path = srv.unique_path("tls");
    let url = format!(
        "webdavs://{}:{}@localhost:{port}/{path}",
        srv.user, srv.pass
    );

    std::env::remove_var("SSL_CERT_FILE");
    let untrusted = open_replica(&url).expect("open");
    let s = common::refused_at_once(&*untrusted).await;
    assert!(
        s.contains(&format!("https://localhost:{port}/{path}/ltx/0/")) && s.contains("certificate"),
        "{s}"
    );

    std::env::set_var("SSL_CERT_FILE", &ca);
    let r = open_replica(&url).expect("open");
    common::round_trip_over_tls(&*r, 5).await;
    if let Some(data) = &srv.data_dir {
        let f = data
            .join(&path)
            .join("ltx/0/0000000000000001-0000000000000002.ltx");
        assert_eq!(std::fs::read(f).expect("on the server"), b"over tls");
    }
}

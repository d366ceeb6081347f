//! `Server::start` refuses what it cannot serve with an error that says what happened.

use signalroom_server::{Config, Error, Server, TlsConfig};

#[tokio::test]
async fn a_taken_address_is_a_bind_error() {
    let taken = Server::start(Config::local()).await.unwrap();
    let addr = taken.local_addr();
    let err = Server::start(Config { listen: addr, ..Config::local() }).await.unwrap_err();
    assert!(matches!(&err, Error::Bind { addr: a, .. } if *a == addr), "{err:?}");
    assert!(err.to_string().starts_with(&format!("cannot listen on {addr}: ")), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    taken.shutdown().await;
}

#[tokio::test]
async fn missing_tls_files_are_a_tls_error() {
    let dir = std::env::temp_dir().join(format!("signalroom-no-tls-{}", std::process::id()));
    let tls = TlsConfig { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    let err = Server::start(Config { tls: Some(tls), ..Config::local() }).await.unwrap_err();
    assert!(matches!(&err, Error::Tls { cert, .. } if cert.ends_with("cert.pem")), "{err:?}");
    assert!(err.to_string().starts_with("cannot load TLS certificate "), "{err}");
}

#[tokio::test]
async fn a_public_url_that_is_not_http_is_refused() {
    let public_url = Some("ftp://files.example.com/".parse().unwrap());
    let err = Server::start(Config { public_url, ..Config::local() }).await.unwrap_err();
    assert!(matches!(&err, Error::PublicUrl { url, .. } if url == "ftp://files.example.com/"), "{err:?}");
    assert_eq!(
        err.to_string(),
        "public URL ftp://files.example.com/ must be http:// or https:// with a host"
    );
}

#[tokio::test]
async fn zero_limits_are_a_config_error() {
    for config in [
        Config { send_queue_capacity: 0, ..Config::local() },
        Config { max_signal_bytes: 0, ..Config::local() },
    ] {
        let err = Server::start(config).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
    }
}

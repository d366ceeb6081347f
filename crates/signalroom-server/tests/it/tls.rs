//! `--tls-cert`/`--tls-key`: HTTPS and WSS with rustls, and `wss://` tokens.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use signalroom_server::{Config, Server, TlsConfig};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;

use crate::support::SECRET;

#[tokio::test]
async fn tls_serves_https_and_wss_and_issues_wss_tokens() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("signalroom-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let mut config = Config { secret: SECRET.into(), ..Config::local() };
    config.tls = Some(TlsConfig { cert: cert_path, key: key_path });
    let server = Server::start(config).await.unwrap();
    let port = server.local_addr().port();
    assert_eq!(server.url(), format!("https://127.0.0.1:{port}"));
    assert_eq!(server.token_base(), format!("wss://127.0.0.1:{port}"));

    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", server.local_addr())
        .build()
        .unwrap();
    let api = format!("https://localhost:{port}/openvidu/api");
    let auth = |r: reqwest::RequestBuilder| r.basic_auth("OPENVIDUAPP", Some(SECRET));
    let r = auth(http.post(format!("{api}/sessions")))
        .json(&json!({"customSessionId": "S1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c: Value = auth(http.post(format!("{api}/sessions/S1/connection")))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = c["token"].as_str().unwrap();
    assert!(token.starts_with(&format!("wss://127.0.0.1:{port}?sessionId=S1&token=tok_")), "{token}");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async_tls_with_config(
        format!("wss://localhost:{port}/openvidu?sessionId=S1"),
        tcp,
        None,
        Some(Connector::Rustls(Arc::new(tls))),
    )
    .await
    .unwrap();
    let join = json!({"jsonrpc":"2.0","method":"joinRoom","id":1,"params":{"token":token,"session":"S1",
        "platform":"t","sdkVersion":"2.32.2","metadata":"","secret":"","recorder":false,"stt":false}});
    ws.send(Message::Text(join.to_string().into())).await.unwrap();
    let Some(Ok(Message::Text(answer))) = ws.next().await else { panic!("no answer") };
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["result"]["id"], c["connectionId"], "{answer}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

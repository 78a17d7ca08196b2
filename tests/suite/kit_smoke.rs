//! The test kit itself: a real server starts, takes JetStream writes and survives a restart.

use skynet_protocol::streams::Retention;
use skynet_runtime::setup::{Existing, ensure_all};
use skynet_tests::NatsServer;

#[tokio::test]
async fn a_server_starts_with_jetstream_and_keeps_data_across_restart() {
    let mut server = NatsServer::start();
    let client = server.client().await;
    let js = async_nats::jetstream::new(client);
    ensure_all(&js, &Retention::default(), Existing::Update)
        .await
        .unwrap();
    let ack = js
        .publish("skynet.jobs.submit", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 1);
    let port = server.port();
    server.restart();
    assert_eq!(server.port(), port);
    let client = server.client().await;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("SKYNET_SUBMIT").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn the_fake_http_server_answers_real_clients() {
    use skynet_tests::http::{FakeHttp, Response};
    let fake = FakeHttp::start(|req| async move {
        Response::json(
            200,
            &serde_json::json!({"path": req.path, "query": req.query, "echo": req.json()}),
        )
        .with_header("x-fake", "yes")
    })
    .await;
    let addr = fake.addr;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = r#"{"a":1}"#;
    let req = format!(
        "POST /v1/x?y=2 HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("x-fake: yes"), "{reply}");
    assert!(reply.contains(r#""path":"/v1/x""#), "{reply}");
    assert!(reply.contains(r#""echo":{"a":1}"#), "{reply}");
}

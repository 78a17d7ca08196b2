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

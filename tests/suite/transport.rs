//! Transport (contract: `tls://` URLs with `--nats-ca`): services reach a TLS-only server
//! through a CA file, and a client without the CA is turned away.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use skynet_protocol::streams::Retention;
use skynet_runtime::NatsArgs;
use skynet_runtime::setup::{Existing, ensure_all};
use skynet_tests::NatsServer;

#[tokio::test]
async fn services_connect_over_tls_with_the_ca_file_and_not_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (
        dir.path().join("ca.pem"),
        dir.path().join("server.pem"),
        dir.path().join("server-key.pem"),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, server.pem()).unwrap();
    std::fs::write(&key_pem, server_key.serialize_pem()).unwrap();

    let nats = NatsServer::start_with_config(&format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
        cert_pem.display(),
        key_pem.display()
    ));
    let url = format!("tls://127.0.0.1:{}", nats.port());

    let with_ca = NatsArgs {
        url: url.clone(),
        seed: None,
        ca: Some(ca_pem.clone()),
    };
    let client = skynet_runtime::connect::connect_once(&with_ca, "tls-test")
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client.clone());
    ensure_all(&js, &Retention::default(), Existing::Update)
        .await
        .unwrap();
    js.publish("skynet.jobs.submit", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let without_ca = NatsArgs::new(url);
    let err = skynet_runtime::connect::connect_once(&without_ca, "tls-test")
        .await
        .expect_err("a client without the CA must not connect");
    assert!(err.to_string().contains("cannot reach NATS"), "{err}");

    let missing = NatsArgs {
        ca: Some(dir.path().join("nope.pem")),
        ..with_ca
    };
    let err = skynet_runtime::connect::connect_once(&missing, "tls-test")
        .await
        .expect_err("a missing CA file is a configuration error");
    let config = err
        .downcast_ref::<skynet_runtime::ConfigError>()
        .expect("config error");
    assert_eq!(config.flag, "--nats-ca");
}

//! Checking an execution spec from arbitrary bytes: a worker must refuse garbage with an
//! error, never panic, and never accept anything whose grant its trusted key did not seal.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use skynet_protocol::spec::Me;
use skynet_protocol::{ExecutionSpec, WorkerId};

fn trusted() -> &'static (Vec<String>, WorkerId) {
    static T: OnceLock<(Vec<String>, WorkerId)> = OnceLock::new();
    T.get_or_init(|| {
        // A fixed key the fuzzer cannot seal with.
        let key = nkeys::KeyPair::new_user();
        (vec![key.public_key()], WorkerId::parse("w1").expect("worker id"))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = ExecutionSpec::peek(data);
    let Ok(spec) = ExecutionSpec::from_slice(data) else {
        return;
    };
    let _ = spec.seal.peek();
    let (keys, id) = trusted();
    let me = Me {
        id,
        labels: &[],
        trusted: keys,
    };
    assert!(
        spec.verify(&me, 0).is_err(),
        "a spec not sealed by the trusted key was accepted"
    );
});

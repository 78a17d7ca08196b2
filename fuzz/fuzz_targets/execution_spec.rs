//! Verifying a signed execution spec from arbitrary bytes: a worker must refuse garbage
//! with an error, never panic, and never accept anything not signed by its trusted key.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use skynet_protocol::{SignedSpec, WorkerId};

fn trusted() -> &'static (Vec<String>, WorkerId) {
    static T: OnceLock<(Vec<String>, WorkerId)> = OnceLock::new();
    T.get_or_init(|| {
        // A fixed key the fuzzer cannot sign with.
        let key = nkeys::KeyPair::new_user();
        (vec![key.public_key()], WorkerId::parse("w1").expect("worker id"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = SignedSpec::from_slice(data) else {
        return;
    };
    let _ = signed.peek();
    let (keys, me) = trusted();
    assert!(
        signed.verify(keys, me, 0).is_err(),
        "a spec not signed by the trusted key was accepted"
    );
});

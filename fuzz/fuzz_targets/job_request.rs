//! Parsing and validating a JobRequest from arbitrary bytes: it may fail, never panic, and
//! whatever it accepts must survive a round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skynet_protocol::job::salvage_id;
use skynet_protocol::spec::plan_hash;
use skynet_protocol::{JobRequest, Step};

fuzz_target!(|data: &[u8]| {
    let _ = salvage_id(data);
    let Ok(req) = JobRequest::from_slice(data) else {
        return;
    };
    let again = serde_json::to_vec(&req).expect("an accepted request serializes");
    let back = JobRequest::from_slice(&again).expect("an accepted request parses again");
    assert_eq!(back, req);
    if let Some(steps) = &req.steps {
        let _ = plan_hash(steps);
        for s in steps {
            let _ = Step::describe(s);
        }
    }
});

//! Reading arbitrary text as a shell command line (what policy and the worker's forbidden
//! list judge): it may fail, never panic, and every word it finds turns into paths that can
//! be matched against a pattern.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skynet_protocol::shell::{self, PathPattern, Pattern, Vars};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(script) = shell::parse(text) else {
        return;
    };
    let vars = Vars::new(&script, &Default::default());
    let base = PathPattern::base(Some("~/src"));
    let secrets = Pattern::parse("**/.ssh/**").expect("a valid pattern");
    for c in &script.commands {
        let _ = c.inner_text();
        for w in c.words.iter().chain(&c.args) {
            let _ = vars.literals(w);
            for p in PathPattern::of_word(w, &base, &vars) {
                let _ = secrets.overlap(&p);
            }
        }
    }
});

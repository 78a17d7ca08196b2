//! The `skynet` command line as a newcomer meets it (issue 13): every test drives the real
//! binary against a real nats-server (started by `skynet up` itself), with a temp HOME and
//! runtime directory, and a pseudo-terminal where the behaviour depends on one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod kit;

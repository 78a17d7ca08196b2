//! The shell reader policy judges commands with: [`skynet_protocol::shell`], shared with the
//! worker's forbidden list so both read a command line the same way.

pub use skynet_protocol::shell::*;

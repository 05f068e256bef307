//! The GDB remote protocol at the byte level: the server's replies to
//! hostile and malformed input, a session's packets as a real GDB would
//! hide them, and the raw test client itself.
//!
//! One test binary (modules below) so probe-rs is linked once.

#[path = "../support/mod.rs"]
mod support;

mod client;
mod connections;
mod flash_done;
mod hardening;
mod lldb;
mod observer;
mod robustness;
mod session;

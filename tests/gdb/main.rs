//! The `extflash-gdb` binary end to end: its command line, and the real GDB
//! (`gdb-multiarch`, which these tests need) debugging the test firmware on
//! `serve --sim`, internal flash and the external-flash window alike.
//!
//! One test binary (modules below) so probe-rs is linked once.

#[path = "../support/mod.rs"]
mod support;

mod bench;
mod blank;
mod cli;
mod conformance;
mod extflash;
mod faults;
mod firmware;
mod ide;
mod live_watch;
mod lldb;
mod pin_lock;
mod reconnect;
mod reload;
mod truths;
mod user_errors;
mod variables;
mod workflows;

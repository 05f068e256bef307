//! The SPI stub (`target-stub/`): the committed ELF on the virtual board
//! (every entry point, the mailbox and the record stream, faults), the host's stub runner
//! and `ExtFlash` leaving the target as they found it, and the committed
//! target builds (stub and test firmware) matching their sources.
//!
//! One test binary (modules below) so probe-rs is linked once.

#[path = "../support/mod.rs"]
mod support;

mod committed_builds;
mod on_sim;
mod runner;

//! Helpers shared by every integration-test binary (`tests/*/main.rs`
//! include this folder with `#[path = "../support/mod.rs"] mod support;`).
//!
//! - [`elf`]: the committed test-firmware ELFs, their segments, sections
//!   and symbols;
//! - [`sim`]: a virtual board driven through probe-rs as a debugger drives
//!   silicon (`CHIP`, attach, FlashLoader, halt waits, SPI1 by register
//!   pokes, test data);
//! - [`server`]: `extflash-gdb serve --sim` as a child process and batch runs
//!   of the real GDB;
//! - [`process`]: a tool run to completion within a limit, its output read
//!   while it runs;
//! - [`rsp`]: a raw RSP client for bytes a real GDB would hide.
//!
//! `elf.rs` and `sim.rs` need nothing else from the test harness, so
//! `examples/virtual_time.rs` includes those two files as well.
#![allow(dead_code)]

pub mod elf;
pub mod process;
pub mod rsp;
pub mod server;
pub mod sim;

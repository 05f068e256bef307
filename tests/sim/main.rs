//! The virtual STM32F407VE + W25Q64JV (`extflash_gdb::sim`) driven through
//! probe-rs as a debugger drives silicon: attach and detection, core,
//! memory, FPB/DWT, probe-rs's flash algorithm, SPI1 pins and the test
//! firmware, persistence, and virtual time.
//!
//! One test binary (modules below) so probe-rs is linked once.

// `virtual_time` includes `examples/virtual_time.rs`, which includes
// `support/elf.rs` and `support/sim.rs` itself (an example cannot see this
// crate's `support`): the two copies are intended.
#![allow(clippy::duplicate_mod)]

#[path = "../support/mod.rs"]
mod support;

mod attach;
mod bitbang;
mod detect;
mod dwt;
mod exceptions;
mod fidelity;
mod flash_and_debug;
mod halfword;
mod persistence;
mod silicon_rules;
mod spi_firmware;
mod spi_pins;
mod timing;
mod virtual_time;

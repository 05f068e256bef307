//! extflash-gdb: a GDB remote server for STM32F407 boards whose W25Q64JV SPI
//! NOR flash is exposed to GDB as a flash window at 0x90000000.

pub mod board;
pub mod cortex_m;
pub mod error;
pub mod extflash;
pub mod flash;
pub(crate) mod gdb;
pub mod loader;
pub mod prng;
pub mod ratelimit;
pub mod server;
pub mod sim;
pub mod stm32f4;

/// How `monitor` output marks a failed command (see `gdb::monitor`).
pub use gdb::monitor::ERROR_LINE as MONITOR_ERROR_LINE;

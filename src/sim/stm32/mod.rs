//! STM32F407 peripherals of the virtual board: register-level models of the
//! flash interface and array, GPIO ports, RCC, SPI, IWDG, WWDG, the CRC unit and DMA2. Each is a plain
//! struct driven by register reads/writes (`offset`, byte-lane `mask`) and
//! lazily by virtual time in picoseconds.

pub mod crc;
pub mod dma;
pub mod flash;
pub mod gpio;
pub mod iwdg;
pub mod rcc;
pub mod spi;
pub mod wwdg;

//! SPI NOR facts with one home: the instructions (W25Q64JV datasheet 8.1.2,
//! common to 25-series parts) and the W25Q64JV's AC timings (datasheet 9.6).
//! The stub sends these opcodes, the host's chip table names them, the
//! virtual chip decodes them, and the host's timeouts, the planner's erase
//! weights and the virtual chip's BUSY times come from these numbers.

/// Instruction opcodes.
pub mod op {
    pub const WRITE_STATUS1: u8 = 0x01;
    pub const PAGE_PROGRAM: u8 = 0x02;
    pub const READ: u8 = 0x03;
    pub const WRITE_DISABLE: u8 = 0x04;
    pub const READ_STATUS1: u8 = 0x05;
    pub const WRITE_ENABLE: u8 = 0x06;
    pub const FAST_READ: u8 = 0x0B;
    pub const WRITE_STATUS3: u8 = 0x11;
    pub const READ_STATUS3: u8 = 0x15;
    pub const SECTOR_ERASE: u8 = 0x20;
    pub const WRITE_STATUS2: u8 = 0x31;
    pub const READ_STATUS2: u8 = 0x35;
    pub const INDIVIDUAL_LOCK: u8 = 0x36;
    pub const INDIVIDUAL_UNLOCK: u8 = 0x39;
    pub const READ_LOCK: u8 = 0x3D;
    pub const READ_UNIQUE_ID: u8 = 0x4B;
    pub const VOLATILE_SR_WRITE_ENABLE: u8 = 0x50;
    pub const BLOCK_ERASE_32K: u8 = 0x52;
    pub const READ_SFDP: u8 = 0x5A;
    /// Chip erase, the second opcode (same as [`CHIP_ERASE`]).
    pub const CHIP_ERASE_60: u8 = 0x60;
    pub const ENABLE_RESET: u8 = 0x66;
    pub const GLOBAL_LOCK: u8 = 0x7E;
    pub const MANUFACTURER_DEVICE_ID: u8 = 0x90;
    pub const GLOBAL_UNLOCK: u8 = 0x98;
    pub const RESET: u8 = 0x99;
    pub const JEDEC_ID: u8 = 0x9F;
    pub const RELEASE_POWER_DOWN: u8 = 0xAB;
    pub const POWER_DOWN: u8 = 0xB9;
    pub const CHIP_ERASE: u8 = 0xC7;
    pub const BLOCK_ERASE_64K: u8 = 0xD8;
}

/// W25Q64JV AC timings.
pub mod w25q64jv {
    /// Typical times in microseconds: what a job takes on a real chip
    /// (the planner's weights, the virtual chip's BUSY times).
    pub const TYP_PAGE_PROGRAM_US: u32 = 400;
    pub const TYP_SECTOR_ERASE_US: u32 = 45_000;
    pub const TYP_BLOCK32_ERASE_US: u32 = 120_000;
    pub const TYP_BLOCK64_ERASE_US: u32 = 150_000;
    pub const TYP_CHIP_ERASE_US: u32 = 20_000_000;
    pub const TYP_WRITE_STATUS_US: u32 = 10_000;

    /// Maxima in milliseconds: where the stub's busy-waits give up
    /// ([`crate::Timeouts::W25Q64JV`]).
    pub const MAX_PAGE_PROGRAM_MS: u32 = 3;
    pub const MAX_SECTOR_ERASE_MS: u32 = 400;
    pub const MAX_BLOCK32_ERASE_MS: u32 = 1600;
    pub const MAX_BLOCK64_ERASE_MS: u32 = 2000;
    pub const MAX_CHIP_ERASE_MS: u32 = 100_000;
    pub const MAX_WRITE_STATUS_MS: u32 = 15;
}

//! The board block of the generated flash loaders (`extflash-gdb loader`).
//!
//! The loader templates (`target-stub/loader-flm.elf`,
//! `target-stub/loader-stldr.elf`) are the stub's driver code with the
//! entry points STM32CubeProgrammer or a CMSIS-Pack host calls. They are
//! built once for every board: the board-specific part is one [`Board`]
//! block at the symbol [`SYM_BOARD`], which the generator overwrites in the
//! ELF file with the board file's wiring and window, as it fills in the
//! `StorageInfo` / `FlashDevice` structure the host tools read.
//!
//! The template's own block has [`Board::magic`] = 0: an unpatched loader
//! fails its `Init`.

use crate::{Config, Words};

/// The symbol of the [`Board`] block in a loader template.
pub const SYM_BOARD: &str = "EXTFLASH_BOARD";
/// `Board::magic` of a patched block ("XFLB").
pub const BOARD_MAGIC: u32 = 0x5846_4C42;

/// Symbols of the STM32CubeProgrammer external-loader entry points and its
/// device description (`StorageInfo`, 200 bytes).
pub const STLDR_SYMBOLS: [&str; 7] = [
    "Init",
    "Write",
    "Read",
    "SectorErase",
    "MassErase",
    "Verify",
    "CheckSum",
];
pub const SYM_STORAGE_INFO: &str = "StorageInfo";
/// Symbols of the CMSIS-Pack flash algorithm entry points (`ReadFlash` is
/// the read function probe-rs calls as `pc_read`) and its `FlashDevice`.
pub const FLM_SYMBOLS: [&str; 8] = [
    "Init",
    "UnInit",
    "EraseSector",
    "ProgramPage",
    "EraseChip",
    "Verify",
    "BlankCheck",
    "ReadFlash",
];
pub const SYM_FLASH_DEVICE: &str = "FlashDevice";

/// Erase unit of every generated loader: the 4 KiB sector every SPI NOR
/// has.
pub const SECTOR: u32 = 0x1000;

/// What a loader knows about its board.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Board {
    /// [`BOARD_MAGIC`] once the generator patched the block.
    pub magic: u32,
    /// Where the host tool sees the chip (the board file's window).
    pub window: u32,
    /// Chip size in bytes.
    pub size: u32,
    /// Expected JEDEC ID (`mfr << 16 | type << 8 | capacity`); 0: any chip
    /// that identifies itself.
    pub jedec_id: u32,
    /// The stub config for the wiring (`dma_base` 0: polled SPI;
    /// `cycles_per_ms` for the fastest core clock, so timeouts are never
    /// short).
    pub config: Config,
}

// SAFETY: repr(C), u32 fields and a `Config` (itself `Words`) only.
unsafe impl Words for Board {}

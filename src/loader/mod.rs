//! `extflash-gdb loader`: flash loaders for other tools, generated from a
//! board file and the committed templates that `target-stub/build.sh`
//! builds from the stub's own SPI driver (`target-stub/src/loader.rs`).
//!
//! - [`Format::Stldr`]: an STM32CubeProgrammer / ST-LINK_gdbserver external
//!   loader: the `stldr` template with the board block and `StorageInfo`
//!   filled in.
//! - [`Format::Flm`]: a CMSIS-Pack flash algorithm (Keil, pyOCD): the `flm`
//!   template with the board block and `FlashDevice` filled in.
//! - [`Format::ProbeRs`]: a probe-rs 0.32 target description (YAML): the
//!   board's MCU as probe-rs's built-in target has it (memory map, its
//!   internal-flash algorithm) plus the patched `flm` code as the algorithm
//!   of the external window.
//!
//! Pure: a [`Board`] in, file bytes out; the binary writes the file.

pub mod elf;
pub mod probe_rs;

use extflash_stub_abi::loader::{self as abi, Board as BoardBlock, BOARD_MAGIC, SECTOR};
use extflash_stub_abi::{Timeouts, Words};

use crate::board::{Board, ExtFlashWiring};
use crate::extflash::wiring;

/// The committed templates (`target-stub/build-loaders.sh`).
pub const STLDR_TEMPLATE: &[u8] = include_bytes!("../../target-stub/loader-stldr.elf");
pub const FLM_TEMPLATE: &[u8] = include_bytes!("../../target-stub/loader-flm.elf");
const STLDR_NAME: &str = "target-stub/loader-stldr.elf";
const FLM_NAME: &str = "target-stub/loader-flm.elf";

/// Chip size when the board file pins none and names no JEDEC ID: the
/// W25Q64JV's 8 MiB.
pub const DEFAULT_CHIP_SIZE: u32 = 8 << 20;
/// W25Q64JV page: what `StorageInfo::PageSize` advertises.
pub const CHIP_PAGE: u32 = 256;
/// Bytes per `ProgramPage` call of the CMSIS algorithm (and probe-rs's
/// page buffer): a sector, programmed page by page inside.
pub const FLM_PAGE: u32 = SECTOR;
/// `StorageInfo::DeviceType` SPI_FLASH (ST `Dev_Inf.h`).
pub const ST_SPI_FLASH: u16 = 7;
/// `FlashDevice::Vers` 1.01 and `DevType` EXTSPI (CMSIS-Pack `FlashOS.h`).
pub const FLM_VERSION: u16 = 0x0101;
pub const FLM_EXTSPI: u16 = 5;
/// `FlashDevice` size: 160 bytes of header and 512 sector entries.
pub const FLASH_DEVICE_SIZE: usize = 160 + 512 * 8;
pub const STORAGE_INFO_SIZE: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// STM32CubeProgrammer external loader (`.stldr`).
    Stldr,
    /// CMSIS-Pack flash algorithm (`.FLM`: Keil, pyOCD).
    Flm,
    /// probe-rs target description (YAML).
    ProbeRs,
}

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("board file has no [external_flash] section: there is nothing to make a loader for")]
    NoExternalFlash,
    #[error("the chip size {size:#x} is not a multiple of the 4 KiB sector")]
    BadSize { size: u32 },
    #[error("the window {window:#010x} + chip size {size:#x} passes the end of the address space")]
    WindowOverflow { window: u32, size: u32 },
    #[error("loader template {template} is damaged: {reason} (run target-stub/build.sh)")]
    Template {
        template: &'static str,
        reason: String,
    },
    #[error("probe-rs has no built-in target `{chip}` (the board file's `chip`) to take the MCU's memory map and internal-flash algorithm from")]
    UnknownChip { chip: String },
    #[error("cannot write the probe-rs target description: {0}")]
    Yaml(String),
}

/// What every loader is told about the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub chip: String,
    pub window: u32,
    pub size: u32,
    /// 0: any chip.
    pub jedec_id: u32,
    /// Device name for the host tools' lists.
    pub name: String,
    pub block: BoardBlock,
}

impl Spec {
    pub fn from_board(board: &Board) -> Result<Spec, LoaderError> {
        let ext = board
            .external_flash
            .as_ref()
            .ok_or(LoaderError::NoExternalFlash)?;
        let size = chip_size(ext);
        if size == 0 || size % SECTOR != 0 {
            return Err(LoaderError::BadSize { size });
        }
        if ext.window.checked_add(size - 1).is_none() {
            return Err(LoaderError::WindowOverflow {
                window: ext.window,
                size,
            });
        }
        let jedec_id = ext.jedec_id.map_or(0, |[m, t, c]| {
            u32::from(m) << 16 | u32::from(t) << 8 | u32::from(c)
        });
        let part = match jedec_id {
            0x00EF_4017 => "W25Q64JV",
            _ => "SPI NOR",
        };
        let name = format!(
            "{part} {}MiB {} {} (extflash-gdb)",
            size >> 20,
            wiring::describe(ext),
            board.chip,
        );
        let mut config = wiring::config(ext, Timeouts::W25Q64JV);
        // A watchdog the option bytes (WDG_SW = 0) or the application
        // started keeps running while the loader erases: every wait reloads
        // it (a reload of a stopped IWDG does nothing, RM0090 19.3).
        config.iwdg_kr = crate::stm32f4::IWDG_KR;
        let block = BoardBlock {
            magic: BOARD_MAGIC,
            window: ext.window,
            size,
            jedec_id,
            // Polled SPI (no DMA stream to share with an application), timeouts
            // counted at the fastest core clock (never too short).
            config,
        };
        Ok(Spec {
            chip: board.chip.clone(),
            window: ext.window,
            size,
            jedec_id,
            name,
            block,
        })
    }

    fn block_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; BoardBlock::SIZE];
        self.block.write_le(&mut out);
        out
    }
}

/// The board file's chip size: pinned, else the JEDEC capacity byte
/// (2^n bytes), else [`DEFAULT_CHIP_SIZE`].
pub fn chip_size(ext: &ExtFlashWiring) -> u32 {
    if let Some(s) = ext.size {
        return s;
    }
    match ext.jedec_id {
        Some([_, _, c]) if (16..=24).contains(&c) => 1 << c,
        _ => DEFAULT_CHIP_SIZE,
    }
}

/// The loader file of `format` for `board`.
pub fn generate(board: &Board, format: Format) -> Result<Vec<u8>, LoaderError> {
    let spec = Spec::from_board(board)?;
    match format {
        Format::Stldr => stldr(&spec),
        Format::Flm => flm(&spec),
        Format::ProbeRs => probe_rs::yaml(board, &spec, &flm(&spec)?),
    }
}

/// `name` as a NUL-terminated string in `n` bytes (cut to fit).
fn c_string(name: &str, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let b = name.as_bytes();
    let len = b.len().min(n - 1);
    out[..len].copy_from_slice(&b[..len]);
    out
}

/// ST's `StorageInfo` (`Dev_Inf.h`): name[100], type u16, start, size,
/// page size (u32 each, from offset 104), erase value u8 (116), then ten
/// {count, size} sector runs from offset 120; 200 bytes.
pub fn storage_info(spec: &Spec) -> Vec<u8> {
    let mut out = c_string(&spec.name, 100);
    out.extend(ST_SPI_FLASH.to_le_bytes());
    out.extend([0, 0]);
    for w in [spec.window, spec.size, CHIP_PAGE] {
        out.extend(w.to_le_bytes());
    }
    out.extend([0xFF, 0, 0, 0]);
    out.extend((spec.size / SECTOR).to_le_bytes());
    out.extend(SECTOR.to_le_bytes());
    out.resize(STORAGE_INFO_SIZE, 0);
    out
}

/// CMSIS `FlashDevice` (`FlashOS.h`): Vers u16, DevName[128], DevType u16,
/// DevAdr, szDev, szPage, Res (from offset 132), valEmpty u8 (148), toProg,
/// toErase (152, 156), then {szSector, AddrSector} entries ended by
/// 0xFFFFFFFF twice.
pub fn flash_device(spec: &Spec) -> Vec<u8> {
    let t = Timeouts::W25Q64JV;
    let mut out = FLM_VERSION.to_le_bytes().to_vec();
    out.extend(c_string(&spec.name, 128));
    out.extend(FLM_EXTSPI.to_le_bytes());
    for w in [spec.window, spec.size, FLM_PAGE, 0] {
        out.extend(w.to_le_bytes());
    }
    out.extend([0xFF, 0, 0, 0]);
    // One ProgramPage call programs FLM_PAGE / CHIP_PAGE chip pages.
    out.extend((t.page_program_ms * (FLM_PAGE / CHIP_PAGE)).to_le_bytes());
    out.extend(t.sector_erase_ms.to_le_bytes());
    out.extend(SECTOR.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    while out.len() < FLASH_DEVICE_SIZE {
        out.extend([0xFF; 4]);
    }
    out
}

fn stldr(spec: &Spec) -> Result<Vec<u8>, LoaderError> {
    let mut bytes = STLDR_TEMPLATE.to_vec();
    elf::patch(STLDR_NAME, &mut bytes, abi::SYM_BOARD, &spec.block_bytes())?;
    elf::patch(
        STLDR_NAME,
        &mut bytes,
        abi::SYM_STORAGE_INFO,
        &storage_info(spec),
    )?;
    Ok(bytes)
}

fn flm(spec: &Spec) -> Result<Vec<u8>, LoaderError> {
    let mut bytes = FLM_TEMPLATE.to_vec();
    elf::patch(FLM_NAME, &mut bytes, abi::SYM_BOARD, &spec.block_bytes())?;
    elf::patch(
        FLM_NAME,
        &mut bytes,
        abi::SYM_FLASH_DEVICE,
        &flash_device(spec),
    )?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spi3() -> Board {
        Board::from_toml_str(
            include_str!("../../memory-maps/stm32f407ve-w25q64jv-spi3.toml"),
            "spi3",
        )
        .unwrap()
    }

    #[test]
    fn storage_info_is_200_bytes_at_st_offsets() {
        let spec = Spec::from_board(&Board::builtin()).unwrap();
        let s = storage_info(&spec);
        assert_eq!(s.len(), 200);
        assert!(s[..100].starts_with(b"W25Q64JV 8MiB SPI1 (SCK PB3"));
        assert_eq!(u16::from_le_bytes([s[100], s[101]]), 7);
        let w = |o: usize| u32::from_le_bytes(s[o..o + 4].try_into().unwrap());
        assert_eq!((w(104), w(108), w(112)), (0x9000_0000, 8 << 20, 256));
        assert_eq!(s[116], 0xFF);
        assert_eq!((w(120), w(124)), (2048, 4096));
        assert_eq!((w(128), w(132)), (0, 0), "the sector list ends");
    }

    #[test]
    fn flash_device_has_cmsis_layout_and_sector_end() {
        let spec = Spec::from_board(&Board::builtin()).unwrap();
        let d = flash_device(&spec);
        assert_eq!(d.len(), FLASH_DEVICE_SIZE);
        let w = |o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
        assert_eq!(u16::from_le_bytes([d[0], d[1]]), 0x0101);
        assert_eq!(u16::from_le_bytes([d[130], d[131]]), FLM_EXTSPI);
        assert_eq!((w(132), w(136), w(140)), (0x9000_0000, 8 << 20, 4096));
        assert_eq!(d[148], 0xFF);
        assert_eq!((w(152), w(156)), (48, 400), "16 pages of tPP max, tSE max");
        assert_eq!((w(160), w(164)), (4096, 0));
        assert_eq!((w(168), w(172)), (0xFFFF_FFFF, 0xFFFF_FFFF));
    }

    #[test]
    fn spi3_board_block_names_spi3_and_its_pins() {
        let spec = Spec::from_board(&spi3()).unwrap();
        let c = spec.block.config;
        assert_eq!(c.spi_base, 0x4000_3C00);
        assert_eq!(c.pins[0].gpio_base, wiring::gpio_base('C'));
        assert_eq!((c.pins[0].pin, c.pins[0].af), (10, 6));
        assert_eq!(
            (c.pins[3].gpio_base, c.pins[3].pin),
            (wiring::gpio_base('A'), 15)
        );
        assert_eq!(spec.jedec_id, 0, "the SPI3 board accepts any chip");
        assert_eq!(c.dma_base, 0, "loaders poll the SPI");
        assert_eq!(c.iwdg_kr, 0x4000_3000, "and reload a running watchdog");
    }

    #[test]
    fn patched_templates_carry_the_board_block() {
        for (format, name) in [(Format::Stldr, STLDR_NAME), (Format::Flm, FLM_NAME)] {
            let board = spi3();
            let out = generate(&board, format).unwrap();
            let e = elf::parse(name, &out).unwrap();
            let sym = elf::symbol(name, &e, abi::SYM_BOARD).unwrap();
            let block = BoardBlock::read_le(&out[sym.file_offset..]);
            assert_eq!(block, Spec::from_board(&board).unwrap().block, "{format:?}");
        }
    }

    #[test]
    fn board_without_external_flash_is_refused() {
        let mut board = Board::builtin();
        board.external_flash = None;
        assert!(matches!(
            generate(&board, Format::Flm),
            Err(LoaderError::NoExternalFlash)
        ));
    }
}

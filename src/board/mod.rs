//! Board files: the chip name, memory regions and external-flash wiring of a
//! board, read from TOML (`memory-maps/*.toml`) and validated.
//!
//! Owns parsing and validation only; it never talks to a probe. The memory
//! map GDB sees is generated from a [`Board`] by [`memory_map`].

pub mod memory_map;

use std::ops::Range;
use std::path::Path;

use extflash_stub_abi as abi;
use serde::Deserialize;
use toml::Spanned;

/// The board file built into the binary (`--board` overrides it).
pub const DEFAULT_BOARD_NAME: &str = "memory-maps/stm32f407ve-w25q64jv.toml";
/// Text of [`DEFAULT_BOARD_NAME`].
pub const DEFAULT_BOARD_TOML: &str = include_str!("../../memory-maps/stm32f407ve-w25q64jv.toml");

/// Largest chip a 3-byte-address SPI NOR can be (16 MiB): the window
/// reserved before (or without) identifying the chip.
pub const MAX_WINDOW_SIZE: u32 = 16 << 20;
/// Erase size advertised before identification: every SPI NOR erases 4 KiB.
pub const DEFAULT_ERASE_SIZE: u32 = 0x1000;

/// A validated board description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    /// probe-rs target name, e.g. `STM32F407VETx`.
    pub chip: String,
    /// Internal memories, sorted by start address, non-overlapping.
    pub regions: Vec<Region>,
    pub external_flash: Option<ExtFlashWiring>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    pub start: u32,
    /// Length in bytes; `start + size` never exceeds 2^32.
    pub size: u64,
    pub kind: RegionKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionKind {
    Ram,
    /// Flash erased in sectors; runs are in address order.
    Flash {
        sectors: Vec<SectorRun>,
    },
}

/// `count` consecutive sectors of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectorRun {
    pub size: u32,
    pub count: u32,
}

/// One erase unit of a flash region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sector {
    pub index: u32,
    pub start: u32,
    pub size: u32,
}

impl Region {
    pub fn range(&self) -> Range<u64> {
        u64::from(self.start)..u64::from(self.start) + self.size
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.range().contains(&addr)
    }

    pub fn is_flash(&self) -> bool {
        matches!(self.kind, RegionKind::Flash { .. })
    }

    /// The sectors of a flash region in address order (empty for RAM).
    pub fn sectors(&self) -> impl Iterator<Item = Sector> + '_ {
        let runs: &[SectorRun] = match &self.kind {
            RegionKind::Flash { sectors } => sectors,
            RegionKind::Ram => &[],
        };
        let mut start = u64::from(self.start);
        let mut index = 0;
        runs.iter()
            .flat_map(|run| std::iter::repeat_n(run.size, run.count as usize))
            .map(move |size| {
                let s = Sector {
                    index,
                    start: start as u32,
                    size,
                };
                start += u64::from(size);
                index += 1;
                s
            })
    }
}

impl Board {
    /// The board file built into the binary.
    pub fn builtin() -> Board {
        Board::from_toml_str(DEFAULT_BOARD_TOML, DEFAULT_BOARD_NAME)
            .expect("built-in board file is valid (tested)")
    }

    pub fn from_file(path: &Path) -> Result<Board, BoardError> {
        let text = std::fs::read_to_string(path).map_err(|source| BoardError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Board::from_toml_str(&text, &path.display().to_string())
    }

    /// Parse and validate; `origin` names the file in error messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Board, BoardError> {
        let raw: RawBoard = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            let key = e
                .span()
                .and_then(|s| key_on_line(text, s.start))
                .map(|k| format!("`{k}`: "))
                .unwrap_or_default();
            BoardError::Syntax {
                origin: origin.to_string(),
                line,
                column,
                message: format!("{key}{}", e.message().trim_end()),
            }
        })?;
        validate(raw, text, origin)
    }

    /// All regions of kind flash.
    pub fn flash_regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().filter(|r| r.is_flash())
    }

    /// The flash region containing `addr`, if any.
    pub fn flash_region_at(&self, addr: u64) -> Option<&Region> {
        self.flash_regions().find(|r| r.contains(addr))
    }

    /// The internal flash regions as the planner sees them: erases start
    /// and end on the board file's sector boundaries.
    pub fn flash_geometry(&self) -> Vec<crate::flash::EraseGeometry> {
        self.flash_regions()
            .map(|r| crate::flash::EraseGeometry {
                flash: "internal flash",
                range: r.range(),
                boundaries: crate::flash::Boundaries::Sectors(
                    r.sectors().map(|s| u64::from(s.start)).collect(),
                ),
            })
            .collect()
    }
}

/// External SPI NOR flash wiring: what the stub drives and where GDB sees
/// the chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtFlashWiring {
    /// Where GDB sees the chip.
    pub window: u32,
    /// SPI instance number (SPI1..SPI3).
    pub spi: u8,
    pub sck: Pin,
    pub miso: Pin,
    pub mosi: Pin,
    /// Alternate function number for SCK/MISO/MOSI.
    pub af: u8,
    /// Chip select, driven as a GPIO output.
    pub cs: Pin,
    /// SPI baud-rate divider (2, 4, ... 256).
    pub prescaler: u16,
    /// RAM the stub may use.
    pub work_area: Range<u32>,
    pub jedec_id: Option<[u8; 3]>,
    /// Pinned chip size in bytes; otherwise read from the chip (SFDP).
    pub size: Option<u32>,
}

/// A GPIO pin such as `PB3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// Port letter, `'A'`..
    pub port: char,
    pub number: u8,
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P{}{}", self.port, self.number)
    }
}

impl Pin {
    /// Pins bonded out on the STM32F407VE (LQFP100): PA0..PE15, PH0, PH1.
    pub fn parse_f407ve(text: &str) -> Option<Pin> {
        let rest = text.strip_prefix('P')?;
        let mut chars = rest.chars();
        let port = chars.next()?;
        let digits = chars.as_str();
        if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if digits.len() == 2 && digits.starts_with('0') {
            return None;
        }
        let number: u8 = digits.parse().ok()?;
        let ok = match port {
            'A'..='E' => number <= 15,
            'H' => number <= 1,
            _ => false,
        };
        ok.then_some(Pin { port, number })
    }
}

/// Errors from reading a board file. Every variant names the file, the line
/// and the key, so the user knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("cannot read board file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}:{line}: `{key}`: {problem}")]
    Invalid {
        origin: String,
        line: usize,
        key: String,
        problem: BoardProblem,
    },
}

/// What is wrong with a well-formed board file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardProblem {
    #[error("region `{name}` overlaps region `{other}`")]
    Overlap { name: String, other: String },
    #[error("region `{name}` is empty")]
    EmptyRegion { name: String },
    #[error("region `{name}` runs past the end of the 32-bit address space")]
    PastAddressSpace { name: String },
    #[error("region `{name}` is a flash region and needs `sectors` (and no `size`)")]
    FlashNeedsSectors { name: String },
    #[error("region `{name}` is a RAM region and needs `size` (and no `sectors`)")]
    RamNeedsSize { name: String },
    #[error("sector size {size:#x} of region `{name}` must be a non-zero power of two with a non-zero count")]
    BadSector { name: String, size: u32 },
    #[error("unknown pin `{pin}` (the STM32F407VE has PA0..PE15, PH0, PH1)")]
    UnknownPin { pin: String },
    #[error("pin {pin} is used twice")]
    PinReused { pin: String },
    #[error("SPI{spi} does not exist (SPI1..SPI3)")]
    UnknownSpi { spi: u8 },
    #[error("alternate function {af} is not an SPI function (AF5 or AF6)")]
    BadAlternateFunction { af: u8 },
    #[error("prescaler {prescaler} is not one of 2, 4, 8, 16, 32, 64, 128, 256")]
    BadPrescaler { prescaler: u16 },
    #[error("external flash window {start:#010x}..{end:#010x} overlaps region `{name}`")]
    WindowOverlapsRegion { start: u64, end: u64, name: String },
    #[error("sector sizes of region `{name}` add up past any address space")]
    SectorsOverflow { name: String },
    #[error("work area {start:#010x}+{size:#x} is not inside a RAM region")]
    WorkAreaNotInRam { start: u32, size: u32 },
    #[error(
        "work area {start:#010x}+{size:#x} is in CCM RAM ({ccm_start:#010x}..{ccm_end:#010x}), \
         which is on the data bus only: the core cannot fetch the stub's code there; \
         use SRAM"
    )]
    WorkAreaInCcm {
        start: u32,
        size: u32,
        ccm_start: u64,
        ccm_end: u64,
    },
    #[error(
        "work area size {size:#x} is too small: the stub (up to {stub_budget:#x} bytes), its \
         config, mailbox and slots header, a 1 KiB buffer and its 1 KiB stack need at least \
         {needed:#x} bytes"
    )]
    WorkAreaTooSmall {
        size: u32,
        stub_budget: u32,
        needed: u32,
    },
    #[error("external flash size {size:#x} must be a non-zero power of two")]
    BadFlashSize { size: u32 },
    #[error(
        "external flash size {size:#x} is over {max:#x} (16 MiB), the most 3-byte SPI \
         addresses reach: addresses past it would wrap around"
    )]
    FlashTooLarge { size: u32, max: u32 },
    #[error("there is no flash region (the internal flash must be described)")]
    NoFlash,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoard {
    chip: String,
    #[serde(default)]
    memory: Vec<Spanned<RawRegion>>,
    external_flash: Option<Spanned<RawExternalFlash>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawKind {
    Ram,
    Flash,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    name: String,
    kind: RawKind,
    start: u32,
    size: Option<u64>,
    sectors: Option<Vec<SectorRun>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkArea {
    start: u32,
    size: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExternalFlash {
    window: Spanned<u32>,
    spi: Spanned<u8>,
    sck: Spanned<String>,
    miso: Spanned<String>,
    mosi: Spanned<String>,
    af: Spanned<u8>,
    cs: Spanned<String>,
    prescaler: Spanned<u16>,
    work_area: Spanned<RawWorkArea>,
    jedec_id: Option<[u8; 3]>,
    size: Option<Spanned<u32>>,
}

/// 1-based line and column of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// The `key` of a `key = value` line containing byte offset `at`.
fn key_on_line(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = text[at..].find('\n').map(|i| at + i).unwrap_or(text.len());
    let line = &text[start..end];
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    (!key.is_empty() && key.chars().all(plain)).then(|| key.to_string())
}

fn validate(raw: RawBoard, text: &str, origin: &str) -> Result<Board, BoardError> {
    let invalid = |span: Range<usize>, key: String, problem: BoardProblem| BoardError::Invalid {
        origin: origin.to_string(),
        line: line_col(text, span.start).0,
        key,
        problem,
    };

    let mut regions: Vec<(Range<usize>, Region)> = Vec::new();
    for (i, spanned) in raw.memory.iter().enumerate() {
        let span = spanned.span();
        let r = spanned.get_ref();
        let key = format!("memory[{i}]");
        let name = r.name.clone();
        let kind = match (r.kind, &r.size, &r.sectors) {
            (RawKind::Ram, Some(_), None) => RegionKind::Ram,
            (RawKind::Ram, _, _) => {
                return Err(invalid(span, key, BoardProblem::RamNeedsSize { name }));
            }
            (RawKind::Flash, None, Some(runs)) => {
                if let Some(bad) = runs
                    .iter()
                    .find(|s| s.count == 0 || !s.size.is_power_of_two())
                {
                    let problem = BoardProblem::BadSector {
                        name,
                        size: bad.size,
                    };
                    return Err(invalid(span, key + ".sectors", problem));
                }
                RegionKind::Flash {
                    sectors: runs.clone(),
                }
            }
            (RawKind::Flash, _, _) => {
                return Err(invalid(span, key, BoardProblem::FlashNeedsSectors { name }));
            }
        };
        let size = match &kind {
            RegionKind::Ram => r.size.unwrap_or(0),
            RegionKind::Flash { sectors } => {
                let total = sectors.iter().try_fold(0u64, |sum, s| {
                    u64::from(s.size)
                        .checked_mul(u64::from(s.count))
                        .and_then(|run| sum.checked_add(run))
                });
                match total {
                    Some(t) => t,
                    None => {
                        let problem = BoardProblem::SectorsOverflow { name };
                        return Err(invalid(span, key + ".sectors", problem));
                    }
                }
            }
        };
        if size == 0 {
            return Err(invalid(span, key, BoardProblem::EmptyRegion { name }));
        }
        if u64::from(r.start)
            .checked_add(size)
            .is_none_or(|end| end > 1 << 32)
        {
            return Err(invalid(span, key, BoardProblem::PastAddressSpace { name }));
        }
        let region = Region {
            name,
            start: r.start,
            size,
            kind,
        };
        if let Some((_, other)) = regions
            .iter()
            .find(|(_, o)| overlaps(&o.range(), &region.range()))
        {
            let problem = BoardProblem::Overlap {
                name: region.name.clone(),
                other: other.name.clone(),
            };
            return Err(invalid(span, key, problem));
        }
        regions.push((span, region));
    }
    let mut regions: Vec<Region> = regions.into_iter().map(|(_, r)| r).collect();
    regions.sort_by_key(|r| r.start);
    if !regions.iter().any(Region::is_flash) {
        return Err(invalid(0..0, "memory".into(), BoardProblem::NoFlash));
    }

    let external_flash = match raw.external_flash {
        None => None,
        Some(ext) => {
            let e = ext.into_inner();
            let key = |k: &str| format!("external_flash.{k}");
            let mut pins: Vec<Pin> = Vec::new();
            let mut pin = |s: &Spanned<String>, k: &str| -> Result<Pin, BoardError> {
                let p = Pin::parse_f407ve(s.get_ref()).ok_or_else(|| {
                    let problem = BoardProblem::UnknownPin {
                        pin: s.get_ref().clone(),
                    };
                    invalid(s.span(), key(k), problem)
                })?;
                if pins.contains(&p) {
                    let problem = BoardProblem::PinReused { pin: p.to_string() };
                    return Err(invalid(s.span(), key(k), problem));
                }
                pins.push(p);
                Ok(p)
            };
            let sck = pin(&e.sck, "sck")?;
            let miso = pin(&e.miso, "miso")?;
            let mosi = pin(&e.mosi, "mosi")?;
            let cs = pin(&e.cs, "cs")?;

            let spi = *e.spi.get_ref();
            if !(1..=3).contains(&spi) {
                return Err(invalid(
                    e.spi.span(),
                    key("spi"),
                    BoardProblem::UnknownSpi { spi },
                ));
            }
            let af = *e.af.get_ref();
            if !(5..=6).contains(&af) {
                let problem = BoardProblem::BadAlternateFunction { af };
                return Err(invalid(e.af.span(), key("af"), problem));
            }
            let prescaler = *e.prescaler.get_ref();
            if !(2..=256).contains(&prescaler) || !prescaler.is_power_of_two() {
                let problem = BoardProblem::BadPrescaler { prescaler };
                return Err(invalid(e.prescaler.span(), key("prescaler"), problem));
            }
            let size = match &e.size {
                Some(s) if *s.get_ref() == 0 || !s.get_ref().is_power_of_two() => {
                    let problem = BoardProblem::BadFlashSize { size: *s.get_ref() };
                    return Err(invalid(s.span(), key("size"), problem));
                }
                Some(s) if *s.get_ref() > MAX_WINDOW_SIZE => {
                    let problem = BoardProblem::FlashTooLarge {
                        size: *s.get_ref(),
                        max: MAX_WINDOW_SIZE,
                    };
                    return Err(invalid(s.span(), key("size"), problem));
                }
                Some(s) => Some(*s.get_ref()),
                None => None,
            };
            // Without a pinned size, reserve the largest window that fits
            // below 2^32 minus the core's private region: 16 MiB (the biggest
            // 3-byte-address SPI NOR).
            let window = *e.window.get_ref();
            let window_len = u64::from(size.unwrap_or(MAX_WINDOW_SIZE));
            let window_range = u64::from(window)..u64::from(window) + window_len;
            if let Some(r) = regions.iter().find(|r| overlaps(&r.range(), &window_range)) {
                let problem = BoardProblem::WindowOverlapsRegion {
                    start: window_range.start,
                    end: window_range.end,
                    name: r.name.clone(),
                };
                return Err(invalid(e.window.span(), key("window"), problem));
            }
            if window_range.end > 1 << 32 {
                let problem = BoardProblem::PastAddressSpace {
                    name: "external_flash".into(),
                };
                return Err(invalid(e.window.span(), key("window"), problem));
            }
            let wa = e.work_area.get_ref();
            let wa_range = u64::from(wa.start)..u64::from(wa.start) + u64::from(wa.size);
            let in_ram = regions.iter().any(|r| {
                !r.is_flash() && r.range().start <= wa_range.start && wa_range.end <= r.range().end
            });
            // A `Range<u32>` cannot end at 2^32.
            if !in_ram || wa_range.end >= 1 << 32 {
                let problem = BoardProblem::WorkAreaNotInRam {
                    start: wa.start,
                    size: wa.size,
                };
                return Err(invalid(e.work_area.span(), key("work_area"), problem));
            }
            if overlaps(&wa_range, &CCM) {
                let problem = BoardProblem::WorkAreaInCcm {
                    start: wa.start,
                    size: wa.size,
                    ccm_start: CCM.start,
                    ccm_end: CCM.end,
                };
                return Err(invalid(e.work_area.span(), key("work_area"), problem));
            }
            if let Err(problem) = check_work_area_fits_stub(wa.start, wa.size) {
                return Err(invalid(e.work_area.span(), key("work_area"), problem));
            }
            Some(ExtFlashWiring {
                window,
                spi,
                sck,
                miso,
                mosi,
                af,
                cs,
                prescaler,
                work_area: wa.start..wa.start + wa.size,
                jedec_id: e.jedec_id,
                size,
            })
        }
    };

    Ok(Board {
        chip: raw.chip,
        regions,
        external_flash,
    })
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The STM32F407's core-coupled RAM: on the D-bus only, so the core cannot
/// fetch instructions from it (RM0090 2.3.1).
pub const CCM: Range<u64> = 0x1000_0000..0x1001_0000;

/// The work area holds any stub within the stub's budget, with its blocks,
/// buffer and stack ([`abi::layout::min_work_area`]): a work area that
/// validates fits every stub build, and nothing here parses the stub.
fn check_work_area_fits_stub(start: u32, size: u32) -> Result<(), BoardProblem> {
    let budget = abi::layout::STUB_BUDGET;
    match abi::layout::min_work_area(start, budget) {
        Some(needed) if size >= needed => Ok(()),
        needed => Err(BoardProblem::WorkAreaTooSmall {
            size,
            stub_budget: budget,
            needed: needed.unwrap_or(u32::MAX),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::Prng;

    fn with(find: &str, replace: &str) -> String {
        assert!(DEFAULT_BOARD_TOML.contains(find), "fixture lacks {find:?}");
        DEFAULT_BOARD_TOML.replacen(find, replace, 1)
    }

    fn problem(text: &str) -> (usize, String, BoardProblem) {
        match Board::from_toml_str(text, "test.toml") {
            Err(BoardError::Invalid {
                line, key, problem, ..
            }) => (line, key, problem),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn line_of(text: &str, needle: &str) -> usize {
        let at = text.find(needle).expect("needle present");
        line_col(text, at).0
    }

    #[test]
    fn builtin_board_has_f407ve_layout() {
        let b = Board::builtin();
        assert_eq!(b.chip, "STM32F407VETx");
        let flash = b.flash_regions().next().unwrap();
        assert_eq!(flash.start, 0x0800_0000);
        assert_eq!(flash.size, 512 * 1024);
        let sectors: Vec<_> = flash.sectors().map(|s| (s.start, s.size)).collect();
        assert_eq!(sectors.len(), 8);
        assert_eq!(sectors[3], (0x0800_C000, 0x4000));
        assert_eq!(sectors[4], (0x0801_0000, 0x10000));
        assert_eq!(sectors[7], (0x0806_0000, 0x20000));
        let names: Vec<_> = b.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["flash", "ccm", "sram"], "sorted by address");
        let ext = b.external_flash.unwrap();
        assert_eq!(ext.window, 0x9000_0000);
        assert_eq!(
            ext.sck,
            Pin {
                port: 'B',
                number: 3
            }
        );
        assert_eq!(ext.cs.to_string(), "PB0");
        assert_eq!(ext.work_area, 0x2001_8000..0x2002_0000);
        assert_eq!(ext.jedec_id, Some([0xEF, 0x40, 0x17]));
    }

    #[test]
    fn spi3_board_file_is_valid_and_wired_differently() {
        let text = include_str!("../../memory-maps/stm32f407ve-w25q64jv-spi3.toml");
        let b = Board::from_toml_str(text, "spi3").unwrap();
        let ext = b.external_flash.unwrap();
        assert_eq!(ext.spi, 3);
        assert_eq!(ext.af, 6);
        assert_eq!(
            [ext.sck, ext.miso, ext.mosi, ext.cs].map(|p| p.to_string()),
            ["PC10", "PC11", "PC12", "PA15"]
        );
        assert_eq!(ext.jedec_id, None);
    }

    #[test]
    fn invalid_syntax_reports_line() {
        let text = with("spi = 1", "spi = = 1");
        match Board::from_toml_str(&text, "test.toml") {
            Err(BoardError::Syntax { line, .. }) => assert_eq!(line, line_of(&text, "spi = =")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_unknown_key_is_named_with_line() {
        let text = with("af = 5", "af = 5\nspeed = 3");
        let err = Board::from_toml_str(&text, "test.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("speed"), "{msg}");
        match err {
            BoardError::Syntax { line, .. } => {
                // toml points at the table that holds the key.
                assert!(line >= line_of(&text, "[external_flash]"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_wrong_type_names_key_and_line() {
        let text = with("prescaler = 2", "prescaler = \"four\"");
        let err = Board::from_toml_str(&text, "test.toml").unwrap_err();
        match &err {
            BoardError::Syntax { line, message, .. } => {
                assert_eq!(*line, line_of(&text, "prescaler = \"four\""));
                assert!(message.starts_with("`prescaler`: "), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_overlapping_regions() {
        let text = with("start = 0x10000000", "start = 0x2000F000");
        let (line, key, p) = problem(&text);
        assert!(matches!(p, BoardProblem::Overlap { .. }), "{p:?}");
        assert_eq!(key, "memory[2]");
        assert!(line >= line_of(&text, "name = \"ccm\"") - 1, "line {line}");
    }

    #[test]
    fn invalid_unknown_pin() {
        let text = with("miso = \"PB4\"", "miso = \"PZ4\"");
        let (line, key, p) = problem(&text);
        assert_eq!(p, BoardProblem::UnknownPin { pin: "PZ4".into() });
        assert_eq!(key, "external_flash.miso");
        assert_eq!(line, line_of(&text, "miso = \"PZ4\""));
    }

    #[test]
    fn invalid_pin_past_port_width() {
        let (_, _, p) = problem(&with("cs = \"PB0\"", "cs = \"PB16\""));
        assert!(matches!(p, BoardProblem::UnknownPin { .. }));
        let (_, _, p) = problem(&with("cs = \"PB0\"", "cs = \"PH2\""));
        assert!(matches!(p, BoardProblem::UnknownPin { .. }));
    }

    #[test]
    fn invalid_pin_used_twice() {
        let (_, key, p) = problem(&with("cs = \"PB0\"", "cs = \"PB3\""));
        assert_eq!(p, BoardProblem::PinReused { pin: "PB3".into() });
        assert_eq!(key, "external_flash.cs");
    }

    #[test]
    fn invalid_window_overlapping_internal_region() {
        let text = with("window = 0x90000000", "window = 0x08040000");
        let (line, key, p) = problem(&text);
        assert!(
            matches!(&p, BoardProblem::WindowOverlapsRegion { name, .. } if name == "flash"),
            "{p:?}"
        );
        assert_eq!(key, "external_flash.window");
        assert_eq!(line, line_of(&text, "window = 0x08040000"));
    }

    #[test]
    fn invalid_work_area_outside_ram() {
        let text = with("start = 0x20018000", "start = 0x2001F000");
        let (_, key, p) = problem(&text);
        assert!(matches!(p, BoardProblem::WorkAreaNotInRam { .. }), "{p:?}");
        assert_eq!(key, "external_flash.work_area");
    }

    #[test]
    fn invalid_prescaler_spi_and_af() {
        let (_, _, p) = problem(&with("prescaler = 2", "prescaler = 3"));
        assert_eq!(p, BoardProblem::BadPrescaler { prescaler: 3 });
        let (_, _, p) = problem(&with("spi = 1", "spi = 4"));
        assert_eq!(p, BoardProblem::UnknownSpi { spi: 4 });
        let (_, _, p) = problem(&with("af = 5", "af = 7"));
        assert_eq!(p, BoardProblem::BadAlternateFunction { af: 7 });
    }

    #[test]
    fn invalid_flash_region_without_sectors() {
        let text = with("kind = \"flash\"", "kind = \"flash\"\nsize = 0x80000");
        let (_, key, p) = problem(&text);
        assert!(matches!(p, BoardProblem::FlashNeedsSectors { .. }), "{p:?}");
        assert_eq!(key, "memory[0]");
    }

    #[test]
    fn invalid_sector_size_not_power_of_two() {
        let (_, key, p) = problem(&with(
            "{ size = 0x4000, count = 4 }",
            "{ size = 0x4001, count = 4 }",
        ));
        assert!(
            matches!(p, BoardProblem::BadSector { size: 0x4001, .. }),
            "{p:?}"
        );
        assert_eq!(key, "memory[0].sectors");
    }

    #[test]
    fn invalid_region_past_4g() {
        let (_, _, p) = problem(&with("start = 0x10000000", "start = 0xFFFF8000"));
        assert!(matches!(p, BoardProblem::PastAddressSpace { .. }), "{p:?}");
    }

    #[test]
    fn valid_board_without_external_flash() {
        let text = DEFAULT_BOARD_TOML
            .split("[external_flash]")
            .next()
            .unwrap()
            .to_string();
        let b = Board::from_toml_str(&text, "t").unwrap();
        assert!(b.external_flash.is_none());
    }

    #[test]
    fn pin_parsing_accepts_only_bonded_pins() {
        assert_eq!(
            Pin::parse_f407ve("PE15"),
            Some(Pin {
                port: 'E',
                number: 15
            })
        );
        assert_eq!(
            Pin::parse_f407ve("PH1"),
            Some(Pin {
                port: 'H',
                number: 1
            })
        );
        for bad in ["PB", "B3", "PB03", "PF0", "pb3", "PB3x", "PB-1"] {
            assert_eq!(Pin::parse_f407ve(bad), None, "{bad}");
        }
    }

    #[test]
    fn error_message_names_file_line_and_key() {
        let text = with("sck = \"PB3\"", "sck = \"PQ3\"");
        let msg = Board::from_toml_str(&text, "board.toml")
            .unwrap_err()
            .to_string();
        let line = line_of(&text, "sck = \"PQ3\"");
        assert!(
            msg.starts_with(&format!("board.toml:{line}: `external_flash.sck`")),
            "{msg}"
        );
        assert!(msg.contains("PQ3"), "{msg}");
    }

    #[test]
    fn invalid_sector_sum_overflow_is_an_error_naming_sectors() {
        let text = with(
            "{ size = 0x4000, count = 4 },",
            "{ size = 0x80000000, count = 0xFFFFFFFF }, { size = 0x80000000, count = 0xFFFFFFFF }, \
             { size = 0x80000000, count = 0xFFFFFFFF },",
        );
        let (_, key, p) = problem(&text);
        assert_eq!(key, "memory[0].sectors");
        assert!(matches!(p, BoardProblem::SectorsOverflow { .. }), "{p:?}");
    }

    #[test]
    fn invalid_ram_size_near_u64_max_is_past_address_space() {
        // TOML integers stop at i64::MAX.
        let text = with("size = 0x20000 ", "size = 0x7FFFFFFFFFFFFFFF ");
        let (_, _, p) = problem(&text);
        assert!(matches!(p, BoardProblem::PastAddressSpace { .. }), "{p:?}");
    }

    #[test]
    fn invalid_external_size_over_16_mib_is_rejected() {
        let text = with("af = 5", "af = 5\nsize = 0x2000000");
        let (line, key, p) = problem(&text);
        assert_eq!(
            p,
            BoardProblem::FlashTooLarge {
                size: 0x200_0000,
                max: 0x100_0000
            }
        );
        assert_eq!(key, "external_flash.size");
        assert_eq!(line, line_of(&text, "size = 0x2000000"));
        // 16 MiB itself is the largest 3-byte chip and stays valid.
        let ok = with("af = 5", "af = 5\nsize = 0x1000000");
        assert!(Board::from_toml_str(&ok, "t").is_ok());
    }

    #[test]
    fn invalid_work_area_in_ccm_is_rejected() {
        let text = with(
            "work_area = { start = 0x20018000, size = 0x8000 }",
            "work_area = { start = 0x10000000, size = 0x4000 }",
        );
        let (_, key, p) = problem(&text);
        assert_eq!(key, "external_flash.work_area");
        assert!(matches!(p, BoardProblem::WorkAreaInCcm { .. }), "{p:?}");
        let msg = Board::from_toml_str(&text, "t").unwrap_err().to_string();
        assert!(msg.contains("CCM") && msg.contains("SRAM"), "{msg}");
    }

    fn work_area_board(start: u32, size: u32) -> String {
        with(
            "work_area = { start = 0x20018000, size = 0x8000 }",
            &format!("work_area = {{ start = {start:#x}, size = {size:#x} }}"),
        )
    }

    /// A work area validates exactly when the runner can lay out a stub of
    /// the full budget in it, so every stub build fits a valid one (the
    /// built-in stub's size is checked against the budget in
    /// `extflash::stub`).
    #[test]
    fn valid_work_area_is_exactly_one_the_stub_runner_can_lay_out() {
        use abi::layout::{layout, STUB_BUDGET};
        let mut accepted = 0;
        let mut rejected = 0;
        // Stub budget, config, slots header, 1 KiB buffer, 1 KiB stack.
        let around = STUB_BUDGET + 0x880;
        for start in [0x2001_0000u32, 0x2001_0004, 0x2000_0003] {
            for size in around - 0x100..around + 0x100 {
                let runner_ok = layout(&(start..start + size), STUB_BUDGET).is_some();
                match Board::from_toml_str(&work_area_board(start, size), "t") {
                    Ok(_) => {
                        assert!(
                            runner_ok,
                            "{start:#x}+{size:#x} validated but the stub cannot run"
                        );
                        accepted += 1;
                    }
                    Err(BoardError::Invalid {
                        problem: BoardProblem::WorkAreaTooSmall { needed, .. },
                        ..
                    }) => {
                        assert!(!runner_ok, "{start:#x}+{size:#x} rejected but would run");
                        assert!(needed > size);
                        assert!(layout(&(start..start + needed), STUB_BUDGET).is_some());
                        rejected += 1;
                    }
                    Err(e) => panic!("{start:#x}+{size:#x}: {e}"),
                }
            }
        }
        assert!(accepted > 0 && rejected > 0, "{accepted} {rejected}");
    }

    #[test]
    fn invalid_work_area_too_small_names_the_size_needed() {
        let (_, key, p) = problem(&work_area_board(0x2001_0000, 0x100));
        assert_eq!(key, "external_flash.work_area");
        let BoardProblem::WorkAreaTooSmall { needed, .. } = p else {
            panic!("{p:?}")
        };
        assert!(Board::from_toml_str(&work_area_board(0x2001_0000, needed), "t").is_ok());
        assert!(Board::from_toml_str(&work_area_board(0x2001_0000, needed - 4), "t").is_err());
    }

    #[test]
    fn invalid_work_area_ending_at_4g_is_an_error_not_a_panic() {
        let text = with("start = 0x10000000", "start = 0xFFFF0000").replace(
            "start = 0x20018000, size = 0x8000",
            "start = 0xFFFF8000, size = 0x8000",
        );
        assert!(Board::from_toml_str(&text, "t").is_err());
    }

    /// One mutation of a board file's text: numbers at the edges of their
    /// types, dropped/duplicated/swapped lines, byte flips, random bytes.
    fn mutate(rng: &mut Prng, text: &str) -> String {
        // Edges of u32/u64/i64, and pairs that end exactly at 2^32.
        const NUMBERS: [&str; 20] = [
            "0",
            "1",
            "-1",
            "7",
            "0x1000",
            "0x10000000",
            "0x1000FFFF",
            "0x7FFFFFFF",
            "0x80000000",
            "0xFFFFFFFF",
            "0x100000000",
            "0xFFFFFFFFFFFFFFFF",
            "9223372036854775807",
            "0x1000000",
            "3.5",
            "0xFFFFC000",
            "0x4000",
            "0xFFFF0000",
            "0x10000",
            "0x2000000",
        ];
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        match rng.below(8) {
            0..=2 => {
                // Replace one number (hex or decimal) on a random line.
                let l = rng.below(lines.len());
                let line = &lines[l];
                let starts: Vec<usize> = line
                    .char_indices()
                    .filter(|&(i, c)| {
                        c.is_ascii_digit()
                            && (i == 0 || !line.as_bytes()[i - 1].is_ascii_alphanumeric())
                    })
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&at) = starts.get(rng.below(starts.len())) {
                    let end = line[at..]
                        .find(|c: char| !c.is_ascii_alphanumeric())
                        .map_or(line.len(), |e| at + e);
                    let value = if rng.below(2) == 0 {
                        NUMBERS[rng.below(NUMBERS.len())].to_string()
                    } else {
                        format!("{:#x}", rng.next_u64() >> rng.below(64))
                    };
                    lines[l] = format!("{}{}{}", &line[..at], value, &line[end..]);
                }
            }
            3 if rng.below(2) == 0 => {
                // Many sector runs of extreme sizes.
                let runs: Vec<String> = (0..2 + rng.below(4))
                    .map(|_| {
                        let size = ["0x80000000", "0x80000000", "0x4000"][rng.below(3)];
                        let count = ["0xFFFFFFFF", "0x7FFFFFFF", "1"][rng.below(3)];
                        format!("{{ size = {size}, count = {count} }}, ")
                    })
                    .collect();
                if let Some(l) = lines
                    .iter()
                    .position(|l| l.trim_start().starts_with("{ size"))
                {
                    lines.insert(l, runs.concat());
                }
            }
            3 => {
                let l = rng.below(lines.len());
                lines.remove(l);
            }
            4 => {
                let l = rng.below(lines.len());
                let copy = lines[l].clone();
                lines.insert(rng.below(lines.len() + 1), copy);
            }
            5 => {
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(a, b);
            }
            6 => {
                let mut bytes = lines.join("\n").into_bytes();
                let at = rng.below(bytes.len());
                if let Some(b) = bytes.get_mut(at) {
                    *b = b"=[]{}\",.0x-#\n \x00\xff"[rng.below(16)];
                }
                return String::from_utf8_lossy(&bytes).into_owned();
            }
            _ => {
                let junk: String = (0..rng.below(12))
                    .map(|_| (rng.below(95) as u8 + 32) as char)
                    .collect();
                let l = rng.below(lines.len());
                lines[l].insert_str(0, &junk);
            }
        }
        lines.join("\n")
    }

    /// Random and mutated board files never panic the parser. Run longer
    /// with `EXTFLASH_FUZZ_BOARDS=10000 cargo test --lib board::tests::fuzz`.
    #[test]
    fn fuzzed_board_files_never_panic() {
        let count: usize = std::env::var("EXTFLASH_FUZZ_BOARDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        let seed = std::env::var("EXTFLASH_FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x5EED_B0A2D);
        let mut rng = Prng::new(seed);
        let seeds = [
            DEFAULT_BOARD_TOML,
            include_str!("../../memory-maps/stm32f407ve-w25q64jv-spi3.toml"),
        ];
        let (mut ok, mut rejected) = (0usize, 0usize);
        for case in 0..count {
            let mut text = seeds[rng.below(seeds.len())].to_string();
            if rng.below(20) == 0 {
                text = (0..rng.below(400))
                    .map(|_| (rng.below(95) as u8 + 32) as char)
                    .collect();
            }
            for _ in 0..1 + rng.below(6) {
                text = mutate(&mut rng, &text);
            }
            let result =
                std::panic::catch_unwind(|| Board::from_toml_str(&text, "fuzz.toml").map(|_| ()));
            match result {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => {
                    // Every error names where: a key or a position.
                    assert!(!e.to_string().is_empty());
                    rejected += 1;
                }
                Err(_) => panic!("case {case} (seed {seed:#x}) panicked on:\n{text}"),
            }
        }
        eprintln!("fuzzed board files: {count}, valid {ok}, rejected {rejected}, panics 0");
        assert!(
            rejected > count / 4,
            "mutations reach validation: {rejected}"
        );
    }
}

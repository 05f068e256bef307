//! The external SPI NOR flash behind the GDB window (0x90000000 by default):
//! identification, reads, CRCs, erase and program, all through the SPI
//! driver stub run in target RAM.
//!
//! One concern per file: [`stub`] parses the embedded stub ELF, [`wiring`]
//! turns the board file into the stub's config block and register
//! addresses, [`resident`] starts and ends a stub session ([`save`] what
//! it disturbs, [`periph`] the GPIO/SPI/RCC part of that, which the
//! host-driven small reads of [`direct`] share, [`clock`]), [`runner`] runs
//! its calls and streams
//! ([`call`]), [`chip`] interprets JEDEC/SFDP/status bytes, `chip_ops`
//! identifies and erases or unprotects the chip, `read` serves window
//! reads and CRCs, [`cache`] holds window reads. GDB's requests are planned
//! by the shared planner (`crate::flash::plan`); a `load`'s window part is
//! planned and packed purely by [`load_plan`] and executed by `load`.
//! [`ExtFlash`] ties them together for the GDB layer.
//!
//! Owns the chip and the work area while a call runs; never touches the
//! chip while the application holds its chip select (see
//! [`app_bus::cs_asserted`]). Emits progress as
//! [`FlashEvent`](crate::flash::FlashEvent)s; never prints.

pub(crate) mod app_bus;
pub(crate) mod cache;
pub(crate) mod call;
pub mod chip;
mod chip_ops;
pub(crate) mod clock;
pub(crate) mod direct;
pub mod error;
pub mod info;
mod load;
pub(crate) mod load_plan;
pub(crate) mod periph;
pub mod pin_lock;
pub(crate) mod probe_io;
mod read;
pub(crate) mod resident;
pub(crate) mod runner;
pub(crate) mod save;
pub mod stream;
pub mod stub;
pub mod wiring;

use std::ops::Range;

use extflash_stub_abi::Timeouts;
use probe_rs::Core;

use crate::board::memory_map::{memory_map_xml, window_region, MemoryMapError};
use crate::board::{Board, ExtFlashWiring};
use crate::flash::plan::{Boundaries, EraseGeometry, FlashRequest};
pub use app_bus::SpiActivity;
use cache::ReadCache;
use chip::ChipInfo;
pub use error::{ExtFlashError, ProbeOp, SpiWiring, StubOp, StubStatusError};
use runner::{Resident, StubSession};
use stub::StubImage;

/// Window size advertised before (or without) identification.
pub const DEFAULT_WINDOW: u32 = crate::board::MAX_WINDOW_SIZE;
/// Blocksize advertised before identification.
pub const DEFAULT_BLOCK: u32 = crate::board::DEFAULT_ERASE_SIZE;

/// The external flash of one board, as seen through the stub.
pub struct ExtFlash {
    ext: ExtFlashWiring,
    stub: Result<StubImage, stub::StubImageError>,
    chip: Option<ChipInfo>,
    cache: ReadCache,
    /// The window part of the `load` in progress, in window addresses.
    request: FlashRequest,
    /// The stub session while one runs.
    resident: Option<Resident>,
    /// Whether a `load` may send pages compressed (`monitor flash
    /// compress`); on by default.
    compress: bool,
    /// (size, blocksize) an earlier connection's probe found.
    earlier: Option<(u32, u32)>,
    /// Bytes of stack the stub gets ([`runner::STACK_SIZE`]).
    stack: u32,
}

impl ExtFlash {
    pub fn new(ext: ExtFlashWiring) -> ExtFlash {
        ExtFlash {
            ext,
            stub: StubImage::builtin(),
            chip: None,
            cache: ReadCache::default(),
            request: FlashRequest::default(),
            resident: None,
            compress: true,
            earlier: None,
            stack: extflash_stub_abi::layout::STACK_SIZE,
        }
    }

    /// Give the stub `bytes` of stack instead of [`runner::STACK_SIZE`]
    /// (from the next session on). The host checks the stack's lowest word
    /// after every call: a stack too small for the stub ends the session
    /// with [`ExtFlashError::StackOverflow`].
    pub fn set_stub_stack(&mut self, bytes: u32) {
        self.stack = bytes;
    }

    /// Whether a `load` sends compressible pages compressed.
    pub fn compress(&self) -> bool {
        self.compress
    }

    pub fn set_compress(&mut self, on: bool) {
        self.compress = on;
    }

    pub fn config(&self) -> &ExtFlashWiring {
        &self.ext
    }

    pub fn chip(&self) -> Option<&ChipInfo> {
        self.chip.as_ref()
    }

    /// Bytes of the window as far as they are known: the board's pinned
    /// size, else the identified chip's, else an earlier connection's
    /// probe ([`ExtFlash::remember`]), else the size of the part the board
    /// file's `jedec_id` names. `None`: nothing says (the memory map then
    /// leaves the window out rather than guess).
    pub fn known_size(&self) -> Option<u32> {
        self.ext
            .size
            .or(self.chip.as_ref().map(|c| c.geometry.size))
            .or(self.earlier.map(|(size, _)| size))
            .or_else(|| board_part_size(&self.ext))
    }

    /// Bytes of the window for routing addresses to it: [`known_size`],
    /// else [`DEFAULT_WINDOW`] (so an access there reaches the chip, which
    /// is probed again then). Never advertised to GDB.
    ///
    /// [`known_size`]: ExtFlash::known_size
    pub fn size(&self) -> u32 {
        self.known_size().unwrap_or(DEFAULT_WINDOW)
    }

    /// The GDB blocksize: the smallest erase the stub can issue (the
    /// identified chip's, else an earlier probe's).
    pub fn blocksize(&self) -> u32 {
        self.chip
            .as_ref()
            .and_then(|c| c.geometry.min_erase())
            .or(self.earlier.map(|(_, block)| block))
            .unwrap_or(DEFAULT_BLOCK)
    }

    /// Size and blocksize of the identified chip, for the next connection
    /// ([`ExtFlash::remember`]).
    pub fn probed(&self) -> Option<(u32, u32)> {
        self.chip
            .as_ref()
            .map(|c| (c.geometry.size, self.blocksize()))
    }

    /// What an earlier connection's probe found (size, blocksize): the
    /// memory map's window when this connection cannot probe the chip
    /// (the application holds it). The chip itself is probed again at the
    /// next access.
    pub fn remember(&mut self, earlier: Option<(u32, u32)>) {
        self.earlier = earlier;
    }

    /// The window as the planner sees it: erases on the smallest erase size.
    pub fn geometry(&self) -> EraseGeometry {
        EraseGeometry {
            flash: "external flash",
            range: self.window(),
            boundaries: Boundaries::Uniform(self.blocksize()),
        }
    }

    /// Bytes per program page (the chip's, 256 before identification).
    pub fn page_size(&self) -> u32 {
        self.chip
            .as_ref()
            .map(|c| c.geometry.page_size)
            .unwrap_or(chip::DEFAULT_PAGE)
    }

    pub fn window(&self) -> Range<u64> {
        let base = u64::from(self.ext.window);
        base..base + u64::from(self.size())
    }

    /// Whether any byte of `addr..addr+len` falls in the window.
    pub fn overlaps(&self, addr: u32, len: u64) -> bool {
        let w = self.window();
        let a = u64::from(addr);
        a < w.end && w.start < a + len.max(1)
    }

    /// Forget cached reads: call on every write, erase, reset and resume.
    pub fn invalidate(&mut self) {
        self.cache.clear();
        if let Some(r) = self.resident.as_mut() {
            r.forget_ahead();
        }
    }

    /// Window ranges the pending `load` would erase and program.
    pub fn pending_ranges(&self) -> Vec<Range<u32>> {
        self.request
            .units()
            .iter()
            .map(|u| u.address..u.address + u.data.len() as u32)
            .collect()
    }

    /// Drop a half-received `load`.
    pub fn forget_request(&mut self) {
        self.request = FlashRequest::default();
    }

    pub fn has_pending_request(&self) -> bool {
        !self.request.is_empty()
    }

    fn wiring(&self) -> SpiWiring {
        SpiWiring::of(&self.ext)
    }

    fn timeouts(&self) -> Timeouts {
        self.chip
            .as_ref()
            .map(|c| c.timeouts)
            .unwrap_or(Timeouts::W25Q64JV)
    }

    /// Chip offset of a window address range, checked against the size.
    fn offset(&self, addr: u32, len: u32) -> Result<u32, ExtFlashError> {
        let w = self.window();
        let a = u64::from(addr);
        if a < w.start || a + u64::from(len) > w.end {
            return Err(ExtFlashError::OutsideChip {
                address: addr,
                len,
                window: self.ext.window,
                size: self.size(),
            });
        }
        Ok((a - w.start) as u32)
    }

    /// Run `f` in the resident stub session, starting one (save, load,
    /// `stub_init`) unless it is running; refuses to start while the
    /// application holds the chip select. A call that leaves the stub in an
    /// unknown state ends the session at once.
    fn session<R>(
        &mut self,
        core: &mut Core<'_>,
        address: u32,
        len: u32,
        f: impl FnOnce(&mut StubSession<'_, '_>, u32) -> Result<R, ExtFlashError>,
    ) -> Result<R, ExtFlashError> {
        if self.resident.is_none() {
            check_halted(core, address, len)?;
            self.check_spi_free(core, address, len)?;
            let stub = self
                .stub
                .as_ref()
                .map_err(|e| ExtFlashError::StubImage { source: e.clone() })?;
            let config = wiring::config(&self.ext, self.timeouts());
            let started = Resident::start(core, stub, &self.ext, &config, self.stack);
            self.resident = Some(started.map_err(|e| match e {
                ExtFlashError::NoChip { .. } => pin_lock::no_chip_error(core, &self.ext),
                other => other,
            })?);
        }
        let res = self.resident.as_mut().expect("started above");
        let id = res.jedec_id;
        let result = f(&mut res.session(core), id);
        if res.is_broken() {
            let res = self.resident.take().expect("running");
            if let Err(e) = res.end(core) {
                tracing::error!(error = %crate::error::DisplayChain(&e), "ending a failed stub session");
            }
        }
        result
    }

    /// Refuse to touch the chip while the application is using it: chip
    /// select asserted, a frame on the wire, or a DMA stream of its SPI on.
    fn check_spi_free(
        &self,
        core: &mut Core<'_>,
        address: u32,
        len: u32,
    ) -> Result<(), ExtFlashError> {
        if app_bus::cs_asserted(core, &self.ext)? {
            return Err(ExtFlashError::AppInTransaction {
                cs: self.ext.cs,
                address,
                len,
            });
        }
        let activity = app_bus::spi_activity(core, &self.ext)?;
        if activity == SpiActivity::Idle {
            return Ok(());
        }
        Err(ExtFlashError::AppSpiBusy {
            spi: self.ext.spi,
            activity,
            address,
            len,
        })
    }

    /// Whether a stub session is running (the application's state saved).
    pub fn is_resident(&self) -> bool {
        self.resident.is_some()
    }

    /// End the stub session, if any: stop the stub and put back everything
    /// it saved. Call before anything runs, steps or resets the core, at
    /// detach, and before a write to a register or to saved memory.
    pub fn end_session(&mut self, core: &mut Core<'_>) -> Result<(), ExtFlashError> {
        match self.resident.take() {
            Some(res) => res.end(core),
            None => Ok(()),
        }
    }

    /// Whether an access to `addr..addr+len` (outside the window) needs the
    /// session ended first: it touches a register the session changed.
    /// Reads of the work area do not: see [`ExtFlash::overlay_saved`].
    pub fn session_conflicts(&self, addr: u32, len: u32, write: bool) -> bool {
        let Some(res) = &self.resident else {
            return false;
        };
        let (a, e) = (u64::from(addr), u64::from(addr) + u64::from(len));
        let wa = &self.ext.work_area;
        let in_work_area = a < u64::from(wa.end) && u64::from(wa.start) < e;
        res.saved_registers_touch(addr, len) || (write && in_work_area)
    }

    /// Put the application's values of work-area bytes the session saved
    /// into `buf` (read from `addr` while the stub is resident).
    pub fn overlay_saved(&self, addr: u32, buf: &mut [u8]) {
        if let Some(res) = &self.resident {
            res.overlay(addr, buf);
        }
    }

    /// Record a `vFlashErase` in the window (identifies the chip first if
    /// needed, for its size and erase sizes).
    pub fn flash_erase(
        &mut self,
        core: &mut Core<'_>,
        addr: u32,
        len: u32,
    ) -> Result<(), ExtFlashError> {
        self.ensure_identified(core)?;
        let geometry = self.geometry();
        self.request.erase(&[geometry], addr, len)?;
        Ok(())
    }

    /// Record a `vFlashWrite` in the window.
    pub fn flash_write(&mut self, addr: u32, data: &[u8]) -> Result<(), ExtFlashError> {
        self.request.write(addr, data)?;
        Ok(())
    }
}

/// The memory-map XML for a board, with the window as the board file
/// describes it before the chip is identified: its pinned size, else the
/// size of the part its `jedec_id` names, in 4 KiB blocks. With neither,
/// the window is left out: the map never advertises a size nothing said.
pub fn board_memory_map_xml(board: &Board) -> Result<String, MemoryMapError> {
    let window = board.external_flash.as_ref().and_then(|e| {
        let size = e.size.or_else(|| board_part_size(e))?;
        Some(window_region(
            e.window,
            size,
            crate::board::DEFAULT_ERASE_SIZE,
        ))
    });
    memory_map_xml(board, window)
}

/// The size of the part the board file's `jedec_id` names, if the part
/// table knows it.
pub fn board_part_size(ext: &ExtFlashWiring) -> Option<u32> {
    ext.jedec_id
        .and_then(chip::known_part)
        .map(|p| chip::fallback_geometry(p).size)
}

/// Refuse to touch the chip while the core runs (`monitor resume`, `reset
/// run`): the application may be using its SPI at any instant, and only a
/// halted core can run the stub. Without a resident session the core is
/// halted only if DHCSR says so; with one, the stub runs on a core the
/// session halted, so callers check this only when no session runs.
fn check_halted(core: &mut Core<'_>, address: u32, len: u32) -> Result<(), ExtFlashError> {
    // One read of DHCSR (S_HALT), nothing else: probe-rs's status calls
    // read more registers (DFSR) than this needs.
    let dhcsr = probe_io::rd(core, crate::cortex_m::DHCSR)?;
    if dhcsr & crate::cortex_m::DHCSR_S_HALT != 0 {
        Ok(())
    } else {
        Err(ExtFlashError::CoreRunning { address, len })
    }
}

/// Operations on at least this many bytes raise the core clock first.
const LONG_OPERATION: u32 = 64 * 1024;

/// `offset..offset+len` cut into reads of at most `max` bytes.
fn read_pieces(offset: u32, len: u32, max: u32) -> Vec<Range<u32>> {
    let max = max.max(1);
    (0..len.div_ceil(max))
        .map(|i| offset + i * max..offset + ((i + 1) * max).min(len))
        .collect()
}

/// Stub errors carry chip offsets; users think in window addresses.
fn at_window(e: ExtFlashError, window: u32) -> ExtFlashError {
    match e {
        ExtFlashError::Stub {
            op,
            address,
            wiring,
            source,
        } => ExtFlashError::Stub {
            op,
            address: window + address,
            wiring,
            source,
        },
        ExtFlashError::Timeout {
            op,
            address,
            timeout_ms,
        } => ExtFlashError::Timeout {
            op,
            address: window + address,
            timeout_ms,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_a_probe_the_map_has_the_window_only_when_the_board_file_says_its_size() {
        // The size of the part the board file's jedec_id names (the
        // built-in board's W25Q64JV: 8 MiB), never a guess.
        let default = board_memory_map_xml(&Board::builtin()).unwrap();
        assert!(
            default.contains("start=\"0x90000000\" length=\"0x800000\""),
            "{default}"
        );
        let mut anonymous = Board::builtin();
        if let Some(e) = anonymous.external_flash.as_mut() {
            e.jedec_id = None;
            e.size = None;
        }
        let unknown = board_memory_map_xml(&anonymous).unwrap();
        assert!(
            !unknown.contains("type=\"flash\" start=\"0x90000000\""),
            "no size known: no window in the map\n{unknown}"
        );
    }

    #[test]
    fn read_through_pieces_never_exceed_the_stub_buffer() {
        assert_eq!(
            read_pieces(0x100, 0x2500, 0x1000),
            [0x100..0x1100, 0x1100..0x2100, 0x2100..0x2600]
        );
        assert_eq!(
            read_pieces(7, 4, 0x1000),
            std::iter::once(7..11).collect::<Vec<_>>()
        );
        assert!(read_pieces(0, 0, 0x1000).is_empty());
        for p in read_pieces(3, 100_000, 0x1400) {
            assert!(p.end - p.start <= 0x1400);
        }
    }
}

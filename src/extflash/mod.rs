//! The external SPI NOR flash behind the GDB window (0x90000000 by default):
//! identification, reads, CRCs, erase and program, all through the SPI
//! driver stub run in target RAM.
//!
//! One concern per file: [`stub`] parses the embedded stub ELF, [`wiring`]
//! turns the board file into the stub's config block and the register list
//! to preserve, [`resident`] starts and ends a stub session ([`save`] what
//! it disturbs, [`clock`]), [`runner`] runs its calls and streams
//! ([`call`]), [`chip`] interprets JEDEC/SFDP/status bytes, `chip_ops`
//! identifies and erases or unprotects the chip, `read` serves window
//! reads and CRCs, [`cache`] holds window reads. GDB's requests are planned by the shared planner
//! (`crate::flash::plan`). [`ExtFlash`] ties them together for the GDB
//! layer.
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
pub(crate) mod probe_io;
mod read;
pub(crate) mod resident;
pub(crate) mod runner;
pub(crate) mod save;
pub mod stream;
pub mod stub;
pub mod wiring;

use std::ops::Range;
use std::time::Instant;

use extflash_stub_abi::{self as abi, Timeouts};
use probe_rs::Core;

use crate::board::ExtFlashWiring;
use crate::flash::plan::{self, Boundaries, EraseGeometry, FlashRequest};
use crate::flash::{FlashEvent, FlashKind};
pub use app_bus::SpiActivity;
use cache::ReadCache;
use call::{timeout_for, Call};
use chip::{ChipInfo, StatusRegs};
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
            self.resident = Some(Resident::start(core, stub, &self.ext, &config, self.stack)?);
        }
        let res = self.resident.as_mut().expect("started above");
        let id = res.jedec_id;
        let result = f(&mut res.session(core), id);
        if res.is_broken() {
            let res = self.resident.take().expect("running");
            if let Err(e) = res.end(core, &self.ext) {
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
            Some(res) => res.end(core, &self.ext),
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

    /// Execute the accumulated `load` (at `vFlashDone`): erase, then
    /// program, in one stub session. Refuses up front, before erasing
    /// anything, when the status registers configure any protection.
    pub fn commit(
        &mut self,
        core: &mut Core<'_>,
        events: &mut dyn FnMut(FlashEvent),
    ) -> Result<(), ExtFlashError> {
        let request = std::mem::take(&mut self.request);
        if request.is_empty() {
            return Ok(());
        }
        self.ensure_identified(core)?;
        self.cache.clear();
        let chip = self.chip.clone().expect("identified above");
        let kinds = chip.geometry.stub_erase_kinds();
        let sizes: Vec<u32> = kinds.iter().map(|k| k.size()).collect();
        let page = self.page_size();
        let buf_words = self.buffer_len()? / 4;
        let t = chip.timeouts;
        let started = Instant::now();
        let window = self.ext.window;
        let wiring = self.wiring();
        let units = request.units();
        let first = units.first().map(|u| u.address).unwrap_or(window);
        let requested: u64 = units.iter().map(|u| u.data.len() as u64).sum();
        let compress = self.compress;
        const EXT: FlashKind = FlashKind::External;
        let done = self.session(core, first, requested as u32, |s, _| {
            let status = StatusRegs::from_word(s.call(Call::ReadStatus, 0, timeout_for(10, 0))?);
            if status.protects_something() {
                return Err(ExtFlashError::Stub {
                    op: StubOp::ProtectionCheck,
                    address: first,
                    wiring,
                    source: StubStatusError::Protected,
                });
            }
            s.raise_clock()?;
            // Skip unchanged: blocks whose on-chip CRC equals the image's
            // already hold it and need neither erase nor program; erased
            // blocks need programming only. The first `PROBE` bytes are
            // read first: when none of them holds the image already, the
            // rest is not read before the stream (the link would wait for
            // it); the stub then reads each sector/block before erasing it
            // and skips the erase of a blank one, while the link sends.
            let (probe, rest) = probe_units(&units, PROBE);
            let (mut unchanged, mut erased) = unchanged_blocks(s, &probe, window, buf_words)?;
            if !unchanged.is_empty() && !rest.is_empty() {
                let (u, e) = unchanged_blocks(s, &rest, window, buf_words)?;
                unchanged.extend(u);
                erased.extend(e);
                plan::merge_ranges(&mut unchanged);
                plan::merge_ranges(&mut erased);
            }
            let unless_blank = unchanged.is_empty() && !rest.is_empty();
            let changed = plan::without_unchanged(units.clone(), &unchanged);
            let mut plan = plan::plan(&changed, &sizes, page, "external flash")?;
            plan.erases = plan::skip_erased(plan.erases, &erased, &sizes, &chip::typical_erase_ms);

            let skipped = requested - changed.iter().map(|u| u.data.len() as u64).sum::<u64>();
            if skipped > 0 {
                events(FlashEvent::Skipped {
                    flash: EXT,
                    bytes: skipped,
                });
            }
            events(FlashEvent::Started {
                flash: EXT,
                erase_bytes: plan.erase_bytes(),
                program_bytes: plan.program_bytes(),
            });
            let (erase_bytes, program_bytes) = (plan.erase_bytes(), plan.program_bytes());
            // Every erase and program in address order, as one stream: the
            // data of an erased block flows into the slots while it erases.
            let mut steps = plan::steps(plan);
            // The stub reads back every page it programs (a mismatch fails
            // the stream); what is left to check after it is the bytes of
            // the changed ranges nothing programs (0xFF runs left erased).
            // The blank ones (0xFF runs in erased blocks) the stream
            // verifies itself (`VERIFY_BLANK`), with no call of their own.
            let (blank, verify): (Vec<_>, Vec<_>) = unprogrammed(&changed, &steps)
                .into_iter()
                .partition(|v| v.3);
            let blank: Vec<(u32, u32)> = blank.iter().map(|v| (v.0 - window, v.1)).collect();
            for step in &mut steps {
                match step {
                    plan::Step::Erase(e, first) => {
                        e.address -= window;
                        if let Some(p) = first {
                            p.address -= window;
                        }
                    }
                    plan::Step::Program(p) => p.address -= window,
                }
            }
            let (_, slot) = s.layout().stream_slots();
            let packing = stream::Packing {
                capacity: slot - 4,
                page,
                kinds: &kinds,
                timeouts: &t,
                compress,
                unless_blank,
                blank: &blank,
            };
            let packed = stream::pack(&steps, &packing).map_err(ExtFlashError::Stream)?;
            tracing::debug!(
                chunks = packed.chunks.len(),
                program = packed.program_bytes,
                sent = packed.sent_bytes,
                compressed = packed.compressed_bytes,
                "load stream"
            );
            let mut next = 0usize;
            let streamed = s.stream(&packed, &mut |k| {
                next = k + 1;
                for d in &packed.chunks[k].done {
                    events(match *d {
                        // Whether the stub skipped an erase as blank is
                        // known only at the end (`Done::erased`).
                        stream::Done::Erase { .. } if unless_blank => continue,
                        stream::Done::Erase { addr, size } => FlashEvent::Erasing {
                            flash: EXT,
                            address: addr + window,
                            size,
                        },
                        stream::Done::Program { addr, bytes } => FlashEvent::Programmed {
                            flash: EXT,
                            address: addr + window,
                            bytes,
                        },
                    });
                }
            });
            let blank_sectors = match streamed {
                Ok(n) => u64::from(n),
                Err(_) => 0,
            };
            if let Err(err) = streamed {
                // What the chunks not known complete would have changed:
                // the stub releases a chunk before its last operation's
                // busy wait, so the last one released may have failed too.
                let err = at_window(err, window);
                return Err(match packed.span_from(next.saturating_sub(1)) {
                    Some(span) => ExtFlashError::LoadIncomplete {
                        from: span.start + window,
                        to: span.end + window,
                        source: Box::new(err),
                    },
                    _ => err,
                });
            }
            // With the stream's read-backs: the chip holds every byte of
            // the changed ranges, so `vFlashDone` never says OK over a
            // wrong byte.
            for &(address, len, want, _) in &verify {
                let found = s
                    .call(
                        Call::Crc32 {
                            addr: address - window,
                            len,
                        },
                        0,
                        timeout_for(0, u64::from(len) * 2),
                    )
                    .map_err(|err| at_window(err, window))?;
                if found != want {
                    return Err(ExtFlashError::VerifyFailed {
                        address,
                        len,
                        expected: want,
                        found,
                    });
                }
            }
            if packed.compressed_bytes > 0 {
                events(FlashEvent::Compressed {
                    flash: EXT,
                    bytes: packed.compressed_bytes,
                    sent: packed.sent_bytes,
                });
            }
            let erased = erase_bytes.saturating_sub(blank_sectors * u64::from(abi::CRC_BLOCK));
            Ok((erased, program_bytes, skipped))
        })?;
        events(FlashEvent::Done {
            flash: EXT,
            erased: done.0,
            programmed: done.1,
            skipped: done.2,
            elapsed: started.elapsed(),
            board: None,
        });
        Ok(())
    }
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

/// Window ranges whose blocks hold the image already, and ranges the chip
/// holds erased.
type BlockState = (Vec<Range<u32>>, Vec<Range<u32>>);

/// Of the `CRC_BLOCK`-aligned blocks of `units` (window addresses): those
/// whose CRC on the chip equals the image's, and those the chip holds
/// erased (every word all ones), each merged into ranges. Blocks of a unit
/// that is not block-aligned are never skipped.
fn unchanged_blocks(
    s: &mut StubSession<'_, '_>,
    units: &[plan::Unit],
    window: u32,
    buf_words: u32,
) -> Result<BlockState, ExtFlashError> {
    let block = abi::CRC_BLOCK;
    let pair = abi::CRC_BLOCK_WORDS;
    let per_call = (buf_words.saturating_sub(abi::CRC_SCRATCH / 4) / pair).max(1);
    let mut unchanged: Vec<Range<u32>> = Vec::new();
    let mut erased: Vec<Range<u32>> = Vec::new();
    for u in units {
        if u.address % block != 0 || u.data.len() as u32 % block != 0 {
            continue;
        }
        let blocks = u.data.len() as u32 / block;
        let mut i = 0;
        while i < blocks {
            let count = (blocks - i).min(per_call);
            let addr = u.address + i * block;
            s.call(
                Call::CrcBlocks {
                    addr: addr - window,
                    count,
                },
                0,
                timeout_for(0, u64::from(count) * u64::from(block) * 2),
            )
            .map_err(|err| at_window(err, window))?;
            let words = s.read_buffer(count * 4 * pair)?;
            for (j, w) in words.chunks_exact(8).enumerate() {
                let at = (i as usize + j) * block as usize;
                let start = u.address + at as u32;
                let on_chip = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                let and = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
                let image = abi::crc32_update(abi::CRC32_INIT, &u.data[at..at + block as usize]);
                if on_chip == image {
                    unchanged.push(start..start + block);
                }
                if and == u32::MAX {
                    erased.push(start..start + block);
                }
            }
            i += count;
        }
    }
    plan::merge_ranges(&mut unchanged);
    plan::merge_ranges(&mut erased);
    Ok((unchanged, erased))
}

/// Bytes of a `load` whose blocks are read before anything else, to tell
/// a reload (they hold the image: the whole range is read, and unchanged
/// blocks are skipped) from a load of new data (nothing more is read
/// first). One 64 KiB block: 12.5 ms of SPI at 42 MHz.
const PROBE: u32 = 64 * 1024;

/// The `CRC_BLOCK`-aligned units (the only ones [`unchanged_blocks`]
/// reads) cut after their first `max` bytes: (those, the rest).
fn probe_units(units: &[plan::Unit], max: u32) -> (Vec<plan::Unit>, Vec<plan::Unit>) {
    let block = abi::CRC_BLOCK as usize;
    let mut left = max as usize / block * block;
    let (mut probe, mut rest) = (Vec::new(), Vec::new());
    for u in units {
        if u.address % block as u32 != 0 || u.data.len() % block != 0 {
            continue;
        }
        let n = u.data.len().min(left);
        let (a, b) = u.data.split_at(n);
        for (at, data, out) in [(0, a, &mut probe), (n, b, &mut rest)] {
            if !data.is_empty() {
                out.push(plan::Unit {
                    address: u.address + at as u32,
                    data: data.to_vec(),
                });
            }
        }
        left -= n;
    }
    (probe, rest)
}

/// The parts of `changed` (window addresses) that no program in `steps`
/// writes, each with the CRC its image bytes give and whether they are all
/// 0xFF: (address, len, CRC, blank).
fn unprogrammed(changed: &[plan::Unit], steps: &[plan::Step]) -> Vec<(u32, u32, u32, bool)> {
    let mut programmed: Vec<Range<u32>> = steps
        .iter()
        .filter_map(|s| match s {
            plan::Step::Erase(_, p) => p.as_ref(),
            plan::Step::Program(p) => Some(p),
        })
        .map(|p| p.address..p.address + p.data.len() as u32)
        .collect();
    plan::merge_ranges(&mut programmed);
    let mut out = Vec::new();
    for u in changed {
        let end = u.address + u.data.len() as u32;
        let mut gap = |r: Range<u32>| {
            let from = (r.start - u.address) as usize;
            let bytes = &u.data[from..from + r.len()];
            out.push((
                r.start,
                r.len() as u32,
                abi::crc32_update(abi::CRC32_INIT, bytes),
                bytes.iter().all(|&b| b == 0xFF),
            ));
        };
        let mut at = u.address;
        for p in programmed
            .iter()
            .filter(|p| p.end > u.address && p.start < end)
        {
            if p.start > at {
                gap(at..p.start);
            }
            at = at.max(p.end);
        }
        if at < end {
            gap(at..end);
        }
    }
    out
}

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
    fn only_bytes_no_program_writes_are_left_to_verify_after_the_stream() {
        let unit = |address, data: Vec<u8>| plan::Unit { address, data };
        let prog = |address, data: Vec<u8>| plan::Step::Program(plan::ProgramOp { address, data });
        // A unit with a 0xFF run in the middle programmed around, and one
        // nothing programs at all.
        let mut a = vec![1u8; 0x100];
        a.extend([0xFF; 0x200]);
        a.extend([2u8; 0x100]);
        let changed = [
            unit(0x9000_0000, a.clone()),
            unit(0x9001_0000, vec![0xFF; 0x40]),
        ];
        let steps = [
            prog(0x9000_0000, a[..0x100].to_vec()),
            prog(0x9000_0300, a[0x300..].to_vec()),
        ];
        let ff = |n| abi::crc32_update(abi::CRC32_INIT, &vec![0xFF; n]);
        assert_eq!(
            unprogrammed(&changed, &steps),
            vec![
                (0x9000_0100, 0x200, ff(0x200), true),
                (0x9001_0000, 0x40, ff(0x40), true)
            ]
        );
        // Everything programmed: nothing left.
        assert_eq!(unprogrammed(&changed[..1], &[prog(0x9000_0000, a)]), vec![]);
    }

    #[test]
    fn the_probe_takes_the_first_aligned_blocks_only() {
        let unit = |address, n| plan::Unit {
            address,
            data: vec![7; n],
        };
        let units = [
            unit(0x9000_0003, 0x1000),
            unit(0x9001_0000, 0x3000),
            unit(0x9002_0000, 0x2000),
        ];
        let spans = |v: &[plan::Unit]| -> Vec<(u32, usize)> {
            v.iter().map(|u| (u.address, u.data.len())).collect()
        };
        let (p, rest) = probe_units(&units, 0x4000);
        assert_eq!(spans(&p), [(0x9001_0000, 0x3000), (0x9002_0000, 0x1000)]);
        assert_eq!(
            spans(&rest),
            [(0x9002_1000, 0x1000)],
            "half of the last unit"
        );
        let (p, rest) = probe_units(&units, 0x5000);
        assert_eq!(p.len(), 2);
        assert!(rest.is_empty(), "everything a scan would read");
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

//! Flash programming for GDB's `load` (`vFlashErase`, `vFlashWrite`,
//! `vFlashDone`): internal flash through probe-rs, the external-flash
//! window through the SPI stub (`crate::extflash`).
//!
//! Relies on what every client's `load` guarantees (GDB "Packets": the
//! stub may delay erases until `vFlashDone`): each write falls in a range
//! erased earlier in the request, and one `vFlashDone` ends it, also when a
//! single `load` hits internal flash and the window. Not on the order of
//! erases and writes: GDB sends every erase first, LLDB erases and writes
//! block by block (`flash::plan` accepts any order without overlap). So
//! both requests are only recorded (pure plans) until `vFlashDone`, which
//! commits both: the window first (it refuses a
//! write-protected chip before erasing anything), then internal flash
//! through probe-rs's `FlashLoader`, which erases and programs each touched
//! sector once with its built-in STM32F4 algorithm.
//!
//! Side effects of the probe-rs algorithm worth knowing: it resets and halts
//! the core and uses RAM from 0x20000000 (code, page buffers, stack up to
//! 0x20000B58), so RAM that GDB loaded before the flash pieces is clobbered
//! there. Its core registers are not left behind: every register GDB can
//! see (FPU, MSP/PSP and CONTROL included) is read before the algorithm
//! runs and written back after it, as OpenOCD does around its algorithms,
//! so GDB's register cache stays true and a `continue` without a reset
//! does not start on the loader's stack. The core is left halted; GDB sets
//! the PC itself after `load`.

use std::ops::Range;
use std::time::Instant;

use gdbstub::target::ext::flash::Flash;
use gdbstub::target::TargetResult;
use probe_rs::flashing::{DownloadOptions, FlashProgress, ProgressEvent, ProgressOperation};

use super::arch::CortexMRegId;
use super::base::{all_regs, location, write_reg, RegLocation};
use super::{to_target_error, ExecState, GdbError, GdbTarget};
use crate::flash::plan::{without_unchanged, Unit};
use crate::flash::{FlashEvent, FlashKind, FlashRequest};

impl GdbTarget {
    /// Sectors of `units` that already hold the image, by reading them back
    /// (internal flash is memory-mapped): those need no erase or program.
    fn unchanged_sectors(&mut self, units: &[Unit]) -> Result<Vec<Range<u32>>, GdbError> {
        let geometry = self.board.flash_geometry();
        let mut out = Vec::new();
        for u in units {
            let end = u64::from(u.address) + u.data.len() as u64;
            let mut at = u64::from(u.address);
            while at < end {
                let Some(sector) = geometry.iter().find_map(|g| g.unit_at(at)) else {
                    break;
                };
                let sector = sector.start.max(at)..sector.end.min(end);
                let off = (sector.start - u64::from(u.address)) as usize;
                let want = &u.data[off..off + (sector.end - sector.start) as usize];
                let mut have = vec![0u8; want.len()];
                super::base::read_memory(self, sector.start as u32, &mut have)?;
                if have == want {
                    out.push(sector.start as u32..sector.end as u32);
                }
                at = sector.end;
            }
        }
        Ok(out)
    }

    /// Relies on the window being committed first (GDB sends one
    /// `vFlashDone` for both): the stub session ends here, before probe-rs's
    /// flash algorithm takes over the core and RAM.
    fn commit_flash(&mut self, request: FlashRequest) -> Result<(), GdbError> {
        let requested = request.units();
        if requested.is_empty() {
            return Ok(());
        }
        self.end_stub_session()?;
        let unchanged = self.unchanged_sectors(&requested)?;
        let units = without_unchanged(requested.clone(), &unchanged);
        // probe-rs's algorithm resets the core and runs code: keep the
        // registers to put back (only a halted core has any to keep).
        let saved = if units.is_empty() {
            None
        } else {
            self.registers_if_halted()?
        };
        self.forget_target_state();
        self.run_state_chosen = true;
        let skipped: u64 = unchanged.iter().map(|r| u64::from(r.end - r.start)).sum();
        if skipped > 0 {
            (self.events)(&FlashEvent::Skipped {
                flash: FlashKind::Internal,
                bytes: skipped,
            });
        }
        let Some(first) = units.first() else {
            if skipped > 0 {
                (self.events)(&FlashEvent::Done {
                    flash: FlashKind::Internal,
                    erased: 0,
                    programmed: 0,
                    skipped,
                    elapsed: std::time::Duration::ZERO,
                    board: None,
                });
            }
            return Ok(());
        };
        let address = first.address;
        let bytes: usize = units.iter().map(|u| u.data.len()).sum();
        let fail = |source| GdbError::FlashCommit {
            address,
            bytes,
            source,
        };
        let mut loader = self.session.target().flash_loader();
        for u in &units {
            loader.add_data(u.address.into(), &u.data).map_err(fail)?;
        }
        const INT: FlashKind = FlashKind::Internal;
        let events = self.events.clone();
        events(&FlashEvent::Started {
            flash: INT,
            erase_bytes: bytes as u64,
            program_bytes: bytes as u64,
        });
        let started = Instant::now();
        let timed = self.timed_events();
        let mut options = DownloadOptions::new();
        options.verify = true;
        // probe-rs reports sizes, not addresses: count them from the first
        // unit so the events still say where programming has got to.
        let (mut erased_at, mut programmed_at) = (address, address);
        options.progress = FlashProgress::new(move |e| {
            if let ProgressEvent::Progress {
                operation, size, ..
            } = e
            {
                let size = size as u32;
                match operation {
                    ProgressOperation::Erase => {
                        events(&FlashEvent::Erasing {
                            flash: INT,
                            address: erased_at,
                            size,
                        });
                        erased_at = erased_at.wrapping_add(size);
                    }
                    ProgressOperation::Program => {
                        events(&FlashEvent::Programmed {
                            flash: INT,
                            address: programmed_at,
                            bytes: size,
                        });
                        programmed_at = programmed_at.wrapping_add(size);
                    }
                    ProgressOperation::Fill | ProgressOperation::Verify => {}
                }
            }
        });
        let committed = loader.commit(&mut self.session, options).map_err(fail);
        self.exec = ExecState::Halted;
        if let Some(values) = saved {
            // Also after a failed commit: the core must not keep the
            // loader's registers either way.
            let restored = self
                .core()
                .and_then(|mut core| put_back(&mut core, &values));
            match (&committed, restored) {
                (_, Ok(())) => self.reg_cache = Some(values),
                (Err(_), Err(e)) => {
                    tracing::warn!(error = %crate::error::DisplayChain(&e), "restoring the core registers after a failed flash commit");
                }
                (Ok(()), Err(e)) => return Err(e),
            }
        }
        committed?;
        timed(&FlashEvent::Done {
            flash: INT,
            erased: bytes as u64,
            programmed: bytes as u64,
            skipped,
            elapsed: started.elapsed(),
            board: None,
        });
        Ok(())
    }

    /// Every register by GDB number, or `None` while the core runs.
    fn registers_if_halted(&mut self) -> Result<Option<Vec<u64>>, GdbError> {
        let halted = self
            .core()?
            .core_halted()
            .map_err(|source| GdbError::Status { source })?;
        if !halted {
            return Ok(None);
        }
        self.all_registers().map(Some)
    }

    fn commit_ext_flash(&mut self) -> Result<(), GdbError> {
        if !self.ext.as_ref().is_some_and(|e| e.has_pending_request()) {
            return Ok(());
        }
        let events = self.timed_events();
        self.with_ext(|ext, core| ext.commit(core, &mut |e| events(&e)))
    }

    /// Drop both halves of a `load` that failed: GDB sends no `vFlashDone`
    /// after an error, so a later `load` must not inherit its requests.
    pub(super) fn forget_load(&mut self) {
        // Dropped ranges stay until the `vFlashDone` that reports them.
        self.flash = FlashRequest::default();
        if let Some(e) = self.ext.as_mut() {
            e.forget_request();
        }
    }

    /// A failed request ends the `load` it belongs to: everything it had
    /// accepted is dropped, and remembered with the refused range so that
    /// a `vFlashDone` for it does not answer OK.
    fn load_step(
        &mut self,
        refused: Range<u64>,
        result: Result<(), GdbError>,
    ) -> TargetResult<(), Self> {
        result.map_err(|e| {
            let mut dropped: Vec<Range<u64>> = self
                .flash
                .units()
                .iter()
                .map(|u| u64::from(u.address)..u64::from(u.address) + u.data.len() as u64)
                .collect();
            if let Some(ext) = self.ext.as_ref() {
                dropped.extend(
                    ext.pending_ranges()
                        .into_iter()
                        .map(|r| u64::from(r.start)..u64::from(r.end)),
                );
            }
            dropped.push(refused);
            self.load_dropped.extend(dropped);
            crate::flash::plan::merge_ranges(&mut self.load_dropped);
            tracing::warn!(
                dropped = %ranges_text(&self.load_dropped),
                "a flash request was refused: the load is dropped"
            );
            self.forget_load();
            to_target_error(e)
        })
    }

    /// Before a `vFlashErase`: one that comes after a refused request with
    /// nothing accepted since starts a new `load` (GDB sends no
    /// `vFlashDone` after an error), so the dropped one is only logged.
    fn new_load_after_drop(&mut self) {
        let pending =
            !self.flash.is_empty() || self.ext.as_ref().is_some_and(|e| e.has_pending_request());
        if !self.load_dropped.is_empty() && !pending {
            tracing::warn!(
                dropped = %ranges_text(&self.load_dropped),
                "a new load starts; the refused one left these ranges unprogrammed"
            );
            self.load_dropped.clear();
        }
    }
}

/// `0x90010000..0x90011000, 0x90020000..0x90020004`.
fn ranges_text(ranges: &[Range<u64>]) -> String {
    ranges
        .iter()
        .map(|r| format!("{:#010x}..{:#010x}", r.start, r.end))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Write back every register of `values` (by GDB number) in an order that
/// keeps each one: CONTROL and the other special registers first (CONTROL
/// picks which stack pointer `sp` is), then MSP and PSP, the core and FPU
/// registers, xPSR, and the PC last. `sp` itself is not written: it is MSP
/// or PSP, already put back.
fn put_back(core: &mut probe_rs::Core<'_>, values: &[u64]) -> Result<(), GdbError> {
    let mut extra = 0u32;
    for reg in all_regs() {
        if let RegLocation::ExtraByte(i) = location(reg) {
            extra = super::base::set_extra_byte(extra, i, values[reg.regnum()] as u32);
        }
    }
    core.write_core_reg(probe_rs::RegisterId(crate::cortex_m::regsel::EXTRA), extra)
        .map_err(|source| GdbError::RegisterWrite {
            register: "control/faultmask/basepri/primask".into(),
            source,
        })?;
    let order = [CortexMRegId::Msp, CortexMRegId::Psp]
        .into_iter()
        .chain(all_regs().filter(|r| {
            !matches!(location(*r), RegLocation::ExtraByte(_))
                && !matches!(
                    r,
                    CortexMRegId::Msp | CortexMRegId::Psp | CortexMRegId::Core(13 | 15)
                )
        }))
        .chain([CortexMRegId::Core(15)]);
    for reg in order {
        write_reg(core, reg, values[reg.regnum()])?;
    }
    Ok(())
}

impl Flash for GdbTarget {
    fn flash_erase(&mut self, start_addr: u32, length: u32) -> TargetResult<(), Self> {
        self.new_load_after_drop();
        let refused = u64::from(start_addr)..u64::from(start_addr) + u64::from(length);
        let result = if let Err(e) = self.refuse_unmapped_write(start_addr, length as usize) {
            Err(e)
        } else if self.in_window(start_addr, length.into()) {
            self.with_ext(|ext, core| ext.flash_erase(core, start_addr, length))
        } else {
            let flashes = self.board.flash_geometry();
            self.flash
                .erase(&flashes, start_addr, length)
                .map_err(GdbError::from)
        };
        self.load_step(refused, result)
    }

    fn flash_write(&mut self, start_addr: u32, data: &[u8]) -> TargetResult<(), Self> {
        let refused = u64::from(start_addr)..u64::from(start_addr) + data.len() as u64;
        let result = if let Err(e) = self.refuse_unmapped_write(start_addr, data.len()) {
            Err(e)
        } else if self.in_window(start_addr, data.len() as u64) {
            // Only buffered until vFlashDone: no core handle (probe-rs
            // reads the AP's registers for each one, a USB round trip each).
            match self.ext.as_mut() {
                Some(ext) => ext.flash_write(start_addr, data).map_err(GdbError::from),
                None => Err(GdbError::ExtFlash(
                    crate::extflash::ExtFlashError::NotConfigured,
                )),
            }
        } else {
            self.flash.write(start_addr, data).map_err(GdbError::from)
        };
        self.load_step(refused, result)
    }

    /// OK only when everything accepted since the last `vFlashDone` was
    /// programmed and verified (the window by on-chip CRC, internal flash
    /// by probe-rs's verify).
    fn flash_done(&mut self) -> TargetResult<(), Self> {
        if !self.load_dropped.is_empty() {
            let mut dropped = std::mem::take(&mut self.load_dropped);
            dropped.extend(
                self.flash
                    .units()
                    .iter()
                    .map(|u| u64::from(u.address)..u64::from(u.address) + u.data.len() as u64),
            );
            crate::flash::plan::merge_ranges(&mut dropped);
            self.forget_load();
            let e = GdbError::LoadDropped {
                ranges: ranges_text(&dropped),
            };
            tracing::error!(error = %e, "load left undone");
            return Err(to_target_error(e));
        }
        let request = std::mem::take(&mut self.flash);
        let ext = self.commit_ext_flash();
        if ext.is_err() {
            // Nothing of this load is programmed when the window fails.
            self.forget_load();
        }
        ext.map_err(to_target_error)?;
        self.commit_flash(request).map_err(to_target_error)
    }
}

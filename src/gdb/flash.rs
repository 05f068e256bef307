//! Flash programming for GDB's `load` (`vFlashErase`, `vFlashWrite`,
//! `vFlashDone`): internal flash through probe-rs, the external-flash
//! window through the SPI stub (`crate::extflash`).
//!
//! Relies on GDB's `load` sequence (gdbstub's `Flash` docs, GDB "Packets"):
//! every erase first, then the writes in increasing address order, then one
//! `vFlashDone`, also when a single `load` hits internal flash and the
//! window. So both requests are only recorded (pure plans) until
//! `vFlashDone`, which commits both: the window first (it refuses a
//! write-protected chip before erasing anything), then internal flash
//! through probe-rs's `FlashLoader`, which erases and programs each touched
//! sector once with its built-in STM32F4 algorithm.
//!
//! Side effects of the probe-rs algorithm worth knowing: it resets and halts
//! the core and uses RAM from 0x20000000 (code, page buffers, stack up to
//! 0x20000B58), so RAM that GDB loaded before the flash pieces is clobbered
//! there. The core is left halted; GDB sets the PC itself after `load`.

use std::ops::Range;
use std::time::Instant;

use gdbstub::target::ext::flash::Flash;
use gdbstub::target::TargetResult;
use probe_rs::flashing::{DownloadOptions, FlashProgress, ProgressEvent, ProgressOperation};

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
        // probe-rs's algorithm resets the core and runs code.
        self.forget_target_state();
        self.run_state_chosen = true;
        let unchanged = self.unchanged_sectors(&requested)?;
        let units = without_unchanged(requested.clone(), &unchanged);
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
        let mut options = DownloadOptions::new();
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
        loader.commit(&mut self.session, options).map_err(fail)?;
        self.exec = ExecState::Halted;
        (self.events)(&FlashEvent::Done {
            flash: INT,
            erased: bytes as u64,
            programmed: bytes as u64,
            skipped,
            elapsed: started.elapsed(),
        });
        Ok(())
    }

    fn commit_ext_flash(&mut self) -> Result<(), GdbError> {
        if !self.ext.as_ref().is_some_and(|e| e.has_pending_request()) {
            return Ok(());
        }
        let events = self.events.clone();
        self.with_ext(|ext, core| ext.commit(core, &mut |e| events(&e)))
    }

    /// Drop both halves of a `load` that failed: GDB sends no `vFlashDone`
    /// after an error, so a later `load` must not inherit its requests.
    pub(super) fn forget_load(&mut self) {
        self.flash = FlashRequest::default();
        if let Some(e) = self.ext.as_mut() {
            e.forget_request();
        }
    }

    /// A failed request ends the `load` it belongs to.
    fn load_step(&mut self, result: Result<(), GdbError>) -> TargetResult<(), Self> {
        result.map_err(|e| {
            self.forget_load();
            to_target_error(e)
        })
    }
}

impl Flash for GdbTarget {
    fn flash_erase(&mut self, start_addr: u32, length: u32) -> TargetResult<(), Self> {
        let result = if self.in_window(start_addr, length.into()) {
            self.with_ext(|ext, core| ext.flash_erase(core, start_addr, length))
        } else {
            let flashes = self.board.flash_geometry();
            self.flash
                .erase(&flashes, start_addr, length)
                .map_err(GdbError::from)
        };
        self.load_step(result)
    }

    fn flash_write(&mut self, start_addr: u32, data: &[u8]) -> TargetResult<(), Self> {
        let result = if self.in_window(start_addr, data.len() as u64) {
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
        self.load_step(result)
    }

    fn flash_done(&mut self) -> TargetResult<(), Self> {
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

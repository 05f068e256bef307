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

use gdbstub::target::ext::flash::Flash;
use gdbstub::target::TargetResult;
use probe_rs::flashing::DownloadOptions;

use super::flash_plan::FlashPlan;
use super::{to_target_error, ExecState, GdbError, GdbTarget};
use crate::extflash::Event;

impl GdbTarget {
    fn commit_flash(&mut self, plan: FlashPlan) -> Result<(), GdbError> {
        let segments = plan.segments();
        let Some(first) = segments.first() else {
            return Ok(());
        };
        let address = first.address;
        let bytes: usize = segments.iter().map(|s| s.data.len()).sum();
        let fail = |source| GdbError::FlashCommit {
            address,
            bytes,
            source,
        };
        let mut loader = self.session.target().flash_loader();
        for s in &segments {
            loader.add_data(s.address.into(), &s.data).map_err(fail)?;
        }
        tracing::info!(
            sectors_bytes = bytes,
            written = plan.written_bytes(),
            "programming internal flash at {address:#010x}"
        );
        let started = std::time::Instant::now();
        loader
            .commit(&mut self.session, DownloadOptions::new())
            .map_err(fail)?;
        self.exec = ExecState::Halted;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "internal flash programmed"
        );
        Ok(())
    }

    fn commit_ext_flash(&mut self) -> Result<(), GdbError> {
        if !self.ext.as_ref().is_some_and(|e| e.has_pending_request()) {
            return Ok(());
        }
        self.with_ext(|ext, core| {
            let window = ext.config().window;
            ext.commit(core, &mut |e| log_event(window, &e))
        })
    }
}

/// Progress events as log lines (the binary's only output channel here).
pub(crate) fn log_event(window: u32, e: &Event) {
    match e {
        Event::Erasing { offset, size } => {
            tracing::info!(
                "external flash: erasing {size:#x} bytes at {:#010x}",
                window + offset
            )
        }
        Event::Programmed { offset, bytes } => {
            tracing::info!(
                "external flash: programmed {bytes} bytes at {:#010x}",
                window + offset
            )
        }
        Event::Done {
            erased,
            programmed,
            elapsed,
        } => {
            let secs = elapsed.as_secs_f64().max(1e-3);
            tracing::info!(
                "external flash: erased {erased} bytes, programmed {programmed} bytes in {:.2} s ({:.1} KB/s)",
                secs,
                *programmed as f64 / 1024.0 / secs
            )
        }
        other => tracing::info!("external flash: {other:?}"),
    }
}

impl Flash for GdbTarget {
    fn flash_erase(&mut self, start_addr: u32, length: u32) -> TargetResult<(), Self> {
        if self.in_window(start_addr, length.into()) {
            return self
                .with_ext(|ext, core| ext.flash_erase(core, start_addr, length))
                .map_err(to_target_error);
        }
        let board = self.board.clone();
        self.flash
            .erase(&board, start_addr, length)
            .map_err(|e| to_target_error(e.into()))
    }

    fn flash_write(&mut self, start_addr: u32, data: &[u8]) -> TargetResult<(), Self> {
        if self.in_window(start_addr, data.len() as u64) {
            return self
                .with_ext(|ext, _| ext.flash_write(start_addr, data))
                .map_err(to_target_error);
        }
        self.flash
            .write(start_addr, data)
            .map_err(|e| to_target_error(e.into()))
    }

    fn flash_done(&mut self) -> TargetResult<(), Self> {
        let plan = std::mem::take(&mut self.flash);
        let ext = self.commit_ext_flash();
        if ext.is_err() {
            // Nothing of this load is programmed when the window fails.
            if let Some(e) = self.ext.as_mut() {
                e.forget_request();
            }
        }
        ext.map_err(to_target_error)?;
        self.commit_flash(plan).map_err(to_target_error)
    }
}

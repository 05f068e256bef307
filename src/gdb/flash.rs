//! Internal flash programming for GDB's `load` (`vFlashErase`,
//! `vFlashWrite`, `vFlashDone`).
//!
//! GDB sends every erase first, then the writes in increasing address order,
//! then one `vFlashDone` (gdbstub's `Flash` docs, GDB "Packets"). We only
//! record requests in a pure [`FlashPlan`] until `vFlashDone` and then hand
//! the whole image to probe-rs's `FlashLoader`, which erases and programs
//! each touched sector once with its built-in STM32F4 algorithm.
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
}

impl Flash for GdbTarget {
    fn flash_erase(&mut self, start_addr: u32, length: u32) -> TargetResult<(), Self> {
        let board = self.board.clone();
        self.flash
            .erase(&board, start_addr, length)
            .map_err(|e| to_target_error(e.into()))
    }

    fn flash_write(&mut self, start_addr: u32, data: &[u8]) -> TargetResult<(), Self> {
        self.flash
            .write(start_addr, data)
            .map_err(|e| to_target_error(e.into()))
    }

    fn flash_done(&mut self) -> TargetResult<(), Self> {
        let plan = std::mem::take(&mut self.flash);
        self.commit_flash(plan).map_err(to_target_error)
    }
}

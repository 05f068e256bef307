//! Continue and single-step (`vCont;c`, `vCont;s`, `c`, `s`).
//!
//! Single-thread base on purpose: gdbstub 0.7.9+ checks scheduler locking
//! for multi-thread targets and broke `next`/`continue` after a breakpoint
//! (gdbstub issue 200); the single-thread path is unaffected.
//!
//! `resume` only starts the core; the worker then polls
//! [`GdbTarget::poll_stop`] until it halts. `step` completes synchronously
//! (probe-rs waits for the halt) and leaves the stop ready to report.

use gdbstub::common::Signal;
use gdbstub::target::ext::base::singlethread::{
    SingleThreadResume, SingleThreadSingleStep, SingleThreadSingleStepOps,
};

use super::{fatal_only, ExecState, GdbError, GdbTarget, SessionFault, StopReason};

impl SingleThreadResume for GdbTarget {
    fn resume(&mut self, signal: Option<Signal>) -> Result<(), SessionFault> {
        if let Some(signal) = signal {
            // A bare-metal core has no signals to deliver.
            tracing::debug!(%signal, "ignoring signal on continue");
        }
        // The application may change the external flash while it runs.
        self.forget_target_state();
        let result = self.end_stub_session().and_then(|()| {
            self.core()
                .and_then(|mut core| core.run().map_err(|source| GdbError::Resume { source }))
        });
        match result {
            Ok(()) => self.exec = ExecState::Running,
            Err(e) => {
                fatal_only(e)?;
                // GDB waits for a stop; report one rather than hang.
                self.exec = ExecState::Stopped(StopReason::Signal(Signal::SIGTRAP));
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for GdbTarget {
    fn step(&mut self, signal: Option<Signal>) -> Result<(), SessionFault> {
        if let Some(signal) = signal {
            tracing::debug!(%signal, "ignoring signal on step");
        }
        self.forget_target_state();
        let result = self.end_stub_session().and_then(|()| {
            self.core()
                .and_then(|mut core| core.step().map_err(|source| GdbError::Step { source }))
        });
        let stop = match result {
            Ok(_) => StopReason::DoneStep,
            Err(e) => {
                fatal_only(e)?;
                StopReason::Signal(Signal::SIGTRAP)
            }
        };
        self.exec = ExecState::Stopped(stop);
        Ok(())
    }
}

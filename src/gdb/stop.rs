//! Stop classification: polling a running core, Ctrl-C, and mapping
//! probe-rs's halt reasons to the stop replies GDB expects (`swbreak`,
//! `hwbreak`, `watch`, signals).

use gdbstub::common::Signal;
use gdbstub::stub::SingleThreadStopReason;
use probe_rs::{CoreStatus, HaltReason};

use super::error::{fatal_only, GdbError, SessionFault};
use super::GdbTarget;
use crate::cortex_m::{regsel, HALT_TIMEOUT};

/// Stop reason type reported to gdbstub.
pub type StopReason = SingleThreadStopReason<u32>;

/// What the core is doing from GDB's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecState {
    Halted,
    Running,
    /// A stop is ready to report without polling (after a step, or a resume
    /// that failed).
    Stopped(StopReason),
}

impl GdbTarget {
    /// Poll a running core. `Ok(None)` while it runs.
    pub fn poll_stop(&mut self) -> Result<Option<StopReason>, SessionFault> {
        match self.exec {
            ExecState::Halted => return Ok(None),
            ExecState::Stopped(reason) => {
                self.exec = ExecState::Halted;
                return Ok(Some(reason));
            }
            ExecState::Running => {}
        }
        let status = match self
            .core()
            .and_then(|mut core| core.status().map_err(|source| GdbError::Status { source }))
        {
            Ok(s) => s,
            Err(e) => {
                fatal_only(e)?;
                return Ok(None);
            }
        };
        let reason = match status {
            CoreStatus::Halted(reason) => reason,
            CoreStatus::LockedUp => {
                if let Err(e) = self.halt_core() {
                    fatal_only(e)?;
                }
                let hint = self.lockup_hint();
                let hint = hint.as_deref().unwrap_or("core is locked up");
                tracing::warn!("{hint}; halted it: GDB sees SIGSEGV");
                self.exec = ExecState::Halted;
                return Ok(Some(StopReason::Signal(Signal::SIGSEGV)));
            }
            CoreStatus::Running | CoreStatus::Sleeping | CoreStatus::Unknown => return Ok(None),
        };
        self.exec = ExecState::Halted;
        match self.classify_halt(reason) {
            Ok(stop) => Ok(Some(stop)),
            Err(e) => {
                fatal_only(e)?;
                Ok(Some(StopReason::Signal(Signal::SIGTRAP)))
            }
        }
    }

    /// Handle GDB's Ctrl-C: halt and report SIGINT.
    pub fn interrupt(&mut self) -> Result<StopReason, SessionFault> {
        self.forget_target_state();
        if let Err(e) = self.end_stub_session() {
            fatal_only(e)?;
        }
        if let Err(e) = self.halt_core() {
            fatal_only(e)?;
        }
        self.exec = ExecState::Halted;
        Ok(StopReason::Signal(Signal::SIGINT))
    }

    fn halt_core(&mut self) -> Result<(), GdbError> {
        let mut core = self.core()?;
        core.halt(HALT_TIMEOUT)
            .map_err(|source| GdbError::Halt { source })?;
        Ok(())
    }

    /// Map probe-rs's halt reason to what GDB expects: our `BKPT` (or a
    /// comparator serving a `Z0`) → swbreak, an FPB hit → hwbreak, a DWT hit → watch with its address.
    fn classify_halt(&mut self, reason: HaltReason) -> Result<StopReason, GdbError> {
        let stop = match reason {
            HaltReason::Breakpoint(_) | HaltReason::Multiple | HaltReason::Unknown => {
                let pc = self.read_pc()?;
                if self.sw_breakpoint_at(pc) {
                    StopReason::SwBreak(())
                } else if self.hw_breakpoints.contains_key(&pc) {
                    StopReason::HwBreak(())
                } else if let Some(w) = self.matched_watchpoint()? {
                    w
                } else {
                    StopReason::Signal(Signal::SIGTRAP)
                }
            }
            HaltReason::Watchpoint => self
                .matched_watchpoint()?
                .unwrap_or(StopReason::Signal(Signal::SIGTRAP)),
            HaltReason::Step => StopReason::DoneStep,
            HaltReason::Request | HaltReason::External => StopReason::Signal(Signal::SIGINT),
            HaltReason::Exception => StopReason::Signal(Signal::SIGTRAP),
        };
        tracing::debug!(?reason, ?stop, "core halted");
        Ok(stop)
    }

    fn read_pc(&mut self) -> Result<u32, GdbError> {
        let mut core = self.core()?;
        core.read_core_reg::<u32>(probe_rs::RegisterId(regsel::PC))
            .map_err(|source| GdbError::RegisterRead {
                register: "pc".into(),
                source,
            })
    }
}

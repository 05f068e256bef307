//! Extended remote (`target extended-remote`): `run` resets the chip and
//! halts at the reset vector, `attach` halts, `kill` halts (the board cannot
//! be "killed"; the connection stays; `vKill` gets `OK`, `k` the exit
//! reply `X09` from `server::worker`), restart is reset-and-halt.

use gdbstub::common::Pid;
use gdbstub::target::ext::extended_mode::{Args, AttachKind, ExtendedMode, ShouldTerminate};
use gdbstub::target::TargetResult;

use super::{fatal_only, to_target_error, ExecState, GdbError, GdbTarget, SessionFault};
use crate::cortex_m::{HALT_TIMEOUT, RESET_TIMEOUT};

/// The one "process": the core.
const PID: usize = 1;

impl GdbTarget {
    fn reset_halt(&mut self) -> Result<(), GdbError> {
        self.forget_target_state();
        self.run_state_chosen = true;
        self.end_stub_session()?;
        self.core()?
            .reset_and_halt(RESET_TIMEOUT)
            .map_err(|source| GdbError::Reset { source })?;
        self.exec = ExecState::Halted;
        Ok(())
    }

    fn halt_if_running(&mut self) -> Result<(), GdbError> {
        self.forget_target_state();
        self.run_state_chosen = true;
        self.end_stub_session()?;
        {
            let mut core = self.core()?;
            if !core
                .core_halted()
                .map_err(|source| GdbError::Status { source })?
            {
                core.halt(HALT_TIMEOUT)
                    .map_err(|source| GdbError::Halt { source })?;
            }
        }
        self.exec = ExecState::Halted;
        Ok(())
    }
}

impl GdbTarget {
    /// `k` from the client: halt the core (a board cannot be killed); the
    /// connection stays (the packet layer sends the exit reply).
    pub(crate) fn kill_halt(&mut self) -> Result<(), GdbError> {
        self.halt_if_running()
    }
}

impl ExtendedMode for GdbTarget {
    fn run(&mut self, _filename: Option<&[u8]>, _args: Args<'_, '_>) -> TargetResult<Pid, Self> {
        self.reset_halt().map_err(to_target_error)?;
        Ok(Pid::new(PID).expect("non-zero"))
    }

    fn attach(&mut self, _pid: Pid) -> TargetResult<(), Self> {
        self.halt_if_running().map_err(to_target_error)
    }

    fn query_if_attached(&mut self, _pid: Pid) -> TargetResult<AttachKind, Self> {
        Ok(AttachKind::Attach)
    }

    fn kill(&mut self, _pid: Option<Pid>) -> TargetResult<ShouldTerminate, Self> {
        self.halt_if_running().map_err(to_target_error)?;
        Ok(ShouldTerminate::No)
    }

    fn restart(&mut self) -> Result<(), SessionFault> {
        self.reset_halt().or_else(fatal_only)
    }
}

//! The gdbstub [`Target`] for one Cortex-M4F core behind a probe-rs
//! [`Session`], with one file per GDB extension.
//!
//! Owns the per-connection debug state (software breakpoints, watchpoint
//! slots, the pending flash plan). It runs only on the probe worker thread
//! (`server::worker`) and never touches sockets: it talks to probe-rs and
//! returns results to gdbstub.
//!
//! Errors come in two tiers, chosen by variant ([`GdbError::is_probe_lost`]):
//! a lost probe is [`TargetError::Fatal`] and ends the session; everything
//! else becomes an `E xx` reply ([`GdbError::errno`]).

pub mod arch;
mod base;
mod breakpoints;
pub mod crc;
mod extended_mode;
mod flash;
pub mod flash_plan;
mod memory_map;
pub mod monitor;
mod resume;
pub mod tdesc;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::stub::SingleThreadStopReason;
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::{Target, TargetError};
use probe_rs::{Core, CoreStatus, HaltReason, Session};

use crate::board::Board;
use crate::extflash::{ExtFlash, ExtFlashError};
use arch::CortexM4F;
pub use breakpoints::{dwt_match, DwtMatch, WatchSlot};
use flash_plan::{FlashPlan, FlashPlanError};

/// Stop reason type reported to gdbstub.
pub type StopReason = SingleThreadStopReason<u32>;

/// How long a halt request may take before we call the core unresponsive.
pub const HALT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long reset-and-halt may take.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(1);

/// The probe went away: the session cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SessionFault {
    #[error("debug probe lost: {source}")]
    ProbeLost {
        #[source]
        source: GdbError,
    },
}

/// Something GDB can live with (an `E xx` reply), unless
/// [`GdbError::is_probe_lost`] says the probe itself is gone.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    #[error("cannot access core 0")]
    Core {
        #[source]
        source: probe_rs::Error,
    },
    #[error("reading {len} bytes at {address:#010x} failed")]
    MemoryRead {
        address: u32,
        len: usize,
        #[source]
        source: probe_rs::Error,
    },
    #[error("writing {len} bytes at {address:#010x} failed")]
    MemoryWrite {
        address: u32,
        len: usize,
        #[source]
        source: probe_rs::Error,
    },
    #[error("access of {len} bytes at {address:#010x} wraps past 4 GiB")]
    MemoryWraps { address: u32, len: usize },
    #[error("reading register {register} failed")]
    RegisterRead {
        register: String,
        #[source]
        source: probe_rs::Error,
    },
    #[error("writing register {register} failed")]
    RegisterWrite {
        register: String,
        #[source]
        source: probe_rs::Error,
    },
    #[error("halting the core failed")]
    Halt {
        #[source]
        source: probe_rs::Error,
    },
    #[error("resuming the core failed")]
    Resume {
        #[source]
        source: probe_rs::Error,
    },
    #[error("single-stepping the core failed")]
    Step {
        #[source]
        source: probe_rs::Error,
    },
    #[error("reading the core status failed")]
    Status {
        #[source]
        source: probe_rs::Error,
    },
    #[error("reset failed")]
    Reset {
        #[source]
        source: probe_rs::Error,
    },
    #[error("setting a hardware breakpoint at {address:#010x} failed")]
    HwBreakpoint {
        address: u32,
        #[source]
        source: probe_rs::Error,
    },
    #[error(
        "software breakpoint at {address:#010x} did not stick (read back {found:#06x}): \
         is it in flash or read-only memory?"
    )]
    SwBreakpointNotWritable { address: u32, found: u16 },
    #[error("programming the DWT comparator {slot} for a watchpoint at {address:#010x} failed")]
    Watchpoint {
        slot: usize,
        address: u32,
        #[source]
        source: probe_rs::Error,
    },
    #[error("flash request rejected")]
    FlashPlan(#[from] FlashPlanError),
    #[error("programming internal flash ({bytes} bytes at {address:#010x}) failed")]
    FlashCommit {
        address: u32,
        bytes: usize,
        #[source]
        source: probe_rs::flashing::FlashError,
    },
    #[error("reading {len} bytes of external flash at {address:#010x} failed")]
    ExtFlashRead {
        address: u32,
        len: usize,
        #[source]
        source: ExtFlashError,
    },
    #[error("external flash")]
    ExtFlash(#[from] ExtFlashError),
}

impl GdbError {
    /// The `E xx` code GDB sees. Stable; documented for users:
    /// 0x01 core/halt/resume/reset, 0x02 register, 0x0e memory,
    /// 0x10 breakpoint/watchpoint, 0x05 flash.
    pub fn errno(&self) -> u8 {
        match self {
            GdbError::Core { .. }
            | GdbError::Halt { .. }
            | GdbError::Resume { .. }
            | GdbError::Step { .. }
            | GdbError::Status { .. }
            | GdbError::Reset { .. } => 0x01,
            GdbError::RegisterRead { .. } | GdbError::RegisterWrite { .. } => 0x02,
            GdbError::MemoryRead { .. }
            | GdbError::MemoryWrite { .. }
            | GdbError::MemoryWraps { .. } => 0x0e,
            GdbError::HwBreakpoint { .. }
            | GdbError::SwBreakpointNotWritable { .. }
            | GdbError::Watchpoint { .. } => 0x10,
            GdbError::ExtFlashRead { .. } => 0x0e,
            GdbError::FlashPlan(_) | GdbError::FlashCommit { .. } | GdbError::ExtFlash(_) => 0x05,
        }
    }

    /// The probe-rs error underneath, if any.
    pub fn probe_error(&self) -> Option<&probe_rs::Error> {
        match self {
            GdbError::Core { source }
            | GdbError::MemoryRead { source, .. }
            | GdbError::MemoryWrite { source, .. }
            | GdbError::RegisterRead { source, .. }
            | GdbError::RegisterWrite { source, .. }
            | GdbError::Halt { source }
            | GdbError::Resume { source }
            | GdbError::Step { source }
            | GdbError::Status { source }
            | GdbError::Reset { source }
            | GdbError::HwBreakpoint { source, .. }
            | GdbError::Watchpoint { source, .. } => Some(source),
            GdbError::ExtFlashRead { source, .. } | GdbError::ExtFlash(source) => {
                source.probe_error()
            }
            GdbError::MemoryWraps { .. }
            | GdbError::SwBreakpointNotWritable { .. }
            | GdbError::FlashPlan(_)
            | GdbError::FlashCommit { .. } => None,
        }
    }

    /// Whether this error means the probe (USB link) is gone.
    pub fn is_probe_lost(&self) -> bool {
        self.probe_error().is_some_and(is_probe_lost)
    }
}

/// A probe-rs error that means the probe is gone, by variant: USB I/O
/// failure, the probe could not be (re)opened, or it is no longer attached.
/// Target-side failures (faults, timeouts, wrong state) are not.
pub fn is_probe_lost(e: &probe_rs::Error) -> bool {
    use probe_rs::architecture::arm::ArmError;
    use probe_rs::probe::DebugProbeError;
    let probe = match e {
        probe_rs::Error::Probe(p) => p,
        probe_rs::Error::Arm(ArmError::Probe(p)) => p,
        _ => return false,
    };
    matches!(
        probe,
        DebugProbeError::Usb(_)
            | DebugProbeError::ProbeCouldNotBeCreated(_)
            | DebugProbeError::NotAttached
    )
}

/// Turn an error into gdbstub's two tiers, logging it.
pub(crate) fn to_target_error(e: GdbError) -> TargetError<SessionFault> {
    if e.is_probe_lost() {
        tracing::error!(error = %DisplayChain(&e), "debug probe lost");
        TargetError::Fatal(SessionFault::ProbeLost { source: e })
    } else {
        tracing::warn!(error = %DisplayChain(&e), errno = e.errno(), "replying with an error");
        TargetError::Errno(e.errno())
    }
}

/// Like [`to_target_error`] for methods whose error type is the fatal one:
/// a non-fatal error is logged and swallowed.
pub(crate) fn fatal_only(e: GdbError) -> Result<(), SessionFault> {
    match to_target_error(e) {
        TargetError::Fatal(f) => Err(f),
        _ => Ok(()),
    }
}

/// Display an error with its sources, `a: b: c`.
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// What the core is doing from GDB's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecState {
    Halted,
    Running,
    /// A stop is ready to report without polling (after a step, or a resume
    /// that failed).
    Stopped(StopReason),
}

/// The gdbstub target: owns the probe-rs session while a connection is
/// served, and hands it back with [`GdbTarget::into_session`].
pub struct GdbTarget {
    session: Session,
    board: Arc<Board>,
    /// Regenerated when the external flash is identified.
    memory_map_xml: Arc<str>,
    /// The external flash behind the window, if the board has one.
    ext: Option<ExtFlash>,
    /// Address → original halfword under our `BKPT #0`.
    sw_breakpoints: BTreeMap<u32, u16>,
    /// Addresses with an FPB comparator we set.
    hw_breakpoints: Vec<u32>,
    watch_slots: Vec<Option<WatchSlot>>,
    flash: FlashPlan,
    exec: ExecState,
}

impl GdbTarget {
    pub fn new(session: Session, board: Arc<Board>, memory_map_xml: Arc<str>) -> Self {
        GdbTarget {
            session,
            board: board.clone(),
            memory_map_xml,
            ext: board.external_flash.clone().map(ExtFlash::new),
            sw_breakpoints: BTreeMap::new(),
            hw_breakpoints: Vec::new(),
            watch_slots: Vec::new(),
            flash: FlashPlan::default(),
            exec: ExecState::Halted,
        }
    }

    pub(crate) fn core(&mut self) -> Result<Core<'_>, GdbError> {
        self.session
            .core(0)
            .map_err(|source| GdbError::Core { source })
    }

    pub fn exec_state(&self) -> ExecState {
        self.exec
    }

    /// Halt the core for a new connection (GDB expects a stopped target),
    /// then identify the external flash so the memory map GDB asks for next
    /// has the chip's size and erase size. An identification failure is
    /// logged and the board file's window advertised instead: the session
    /// goes on, and flash operations report the error again.
    pub fn on_connect(&mut self) -> Result<(), SessionFault> {
        self.exec = ExecState::Halted;
        let result = self.core().and_then(|mut core| {
            if !core
                .core_halted()
                .map_err(|source| GdbError::Status { source })?
            {
                core.halt(HALT_TIMEOUT)
                    .map_err(|source| GdbError::Halt { source })?;
            }
            Ok(())
        });
        result.or_else(fatal_only)?;
        if let Err(e) = self.identify_ext_flash() {
            fatal_only(e)?;
        }
        Ok(())
    }

    /// Identify the external flash (if any) and regenerate the memory map.
    pub(crate) fn identify_ext_flash(&mut self) -> Result<(), GdbError> {
        let Some(mut ext) = self.ext.take() else {
            return Ok(());
        };
        let result = self
            .core()
            .and_then(|mut core| ext.identify(&mut core).map(|_| ()).map_err(GdbError::from));
        self.ext = Some(ext);
        self.refresh_memory_map();
        result
    }

    /// The memory map with the window as currently known.
    pub(crate) fn refresh_memory_map(&mut self) {
        let window = self.ext.as_ref().map(|e| {
            crate::board::memory_map::window_region(e.config().window, e.size(), e.blocksize())
        });
        match crate::board::memory_map::memory_map_xml(&self.board, window) {
            Ok(xml) => self.memory_map_xml = xml.into(),
            Err(e) => tracing::error!("memory map with the external flash window: {e}"),
        }
    }

    /// Run `f` on the external flash with the core; errors name the flash.
    pub(crate) fn with_ext<R>(
        &mut self,
        f: impl FnOnce(&mut ExtFlash, &mut Core<'_>) -> Result<R, ExtFlashError>,
    ) -> Result<R, GdbError> {
        let mut ext = self
            .ext
            .take()
            .ok_or(GdbError::ExtFlash(ExtFlashError::NotConfigured))?;
        let result = self
            .session
            .core(0)
            .map_err(|source| GdbError::Core { source })
            .and_then(|mut core| f(&mut ext, &mut core).map_err(GdbError::from));
        self.ext = Some(ext);
        result
    }

    /// Whether `addr..addr+len` touches the external-flash window.
    pub(crate) fn in_window(&self, addr: u32, len: u64) -> bool {
        self.ext.as_ref().is_some_and(|e| e.overlaps(addr, len))
    }

    /// The window's address range, if the board has one.
    pub(crate) fn window(&self) -> Option<std::ops::Range<u64>> {
        self.ext.as_ref().map(|e| e.window())
    }

    /// The core may have run or been reset: cached window reads are stale.
    pub(crate) fn invalidate_ext_cache(&mut self) {
        if let Some(e) = self.ext.as_mut() {
            e.invalidate();
        }
    }

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
                tracing::warn!("core locked up; halting it");
                if let Err(e) = self.halt_core() {
                    fatal_only(e)?;
                }
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

    /// Map probe-rs's halt reason to what GDB expects: our `BKPT` →
    /// swbreak, an FPB hit → hwbreak, a DWT hit → watch with its address.
    fn classify_halt(&mut self, reason: HaltReason) -> Result<StopReason, GdbError> {
        let stop = match reason {
            HaltReason::Breakpoint(_) | HaltReason::Multiple | HaltReason::Unknown => {
                let pc = self.read_pc()?;
                if self.sw_breakpoints.contains_key(&pc) {
                    StopReason::SwBreak(())
                } else if self.hw_breakpoints.contains(&pc) {
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
        core.read_core_reg::<u32>(probe_rs::RegisterId(15))
            .map_err(|source| GdbError::RegisterRead {
                register: "pc".into(),
                source,
            })
    }

    /// Undo everything this connection put into the target: restore
    /// instructions under software breakpoints, free FPB and DWT
    /// comparators, drop a half-received flash plan. Called when a
    /// connection ends for any reason, so a stale `BKPT` never stays behind.
    pub fn cleanup(&mut self) -> Result<(), SessionFault> {
        self.flash = FlashPlan::default();
        if let Some(e) = self.ext.as_mut() {
            e.forget_request();
        }
        let sw: Vec<(u32, u16)> = std::mem::take(&mut self.sw_breakpoints)
            .into_iter()
            .collect();
        for (addr, orig) in sw {
            if let Err(e) = base::write_memory(self, addr, &orig.to_le_bytes()) {
                fatal_only(e)?;
            }
        }
        let hw = std::mem::take(&mut self.hw_breakpoints);
        if !hw.is_empty() {
            let result = self.core().and_then(|mut core| {
                for addr in hw {
                    core.clear_hw_breakpoint(addr.into()).map_err(|source| {
                        GdbError::HwBreakpoint {
                            address: addr,
                            source,
                        }
                    })?;
                }
                Ok(())
            });
            result.or_else(fatal_only)?;
        }
        for slot in 0..self.watch_slots.len() {
            if self.watch_slots[slot].is_some() {
                if let Err(e) = self.clear_watch_slot(slot) {
                    fatal_only(e)?;
                }
            }
        }
        Ok(())
    }

    /// Let the core run on (after a detach).
    pub fn resume_free(&mut self) -> Result<(), SessionFault> {
        let result = self.core().and_then(|mut core| {
            if core
                .core_halted()
                .map_err(|source| GdbError::Status { source })?
            {
                core.run().map_err(|source| GdbError::Resume { source })?;
            }
            Ok(())
        });
        self.exec = ExecState::Running;
        result.or_else(fatal_only)
    }

    /// Give the session back to the worker.
    pub fn into_session(self) -> Session {
        self.session
    }
}

impl Target for GdbTarget {
    type Arch = CortexM4F;
    type Error = SessionFault;

    #[inline(always)]
    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    #[inline(always)]
    fn support_breakpoints(
        &mut self,
    ) -> Option<gdbstub::target::ext::breakpoints::BreakpointsOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_extended_mode(
        &mut self,
    ) -> Option<gdbstub::target::ext::extended_mode::ExtendedModeOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_monitor_cmd(
        &mut self,
    ) -> Option<gdbstub::target::ext::monitor_cmd::MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_target_description_xml_override(
        &mut self,
    ) -> Option<
        gdbstub::target::ext::target_description_xml_override::TargetDescriptionXmlOverrideOps<
            '_,
            Self,
        >,
    > {
        Some(self)
    }

    #[inline(always)]
    fn support_memory_map(
        &mut self,
    ) -> Option<gdbstub::target::ext::memory_map::MemoryMapOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_flash_operations(
        &mut self,
    ) -> Option<gdbstub::target::ext::flash::FlashOps<'_, Self>> {
        Some(self)
    }
}

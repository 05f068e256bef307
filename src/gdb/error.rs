//! The GDB layer's errors, in two tiers chosen by variant: a lost probe is
//! [`TargetError::Fatal`] and ends the session; everything else becomes an
//! `E xx` reply ([`GdbError::errno`]).

use gdbstub::target::TargetError;

use crate::error::{is_probe_lost, probe_lost_in_chain, DisplayChain};
use crate::extflash::ExtFlashError;
use crate::flash::PlanError;

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
    #[error(
        "{len} bytes at {address:#010x}: {first:#010x} is past the end of the external-flash \
         window {start:#010x}..{end:#010x} ({} KiB chip); nothing is there",
        (end - u64::from(*start)) / 1024
    )]
    PastWindowEnd {
        address: u32,
        len: usize,
        first: u32,
        start: u32,
        end: u64,
    },
    #[error(
        "write of {len} bytes at {address:#010x}: {side} {region} {start:#010x}..{end:#010x} \
         ({} KiB); no RAM, flash or window of the board is there",
        (end - u64::from(*start)) / 1024
    )]
    UnmappedWrite {
        address: u32,
        len: usize,
        /// "past the end of" or "below the start of".
        side: &'static str,
        /// The nearest region, e.g. "internal flash".
        region: String,
        start: u32,
        end: u64,
    },
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
    #[error(
        "no free FPB comparator for a breakpoint at {address:#010x}: all {units} are in use \
         (at {}); delete a breakpoint first",
        addresses(set)
    )]
    NoFreeComparator {
        address: u32,
        units: u32,
        set: Vec<u32>,
    },
    #[error(
        "breakpoint at {address:#010x} is in the external-flash window: that data is read \
         over SPI, the core cannot execute there"
    )]
    BreakpointInWindow { address: u32 },
    #[error(
        "hardware breakpoint at {address:#010x}: the Cortex-M4 FPB only matches addresses \
         below 0x20000000 (use a software breakpoint in RAM)"
    )]
    HwBreakpointAboveCode { address: u32 },
    #[error("programming the DWT comparator {slot} for a watchpoint at {address:#010x} failed")]
    Watchpoint {
        slot: usize,
        address: u32,
        #[source]
        source: probe_rs::Error,
    },
    #[error("flash request rejected")]
    Plan(#[from] PlanError),
    #[error("programming internal flash ({bytes} bytes at {address:#010x}) failed")]
    FlashCommit {
        address: u32,
        bytes: usize,
        #[source]
        source: probe_rs::flashing::FlashError,
    },
    #[error(
        "vFlashDone: not programmed: {ranges}: a request of this load was refused (see the \
         error before) and the load dropped; load again once the cause is fixed"
    )]
    LoadDropped { ranges: String },
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

/// `0x08000100, 0x08000102` for messages.
fn addresses(set: &[u32]) -> String {
    set.iter()
        .map(|a| format!("{a:#010x}"))
        .collect::<Vec<_>>()
        .join(", ")
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
            | GdbError::MemoryWraps { .. }
            | GdbError::PastWindowEnd { .. }
            | GdbError::UnmappedWrite { .. } => 0x0e,
            GdbError::HwBreakpoint { .. }
            | GdbError::SwBreakpointNotWritable { .. }
            | GdbError::NoFreeComparator { .. }
            | GdbError::BreakpointInWindow { .. }
            | GdbError::HwBreakpointAboveCode { .. }
            | GdbError::Watchpoint { .. } => 0x10,
            GdbError::ExtFlashRead { .. } => 0x0e,
            GdbError::Plan(_)
            | GdbError::FlashCommit { .. }
            | GdbError::LoadDropped { .. }
            | GdbError::ExtFlash(_) => 0x05,
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
            | GdbError::PastWindowEnd { .. }
            | GdbError::UnmappedWrite { .. }
            | GdbError::SwBreakpointNotWritable { .. }
            | GdbError::NoFreeComparator { .. }
            | GdbError::BreakpointInWindow { .. }
            | GdbError::HwBreakpointAboveCode { .. }
            | GdbError::Plan(_)
            | GdbError::LoadDropped { .. }
            | GdbError::FlashCommit { .. } => None,
        }
    }

    /// Whether this error means the probe (USB link) is gone, also when
    /// probe-rs's flash loader wraps the probe error.
    pub fn is_probe_lost(&self) -> bool {
        match self {
            GdbError::FlashCommit { source, .. } => probe_lost_in_chain(source),
            _ => self.probe_error().is_some_and(is_probe_lost),
        }
    }
}

thread_local! {
    /// The text of the last error replied to on this thread (see
    /// [`note_error_text`]).
    static ERROR_TEXT: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}

/// Keep `text` as the reason for the error reply being built. gdbstub's
/// `TargetError` carries only an errno, so the text travels beside it to
/// the packet layer (`server::error_text`), which puts it in the reply for
/// clients that asked for error strings. Per thread: the probe worker
/// serves one packet at a time.
pub(crate) fn note_error_text(text: String) {
    ERROR_TEXT.with(|t| *t.borrow_mut() = Some(text));
}

/// The text noted since the last call, if any.
pub(crate) fn take_error_text() -> Option<String> {
    ERROR_TEXT.with(|t| t.borrow_mut().take())
}

/// Turn an error into gdbstub's two tiers, logging it (and noting its text
/// for error-string replies).
pub(crate) fn to_target_error(e: GdbError) -> TargetError<SessionFault> {
    if e.is_probe_lost() {
        tracing::error!(error = %DisplayChain(&e), "debug probe lost");
        TargetError::Fatal(SessionFault::ProbeLost { source: e })
    } else {
        tracing::warn!(error = %DisplayChain(&e), errno = e.errno(), "replying with an error");
        note_error_text(DisplayChain(&e).to_string());
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

//! The gdbstub [`Target`] for one Cortex-M4F core behind a probe-rs
//! [`Session`], with one file per GDB extension (`base`, `resume`,
//! `breakpoints`, `extended_mode`, `flash`, `memory_map`, `monitor`,
//! `tdesc`, `crc`), plus the connection lifecycle (`lifecycle`), stop
//! classification (`stop`), errors (`error`), reads where nothing answers
//! (`unmapped`) and the locked-up core's hint (`lockup`). `observer` is the
//! read-only target of further connections, and answers their reads from
//! this one.
//!
//! Owns the per-connection debug state (software breakpoints, watchpoint
//! slots, the pending flash request). It runs only on the probe worker
//! thread (`server::worker`) and never touches sockets: it talks to
//! probe-rs and returns results to gdbstub.

pub mod arch;
pub(crate) mod base;
mod breakpoints;
pub mod crc;
mod error;
mod extended_mode;
mod flash;
mod lifecycle;
mod lockup;
mod memory_map;
pub mod monitor;
pub mod observer;
mod resume;
mod stop;
pub mod tdesc;
mod unmapped;

use std::collections::BTreeMap;
use std::sync::Arc;

use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::Target;
use probe_rs::{Core, Session};

use crate::board::Board;
use crate::extflash::{ExtFlash, ExtFlashError};
use crate::flash::progress::BoardClock;
use crate::flash::{EventSink, FlashEvent, FlashRequest};
use arch::CortexM4F;
pub use breakpoints::WatchSlot;
pub(crate) use error::{fatal_only, note_error_text, take_error_text, to_target_error};
pub use error::{GdbError, SessionFault};
pub use stop::{ExecState, StopReason};

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
    /// Addresses with an FPB comparator we set, and which requests
    /// (`Z0` in flash, `Z1`) stand on each.
    hw_breakpoints: BTreeMap<u32, breakpoints::Claims>,
    watch_slots: Vec<Option<WatchSlot>>,
    /// Internal-flash part of the `load` in progress.
    flash: FlashRequest,
    /// Ranges of the `load` in progress that were dropped when one of its
    /// requests was refused: its `vFlashDone` must not answer OK.
    load_dropped: Vec<std::ops::Range<u64>>,
    /// The client reset, halted, resumed or programmed the core on purpose:
    /// when it leaves without detaching, its choice stands.
    run_state_chosen: bool,
    /// Registers as last read while the core stayed halted (GDB's `g`),
    /// served while the stub session runs and the core cannot be asked.
    reg_cache: Option<Vec<u64>>,
    exec: ExecState,
    events: EventSink,
    /// The session source's own clock (`SessionSource::with_board_clock`):
    /// flash summaries give the board's time next to host time.
    board_clock: Option<BoardClock>,
    /// Reads answered `E0e` because nothing is at their address (see
    /// `unmapped`): the first is logged at info, the rest at debug.
    unmapped_reads: u64,
}

impl GdbTarget {
    pub fn new(
        session: Session,
        board: Arc<Board>,
        memory_map_xml: Arc<str>,
        events: EventSink,
    ) -> Self {
        GdbTarget {
            session,
            board: board.clone(),
            memory_map_xml,
            ext: board.external_flash.clone().map(ExtFlash::new),
            sw_breakpoints: BTreeMap::new(),
            hw_breakpoints: BTreeMap::new(),
            watch_slots: Vec::new(),
            flash: FlashRequest::default(),
            load_dropped: Vec::new(),
            reg_cache: None,
            run_state_chosen: false,
            exec: ExecState::Halted,
            events,
            board_clock: None,
            unmapped_reads: 0,
        }
    }

    /// Give flash summaries the board's own time (see [`BoardClock`]).
    pub fn set_board_clock(&mut self, clock: Option<BoardClock>) {
        self.board_clock = clock;
    }

    /// An event sink that fills `Done`'s board time from the board clock,
    /// counted from now.
    pub(crate) fn timed_events(&self) -> impl Fn(&FlashEvent) + Send + Sync + 'static {
        let events = self.events.clone();
        let clock = self.board_clock.clone();
        let t0 = clock.as_ref().map(|c| c());
        move |e: &FlashEvent| match (e, &clock, t0) {
            (FlashEvent::Done { board: None, .. }, Some(c), Some(t0)) => {
                let mut e = e.clone();
                if let FlashEvent::Done { board, .. } = &mut e {
                    *board = Some(c().saturating_sub(t0));
                }
                events(&e)
            }
            _ => events(e),
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

    /// Whether the client set the core's run state on purpose (a reset, a
    /// `monitor halt`/`resume`, `run`/`kill`, or flash programming, which
    /// resets the core), so a connection that ends without detaching leaves
    /// the core as the client left it rather than as it was found.
    pub fn run_state_chosen(&self) -> bool {
        self.run_state_chosen
    }

    /// Identify the external flash (if any) and regenerate the memory map.
    pub(crate) fn identify_ext_flash(&mut self) -> Result<(), GdbError> {
        let Some(mut ext) = self.ext.take() else {
            return Ok(());
        };
        let result = self.core().and_then(|mut core| {
            ext.identify(&mut core)
                .map(|c| FlashEvent::Identified {
                    jedec_id: c.jedec_id,
                    name: c.name.clone(),
                    size: c.geometry.size,
                })
                .map_err(GdbError::from)
        });
        self.ext = Some(ext);
        self.refresh_memory_map();
        (self.events)(&result?);
        Ok(())
    }

    /// The memory map with the window as currently known; without a known
    /// size (no board size, no probe yet) the window is left out.
    pub(crate) fn refresh_memory_map(&mut self) {
        let window = self.ext.as_ref().and_then(|e| {
            let Some(size) = e.known_size() else {
                tracing::debug!(
                    window = format_args!("{:#010x}", e.config().window),
                    "external flash size unknown (not probed yet, no `size` or `jedec_id` in \
                     the board file): the memory map leaves the window out"
                );
                return None;
            };
            Some(crate::board::memory_map::window_region(
                e.config().window,
                size,
                e.blocksize(),
            ))
        });
        match crate::board::memory_map::memory_map_xml(&self.board, window) {
            Ok(xml) => self.memory_map_xml = xml.into(),
            Err(e) => tracing::error!("memory map with the external flash window: {e}"),
        }
    }

    /// (size, blocksize) of the external flash as this connection probed
    /// it, for the next one.
    pub fn ext_probed(&self) -> Option<(u32, u32)> {
        self.ext.as_ref().and_then(|e| e.probed())
    }

    /// What an earlier connection probed: the memory map's window when
    /// this one cannot probe at connect (see `ExtFlash::remember`).
    pub fn remember_ext(&mut self, earlier: Option<(u32, u32)>) {
        if let Some(e) = self.ext.as_mut() {
            e.remember(earlier);
        }
        self.refresh_memory_map();
    }

    /// Probe the chip again if the connection could not identify it yet
    /// (the application held it at connect): the memory map then follows.
    /// A failure is logged; the access that asked reports its own error.
    pub(crate) fn reprobe_ext_flash(&mut self) {
        if self.ext.as_ref().is_some_and(|e| e.chip().is_none()) {
            if let Err(e) = self.identify_ext_flash() {
                tracing::debug!(error = %crate::error::DisplayChain(&e), "external flash: probing again failed");
            }
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

    /// End the external flash's stub session, if one is running: before
    /// anything runs, steps or resets the core, at detach, and before
    /// register access or a write to what the session saved.
    pub(crate) fn end_stub_session(&mut self) -> Result<(), GdbError> {
        if !self.ext.as_ref().is_some_and(|e| e.is_resident()) {
            return Ok(());
        }
        self.with_ext(|ext, core| ext.end_session(core))
    }

    /// Whether an access outside the window must end the stub session
    /// first (see `ExtFlash::session_conflicts`).
    pub(crate) fn stub_session_conflicts(&self, addr: u32, len: usize, write: bool) -> bool {
        self.ext
            .as_ref()
            .is_some_and(|e| e.session_conflicts(addr, len as u32, write))
    }

    /// Whether `addr..addr+len` touches the external-flash window.
    pub(crate) fn in_window(&self, addr: u32, len: u64) -> bool {
        self.ext.as_ref().is_some_and(|e| e.overlaps(addr, len))
    }

    /// The window's address range, if the board has one.
    pub(crate) fn window(&self) -> Option<std::ops::Range<u64>> {
        self.ext.as_ref().map(|e| e.window())
    }

    /// The core may have run or been reset: cached window reads and
    /// registers are stale.
    pub(crate) fn forget_target_state(&mut self) {
        self.reg_cache = None;
        if let Some(e) = self.ext.as_mut() {
            e.invalidate();
        }
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

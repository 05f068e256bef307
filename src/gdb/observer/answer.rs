//! The session owner's side of observer queries: [`Observed`], kept by
//! the probe worker for the server's lifetime, answers through the
//! controller's [`GdbTarget`] while a GDB controls the board and through
//! the bare session otherwise. Runs between the worker's own operations,
//! also while the core runs: probe-rs reads a running core's memory over
//! the debug port. Never halts, resumes or writes.
//!
//! Registers are the last known values: read when the core is halted,
//! else the values from the last time it was seen halted (by an observer
//! or the controller's GDB), all zero if it never was. GDB cannot connect
//! without a program counter, so they are never unavailable.
//!
//! The external-flash window needs the SPI stub, which runs only on a
//! halted core: while a controller has the core halted and its session has
//! the stub loaded (after a window access of its own since the core last
//! stopped), observer reads and CRCs of the window go through the stub (as
//! the controller's would: nothing GDB can observe changes); reads of a
//! few bytes go over SPI directly. Otherwise they come from the read cache
//! or get an `E` reply saying why: an observer never loads the stub, which
//! would hold the controller up (`observer_may_use_window`).
//!
//! Two tiers as everywhere: a lost probe ends the session (`Err`), any
//! other failure is the observer's `E` reply.

use std::ops::Range;
use std::sync::Arc;

use extflash_stub_abi::{crc32_update, CRC32_INIT};
use probe_rs::{Core, Session};

use super::{Answer, ObserveError, Query, Reply};
use crate::board::Board;
use crate::extflash::direct;
use crate::gdb::arch::CortexMRegId;
use crate::gdb::base::{
    all_regs, read_any, read_core_memory, read_memory, read_reg, split_at_window,
};
use crate::gdb::{ExecState, GdbError, GdbTarget, SessionFault};

/// Bytes read per probe call for a qCRC without a controller.
const CRC_CHUNK: usize = 0x4000;

/// Split a failed answer into the two tiers.
fn tier(result: Reply) -> Result<Reply, SessionFault> {
    match result {
        Err(ObserveError::Read { source }) if source.is_probe_lost() => {
            Err(SessionFault::ProbeLost { source })
        }
        other => Ok(other),
    }
}

fn read_err(source: GdbError) -> ObserveError {
    ObserveError::Read { source }
}

/// What the worker keeps for observers across connections.
pub struct Observed {
    /// The window before identification (the board file's).
    window: Option<Range<u64>>,
    /// The memory map before identification.
    memory_map: Arc<str>,
    last_registers: Option<Vec<u64>>,
}

/// Who holds the session when a query arrives.
pub enum SessionOwner<'a> {
    Controller(&'a mut GdbTarget),
    Idle(&'a mut Session),
}

impl Observed {
    /// `memory_map` as advertised before the chip is identified.
    pub fn new(board: &Board, memory_map: Arc<str>) -> Observed {
        let window = board.external_flash.as_ref().map(|e| {
            let start = u64::from(e.window);
            start..start + u64::from(e.size.unwrap_or(crate::board::MAX_WINDOW_SIZE))
        });
        Observed {
            window,
            memory_map,
            last_registers: None,
        }
    }

    /// Note registers the controller's GDB read while the core was halted.
    pub fn note_registers(&mut self, values: Option<&[u64]>) {
        if let Some(v) = values {
            if self.last_registers.as_deref() != Some(v) {
                self.last_registers = Some(v.to_vec());
            }
        }
    }

    pub fn answer(
        &mut self,
        owner: SessionOwner<'_>,
        query: &Query,
    ) -> Result<Reply, SessionFault> {
        let result = match owner {
            SessionOwner::Controller(target) => {
                let result = target.answer_observer(query);
                if let Ok(Answer::Registers(Some(v))) = &result {
                    self.note_registers(Some(v));
                }
                result
            }
            SessionOwner::Idle(session) => self.answer_idle(session, query),
        };
        let result = match result {
            Ok(Answer::Registers(None)) => Ok(Answer::Registers(Some(
                self.last_registers
                    .clone()
                    .unwrap_or_else(|| vec![0; CortexMRegId::COUNT]),
            ))),
            other => other,
        };
        tier(result)
    }

    fn answer_idle(&mut self, session: &mut Session, query: &Query) -> Reply {
        let mut core = session
            .core(0)
            .map_err(|source| read_err(GdbError::Core { source }))?;
        match *query {
            Query::Memory { address, len } => self
                .idle_memory(&mut core, address, len)
                .map(Answer::Memory),
            Query::Registers => {
                let regs = registers_if_halted(&mut core)?;
                self.note_registers(regs.as_deref());
                Ok(Answer::Registers(regs))
            }
            Query::Crc { address, len } => self.idle_crc(&mut core, address, len).map(Answer::Crc),
            Query::MemoryMap => Ok(Answer::MemoryMap(self.memory_map.clone())),
        }
    }

    fn outside_window(&self, address: u32, len: usize) -> Result<(), ObserveError> {
        match split_at_window(address, len, self.window.clone())
            .into_iter()
            .find(|p| p.2)
        {
            Some((address, len, _)) => Err(ObserveError::WindowWithoutController { address, len }),
            None => Ok(()),
        }
    }

    fn idle_memory(
        &self,
        core: &mut Core<'_>,
        address: u32,
        len: usize,
    ) -> Result<Vec<u8>, ObserveError> {
        self.outside_window(address, len)?;
        let mut data = vec![0u8; len];
        read_core_memory(core, address, &mut data).map_err(read_err)?;
        Ok(data)
    }

    fn idle_crc(&self, core: &mut Core<'_>, address: u32, len: u32) -> Result<u32, ObserveError> {
        self.outside_window(address, len as usize)?;
        let mut crc = CRC32_INIT;
        let mut buf = vec![0u8; CRC_CHUNK];
        let (mut at, mut left) = (address, len as usize);
        while left > 0 {
            let k = left.min(CRC_CHUNK);
            read_core_memory(core, at, &mut buf[..k]).map_err(read_err)?;
            crc = crc32_update(crc, &buf[..k]);
            at = at.wrapping_add(k as u32);
            left -= k;
        }
        Ok(crc)
    }
}

impl GdbTarget {
    /// Answer an observer's query from the controller's session; registers
    /// are `None` unless the core is halted.
    fn answer_observer(&mut self, query: &Query) -> Reply {
        match *query {
            Query::Memory { address, len } => self.observe_memory(address, len).map(Answer::Memory),
            Query::Registers => self.observe_registers().map(Answer::Registers),
            Query::Crc { address, len } => self.observe_crc(address, len).map(Answer::Crc),
            Query::MemoryMap => Ok(Answer::MemoryMap(self.memory_map_xml.clone())),
        }
    }

    /// The registers the controller's GDB last read, while still valid
    /// (the core has not run since).
    pub fn cached_registers(&self) -> Option<&[u64]> {
        self.reg_cache.as_deref()
    }

    /// Whether the core is known to be halted: stopped under the
    /// controller, and (unless the stub holds it) the core says so (a
    /// `monitor resume` leaves GDB's view stopped while the core runs).
    fn observed_halted(&mut self) -> Result<bool, GdbError> {
        if self.exec == ExecState::Running {
            return Ok(false);
        }
        if self.ext.as_ref().is_some_and(|e| e.is_resident()) {
            return Ok(true);
        }
        self.core()?
            .core_halted()
            .map_err(|source| GdbError::Status { source })
    }

    fn observe_memory(&mut self, address: u32, len: usize) -> Result<Vec<u8>, ObserveError> {
        let mut data = vec![0u8; len];
        let mut done = 0;
        for (addr, n, in_window) in split_at_window(address, len, self.window()) {
            let piece = &mut data[done..done + n];
            done += n;
            if !in_window {
                read_memory(self, addr, piece).map_err(read_err)?;
                continue;
            }
            if self
                .ext
                .as_ref()
                .is_some_and(|e| e.read_cached(addr, piece))
            {
                continue;
            }
            self.observer_may_use_window(addr, n, n as u32 <= direct::MAX_LEN)?;
            read_any(self, addr, piece).map_err(read_err)?;
        }
        Ok(data)
    }

    fn observe_registers(&mut self) -> Result<Option<Vec<u64>>, ObserveError> {
        if let Some(v) = &self.reg_cache {
            return Ok(Some(v.clone()));
        }
        if !self.observed_halted().map_err(read_err)? {
            return Ok(None);
        }
        self.all_registers().map(Some).map_err(read_err)
    }

    fn observe_crc(&mut self, address: u32, len: u32) -> Result<u32, ObserveError> {
        if self.in_window(address, len.into()) {
            self.observer_may_use_window(address, len as usize, false)?;
        }
        self.qcrc(address, len).map_err(read_err)
    }

    /// Whether an observer's window access may run now: the core is
    /// halted, and the stub is already loaded by the controller's session
    /// (or `direct`, a few bytes the host reads over SPI itself, will do).
    /// An observer never loads or unloads the stub: that moves the stub and
    /// the application's RAM under the work area over the debug link, tens
    /// of milliseconds of target time the controller's next packet would
    /// wait for.
    fn observer_may_use_window(
        &mut self,
        address: u32,
        len: usize,
        direct: bool,
    ) -> Result<(), ObserveError> {
        if !self.observed_halted().map_err(read_err)? {
            return Err(ObserveError::WindowWhileRunning { address, len });
        }
        if direct || self.ext.as_ref().is_some_and(|e| e.is_resident()) {
            return Ok(());
        }
        Err(ObserveError::WindowStubNotLoaded { address, len })
    }
}

/// Every register if the core is halted; `None` while it runs.
fn registers_if_halted(core: &mut Core<'_>) -> Result<Option<Vec<u64>>, ObserveError> {
    let halted = core
        .core_halted()
        .map_err(|source| read_err(GdbError::Status { source }))?;
    if !halted {
        return Ok(None);
    }
    let mut values = vec![0u64; CortexMRegId::COUNT];
    for reg in all_regs() {
        values[reg.regnum()] = read_reg(core, reg).map_err(read_err)?;
    }
    Ok(Some(values))
}

//! The read-only gdbstub target of an observer connection: a second GDB
//! beside the controlling one (cortex-debug Live Watch, memory dump
//! scripts), served while the application runs.
//!
//! It holds no probe access. Every read is a [`Query`] sent to the session
//! owner (the probe worker, which answers between its own operations, also
//! while the controller's core runs: `answer.rs`) and answered over a
//! one-shot channel. No query writes, so nothing an observer sends can
//! change the target: resume, step, Ctrl-C, breakpoints, writes, flash and
//! acting `monitor` commands are refused before gdbstub
//! (`server::readonly`), and this target has no extension that could carry
//! them out anyway.
//!
//! Registers are current while the core is halted and the last known
//! values while it runs (see `answer.rs`): GDB cannot connect without a
//! program counter, and an `E` reply to `g` makes it abandon the
//! connection. One file per extension: `base` (registers, memory),
//! `memory_map`, `monitor`; `arch` adds unavailable registers (only when
//! the worker does not answer) to the Cortex-M4F register file.

mod answer;
mod arch;
mod base;
mod memory_map;
mod monitor;

use std::cell::RefCell;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::Target;

use super::GdbError;
use crate::ratelimit::RateLimit;
pub use answer::{Observed, SessionOwner};
pub use arch::{ObservedRegs, ObserverArch};

/// The longest `qCRC` an observer may ask for, so that the probe worker,
/// which serves the controller's next packet after the request it is on,
/// is never busy with an observer for long: a few ms of target time per
/// request (the loaded stub's CRC of the window at the board's SPI clock,
/// or reads through the probe), one request per observer in the queue,
/// and the worker takes the next only when the controller has nothing
/// queued. Budget and measured figure: README, "Reliability". GDB's
/// `compare-sections` asks for whole sections and gets `E1b` beyond this
/// from an observer.
pub const OBSERVER_CRC_MAX: u32 = 0x1000;

/// The `E xx` code of a refused packet: EACCES.
pub const REFUSED_ERRNO: u8 = 0x0d;

/// What an observer asks the session owner. Reads only, by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Memory {
        address: u32,
        len: usize,
    },
    /// Every register by GDB number: current if the core is halted, else
    /// the last known values.
    Registers,
    /// GDB's qCRC of `len` bytes at `address`.
    Crc {
        address: u32,
        len: u32,
    },
    MemoryMap,
}

/// The owner's answer, of the query's kind.
#[derive(Debug, Clone)]
pub enum Answer {
    Memory(Vec<u8>),
    /// By GDB register number; `None` only inside the owner (not halted,
    /// before the last known values are filled in).
    Registers(Option<Vec<u64>>),
    Crc(u32),
    MemoryMap(Arc<str>),
}

pub type Reply = Result<Answer, ObserveError>;

/// Why an observer's read got an `E` reply.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("observed read failed")]
    Read {
        #[source]
        source: GdbError,
    },
    #[error(
        "reading {len} bytes of the external flash at {address:#010x} while the core runs: \
         the SPI stub cannot run and the read cache does not hold them (halt the core from \
         the controlling GDB, then read again)"
    )]
    WindowWhileRunning { address: u32, len: usize },
    #[error(
        "reading {len} bytes of the external flash at {address:#010x}: the SPI stub is not \
         loaded, and an observer does not load it (that would hold the controlling GDB up); \
         it is loaded while the controlling GDB reads the window with the core halted"
    )]
    WindowStubNotLoaded { address: u32, len: usize },
    #[error(
        "reading {len} bytes of the external flash at {address:#010x}: no GDB controls the \
         board, and only a controller's halted core may run the SPI stub"
    )]
    WindowWithoutController { address: u32, len: usize },
    #[error(
        "the probe worker did not answer within {waited:?} (busy with a long operation of the \
         controlling GDB, such as a load or an erase)"
    )]
    OwnerBusy { waited: Duration },
    #[error("the probe worker is gone (server shutting down or probe lost)")]
    OwnerGone,
    #[error(
        "qCRC of {len:#x} bytes at {address:#010x} is over an observer's budget of \
         {max:#x} bytes per request (the controlling GDB is served first): ask for the CRC \
         in pieces of at most {max:#x} bytes"
    )]
    CrcTooLong { address: u32, len: u32, max: u32 },
}

impl ObserveError {
    /// The `E xx` code GDB sees: the controller's codes for failed reads
    /// (0x0e memory), 0x0b (EAGAIN) while the worker is busy.
    pub fn errno(&self) -> u8 {
        match self {
            ObserveError::Read { source } => source.errno(),
            ObserveError::WindowWhileRunning { .. }
            | ObserveError::WindowStubNotLoaded { .. }
            | ObserveError::WindowWithoutController { .. } => 0x0e,
            ObserveError::OwnerBusy { .. } | ObserveError::OwnerGone => 0x0b,
            // EFBIG: the request, not the target, is the problem.
            ObserveError::CrcTooLong { .. } => 0x1b,
        }
    }
}

/// One query on its way to the owner, with the channel for its answer.
#[derive(Debug)]
pub struct ObserverRequest {
    /// The observer's connection id, for the owner's log.
    pub id: u64,
    pub query: Query,
    reply: SyncSender<Reply>,
}

impl ObserverRequest {
    /// Send the answer; an observer that gave up waiting is not an error.
    pub fn answer(self, reply: Reply) {
        let _ = self.reply.try_send(reply);
    }
}

/// Hands a request to the session owner; false if the owner is gone.
pub type SendRequest = Box<dyn Fn(ObserverRequest) -> bool + Send>;

/// The observer's end of the request channel.
///
/// At most one request per observer waits at the owner: while an earlier
/// one is unanswered (the observer stopped waiting for it) a new query is
/// answered [`ObserveError::OwnerBusy`] without being sent. With the cap
/// on observers this bounds the owner's queue.
pub struct Owner {
    id: u64,
    send: SendRequest,
    wait: Duration,
    pending: Option<Receiver<Reply>>,
}

impl Owner {
    /// `wait` bounds every query; keep it under GDB's `remotetimeout`
    /// (2 s by default) so GDB sees an `E` reply rather than a timeout.
    pub fn new(id: u64, send: SendRequest, wait: Duration) -> Owner {
        Owner {
            id,
            send,
            wait,
            pending: None,
        }
    }

    pub fn ask(&mut self, query: Query) -> Reply {
        if let Some(earlier) = self.pending.take() {
            match earlier.try_recv() {
                Ok(_) | Err(TryRecvError::Disconnected) => {}
                Err(TryRecvError::Empty) => {
                    self.pending = Some(earlier);
                    return Err(ObserveError::OwnerBusy { waited: self.wait });
                }
            }
        }
        let (reply, answer) = sync_channel(1);
        let request = ObserverRequest {
            id: self.id,
            query,
            reply,
        };
        if !(self.send)(request) {
            return Err(ObserveError::OwnerGone);
        }
        match answer.recv_timeout(self.wait) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => {
                self.pending = Some(answer);
                Err(ObserveError::OwnerBusy { waited: self.wait })
            }
            Err(RecvTimeoutError::Disconnected) => Err(ObserveError::OwnerGone),
        }
    }
}

/// The session owner is gone: the observer connection ends.
#[derive(Debug, thiserror::Error)]
pub enum ObserverFault {
    #[error("the probe worker is gone")]
    OwnerGone,
}

/// The gdbstub target of one observer connection.
pub struct ObserverTarget {
    id: u64,
    owner: RefCell<Owner>,
    /// Fetched when GDB asks for the map's start, served in pieces.
    memory_map: RefCell<Option<Arc<str>>>,
    /// Refusals and failed reads are the observer's to provoke at will.
    log: RefCell<RateLimit>,
}

impl ObserverTarget {
    pub fn new(owner: Owner) -> ObserverTarget {
        ObserverTarget {
            id: owner.id,
            owner: RefCell::new(owner),
            memory_map: RefCell::new(None),
            log: RefCell::default(),
        }
    }

    /// Log a warning unless this connection has logged too many of its
    /// `kind` lately (`crate::ratelimit`).
    pub fn warn(&self, kind: &'static str, warn: impl FnOnce()) {
        let id = self.id;
        let from = || format!("observer connection {id}");
        self.log.borrow_mut().warn(kind, from, warn);
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Ask the owner; a failed read is logged with the observer's id.
    pub fn ask(&self, query: Query) -> Reply {
        let result = self.owner.borrow_mut().ask(query.clone());
        if let Err(e) = &result {
            let kind = match e {
                ObserveError::OwnerBusy { .. } => "busy replies",
                _ => "failed reads",
            };
            self.warn(kind, || {
                tracing::warn!(
                    id = self.id,
                    ?query,
                    error = %crate::error::DisplayChain(e),
                    "observer read failed"
                )
            });
        }
        result
    }

    /// GDB's qCRC through the owner: `C<crc>` or `E xx`. Over
    /// [`OBSERVER_CRC_MAX`] bytes it is refused without asking.
    pub fn qcrc(&self, address: u32, len: u32) -> Result<u32, ObserveError> {
        if len > OBSERVER_CRC_MAX {
            let e = ObserveError::CrcTooLong {
                address,
                len,
                max: OBSERVER_CRC_MAX,
            };
            self.warn("oversized qCRCs", || {
                tracing::warn!(id = self.id, "observer: {e}")
            });
            return Err(e);
        }
        match self.ask(Query::Crc { address, len })? {
            Answer::Crc(crc) => Ok(crc),
            _ => Err(ObserveError::OwnerGone),
        }
    }
}

impl Drop for ObserverTarget {
    fn drop(&mut self) {
        let from = format!("observer connection {}", self.id);
        self.log.get_mut().flush(&from);
    }
}

/// gdbstub's two tiers for an observer: the owner gone ends the
/// connection, anything else is an `E xx` reply.
pub(crate) fn to_target_error(e: ObserveError) -> gdbstub::target::TargetError<ObserverFault> {
    match e {
        ObserveError::OwnerGone => gdbstub::target::TargetError::Fatal(ObserverFault::OwnerGone),
        e => gdbstub::target::TargetError::Errno(e.errno()),
    }
}

impl Target for ObserverTarget {
    type Arch = ObserverArch;
    type Error = ObserverFault;

    #[inline(always)]
    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    /// Without breakpoint support GDB would plant `BKPT`s by memory
    /// writes, which an observer refuses: nothing is planted either way.
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }

    #[inline(always)]
    fn support_monitor_cmd(
        &mut self,
    ) -> Option<gdbstub::target::ext::monitor_cmd::MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_memory_map(
        &mut self,
    ) -> Option<gdbstub::target::ext::memory_map::MemoryMapOps<'_, Self>> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// An owner that queues requests for the test to answer (or not).
    fn owner(wait: Duration) -> (Owner, mpsc::Receiver<ObserverRequest>) {
        let (tx, rx) = mpsc::channel();
        let send: SendRequest = Box::new(move |r| tx.send(r).is_ok());
        (Owner::new(7, send, wait), rx)
    }

    #[test]
    fn owner_answers_reach_the_observer() {
        let (mut o, rx) = owner(Duration::from_secs(5));
        let answering = std::thread::spawn(move || {
            let req = rx.recv().unwrap();
            assert_eq!(req.id, 7);
            assert_eq!(req.query, Query::Registers);
            req.answer(Ok(Answer::Registers(None)));
        });
        assert!(matches!(
            o.ask(Query::Registers),
            Ok(Answer::Registers(None))
        ));
        answering.join().unwrap();
    }

    #[test]
    fn invalid_busy_owner_gets_one_request_per_observer_queued_not_more() {
        let (mut o, rx) = owner(Duration::from_millis(20));
        let q = Query::Memory {
            address: 0x2000_0000,
            len: 4,
        };
        assert!(matches!(
            o.ask(q.clone()),
            Err(ObserveError::OwnerBusy { .. })
        ));
        // The first request still waits: further queries are not queued.
        for _ in 0..5 {
            assert!(matches!(
                o.ask(q.clone()),
                Err(ObserveError::OwnerBusy { .. })
            ));
        }
        let queued: Vec<ObserverRequest> = rx.try_iter().collect();
        assert_eq!(queued.len(), 1, "one request at the owner at a time");
        // Once the owner answers it (late), the next query is sent again.
        for r in queued {
            r.answer(Ok(Answer::Memory(vec![0; 4])));
        }
        assert!(matches!(o.ask(q), Err(ObserveError::OwnerBusy { .. })));
        assert_eq!(rx.try_iter().count(), 1);
    }

    #[test]
    fn invalid_owner_gone_is_fatal_for_the_observer_only() {
        let (mut o, rx) = owner(Duration::from_secs(5));
        drop(rx);
        let e = o.ask(Query::MemoryMap).unwrap_err();
        assert!(matches!(e, ObserveError::OwnerGone));
        assert!(matches!(
            to_target_error(e),
            gdbstub::target::TargetError::Fatal(ObserverFault::OwnerGone)
        ));
        let busy = ObserveError::OwnerBusy {
            waited: Duration::from_secs(1),
        };
        assert!(matches!(
            to_target_error(busy),
            gdbstub::target::TargetError::Errno(0x0b)
        ));
    }
}

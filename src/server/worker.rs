//! The probe worker: one OS thread that owns the probe-rs [`Session`] for the
//! server's lifetime and, while a GDB is connected, the gdbstub state machine
//! and our [`GdbTarget`]. All probe-rs calls happen on this thread. This
//! file owns the thread and its idle loop; one connection is served by
//! `serve.rs`.
//!
//! The tokio side sends it [`ToWorker`] messages over a std channel; it sends
//! outgoing RSP bytes back per connection over a bounded tokio channel. Both
//! directions are bounded: each `Data` message holds one of the connection's
//! read credits until the worker has handled it, and a full outgoing queue
//! blocks the worker only until the socket task drains it or gives up (its
//! write timeout), which closes the channel. While the core runs it polls
//! `core.status()` every 1 ms backing off to 10 ms, and in between waits on
//! the channel with `recv_timeout`, so a Ctrl-C from GDB is handled within
//! one poll interval. Every wait has a timeout.
//!
//! The core is left alone until the first packet: a port scan or a
//! non-GDB client never halts it. At that packet the worker notes whether
//! the core was running and halts it; a connection that ends without `D` or
//! `k` puts the core back as found (running or halted).
//!
//! Observer connections (`gdb::observer`) never get the session: their
//! reads arrive as [`ToWorker::Observe`] and are answered here, by the
//! controller's target between its packets (also while the core runs) or
//! by the idle loop when no GDB controls the board.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use probe_rs::Session;
use tokio::sync::mpsc::Sender as OutSender;
use tokio::sync::OwnedSemaphorePermit;

use super::end::End;
use super::serve::{serve, ServeState};
use crate::board::Board;
use crate::flash::EventSink;
use crate::gdb::observer::{Observed, ObserverRequest, SessionOwner};
use crate::gdb::{fatal_only, ExecState, GdbError, GdbTarget, SessionFault};

/// gdbstub's packet buffer (we advertise it as `PacketSize`); large enough
/// for fast `vFlashWrite`/`X` transfers.
pub const PACKET_BUFFER: usize = 0x4000;
/// A frame longer than this ends the connection.
pub const MAX_FRAME: usize = PACKET_BUFFER + 4;
/// First poll interval after resuming the core.
pub const POLL_MIN: Duration = Duration::from_millis(1);
/// Poll interval ceiling while the core keeps running.
pub const POLL_MAX: Duration = Duration::from_millis(10);
/// How often an idle worker wakes up (nothing to do but notice shutdown).
pub(super) const IDLE_TICK: Duration = Duration::from_secs(1);

/// A session plus whatever must stay alive as long as it (e.g. the virtual
/// board behind a simulated probe).
pub struct OpenedSession {
    pub session: Session,
    pub keep_alive: Option<Box<dyn std::any::Any>>,
}

impl From<Session> for OpenedSession {
    fn from(session: Session) -> Self {
        OpenedSession {
            session,
            keep_alive: None,
        }
    }
}

/// Opens the probe-rs session on the worker thread. Real probes and `--sim`
/// differ only in the opener; everything downstream is shared.
pub struct SessionSource {
    open: Box<dyn FnOnce() -> anyhow::Result<OpenedSession> + Send>,
    /// Called on the worker thread after every GDB connection.
    connection_ended: Option<Box<dyn FnMut() + Send>>,
    /// The board's own clock, if it has one apart from host time.
    board_clock: Option<crate::flash::progress::BoardClock>,
}

impl SessionSource {
    pub fn new(f: impl FnOnce() -> anyhow::Result<OpenedSession> + Send + 'static) -> Self {
        SessionSource {
            open: Box::new(f),
            connection_ended: None,
            board_clock: None,
        }
    }

    /// The board's own clock (the virtual board's time): flash summaries
    /// give it next to host time. Without one, host time is the board's.
    pub fn with_board_clock(mut self, clock: crate::flash::progress::BoardClock) -> Self {
        self.board_clock = Some(clock);
        self
    }

    /// Run `f` after every GDB connection (the virtual board logs its
    /// per-connection summary).
    pub fn on_connection_end(mut self, f: impl FnMut() + Send + 'static) -> Self {
        self.connection_ended = Some(Box::new(f));
        self
    }
}

/// Messages from the tokio side.
#[derive(Debug)]
pub enum ToWorker {
    /// A connection starts; `out` carries bytes back to it. The worker gets
    /// controllers; an observer's thread gets the same messages
    /// (`observer.rs`).
    Connect {
        id: u64,
        out: OutSender<Vec<u8>>,
        /// The client is already in no-ack mode (an observer that took
        /// control with `monitor control`).
        no_ack: bool,
    },
    Data {
        id: u64,
        bytes: Vec<u8>,
        /// Returned to the socket task when this message is dropped: bounds
        /// how much unhandled input can queue up.
        credit: OwnedSemaphorePermit,
    },
    /// The socket closed (EOF, error, or server shutdown).
    Disconnected { id: u64 },
    /// A read for an observer connection, answered between the worker's
    /// own operations (see `gdb::observer`). At most one per observer.
    Observe(ObserverRequest),
}

/// Handle to the running worker.
pub struct ProbeWorker {
    tx: Sender<ToWorker>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ProbeWorker {
    /// Start the worker thread and open the session on it. Returns once the
    /// session is open, or with the opener's error.
    pub fn start(source: SessionSource, board: Arc<Board>) -> anyhow::Result<ProbeWorker> {
        Self::start_with_events(source, board, crate::flash::progress::no_events())
    }

    /// Like [`start`](Self::start), sending flash progress to `events`.
    pub fn start_with_events(
        source: SessionSource,
        board: Arc<Board>,
        events: EventSink,
    ) -> anyhow::Result<ProbeWorker> {
        let memory_map: Arc<str> = crate::extflash::board_memory_map_xml(&board)?.into();
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
        let thread = std::thread::Builder::new()
            .name("probe-worker".into())
            .spawn(move || {
                let SessionSource {
                    open,
                    connection_ended,
                    board_clock,
                } = source;
                let opened = match open() {
                    Ok(o) => {
                        let _ = ready_tx.send(Ok(()));
                        o
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let result = worker_main(
                    opened,
                    board,
                    memory_map,
                    events,
                    rx,
                    connection_ended,
                    board_clock,
                );
                if let Err(e) = &result {
                    tracing::error!("probe worker stopped: {e:#}");
                }
                result
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(ProbeWorker {
                tx,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                anyhow::bail!("probe worker thread died while opening the session")
            }
        }
    }

    pub(crate) fn sender(&self) -> Sender<ToWorker> {
        self.tx.clone()
    }

    /// Whether the worker has stopped (probe lost).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stop the worker (after all connections ended) and return its result.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        let ProbeWorker { tx, thread } = &mut self;
        drop(std::mem::replace(tx, mpsc::channel().0));
        match thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("probe worker panicked"))),
            None => Ok(()),
        }
    }
}

/// What the first packet of a connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// No packet yet: the core has not been touched.
    Untouched,
    Running,
    Halted,
}

fn worker_main(
    opened: OpenedSession,
    board: Arc<Board>,
    memory_map: Arc<str>,
    events: EventSink,
    rx: Receiver<ToWorker>,
    mut connection_ended: Option<Box<dyn FnMut() + Send>>,
    board_clock: Option<crate::flash::progress::BoardClock>,
) -> anyhow::Result<()> {
    let OpenedSession {
        mut session,
        keep_alive,
    } = opened;
    let mut observed = Observed::new(&board, memory_map.clone());
    // The external flash as the last connection probed it.
    let mut probed = None;
    // Observer requests a controller's session left unanswered.
    let mut deferred = VecDeque::new();
    loop {
        let next = match deferred.pop_front() {
            Some(request) => Ok(ToWorker::Observe(request)),
            None => rx.recv_timeout(IDLE_TICK),
        };
        match next {
            Ok(ToWorker::Connect { id, out, no_ack }) => {
                let mut target =
                    GdbTarget::new(session, board.clone(), memory_map.clone(), events.clone());
                target.remember_ext(probed);
                target.set_board_clock(board_clock.clone());
                let mut found = Found::Untouched;
                let mut state = ServeState {
                    found: &mut found,
                    observed: &mut observed,
                    deferred: &mut deferred,
                };
                let outcome = serve(&mut target, id, out, no_ack, &rx, &mut state);
                let cleanup = match &outcome {
                    End::Fault(_) => Ok(()),
                    _ => target.cleanup(),
                };
                let after = match (&outcome, cleanup) {
                    (End::Fault(_), _) => Ok(()),
                    (_, Err(f)) => Err(f),
                    (End::Detached, Ok(())) => target.resume_free(),
                    (End::Killed, Ok(())) => Ok(()),
                    // Closed, bad input, shutdown: as found.
                    (_, Ok(())) => restore_found(&mut target, id, found),
                };
                probed = target.ext_probed().or(probed);
                session = target.into_session();
                if let Some(f) = connection_ended.as_mut() {
                    f();
                }
                match (outcome, after) {
                    (End::Fault(f), _) | (_, Err(f)) => {
                        drop(session);
                        drop(keep_alive);
                        return Err(anyhow::Error::new(f).context("GDB session ended"));
                    }
                    (End::Shutdown, _) => break,
                    _ => tracing::info!(id, "connection finished; waiting for the next GDB"),
                }
            }
            Ok(ToWorker::Observe(request)) => {
                match observed.answer(SessionOwner::Idle(&mut session), &request.query) {
                    Ok(reply) => request.answer(reply),
                    Err(f) => {
                        drop(session);
                        drop(keep_alive);
                        return Err(anyhow::Error::new(f).context("answering an observer"));
                    }
                }
            }
            // Stale traffic from a connection we already finished.
            Ok(ToWorker::Data { .. } | ToWorker::Disconnected { .. }) => {}
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    drop(session);
    drop(keep_alive);
    Ok(())
}

/// A connection that ended without `D` or `k` leaves the core as its first
/// packet found it.
fn restore_found(target: &mut GdbTarget, id: u64, found: Found) -> Result<(), SessionFault> {
    if found != Found::Untouched && target.run_state_chosen() {
        tracing::info!(
            id,
            "connection ended without detach; it reset, halted or programmed the core: \
             leaving the core as it left it"
        );
        return Ok(());
    }
    match found {
        Found::Untouched => {
            tracing::info!(
                id,
                "connection ended before any packet; the core was not touched"
            );
            Ok(())
        }
        Found::Running => {
            tracing::info!(
                id,
                "connection ended without detach; the core was running when GDB connected: \
                 letting it run"
            );
            target.resume_free()
        }
        Found::Halted => {
            if target.exec_state() == ExecState::Running {
                tracing::info!(
                    id,
                    "connection ended without detach; the core was halted when GDB connected: \
                     halting it again"
                );
                target.interrupt()?;
            } else {
                tracing::info!(
                    id,
                    "connection ended without detach; the core stays halted as found"
                );
            }
            Ok(())
        }
    }
}

/// Note whether the core runs, then halt it (GDB expects a stopped target).
pub(super) fn attach(target: &mut GdbTarget, id: u64) -> Result<Found, SessionFault> {
    let halted = target.core().and_then(|mut core| {
        core.core_halted()
            .map_err(|source| GdbError::Status { source })
    });
    let found = match halted {
        Ok(true) => Found::Halted,
        Ok(false) => Found::Running,
        Err(e) => {
            fatal_only(e)?;
            // Status unknown: halting it is what GDB expects; leave it so.
            Found::Halted
        }
    };
    tracing::info!(id, ?found, "first packet from GDB; halting the core");
    target.on_connect()?;
    if let Some(hint) = target.lockup_hint() {
        tracing::info!(id, "{hint}");
    }
    Ok(found)
}

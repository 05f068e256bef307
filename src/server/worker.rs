//! The probe worker: one OS thread that owns the probe-rs [`Session`] for the
//! server's lifetime and, while a GDB is connected, the gdbstub state machine
//! and our [`GdbTarget`]. All probe-rs calls happen on this thread.
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
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use gdbstub::conn::Connection;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStubBuilder};
use probe_rs::Session;
use tokio::sync::mpsc::Sender as OutSender;
use tokio::sync::OwnedSemaphorePermit;

use super::end::End;
use super::error_text::ErrorText;
use super::framer::{frame_packet, Frame, Framer};
use super::front;
use crate::board::Board;
use crate::flash::EventSink;
use crate::gdb::observer::{Observed, ObserverRequest, SessionOwner};
use crate::gdb::{fatal_only, ExecState, GdbError, GdbTarget, SessionFault};
use crate::ratelimit::RateLimit;

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
const IDLE_TICK: Duration = Duration::from_secs(1);

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
        let memory_map: Arc<str> = crate::board::memory_map::board_memory_map_xml(&board)?.into();
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
enum Found {
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
fn attach(target: &mut GdbTarget, id: u64) -> Result<Found, SessionFault> {
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
    Ok(found)
}

/// gdbstub's connection: buffers writes, sends them on flush.
pub(super) struct ChannelConnection {
    pub(super) pending: Vec<u8>,
    /// Bounded; `blocking_send` waits at most until the socket task drains
    /// it or drops the receiver (write timeout, shutdown).
    out: OutSender<Vec<u8>>,
    /// The last `$...#cs` frame sent, for retransmission on a NAK (`-`):
    /// gdbstub does not retransmit and would drop the connection.
    last_packet: Vec<u8>,
    /// NAKs answered for `last_packet`; bounded so a broken link ends.
    resends: u8,
    /// Error strings the client asked for (`error_text.rs`).
    pub(super) errors: ErrorText,
}

/// How often one reply is sent again before a NAK ends the connection.
const MAX_RESENDS: u8 = 3;

impl ChannelConnection {
    pub(super) fn new(out: OutSender<Vec<u8>>) -> Self {
        ChannelConnection {
            pending: Vec::new(),
            last_packet: Vec::new(),
            resends: 0,
            out,
            errors: ErrorText::default(),
        }
    }

    /// Remember the last complete frame in `bytes` (ack mode only needs it).
    fn note_sent(&mut self, bytes: &[u8]) {
        let Some(start) = bytes.iter().rposition(|&b| b == b'$') else {
            return;
        };
        let frame = &bytes[start..];
        if frame.len() >= 4 && frame[frame.len() - 3] == b'#' {
            self.last_packet = frame.to_vec();
            self.resends = 0;
        }
    }

    /// Answer a NAK by sending the last frame again; false when there is
    /// nothing to resend or the bound is reached.
    pub(super) fn resend(&mut self) -> bool {
        if self.last_packet.is_empty() || self.resends >= MAX_RESENDS {
            return false;
        }
        self.resends += 1;
        let frame = self.last_packet.clone();
        self.pending.extend_from_slice(&frame);
        true
    }
}

/// The client's socket is gone.
#[derive(Debug, thiserror::Error)]
#[error("client connection closed")]
pub(super) struct ConnectionClosed;

impl Connection for ChannelConnection {
    type Error = ConnectionClosed;

    fn write(&mut self, byte: u8) -> Result<(), ConnectionClosed> {
        self.pending.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), ConnectionClosed> {
        self.pending.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConnectionClosed> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut bytes = std::mem::take(&mut self.pending);
        self.errors.rewrite(&mut bytes, crate::gdb::take_error_text);
        self.note_sent(&bytes);
        self.out.blocking_send(bytes).map_err(|_| ConnectionClosed)
    }
}

type Machine<'a> = GdbStubStateMachine<'a, GdbTarget, ChannelConnection>;

fn conn<'m, 'a>(sm: &'m mut Machine<'a>) -> &'m mut ChannelConnection {
    match sm {
        GdbStubStateMachine::Idle(i) => i.borrow_conn(),
        GdbStubStateMachine::Running(i) => i.borrow_conn(),
        GdbStubStateMachine::CtrlCInterrupt(i) => i.borrow_conn(),
        GdbStubStateMachine::Disconnected(i) => i.borrow_conn(),
    }
}

/// What [`serve`] keeps beyond one connection.
struct ServeState<'a> {
    found: &'a mut Found,
    observed: &'a mut Observed,
    /// Observer requests waiting for the controller's queue to be empty;
    /// at most one per observer ([`crate::gdb::observer::Owner`]).
    deferred: &'a mut VecDeque<ObserverRequest>,
}

/// Serve one connection until it ends. The target must be handed back to
/// the worker in any case, so this never takes ownership of it.
fn serve(
    target: &mut GdbTarget,
    id: u64,
    out: OutSender<Vec<u8>>,
    no_ack: bool,
    rx: &Receiver<ToWorker>,
    state: &mut ServeState<'_>,
) -> End {
    tracing::info!(
        id,
        "GDB connected; the core is left alone until the first packet"
    );
    let stub = match GdbStubBuilder::new(ChannelConnection::new(out))
        .packet_buffer_size(PACKET_BUFFER)
        .build()
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot build the GDB stub: {e:?}");
            return End::Protocol(format!("{e:?}"));
        }
    };
    let mut sm = match stub.run_state_machine(target) {
        Ok(sm) => sm,
        Err(e) => return stub_error(e),
    };
    let mut framer = Framer::new(MAX_FRAME);
    let mut frames = Vec::new();
    let mut link = Link {
        id,
        no_ack: false,
        found: &mut *state.found,
        log: RateLimit::new(),
    };
    let mut poll = POLL_MIN;
    if no_ack {
        // gdbstub learns it as GDB told the observer, whose reply was sent
        // then: this one goes nowhere.
        let (sink, _drop_it) = tokio::sync::mpsc::channel(4);
        let out = std::mem::replace(&mut conn(&mut sm).out, sink);
        for &b in &frame_packet(b"QStartNoAckMode") {
            sm = match sm {
                GdbStubStateMachine::Idle(i) => match i.incoming_data(target, b) {
                    Ok(sm) => sm,
                    Err(e) => return stub_error(e),
                },
                other => other,
            };
        }
        let c = conn(&mut sm);
        c.pending.clear();
        c.out = out;
        link.no_ack = true;
    }

    loop {
        // Settle the state machine: report stops, handle interrupts.
        sm = match sm {
            GdbStubStateMachine::Running(inner) => match target.poll_stop() {
                Err(f) => return End::Fault(f),
                Ok(Some(reason)) => {
                    poll = POLL_MIN;
                    match inner.report_stop(target, reason) {
                        Ok(sm) => {
                            let mut sm = sm;
                            if conn(&mut sm).flush().is_err() {
                                return End::Closed;
                            }
                            sm
                        }
                        Err(e) => return stub_error(e),
                    }
                }
                Ok(None) => GdbStubStateMachine::Running(inner),
            },
            GdbStubStateMachine::CtrlCInterrupt(inner) => {
                let reason = match target.interrupt() {
                    Ok(r) => r,
                    Err(f) => return End::Fault(f),
                };
                match inner.interrupt_handled(target, Some(reason)) {
                    Ok(mut sm) => {
                        if conn(&mut sm).flush().is_err() {
                            return End::Closed;
                        }
                        sm
                    }
                    Err(e) => return stub_error(e),
                }
            }
            GdbStubStateMachine::Disconnected(inner) => {
                return match inner.get_reason() {
                    DisconnectReason::Disconnect => {
                        tracing::info!(id, "GDB detached; core runs on");
                        End::Detached
                    }
                    DisconnectReason::Kill => {
                        tracing::info!(id, "GDB killed the target; core stays halted");
                        End::Killed
                    }
                    other => {
                        tracing::info!(id, ?other, "GDB session ended");
                        End::Protocol(format!("{other:?}"))
                    }
                };
            }
            idle => idle,
        };
        let running = matches!(sm, GdbStubStateMachine::Running(_));
        let wait = if running { poll } else { IDLE_TICK };

        // The controller first: an observer's request waits until no
        // message is queued, and the next is taken only after it.
        let next = if state.deferred.is_empty() {
            rx.recv_timeout(wait)
        } else {
            match rx.try_recv() {
                Ok(message) => Ok(message),
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {
                    let request = state.deferred.pop_front().expect("not empty");
                    match state
                        .observed
                        .answer(SessionOwner::Controller(target), &request.query)
                    {
                        Ok(reply) => request.answer(reply),
                        Err(f) => return End::Fault(f),
                    }
                    continue;
                }
            }
        };
        match next {
            Ok(ToWorker::Data {
                id: from, bytes, ..
            }) if from == id => {
                frames.clear();
                if let Err(e) = framer.push(&bytes, &mut frames) {
                    tracing::warn!(id, "closing connection: {e}");
                    return End::BadInput(e);
                }
                for frame in frames.drain(..) {
                    sm = match feed(sm, target, &frame, &mut link) {
                        Ok(sm) => sm,
                        Err(e) => return stub_error(e),
                    };
                    if matches!(sm, GdbStubStateMachine::Disconnected(_)) {
                        break;
                    }
                }
                if conn(&mut sm).flush().is_err() {
                    return End::Closed;
                }
                state.observed.note_registers(target.cached_registers());
            }
            Ok(ToWorker::Disconnected { id: from }) if from == id => {
                tracing::info!(id, "GDB closed the connection");
                return End::Closed;
            }
            Ok(ToWorker::Observe(request)) => state.deferred.push_back(request),
            Ok(ToWorker::Connect { id: other, out, .. }) => {
                // The accept loop admits one controlling client; if one slips
                // through a race, close it rather than interleave sessions.
                tracing::warn!(id = other, "refusing a second controlling connection");
                drop(out);
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                if running {
                    poll = (poll * 2).min(POLL_MAX);
                }
            }
            Err(RecvTimeoutError::Disconnected) => return End::Shutdown,
        }
    }
}

enum FeedError {
    Stub(gdbstub::stub::GdbStubError<SessionFault, ConnectionClosed>),
    Fault(SessionFault),
}

impl From<gdbstub::stub::GdbStubError<SessionFault, ConnectionClosed>> for FeedError {
    fn from(e: gdbstub::stub::GdbStubError<SessionFault, ConnectionClosed>) -> Self {
        FeedError::Stub(e)
    }
}

/// Per-connection protocol state the worker keeps beside gdbstub's.
struct Link<'f> {
    id: u64,
    no_ack: bool,
    found: &'f mut Found,
    /// Warnings the client can provoke at will (bad `qCRC`s).
    log: RateLimit,
}

impl Drop for Link<'_> {
    fn drop(&mut self) {
        self.log.flush(&format!("connection {}", self.id));
    }
}

/// Feed one frame to gdbstub, unless the server answers it itself.
///
/// Relies on RSP's rules: `-` asks for the last reply again only in ack
/// mode (after `QStartNoAckMode` it is line noise, ignored as OpenOCD
/// does); `0x03` means something only while the target runs (GDB sends it
/// to stop a `c`/`s`); while stopped it is dropped, so it cannot become a
/// stale stop report for the next `c`.
fn feed<'a>(
    mut sm: Machine<'a>,
    target: &mut GdbTarget,
    frame: &Frame,
    link: &mut Link<'_>,
) -> Result<Machine<'a>, FeedError> {
    if let Some(payload) = frame.payload() {
        tracing::trace!(packet = %String::from_utf8_lossy(payload), "<-");
    }
    let Some(frame) = front::pre(frame, conn(&mut sm), link.no_ack) else {
        return Ok(sm);
    };
    let frame: &Frame = &frame;
    if *frame == Frame::Control(0x03) && !matches!(sm, GdbStubStateMachine::Running(_)) {
        tracing::debug!(id = link.id, "ignoring Ctrl-C: the core is not running");
        return Ok(sm);
    }
    if *link.found == Found::Untouched && frame.payload().is_some() {
        *link.found = attach(target, link.id).map_err(FeedError::Fault)?;
    }
    if let Some(payload) = frame.payload() {
        // A new packet: no error text yet.
        crate::gdb::take_error_text();
        if let Some(reply) = conn(&mut sm).errors.incoming(payload) {
            let c = conn(&mut sm);
            if !link.no_ack {
                c.pending.push(b'+');
            }
            c.pending.extend_from_slice(&frame_packet(reply));
            return Ok(sm);
        }
    }
    if let (GdbStubStateMachine::Idle(_), Some(payload)) = (&sm, frame.payload()) {
        if let Some(reply) =
            intercept(target, payload, &mut link.log, link.id).map_err(FeedError::Fault)?
        {
            front::reply(conn(&mut sm), link.no_ack, &[reply]);
            return Ok(sm);
        }
    }
    let bytes: &[u8] = match frame {
        Frame::Control(b) => std::slice::from_ref(b),
        Frame::Packet(p) => p,
    };
    for &b in bytes {
        sm = match sm {
            GdbStubStateMachine::Idle(i) => i.incoming_data(target, b)?,
            GdbStubStateMachine::Running(i) => i.incoming_data(target, b)?,
            GdbStubStateMachine::CtrlCInterrupt(i) => {
                // An interrupt arrived mid-stream: handle it before going on.
                let reason = target.interrupt().map_err(FeedError::Fault)?;
                match i.interrupt_handled(target, Some(reason))? {
                    GdbStubStateMachine::Idle(i) => i.incoming_data(target, b)?,
                    GdbStubStateMachine::Running(i) => i.incoming_data(target, b)?,
                    other => other,
                }
            }
            d @ GdbStubStateMachine::Disconnected(_) => return Ok(d),
        };
    }
    link.no_ack = front::no_ack_after(frame, link.no_ack);
    Ok(sm)
}

/// Packets the server answers itself, before gdbstub.
///
/// `qCRC:addr,len`: gdbstub has no handler and would parse it as `qC` with
/// trailing junk (a protocol error that drops the connection). We compute
/// the CRC ([`GdbTarget::qcrc`]: the window on the target through the stub,
/// the rest from memory read through the probe) and reply `C<crc32>`, or
/// `E xx` with the reason in the log.
///
/// `k`: gdbstub answers `OK` in extended mode, but the reply to `k` is a
/// stop reply saying the process ended (GDB manual, `k`; LLDB's `process
/// kill` and its quit wait for `X`/`W`). The core is halted (the board
/// cannot be killed) and the reply is `X09` (killed by SIGKILL). GDB uses
/// `vKill` in extended mode, which keeps its `OK`.
fn intercept(
    target: &mut GdbTarget,
    payload: &[u8],
    log: &mut RateLimit,
    id: u64,
) -> Result<Option<Vec<u8>>, SessionFault> {
    if payload == b"k" {
        return Ok(Some(match target.kill_halt() {
            Ok(()) => {
                tracing::info!("killed by the client (`k`): core halted");
                b"X09".to_vec()
            }
            Err(e) => {
                let errno = e.errno();
                match crate::gdb::to_target_error(e) {
                    gdbstub::target::TargetError::Fatal(f) => return Err(f),
                    _ => format!("E{errno:02x}").into_bytes(),
                }
            }
        }));
    }
    let Some(args) = payload.strip_prefix(b"qCRC:") else {
        return Ok(None);
    };
    let from = format!("connection {id}");
    let Some((addr, len)) = crate::gdb::crc::parse_qcrc(args) else {
        log.warn(
            "failed qCRCs",
            &from,
            || tracing::warn!(id, packet = %String::from_utf8_lossy(payload), "malformed qCRC"),
        );
        crate::gdb::note_error_text(format!(
            "malformed qCRC: {}",
            String::from_utf8_lossy(payload)
        ));
        return Ok(Some(b"E01".to_vec()));
    };
    Ok(Some(match target.qcrc(addr, len) {
        Ok(crc) => format!("C{crc:08x}").into_bytes(),
        Err(e) => {
            let text = format!(
                "qCRC of {len:#x} bytes at {addr:#010x} failed: {}",
                crate::error::DisplayChain(&e)
            );
            log.warn("failed qCRCs", &from, || tracing::warn!(id, "{text}"));
            crate::gdb::note_error_text(text);
            format!("E{:02x}", e.errno()).into_bytes()
        }
    }))
}

/// How a gdbstub error ends the connection: a target fault ends the session,
/// anything else (bad packet, buffer overflow, socket gone) only this
/// connection.
fn stub_error(e: impl Into<FeedError>) -> End {
    match e.into() {
        FeedError::Fault(f) => End::Fault(f),
        FeedError::Stub(e) if e.is_target_error() => match e.into_target_error() {
            Some(f) => End::Fault(f),
            None => End::Closed,
        },
        FeedError::Stub(e) if e.is_connection_error() => {
            tracing::info!("client connection closed");
            End::Closed
        }
        FeedError::Stub(e) => {
            tracing::warn!("closing connection after a protocol error: {e}");
            End::Protocol(e.to_string())
        }
    }
}

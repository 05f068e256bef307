//! Serving one controlling GDB connection on the probe worker's thread:
//! the gdbstub state machine settled (stops, Ctrl-C, disconnect), frames
//! fed to it through the shared RSP front end (`front.rs`), observer
//! requests answered between the controller's packets, and how a gdbstub
//! error ends the connection.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};

use gdbstub::conn::Connection;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStubBuilder};
use tokio::sync::mpsc::Sender as OutSender;

use super::channel::{ChannelConnection, ConnectionClosed};
use super::end::End;
use super::framer::{frame_packet, Frame, Framer};
use super::front::{self, conn};
use super::intercept::intercept;
use super::worker::{
    attach, Found, ToWorker, IDLE_TICK, MAX_FRAME, PACKET_BUFFER, POLL_MAX, POLL_MIN,
};
use crate::gdb::observer::{Observed, ObserverRequest, SessionOwner};
use crate::gdb::{GdbTarget, SessionFault};
use crate::ratelimit::RateLimit;

type Machine<'a> = front::Machine<'a, GdbTarget>;

/// What [`serve`] keeps beyond one connection.
pub(super) struct ServeState<'a> {
    pub(super) found: &'a mut Found,
    pub(super) observed: &'a mut Observed,
    /// Observer requests waiting for the controller's queue to be empty;
    /// at most one per observer ([`crate::gdb::observer::Owner`]).
    pub(super) deferred: &'a mut VecDeque<ObserverRequest>,
}

/// Serve one connection until it ends. The target must be handed back to
/// the worker in any case, so this never takes ownership of it.
pub(super) fn serve(
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
    let mut peer = PeerState {
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
        peer.no_ack = true;
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
                    sm = match feed(sm, target, &frame, &mut peer) {
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
struct PeerState<'f> {
    id: u64,
    no_ack: bool,
    found: &'f mut Found,
    /// Warnings the client can provoke at will (bad `qCRC`s).
    log: RateLimit,
}

impl Drop for PeerState<'_> {
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
    peer: &mut PeerState<'_>,
) -> Result<Machine<'a>, FeedError> {
    if let Some(payload) = frame.payload() {
        tracing::trace!(packet = %String::from_utf8_lossy(payload), "<-");
    }
    let Some(frame) = front::pre(frame, conn(&mut sm), peer.no_ack) else {
        return Ok(sm);
    };
    let frame: &Frame = &frame;
    if *frame == Frame::Control(0x03) && !matches!(sm, GdbStubStateMachine::Running(_)) {
        tracing::debug!(id = peer.id, "ignoring Ctrl-C: the core is not running");
        return Ok(sm);
    }
    if *peer.found == Found::Untouched && frame.payload().is_some() {
        *peer.found = attach(target, peer.id).map_err(FeedError::Fault)?;
    }
    if let Some(payload) = frame.payload() {
        // A new packet: no error text yet.
        crate::gdb::take_error_text();
        if let Some(reply) = conn(&mut sm).errors.incoming(payload) {
            let c = conn(&mut sm);
            if !peer.no_ack {
                c.pending.push(b'+');
            }
            c.pending.extend_from_slice(&frame_packet(reply));
            return Ok(sm);
        }
    }
    if let (GdbStubStateMachine::Idle(_), Some(payload)) = (&sm, frame.payload()) {
        if let Some(reply) =
            intercept(target, payload, &mut peer.log, peer.id).map_err(FeedError::Fault)?
        {
            front::reply(conn(&mut sm), peer.no_ack, &[reply]);
            return Ok(sm);
        }
    }
    front::feed_bytes(sm, target, frame, &mut peer.no_ack, &mut |i, target| {
        // An interrupt arrived mid-stream: handle it before going on.
        let reason = target.interrupt().map_err(FeedError::Fault)?;
        Ok(i.interrupt_handled(target, Some(reason))?)
    })
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

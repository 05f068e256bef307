//! An observer connection's session: gdbstub over the read-only
//! [`ObserverTarget`] on a thread of its own, fed by the same socket task,
//! bounded queues and write timeout as a controlling connection
//! (`super::connection`).
//!
//! Every frame passes the controller's checks first (framer, non-RSP
//! input, and `front.rs`: [`vet`](super::vet), acks and no-ack mode), then
//! [`readonly::refusal`](super::readonly::refusal): a packet that would
//! act gets `E0d` (after a console line for `monitor`) and a warning
//! naming the connection (rate-limited), and never reaches gdbstub. `0x03`
//! is dropped with a warning: an observer cannot halt the core. `qCRC` is
//! answered here (gdbstub has no handler). `monitor control` takes the
//! controller role once it is free: the session ends with a [`Handover`]
//! and the socket task gives the connection to the probe worker. When the
//! connection ends nothing is sent to the target.

use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use gdbstub::conn::Connection;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStubBuilder};

use super::channel::ChannelConnection;
use super::end::End;
use super::framer::{frame_packet, Frame, Framer};
use super::front::{self, conn};
use super::intercept;
use super::readonly;
use super::worker::{ToWorker, MAX_FRAME, PACKET_BUFFER};
use crate::gdb::observer::{ObserverTarget, REFUSED_ERRNO};

/// How often an idle observer thread wakes up.
const TICK: Duration = Duration::from_secs(1);

type Machine<'a> = GdbStubStateMachine<'a, ObserverTarget, ChannelConnection>;
type StubError = gdbstub::stub::GdbStubError<
    crate::gdb::observer::ObserverFault,
    <ChannelConnection as Connection>::Error,
>;

/// Takes the controller role for this connection if it is free; else the
/// controller's address (if known) is the error.
pub(super) type Claim = Box<dyn Fn() -> Result<(), Option<SocketAddr>> + Send>;

/// What the socket task needs to hand an observer connection that took
/// control to the probe worker.
#[derive(Debug)]
pub(super) struct Handover {
    /// GDB switched to no-ack mode on this connection.
    pub no_ack: bool,
    /// The reply to `monitor control`, for the socket task to send once its
    /// reads go to the worker.
    pub reply: Vec<u8>,
    /// Bytes GDB sent after `monitor control` (unread by this session).
    pub pending: Vec<u8>,
}

/// Serve one observer connection: `rx` gets the socket task's messages
/// (`Connect`, `Data`, `Disconnected`) as the worker does for a
/// controller. Returns when the connection ends, or when it took control
/// (`monitor control`): then the socket task gets a [`Handover`].
pub(super) fn serve(
    rx: Receiver<ToWorker>,
    mut target: ObserverTarget,
    claim: Claim,
    handover: tokio::sync::oneshot::Sender<Handover>,
) {
    let id = target.id();
    let out = loop {
        match rx.recv_timeout(TICK) {
            Ok(ToWorker::Connect { out, .. }) => break out,
            Ok(_) | Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        }
    };
    let stub = match GdbStubBuilder::new(ChannelConnection::new(out))
        .packet_buffer_size(PACKET_BUFFER)
        .build()
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(id, "cannot build the GDB stub: {e:?}");
            return;
        }
    };
    let mut given = None;
    let ended = match stub.run_state_machine(&mut target) {
        Ok(sm) => run(sm, &mut target, &rx, &claim, &mut given),
        Err(e) => End::Protocol(e.to_string()),
    };
    if let Some(h) = given {
        drop(target);
        tracing::info!(
            id,
            "observer session handed over: this connection controls the board"
        );
        let _ = handover.send(h);
        return;
    }
    // Its rate-limited warnings are reported first.
    drop(target);
    tracing::info!(
        id,
        "observer session ended ({ended}); the target was not touched"
    );
}

fn run<'a>(
    mut sm: Machine<'a>,
    target: &mut ObserverTarget,
    rx: &Receiver<ToWorker>,
    claim: &Claim,
    given: &mut Option<Handover>,
) -> End {
    let id = target.id();
    let mut framer = Framer::new(MAX_FRAME);
    let mut frames = Vec::new();
    let mut peer = PeerState {
        no_ack: false,
        claim,
        took_control: false,
    };
    loop {
        match rx.recv_timeout(TICK) {
            Ok(ToWorker::Data { bytes, .. }) => {
                frames.clear();
                if let Err(e) = framer.push(&bytes, &mut frames) {
                    return End::BadInput(e);
                }
                let mut batch = std::mem::take(&mut frames).into_iter();
                while let Some(frame) = batch.next() {
                    sm = match feed(sm, target, &frame, &mut peer) {
                        Ok(sm) => sm,
                        Err(e) => return End::Protocol(e.to_string()),
                    };
                    if peer.took_control {
                        if conn(&mut sm).flush().is_err() {
                            return End::Closed;
                        }
                        *given = Some(hand_over(peer.no_ack, batch, rx));
                        return End::SessionEnded;
                    }
                    if let GdbStubStateMachine::Disconnected(d) = &sm {
                        return match d.get_reason() {
                            DisconnectReason::Disconnect => {
                                let _ = conn(&mut sm).flush();
                                End::Detached
                            }
                            other => End::Protocol(format!("{other:?}")),
                        };
                    }
                }
                if conn(&mut sm).flush().is_err() {
                    return End::Closed;
                }
            }
            Ok(ToWorker::Disconnected { .. }) | Err(RecvTimeoutError::Disconnected) => {
                tracing::debug!(id, "observer closed the connection");
                return End::Closed;
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Per-connection protocol state beside gdbstub's.
struct PeerState<'c> {
    no_ack: bool,
    claim: &'c Claim,
    /// `monitor control` succeeded: the session ends here.
    took_control: bool,
}

/// The handover after `monitor control`: the reply, and what GDB sent after
/// it (the rest of this read and any read queued since).
fn hand_over(no_ack: bool, rest: impl Iterator<Item = Frame>, rx: &Receiver<ToWorker>) -> Handover {
    let mut reply = Vec::new();
    if !no_ack {
        reply.push(b'+');
    }
    reply.extend(frame_packet(&console_packet(
        "this connection now controls the board\n",
    )));
    reply.extend(frame_packet(b"OK"));
    let mut pending = Vec::new();
    for frame in rest {
        match frame {
            Frame::Control(b) => pending.push(b),
            Frame::Packet(p) => pending.extend(p),
        }
    }
    while let Ok(message) = rx.try_recv() {
        if let ToWorker::Data { bytes, .. } = message {
            pending.extend(bytes);
        }
    }
    Handover {
        no_ack,
        reply,
        pending,
    }
}

/// Feed one frame to gdbstub, unless it is refused or answered here.
fn feed<'a>(
    mut sm: Machine<'a>,
    target: &mut ObserverTarget,
    frame: &Frame,
    peer: &mut PeerState<'_>,
) -> Result<Machine<'a>, StubError> {
    let id = target.id();
    let Some(frame) = front::pre(frame, conn(&mut sm), peer.no_ack) else {
        return Ok(sm);
    };
    let frame: &Frame = &frame;
    if *frame == Frame::Control(0x03) {
        target.warn("Ctrl-Cs", || {
            tracing::warn!(
                id,
                "observer sent Ctrl-C: ignored, an observer cannot halt the core"
            )
        });
        return Ok(sm);
    }
    if let Some(payload) = frame.payload() {
        if readonly::monitor_text(payload).as_deref() == Some("control") {
            match (peer.claim)() {
                Ok(()) => peer.took_control = true,
                Err(holder) => {
                    let line = format!(
                        "monitor control: {} controls the board; this connection stays an \
                         observer (ask again once it has disconnected)\n",
                        holder.map_or("another GDB".into(), |a| a.to_string())
                    );
                    let refused = format!("E{REFUSED_ERRNO:02x}").into_bytes();
                    front::reply(
                        conn(&mut sm),
                        peer.no_ack,
                        &[console_packet(&line), refused],
                    );
                }
            }
            return Ok(sm);
        }
        if let Some(what) = readonly::refusal(payload) {
            let shown: String = String::from_utf8_lossy(payload).chars().take(48).collect();
            target.warn("refused packets", || {
                tracing::warn!(
                    id,
                    packet = %shown,
                    "observer connection: refusing to {what}; only the controlling GDB may \
                     change the target"
                )
            });
            let mut replies = Vec::new();
            if let Some(cmd) = readonly::monitor_text(payload) {
                let line = format!(
                    "monitor {cmd}: refused, this connection only observes (try `monitor help`)\n"
                );
                replies.push(console_packet(&line));
            }
            replies.push(format!("E{REFUSED_ERRNO:02x}").into_bytes());
            front::reply(conn(&mut sm), peer.no_ack, &replies);
            return Ok(sm);
        }
        let qcrc = intercept::qcrc(
            payload,
            id,
            |address, len| target.qcrc(address, len),
            |e| e.errno(),
            &mut |warn| target.warn("failed qCRCs", warn),
        );
        if let Some(reply) = qcrc {
            front::reply(conn(&mut sm), peer.no_ack, &[reply]);
            return Ok(sm);
        }
    }
    // Only a running target is interrupted, and an observer never runs
    // one; answer as if nothing ran.
    front::feed_bytes(sm, target, frame, &mut peer.no_ack, &mut |i, target| {
        i.interrupt_handled(target, None::<gdbstub::stub::SingleThreadStopReason<u32>>)
    })
}

/// An `O` packet carrying `text` to GDB's console.
fn console_packet(text: &str) -> Vec<u8> {
    let mut p = b"O".to_vec();
    p.extend(text.bytes().flat_map(|b| format!("{b:02x}").into_bytes()));
    p
}

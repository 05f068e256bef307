//! What every connection's frames go through before its gdbstub, the
//! controller's (`worker.rs`) and an observer's (`observer.rs`) alike: the
//! packet checks of [`vet`](super::vet) and RSP's acknowledgement rules.
//! Relies on RSP's rules: a bad checksum is NAKed (`-`) in ack mode; `-`
//! asks for the last reply again only in ack mode (after
//! `QStartNoAckMode` it is line noise, ignored as OpenOCD does).

use std::borrow::Cow;

use gdbstub::stub::state_machine::state::CtrlCInterrupt;
use gdbstub::stub::state_machine::{GdbStubStateMachine, GdbStubStateMachineInner};
use gdbstub::stub::GdbStubError;
use gdbstub::target::Target;

use super::channel::{ChannelConnection, ConnectionClosed};
use super::framer::{frame_packet, Frame};
use super::vet::{vet, Verdict};
use super::worker::PACKET_BUFFER;

/// The frame to hand on (the packet as received, or as `vet` rewrote
/// it), or `None` when it was answered or dropped here.
pub(super) fn pre<'f>(
    frame: &'f Frame,
    c: &mut ChannelConnection,
    no_ack: bool,
) -> Option<Cow<'f, Frame>> {
    match frame {
        Frame::Packet(p) => match vet(p, PACKET_BUFFER) {
            Verdict::Pass => Some(Cow::Borrowed(frame)),
            Verdict::Rewrite(p) => Some(Cow::Owned(Frame::Packet(p))),
            Verdict::Reply(r) => {
                reply(c, no_ack, &[r]);
                None
            }
            Verdict::BadChecksum => {
                tracing::debug!("packet with a bad checksum: asking for it again");
                if !no_ack {
                    c.pending.push(b'-');
                }
                None
            }
        },
        Frame::Control(b'-') if no_ack => {
            tracing::debug!("ignoring `-` in no-ack mode");
            None
        }
        Frame::Control(b'-') if c.resend() => {
            tracing::debug!("GDB asked for the last packet again: resending it");
            None
        }
        Frame::Control(_) => Some(Cow::Borrowed(frame)),
    }
}

/// Answer a packet without gdbstub: ack it (ack mode), then `replies`.
pub(super) fn reply(c: &mut ChannelConnection, no_ack: bool, replies: &[Vec<u8>]) {
    if !no_ack {
        c.pending.push(b'+');
    }
    for r in replies {
        c.pending.extend_from_slice(&frame_packet(r));
    }
}

/// After gdbstub has seen `frame`: whether the connection is in no-ack mode.
pub(super) fn no_ack_after(frame: &Frame, no_ack: bool) -> bool {
    no_ack || frame.payload() == Some(b"QStartNoAckMode")
}

/// A connection's gdbstub state machine, for either role's target.
pub(super) type Machine<'a, T> = GdbStubStateMachine<'a, T, ChannelConnection>;
/// gdbstub in the state where it asks the target to handle a Ctrl-C.
pub(super) type CtrlC<'a, T> = GdbStubStateMachineInner<'a, CtrlCInterrupt, T, ChannelConnection>;

/// A role's answer to a Ctrl-C gdbstub raised: the machine to go on with.
pub(super) type CtrlCPolicy<'a, T, E> =
    dyn FnMut(CtrlC<'a, T>, &mut T) -> Result<Machine<'a, T>, E>;

/// gdbstub's connection, whatever state the machine is in.
pub(super) fn conn<'m, T: Target>(sm: &'m mut Machine<'_, T>) -> &'m mut ChannelConnection {
    match sm {
        GdbStubStateMachine::Idle(i) => i.borrow_conn(),
        GdbStubStateMachine::Running(i) => i.borrow_conn(),
        GdbStubStateMachine::CtrlCInterrupt(i) => i.borrow_conn(),
        GdbStubStateMachine::Disconnected(i) => i.borrow_conn(),
    }
}

/// Hand `frame`'s bytes to gdbstub, then note a switch to no-ack mode.
/// A Ctrl-C that gdbstub raises mid-stream goes to `ctrl_c`, the role's
/// policy (the controller halts the core, an observer answers that
/// nothing ran); the byte then goes on to the machine it returns. Stops
/// at a disconnect.
pub(super) fn feed_bytes<'a, T: Target, E>(
    mut sm: Machine<'a, T>,
    target: &mut T,
    frame: &Frame,
    no_ack: &mut bool,
    ctrl_c: &mut CtrlCPolicy<'a, T, E>,
) -> Result<Machine<'a, T>, E>
where
    E: From<GdbStubError<T::Error, ConnectionClosed>>,
{
    let bytes: &[u8] = match frame {
        Frame::Control(b) => std::slice::from_ref(b),
        Frame::Packet(p) => p,
    };
    for &b in bytes {
        sm = match sm {
            GdbStubStateMachine::Idle(i) => i.incoming_data(target, b)?,
            GdbStubStateMachine::Running(i) => i.incoming_data(target, b)?,
            GdbStubStateMachine::CtrlCInterrupt(i) => match ctrl_c(i, target)? {
                GdbStubStateMachine::Idle(i) => i.incoming_data(target, b)?,
                GdbStubStateMachine::Running(i) => i.incoming_data(target, b)?,
                other => other,
            },
            d @ GdbStubStateMachine::Disconnected(_) => return Ok(d),
        };
    }
    *no_ack = no_ack_after(frame, *no_ack);
    Ok(sm)
}

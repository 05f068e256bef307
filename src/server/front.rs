//! What every connection's frames go through before its gdbstub, the
//! controller's (`worker.rs`) and an observer's (`observer.rs`) alike: the
//! packet checks of [`vet`](super::vet) and RSP's acknowledgement rules.
//! Relies on RSP's rules: a bad checksum is NAKed (`-`) in ack mode; `-`
//! asks for the last reply again only in ack mode (after
//! `QStartNoAckMode` it is line noise, ignored as OpenOCD does).

use std::borrow::Cow;

use super::channel::ChannelConnection;
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

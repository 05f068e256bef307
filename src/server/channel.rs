//! gdbstub's [`Connection`] for one client, shared by the controller
//! (`serve.rs`) and observers (`observer.rs`): writes are buffered and sent
//! on flush over the connection's bounded channel, the last frame is kept
//! for a resend on NAK, and error text the client asked for is applied.

use gdbstub::conn::Connection;
use tokio::sync::mpsc::Sender as OutSender;

use super::error_text::ErrorText;

/// gdbstub's connection: buffers writes, sends them on flush.
pub(super) struct ChannelConnection {
    pub(super) pending: Vec<u8>,
    /// Bounded; `blocking_send` waits at most until the socket task drains
    /// it or drops the receiver (write timeout, shutdown).
    pub(super) out: OutSender<Vec<u8>>,
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
        self.pending.extend_from_slice(&self.last_packet);
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

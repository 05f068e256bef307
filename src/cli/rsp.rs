//! A minimal blocking RSP client: what the subcommands need to drive the
//! in-process GDB server exactly as GDB would (no-ack mode, memory map,
//! `m`/`X`, `vFlash*`, `qCRC`, `qRcmd`).
//!
//! Relies on RSP's framing (`$payload#cs`, `}` escapes in binary data,
//! run-length `*` in replies) and on the server's one-reply-per-request
//! order. Every read has a timeout: a hung server fails the command.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Reply timeout for ordinary packets.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Reply timeout for packets that erase or program (`vFlashDone`, chip
/// erase): the W25Q64JV's chip erase takes up to 100 s at datasheet maximum.
pub const LONG_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum RspError {
    #[error("connection to the in-process GDB server failed during `{packet}`")]
    Io {
        packet: String,
        #[source]
        source: io::Error,
    },
    #[error("`{packet}` failed on the target: {reply} (the log above has the reason)")]
    Target { packet: String, reply: String },
    #[error("`{packet}`: unexpected reply `{reply}`")]
    Unexpected { packet: String, reply: String },
}

/// `$payload#cs`: the server's own framing.
pub use extflash_gdb::server::framer::frame_packet as frame;

/// Escape binary data for `X`/`vFlashWrite`: `#`, `$`, `}` and `*` become
/// `}` followed by the byte xor 0x20.
pub fn escape_into(out: &mut Vec<u8>, data: &[u8]) {
    for &b in data {
        if matches!(b, b'#' | b'$' | b'}' | b'*') {
            out.push(b'}');
            out.push(b ^ 0x20);
        } else {
            out.push(b);
        }
    }
}

/// How many bytes of `data` fit in `budget` bytes once escaped.
pub fn fits_escaped(data: &[u8], budget: usize) -> usize {
    let mut used = 0;
    for (i, &b) in data.iter().enumerate() {
        let cost = if matches!(b, b'#' | b'$' | b'}' | b'*') {
            2
        } else {
            1
        };
        if used + cost > budget {
            return i;
        }
        used += cost;
    }
    data.len()
}

/// Undo run-length encoding (`X*n`: X repeated n-29 more times).
pub fn decode_rle(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        match (data[i], out.last()) {
            (b'*', Some(&last)) if i + 1 < data.len() => {
                let n = data[i + 1].saturating_sub(29) as usize;
                out.extend(std::iter::repeat_n(last, n));
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decode hex text; `None` on an odd length or a non-hex digit.
pub fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.chunks(2)
        .map(|c| {
            let s = std::str::from_utf8(c).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// A no-ack-mode RSP connection.
pub struct RspClient {
    stream: TcpStream,
    buf: Vec<u8>,
    ack_mode: bool,
}

impl RspClient {
    /// Connect and switch to no-ack mode (TCP already guarantees delivery).
    pub fn connect(addr: SocketAddr) -> Result<RspClient, RspError> {
        let io = |source| RspError::Io {
            packet: "connect".into(),
            source,
        };
        let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut c = RspClient {
            stream,
            buf: Vec::new(),
            ack_mode: true,
        };
        c.expect_ok("QStartNoAckMode")?;
        c.ack_mode = false;
        Ok(c)
    }

    fn name(payload: &[u8]) -> String {
        let end = payload
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(payload.len())
            .min(40);
        String::from_utf8_lossy(&payload[..end]).into_owned()
    }

    /// Send a packet and return the reply payload (RLE decoded), skipping
    /// `O` console packets into `console`.
    pub fn request_with(
        &mut self,
        payload: &[u8],
        timeout: Duration,
        console: &mut dyn FnMut(&str),
    ) -> Result<Vec<u8>, RspError> {
        let packet = Self::name(payload);
        let io = |source| RspError::Io {
            packet: packet.clone(),
            source,
        };
        self.stream.set_read_timeout(Some(timeout)).map_err(io)?;
        self.stream.write_all(&frame(payload)).map_err(io)?;
        let is_rcmd = payload.starts_with(b"qRcmd,");
        loop {
            let reply = self.read_packet().map_err(io)?;
            if is_rcmd && reply.len() > 1 && reply[0] == b'O' && reply != b"OK" {
                if let Some(text) = unhex(&reply[1..]) {
                    console(&String::from_utf8_lossy(&text));
                    continue;
                }
            }
            return Ok(reply);
        }
    }

    pub fn request(&mut self, payload: &[u8], timeout: Duration) -> Result<Vec<u8>, RspError> {
        self.request_with(payload, timeout, &mut |_| {})
    }

    /// Send a packet that must be answered `OK`.
    pub fn expect_ok(&mut self, payload: &str) -> Result<(), RspError> {
        self.expect_ok_bytes(payload.as_bytes(), REPLY_TIMEOUT)
    }

    pub fn expect_ok_bytes(&mut self, payload: &[u8], timeout: Duration) -> Result<(), RspError> {
        let reply = self.request(payload, timeout)?;
        check_ok(payload, reply)
    }

    /// Let the core run for about `time` (`c`), then interrupt it (Ctrl-C,
    /// 0x03) unless it stopped on its own; returns the stop reply.
    pub fn run_for(&mut self, time: Duration) -> Result<Vec<u8>, RspError> {
        let io = |source| RspError::Io {
            packet: "c".into(),
            source,
        };
        self.stream.set_read_timeout(Some(time)).map_err(io)?;
        self.stream.write_all(&frame(b"c")).map_err(io)?;
        match self.read_packet() {
            Ok(reply) => return Ok(reply),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(io(e)),
        }
        self.stream.write_all(&[0x03]).map_err(io)?;
        self.stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(io)?;
        self.read_packet().map_err(io)
    }

    fn read_byte(&mut self) -> io::Result<u8> {
        if self.buf.is_empty() {
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
            self.buf.reverse();
        }
        Ok(self.buf.pop().expect("filled above"))
    }

    /// One `$...#cs` packet; acks skipped, checksum checked.
    fn read_packet(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.read_byte()? {
                b'$' => break,
                b'+' | b'-' => continue,
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("byte {other:#04x} outside a packet"),
                    ))
                }
            }
        }
        let mut body = Vec::new();
        loop {
            match self.read_byte()? {
                b'#' => break,
                b => body.push(b),
            }
        }
        let cs = [self.read_byte()?, self.read_byte()?];
        let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        let want = std::str::from_utf8(&cs)
            .ok()
            .and_then(|s| u8::from_str_radix(s, 16).ok());
        if want != Some(sum) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "reply with a bad checksum",
            ));
        }
        if self.ack_mode {
            self.stream.write_all(b"+")?;
        }
        Ok(decode_rle(&body))
    }
}

/// `OK`, else a target error (`E xx`) or an unexpected reply.
pub fn check_ok(payload: &[u8], reply: Vec<u8>) -> Result<(), RspError> {
    if reply == b"OK" {
        return Ok(());
    }
    Err(reply_error(payload, reply))
}

pub fn reply_error(payload: &[u8], reply: Vec<u8>) -> RspError {
    let packet = RspClient::name(payload);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    if reply.starts_with('E') || reply.is_empty() {
        RspError::Target {
            packet,
            reply: if reply.is_empty() {
                "not supported".into()
            } else {
                reply
            },
        }
    } else {
        RspError::Unexpected { packet, reply }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_the_four_special_bytes_only() {
        let mut out = Vec::new();
        escape_into(&mut out, b"a#$}*b");
        assert_eq!(out, b"a}\x03}\x04}\x5d}\x0ab");
        assert_eq!(fits_escaped(b"a#b", 2), 1);
        assert_eq!(fits_escaped(b"a#b", 3), 2);
        assert_eq!(fits_escaped(b"abc", 10), 3);
    }

    #[test]
    fn rle_expands_runs_and_hex_rejects_odd_input() {
        // '0' then '*' ' ' (32-29 = 3 more).
        assert_eq!(decode_rle(b"0* 1"), b"00001");
        assert_eq!(unhex(b"0aff"), Some(vec![0x0a, 0xff]));
        assert_eq!(unhex(b"0af"), None);
        assert_eq!(unhex(b"zz"), None);
        assert_eq!(frame(b"OK"), b"$OK#9a");
    }
}

//! The virtual board on a TCP socket speaking OpenOCD's `remote_bitbang`
//! protocol, so debuggers nobody here wrote (OpenOCD's `remote_bitbang`
//! adapter over JTAG, pyOCD's `pyocd-bitbang` probe over SWD) drive its
//! SWJ-DP pin by pin ([`super::swd_wire`]).
//!
//! This module owns the character protocol and the connection only
//! (OpenOCD `doc/manual/jtag/drivers/remote_bitbang.txt`): one character
//! per request, `0`/`1` back for each read request, nothing else on the
//! wire. Requests are carried out in order and the answers to a chunk of
//! requests are sent before the next chunk is read, so a host that waits
//! for its answers (both do) always gets them.

use std::io::ErrorKind;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};

use super::board::McuBoard;
use super::swd_wire::{SwjDp, WireCounters};
use super::SimBoard;

/// pyocd-bitbang's default port.
pub const DEFAULT_PORT: u16 = 5555;

/// The bit clock a remote_bitbang board charges transactions at by
/// default: a host that sends a character per clock edge over TCP manages
/// well under 1 MHz, and at this rate the flash controller's BUSY times
/// (a 16 KiB sector erase is 250 ms) pass within the wall-clock timeouts of
/// hosts that poll a few hundred transactions a second (pyOCD's is 10 s).
pub const DEFAULT_KHZ: u32 = 100;

/// Why a remote_bitbang connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum BitbangError {
    #[error(
        "remote_bitbang: unknown request {byte:#04x} ({shown:?}) at byte {offset} of the \
         connection (expected B b R Q 0-7 r-u O o c d-g Z z)",
        shown = char::from(*byte)
    )]
    UnknownRequest { byte: u8, offset: u64 },
    #[error(
        "remote_bitbang connection from {peer} sent nothing for {} s: closed so the next \
         host can connect (one host is served at a time)",
        IDLE_LIMIT.as_secs()
    )]
    Idle { peer: String },
    #[error("remote_bitbang connection from {peer}: {source}")]
    Io {
        peer: String,
        #[source]
        source: std::io::Error,
    },
}

/// How long a connected host may stay silent: the socket serves one host at
/// a time, so a host that hangs must not hold it forever.
pub const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether the host asked to close the connection (`Q`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// One connection's protocol state: the wire and the bytes seen so far.
#[derive(Debug, Default)]
pub struct Session {
    pub wire: SwjDp,
    offset: u64,
}

impl Session {
    /// A new host finds the SWJ-DP as after power-on (JTAG selected); the
    /// board itself (core, memory, DP/AP registers) keeps its state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Carry out `input`'s requests on `board`, appending the answers to
    /// read requests to `out`. Stops at `Q` (what follows it is ignored)
    /// or at the first unknown character.
    pub fn feed(
        &mut self,
        board: &mut McuBoard,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Flow, BitbangError> {
        let bit = |b: bool| if b { b'1' } else { b'0' };
        for &c in input {
            let offset = self.offset;
            self.offset += 1;
            let w = &mut self.wire;
            match c {
                b'B' | b'b' => {}
                b'R' => out.push(bit(w.read())),
                b'Q' => return Ok(Flow::Quit),
                b'0'..=b'7' => {
                    let v = c - b'0';
                    w.write(board, v & 4 != 0, v & 2 != 0, v & 1 != 0);
                }
                b'r'..=b'u' => {
                    let v = c - b'r';
                    if v & 2 != 0 {
                        w.trst();
                    }
                    board.set_nrst(v & 1 != 0);
                }
                b'O' | b'o' => w.swdio_drive(c == b'O'),
                b'c' => out.push(bit(w.swdio())),
                b'd'..=b'g' => {
                    let v = c - b'd';
                    w.swd_write(board, v & 2 != 0, v & 1 != 0);
                }
                // Remote sleeps: virtual time moves with the transactions.
                b'Z' | b'z' => {}
                b'\n' | b'\r' | b' ' => {}
                byte => return Err(BitbangError::UnknownRequest { byte, offset }),
            }
        }
        Ok(Flow::Continue)
    }
}

/// Serve hosts one after another on `listener` until accepting fails; each
/// connection's end (or error) is logged with what crossed its wire.
pub fn serve(listener: TcpListener, board: SimBoard) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept()?;
        match serve_connection(stream, &board) {
            Ok(c) => tracing::info!(
                target: "sim",
                "remote_bitbang connection from {peer} ended: {} clock edges, {} SWD packets \
                 ({} FAULT), {} JTAG-DP scans, {} line resets, {} unanswered headers",
                c.rising_edges, c.swd_packets, c.swd_faults, c.jtag_dp_scans, c.line_resets,
                c.protocol_errors
            ),
            Err(e) => tracing::warn!(target: "sim", "{e}"),
        }
        if let Err(e) = board.lock().flush() {
            tracing::warn!(target: "sim", "saving the virtual board's flash: {e}");
        }
    }
}

/// One host, until it sends `Q` or closes the connection.
pub fn serve_connection(
    mut stream: TcpStream,
    board: &SimBoard,
) -> Result<WireCounters, BitbangError> {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let io = |source| BitbangError::Io {
        peer: peer.clone(),
        source,
    };
    stream.set_nodelay(true).map_err(io)?;
    stream.set_read_timeout(Some(IDLE_LIMIT)).map_err(io)?;
    let mut session = Session::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let n = match stream.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(BitbangError::Idle { peer: peer.clone() })
            }
            r => r.map_err(io)?,
        };
        if n == 0 {
            break;
        }
        let flow = session.feed(&mut board.lock(), &buf[..n], &mut out);
        if !out.is_empty() {
            stream.write_all(&out).map_err(io)?;
            out.clear();
        }
        if flow? == Flow::Quit {
            break;
        }
    }
    Ok(session.wire.counters)
}

//! A small raw RSP client for tests that need to see the bytes a real GDB
//! would hide: acks, no-ack mode, garbage, oversized packets, interrupts.
//!
//! Blocking std I/O with a read timeout, so a hung server fails the test
//! instead of hanging it.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a read waits for the server: generous, as every test expects
/// the bytes it waits for and a loaded 2-core host is slow.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// `$payload#cs`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let sum = payload.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let mut out = vec![b'$'];
    out.extend_from_slice(payload);
    out.extend_from_slice(format!("#{sum:02x}").as_bytes());
    out
}

/// Undo RSP run-length encoding (`X*n` = X repeated n-29 more times).
pub fn decode_rle(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'*' && i + 1 < data.len() && !out.is_empty() {
            let last = *out.last().unwrap();
            let n = data[i + 1].saturating_sub(29);
            out.extend(std::iter::repeat_n(last, n as usize));
            i += 2;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Hex-encode for `M`/`qRcmd` payloads.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &[u8]) -> Vec<u8> {
    text.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect()
}

pub struct RspClient {
    stream: TcpStream,
    ack_mode: bool,
    /// Bytes read past the last packet.
    pending: Vec<u8>,
}

impl RspClient {
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<RspClient> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RspClient {
            stream,
            ack_mode: true,
            pending: Vec::new(),
        })
    }

    pub fn ack_mode(&self) -> bool {
        self.ack_mode
    }

    /// The socket, for a second thread writing while this one reads.
    pub fn try_clone_stream(&self) -> io::Result<TcpStream> {
        self.stream.try_clone()
    }

    /// Write bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Ctrl-C.
    pub fn interrupt(&mut self) -> io::Result<()> {
        self.send_raw(&[0x03])
    }

    /// The next byte from the server exactly as sent (an ack, a NAK, or
    /// the start of a packet), within [`TIMEOUT`].
    pub fn recv_raw_byte(&mut self) -> io::Result<u8> {
        self.read_byte()
    }

    fn read_byte(&mut self) -> io::Result<u8> {
        if !self.pending.is_empty() {
            return Ok(self.pending.remove(0));
        }
        let mut b = [0u8; 1];
        match self.stream.read(&mut b)? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            )),
            _ => Ok(b[0]),
        }
    }

    /// Send a packet; in ack mode wait for `+` (resend on `-`, up to 3 times).
    pub fn send_packet(&mut self, payload: &[u8]) -> io::Result<()> {
        let framed = frame(payload);
        for _ in 0..3 {
            self.stream.write_all(&framed)?;
            if !self.ack_mode {
                return Ok(());
            }
            match self.read_byte()? {
                b'+' => return Ok(()),
                b'-' => continue,
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("expected ack, got {:?}", other as char),
                    ))
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "packet rejected 3 times",
        ))
    }

    /// Read one packet (skipping stray acks), check its checksum, ack it in
    /// ack mode, and return the RLE-decoded payload.
    pub fn recv_packet(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.read_byte()? {
                b'$' => break,
                b'+' | b'-' => continue,
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected byte {other:#04x} outside a packet"),
                    ))
                }
            }
        }
        self.recv_body()
    }

    /// [`recv_packet`](Self::recv_packet) once its `$` has been read (with
    /// [`recv_raw_byte`](Self::recv_raw_byte)); the payload must not fail.
    pub fn recv_packet_rest(&mut self) -> Vec<u8> {
        self.recv_body().expect("a packet")
    }

    fn recv_body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            match self.read_byte()? {
                b'#' => break,
                b => body.push(b),
            }
        }
        let cs = [self.read_byte()?, self.read_byte()?];
        let want = u8::from_str_radix(std::str::from_utf8(&cs).unwrap_or("zz"), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad checksum digits"))?;
        let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        if sum != want {
            if self.ack_mode {
                self.stream.write_all(b"-")?;
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "checksum mismatch",
            ));
        }
        if self.ack_mode {
            self.stream.write_all(b"+")?;
        }
        Ok(decode_rle(&body))
    }

    /// Send a packet and return the reply payload.
    pub fn request(&mut self, payload: &[u8]) -> io::Result<Vec<u8>> {
        self.send_packet(payload)?;
        self.recv_packet()
    }

    /// Like [`request`] with text in and out.
    pub fn ask(&mut self, payload: &str) -> io::Result<String> {
        let reply = self.request(payload.as_bytes())?;
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    /// Switch to no-ack mode (`QStartNoAckMode`).
    pub fn start_no_ack_mode(&mut self) -> io::Result<()> {
        let reply = self.request(b"QStartNoAckMode")?;
        if reply != b"OK" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("QStartNoAckMode: {}", String::from_utf8_lossy(&reply)),
            ));
        }
        self.ack_mode = false;
        Ok(())
    }

    /// `monitor CMD`: console output (decoded `O` packets) and the final reply.
    pub fn monitor(&mut self, cmd: &str) -> io::Result<(String, String)> {
        self.send_packet(format!("qRcmd,{}", hex(cmd.as_bytes())).as_bytes())?;
        let mut console = Vec::new();
        loop {
            let reply = self.recv_packet()?;
            match reply.strip_prefix(b"O") {
                Some(h) if !h.is_empty() && reply != b"OK" => console.extend(unhex(h)),
                _ => {
                    return Ok((
                        String::from_utf8_lossy(&console).into_owned(),
                        String::from_utf8_lossy(&reply).into_owned(),
                    ))
                }
            }
        }
    }

    /// Whether the server closed the connection (reads EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 256];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Whether `c` controls the board: the controller resumes (`vCont?` lists
/// `c`), an observer connection does not (empty reply).
pub fn is_controller(c: &mut RspClient) -> bool {
    c.ask("vCont?").is_ok_and(|r| r.starts_with("vCont"))
}

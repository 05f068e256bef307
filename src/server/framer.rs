//! Splits the byte stream from GDB into RSP frames before gdbstub sees it.
//!
//! This is the seam where the server can answer a packet itself instead of
//! gdbstub (the worker answers `qCRC`, which gdbstub has no hook for, from
//! these frames), and where oversized packets and line noise are stopped: bytes outside a packet
//! other than `+`, `-` and `0x03` are dropped, and a packet longer than the
//! limit ends the connection instead of growing a buffer.

/// One unit of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+`, `-` or `0x03` (interrupt).
    Control(u8),
    /// A whole packet, `$payload#cs` exactly as received.
    Packet(Vec<u8>),
}

impl Frame {
    /// The payload of a packet (between `$` and `#`).
    pub fn payload(&self) -> Option<&[u8]> {
        match self {
            Frame::Packet(p) => Some(&p[1..p.len() - 3]),
            Frame::Control(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("packet longer than {limit} bytes")]
    PacketTooLong { limit: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Between,
    Body,
    Checksum(u8),
}

/// Incremental RSP framer.
#[derive(Debug)]
pub struct Framer {
    state: State,
    buf: Vec<u8>,
    limit: usize,
    dropped: usize,
}

impl Framer {
    /// `limit` bounds a whole frame including `$`, `#` and the checksum.
    pub fn new(limit: usize) -> Self {
        Framer {
            state: State::Between,
            buf: Vec::new(),
            limit,
            dropped: 0,
        }
    }

    /// Bytes dropped as line noise so far.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Feed bytes; complete frames are pushed to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), FrameError> {
        for &b in bytes {
            match self.state {
                State::Between => match b {
                    b'$' => {
                        self.buf.clear();
                        self.buf.push(b);
                        self.state = State::Body;
                    }
                    b'+' | b'-' | 0x03 => out.push(Frame::Control(b)),
                    _ => self.dropped += 1,
                },
                State::Body => {
                    self.buf.push(b);
                    if b == b'#' {
                        self.state = State::Checksum(0);
                    }
                }
                State::Checksum(n) => {
                    self.buf.push(b);
                    if n == 1 {
                        out.push(Frame::Packet(std::mem::take(&mut self.buf)));
                        self.state = State::Between;
                    } else {
                        self.state = State::Checksum(1);
                    }
                }
            }
            if self.buf.len() > self.limit {
                return Err(FrameError::PacketTooLong { limit: self.limit });
            }
        }
        Ok(())
    }
}

/// `$payload#cs` with the RSP checksum.
pub fn frame_packet(payload: &[u8]) -> Vec<u8> {
    let sum = payload.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.push(b'$');
    out.extend_from_slice(payload);
    out.extend_from_slice(format!("#{sum:02x}").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[&[u8]]) -> Vec<Frame> {
        let mut f = Framer::new(64);
        let mut out = Vec::new();
        for chunk in input {
            f.push(chunk, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn packets_split_across_reads_are_reassembled() {
        let out = frames(&[b"+$qSup", b"ported#3", b"7"]);
        assert_eq!(
            out,
            [
                Frame::Control(b'+'),
                Frame::Packet(b"$qSupported#37".to_vec())
            ]
        );
        assert_eq!(out[1].payload(), Some(&b"qSupported"[..]));
    }

    #[test]
    fn interrupt_and_acks_pass_through_noise_is_dropped() {
        let mut f = Framer::new(64);
        let mut out = Vec::new();
        f.push(b"xx\x03\r\n-$g#67", &mut out).unwrap();
        assert_eq!(
            out,
            [
                Frame::Control(0x03),
                Frame::Control(b'-'),
                Frame::Packet(b"$g#67".to_vec())
            ]
        );
        assert_eq!(f.dropped(), 4);
    }

    #[test]
    fn dollar_and_interrupt_inside_packet_are_payload() {
        // Binary X packets may carry 0x03 and '$' escaped or not; only '#'
        // ends the body.
        let out = frames(&[b"$X0,2:\x03$#00"]);
        assert_eq!(out, [Frame::Packet(b"$X0,2:\x03$#00".to_vec())]);
    }

    #[test]
    fn invalid_packet_over_limit_is_an_error() {
        let mut f = Framer::new(16);
        let mut out = Vec::new();
        let err = f.push(
            &[b'$'; 1]
                .iter()
                .chain([b'a'; 32].iter())
                .copied()
                .collect::<Vec<_>>(),
            &mut out,
        );
        assert_eq!(err, Err(FrameError::PacketTooLong { limit: 16 }));
    }

    #[test]
    fn frame_packet_computes_checksum() {
        assert_eq!(frame_packet(b"OK"), b"$OK#9a");
        assert_eq!(frame_packet(b""), b"$#00");
    }
}

//! Splits the byte stream from GDB into RSP frames before gdbstub sees it.
//!
//! This is the seam where the server can answer a packet itself instead of
//! gdbstub (the worker answers `qCRC`, which gdbstub has no hook for, from
//! these frames), and where oversized packets and line noise are stopped: bytes outside a packet
//! other than `+`, `-` and `0x03` are dropped, and a packet longer than the
//! limit ends the connection instead of growing a buffer.
//!
//! Before the first whole packet nothing but `+`, `-`, `0x03` and `$` is
//! accepted: GDB opens with `+$qSupported`, so anything else (an HTTP verb
//! from a web page, a TLS ClientHello, an SSH banner) is not a GDB client
//! and ends the connection before any packet it carries can run. This is
//! the class of OpenOCD's CVE-2018-5704.

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
    /// Input before the first packet that no GDB sends.
    #[error(
        "{} before the first packet (starts with {:?}): not a GDB client",
        non_rsp_kind(head),
        String::from_utf8_lossy(head)
    )]
    NotRsp {
        /// Up to [`NOT_RSP_HEAD`] bytes from the first offending one.
        head: Vec<u8>,
    },
}

/// How much of non-RSP input [`FrameError::NotRsp`] keeps for the log.
pub const NOT_RSP_HEAD: usize = 24;

/// What non-RSP input looks like, for the log.
pub fn non_rsp_kind(head: &[u8]) -> &'static str {
    const HTTP_VERBS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    if HTTP_VERBS.iter().any(|v| head.starts_with(v)) {
        "an HTTP request"
    } else if head.len() >= 2 && head[0] == 0x16 && head[1] == 0x03 {
        "a TLS handshake"
    } else if head.starts_with(b"SSH-") {
        "an SSH client"
    } else {
        "non-RSP input"
    }
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
    /// A whole packet has been seen: from then on stray bytes are noise.
    seen_packet: bool,
}

impl Framer {
    /// `limit` bounds a whole frame including `$`, `#` and the checksum.
    pub fn new(limit: usize) -> Self {
        Framer {
            state: State::Between,
            buf: Vec::new(),
            limit,
            dropped: 0,
            seen_packet: false,
        }
    }

    /// Bytes dropped as line noise so far.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Feed bytes; complete frames are pushed to `out`. On an error the
    /// connection must end and none of `out` be acted upon.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), FrameError> {
        for (i, &b) in bytes.iter().enumerate() {
            match self.state {
                State::Between => match b {
                    b'$' => {
                        self.buf.clear();
                        self.buf.push(b);
                        self.state = State::Body;
                    }
                    b'+' | b'-' | 0x03 => out.push(Frame::Control(b)),
                    _ if !self.seen_packet => {
                        let end = bytes.len().min(i + NOT_RSP_HEAD);
                        return Err(FrameError::NotRsp {
                            head: bytes[i..end].to_vec(),
                        });
                    }
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
                    if self.buf.len() > self.limit {
                        // Checked before the frame leaves: its last byte counts.
                        return Err(FrameError::PacketTooLong { limit: self.limit });
                    }
                    if n == 1 {
                        self.seen_packet = true;
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
    fn interrupt_and_acks_pass_through_noise_after_a_packet_is_dropped() {
        let mut f = Framer::new(64);
        let mut out = Vec::new();
        f.push(b"+$?#3fxx\x03\r\n-$g#67", &mut out).unwrap();
        assert_eq!(
            out,
            [
                Frame::Control(b'+'),
                Frame::Packet(b"$?#3f".to_vec()),
                Frame::Control(0x03),
                Frame::Control(b'-'),
                Frame::Packet(b"$g#67".to_vec())
            ]
        );
        assert_eq!(f.dropped(), 4);
    }

    fn not_rsp(input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut f = Framer::new(0x4000);
        let mut out = Vec::new();
        match f.push(input, &mut out) {
            Err(FrameError::NotRsp { head }) => Some((head, out.len())),
            _ => None,
        }
    }

    #[test]
    fn invalid_http_request_before_first_packet_is_not_rsp() {
        let req = b"POST / HTTP/1.1\r\nX: $M20000000,4:efbeadde#89\r\n\r\n";
        let (head, frames) = not_rsp(req).expect("rejected");
        assert_eq!(frames, 0, "no frame from the request reaches the caller");
        assert_eq!(non_rsp_kind(&head), "an HTTP request");
        let (head, _) = not_rsp(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(non_rsp_kind(&head), "an HTTP request");
    }

    #[test]
    fn invalid_tls_hello_before_first_packet_is_not_rsp() {
        let (head, _) = not_rsp(&[0x16, 0x03, 0x01, 0x02, 0x00, b'$']).unwrap();
        assert_eq!(non_rsp_kind(&head), "a TLS handshake");
    }

    #[test]
    fn invalid_text_between_acks_before_first_packet_is_not_rsp() {
        // Acks may come first (GDB sends `+`), text may not.
        let (head, frames) = not_rsp(b"+\r\n$?#3f").unwrap();
        assert_eq!(frames, 1);
        assert_eq!(head, b"\r\n$?#3f");
    }

    #[test]
    fn valid_gdb_opening_is_accepted() {
        assert_eq!(not_rsp(b"+$qSupported:multiprocess+#c6\x03-+"), None);
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
    fn invalid_frame_one_byte_over_limit_counting_the_checksum_is_an_error() {
        // `$` + 11 bytes + `#` + 2 checksum digits = 15 bytes.
        let packet = frame_packet(b"m2000000,40");
        assert_eq!(packet.len(), 15);
        let mut out = Vec::new();
        assert_eq!(
            Framer::new(14).push(&packet, &mut out),
            Err(FrameError::PacketTooLong { limit: 14 })
        );
        assert!(out.is_empty(), "no frame leaves");
        Framer::new(15).push(&packet, &mut out).unwrap();
        assert_eq!(out, [Frame::Packet(packet)]);
    }

    #[test]
    fn frame_packet_computes_checksum() {
        assert_eq!(frame_packet(b"OK"), b"$OK#9a");
        assert_eq!(frame_packet(b""), b"$#00");
    }
}

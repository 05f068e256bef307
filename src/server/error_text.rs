//! Error replies with text, for clients that ask for them:
//!
//! - LLDB sends `QEnableErrorStrings` (LLDB's `lldb-gdb-remote.txt`); after
//!   our `OK`, any error reply may be `Exx;<hex-encoded ASCII text>`, and
//!   LLDB shows the text instead of a bare number.
//! - GDB 15 announces `error-message+` in `qSupported` (GDB manual,
//!   "Standard Replies" and `qSupported`); our `qSupported` reply then
//!   announces it too (the feature is agreed by both sides), and the `m`
//!   and `qRcmd` replies may be `E.text`. Other packets keep `Exx` (older parsers of their
//!   replies may not expect text). A failed `monitor` command, which the
//!   console already explains, then also ends in `E.text` instead of `OK`.
//!
//! gdbstub only produces `Exx`. The text comes from
//! `gdb::take_error_text` (noted where the error became an errno) and is
//! put into the reply frame as gdbstub flushes it ([`ErrorText::rewrite`]).
//! Frames other than an `Exx` reply (console output, stop replies) are left
//! alone; without a noted text nothing changes.

/// What the client asked for, and the packet being answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorText {
    /// `QEnableErrorStrings` was answered `OK`.
    lldb: bool,
    /// `qSupported` announced `error-message+`.
    gdb: bool,
    /// The packet whose reply is being built.
    packet: Packet,
}

/// The packets whose reply GDB's `error-message+` lets us change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Packet {
    #[default]
    Other,
    /// `m addr,len`.
    ReadMemory,
    /// `qRcmd,hex` (`monitor`).
    Monitor,
    /// `qSupported:features`.
    Supported,
}

impl ErrorText {
    /// Note a packet from the client before it is answered. Returns the
    /// reply for a packet answered here (`QEnableErrorStrings`).
    pub fn incoming(&mut self, payload: &[u8]) -> Option<&'static [u8]> {
        self.packet = match payload.first() {
            Some(b'm') => Packet::ReadMemory,
            _ if payload.starts_with(b"qRcmd,") => Packet::Monitor,
            _ if payload.starts_with(b"qSupported") => Packet::Supported,
            _ => Packet::Other,
        };
        if payload == b"QEnableErrorStrings" {
            self.lldb = true;
            return Some(b"OK");
        }
        if let Some(features) = payload.strip_prefix(b"qSupported:") {
            self.gdb = features
                .split(|&b| b == b';')
                .any(|f| f == b"error-message+");
        }
        None
    }

    /// Put `text` into the reply in `bytes` (what gdbstub is about to send):
    /// the last `$…#cs` frame, if it is an `Exx` reply (or the `OK` that
    /// ends a failed `monitor` command), is replaced as the client asked.
    /// `text` is only asked for when the frame is such a reply, so a
    /// flush of console output leaves it for the final reply.
    pub fn rewrite(&self, bytes: &mut Vec<u8>, text: impl FnOnce() -> Option<String>) {
        let Some((start, payload)) = last_frame(bytes) else {
            return;
        };
        if self.packet == Packet::Supported {
            if self.gdb && !payload.ends_with(b";error-message+") {
                let mut reply = payload.to_vec();
                reply.extend_from_slice(b";error-message+");
                bytes.truncate(start);
                bytes.extend_from_slice(&frame(&reply));
            }
            return;
        }
        if !self.takes_text(payload) {
            return;
        }
        let Some(text) = text() else {
            return;
        };
        let Some(reply) = self.reply(payload, &text) else {
            return;
        };
        bytes.truncate(start);
        bytes.extend_from_slice(&frame(&reply));
    }

    /// Whether a reply `payload` to the current packet may carry text.
    fn takes_text(&self, payload: &[u8]) -> bool {
        let errno = is_errno_reply(payload);
        let monitor_ok = self.packet == Packet::Monitor && payload == b"OK";
        (self.gdb && self.packet != Packet::Other && (errno || monitor_ok)) || (self.lldb && errno)
    }

    /// The reply with `text` replacing `payload`, if the client takes one.
    fn reply(&self, payload: &[u8], text: &str) -> Option<Vec<u8>> {
        let errno = is_errno_reply(payload);
        let monitor_failed = self.packet == Packet::Monitor && payload == b"OK";
        if self.gdb && self.packet != Packet::Other && (errno || monitor_failed) {
            return Some(format!("E.{}", plain(text)).into_bytes());
        }
        if self.lldb && errno {
            let mut out = payload.to_vec();
            out.push(b';');
            out.extend(text.bytes().flat_map(|b| {
                let b = if b.is_ascii() && !b.is_ascii_control() {
                    b
                } else {
                    b'?'
                };
                format!("{b:02x}").into_bytes()
            }));
            return Some(out);
        }
        None
    }
}

/// `Exx` with two hex digits.
fn is_errno_reply(payload: &[u8]) -> bool {
    payload.len() == 3 && payload[0] == b'E' && payload[1..].iter().all(u8::is_ascii_hexdigit)
}

/// `text` as printable ASCII without RSP's special characters (`$#*}`),
/// which would need escaping in a reply.
fn plain(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '$' | '#' | '*' | '}' => '_',
            c if c.is_ascii() && !c.is_ascii_control() => c,
            _ => '?',
        })
        .collect()
}

/// The start and payload of the last complete `$payload#cs` frame.
fn last_frame(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let start = bytes.iter().rposition(|&b| b == b'$')?;
    let rest = &bytes[start + 1..];
    let hash = rest.iter().rposition(|&b| b == b'#')?;
    (rest.len() == hash + 3).then(|| (start, &rest[..hash]))
}

fn frame(payload: &[u8]) -> Vec<u8> {
    super::framer::frame_packet(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &str) -> Vec<u8> {
        frame(payload.as_bytes())
    }

    fn after(setup: &[&str], packet: &str, sent: &[u8], text: Option<&str>) -> Vec<u8> {
        let mut e = ErrorText::default();
        for p in setup {
            e.incoming(p.as_bytes());
        }
        e.incoming(packet.as_bytes());
        let mut bytes = sent.to_vec();
        e.rewrite(&mut bytes, || text.map(str::to_string));
        bytes
    }

    #[test]
    fn qenableerrorstrings_is_answered_and_error_supported_is_noted() {
        let mut e = ErrorText::default();
        assert_eq!(e.incoming(b"QEnableErrorStrings"), Some(&b"OK"[..]));
        assert!(e.lldb);
        assert_eq!(
            e.incoming(b"qSupported:multiprocess+;error-message+;swbreak+"),
            None
        );
        assert!(e.gdb);
        e.incoming(b"qSupported:multiprocess+;error-message-");
        assert!(!e.gdb, "a later qSupported without it turns it off");
    }

    #[test]
    fn error_replies_carry_the_text_the_client_asked_for() {
        let lldb = ["QEnableErrorStrings"];
        let gdb = ["qSupported:swbreak+;error-message+"];
        let reason = "reading 4 bytes at 0x90000000 failed: core running";
        let why = Some(reason);
        type Case<'a> = (&'a [&'a str], &'a str, Vec<u8>, Option<&'a str>, Vec<u8>);
        let cases: Vec<Case> = vec![
            // LLDB: any error reply, text hex-encoded after `;`.
            (
                &lldb,
                "Z0,90000000,2",
                framed("E10"),
                Some("in $window#"),
                framed("E10;696e202477696e646f7723"),
            ),
            (
                &lldb,
                "m90000000,4",
                b"+".iter().copied().chain(framed("E0e")).collect(),
                why,
                b"+".iter()
                    .copied()
                    .chain(framed(&format!("E0e;{}", hex(reason))))
                    .collect(),
            ),
            // GDB: `m` and failed `qRcmd` only, `E.text` with RSP's
            // special characters replaced.
            (
                &gdb,
                "m90000000,4",
                framed("E0e"),
                why,
                framed(&format!("E.{}", reason)),
            ),
            (
                &gdb,
                "qRcmd,7265736574",
                [framed("O6572726f720a"), framed("OK")].concat(),
                Some("reset failed: *probe* gone"),
                [
                    framed("O6572726f720a"),
                    framed("E.reset failed: _probe_ gone"),
                ]
                .concat(),
            ),
            (
                &gdb,
                "Z0,90000000,2",
                framed("E10"),
                Some("window"),
                framed("E10"),
            ),
            // Nothing asked, or no text: unchanged.
            (&[], "m90000000,4", framed("E0e"), why, framed("E0e")),
            (&lldb, "m90000000,4", framed("E0e"), None, framed("E0e")),
            // Only error replies (and a failed monitor's OK) change.
            (
                &lldb,
                "m8000000,4",
                framed("01020304"),
                why,
                framed("01020304"),
            ),
            (&lldb, "qRcmd,7265736574", framed("OK"), why, framed("OK")),
            (
                &gdb,
                "vCont;c",
                framed("T05hwbreak:;"),
                why,
                framed("T05hwbreak:;"),
            ),
            // The feature is announced back to GDB, and only to GDB.
            (
                &[],
                "qSupported:swbreak+;error-message+",
                framed("PacketSize=4000;swbreak+"),
                None,
                framed("PacketSize=4000;swbreak+;error-message+"),
            ),
            (
                &lldb,
                "qSupported:xmlRegisters=arm",
                framed("PacketSize=4000;swbreak+"),
                None,
                framed("PacketSize=4000;swbreak+"),
            ),
        ];
        for (setup, packet, sent, text, want) in cases {
            let got = after(setup, packet, &sent, text);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{setup:?} {packet}"
            );
        }
    }

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }
}

//! Checks every packet from GDB before gdbstub sees it: checksum, and the
//! length fields of memory packets against the data they carry and the
//! packet size.
//!
//! gdbstub accepts an `M`/`X` whose data is shorter than its length field
//! (writing what is there) and answers an `m` of any length in one reply;
//! a client that relies on RSP's rules gets neither. Pure functions only.

use super::framer::frame_packet;

/// What to do with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the packet to gdbstub as received.
    Pass,
    /// Hand gdbstub this packet instead (already framed).
    Rewrite(Vec<u8>),
    /// Do not hand it on; answer with this payload.
    Reply(Vec<u8>),
    /// The checksum is wrong: NAK it (ack mode) and drop it.
    BadChecksum,
}

/// Judge one `$payload#cs` frame. `max_reply` bounds the hex reply of `m`.
pub fn vet(frame: &[u8], max_reply: usize) -> Verdict {
    let Some(payload) = frame
        .strip_prefix(b"$")
        .and_then(|f| f.get(..f.len().saturating_sub(3)))
    else {
        return Verdict::Pass;
    };
    let cs = &frame[frame.len().saturating_sub(2)..];
    let sum = payload.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    if parse_hex(cs) != Some(sum as u64) {
        return Verdict::BadChecksum;
    }
    let error = || Verdict::Reply(b"E01".to_vec());
    match payload.first() {
        Some(b'm') => {
            let Some((addr, len)) = addr_len(&payload[1..]) else {
                return error();
            };
            if wraps(addr, len) {
                return error();
            }
            // RSP allows a shorter reply than asked; keep it within PacketSize.
            let max_len = (max_reply / 2) as u64;
            if len > max_len {
                let clamped = format!("m{addr:x},{max_len:x}");
                return Verdict::Rewrite(frame_packet(clamped.as_bytes()));
            }
            Verdict::Pass
        }
        Some(b'M') => {
            let Some(colon) = payload.iter().position(|&b| b == b':') else {
                return error();
            };
            let Some((addr, len)) = addr_len(&payload[1..colon]) else {
                return error();
            };
            let data = &payload[colon + 1..];
            let hex_ok = data.iter().all(u8::is_ascii_hexdigit);
            if wraps(addr, len) || !hex_ok || data.len() as u64 != len * 2 {
                return error();
            }
            Verdict::Pass
        }
        Some(b'X') => {
            let Some(colon) = payload.iter().position(|&b| b == b':') else {
                return error();
            };
            let Some((addr, len)) = addr_len(&payload[1..colon]) else {
                return error();
            };
            let data = &payload[colon + 1..];
            // 0x7d escapes the next byte.
            let escapes = data.iter().filter(|&&b| b == 0x7d).count();
            let unescaped = data.len() - escapes;
            if wraps(addr, len) || unescaped as u64 != len || data.last() == Some(&0x7d) {
                return error();
            }
            Verdict::Pass
        }
        _ => Verdict::Pass,
    }
}

fn wraps(addr: u64, len: u64) -> bool {
    addr.checked_add(len).is_none_or(|end| end > 1 << 32)
}

fn addr_len(text: &[u8]) -> Option<(u64, u64)> {
    let comma = text.iter().position(|&b| b == b',')?;
    Some((parse_hex(&text[..comma])?, parse_hex(&text[comma + 1..])?))
}

fn parse_hex(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    let s = std::str::from_utf8(text).ok()?;
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(payload: &[u8]) -> Verdict {
        vet(&frame_packet(payload), 0x4000)
    }

    #[test]
    fn valid_packets_pass() {
        for p in [
            &b"m20000000,4"[..],
            b"M20000000,2:abcd",
            b"X20000000,2:\x01\x02",
            b"g",
            b"qSupported",
        ] {
            assert_eq!(judge(p), Verdict::Pass, "{:?}", String::from_utf8_lossy(p));
        }
    }

    #[test]
    fn invalid_checksum_is_reported() {
        let mut f = frame_packet(b"m0,4");
        let n = f.len();
        f[n - 1] ^= 1;
        assert_eq!(vet(&f, 0x4000), Verdict::BadChecksum);
    }

    #[test]
    fn invalid_m_length_over_packet_size_is_clamped() {
        assert_eq!(
            judge(b"m20000000,100000"),
            Verdict::Rewrite(frame_packet(b"m20000000,2000"))
        );
    }

    #[test]
    fn invalid_memory_packets_get_e01() {
        let e = Verdict::Reply(b"E01".to_vec());
        for p in [
            &b"M20000000,10:aa"[..], // shorter than its length
            b"M20000000,1:zz",       // not hex
            b"M20000000,1",          // no data
            b"X20000000,4:\x01\x02", // shorter than its length
            b"X20000000,1:\x7d",     // dangling escape
            b"mffffffff,4",          // wraps
            b"Mfffffffe,4:00000000", // wraps
            b"mzz,4",                // bad address
        ] {
            assert_eq!(judge(p), e, "{:?}", String::from_utf8_lossy(p));
        }
    }

    #[test]
    fn valid_x_with_escapes_counts_unescaped_bytes() {
        assert_eq!(judge(b"X20000000,2:\x7d\x03\x04"), Verdict::Pass);
    }
}

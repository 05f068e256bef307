//! Intel HEX (I8HEX/I16HEX/I32HEX): records `:LLAAAATT<data>CC`, data (00),
//! end of file (01), extended segment (02) and linear (04) addresses; the
//! start-address records (03, 05) are accepted and ignored. Every record's
//! checksum is checked (the two's complement of the sum of its bytes).

use super::image::Segment;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("record does not start with `:`")]
    NoColon,
    #[error("record is not hex or has an odd number of digits")]
    NotHex,
    #[error("record length {declared} does not match its {actual} data bytes")]
    Length { declared: usize, actual: usize },
    #[error("bad checksum: record says {stated:02X}, bytes give {computed:02X}")]
    Checksum { stated: u8, computed: u8 },
    #[error("unknown record type {0:02X}")]
    Type(u8),
    #[error("record type {kind:02X} needs {want} data bytes")]
    AddressRecord { kind: u8, want: usize },
    #[error("no end-of-file record (01): the file is truncated")]
    NoEof,
    #[error("data after the end-of-file record")]
    AfterEof,
    #[error("data at {0:#x} is past the 32-bit address space")]
    TooHigh(u64),
}

/// Parse a whole file; errors carry the 1-based line number.
pub fn parse(text: &[u8]) -> Result<Vec<Segment>, (usize, HexError)> {
    let mut out: Vec<Segment> = Vec::new();
    let mut upper: u64 = 0;
    let mut eof = false;
    let mut last_line = 0;
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        last_line = line;
        let rec = raw.trim_ascii();
        if rec.is_empty() {
            continue;
        }
        if eof {
            return Err((line, HexError::AfterEof));
        }
        let body = rec.strip_prefix(b":").ok_or((line, HexError::NoColon))?;
        let bytes = super::rsp::unhex(body).ok_or((line, HexError::NotHex))?;
        if bytes.len() < 5 {
            return Err((line, HexError::NotHex));
        }
        let declared = bytes[0] as usize;
        if bytes.len() != declared + 5 {
            return Err((
                line,
                HexError::Length {
                    declared,
                    actual: bytes.len().saturating_sub(5),
                },
            ));
        }
        let sum = bytes[..bytes.len() - 1]
            .iter()
            .fold(0u8, |a, b| a.wrapping_add(*b));
        let computed = sum.wrapping_neg();
        let stated = bytes[bytes.len() - 1];
        if computed != stated {
            return Err((line, HexError::Checksum { stated, computed }));
        }
        let offset = u64::from(u16::from_be_bytes([bytes[1], bytes[2]]));
        let kind = bytes[3];
        let data = &bytes[4..bytes.len() - 1];
        let want = |n: usize| {
            if data.len() == n {
                Ok(())
            } else {
                Err((line, HexError::AddressRecord { kind, want: n }))
            }
        };
        match kind {
            0x00 => {
                let address = upper + offset;
                let end = address + data.len() as u64;
                if end > 1 << 32 {
                    return Err((line, HexError::TooHigh(address)));
                }
                match out.last_mut() {
                    Some(last) if last.end() == address => last.data.extend_from_slice(data),
                    _ => out.push(Segment {
                        address: address as u32,
                        data: data.to_vec(),
                    }),
                }
            }
            0x01 => eof = true,
            0x02 => {
                want(2)?;
                upper = u64::from(u16::from_be_bytes([data[0], data[1]])) << 4;
            }
            0x04 => {
                want(2)?;
                upper = u64::from(u16::from_be_bytes([data[0], data[1]])) << 16;
            }
            0x03 | 0x05 => want(4)?,
            other => return Err((line, HexError::Type(other))),
        }
    }
    if !eof {
        return Err((last_line.max(1), HexError::NoEof));
    }
    Ok(out)
}

/// Render segments as Intel HEX (32-byte data records, 04 records when the
/// upper half changes), for the round-trip test.
#[cfg(test)]
pub fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    let mut record = |kind: u8, offset: u16, data: &[u8]| {
        let mut bytes = vec![data.len() as u8, (offset >> 8) as u8, offset as u8, kind];
        bytes.extend_from_slice(data);
        let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        bytes.push(sum.wrapping_neg());
        out.push(':');
        out.push_str(&super::rsp::hex(&bytes).to_ascii_uppercase());
        out.push('\n');
    };
    let mut upper = None;
    for s in segments {
        let mut at = s.address;
        for chunk in s.data.chunks(32) {
            // Keep a record inside one 64 KiB page.
            let room = (0x1_0000 - (at & 0xFFFF)) as usize;
            for part in [
                &chunk[..room.min(chunk.len())],
                &chunk[room.min(chunk.len())..],
            ] {
                if part.is_empty() {
                    continue;
                }
                if upper != Some(at >> 16) {
                    upper = Some(at >> 16);
                    record(0x04, 0, &((at >> 16) as u16).to_be_bytes());
                }
                record(0x00, at as u16, part);
                at = at.wrapping_add(part.len() as u32);
            }
        }
    }
    record(0x01, 0, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_hex_with_linear_address_joins_records() {
        let text = b":020000040800F2\n:0400000001020304F2\n:0400040005060708DE\n:00000001FF\n";
        let segs = parse(text).unwrap();
        assert_eq!(
            segs,
            [Segment {
                address: 0x0800_0000,
                data: vec![1, 2, 3, 4, 5, 6, 7, 8]
            }]
        );
    }

    #[test]
    fn invalid_checksum_names_the_line() {
        let text = b":020000040800F2\n:0400000001020304F3\n:00000001FF\n";
        assert_eq!(
            parse(text),
            Err((
                2,
                HexError::Checksum {
                    stated: 0xF3,
                    computed: 0xF2
                }
            ))
        );
    }

    #[test]
    fn invalid_records_are_refused() {
        assert_eq!(parse(b"0400\n").unwrap_err().1, HexError::NoColon);
        assert_eq!(
            parse(b":04000000010203F5\n").unwrap_err().1,
            HexError::Length {
                declared: 4,
                actual: 3
            }
        );
        assert_eq!(
            parse(b":0400000001020304F2\n").unwrap_err().1,
            HexError::NoEof
        );
        assert_eq!(
            parse(b":00000001FF\n:00000001FF\n").unwrap_err().1,
            HexError::AfterEof
        );
        assert_eq!(parse(b":00000007F9\n").unwrap_err().1, HexError::Type(7));
        assert_eq!(parse(b":0x\n").unwrap_err().1, HexError::NotHex);
    }

    #[test]
    fn segment_address_record_shifts_by_four() {
        let text = b":020000021000EC\n:01000000AA55\n:00000001FF\n";
        assert_eq!(parse(text).unwrap()[0].address, 0x1_0000);
    }

    #[test]
    fn render_round_trips_across_a_64k_boundary() {
        let segs = vec![
            Segment {
                address: 0x0800_FFF0,
                data: (0..100).collect(),
            },
            Segment {
                address: 0x9000_0000,
                data: vec![0xFF; 7],
            },
        ];
        assert_eq!(parse(render(&segs).as_bytes()).unwrap(), segs);
    }
}

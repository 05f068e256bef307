//! Motorola S-records (`.s19`, `.srec`, `.mot`, `.s28`, `.s37`): records
//! `S` type, byte count, address, data, checksum, in hex. S0 (header) is
//! skipped; S1/S2/S3 carry data at 16/24/32-bit addresses; S5/S6 give the
//! number of data records so far (checked); S7/S8/S9 end the file (their
//! start address is ignored). Every record's checksum is checked: the
//! ones' complement of the low byte of the sum of the count, address and
//! data bytes.

use super::image::Segment;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrecError {
    #[error("record does not start with `S` and a type digit")]
    NoS,
    #[error("record is not hex or has an odd number of digits")]
    NotHex,
    #[error("record type S{0} is not a Motorola S-record type (S0-S3, S5-S9)")]
    Type(char),
    #[error("record count {declared} does not match its {actual} bytes")]
    Length { declared: usize, actual: usize },
    #[error("S{kind} record is too short for its {want}-byte address")]
    Short { kind: char, want: usize },
    #[error("bad checksum: record says {stated:02X}, bytes give {computed:02X}")]
    Checksum { stated: u8, computed: u8 },
    #[error("record count says {stated} data records, the file has {actual} before it")]
    Count { stated: u32, actual: u32 },
    #[error("no termination record (S7, S8 or S9): the file is truncated")]
    NoEnd,
    #[error("data after the termination record")]
    AfterEnd,
    #[error("data at {0:#x} is past the 32-bit address space")]
    TooHigh(u64),
}

/// Parse a whole file; errors carry the 1-based line number.
pub fn parse(text: &[u8]) -> Result<Vec<Segment>, (usize, SrecError)> {
    let mut out: Vec<Segment> = Vec::new();
    let mut records = 0u32;
    let mut ended = false;
    let mut last_line = 0;
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let rec = raw.trim_ascii();
        if rec.is_empty() {
            continue;
        }
        last_line = line;
        if ended {
            return Err((line, SrecError::AfterEnd));
        }
        let (kind, body) = match rec {
            [b'S' | b's', k @ b'0'..=b'9', body @ ..] => (*k as char, body),
            _ => return Err((line, SrecError::NoS)),
        };
        let addr_len = match kind {
            '0' | '1' | '5' | '9' => 2,
            '2' | '6' | '8' => 3,
            '3' | '7' => 4,
            other => return Err((line, SrecError::Type(other))),
        };
        let bytes = super::rsp::unhex(body).ok_or((line, SrecError::NotHex))?;
        let Some((&count, rest)) = bytes.split_first() else {
            return Err((line, SrecError::NotHex));
        };
        if rest.len() != count as usize {
            return Err((
                line,
                SrecError::Length {
                    declared: count as usize,
                    actual: rest.len(),
                },
            ));
        }
        if rest.len() < addr_len + 1 {
            return Err((
                line,
                SrecError::Short {
                    kind,
                    want: addr_len,
                },
            ));
        }
        let sum = bytes[..bytes.len() - 1]
            .iter()
            .fold(0u8, |a, b| a.wrapping_add(*b));
        let computed = !sum;
        let stated = bytes[bytes.len() - 1];
        if computed != stated {
            return Err((line, SrecError::Checksum { stated, computed }));
        }
        let address = rest[..addr_len]
            .iter()
            .fold(0u64, |a, b| a << 8 | u64::from(*b));
        let data = &rest[addr_len..rest.len() - 1];
        match kind {
            '1' | '2' | '3' => {
                records += 1;
                let end = address + data.len() as u64;
                if end > 1 << 32 {
                    return Err((line, SrecError::TooHigh(address)));
                }
                match out.last_mut() {
                    Some(last) if last.end() == address => last.data.extend_from_slice(data),
                    _ => out.push(Segment {
                        address: address as u32,
                        data: data.to_vec(),
                    }),
                }
            }
            '5' | '6' if address != u64::from(records) => {
                return Err((
                    line,
                    SrecError::Count {
                        stated: address as u32,
                        actual: records,
                    },
                ));
            }
            '7' | '8' | '9' => ended = true,
            _ => {} // S0: header text; S5/S6 with the right count
        }
    }
    if !ended {
        return Err((last_line.max(1), SrecError::NoEnd));
    }
    Ok(out)
}

/// Render segments as S3 records (32-byte data, then S7), for tests.
#[cfg(test)]
pub fn render(segments: &[Segment]) -> String {
    let mut out = String::from("S00F000068656C6C6F202020202000003C\n");
    let mut record = |kind: u8, address: u32, data: &[u8]| {
        let mut bytes = vec![(4 + data.len() + 1) as u8];
        bytes.extend_from_slice(&address.to_be_bytes());
        bytes.extend_from_slice(data);
        let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        bytes.push(!sum);
        out.push('S');
        out.push(kind as char);
        out.push_str(&super::rsp::hex(&bytes).to_ascii_uppercase());
        out.push('\n');
    };
    for s in segments {
        for (i, chunk) in s.data.chunks(32).enumerate() {
            record(b'3', s.address + 32 * i as u32, chunk);
        }
    }
    record(b'7', 0, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From the S-record format's usual example: S1 records at 16-bit
    /// addresses, an S5 count and an S9 end.
    const S19: &[u8] = b"S00F000068656C6C6F202020202000003C\r\n\
S11F00007C0802A6900100049421FFF07C6C1B787C8C23783C6000003863000026\r\n\
S11F001C4BFFFFE5398000007D83637880010014382100107C0803A64E800020E9\r\n\
S111003848656C6C6F20776F726C642E0A0042\r\n\
S5030003F9\r\n\
S9030000FC\r\n";

    #[test]
    fn valid_s19_joins_records_and_checks_the_count() {
        let segs = parse(S19).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].address, 0);
        assert_eq!(segs[0].data.len(), 0x1C + 0x1C + 0x0E);
        assert_eq!(&segs[0].data[0x38..], b"Hello world.\n\0");
    }

    #[test]
    fn s2_and_s3_addresses_and_gaps_make_segments() {
        let segs = [
            Segment {
                address: 0x0800_0000,
                data: (0..70).collect(),
            },
            Segment {
                address: 0x9000_0003,
                data: vec![0xAB; 5],
            },
        ];
        assert_eq!(parse(render(&segs).as_bytes()).unwrap(), segs);
        // S2: 24-bit address 0x123456 (checksum !(06+12+34+56+01+02) = 0x5A),
        // S8 end.
        assert_eq!(
            parse(b"S20612345601025A\nS804000000FB\n"),
            Ok(vec![Segment {
                address: 0x12_3456,
                data: vec![1, 2]
            }])
        );
    }

    #[test]
    fn invalid_checksum_names_the_line() {
        let text = b"S00F000068656C6C6F202020202000003C\nS111003848656C6C6F20776F726C642E0A0043\nS9030000FC\n";
        assert_eq!(
            parse(text),
            Err((
                2,
                SrecError::Checksum {
                    stated: 0x43,
                    computed: 0x42
                }
            ))
        );
    }

    #[test]
    fn invalid_records_are_refused_with_their_line() {
        assert_eq!(parse(b":00000001FF\n"), Err((1, SrecError::NoS)));
        assert_eq!(parse(b"S4030000FC\n"), Err((1, SrecError::Type('4'))));
        assert_eq!(parse(b"S9030000F\n"), Err((1, SrecError::NotHex)));
        assert_eq!(
            parse(b"S905000000FA\n"),
            Err((
                1,
                SrecError::Length {
                    declared: 5,
                    actual: 4
                }
            ))
        );
        assert_eq!(
            parse(b"S10200FD\n"),
            Err((1, SrecError::Short { kind: '1', want: 2 }))
        );
        assert_eq!(
            parse(b"S111003848656C6C6F20776F726C642E0A0042\nS5030002FA\nS9030000FC\n"),
            Err((
                2,
                SrecError::Count {
                    stated: 2,
                    actual: 1
                }
            ))
        );
        assert_eq!(
            parse(b"S111003848656C6C6F20776F726C642E0A0042\n"),
            Err((1, SrecError::NoEnd))
        );
        assert_eq!(
            parse(b"S9030000FC\nS111003848656C6C6F20776F726C642E0A0042\n"),
            Err((2, SrecError::AfterEnd))
        );
    }
}

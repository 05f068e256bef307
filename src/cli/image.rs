//! Files to program: ELF32 (PT_LOAD segments at their physical addresses),
//! Intel HEX, Motorola S-records, and raw binary at a given base. Each becomes address-sorted,
//! non-overlapping [`Segment`]s; every check happens here, before a probe
//! is touched, so a bad file changes nothing on the target.

use std::path::{Path, PathBuf};

/// Bytes for one contiguous address range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub address: u32,
    pub data: Vec<u8>,
}

impl Segment {
    pub fn end(&self) -> u64 {
        u64::from(self.address) + self.data.len() as u64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid ELF file: {reason}")]
    Elf { path: PathBuf, reason: String },
    #[error(
        "{path}: ELF segment {index} (at {address:#010x}) needs file bytes \
         {offset:#x}..{end:#x} but the file has {len:#x}: the file is truncated"
    )]
    ElfTruncated {
        path: PathBuf,
        index: usize,
        address: u64,
        offset: u64,
        end: u64,
        len: usize,
    },
    #[error("{path}: no loadable data (no PT_LOAD segment with file bytes)")]
    Empty { path: PathBuf },
    #[error("{path}:{line}: {reason}")]
    Hex {
        path: PathBuf,
        line: usize,
        reason: super::ihex::HexError,
    },
    #[error("{path}:{line}: {reason}")]
    Srec {
        path: PathBuf,
        line: usize,
        reason: super::srec::SrecError,
    },
    #[error("{path}: {what} at {address:#010x} is past the 32-bit address space")]
    TooHigh {
        path: PathBuf,
        what: &'static str,
        address: u64,
    },
    #[error("{path}: data at {a:#010x} and {b:#010x} overlap")]
    Overlap { path: PathBuf, a: u32, b: u32 },
    #[error("{path} looks like a raw binary: give its load address with --base ADDR")]
    BaseRequired { path: PathBuf },
    #[error("{path} is {format} and carries its own addresses: --base is only for raw binaries")]
    BaseNotApplicable { path: PathBuf, format: Format },
}

/// The file kinds we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Elf,
    Hex,
    Srec,
    Binary,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Elf => "an ELF file",
            Format::Hex => "an Intel HEX file",
            Format::Srec => "a Motorola S-record file",
            Format::Binary => "a raw binary",
        })
    }
}

/// ELF by magic, Intel HEX by a leading `:` (or `.hex`/`.ihex` name),
/// Motorola S-records by a leading `S0`-`S9` (or `.s19`/`.srec`/`.mot`/
/// `.s28`/`.s37` name), anything else binary.
pub fn detect(path: &Path, bytes: &[u8]) -> Format {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if bytes.starts_with(b"\x7fELF") {
        Format::Elf
    } else if bytes.first() == Some(&b':') || matches!(ext.as_deref(), Some("hex" | "ihex")) {
        Format::Hex
    } else if looks_like_srec(bytes)
        || matches!(
            ext.as_deref(),
            Some("s19" | "srec" | "mot" | "s28" | "s37" | "sx")
        )
    {
        Format::Srec
    } else {
        Format::Binary
    }
}

/// A first line of `S`, a type digit and only hex digits (at least a
/// count, a 16-bit address and a checksum): a raw binary that merely starts
/// with `S1` is not taken for S-records.
fn looks_like_srec(bytes: &[u8]) -> bool {
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    match first.trim_ascii_end() {
        [b'S', b'0'..=b'9', rest @ ..] => rest.len() >= 8 && rest.iter().all(u8::is_ascii_hexdigit),
        _ => false,
    }
}

/// Read and parse `path`; `base` places a raw binary (and is refused for
/// ELF/HEX, which carry their addresses).
pub fn load(path: &Path, base: Option<u32>) -> Result<Vec<Segment>, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, bytes, base)
}

/// Like [`load`] for bytes already read; `path` names them in errors.
pub fn parse(path: &Path, bytes: Vec<u8>, base: Option<u32>) -> Result<Vec<Segment>, ImageError> {
    let format = detect(path, &bytes);
    if format != Format::Binary && base.is_some() {
        return Err(ImageError::BaseNotApplicable {
            path: path.to_path_buf(),
            format,
        });
    }
    let segments = match (format, base) {
        (Format::Elf, _) => elf_segments(path, &bytes)?,
        (Format::Hex, _) => {
            super::ihex::parse(&bytes).map_err(|(line, reason)| ImageError::Hex {
                path: path.to_path_buf(),
                line,
                reason,
            })?
        }
        (Format::Srec, _) => {
            super::srec::parse(&bytes).map_err(|(line, reason)| ImageError::Srec {
                path: path.to_path_buf(),
                line,
                reason,
            })?
        }
        (Format::Binary, Some(base)) => vec![Segment {
            address: base,
            data: bytes,
        }],
        (Format::Binary, None) => {
            return Err(ImageError::BaseRequired {
                path: path.to_path_buf(),
            })
        }
    };
    normalise(path, segments)
}

/// Sort, check bounds and overlaps, join touching segments.
fn normalise(path: &Path, mut segs: Vec<Segment>) -> Result<Vec<Segment>, ImageError> {
    segs.retain(|s| !s.data.is_empty());
    if segs.is_empty() {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    segs.sort_by_key(|s| s.address);
    let mut out: Vec<Segment> = Vec::new();
    for s in segs {
        if s.end() > 1 << 32 {
            return Err(ImageError::TooHigh {
                path: path.to_path_buf(),
                what: "data ending",
                address: s.end(),
            });
        }
        match out.last_mut() {
            Some(last) if u64::from(s.address) < last.end() => {
                return Err(ImageError::Overlap {
                    path: path.to_path_buf(),
                    a: last.address,
                    b: s.address,
                })
            }
            Some(last) if u64::from(s.address) == last.end() => last.data.extend(s.data),
            _ => out.push(s),
        }
    }
    Ok(out)
}

/// PT_LOAD segments with file bytes, at their physical (load) addresses;
/// the zero-filled tail (`memsz > filesz`) is the program's job, as in GDB's
/// `load`.
///
/// The ELF32 program headers are read by hand with every offset checked
/// against the file: xmas-elf indexes its tables unchecked and asserts on
/// misaligned ones, so a corrupted file would panic instead of failing.
fn elf_segments(path: &Path, bytes: &[u8]) -> Result<Vec<Segment>, ImageError> {
    let bad = |reason: String| ImageError::Elf {
        path: path.to_path_buf(),
        reason,
    };
    let header = elf32_header(bytes).map_err(|r| bad(r.into()))?;
    let entry = usize::from(header.phentsize);
    let table_end = u64::from(header.phoff) + entry as u64 * u64::from(header.phnum);
    if header.phnum > 0 && entry < PH_SIZE {
        return Err(bad(format!(
            "program header entries of {entry} bytes (ELF32 needs {PH_SIZE})"
        )));
    }
    if table_end > bytes.len() as u64 {
        return Err(bad(format!(
            "program header table ends at {table_end:#x}, past the end of the file ({:#x} \
             bytes): the file is truncated",
            bytes.len()
        )));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut out = Vec::new();
    for index in 0..usize::from(header.phnum) {
        let ph = header.phoff as usize + index * entry;
        let (kind, offset, address, size) = (word(ph), word(ph + 4), word(ph + 12), word(ph + 16));
        if kind != PT_LOAD || size == 0 {
            continue;
        }
        let (offset, address, size) = (u64::from(offset), u64::from(address), u64::from(size));
        let end = offset + size;
        if end > bytes.len() as u64 {
            return Err(ImageError::ElfTruncated {
                path: path.to_path_buf(),
                index,
                address,
                offset,
                end,
                len: bytes.len(),
            });
        }
        if address + size > 1 << 32 {
            return Err(ImageError::TooHigh {
                path: path.to_path_buf(),
                what: "ELF segment",
                address,
            });
        }
        out.push(Segment {
            address: address as u32,
            data: bytes[offset as usize..end as usize].to_vec(),
        });
    }
    Ok(out)
}

/// ELF32 program header size, and the loadable segment type.
const PH_SIZE: usize = 32;
const PT_LOAD: u32 = 1;
/// e_machine of Arm (Cortex-M included).
const EM_ARM: u16 = 40;

struct Elf32Header {
    phoff: u32,
    phentsize: u16,
    phnum: u16,
}

/// The fields of a little-endian ELF32 header we need, checked.
fn elf32_header(b: &[u8]) -> Result<Elf32Header, &'static str> {
    if b.len() < 52 {
        return Err("shorter than an ELF32 header (52 bytes): the file is truncated");
    }
    if !b.starts_with(b"\x7fELF") {
        return Err("no ELF magic");
    }
    if b[4] != 1 {
        return Err("not a 32-bit ELF (Cortex-M images are ELF32)");
    }
    if b[5] != 1 {
        return Err("not little-endian");
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    if u16_at(18) != EM_ARM {
        return Err("not an Arm ELF (e_machine is not EM_ARM)");
    }
    Ok(Elf32Header {
        phoff: u32_at(28),
        phentsize: u16_at(42),
        phnum: u16_at(44),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELF: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/firmware/firmware-assets.elf"
    );

    #[test]
    fn elf_with_assets_has_internal_flash_and_window_segments() {
        let segs = load(Path::new(ELF), None).unwrap();
        assert!(segs
            .iter()
            .any(|s| (0x0800_0000..0x0808_0000).contains(&s.address)));
        assert!(segs.iter().any(|s| s.address >= 0x9000_0000));
    }

    #[test]
    fn invalid_truncated_elf_is_refused_without_panicking() {
        let bytes = std::fs::read(ELF).unwrap();
        for cut in [10, 60, 200, bytes.len() / 2, bytes.len() - 1] {
            let err = elf_segments(Path::new("t.elf"), &bytes[..cut]);
            // A cut past every segment's bytes still parses: only check
            // that short cuts fail and none panic.
            if cut < 200 {
                assert!(err.is_err(), "cut {cut}");
            }
        }
        let err = elf_segments(Path::new("t.elf"), &bytes[..bytes.len() / 2]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn invalid_corrupted_elf_headers_never_panic() {
        let bytes = std::fs::read(ELF).unwrap();
        for cut in (0..bytes.len()).step_by(97) {
            let _ = elf_segments(Path::new("t.elf"), &bytes[..cut]);
        }
        // Flip bytes across the ELF and program headers.
        for at in 0..(52 + 32 * 8) {
            for v in [0x00, 0xFF, 0x80] {
                let mut b = bytes.clone();
                b[at] = v;
                let _ = elf_segments(Path::new("t.elf"), &b);
            }
        }
    }

    #[test]
    fn overlapping_segments_are_refused_and_touching_ones_joined() {
        let s = |address, n| Segment {
            address,
            data: vec![0; n],
        };
        let p = Path::new("x");
        let joined = normalise(p, vec![s(0x10, 0x10), s(0, 0x10)]).unwrap();
        assert_eq!(joined.len(), 1);
        assert_eq!(joined[0].data.len(), 0x20);
        assert!(matches!(
            normalise(p, vec![s(0, 0x11), s(0x10, 1)]),
            Err(ImageError::Overlap { a: 0, b: 0x10, .. })
        ));
        assert!(matches!(
            normalise(p, vec![s(0xFFFF_FFF0, 0x20)]),
            Err(ImageError::TooHigh { .. })
        ));
    }

    #[test]
    fn binary_requires_a_base() {
        assert_eq!(detect(Path::new("a.bin"), b"\x00\x01"), Format::Binary);
        assert_eq!(detect(Path::new("a.hex"), b":00000001FF"), Format::Hex);
        assert_eq!(detect(Path::new("a"), b"\x7fELF\x01"), Format::Elf);
    }

    #[test]
    fn srecords_by_content_or_name_but_not_a_binary_starting_with_s1() {
        let s19 = b"S00F000068656C6C6F202020202000003C\r\nS9030000FC\r\n";
        assert_eq!(detect(Path::new("app"), s19), Format::Srec);
        for name in ["a.s19", "a.SREC", "a.mot", "a.s28", "a.s37"] {
            assert_eq!(detect(Path::new(name), b"junk"), Format::Srec, "{name}");
        }
        assert_eq!(
            detect(Path::new("a.bin"), b"S1\x00\xff\x10"),
            Format::Binary
        );
        assert_eq!(detect(Path::new("a.bin"), b"S1234"), Format::Binary);
    }
}

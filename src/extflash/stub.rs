//! The SPI driver stub image: the ELF built from `target-stub/` and embedded
//! in the binary, parsed into one loadable blob and its entry offsets.
//!
//! Relies on the stub's build guarantees (target-stub/ and its ABI crate):
//! position-independent code in exactly one `PT_LOAD` segment, every entry
//! point named by an `extflash_stub_abi::SYM_*` symbol. Entry points are kept
//! as offsets from the segment start, so the runner may load the blob
//! anywhere in the work area.

use extflash_stub_abi as abi;
use xmas_elf::program::Type;
use xmas_elf::sections::SectionData;
use xmas_elf::symbol_table::Entry;
use xmas_elf::ElfFile;

/// xmas-elf reads headers in place and needs them aligned.
#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

static STUB_ALIGNED: &Aligned<[u8]> =
    &Aligned(*include_bytes!("../../target-stub/extflash-stub.elf"));

/// The stub ELF as committed next to its source (8-byte aligned).
pub static STUB_ELF: &[u8] = &STUB_ALIGNED.0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StubImageError {
    #[error("not a valid ELF file: {0}")]
    Elf(&'static str),
    #[error("expected exactly one loadable segment, found {0}")]
    Segments(usize),
    #[error("entry symbol `{0}` is missing")]
    MissingSymbol(&'static str),
    #[error("symbol `{name}` at {address:#x} is outside the loadable segment")]
    SymbolOutside { name: &'static str, address: u64 },
}

/// Offsets of the entry points from the start of the image (Thumb bit
/// cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entries {
    pub init: u32,
    pub read: u32,
    pub crc32: u32,
    pub erase: u32,
    pub stream: u32,
    pub read_sfdp: u32,
    pub read_status: u32,
    pub write_status: u32,
    pub crc_blocks: u32,
    pub serve: u32,
    pub park: u32,
    pub bkpt: u32,
}

/// A parsed stub: bytes to place at the load address (`.bss` zero-filled)
/// and entry offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubImage {
    pub bytes: Vec<u8>,
    pub entries: Entries,
}

impl StubImage {
    /// The embedded stub.
    pub fn builtin() -> Result<StubImage, StubImageError> {
        StubImage::parse(STUB_ELF)
    }

    pub fn parse(elf: &[u8]) -> Result<StubImage, StubImageError> {
        // xmas-elf needs aligned input; copy when the caller's is not.
        let copy: Vec<u64>;
        let elf: &[u8] = if elf.as_ptr() as usize % 8 == 0 {
            elf
        } else {
            copy = elf
                .chunks(8)
                .map(|c| {
                    let mut w = [0u8; 8];
                    w[..c.len()].copy_from_slice(c);
                    u64::from_ne_bytes(w)
                })
                .collect();
            let len = elf.len();
            // Safe view of the aligned copy as bytes.
            &bytemuck_bytes(&copy)[..len]
        };
        let file = ElfFile::new(elf).map_err(StubImageError::Elf)?;
        let loads: Vec<_> = file
            .program_iter()
            .filter(|ph| ph.get_type() == Ok(Type::Load) && ph.mem_size() > 0)
            .collect();
        let [seg] = loads.as_slice() else {
            return Err(StubImageError::Segments(loads.len()));
        };
        let off = seg.offset() as usize;
        let file_len = seg.file_size() as usize;
        let mut bytes = elf
            .get(off..off + file_len)
            .ok_or(StubImageError::Elf("segment past the end of the file"))?
            .to_vec();
        bytes.resize(seg.mem_size() as usize, 0);
        let base = seg.virtual_addr();
        let end = base + seg.mem_size();

        let mut symbols: Vec<(String, u64)> = Vec::new();
        for section in file.section_iter() {
            if let Ok(SectionData::SymbolTable32(entries)) = section.get_data(&file) {
                for e in entries {
                    if let Ok(name) = e.get_name(&file) {
                        symbols.push((name.to_string(), e.value()));
                    }
                }
            }
        }
        let find = |name: &'static str| -> Result<u32, StubImageError> {
            let address = symbols
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v & !1)
                .ok_or(StubImageError::MissingSymbol(name))?;
            if !(base..end).contains(&address) {
                return Err(StubImageError::SymbolOutside { name, address });
            }
            Ok((address - base) as u32)
        };
        let entries = Entries {
            init: find(abi::SYM_INIT)?,
            read: find(abi::SYM_READ)?,
            crc32: find(abi::SYM_CRC32)?,
            erase: find(abi::SYM_ERASE)?,
            stream: find(abi::SYM_STREAM)?,
            read_sfdp: find(abi::SYM_READ_SFDP)?,
            read_status: find(abi::SYM_READ_STATUS)?,
            write_status: find(abi::SYM_WRITE_STATUS)?,
            crc_blocks: find(abi::SYM_CRC_BLOCKS)?,
            serve: find(abi::SYM_SERVE)?,
            park: find(abi::SYM_PARK)?,
            bkpt: find(abi::SYM_BKPT)?,
        };
        Ok(StubImage { bytes, entries })
    }
}

fn bytemuck_bytes(words: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and any byte pattern is a valid u8; the
    // length is the same memory in bytes.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_stub_has_every_entry_point_in_its_segment() {
        let stub = StubImage::builtin().expect("embedded stub parses");
        let e = stub.entries;
        for off in [
            e.init,
            e.read,
            e.crc32,
            e.erase,
            e.stream,
            e.read_sfdp,
            e.read_status,
            e.write_status,
            e.bkpt,
        ] {
            assert!((off as usize) < stub.bytes.len(), "{e:?}");
            assert_eq!(off % 2, 0, "Thumb bit cleared");
        }
        // stub_bkpt is a `bkpt #0` (0xBE00).
        let b = e.bkpt as usize;
        assert_eq!(stub.bytes[b + 1], 0xBE, "stub_bkpt is a BKPT instruction");
        // So it fits every work area a board file may name.
        assert!(
            stub.bytes.len() as u32 <= extflash_stub_abi::layout::STUB_BUDGET,
            "the built-in stub is over its budget"
        );
    }

    #[test]
    fn invalid_elf_is_rejected() {
        assert!(matches!(
            StubImage::parse(b"not an elf"),
            Err(StubImageError::Elf(_))
        ));
    }
}

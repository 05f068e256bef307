//! The few ELF operations the generator needs: a symbol's address and
//! size, and where its bytes sit in the file, so a template's data can be
//! overwritten in place. Pure (bytes in, bytes out).

use xmas_elf::sections::{SectionData, ShType};
use xmas_elf::symbol_table::Entry;
use xmas_elf::ElfFile;

use super::LoaderError;

/// A defined symbol of an ELF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol {
    pub value: u32,
    pub size: u32,
    /// Byte offset of its data in the file (for data symbols in a
    /// PROGBITS section).
    pub file_offset: usize,
}

pub fn parse<'a>(template: &'static str, bytes: &'a [u8]) -> Result<ElfFile<'a>, LoaderError> {
    ElfFile::new(bytes).map_err(|reason| LoaderError::Template {
        template,
        reason: reason.to_string(),
    })
}

/// The symbol `name` (value, size, file offset of its data).
pub fn symbol(
    template: &'static str,
    elf: &ElfFile<'_>,
    name: &str,
) -> Result<Symbol, LoaderError> {
    let missing = || LoaderError::Template {
        template,
        reason: format!("no symbol `{name}`"),
    };
    for sh in elf.section_iter() {
        let Ok(SectionData::SymbolTable32(entries)) = sh.get_data(elf) else {
            continue;
        };
        for e in entries {
            if e.get_name(elf).ok() != Some(name) || e.shndx() == 0 {
                continue;
            }
            let sec = elf.section_header(e.shndx()).map_err(|_| missing())?;
            let value = e.value() as u32;
            let size = e.size() as u32;
            let file_offset = if sec.get_type() == Ok(ShType::ProgBits) {
                (sec.offset() + (u64::from(value & !1) - sec.address())) as usize
            } else {
                0
            };
            return Ok(Symbol {
                value,
                size,
                file_offset,
            });
        }
    }
    Err(missing())
}

/// The bytes of section `name`, and its address.
pub fn section<'a>(
    template: &'static str,
    elf: &ElfFile<'a>,
    name: &str,
) -> Result<(u32, &'a [u8]), LoaderError> {
    let sh = elf
        .find_section_by_name(name)
        .ok_or_else(|| LoaderError::Template {
            template,
            reason: format!("no section `{name}`"),
        })?;
    Ok((sh.address() as u32, sh.raw_data(elf)))
}

/// Overwrite the data of symbol `name` with `data` (exactly its size).
pub fn patch(
    template: &'static str,
    bytes: &mut [u8],
    name: &str,
    data: &[u8],
) -> Result<(), LoaderError> {
    let sym = symbol(template, &parse(template, bytes)?, name)?;
    if sym.file_offset == 0 || sym.size as usize != data.len() {
        return Err(LoaderError::Template {
            template,
            reason: format!(
                "symbol `{name}` is {} bytes of file data, the generator has {}",
                sym.size,
                data.len()
            ),
        });
    }
    bytes[sym.file_offset..sym.file_offset + data.len()].copy_from_slice(data);
    Ok(())
}

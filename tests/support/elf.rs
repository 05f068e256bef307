//! The committed test firmware (`tests/firmware/`, see its README): paths,
//! the bytes each segment loads, sections and symbols.
//!
//! Self-contained (used by `examples/virtual_time.rs` too).
#![allow(dead_code)]

use std::path::Path;

use xmas_elf::program::Type;
use xmas_elf::sections::SectionData;
use xmas_elf::symbol_table::{Entry, Type as SymbolType};
use xmas_elf::ElfFile;

/// Code and data only.
pub const FIRMWARE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/firmware/firmware.elf");
/// Also `.extflash.font` @0x90000003 and `.extflash.table` @0x9000F123.
pub const FIRMWARE_ASSETS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/firmware/firmware-assets.elf"
);
/// The committed SPI stub (`target-stub/README.md`).
pub const STUB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target-stub/extflash-stub.elf");

/// The bytes of an ELF file; panics naming the path.
pub fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn firmware_elf() -> Vec<u8> {
    read(FIRMWARE)
}

pub fn firmware_assets_elf() -> Vec<u8> {
    read(FIRMWARE_ASSETS)
}

/// The bytes each PT_LOAD segment puts into memory at boot, at its
/// *physical* address: `.data` lands at its LMA in flash, where `Reset`
/// copies it from. Segments without file bytes (`.bss`) are skipped.
pub fn load_segments(elf: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let file = ElfFile::new(elf).expect("an ELF file");
    file.program_iter()
        .filter(|ph| ph.get_type() == Ok(Type::Load) && ph.file_size() > 0)
        .map(|ph| {
            let off = ph.offset() as usize;
            let data = elf[off..off + ph.file_size() as usize].to_vec();
            (ph.physical_addr() as u32, data)
        })
        .collect()
}

/// Address of a symbol; functions without their Thumb bit (where a
/// breakpoint goes), data at its exact address.
pub fn symbol(elf: &[u8], name: &str) -> u32 {
    let file = ElfFile::new(elf).expect("an ELF file");
    for section in file.section_iter() {
        if let Ok(SectionData::SymbolTable32(entries)) = section.get_data(&file) {
            if let Some(e) = entries.iter().find(|e| e.get_name(&file) == Ok(name)) {
                let value = e.value() as u32;
                return match e.get_type() {
                    Ok(SymbolType::Func) => value & !1,
                    _ => value,
                };
            }
        }
    }
    panic!("symbol {name} not in the ELF");
}

/// Address and bytes of a section.
pub fn section(elf: &[u8], name: &str) -> (u32, Vec<u8>) {
    let file = ElfFile::new(elf).expect("an ELF file");
    let s = file
        .find_section_by_name(name)
        .unwrap_or_else(|| panic!("no section {name} in the ELF"));
    (s.address() as u32, s.raw_data(&file).to_vec())
}

/// How many sections GDB's `compare-sections` checks: allocated, with
/// file contents, not empty.
pub fn loadable_sections(elf: &[u8]) -> usize {
    let file = ElfFile::new(elf).expect("an ELF file");
    file.section_iter()
        .filter(|s| {
            s.flags() & xmas_elf::sections::SHF_ALLOC != 0
                && s.get_type() == Ok(xmas_elf::sections::ShType::ProgBits)
                && s.size() > 0
        })
        .count()
}

/// A minimal ELF32 ARM file holding `sections` (address, bytes) as
/// loadable read-only sections `.s0`, `.s1`, ..., one PT_LOAD each: what
/// GDB's `load` and `compare-sections` need of a file with window assets.
pub fn data_elf(sections: &[(u32, &[u8])]) -> Vec<u8> {
    const EH: usize = 52;
    const PH: usize = 32;
    const SH: usize = 40;
    let n = sections.len();
    let mut names = b"\0.shstrtab\0".to_vec();
    let name_at: Vec<u32> = (0..n)
        .map(|i| {
            let at = names.len() as u32;
            names.extend(format!(".s{i}\0").bytes());
            at
        })
        .collect();
    let mut data_off = Vec::new();
    let mut off = EH + PH * n;
    for (_, d) in sections {
        data_off.push(off);
        off += d.len();
    }
    let names_off = off;
    let sh_off = (names_off + names.len() + 3) & !3;
    let w16 = |o: &mut Vec<u8>, v: u16| o.extend(v.to_le_bytes());
    let w32 = |o: &mut Vec<u8>, v: u32| o.extend(v.to_le_bytes());
    let mut o = b"\x7fELF\x01\x01\x01\0".to_vec();
    o.resize(16, 0);
    w16(&mut o, 2); // ET_EXEC
    w16(&mut o, 40); // EM_ARM
    w32(&mut o, 1);
    w32(&mut o, sections.first().map_or(0, |s| s.0)); // entry
    w32(&mut o, EH as u32);
    w32(&mut o, sh_off as u32);
    w32(&mut o, 0x0500_0000); // EABI5
    for v in [EH, PH, n, SH, n + 2, 1] {
        w16(&mut o, v as u16);
    }
    for (i, (addr, d)) in sections.iter().enumerate() {
        // PT_LOAD, offset, vaddr, paddr, filesz, memsz, flags R, align
        for v in [
            1,
            data_off[i] as u32,
            *addr,
            *addr,
            d.len() as u32,
            d.len() as u32,
            4,
            1,
        ] {
            w32(&mut o, v);
        }
    }
    for (_, d) in sections {
        o.extend_from_slice(d);
    }
    o.extend_from_slice(&names);
    o.resize(sh_off, 0);
    o.extend([0u8; SH]);
    // .shstrtab
    for v in [1, 3, 0, 0, names_off as u32, names.len() as u32, 0, 0, 1, 0] {
        w32(&mut o, v);
    }
    for (i, (addr, d)) in sections.iter().enumerate() {
        // PROGBITS, SHF_ALLOC
        for v in [
            name_at[i],
            1,
            2,
            *addr,
            data_off[i] as u32,
            d.len() as u32,
            0,
            0,
            1,
            0,
        ] {
            w32(&mut o, v);
        }
    }
    o
}

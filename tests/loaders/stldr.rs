//! The `.stldr` run the way STM32CubeProgrammer runs an external loader:
//! the ELF's segments loaded at their addresses (code from 0x20000004), a
//! BKPT at 0x20000000 where LR points, SP above the image, the data buffer
//! after the stack, and `Init` before every operation. Init, Write, Read,
//! Verify, CheckSum, SectorErase and MassErase are checked against the
//! chip's contents; `StorageInfo` is read from the file as the tools read
//! it (the symbol's 200 bytes).

use xmas_elf::program::Type;
use xmas_elf::sections::SectionData;
use xmas_elf::symbol_table::Entry;
use xmas_elf::ElfFile;

use crate::{board, generate, pattern, Target, TempDir, SPI3_BOARD};

const BKPT_AT: u32 = 0x2000_0000;
const STACK: u32 = 0x800;
const CANARY: u32 = 0xC0DE_CA5E;

fn symbol(elf: &ElfFile, name: &str) -> (u32, u32) {
    for sh in elf.section_iter() {
        if let Ok(SectionData::SymbolTable32(entries)) = sh.get_data(elf) {
            for e in entries {
                if e.get_name(elf).ok() == Some(name) {
                    return (e.value() as u32, e.size() as u32);
                }
            }
        }
    }
    panic!("no symbol {name}");
}

/// The file bytes of `len` bytes at `addr` (in a PT_LOAD segment).
fn at(elf: &ElfFile, bytes: &[u8], addr: u32, len: usize) -> Vec<u8> {
    for ph in elf.program_iter() {
        let (va, off, sz) = (
            ph.virtual_addr() as u32,
            ph.offset() as usize,
            ph.file_size() as u32,
        );
        if ph.get_type() == Ok(Type::Load) && addr >= va && addr + len as u32 <= va + sz {
            let o = off + (addr - va) as usize;
            return bytes[o..o + len].to_vec();
        }
    }
    panic!("{addr:#x} is not loaded");
}

fn word(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

fn run_like_cubeprogrammer(name: &str, board_file: Option<&str>) {
    let dir = TempDir::new(name);
    let bytes = generate("stldr", board_file, &dir.0.join("extflash.stldr"));
    let elf = ElfFile::new(&bytes).unwrap();
    let b = board(board_file);
    let ext = b.external_flash.clone().unwrap();
    let window = ext.window;

    // StorageInfo, as the tools parse it.
    let (si_addr, si_size) = symbol(&elf, "StorageInfo");
    assert_eq!(si_size, 200);
    let si = at(&elf, &bytes, si_addr, 200);
    let dev_name = String::from_utf8_lossy(&si[..100]);
    assert!(
        dev_name.contains(&extflash_gdb::extflash::wiring::describe(&ext)),
        "{dev_name}"
    );
    assert_eq!(u16::from_le_bytes([si[100], si[101]]), 7, "SPI_FLASH");
    assert_eq!(
        (word(&si, 104), word(&si, 108), word(&si, 112)),
        (window, 8 << 20, 256)
    );
    assert_eq!(si[116], 0xFF);
    assert_eq!(
        (word(&si, 120), word(&si, 124), word(&si, 128)),
        (2048, 4096, 0)
    );

    // Load the segments; the image starts right after the BKPT word.
    let mut t = Target::new(&b);
    assert!(
        symbol(&elf, "Init").0 & !1 >= 0x2000_0004,
        "code from 0x20000004"
    );
    let sp = load(&mut t, &bytes);
    let stack_bottom = sp - STACK;
    let buf = sp;
    t.write(stack_bottom, &CANARY.to_le_bytes());
    let entry = |n: &str| symbol(&elf, n).0;

    // Each operation as CubeProgrammer does it: Init, then the call.
    let op = |t: &mut Target, f: &str, args: &[u32]| -> (u32, u32) {
        assert_eq!(
            t.call(entry("Init"), &[], BKPT_AT, sp, None).0,
            1,
            "Init before {f}"
        );
        let r = t.call(entry(f), args, BKPT_AT, sp, None);
        let canary = t.read(stack_bottom, 4);
        assert_eq!(
            word(&canary, 0),
            CANARY,
            "{f} stayed within {STACK} bytes of stack"
        );
        r
    };

    let data = pattern(11, 600);
    let addr = window + 0x1100; // crosses two page boundaries
    t.write(buf, &data);
    assert_eq!(op(&mut t, "Write", &[addr, 600, buf]).0, 1, "Write");
    assert_eq!(t.chip(0x1100, 600), data);
    let next = pattern(12, 256);
    t.write(buf, &next);
    assert_eq!(
        op(&mut t, "Write", &[window + 0x2000, 256, buf]).0,
        1,
        "Write sector 2"
    );

    t.write(buf, &[0; 600]);
    assert_eq!(op(&mut t, "Read", &[addr, 600, buf]).0, 1, "Read");
    assert_eq!(t.read(buf, 600), data, "Read gives the chip's bytes");

    let sum: u32 = data.iter().map(|&x| u32::from(x)).sum();
    assert_eq!(
        op(&mut t, "CheckSum", &[addr, 600, 5]).0,
        5 + sum,
        "CheckSum"
    );
    t.write(buf, &data);
    let (lo, hi) = op(&mut t, "Verify", &[addr, buf, 150, 0]);
    assert_eq!(
        (lo, hi),
        (0, sum),
        "Verify: no difference, checksum in the upper word"
    );
    let mut other = data.clone();
    other[321] ^= 0x40;
    t.write(buf, &other);
    assert_eq!(
        op(&mut t, "Verify", &[addr, buf, 150, 0]).0,
        addr + 321,
        "first difference"
    );

    // SectorErase(start, end): every sector from start's to end's.
    assert_eq!(
        op(&mut t, "SectorErase", &[window + 0x1000, window + 0x1FFF]).0,
        1
    );
    assert_eq!(
        t.chip(0x1000, 0x1000),
        vec![0xFF; 0x1000],
        "sector 1 erased"
    );
    assert_eq!(t.chip(0x2000, 256), next, "sector 2 untouched");
    assert_eq!(
        op(&mut t, "SectorErase", &[window + 0x2000, window + 0x2000]).0,
        1
    );
    assert_eq!(t.chip(0x2000, 256), vec![0xFF; 256], "sector 2 erased");

    t.write(buf, &data);
    assert_eq!(
        op(&mut t, "Write", &[window + 0x7F_F000, 600, buf]).0,
        1,
        "Write at the end"
    );
    assert_eq!(
        op(&mut t, "Write", &[window + 0x7F_FF00, 600, buf]).0,
        0,
        "past the chip: refused"
    );
    assert_eq!(op(&mut t, "MassErase", &[0]).0, 1, "MassErase");
    assert_eq!(t.chip(0x7F_F000, 600), vec![0xFF; 600], "chip erased");
}

/// Load `bytes` (an stldr ELF) on `t`; the BKPT word and the stack top.
fn load(t: &mut Target, bytes: &[u8]) -> u32 {
    let elf = ElfFile::new(bytes).unwrap();
    let mut end = 0;
    for ph in elf.program_iter() {
        if ph.get_type() == Ok(Type::Load) && ph.file_size() > 0 {
            let (va, off, sz) = (
                ph.virtual_addr() as u32,
                ph.offset() as usize,
                ph.file_size() as usize,
            );
            t.write(va, &bytes[off..off + sz]);
            end = end.max(va + sz as u32);
        }
    }
    t.write(BKPT_AT, &0xBE00_BE00u32.to_le_bytes());
    ((end + 7) & !7) + STACK
}

#[test]
fn stldr_init_fails_on_another_chip_than_the_board_names_and_unpatched() {
    let dir = TempDir::new("stldr-init");
    let b = board(None);
    let bytes = generate("stldr", None, &dir.0.join("a.stldr"));
    let init = symbol(&ElfFile::new(&bytes).unwrap(), "Init").0;
    // The board file names EF4017; this chip answers EF4018.
    let mut t = Target::with_chip(&b, [0xEF, 0x40, 0x18]);
    let sp = load(&mut t, &bytes);
    assert_eq!(t.call(init, &[], BKPT_AT, sp, None).0, 0, "wrong chip");
    // The right chip, but the template itself (board block not patched).
    let template = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target-stub/loader-stldr.elf"
    ))
    .unwrap();
    let mut t = Target::new(&b);
    let sp = load(&mut t, &template);
    assert_eq!(t.call(init, &[], BKPT_AT, sp, None).0, 0, "unpatched");
    let sp = load(&mut t, &bytes);
    assert_eq!(
        t.call(init, &[], BKPT_AT, sp, None).0,
        1,
        "patched, right chip"
    );
}

/// A board whose independent watchdog runs (hardware-watchdog option
/// bytes, or started by the application before the tool attached without
/// a reset): the loader reloads it in every wait, so a mass erase (20 s on
/// the virtual chip) outlives its 512 ms timeout.
#[test]
fn stldr_mass_erase_with_a_running_watchdog_is_not_reset() {
    const IWDG_KR: u32 = 0x4000_3000;
    let dir = TempDir::new("stldr-iwdg");
    let b = board(None);
    let bytes = generate("stldr", None, &dir.0.join("a.stldr"));
    let elf = ElfFile::new(&bytes).unwrap();
    let mut t = Target::new(&b);
    let sp = load(&mut t, &bytes);
    assert_eq!(t.call(symbol(&elf, "Init").0, &[], BKPT_AT, sp, None).0, 1);
    // Start the IWDG: /4, RLR 0xFFF, 512 ms.
    t.write(IWDG_KR, &0xCCCCu32.to_le_bytes());
    let reloads = t.sim.lock().mcu().iwdg.reloads();
    let (r0, _) = t.call(symbol(&elf, "MassErase").0, &[0], BKPT_AT, sp, None);
    assert_eq!(r0, 1, "MassErase returns");
    assert!(
        t.sim.lock().mcu().iwdg.reloads() > reloads,
        "the loader reloaded the watchdog"
    );
    assert_eq!(t.chip(0, 16), vec![0xFF; 16]);
}

#[test]
fn stldr_runs_as_cubeprogrammer_runs_it_init_write_read_verify_checksum_erase() {
    run_like_cubeprogrammer("stldr-spi1", None);
}

#[test]
fn stldr_for_spi3_board_runs_on_a_board_wired_to_spi3() {
    run_like_cubeprogrammer("stldr-spi3", Some(SPI3_BOARD));
}

/// DWT reads are UNKNOWN and writes may stick while DEMCR.TRCENA is 0
/// (ARMv7-M ARM C1.6.5): a CYCCNTENA that a debugger left set reads back
/// set with CYCCNT stopped. The loader tests TRCENA itself, sets only that
/// bit, and its timeouts count (it returned instead of spinning).
#[test]
fn stldr_init_sets_trcena_when_cyccntena_already_reads_set() {
    const DEMCR: u32 = 0xE000_EDFC;
    const DWT_CTRL: u32 = 0xE000_1000;
    const TRCENA: u32 = 1 << 24;
    const VC_HARDERR: u32 = 1 << 10;
    let word = |v: Vec<u8>| u32::from_le_bytes(v.try_into().unwrap());
    let dir = TempDir::new("stldr-trcena");
    let b = board(None);
    let bytes = generate("stldr", None, &dir.0.join("a.stldr"));
    let elf = ElfFile::new(&bytes).unwrap();
    let mut t = Target::new(&b);
    let sp = load(&mut t, &bytes);
    t.write(DEMCR, &VC_HARDERR.to_le_bytes());
    t.write(DWT_CTRL, &1u32.to_le_bytes());
    assert_eq!(word(t.read(DWT_CTRL, 4)) & 1, 1, "CYCCNTENA stuck");
    assert_eq!(word(t.read(DEMCR, 4)) & TRCENA, 0);
    assert_eq!(t.call(symbol(&elf, "Init").0, &[], BKPT_AT, sp, None).0, 1);
    let demcr = word(t.read(DEMCR, 4));
    assert_eq!(demcr & TRCENA, TRCENA, "the loader set TRCENA");
    assert_eq!(demcr & VC_HARDERR, VC_HARDERR, "other DEMCR bits kept");
    let c0 = word(t.read(DWT_CTRL + 4, 4));
    let (r0, _) = t.call(symbol(&elf, "Init").0, &[], BKPT_AT, sp, None);
    assert_eq!(r0, 1);
    assert_ne!(word(t.read(DWT_CTRL + 4, 4)), c0, "CYCCNT counts");
}

//! The committed loader templates (`target-stub/loader-stldr.elf`,
//! `loader-flm.elf`) are what `target-stub/build-loaders.sh` builds from
//! the stub's sources: byte for byte with the compiler recorded in
//! `BUILD-INFO-loaders.txt`; with another compiler (other bytes are then
//! legitimate) the rebuild must succeed and keep what the generator relies
//! on. Needs the `thumbv7m-none-eabi` Rust target (never skipped).

use std::path::Path;
use std::process::Command;

use extflash_stub_abi::loader::{
    FLM_SYMBOLS, STLDR_SYMBOLS, SYM_BOARD, SYM_FLASH_DEVICE, SYM_STORAGE_INFO,
};
use xmas_elf::sections::SectionData;
use xmas_elf::symbol_table::Entry;
use xmas_elf::ElfFile;

use crate::TempDir;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `## rustc -vV` block of a BUILD-INFO file.
fn rustc_block(info: &str) -> String {
    info.split("## ")
        .find(|b| b.starts_with("rustc -vV"))
        .unwrap_or_default()
        .to_string()
}

/// What the generator and the host tools need from a template: every
/// entry point a global function with the Thumb bit, the board block and
/// the device description with their sizes.
fn contract(bytes: &[u8], entries: &[&str], desc: &str, desc_size: u64) -> Vec<String> {
    let elf = ElfFile::new(bytes).unwrap();
    let mut found = std::collections::BTreeMap::new();
    for sh in elf.section_iter() {
        if let Ok(SectionData::SymbolTable32(es)) = sh.get_data(&elf) {
            for e in es {
                if let Ok(n) = e.get_name(&elf) {
                    found.insert(n.to_string(), (e.value(), e.size()));
                }
            }
        }
    }
    let mut bad = Vec::new();
    for name in entries {
        match found.get(*name) {
            Some((v, _)) if v & 1 == 1 => {}
            other => bad.push(format!("{name}: {other:?} (want a Thumb function)")),
        }
    }
    let board = extflash_stub_abi::loader::Board::default();
    let want = [
        (SYM_BOARD, std::mem::size_of_val(&board) as u64),
        (desc, desc_size),
    ];
    for (name, size) in want {
        match found.get(name) {
            Some((_, s)) if *s == size => {}
            other => bad.push(format!("{name}: {other:?}, want {size} bytes")),
        }
    }
    bad
}

#[test]
fn committed_loader_templates_keep_the_generator_contract() {
    for (file, entries, desc, size) in [
        (
            "loader-stldr.elf",
            &STLDR_SYMBOLS[..],
            SYM_STORAGE_INFO,
            200,
        ),
        (
            "loader-flm.elf",
            &FLM_SYMBOLS[..],
            SYM_FLASH_DEVICE,
            160 + 512 * 8,
        ),
    ] {
        let bytes = std::fs::read(root().join("target-stub").join(file)).unwrap();
        let bad = contract(&bytes, entries, desc, size);
        assert!(bad.is_empty(), "{file}: {bad:?}");
        // The contract can fail: the stub is no loader.
        let stub = std::fs::read(root().join("target-stub/extflash-stub.elf")).unwrap();
        assert!(!contract(&stub, entries, desc, size).is_empty());
    }
}

#[test]
fn committed_loader_templates_are_what_build_loaders_sh_builds() {
    let out = TempDir::new("templates");
    let status = Command::new("bash")
        .arg(root().join("target-stub/build-loaders.sh"))
        .arg(&out.0)
        .status()
        .expect("run build-loaders.sh");
    assert!(
        status.success(),
        "target-stub/build-loaders.sh failed (is the thumbv7m-none-eabi target installed? \
         `rustup target add thumbv7m-none-eabi`)"
    );
    let committed_info =
        std::fs::read_to_string(root().join("target-stub/BUILD-INFO-loaders.txt")).unwrap();
    let rebuilt_info = std::fs::read_to_string(out.0.join("BUILD-INFO-loaders.txt")).unwrap();
    let same_rustc = rustc_block(&committed_info) == rustc_block(&rebuilt_info);
    for (file, entries, desc, size) in [
        (
            "loader-stldr.elf",
            &STLDR_SYMBOLS[..],
            SYM_STORAGE_INFO,
            200,
        ),
        (
            "loader-flm.elf",
            &FLM_SYMBOLS[..],
            SYM_FLASH_DEVICE,
            160 + 512 * 8,
        ),
    ] {
        let committed = std::fs::read(root().join("target-stub").join(file)).unwrap();
        let rebuilt = std::fs::read(out.0.join(file)).unwrap();
        if same_rustc {
            assert!(
                committed == rebuilt,
                "target-stub/{file} is stale: run target-stub/build.sh and commit the ELFs and \
                 BUILD-INFO-loaders.txt"
            );
        } else {
            eprintln!(
                "{file}: another rustc than the one in BUILD-INFO-loaders.txt, so bytes are not \
                 compared; checking the contract"
            );
            let bad = contract(&rebuilt, entries, desc, size);
            assert!(bad.is_empty(), "rebuilt {file}: {bad:?}");
        }
    }
}

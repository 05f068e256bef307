//! The committed target builds are what their sources build to:
//! `target-stub/extflash-stub.elf` (`target-stub/build.sh`) and
//! `tests/firmware/firmware.elf` + `firmware-assets.elf`
//! (`tests/firmware/build.sh`), `tests/conformance/conformance.elf` and
//! `tests/conformance-embassy/conformance-embassy.elf` (their `build.sh`,
//! crates from crates.io). Each script rebuilds into a temporary folder
//! and writes a `BUILD-INFO.txt` there with the `rustc -vV` it used.
//!
//! Nothing pins the compiler (a toolchain file would force a download on a
//! machine without that toolchain), so the check depends on it:
//! - the `rustc -vV` of the rebuild equals the one recorded in the committed
//!   `BUILD-INFO.txt`: the ELFs must match byte for byte;
//! - another compiler legitimately gives other bytes: the rebuild must still
//!   succeed and keep the contract the host and the tests rely on (see
//!   [`stub_contract`] and [`firmware_contract`]); the test prints why it did
//!   not compare bytes.
//!
//! Needs the `thumbv7m-none-eabi` Rust target; without it the tests fail
//! (they are never skipped).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use extflash_stub_abi::{
    SYM_BKPT, SYM_CRC32, SYM_CRC_BLOCKS, SYM_ERASE, SYM_INIT, SYM_PARK, SYM_READ, SYM_READ_SFDP,
    SYM_READ_STATUS, SYM_SERVE, SYM_STREAM, SYM_WRITE_STATUS,
};
use xmas_elf::program::Type as SegmentType;
use xmas_elf::sections::{SectionData, ShType};
use xmas_elf::symbol_table::{Binding, Entry, Type as SymbolType};
use xmas_elf::ElfFile;

use crate::support::elf;

const TARGET: &str = "thumbv7m-none-eabi";

/// `target-stub/stub.x` stops the link above this many bytes of code and
/// read-only data; the board file's work-area check assumes it.
const STUB_BUDGET: u64 = extflash_stub_abi::layout::STUB_BUDGET as u64;

/// Every entry point the host calls, from the shared ABI crate.
const STUB_ENTRIES: [&str; 12] = [
    SYM_INIT,
    SYM_READ,
    SYM_CRC32,
    SYM_ERASE,
    SYM_STREAM,
    SYM_READ_SFDP,
    SYM_READ_STATUS,
    SYM_WRITE_STATUS,
    SYM_CRC_BLOCKS,
    SYM_SERVE,
    SYM_PARK,
    SYM_BKPT,
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

fn assert_target_installed() {
    let out = Command::new(rustc())
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc runs");
    assert!(out.status.success(), "rustc --print sysroot failed");
    let sysroot = String::from_utf8(out.stdout).unwrap();
    let rustlib = Path::new(sysroot.trim()).join("lib/rustlib");
    assert!(
        rustlib.join(TARGET).is_dir(),
        "the {TARGET} Rust target is not installed ({} is missing), so the committed \
         ELFs cannot be rebuilt and checked. Install it with `rustup target add {TARGET}` \
         (`bash scripts/test-all.sh` does that for you).",
        rustlib.join(TARGET).display()
    );
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("extflash-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `script OUT_DIR` (a build.sh) into a new temporary folder.
fn rebuild(script: &str, name: &str) -> TempDir {
    assert_target_installed();
    let out = TempDir::new(name);
    let run = Command::new("bash")
        .arg(root().join(script))
        .arg(&out.0)
        // The outer cargo's settings must not leak into the target build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap_or_else(|e| panic!("bash runs {script}: {e}"));
    assert!(
        run.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

/// The `## rustc -vV` block of a BUILD-INFO.txt (up to the next `## `).
fn rustc_block(build_info: &str) -> Option<String> {
    let mut lines = build_info
        .lines()
        .skip_while(|l| l.trim() != "## rustc -vV");
    lines.next()?;
    let block: Vec<&str> = lines.take_while(|l| !l.starts_with("## ")).collect();
    (!block.is_empty()).then(|| block.join("\n"))
}

/// How a rebuild is compared with the committed build.
#[derive(Debug, PartialEq, Eq)]
enum Comparison {
    /// Same compiler: byte for byte.
    Bytes,
    /// Another compiler: the contract only. The first line of `rustc -vV`
    /// that differs, as committed and as rebuilt.
    Contract { committed: String, rebuilt: String },
}

/// The rule of this module, from the committed and the rebuilt BUILD-INFO.
fn comparison(committed_info: &str, rebuilt_info: &str) -> Comparison {
    let committed = rustc_block(committed_info)
        .expect("the committed BUILD-INFO.txt records `rustc -vV` (rerun its build.sh)");
    let rebuilt = rustc_block(rebuilt_info).expect("build.sh wrote `rustc -vV`");
    if committed == rebuilt {
        return Comparison::Bytes;
    }
    let (mut a, mut b) = (committed.lines(), rebuilt.lines());
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => {
                return Comparison::Contract {
                    committed: x.unwrap_or("(nothing)").to_string(),
                    rebuilt: y.unwrap_or("(nothing)").to_string(),
                }
            }
        }
    }
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Global symbols defined in the ELF: name → (type, value, size).
fn global_symbols(elf: &[u8]) -> Vec<(String, SymbolType, u64, u64)> {
    let file = ElfFile::new(elf).expect("an ELF file");
    let mut out = Vec::new();
    for section in file.section_iter() {
        if let Ok(SectionData::SymbolTable32(entries)) = section.get_data(&file) {
            for e in entries {
                if e.get_binding() == Ok(Binding::Global) && e.shndx() != 0 {
                    if let (Ok(name), Ok(ty)) = (e.get_name(&file), e.get_type()) {
                        out.push((name.to_string(), ty, e.value(), e.size()));
                    }
                }
            }
        }
    }
    out
}

/// What the host relies on in a stub ELF, as violations (empty: kept):
/// one PT_LOAD segment linked at 0 with no `.bss`, within [`STUB_BUDGET`];
/// no relocation sections; exactly the ABI crate's entry points as global
/// Thumb functions inside the segment; `stub_bkpt` starting with a BKPT.
fn stub_contract(elf: &[u8]) -> Vec<String> {
    let mut bad = Vec::new();
    let file = match ElfFile::new(elf) {
        Ok(f) => f,
        Err(e) => return vec![format!("not an ELF file: {e}")],
    };
    let loads: Vec<_> = file
        .program_iter()
        .filter(|ph| ph.get_type() == Ok(SegmentType::Load))
        .collect();
    if loads.len() != 1 {
        bad.push(format!("{} PT_LOAD segments, want 1", loads.len()));
        return bad;
    }
    let ph = loads[0];
    if ph.virtual_addr() != 0 {
        bad.push(format!("linked at {:#x}, want 0", ph.virtual_addr()));
    }
    if ph.file_size() != ph.mem_size() {
        bad.push("the segment has .bss".into());
    }
    if ph.file_size() > STUB_BUDGET {
        bad.push(format!(
            "{} bytes, over the {STUB_BUDGET}-byte budget",
            ph.file_size()
        ));
    }
    let off = ph.offset() as usize;
    let image = &elf[off..off + ph.file_size() as usize];
    for s in file.section_iter() {
        if matches!(s.get_type(), Ok(ShType::Rel) | Ok(ShType::Rela)) {
            bad.push(format!(
                "relocation section {}",
                s.get_name(&file).unwrap_or("?")
            ));
        }
    }
    let symbols = global_symbols(elf);
    let entries: BTreeSet<&str> = symbols
        .iter()
        .filter(|(n, ty, ..)| *ty == SymbolType::Func && n.starts_with("stub_"))
        .map(|(n, ..)| n.as_str())
        .collect();
    let want: BTreeSet<&str> = STUB_ENTRIES.into_iter().collect();
    if entries != want {
        bad.push(format!(
            "entry points {entries:?}, the ABI crate names {want:?}"
        ));
    }
    for (name, _, value, _) in symbols.iter().filter(|(n, ..)| want.contains(n.as_str())) {
        let at = (value & !1) as usize;
        if value & 1 == 0 {
            bad.push(format!("{name} at {value:#x} has no Thumb bit"));
        }
        if at + 2 > image.len() {
            bad.push(format!("{name} at {value:#x} is outside the segment"));
        } else if name == SYM_BKPT && image[at + 1] != 0xBE {
            bad.push(format!(
                "{name} starts with {:#06x}, not a BKPT",
                u16::from_le_bytes([image[at], image[at + 1]])
            ));
        }
    }
    bad
}

/// The names of the `#[no_mangle]` items in the firmware's source: what the
/// tests find by name.
fn firmware_named_items() -> Vec<String> {
    let src = read_text(&root().join("tests/firmware/src/main.rs"));
    let mut names = Vec::new();
    let mut lines = src.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line != "#[no_mangle]" && line != "#[unsafe(no_mangle)]" {
            continue;
        }
        let item = lines
            .by_ref()
            .find(|l| !l.starts_with("#[") && !l.starts_with("//"))
            .unwrap_or_default();
        let name = ["static mut ", "static ", "fn "].iter().find_map(|kw| {
            let rest = &item[item.find(kw)? + kw.len()..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
            Some(rest[..end].to_string())
        });
        names.push(name.unwrap_or_else(|| panic!("no name in `{item}` after #[no_mangle]")));
    }
    assert!(
        names.len() > 10,
        "found only {names:?} in the firmware source"
    );
    names
}

/// The initial bytes of a `.data` object (empty for anything else).
fn data_init(elf: &[u8], addr: u64, size: u64) -> Vec<u8> {
    let file = ElfFile::new(elf).expect("an ELF file");
    let Some(data) = file.find_section_by_name(".data") else {
        return Vec::new();
    };
    if addr < data.address() || addr + size > data.address() + data.size() {
        return Vec::new();
    }
    let off = (addr - data.address()) as usize;
    data.raw_data(&file)[off..off + size as usize].to_vec()
}

/// What the tests rely on in a rebuilt firmware ELF, as violations against
/// the committed one: every `#[no_mangle]` item of the source in both or
/// neither (features), of
/// the same kind, data of the same size and initial value; the vector table
/// at the same place; the asset sections at the same addresses with the
/// same bytes.
fn firmware_contract(committed: &[u8], rebuilt: &[u8]) -> Vec<String> {
    let mut bad = Vec::new();
    let (old, new) = (global_symbols(committed), global_symbols(rebuilt));
    let find = |syms: &[(String, SymbolType, u64, u64)], name: &str| {
        syms.iter()
            .find(|(n, ..)| n == name)
            .map(|(_, ty, v, s)| (*ty, *v, *s))
    };
    for name in firmware_named_items() {
        match (find(&old, &name), find(&new, &name)) {
            // Behind a feature this build does not enable.
            (None, None) => {}
            (None, Some(_)) => bad.push(format!("{name} is in the rebuilt ELF only")),
            (Some(_), None) => bad.push(format!("{name} is in the committed ELF only")),
            (Some((t0, v0, s0)), Some((t1, v1, s1))) => {
                if t0 != t1 {
                    bad.push(format!("{name}: {t0:?} committed, {t1:?} rebuilt"));
                } else if t0 == SymbolType::Object
                    && (s0 != s1 || data_init(committed, v0, s0) != data_init(rebuilt, v1, s1))
                {
                    bad.push(format!(
                        "{name}: another size ({s0} bytes committed, {s1} rebuilt) or initial value"
                    ));
                }
            }
        }
    }
    let file_old = ElfFile::new(committed).expect("an ELF file");
    let file_new = ElfFile::new(rebuilt).expect("an ELF file");
    for name in [".vector_table", ".extflash.font", ".extflash.table"] {
        let a = file_old.find_section_by_name(name);
        let b = file_new.find_section_by_name(name);
        match (a, b) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                if (a.address(), a.size()) != (b.address(), b.size()) {
                    bad.push(format!("{name} moved or changed size"));
                } else if name != ".vector_table" && a.raw_data(&file_old) != b.raw_data(&file_new)
                {
                    bad.push(format!("{name} bytes differ"));
                }
            }
            _ => bad.push(format!("{name} is in only one of the two ELFs")),
        }
    }
    bad
}

#[test]
fn build_info_comparison_is_bytes_only_for_the_recorded_rustc() {
    let info = |rustc: &str, llvm: &str| {
        format!(
            "# Written by build.sh\n## rustc -vV\n{rustc}\nbinary: rustc\n\
             host: x86_64-unknown-linux-gnu\nLLVM version: {llvm}\n## cargo -V\ncargo 1.95.0\n"
        )
    };
    let stable = info("rustc 1.95.0 (59807616e 2026-04-14)", "22.1.2");
    let cases = [
        (stable.clone(), Comparison::Bytes),
        (
            info("rustc 1.96.0-nightly (0123456789 2026-05-01)", "22.1.2"),
            Comparison::Contract {
                committed: "rustc 1.95.0 (59807616e 2026-04-14)".into(),
                rebuilt: "rustc 1.96.0-nightly (0123456789 2026-05-01)".into(),
            },
        ),
        (
            // Same version string, other LLVM (a distribution build).
            info("rustc 1.95.0 (59807616e 2026-04-14)", "21.1.0"),
            Comparison::Contract {
                committed: "LLVM version: 22.1.2".into(),
                rebuilt: "LLVM version: 21.1.0".into(),
            },
        ),
    ];
    for (rebuilt, want) in cases {
        assert_eq!(comparison(&stable, &rebuilt), want, "{rebuilt}");
    }
    assert_eq!(rustc_block("## sha256\nabc\n"), None);
}

#[test]
fn committed_stub_keeps_the_host_contract() {
    assert_eq!(stub_contract(&elf::read(elf::STUB)), Vec::<String>::new());
}

#[test]
fn stub_contract_rejects_an_elf_that_is_not_the_stub() {
    // The test firmware: its own segments, no stub entry points.
    let bad = stub_contract(&elf::firmware_elf());
    assert!(!bad.is_empty());
}

#[test]
fn committed_stub_elf_is_what_target_stub_builds_to() {
    let out = rebuild("target-stub/build.sh", "stub-check");
    let committed = elf::read(elf::STUB);
    let rebuilt = elf::read(out.0.join("extflash-stub.elf"));
    let rule = comparison(
        &read_text(&root().join("target-stub/BUILD-INFO.txt")),
        &read_text(&out.0.join("BUILD-INFO.txt")),
    );
    match rule {
        Comparison::Bytes => assert!(
            rebuilt == committed,
            "target-stub/extflash-stub.elf is stale ({} bytes committed, {} built with the \
             same rustc): run target-stub/build.sh and commit the ELF and BUILD-INFO.txt",
            committed.len(),
            rebuilt.len(),
        ),
        Comparison::Contract {
            committed: then,
            rebuilt: now,
        } => {
            println!(
                "bytes not compared: the committed stub's rustc says `{then}`, this \
                 rebuild's `{now}`, and another compiler gives other bytes; checking \
                 the entry points, ABI and size budget instead"
            );
            let bad = stub_contract(&rebuilt);
            assert!(
                bad.is_empty(),
                "the stub rebuilt (rustc: `{now}`) breaks the host contract: {bad:?}"
            );
        }
    }
}

#[test]
fn committed_firmware_elfs_are_what_tests_firmware_builds_to() {
    let out = rebuild("tests/firmware/build.sh", "firmware-check");
    let rule = comparison(
        &read_text(&root().join("tests/firmware/BUILD-INFO.txt")),
        &read_text(&out.0.join("BUILD-INFO.txt")),
    );
    for name in ["firmware.elf", "firmware-assets.elf"] {
        let committed = elf::read(root().join("tests/firmware").join(name));
        let rebuilt = elf::read(out.0.join(name));
        match &rule {
            Comparison::Bytes => assert!(
                rebuilt == committed,
                "tests/firmware/{name} is stale ({} bytes committed, {} built with the same \
                 rustc): run tests/firmware/build.sh and commit the ELFs and BUILD-INFO.txt",
                committed.len(),
                rebuilt.len(),
            ),
            Comparison::Contract {
                committed: then,
                rebuilt: now,
            } => {
                println!(
                    "{name}: bytes not compared: the committed build's rustc says `{then}`, \
                     this rebuild's `{now}`; checking the named items, vector table and \
                     assets instead"
                );
                let bad = firmware_contract(&committed, &rebuilt);
                assert!(
                    bad.is_empty(),
                    "tests/firmware/{name} rebuilt (rustc: `{now}`) differs from the committed \
                     one where the tests look (stale? run tests/firmware/build.sh): {bad:?}"
                );
            }
        }
    }
}

#[test]
fn firmware_contract_holds_for_an_identical_elf_and_catches_missing_asset_sections() {
    let plain = elf::firmware_elf();
    assert_eq!(firmware_contract(&plain, &plain), Vec::<String>::new());
    // The assets build has sections the plain one lacks.
    let assets = elf::firmware_assets_elf();
    let bad = firmware_contract(&plain, &assets);
    assert!(
        bad.iter().any(|b| b.contains(".extflash")),
        "the assets build differs from the plain one: {bad:?}"
    );
}

/// What the conformance test relies on in a rebuilt conformance ELF, as
/// violations: the `record` (same size: same layout), `conformance_done`
/// and the `handlers` as in the committed build, a vector table at
/// 0x0800_0000.
fn conformance_contract(
    committed: &[u8],
    rebuilt: &[u8],
    record: &str,
    handlers: &[&str],
) -> Vec<String> {
    let mut bad = Vec::new();
    let (old, new) = (global_symbols(committed), global_symbols(rebuilt));
    let size = |syms: &[(String, SymbolType, u64, u64)], name: &str| {
        syms.iter().find(|s| s.0 == name).map(|s| s.3)
    };
    for name in [record, "conformance_done", "Reset"].iter().chain(handlers) {
        match (size(&old, name), size(&new, name)) {
            (_, None) => bad.push(format!("no symbol {name}")),
            (Some(a), Some(b)) if *name == record && a != b => {
                bad.push(format!("{record} is {b} bytes, committed {a}"))
            }
            _ => {}
        }
    }
    match ElfFile::new(rebuilt)
        .map(|f| f.find_section_by_name(".vector_table").map(|s| s.address()))
    {
        Ok(Some(0x0800_0000)) => {}
        other => bad.push(format!(".vector_table not at 0x08000000: {other:?}")),
    }
    bad
}

/// Rebuild `dir/build.sh` and compare `dir/elf` with the committed one.
fn check_conformance_build(dir: &str, elf_name: &str, record: &str, handlers: &[&str]) {
    let out = rebuild(&format!("{dir}/build.sh"), &format!("{elf_name}-check"));
    let committed = elf::read(root().join(dir).join(elf_name));
    let rebuilt = elf::read(out.0.join(elf_name));
    match comparison(
        &read_text(&root().join(dir).join("BUILD-INFO.txt")),
        &read_text(&out.0.join("BUILD-INFO.txt")),
    ) {
        Comparison::Bytes => assert!(
            rebuilt == committed,
            "{dir}/{elf_name} is stale ({} bytes committed, {} built with the same rustc): run \
             {dir}/build.sh and commit the ELF and BUILD-INFO.txt",
            committed.len(),
            rebuilt.len(),
        ),
        Comparison::Contract {
            committed: then,
            rebuilt: now,
        } => {
            println!(
                "{elf_name}: bytes not compared: the committed build's rustc says `{then}`, \
                 this rebuild's `{now}`; checking the record and entry symbols"
            );
            let bad = conformance_contract(&committed, &rebuilt, record, handlers);
            assert!(
                bad.is_empty(),
                "{dir}/{elf_name} rebuilt (rustc: `{now}`) differs from the committed one where \
                 the tests look: {bad:?}"
            );
        }
    }
}

#[test]
fn committed_conformance_elf_is_what_tests_conformance_builds_to() {
    check_conformance_build(
        "tests/conformance",
        "conformance.elf",
        "CONFORMANCE",
        &["SysTick", "DMA2_STREAM0"],
    );
}

#[test]
fn committed_embassy_conformance_elf_is_what_its_sources_build_to() {
    check_conformance_build(
        "tests/conformance-embassy",
        "conformance-embassy.elf",
        "CONFORMANCE_EMBASSY",
        &["DMA2_STREAM0", "DMA2_STREAM3"],
    );
}

#[test]
fn conformance_contract_catches_an_elf_without_the_record() {
    let committed = elf::read(root().join("tests/conformance/conformance.elf"));
    let no_bad = conformance_contract(&committed, &committed, "CONFORMANCE", &["SysTick"]);
    assert_eq!(no_bad, Vec::<String>::new());
    let bad = conformance_contract(&committed, &elf::firmware_elf(), "CONFORMANCE", &[]);
    assert!(bad.iter().any(|b| b.contains("CONFORMANCE")), "{bad:?}");
}

/// The linker script's size assertion is the ABI crate's budget: a stub
/// that links is one every valid board work area holds.
#[test]
fn stub_linker_script_asserts_the_abi_budget() {
    let script = std::fs::read_to_string(root().join("target-stub/stub.x")).unwrap();
    let want = format!("__stub_end - __stub_start <= {STUB_BUDGET},");
    assert!(
        script.contains(&want),
        "target-stub/stub.x lacks `{want}`: keep it equal to abi::layout::STUB_BUDGET"
    );
}

//! LLDB (Debian's `lldb`, which these tests need) as a client of
//! `serve --sim`, driven in batch mode: connect, program internal flash and
//! the window with `target modules load --load` (LLDB erases and writes
//! block by block), break in flash by name (LLDB sends `Z0` there), print
//! globals, step, kill (`k`); then `gdb-multiarch`'s `compare-sections`
//! checks what LLDB programmed. The packets themselves are checked in the
//! `rsp` test binary (`lldb.rs`).

use std::process::Command;
use std::time::Duration;

use crate::support::elf::{firmware_assets_elf, loadable_sections, FIRMWARE_ASSETS};
use crate::support::process::run_with_timeout;
use crate::support::rsp::unhex;
use crate::support::server::{gdb_batch, GdbLimits, SimServer};

/// The whole LLDB run; past it LLDB is killed and the test fails.
const LLDB_RUN: Duration = Duration::from_secs(240);
/// LLDB's reply timeout (seconds): programming the window takes seconds of
/// emulated stub runs (a real board doesn't).
const PACKET_TIMEOUT: u32 = 120;

/// Run `lldb -b` on `elf` connected to the server at `addr`, then `cmds`
/// (LLDB stops at the first failing command in batch mode); returns stdout
/// and stderr together (also printed, for a failing test's log).
fn lldb_batch(addr: &str, elf: &str, cmds: &[&str]) -> String {
    let setup = [
        format!("settings set plugin.process.gdb-remote.packet-timeout {PACKET_TIMEOUT}"),
        format!("target create {elf}"),
        format!("gdb-remote {addr}"),
    ];
    let mut args: Vec<String> = vec!["-b".into(), "-x".into()];
    for c in setup.iter().map(String::as_str).chain(cmds.iter().copied()) {
        args.push("-o".into());
        args.push(c.into());
    }
    let mut lldb = Command::new("lldb");
    lldb.args(&args);
    let what = format!("lldb {cmds:?}");
    let out = run_with_timeout(lldb, &what, LLDB_RUN);
    let text = out.text();
    assert!(
        !out.timed_out(),
        "lldb {cmds:?} timed out after {LLDB_RUN:?}:\n{text}"
    );
    text
}

/// LLDB's `process plugin packet monitor` sends `qRcmd`.
const RESET_HALT: &str = "process plugin packet monitor reset halt";
/// Without it LLDB does not know where the ELF sits: its breakpoints stay
/// unresolved and nothing is sent. `--load` also programs the sections.
const LOAD: &str = "target modules load --load --file firmware-assets.elf --slide 0";

#[test]
fn lldb_loads_both_flashes_breaks_in_flash_prints_steps_and_gdb_compare_sections_matches() {
    let s = SimServer::start(&[]);
    let out = lldb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &[
            LOAD,
            RESET_HALT,
            "breakpoint set -n main",
            "continue",
            "p/x DATA_WORD",
            "p/x BOOT_MARKER",
            "thread step-over",
            "p/x BOOT_MARKER",
            "process kill",
        ],
    );
    assert!(!out.contains("flash erase failed"), "{out}");
    assert!(out.contains("reset; halted at pc 0x08000040"), "{out}");
    assert!(
        out.contains("stop reason = breakpoint 1.1")
            && out.contains("firmware-assets.elf`main at main.rs:619"),
        "stopped at the breakpoint in main:\n{out}"
    );
    // .data came from its flash LMA (LLDB programmed it), .bss is zero
    // until main's first line runs.
    assert!(out.contains("$0 = 0x12345678"), "{out}");
    assert!(out.contains("$1 = 0x00000000"), "{out}");
    assert!(
        out.contains("stop reason = step over") && out.contains("main at main.rs:620"),
        "{out}"
    );
    assert!(
        out.contains("$2 = 0xb007c0de"),
        "main's first line ran:\n{out}"
    );
    assert!(
        out.contains("exited with status = 9"),
        "LLDB accepted the kill:\n{out}"
    );
    assert!(!out.contains("unexpected response"), "{out}");

    // What LLDB programmed, checked by GDB (on-target CRCs, the window too).
    let out = gdb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &["compare-sections"],
        GdbLimits::STUB_RUNS,
    );
    assert!(!out.contains("MIS-MATCHED"), "{out}");
    assert_eq!(
        out.matches(": matched.").count(),
        loadable_sections(&firmware_assets_elf()),
        "{out}"
    );
    assert!(out.contains("Section .extflash.table"), "{out}");
}

/// A breakpoint on a function in flash is a `Z0` from LLDB: it stops there
/// every time round the loop, and after `breakpoint delete` it no longer
/// stops there (the comparator is freed). Error replies carry their text.
#[test]
fn lldb_flash_breakpoint_hits_repeatedly_and_deletes_cleanly() {
    let s = SimServer::start(&[]);
    // Program with GDB: this test is about breakpoints only.
    gdb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &["monitor reset halt", "load", "monitor reset halt"],
        GdbLimits::STUB_RUNS,
    );
    let out = lldb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &[
            "target modules load --file firmware-assets.elf --slide 0",
            RESET_HALT,
            "breakpoint set -n tick",
            "continue",
            "p/x TICKS",
            "continue",
            "p/x TICKS",
            "breakpoint delete 1",
            "breakpoint set -n compute",
            "continue",
            "process plugin packet send mfffffe00,4",
            "process kill",
        ],
    );
    assert_eq!(
        out.matches("stop reason = breakpoint 1.1").count(),
        2,
        "{out}"
    );
    // tick runs before compute: had its comparator stayed, the next stop
    // would be tick again.
    assert!(
        out.contains("stop reason = breakpoint 2.1") && out.contains("`compute"),
        "{out}"
    );
    assert!(out.contains("$0 = 0x00000000"), "{out}");
    assert!(out.contains("$1 = 0x00000001"), "one tick later:\n{out}");
    // LLDB enabled error strings itself (`QEnableErrorStrings`).
    let text = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("response: E0e;"))
        .map(|h| String::from_utf8(unhex(h.as_bytes())).expect("ASCII"))
        .unwrap_or_else(|| panic!("no error text in the reply:\n{out}"));
    assert!(
        text.starts_with("reading 4 bytes at 0xfffffe00 failed"),
        "{text}"
    );
    assert!(out.contains("exited with status = 9"), "{out}");
}

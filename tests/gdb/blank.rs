//! A user's first connect to a board whose internal flash is blank: the
//! core fetched SP and PC 0xffffffff at reset and locked up (PC 0xfffffffe).
//! GDB's unwinder and disassembler read around that PC and SP, where
//! nothing answers; the server answers `E0e` without filling the log with
//! warnings, names the locked-up core, and `load` + `monitor reset halt`
//! recovers the board.

use std::path::PathBuf;
use std::process::Stdio;

use crate::support::elf::FIRMWARE;
use crate::support::server::SimServer;

/// `serve`'s default log filter.
const SERVE_LOG: &str = "warn,extflash_gdb=info";

/// A fresh virtual board (blank internal flash) logging to a file.
fn blank_board(name: &str) -> (SimServer, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("extflash-gdb-blank-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("server.log");
    let file = std::fs::File::create(&log).unwrap();
    let s = SimServer::start_with_log(&["--sim-strict"], SERVE_LOG, Stdio::from(file));
    (s, log)
}

/// The server's log without colour codes.
fn log_text(log: &PathBuf) -> String {
    let raw = std::fs::read_to_string(log).unwrap();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Our crate's warnings (the virtual board's own `sim` lines aside).
fn our_warnings(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains(" WARN ") && l.contains("extflash_gdb"))
        .collect()
}

#[test]
fn gdb_on_a_blank_board_gets_errors_for_its_probing_and_the_log_names_the_lockup() {
    let (s, log) = blank_board("probe");
    let out = s.gdb(
        FIRMWARE,
        &[
            "info registers pc sp",
            "bt",
            "x/4i $pc",
            "x/2xw $sp",
            "stepi",
            "monitor reset halt",
        ],
    );
    drop(s);
    // The registers are the locked-up core's, and the user's own reads
    // there get GDB's clear message.
    assert!(out.contains("0xfffffffe"), "{out}");
    assert!(
        out.contains("Cannot access memory at address 0xfffffffe"),
        "{out}"
    );
    assert!(
        out.contains("Cannot access memory at address 0xfffffffc"),
        "{out}"
    );
    let hint = "core is locked up (pc 0xfffffffe): no valid vector table at 0x08000000 \
                (internal flash erased)";
    assert!(
        out.contains(hint),
        "monitor reset halt names the lockup:\n{out}"
    );
    let text = log_text(&log);
    assert!(
        our_warnings(&text).is_empty(),
        "GDB's probing must not warn:\n{text}"
    );
    let connect = text
        .lines()
        .find(|l| l.contains("INFO") && l.contains(hint))
        .unwrap_or_else(|| panic!("no lockup hint at connect:\n{text}"));
    assert!(connect.contains("`load` a program"), "{connect}");
    let quiet: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("answered E0e"))
        .collect();
    assert_eq!(
        quiet.len(),
        1,
        "one info line for the unmapped reads:\n{text}"
    );
    assert!(
        quiet[0].contains("at 0xfffffffe") && quiet[0].contains("Vendor_SYS"),
        "{}",
        quiet[0]
    );
    assert!(!text.contains("FAULT"), "no probe-rs fault chains:\n{text}");
}

#[test]
fn load_reset_halt_and_continue_recover_a_blank_board() {
    let (s, log) = blank_board("recover");
    let out = s.gdb(
        FIRMWARE,
        &[
            "load",
            "monitor reset halt",
            "p/x $pc",
            "tbreak main",
            "continue",
            "p/x $sp",
            "disconnect",
        ],
    );
    assert!(out.contains("Start address 0x08000040"), "{out}");
    assert!(out.contains("reset; halted at pc 0x08000040"), "{out}");
    assert!(!out.contains("locked up"), "{out}");
    assert!(
        out.contains("Temporary breakpoint 1, firmware::main ()"),
        "{out}"
    );
    // A reconnect finds the recovered core: no lockup hint.
    let again = s.gdb(FIRMWARE, &["monitor halt", "bt"]);
    assert!(again.contains("#0"), "{again}");
    assert!(!again.contains("locked up"), "{again}");
    drop(s);
    let text = log_text(&log);
    // Only the first connect found the core locked up.
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("core is locked up"))
            .count(),
        1,
        "{text}"
    );
    assert!(our_warnings(&text).is_empty(), "{text}");
}

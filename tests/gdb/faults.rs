//! The fault matrix as the user meets it in `gdb-multiarch`: each
//! `--sim-fault` of the virtual board, and a board wired differently from
//! what the board file says (`--sim-board`), end within their bound with a
//! message on GDB's console that says what to check.

use std::time::{Duration, Instant};

use crate::support::elf::{FIRMWARE, FIRMWARE_ASSETS};
use crate::support::server::{gdb_batch, GdbLimits, SimServer};

const SPI3_BOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/memory-maps/stm32f407ve-w25q64jv-spi3.toml"
);

/// `monitor` commands against a server started with `extra`; GDB's output
/// and how long the whole run took.
fn monitor(extra: &[&str], cmds: &[&str]) -> (String, Duration) {
    let s = SimServer::start(extra);
    let t = Instant::now();
    let out = gdb_batch(&s.addr, FIRMWARE, cmds, GdbLimits::STUB_RUNS);
    (out, t.elapsed())
}

#[test]
fn gdb_no_chip_names_the_spi_instance_and_pins() {
    let (out, took) = monitor(&["--sim-fault", "no-chip"], &["monitor flash info"]);
    assert!(
        out.contains("no SPI flash answers on SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0)"),
        "{out}"
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
}

#[test]
fn gdb_wrong_wiring_is_reported_as_no_answer_on_the_believed_pins() {
    // The board is wired to SPI3 (PC10-PC12, PA15); the server believes
    // the default board file (SPI1 on port B).
    let (out, _) = monitor(&["--sim-board", SPI3_BOARD], &["monitor flash info"]);
    assert!(
        out.contains("no SPI flash answers on SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0)"),
        "{out}"
    );
}

#[test]
fn gdb_protected_chip_refuses_erase_and_says_how_to_unprotect() {
    let (out, _) = monitor(&["--sim-fault", "protected"], &["monitor flash erase-all"]);
    assert!(out.contains("monitor flash unprotect"), "{out}");
}

#[test]
fn gdb_locked_protection_says_it_cannot_be_lifted() {
    let (out, _) = monitor(
        &["--sim-fault", "protected,locked"],
        &["monitor flash unprotect"],
    );
    assert!(out.contains("still protected"), "{out}");
}

#[test]
fn gdb_write_enable_that_never_sets_wel_names_wp_and_supply() {
    let (out, took) = monitor(
        &["--sim-fault", "wel-never-set"],
        &["monitor flash erase-all"],
    );
    assert!(out.contains("did not set WEL"), "{out}");
    assert!(took < Duration::from_secs(60), "{took:?}");
}

/// BUSY that never clears after the first erase: the load fails after the
/// sector erase's datasheet maximum (400 ms) at the core's actual clock,
/// and the server says the chip stayed busy.
#[test]
fn gdb_stuck_busy_chip_fails_the_load_within_the_erase_maximum() {
    let s = SimServer::start(&["--sim-fault", "stuck-busy", "--sim-link", "ideal"]);
    let t = Instant::now();
    let out = gdb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &["monitor reset halt", "load", "monitor flash info"],
        GdbLimits::STUB_RUNS,
    );
    let took = t.elapsed();
    assert!(out.contains("Load failed") || out.contains("rror"), "{out}");
    assert!(
        out.contains("stays busy"),
        "the error names the busy chip:\n{out}"
    );
    assert!(took < Duration::from_secs(120), "{took:?}");
}

/// A core that locked up (blank internal flash: it faults fetching the
/// reset vector) does not stop window reads, and the registers GDB reads
/// after one are the locked-up core's.
#[test]
fn gdb_window_reads_work_on_a_locked_up_core() {
    let s = SimServer::start(&[]);
    let out = gdb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &[
            "p/x $pc",
            "x/4xb 0x90000000",
            "maintenance flush register-cache",
            "p/x $pc",
            "monitor flash info",
        ],
        GdbLimits::STUB_RUNS,
    );
    assert!(out.contains("0x90000000:\t0xff\t0xff\t0xff\t0xff"), "{out}");
    let pcs: Vec<&str> = out.lines().filter(|l| l.starts_with("$")).collect();
    assert_eq!(pcs.len(), 2, "{out}");
    assert_eq!(
        pcs[0].split_once(" = ").unwrap().1,
        pcs[1].split_once(" = ").unwrap().1,
        "{out}"
    );
    assert!(out.contains("JEDEC ID EF 40 17"), "{out}");
}

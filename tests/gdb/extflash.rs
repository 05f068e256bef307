//! End to end with the real `gdb-multiarch`: the external-flash window at
//! 0x90000000 served through the SPI stub, on the virtual board, with
//! `tests/firmware/firmware-assets.elf` (code in internal flash, assets in
//! `.extflash.font` @0x90000003 and `.extflash.table` @0x9000F123).
//!
//! Servers run as `extflash-gdb serve --sim` child processes, or in-process
//! (`server::run` on a prepared `SimBoard`) for chip states the CLI cannot
//! set up (write-protected, absent).

use extflash_gdb::board::Board;
use extflash_gdb::sim::{Faults, SimBoard, SimConfig};
use extflash_stub_abi::{crc32_update, CRC32_INIT};

use crate::support::elf::{self, firmware_assets_elf};
use crate::support::server::{block, gdb_assets, in_process, SimServer};

const SPI3_BOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/memory-maps/stm32f407ve-w25q64jv-spi3.toml"
);

/// Bytes of a section of `firmware-assets.elf`.
fn section(name: &str) -> (u32, Vec<u8>) {
    elf::section(&firmware_assets_elf(), name)
}

/// The qCRC the firmware computes over its assets: font then table.
fn asset_crc() -> u32 {
    let (_, font) = section(".extflash.font");
    let (_, table) = section(".extflash.table");
    crc32_update(crc32_update(CRC32_INIT, &font), &table)
}

const LOAD: &[&str] = &["monitor reset halt", "load", "monitor reset halt"];

fn cmds<'a>(first: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    first.iter().chain(rest).copied().collect()
}

/// Whether GDB printed an `x` line for `addr` (with or without a
/// `<SYMBOL>` tag) ending in `values`.
fn x_line(out: &str, addr: u32, values: &str) -> bool {
    let a = format!("0x{addr:08x}");
    out.lines()
        .any(|l| l.starts_with(&a) && l.contains(':') && l.trim_end().ends_with(values))
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|b| format!("0x{b:02x}"))
        .collect::<Vec<_>>()
        .join("\t")
}

fn matched(out: &str) -> usize {
    out.matches(": matched.").count()
}

fn loadable_sections() -> usize {
    elf::loadable_sections(&firmware_assets_elf())
}

#[test]
fn gdb_load_puts_assets_in_the_window_and_compare_sections_matches() {
    let s = SimServer::start(&[]);
    let (font_addr, font) = section(".extflash.font");
    let (table_addr, table) = section(".extflash.table");
    assert_eq!((font_addr, table_addr), (0x9000_0003, 0x9000_F123));
    let dump = std::env::temp_dir().join(format!("extflash-dump-{}.bin", std::process::id()));
    let dump_cmd = format!(
        "dump binary memory {} 0x90010000 0x90020000",
        dump.display()
    );
    let out = gdb_assets(
        &s.addr,
        &cmds(
            LOAD,
            &[
                "compare-sections",
                "x/4xb 0x90000003",
                "x/2xw 0x9000f123",
                &dump_cmd,
            ],
        ),
    );
    assert!(out.contains("Loading section .extflash.table"), "{out}");
    assert!(!out.contains("MIS-MATCHED"), "{out}");
    assert_eq!(matched(&out), loadable_sections(), "{out}");
    assert!(x_line(&out, 0x9000_0003, &hex_bytes(&font[..4])), "{out}");
    let w0 = u32::from_le_bytes(table[..4].try_into().unwrap());
    let w1 = u32::from_le_bytes(table[4..8].try_into().unwrap());
    assert!(
        x_line(&out, 0x9000_F123, &format!("0x{w0:08x}\t0x{w1:08x}")),
        "{out}"
    );
    let dumped = std::fs::read(&dump).expect("dump file");
    std::fs::remove_file(&dump).ok();
    let off = (0x9001_0000 - table_addr) as usize;
    assert_eq!(dumped.len(), 0x10000);
    assert!(
        dumped == table[off..off + 0x10000],
        "64 KiB dump differs from the ELF"
    );
}

#[test]
fn gdb_firmware_reads_loaded_assets_and_its_spi_transactions_survive_window_reads() {
    let s = SimServer::start(&[]);
    let want = asset_crc();
    let out = gdb_assets(
        &s.addr,
        &cmds(
            LOAD,
            &[
                "set language c",
                "break assets_checked",
                "continue",
                "print/x crc",
                "print/x *(unsigned int *)0x20000020",
                "x/4xb 0x90000003",
                "delete",
                // Stop inside a transaction, CS low.
                "break spi_xfer if *(unsigned int *)0x20000054 == 1",
                "continue",
                "print *(unsigned int *)0x20000054",
                "print *(unsigned int *)0x20000060",
                "x/4xb 0x90001000",
                "delete",
                "break spi_transaction",
                "continue",
                "print *(unsigned int *)0x20000060",
                "print *(unsigned int *)0x2000005c",
                "x/3xb 0x2000001c",
            ],
        ),
    );
    assert!(out.contains("Breakpoint 1, "), "{out}");
    let crc_line = format!("= 0x{want:x}");
    assert_eq!(
        out.matches(&crc_line).count(),
        2,
        "crc arg and ASSET_CRC {crc_line}:\n{out}"
    );
    let (_, font) = section(".extflash.font");
    assert!(x_line(&out, 0x9000_0003, &hex_bytes(&font[..4])), "{out}");
    // In the transaction: the window read is refused (nothing cached after
    // the resume), the chip untouched.
    assert!(
        out.contains("Cannot access memory at address 0x90001000"),
        "{out}"
    );
    let values: Vec<u32> = out
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(_, v)| v))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    // IN_TRANSACTION, SPI_ROUNDS (in), SPI_ROUNDS (after), SPI_ERRORS
    assert_eq!(values.len(), 4, "{values:?}\n{out}");
    assert_eq!(values[0], 1, "halted inside the transaction");
    assert!(values[2] > values[1], "SPI_ROUNDS went up: {values:?}");
    assert_eq!(values[3], 0, "SPI_ERRORS");
    assert!(
        x_line(&out, 0x2000_001C, "0xef\t0x40\t0x17"),
        "LAST_ID:\n{out}"
    );
}

/// The resident stub is invisible: between a halt and a resume, window
/// reads interleave with register reads (GDB's cache flushed, so they reach
/// the server), reads and writes of the work area, and a second window
/// read; GDB sees the application's registers and RAM throughout, and the
/// application's SPI transactions go on without an error after `continue`.
#[test]
fn gdb_sees_no_trace_of_the_resident_stub_between_halt_and_resume() {
    let s = SimServer::start(&[]);
    let regs = "info registers r0 r1 r2 r3 r4 r12 sp lr pc xpsr msp psp primask control";
    let out = gdb_assets(
        &s.addr,
        &cmds(
            LOAD,
            &[
                "set language c",
                "break assets_checked",
                "continue",
                "delete",
                // Application data in the work area (0x2001C000..0x20020000):
                // where the stub, its stack and its mailbox go.
                "set {unsigned int}0x2001C000 = 0xa1b2c3d4",
                "set {unsigned int}0x2001FFF8 = 0x0badf00d",
                "echo REGS-BEFORE\\n",
                regs,
                "echo REGS-BEFORE-END\\n",
                "x/4xb 0x90000003",
                "x/xw 0x2001C000",
                "x/xw 0x2001FFF8",
                "maintenance flush register-cache",
                "echo REGS-RESIDENT\\n",
                regs,
                "echo REGS-RESIDENT-END\\n",
                // A write into the work area ends the session first.
                "set {unsigned int}0x2001C004 = 0x01020304",
                "x/2xw 0x2001C000",
                "x/4xb 0x9000f123",
                "x/xw 0x2001FFF8",
                "maintenance flush register-cache",
                "echo REGS-AGAIN\\n",
                regs,
                "echo REGS-AGAIN-END\\n",
                "print (unsigned int)SPI_ROUNDS",
                "break spi_transaction",
                "continue",
                "continue",
                "delete",
                "print (unsigned int)SPI_ROUNDS",
                "print (unsigned int)SPI_ERRORS",
                "x/3xb &LAST_ID",
                "x/2xw 0x2001C000",
                "x/xw 0x2001FFF8",
            ],
        ),
    );
    let before = block(&out, "REGS-BEFORE\n", "REGS-BEFORE-END");
    assert!(before.contains("pc "), "{out}");
    assert_eq!(
        before,
        block(&out, "REGS-RESIDENT\n", "REGS-RESIDENT-END"),
        "{out}"
    );
    assert_eq!(
        before,
        block(&out, "REGS-AGAIN\n", "REGS-AGAIN-END"),
        "{out}"
    );
    let (_, font) = section(".extflash.font");
    let (_, table) = section(".extflash.table");
    assert!(x_line(&out, 0x9000_0003, &hex_bytes(&font[..4])), "{out}");
    assert!(x_line(&out, 0x9000_F123, &hex_bytes(&table[..4])), "{out}");
    assert_eq!(
        out.matches("0xa1b2c3d4").count(),
        3,
        "app word under the stub:\n{out}"
    );
    assert!(x_line(&out, 0x2001_C000, "0xa1b2c3d4\t0x01020304"), "{out}");
    assert_eq!(
        out.matches("0x0badf00d").count(),
        3,
        "app word under the mailbox:\n{out}"
    );
    let values: Vec<u32> = out
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(_, v)| v))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    assert_eq!(values.len(), 3, "{values:?}\n{out}");
    assert!(values[1] > values[0], "SPI_ROUNDS went up: {values:?}");
    assert_eq!(values[2], 0, "SPI_ERRORS");
    assert!(
        x_line(&out, 0x2000_001C, "0xef\t0x40\t0x17"),
        "LAST_ID:\n{out}"
    );
}

#[test]
fn gdb_window_reads_use_the_cache_while_the_app_holds_cs_and_writes_are_refused() {
    let s = SimServer::start(&[]);
    let out = gdb_assets(
        &s.addr,
        &cmds(
            LOAD,
            &[
                "set language c",
                "break assets_checked",
                "continue",
                "x/4xb 0x90000010",
                // Drive CS (PB0) low as the application would mid-transaction.
                "set *(unsigned int *)0x40020418 = 0x10000",
                "x/4xb 0x90000010",
                "x/4xb 0x90400000",
                "set *(unsigned int *)0x40020418 = 1",
                "x/4xb 0x90400000",
                "set *(unsigned int *)0x90000000 = 1",
            ],
        ),
    );
    let (_, font) = section(".extflash.font");
    let line = hex_bytes(&font[0xD..0x11]);
    let hits = out
        .lines()
        .filter(|l| l.starts_with("0x90000010") && l.trim_end().ends_with(&line))
        .count();
    assert_eq!(hits, 2, "second read from the cache:\n{out}");
    assert!(
        out.contains("Cannot access memory at address 0x90400000"),
        "{out}"
    );
    assert!(x_line(&out, 0x9040_0000, "0xff\t0xff\t0xff\t0xff"), "{out}");
    // GDB itself refuses plain writes to a flash region; a client that
    // sends M/X anyway gets an E reply.
    assert!(
        out.contains("Writing to flash memory forbidden"),
        "M refused:\n{out}"
    );
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    let reply = c.ask("M90000000,4:01020304").unwrap();
    assert!(reply.starts_with('E'), "{reply}");
    let reply = c.ask("m20000000,4").unwrap();
    assert_eq!(reply.len(), 8, "session goes on: {reply}");
}

#[test]
fn gdb_monitor_flash_info_names_the_chip_and_erase_all_erases_after_a_sim_state_restart() {
    let dir = std::env::temp_dir().join(format!("extflash-e2e-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.to_str().unwrap();
    {
        let s = SimServer::start(&["--sim-state", state]);
        let out = gdb_assets(&s.addr, &cmds(LOAD, &["monitor flash info"]));
        assert!(out.contains("JEDEC ID EF 40 17"), "{out}");
        assert!(out.contains("8192 KiB, 256-byte pages"), "{out}");
        assert!(
            out.contains("4 KiB (20h), 32 KiB (52h), 64 KiB (D8h)"),
            "{out}"
        );
        assert!(out.contains("protection: none"), "{out}");
    }
    {
        let s = SimServer::start(&["--sim-state", state]);
        // The firmware runs from power-on and may be halted inside its own
        // SPI transaction: reset first, as a user would.
        let out = gdb_assets(
            &s.addr,
            &[
                "monitor reset halt",
                "compare-sections",
                "monitor flash erase-all",
                "x/4xb 0x90000003",
            ],
        );
        assert_eq!(matched(&out), loadable_sections(), "after restart:\n{out}");
        assert!(out.contains("erased 8192 KiB"), "{out}");
        assert!(x_line(&out, 0x9000_0003, "0xff\t0xff\t0xff\t0xff"), "{out}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gdb_protected_chip_refuses_load_until_unprotected() {
    let sim = SimBoard::new(SimConfig::default()).unwrap();
    sim.lock().mcu().chip.load(0, &[0x42; 0x100]);
    sim.lock()
        .mcu()
        .chip
        .set_status_registers([0x1C, 0x02, 0x60]);
    let handle = sim.clone();
    let addr = in_process(
        sim,
        Board::builtin(),
        extflash_gdb::flash::progress::no_events(),
    );
    let out = gdb_assets(&addr, &cmds(LOAD, &["monitor flash info"]));
    assert!(out.contains("PROTECTED"), "{out}");
    assert!(!out.contains("Start address"), "load must fail:\n{out}");
    assert_eq!(
        handle.lock().mcu().chip.contents()[0],
        0x42,
        "nothing erased"
    );
    let out = gdb_assets(
        &addr,
        &cmds(
            &["monitor flash unprotect"],
            &cmds(LOAD, &["compare-sections"]),
        ),
    );
    assert!(out.contains("external flash unprotected"), "{out}");
    assert!(out.contains("Start address"), "{out}");
    assert_eq!(matched(&out), loadable_sections(), "{out}");
    let (_, font) = section(".extflash.font");
    assert_eq!(handle.lock().mcu().chip.contents()[3], font[0]);
}

#[test]
fn gdb_absent_chip_error_names_the_pins() {
    let sim = SimBoard::new(SimConfig {
        faults: Faults {
            absent: true,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .unwrap();
    let addr = in_process(
        sim,
        Board::builtin(),
        extflash_gdb::flash::progress::no_events(),
    );
    let out = gdb_assets(
        &addr,
        &["monitor flash info", "x/4xb 0x90000000", "print 1+1"],
    );
    assert!(
        out.contains(
            "no SPI flash answers on SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0): check wiring and power"
        ),
        "{out}"
    );
    assert!(
        out.contains("Cannot access memory at address 0x90000000"),
        "{out}"
    );
    assert!(out.contains("$1 = 2"), "session goes on:\n{out}");
}

#[test]
fn gdb_second_board_file_spi3_loads_and_compares() {
    let s = SimServer::start(&["--board", SPI3_BOARD]);
    let out = gdb_assets(
        &s.addr,
        &cmds(LOAD, &["compare-sections", "monitor flash info"]),
    );
    assert!(!out.contains("MIS-MATCHED"), "{out}");
    assert_eq!(matched(&out), loadable_sections(), "{out}");
    assert!(
        out.contains("SPI3 (SCK PC10, MISO PC11, MOSI PC12, CS PA15)"),
        "{out}"
    );
}

/// GDB's `dump` reads the window sequentially, so the server has the stub
/// read the next bytes ahead (into its RAM buffer) before GDB asks. An
/// erase in between must not let those stale bytes through: the next read
/// of that range sees the erased chip.
#[test]
fn gdb_dump_reads_ahead_and_an_erase_drops_what_was_read_ahead() {
    let s = SimServer::start(&[]);
    let (table_addr, table) = section(".extflash.table");
    let ahead = 0x9001_8000u32;
    let at = (ahead - table_addr) as usize;
    assert!(
        table[at..at + 8].iter().any(|&b| b != 0xFF),
        "the image holds data where the stub reads ahead"
    );
    let dump = std::env::temp_dir().join(format!("extflash-ahead-{}.bin", std::process::id()));
    let dump_cmd = format!(
        "dump binary memory {} 0x90010000 0x90016000",
        dump.display()
    );
    let out = gdb_assets(
        &s.addr,
        &cmds(
            LOAD,
            &[&dump_cmd, "monitor flash erase-all", "x/8xb 0x90018000"],
        ),
    );
    let dumped = std::fs::read(&dump).expect("dump file");
    std::fs::remove_file(&dump).ok();
    let off = (0x9001_0000 - table_addr) as usize;
    assert!(
        dumped == table[off..off + 0x6000],
        "the dump differs from the ELF"
    );
    assert!(out.contains("erased 8192 KiB"), "{out}");
    assert!(
        x_line(&out, ahead, &hex_bytes(&[0xFF; 8])),
        "stale read-ahead after the erase:\n{out}"
    );
}

//! The fault matrix as the user meets it in `gdb-multiarch`: each
//! `--sim-fault` of the virtual board, and a board wired differently from
//! what the board file says (`--sim-board`), end within their bound with a
//! message on GDB's console that says what to check.

use crate::support::elf::{self, FIRMWARE, FIRMWARE_ASSETS};
use crate::support::server::{gdb_batch, GdbLimits, SimServer};

const SPI3_BOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/memory-maps/stm32f407ve-w25q64jv-spi3.toml"
);

/// `monitor` commands against a server started with `extra`: GDB's output.
/// A run that hangs fails at `GdbLimits::STUB_RUNS`; how long the stub
/// waits for the chip is checked on the board's clock (tests/stub).
fn monitor(extra: &[&str], cmds: &[&str]) -> String {
    let s = SimServer::start(extra);
    gdb_batch(&s.addr, FIRMWARE, cmds, GdbLimits::STUB_RUNS)
}

#[test]
fn gdb_no_chip_names_the_spi_instance_and_pins() {
    let out = monitor(&["--sim-fault", "no-chip"], &["monitor flash info"]);
    assert!(
        out.contains("no SPI flash answers on SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0)"),
        "{out}"
    );
}

#[test]
fn gdb_wrong_wiring_is_reported_as_no_answer_on_the_believed_pins() {
    // The board is wired to SPI3 (PC10-PC12, PA15); the server believes
    // the default board file (SPI1 on port B).
    let out = monitor(&["--sim-board", SPI3_BOARD], &["monitor flash info"]);
    assert!(
        out.contains("no SPI flash answers on SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0)"),
        "{out}"
    );
}

#[test]
fn gdb_protected_chip_refuses_erase_and_says_how_to_unprotect() {
    let out = monitor(&["--sim-fault", "protected"], &["monitor flash erase-all"]);
    assert!(out.contains("monitor flash unprotect"), "{out}");
}

#[test]
fn gdb_locked_protection_says_it_cannot_be_lifted() {
    let out = monitor(
        &["--sim-fault", "protected,locked"],
        &["monitor flash unprotect"],
    );
    assert!(out.contains("still protected"), "{out}");
}

#[test]
fn gdb_write_enable_that_never_sets_wel_names_wp_and_supply() {
    let out = monitor(
        &["--sim-fault", "wel-never-set"],
        &["monitor flash erase-all"],
    );
    assert!(out.contains("did not set WEL"), "{out}");
}

/// BUSY that never clears after the first erase: the load fails and the
/// server says the chip stayed busy (that the stub gives up after the
/// sector erase's datasheet maximum, 400 ms of board time, is
/// `stub::on_sim::stuck_busy_erase_gives_busy_timeout_quickly`).
#[test]
fn gdb_stuck_busy_chip_fails_the_load_within_the_erase_maximum() {
    let s = SimServer::start(&["--sim-fault", "stuck-busy", "--sim-link", "ideal"]);
    let out = gdb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &["monitor reset halt", "load", "monitor flash info"],
        GdbLimits::STUB_RUNS,
    );
    assert!(out.contains("Load failed") || out.contains("rror"), "{out}");
    assert!(
        out.contains("stays busy"),
        "the error names the busy chip:\n{out}"
    );
}

/// Worn cells in the window's first page (bit 1 never programs to 0): every
/// program completes, so only the stream's read-back of each page finds
/// it; GDB's `load` fails at `vFlashDone` (the assets' first byte, 0x08 at
/// 0x90000003, needs bit 1 cleared), and `compare-sections` agrees that
/// the section does not hold the image (the server's log names the page:
/// `tests/sim/fidelity.rs`).
#[test]
fn gdb_load_over_worn_cells_fails_with_the_page_that_read_back_wrong() {
    let s = SimServer::start(&["--sim-fault", "worn-bit", "--sim-link", "ideal"]);
    let out = gdb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &[
            "monitor reset halt",
            "load",
            "compare-sections .extflash.font",
        ],
        GdbLimits::STUB_RUNS,
    );
    assert!(
        out.contains("Load failed") || out.contains("rror"),
        "the load must not succeed:\n{out}"
    );
    assert!(out.contains("Error finishing flash operation"), "{out}");
    assert!(
        out.contains("Section .extflash.font, range 0x90000003 -- 0x90001006: MIS-MATCHED"),
        "{out}"
    );
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

/// `p/x` of a 32-bit word through GDB: the value GDB printed after `$N = `
/// for the `n`th `p` command in `out` (0-based).
fn printed(out: &str, n: usize) -> u32 {
    let line = out
        .lines()
        .filter(|l| l.starts_with('$') && l.contains(" = "))
        .nth(n)
        .unwrap_or_else(|| panic!("no {n}th value printed:\n{out}"));
    let v = line.split_once(" = ").unwrap().1.trim();
    u32::from_str_radix(v.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("not a hex word: {line}"))
}

/// The application's independent watchdog runs (100 ms, and not frozen
/// while the core is halted: DBGMCU_APB1_FZ has only DBG_TIM2_STOP) when
/// GDB loads an image whose window part takes longer than that to program
/// (73.5 KB into the blank window: 0.4 s of board time; internal flash was
/// programmed before and is skipped). The load and `compare-sections` succeed, RCC_CSR shows no reset of any
/// kind (no IWDGRSTF, the started watchdog still holds LSIRDY on), and
/// DBGMCU_APB1_FZ reads back as the application set it, not with the
/// session's DBG_IWDG_STOP.
#[test]
fn gdb_load_into_the_window_with_a_running_watchdog_resets_nothing() {
    let s = SimServer::start(&["--sim-link", "ideal"]);
    // Internal flash programmed first, before the watchdog runs (the
    // second load skips it), from an ELF of the same bytes without the
    // window part: the (blank) window is all the second load programs.
    let internal: Vec<(u32, Vec<u8>)> = elf::load_segments(&elf::firmware_assets_elf())
        .into_iter()
        .filter(|(addr, _)| *addr < 0x9000_0000)
        .collect();
    let sections: Vec<(u32, &[u8])> = internal.iter().map(|(a, d)| (*a, &d[..])).collect();
    let internal_elf =
        std::env::temp_dir().join(format!("extflash-iwdg-internal-{}.elf", std::process::id()));
    std::fs::write(&internal_elf, elf::data_elf(&sections)).unwrap();
    let load_internal = format!("load {}", internal_elf.display());
    let out = gdb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &[
            &load_internal,
            "monitor reset halt",
            "set *(unsigned *)0xE0042008 = 1",
            "set *(unsigned *)0x40023874 = 0x01000000", // RMVF
            // IWDG: start, /8, reload 399: 400 x 8 / 32 kHz = 100 ms.
            "set *(unsigned *)0x40003000 = 0xCCCC",
            "set *(unsigned *)0x40003000 = 0x5555",
            "set *(unsigned *)0x40003004 = 1",
            "set *(unsigned *)0x40003008 = 399",
            "set *(unsigned *)0x40003000 = 0xAAAA",
            "load",
            "compare-sections",
            "p/x *(unsigned *)0x40023874",
            "p/x *(unsigned *)0xE0042008",
        ],
        GdbLimits::STUB_RUNS,
    );
    let _ = std::fs::remove_file(&internal_elf);
    assert_eq!(out.matches("Start address").count(), 2, "{out}");
    assert!(!out.contains("rror"), "{out}");
    assert!(!out.contains("MIS-MATCHED"), "{out}");
    assert!(out.contains("matched"), "{out}");
    let csr = printed(&out, 0);
    assert_eq!(csr & 1 << 29, 0, "IWDGRSTF: RCC_CSR {csr:#010x}\n{out}");
    assert_eq!(csr & 0xFE00_0000, 0, "no reset flag: RCC_CSR {csr:#010x}");
    assert_ne!(csr & 1 << 1, 0, "the watchdog still runs: {csr:#010x}");
    assert_eq!(
        printed(&out, 1),
        1,
        "DBGMCU_APB1_FZ as the application set it"
    );
}

/// The application's window watchdog runs (WDGA, /1 at PCLK1 = HSI 16 MHz:
/// 256 us per count, 16.4 ms from 0x7F to a reset; DBG_WWDG_STOP, as an
/// application debugged with it would have, freezes it only while the core
/// is halted) when GDB compares and loads the window: the stub runs the
/// core for longer than that. `compare-sections` and the `load` succeed,
/// RCC_CSR shows no reset, the counter reads as before (the session kept
/// it where the application left it) and RCC_APB1ENR/DBGMCU_APB1_FZ read
/// back as the application set them.
#[test]
fn gdb_load_into_the_window_with_a_running_window_watchdog_resets_nothing() {
    let s = SimServer::start(&["--sim-link", "ideal"]);
    let out = gdb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &[
            // Internal flash and window programmed once, before the
            // watchdog runs (the second load skips what matches).
            "load",
            "monitor reset halt",
            "set *(unsigned *)0xE0042008 = 0x800",
            "set *(unsigned *)0x40023874 = 0x01000000", // RMVF
            // WWDGEN, then CFR: WDGTB /1, W 0x7F; CR: WDGA, T 0x7F.
            "set *(unsigned *)0x40023840 = *(unsigned *)0x40023840 | 0x800",
            "set *(unsigned *)0x40002C04 = 0x7F",
            "set *(unsigned *)0x40002C00 = 0xFF",
            "p/x *(unsigned *)0x40002C00",
            "compare-sections",
            "load",
            "compare-sections",
            "p/x *(unsigned *)0x40023874",
            "p/x *(unsigned *)0x40002C00",
            "p/x *(unsigned *)0x40023840",
            "p/x *(unsigned *)0xE0042008",
        ],
        GdbLimits::STUB_RUNS,
    );
    assert_eq!(out.matches("Start address").count(), 2, "{out}");
    assert!(!out.contains("rror"), "{out}");
    assert!(!out.contains("MIS-MATCHED"), "{out}");
    assert!(out.contains("matched"), "{out}");
    let before = printed(&out, 0);
    assert_eq!(before & 0x80, 0x80, "WDGA: {before:#x}\n{out}");
    let csr = printed(&out, 1);
    assert_eq!(csr & 1 << 30, 0, "WWDGRSTF: RCC_CSR {csr:#010x}\n{out}");
    assert_eq!(csr & 0xFE00_0000, 0, "no reset flag: RCC_CSR {csr:#010x}");
    assert_eq!(
        printed(&out, 2),
        before,
        "the counter as the application left it"
    );
    assert_ne!(
        printed(&out, 3) & 0x800,
        0,
        "WWDGEN as the application set it"
    );
    assert_eq!(
        printed(&out, 4),
        0x800,
        "DBGMCU_APB1_FZ as the application set it"
    );
}

/// The lines GDB printed between `echo <name>\n` and the next `echo` mark.
fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let start = format!("=={name}==");
    out.lines()
        .skip_while(|l| *l != start)
        .skip(1)
        .take_while(|l| !l.starts_with("=="))
        .collect()
}

/// The core halted in an exception handler, as the application leaves it
/// when a HardFault stops it: xPSR.IPSR = 3 (flags set), pc in the
/// HardFault handler, lr = EXC_RETURN to thread mode on the main stack,
/// the exception frame on the MSP at the top of RAM (inside the stub's work
/// area), an unprivileged thread (CONTROL.nPRIV), BASEPRI set and a PSP.
/// (The virtual board takes no exceptions: the state is set up through
/// GDB, which is all a debugger sees of one.)
///
/// Window reads and `compare-sections` work, and every register GDB shows
/// — xPSR, MSP, PSP, CONTROL and the masks included — and the frame read
/// the same before the stub ran, while it is resident, and on the core
/// itself after the session ended.
#[test]
fn gdb_window_reads_in_an_exception_handler_leave_ipsr_stacks_and_frame_as_found() {
    let s = SimServer::start(&["--sim-link", "ideal"]);
    let regs =
        "info registers r0 r1 r4 r12 sp lr pc xpsr msp psp primask basepri faultmask control";
    let frame = "x/12xw 0x2001ffd0";
    let out = gdb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &[
            "load",
            "monitor reset halt",
            // The frame the core pushed (r0-r3, r12, lr, pc, xPSR) and
            // the interrupted thread's stack above it.
            "set {unsigned int[12]}0x2001ffd0 = {0xa0, 0xa1, 0xa2, 0xa3, 0xac, 0x08000101, 0x08000100, 0x21000000, 0x11111111, 0x22222222, 0x33333333, 0x44444444}",
            "set $xpsr = 0x81000003",
            "set $control = 1",
            "set $msp = 0x2001ffd0",
            "set $psp = 0x20008000",
            "set $basepri = 0x20",
            "set $lr = 0xfffffff9",
            "set $r0 = 0xa0a0a0a0",
            "set $r1 = 0xa1a1a1a1",
            "set $r4 = 0x44444444",
            "set $r12 = 0xc0c0c0c0",
            "set $pc = *(unsigned int *)0x0800000c & ~1",
            "echo ==before==\\n",
            regs,
            frame,
            "echo ==window==\\n",
            "x/4xb 0x90000003",
            "compare-sections",
            "echo ==during==\\n",
            "maintenance flush register-cache",
            regs,
            frame,
            // Ends the stub session (the core stays halted): what
            // follows is read from the core itself.
            "monitor halt",
            "maintenance flush register-cache",
            "echo ==after==\\n",
            regs,
            frame,
            "echo ==end==\\n",
        ],
        GdbLimits::STUB_RUNS,
    );
    let before = section(&out, "before");
    assert_eq!(before.len(), 14 + 3, "{out}");
    assert!(
        before
            .iter()
            .any(|l| l.starts_with("xpsr") && l.contains("0x81000003")),
        "IPSR 3 set up:\n{out}"
    );
    assert!(
        before
            .iter()
            .any(|l| l.starts_with("control") && l.contains("0x1")),
        "{out}"
    );
    assert!(before.iter().any(|l| l.contains("0x11111111")), "{out}");
    let window = section(&out, "window");
    assert!(window.iter().any(|l| l.starts_with("0x90000003")), "{out}");
    assert!(!window.iter().any(|l| l.contains("MIS-MATCHED")), "{out}");
    assert!(
        window.iter().filter(|l| l.contains("matched")).count() >= 6,
        "{out}"
    );
    assert!(!out.contains("rror"), "{out}");
    assert_eq!(
        section(&out, "during"),
        before,
        "while the stub is resident"
    );
    assert_eq!(
        section(&out, "after"),
        before,
        "on the core after the session"
    );
}

//! The real GDB (`gdb-multiarch`) debugging `tests/firmware/firmware.elf`
//! (see tests/firmware/README.md) on `extflash-gdb serve --sim`: load,
//! breakpoints, watchpoints, registers, memory, monitor commands, detach,
//! kill/run and `--sim-state`. The packet-level view of the same session is
//! in the `rsp` test binary.

use std::time::Duration;

use crate::support::elf::FIRMWARE;
use crate::support::server::SimServer;

/// A running `extflash-gdb serve --sim --port 0` (killed on drop) with GDB
/// pointed at the test firmware.
struct Server(SimServer);

impl std::ops::Deref for Server {
    type Target = SimServer;
    fn deref(&self) -> &SimServer {
        &self.0
    }
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Server {
        Server(SimServer::start(extra))
    }

    fn gdb(&self, cmds: &[&str]) -> String {
        self.0.gdb(FIRMWARE, cmds)
    }
}

const LOAD: &[&str] = &["monitor reset halt", "load", "monitor reset halt"];

fn with_load<'a>(cmds: &[&'a str]) -> Vec<&'a str> {
    LOAD.iter().copied().chain(cmds.iter().copied()).collect()
}

/// The packets GDB logged under `set debug remote 1`: (sent, received)
/// payloads, in order.
fn remote_log(out: &str) -> (Vec<&str>, Vec<&str>) {
    fn payloads<'a>(out: &'a str, tag: &str) -> Vec<&'a str> {
        out.lines()
            .filter_map(|l| l.split_once(tag))
            .map(|(_, p)| p.trim().trim_start_matches('$'))
            .collect()
    }
    (
        payloads(out, "Sending packet: "),
        payloads(out, "Packet received: "),
    )
}

#[test]
fn gdb_load_then_compare_sections_matches() {
    let s = Server::start();
    let out = s.gdb(&with_load(&["compare-sections"]));
    assert!(out.contains("Start address 0x08000040"), "{out}");
    assert_eq!(out.matches(": matched.").count(), 4, "{out}");
    assert!(!out.contains("MIS-MATCHED"), "{out}");
}

/// gdbstub issue 200: `next` and `continue` after a breakpoint must work.
#[test]
fn gdb_next_and_continue_after_breakpoint_hit_it_again_on_the_next_tick() {
    let s = Server::start();
    let out = s.gdb(&with_load(&[
        "break firmware::compute",
        "continue",
        "next",
        "next",
        "continue",
        "print $pc == firmware::compute",
    ]));
    let hits: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("Breakpoint 1, firmware::compute (x="))
        .collect();
    assert_eq!(hits.len(), 2, "{out}");
    assert!(!out.contains("Remote connection closed"), "{out}");
    assert!(!out.contains("not being run"), "{out}");
    assert_ne!(hits[0], hits[1], "second hit has the next tick's argument");
}

#[test]
fn gdb_finish_returns_to_caller() {
    let s = Server::start();
    let out = s.gdb(&with_load(&[
        "break firmware::compute",
        "continue",
        "finish",
    ]));
    assert!(out.contains("in firmware::tick ()"), "{out}");
    assert!(out.contains("Value returned is"), "{out}");
}

#[test]
fn gdb_break_in_flash_inserts_a_hw_breakpoint_and_the_stop_reply_says_hwbreak() {
    let s = Server::start();
    let out = s.gdb(&with_load(&[
        "break firmware::tick",
        "set debug remote 1",
        "continue",
        "set debug remote 0",
    ]));
    assert!(
        out.contains("automatically using hardware breakpoints"),
        "{out}"
    );
    assert!(out.contains("Breakpoint 1, firmware::tick ()"), "{out}");
    let (sent, received) = remote_log(&out);
    assert!(
        sent.iter().any(|p| p.starts_with("Z1,")),
        "GDB inserted a hardware breakpoint (Z1): {sent:?}"
    );
    let stop = received
        .iter()
        .rfind(|p| p.starts_with('T') || p.starts_with('S'))
        .unwrap_or_else(|| panic!("no stop reply in the remote log:\n{out}"));
    assert!(
        stop.starts_with("T05") && stop.contains("hwbreak:"),
        "stop reply {stop:?}"
    );
}

#[test]
fn gdb_write_read_and_access_watchpoints_stop_with_their_values() {
    let s = Server::start();
    let out = s.gdb(&with_load(&[
        "set language rust",
        "watch firmware::TICKS",
        "continue",
        "continue",
        "delete",
        "rwatch firmware::SPI_PERIOD",
        "continue",
        "delete",
        "awatch firmware::COMPUTE_LAST",
        "continue",
    ]));
    // First stop: the startup code zeroes .bss; second: the first tick.
    assert!(out.contains("\nNew value = 0\n"), "{out}");
    assert!(out.contains("Old value = 0\nNew value = 1"), "{out}");
    assert!(
        out.contains("Hardware read watchpoint 2: firmware::SPI_PERIOD\n\nValue = 1000"),
        "{out}"
    );
    assert!(
        out.contains("Hardware access (read/write) watchpoint 3: firmware::COMPUTE_LAST"),
        "{out}"
    );
}

#[test]
fn gdb_sw_breakpoint_in_ram_stops_with_swbreak_steps_over_and_restores_code() {
    let s = Server::start();
    // nop; nop; nop; b.n 0x20001002 at 0x20001000
    let out = s.gdb(&[
        "set language c",
        "set *(unsigned int *)0x20001000 = 0xbf00bf00",
        "set *(unsigned int *)0x20001004 = 0xe7fcbf00",
        "set $sp = 0x2001b000",
        "set $pc = 0x20001000",
        "break *0x20001004",
        "set debug remote 1",
        "continue",
        "set debug remote 0",
        "print/x $pc",
        "continue",
        "stepi",
        "print/x $pc",
        "delete",
        "print/x *(unsigned short *)0x20001004",
    ]);
    assert_eq!(out.matches("Breakpoint 1, 0x20001004").count(), 2, "{out}");
    let (sent, received) = remote_log(&out);
    assert!(
        sent.iter().any(|p| p.starts_with("Z0,20001004,")),
        "GDB inserted a software breakpoint (Z0): {sent:?}"
    );
    let stop = received
        .iter()
        .rfind(|p| p.starts_with('T') || p.starts_with('S'))
        .unwrap_or_else(|| panic!("no stop reply in the remote log:\n{out}"));
    assert!(
        stop.starts_with("T05") && stop.contains("swbreak:"),
        "stop reply {stop:?}"
    );
    assert!(
        out.contains("= 0x20001006"),
        "stepi over the breakpoint: {out}"
    );
    assert!(
        out.contains("= 0xbf00"),
        "original halfword restored: {out}"
    );
}

#[test]
fn gdb_reads_and_writes_fpu_and_system_registers() {
    let s = Server::start();
    let out = s.gdb(&with_load(&[
        "set $d3 = 1.5",
        "print $d3",
        "print/x $s7",
        "print/x $s6",
        "set $r5 = 0x1234",
        "print/x $r5",
        "set $basepri = 0x40",
        "print/x $basepri",
        "print/x $control",
        "print/x $msp",
        "info registers xpsr",
    ]));
    assert!(out.contains("= 1.5"), "{out}");
    assert!(
        out.contains("= 0x3ff80000"),
        "s7 is the high half of d3: {out}"
    );
    assert!(out.contains("= 0x1234"), "{out}");
    assert!(out.contains("= 0x40"), "{out}");
    assert!(
        out.contains("= 0x2001c000"),
        "msp after reset is the vector table's SP: {out}"
    );
}

#[test]
fn gdb_reads_cpuid_and_writes_and_reads_unaligned_ram() {
    let s = Server::start();
    let out = s.gdb(&with_load(&[
        "x/1xw 0xE000ED00",
        "set language c",
        "set *(unsigned int *)0x20001000 = 0x44332211",
        "x/3xb 0x20001001",
        "set *(unsigned short *)0x20001005 = 0xbeef",
        "x/2xb 0x20001005",
    ]));
    assert!(
        out.contains("0xe000ed00:\t0x410fc241"),
        "CPUID of a Cortex-M4: {out}"
    );
    assert!(out.contains("0x20001001:\t0x22\t0x33\t0x44"), "{out}");
    assert!(out.contains("0x20001005:\t0xef\t0xbe"), "{out}");
}

#[test]
fn gdb_monitor_help_lists_reset_unknown_command_is_named_and_reset_halt_stops_at_reset() {
    let s = Server::start();
    let out = s.gdb(&with_load(&[
        "break firmware::tick",
        "continue",
        "delete",
        "monitor help",
        "monitor frobnicate",
        "monitor reset halt",
        // GDB keeps its register cache across `monitor` (qRcmd): ask again.
        "maintenance flush register-cache",
        "print/x $pc",
    ]));
    assert!(out.contains("reset | reset halt"), "{out}");
    assert!(
        out.contains("unknown monitor command `frobnicate`"),
        "{out}"
    );
    assert!(out.contains("reset; halted at pc 0x08000040"), "{out}");
    // Stopped in `tick` first, so only a real reset brings pc back to the
    // reset handler.
    let pc = out
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("$1 = "))
        .unwrap_or_else(|| panic!("no pc printed:\n{out}"));
    assert_eq!(pc.trim(), "0x8000040", "{out}");
}

#[test]
fn gdb_detach_leaves_core_running_and_reconnect_finds_it() {
    let s = Server::start();
    s.gdb(&with_load(&[
        "break firmware::tick",
        "continue",
        "delete",
        "detach",
    ]));
    std::thread::sleep(Duration::from_millis(300));
    let out = s.gdb(&["set language c", "print *(unsigned int *)0x20000068"]);
    let ticks: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("$1 = "))
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        ticks > 1,
        "firmware kept running after detach: TICKS = {ticks}"
    );
}

#[test]
fn gdb_kill_then_run_restarts_from_reset_to_main() {
    let s = Server::start();
    let out = s.gdb(&with_load(&[
        "kill",
        "break firmware::main",
        "run",
        "info inferiors",
    ]));
    assert!(out.contains("[Inferior 1 (process 1) killed]"), "{out}");
    assert!(out.contains("Breakpoint 1, firmware::main ()"), "{out}");
}

#[test]
fn gdb_loaded_flash_survives_server_restart_with_sim_state() {
    let dir = std::env::temp_dir().join(format!("extflash-gdb-e2e-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.to_str().unwrap();
    {
        let s = Server::start_with(&["--sim-state", state]);
        let out = s.gdb(LOAD);
        assert!(out.contains("Start address 0x08000040"), "{out}");
    }
    let s = Server::start_with(&["--sim-state", state]);
    let out = s.gdb(&["compare-sections"]);
    assert_eq!(out.matches(": matched.").count(), 4, "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

/// After a stub session (a window read) the core is halted by request, not
/// on a breakpoint, so probe-rs does not "step over" the instruction at pc:
/// a `stepi` on a `b .` loop stays on it.
#[test]
fn gdb_stepi_on_a_branch_to_itself_after_a_window_read_stays_on_it() {
    let s = SimServer::start(&[]);
    let out = s.gdb(
        crate::support::elf::FIRMWARE_ASSETS,
        &[
            "set language c",
            "set {unsigned short}0x20001000 = 0xe7fe",
            "set $pc = 0x20001000",
            "set $xpsr = 0x01000000",
            "x/4xb 0x90000000",
            "stepi",
            "p/x $pc",
            "stepi",
            "p/x $pc",
        ],
    );
    let pcs: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('$'))
        .map(|l| l.split_once(" = ").unwrap().1)
        .collect();
    assert_eq!(pcs, ["0x20001000", "0x20001000"], "{out}");
}

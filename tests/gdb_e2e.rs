//! End to end: the `extflash-gdb serve --sim` binary driven by the real GDB
//! (`gdb-multiarch`) and by the raw RSP client, on the virtual board with
//! `tests/firmware/firmware.elf` (see tests/firmware/README.md).
//!
//! Needs the `sim` module (virtual board) and /usr/bin/gdb-multiarch.

mod support;

use std::time::{Duration, Instant};

use support::rsp::RspClient;
use support::server::SimServer;

const FIRMWARE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/firmware/firmware.elf");

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

#[test]
fn listening_line_names_a_real_port() {
    let s = Server::start();
    let port: u16 = s.addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
    assert!(s.addr.starts_with("127.0.0.1:"), "default bind is loopback");
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
fn gdb_next_and_continue_after_breakpoint() {
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
fn gdb_hw_breakpoint_in_flash_reports_hwbreak() {
    let s = Server::start();
    let out = s.gdb(&with_load(&[
        "break firmware::tick",
        "continue",
        "print/x $pc",
    ]));
    assert!(
        out.contains("automatically using hardware breakpoints"),
        "{out}"
    );
    assert!(out.contains("Breakpoint 1, firmware::tick ()"), "{out}");
}

#[test]
fn gdb_watchpoints_report_old_and_new_value() {
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
fn gdb_sw_breakpoint_in_ram_reports_swbreak_and_restores_code() {
    let s = Server::start();
    // nop; nop; nop; b.n 0x20001002 at 0x20001000
    let out = s.gdb(&[
        "set language c",
        "set *(unsigned int *)0x20001000 = 0xbf00bf00",
        "set *(unsigned int *)0x20001004 = 0xe7fcbf00",
        "set $sp = 0x2001b000",
        "set $pc = 0x20001000",
        "break *0x20001004",
        "continue",
        "print/x $pc",
        "continue",
        "stepi",
        "print/x $pc",
        "delete",
        "print/x *(unsigned short *)0x20001004",
    ]);
    assert_eq!(out.matches("Breakpoint 1, 0x20001004").count(), 2, "{out}");
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
fn gdb_reads_peripherals_and_unaligned_memory() {
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
fn gdb_monitor_commands() {
    let s = Server::start();
    let out = s.gdb(&with_load(&[
        "monitor help",
        "monitor frobnicate",
        "monitor reset halt",
        "print/x $pc",
    ]));
    assert!(out.contains("reset | reset halt"), "{out}");
    assert!(
        out.contains("unknown monitor command `frobnicate`"),
        "{out}"
    );
    assert!(out.contains("reset; halted at pc 0x08000040"), "{out}");
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
fn raw_interrupt_stops_running_core_with_sigint_quickly() {
    let s = Server::start();
    s.gdb(&with_load(&[]));
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    let stop = c.ask("?").unwrap();
    assert!(stop.starts_with('T') || stop.starts_with('S'), "{stop}");
    c.send_packet(b"vCont;c").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    c.interrupt().unwrap();
    let reply = c.recv_packet().unwrap();
    let elapsed = started.elapsed();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    assert!(
        reply.starts_with("T02") || reply.starts_with("S02"),
        "{reply}"
    );
    assert!(
        elapsed < Duration::from_millis(100),
        "interrupt took {elapsed:?}"
    );
}

#[test]
fn raw_second_connection_is_refused_while_first_controls() {
    let s = Server::start();
    let mut first = s.client();
    assert!(first
        .ask("qSupported:swbreak+;hwbreak+")
        .unwrap()
        .contains("PacketSize"));
    let mut second = s.client();
    assert!(second.is_closed(), "second client must be closed");
    assert!(
        !first.ask("?").unwrap().is_empty(),
        "first client keeps working"
    );
    drop(first);
    // Once the first is gone, a new client is accepted.
    let mut third = connect_retrying(&s);
    assert!(!third.ask("?").unwrap().is_empty());
}

fn connect_retrying(s: &Server) -> RspClient {
    for _ in 0..50 {
        let mut c = s.client();
        if c.send_packet(b"?").is_ok() && c.recv_packet().is_ok() {
            return c;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server never accepted a new controlling client");
}

#[test]
fn raw_bad_input_ends_only_that_connection() {
    let s = Server::start();
    // Disconnect mid-packet.
    let mut c = s.client();
    c.send_raw(b"$qSupp").unwrap();
    drop(c);
    // Line noise between packets is ignored.
    let mut c = connect_retrying(&s);
    c.send_raw(b"\r\nxyz").unwrap();
    assert!(!c.ask("?").unwrap().is_empty());
    // A packet bigger than the buffer closes the connection.
    let mut huge = b"$M20000000,8000:".to_vec();
    huge.extend(std::iter::repeat_n(b'0', 0x10000));
    c.send_raw(&huge).unwrap();
    assert!(c.is_closed());
    // A malformed command closes the connection, too.
    let mut c = connect_retrying(&s);
    let _ = c.send_packet(b"Zq,,");
    let mut c = connect_retrying(&s);
    assert!(!c.ask("?").unwrap().is_empty(), "server still serving");
}

#[test]
fn raw_errors_are_e_replies() {
    let s = Server::start();
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    let reply = c.ask("mfffffff0,4").unwrap();
    assert!(reply.starts_with('E'), "{reply}");
    let reply = c.ask("vFlashErase:20000000,4000").unwrap();
    assert_eq!(reply, "E05", "erase outside internal flash");
    let reply = c.ask("vFlashErase:08001000,1000").unwrap();
    assert_eq!(reply, "E05", "erase not on a sector boundary");
    assert!(
        c.ask("m20000000,4").unwrap().len() == 8,
        "session still usable"
    );
}

#[test]
fn raw_registers_memory_map_and_target_description() {
    let s = Server::start();
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    let g = c.ask("g").unwrap();
    assert_eq!(g.len(), (17 * 4 + 16 * 8 + 7 * 4) * 2, "{g}");
    let map = c.ask("qXfer:memory-map:read::0,ffff").unwrap();
    assert!(map.starts_with('l') || map.starts_with('m'), "{map}");
    assert!(
        map.contains("<memory type=\"flash\" start=\"0x8000000\" length=\"0x10000\">"),
        "{map}"
    );
    let xml = c.ask("qXfer:features:read:target.xml:0,ffff").unwrap();
    assert!(xml.contains("org.gnu.gdb.arm.m-profile"), "{xml}");
    assert!(xml.contains("org.gnu.gdb.arm.vfp"), "{xml}");
    // Single register read: pc (15) and d0 (17, 8 bytes).
    assert_eq!(c.ask("pf").unwrap().len(), 8);
    assert_eq!(c.ask("p11").unwrap().len(), 16);
}

#[test]
fn gdb_kill_halts_and_run_restarts_from_reset() {
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

/// Address of an ELF symbol of the test firmware.
fn symbol(name: &str) -> u32 {
    use xmas_elf::sections::SectionData;
    use xmas_elf::symbol_table::Entry;
    let data = std::fs::read(FIRMWARE).expect("read firmware");
    let elf = xmas_elf::ElfFile::new(&data).expect("parse firmware");
    for section in elf.section_iter() {
        if let Ok(SectionData::SymbolTable32(entries)) = section.get_data(&elf) {
            if let Some(e) = entries.iter().find(|e| e.get_name(&elf) == Ok(name)) {
                return e.value() as u32 & !1;
            }
        }
    }
    panic!("no symbol {name} in {FIRMWARE}");
}

#[test]
fn raw_stop_replies_name_swbreak_hwbreak_and_watch() {
    let s = Server::start();
    s.gdb(LOAD);
    let mut c = s.client();
    assert!(!c.ask("qSupported:swbreak+;hwbreak+").unwrap().is_empty());
    c.start_no_ack_mode().unwrap();

    // Hardware breakpoint in flash.
    let tick = symbol("tick");
    assert_eq!(c.ask(&format!("Z1,{tick:x},2")).unwrap(), "OK");
    let stop = c.ask("vCont;c").unwrap();
    assert!(
        stop.starts_with("T05") && stop.contains("hwbreak:"),
        "{stop}"
    );
    assert_eq!(c.ask(&format!("z1,{tick:x},2")).unwrap(), "OK");

    // Write watchpoint on TICKS reports its address.
    assert_eq!(c.ask("Z2,20000068,4").unwrap(), "OK");
    let stop = c.ask("vCont;c").unwrap();
    assert!(
        stop.starts_with("T05") && stop.contains("watch:20000068;"),
        "{stop}"
    );
    assert_eq!(c.ask("z2,20000068,4").unwrap(), "OK");

    // Software breakpoint in RAM: nop; nop; nop; b.n .-4 at 0x20001000.
    assert_eq!(c.ask("M20001000,8:00bf00bf00bffce7").unwrap(), "OK");
    assert_eq!(c.ask("Pf=00100020").unwrap(), "OK");
    assert_eq!(c.ask("Z0,20001004,2").unwrap(), "OK");
    assert_eq!(c.ask("m20001004,2").unwrap(), "00be", "BKPT written");
    let stop = c.ask("vCont;c").unwrap();
    assert!(
        stop.starts_with("T05") && stop.contains("swbreak:"),
        "{stop}"
    );
    assert_eq!(c.ask("pf").unwrap(), "04100020", "pc at the breakpoint");
    assert_eq!(c.ask("z0,20001004,2").unwrap(), "OK");
    assert_eq!(c.ask("m20001004,2").unwrap(), "00bf", "original restored");

    // Step reports SIGTRAP.
    let stop = c.ask("vCont;s").unwrap();
    assert!(stop.starts_with("S05") || stop.starts_with("T05"), "{stop}");
}

#[test]
fn raw_disconnect_restores_software_breakpoints() {
    let s = Server::start();
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    assert_eq!(c.ask("M20001000,4:00bf00bf").unwrap(), "OK");
    assert_eq!(c.ask("Z0,20001000,2").unwrap(), "OK");
    assert_eq!(c.ask("m20001000,2").unwrap(), "00be");
    drop(c);
    let mut c = connect_retrying(&s);
    assert_eq!(
        c.ask("m20001000,4").unwrap(),
        "00bf00bf",
        "BKPT removed on disconnect"
    );
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

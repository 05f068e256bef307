//! A session at the packet level, as a real GDB would hide it: interrupts,
//! one controlling connection at a time (others observe), bad input, E replies, the target
//! description, stop replies and breakpoint clean-up on disconnect. GDB
//! itself only loads the firmware where a test needs it.

use std::time::{Duration, Instant};

use crate::support::elf::{firmware_elf, symbol, FIRMWARE};
use crate::support::rsp::is_controller;
use crate::support::server::SimServer;

const LOAD: &[&str] = &["monitor reset halt", "load", "monitor reset halt"];

#[test]
fn raw_interrupt_stops_running_core_with_sigint_quickly() {
    let s = SimServer::start(&[]);
    s.gdb(FIRMWARE, LOAD);
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
fn raw_second_connection_observes_while_first_controls() {
    let s = SimServer::start(&[]);
    let mut first = s.client();
    assert!(first
        .ask("qSupported:swbreak+;hwbreak+")
        .unwrap()
        .contains("PacketSize"));
    let mut second = s.client();
    assert!(second.ask("?").unwrap().starts_with('T'), "observer served");
    assert_eq!(
        second.ask("vCont;c").unwrap(),
        "E0d",
        "observer cannot resume"
    );
    assert!(!is_controller(&mut second));
    assert!(is_controller(&mut first), "first client keeps control");
    drop(first);
    // Once the first is gone, the next new client controls; the observer
    // still observes.
    let mut third = s.client_after_close();
    assert!(is_controller(&mut third));
    assert!(!is_controller(&mut second));
}

#[test]
fn raw_line_noise_is_ignored_and_bad_packets_end_only_their_connection() {
    let s = SimServer::start(&[]);
    // Disconnect mid-packet.
    let mut c = s.client();
    c.send_raw(b"$qSupp").unwrap();
    drop(c);
    // Line noise between packets is ignored.
    let mut c = s.client_after_close();
    c.send_raw(b"\r\nxyz").unwrap();
    assert!(!c.ask("?").unwrap().is_empty());
    // A packet bigger than the buffer closes the connection.
    let mut huge = b"$M20000000,8000:".to_vec();
    huge.extend(std::iter::repeat_n(b'0', 0x10000));
    c.send_raw(&huge).unwrap();
    assert!(c.is_closed());
    // A malformed command closes the connection, too.
    let mut c = s.client_after_close();
    let _ = c.send_packet(b"Zq,,");
    let mut c = s.client_after_close();
    assert!(!c.ask("?").unwrap().is_empty(), "server still serving");
}

#[test]
fn raw_bad_memory_address_and_misplaced_flash_erase_are_e_replies() {
    let s = SimServer::start(&[]);
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
fn raw_registers_memory_map_and_target_xml_describe_a_cortex_m_with_fpu() {
    let s = SimServer::start(&[]);
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
fn raw_stop_replies_name_swbreak_hwbreak_and_watch() {
    let s = SimServer::start(&[]);
    s.gdb(FIRMWARE, LOAD);
    let mut c = s.client();
    assert!(!c.ask("qSupported:swbreak+;hwbreak+").unwrap().is_empty());
    c.start_no_ack_mode().unwrap();

    // Hardware breakpoint in flash.
    let tick = symbol(&firmware_elf(), "tick");
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
    let s = SimServer::start(&[]);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    assert_eq!(c.ask("M20001000,4:00bf00bf").unwrap(), "OK");
    assert_eq!(c.ask("Z0,20001000,2").unwrap(), "OK");
    assert_eq!(c.ask("m20001000,2").unwrap(), "00be");
    drop(c);
    let mut c = s.client_after_close();
    assert_eq!(
        c.ask("m20001000,4").unwrap(),
        "00bf00bf",
        "BKPT removed on disconnect"
    );
}

/// A `load` that fails part-way (GDB then sends no `vFlashDone`) leaves
/// nothing behind: a later `load` on the same connection erases and
/// programs only what it asks for, so the failed one's queued erase of
/// sector 0 never happens.
#[test]
fn failed_load_is_forgotten_and_a_later_load_leaves_its_sectors_alone() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    let flash = |c: &mut crate::support::rsp::RspClient, packet: &[u8]| {
        String::from_utf8_lossy(&c.request(packet).unwrap()).into_owned()
    };
    // Sector 0 (16 KiB) holds data from a successful load.
    assert_eq!(flash(&mut c, b"vFlashErase:08000000,4000"), "OK");
    let mut write = b"vFlashWrite:08000000:".to_vec();
    write.extend_from_slice(&[0x11; 16]);
    assert_eq!(flash(&mut c, &write), "OK");
    assert_eq!(flash(&mut c, b"vFlashDone"), "OK");
    assert_eq!(c.ask("m08000000,4").unwrap(), "11111111");
    // A load that erases sector 0, then fails on a write outside it.
    assert_eq!(flash(&mut c, b"vFlashErase:08000000,4000"), "OK");
    let mut bad = b"vFlashWrite:08004000:".to_vec();
    bad.extend_from_slice(&[0x22; 4]);
    assert!(
        flash(&mut c, &bad).starts_with('E'),
        "write outside the erase"
    );
    // The next load only touches sector 1.
    assert_eq!(flash(&mut c, b"vFlashErase:08004000,4000"), "OK");
    let mut write = b"vFlashWrite:08004000:".to_vec();
    write.extend_from_slice(&[0x33; 8]);
    assert_eq!(flash(&mut c, &write), "OK");
    assert_eq!(flash(&mut c, b"vFlashDone"), "OK");
    assert_eq!(c.ask("m08004000,4").unwrap(), "33333333");
    assert_eq!(
        c.ask("m08000000,4").unwrap(),
        "11111111",
        "sector 0 was not erased by the failed load's leftovers"
    );
}

/// `monitor help` lists `control`; on the controlling connection
/// `monitor control` says it already controls (not "unknown command"), and
/// a bad `flash compress` argument is named with what it takes.
#[test]
fn monitor_control_on_the_controller_and_bad_compress_argument_are_explained() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    let (help, reply) = c.monitor("help").unwrap();
    assert_eq!(reply, "OK");
    assert!(help.contains("\n  control "), "{help}");
    let (console, _) = c.monitor("control").unwrap();
    assert!(
        console.contains("this connection already controls the board"),
        "{console}"
    );
    assert!(!console.contains("unknown"), "{console}");
    assert!(is_controller(&mut c));
    let (console, _) = c.monitor("flash compress maybe").unwrap();
    assert!(
        console.contains("`flash compress` takes `on` or `off`") && console.contains("not `maybe`"),
        "{console}"
    );
    let (console, _) = c.monitor("flash compress").unwrap();
    assert!(
        console.contains("load compression on"),
        "unchanged: {console}"
    );
}

/// After `monitor resume`, the external-flash monitor commands refuse with
/// what to do, naming the chip rather than a zero-length range.
#[test]
fn monitor_flash_commands_while_the_core_runs_say_monitor_halt_first() {
    let s = SimServer::start(&[]);
    s.gdb(FIRMWARE, LOAD);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    let (console, _) = c.monitor("resume").unwrap();
    assert!(console.contains("core running"), "{console}");
    for cmd in ["flash info", "flash unprotect"] {
        let (console, _) = c.monitor(cmd).unwrap();
        assert!(
            console.contains("the core is running")
                && console.contains("the external flash cannot be reached")
                && console.contains("`monitor halt` first"),
            "{cmd}: {console}"
        );
        assert!(!console.contains("+0x0 "), "{cmd}: {console}");
    }
    let (console, _) = c.monitor("halt").unwrap();
    assert!(console.contains("halted at pc"), "{console}");
}

//! The packets LLDB (and GDB 15) send differently from GDB 13, at the byte
//! level: `Z0` in flash, `k`, error strings (`QEnableErrorStrings`,
//! `error-message+`), and flash requests that erase and write in turns.
//! `tests/gdb/lldb.rs` drives the real LLDB through the same cases.

use std::time::{Duration, Instant};

use crate::support::elf::{firmware_elf, symbol, FIRMWARE};
use crate::support::rsp::{hex, is_controller, unhex, RspClient};
use crate::support::server::SimServer;

const LOAD: &[&str] = &["monitor reset halt", "load", "monitor reset halt"];

/// The text of an LLDB error reply `Exx;hex`, or panics.
fn lldb_error_text(reply: &str) -> String {
    let (code, text) = reply
        .split_once(';')
        .unwrap_or_else(|| panic!("no error text in {reply:?}"));
    assert!(code.starts_with('E') && code.len() == 3, "{reply}");
    String::from_utf8(unhex(text.as_bytes())).expect("ASCII text")
}

/// The little-endian word at `addr`, read by `c`.
fn read_u32(c: &mut RspClient, addr: u32) -> u32 {
    let reply = c.ask(&format!("m{addr:x},4")).unwrap();
    let bytes: [u8; 4] = unhex(reply.as_bytes())
        .try_into()
        .unwrap_or_else(|_| panic!("reading {addr:#x}: {reply}"));
    u32::from_le_bytes(bytes)
}

fn loaded() -> (SimServer, RspClient) {
    let s = SimServer::start(&[]);
    s.gdb(FIRMWARE, LOAD);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    (s, c)
}

#[test]
fn raw_z0_in_flash_gets_a_comparator_stops_as_swbreak_and_leaves_flash_alone() {
    let (s, mut c) = loaded();
    assert!(!c.ask("qSupported:swbreak+;hwbreak+").unwrap().is_empty());
    let tick = symbol(&firmware_elf(), "tick");
    let before = c.ask(&format!("m{tick:x},2")).unwrap();
    assert_eq!(c.ask(&format!("Z0,{tick:x},2")).unwrap(), "OK");
    assert_eq!(
        c.ask(&format!("m{tick:x},2")).unwrap(),
        before,
        "no BKPT written into flash"
    );
    let stop = c.ask("vCont;c").unwrap();
    assert!(
        stop.starts_with("T05") && stop.contains("swbreak:"),
        "{stop}"
    );
    assert_eq!(c.ask("pf").unwrap(), hex(&tick.to_le_bytes()), "at tick");
    assert_eq!(c.ask(&format!("z0,{tick:x},2")).unwrap(), "OK");
    // Removed: the core runs through tick again and again. Had the Z0
    // stayed, it would stop at tick's next entry, TICKS one higher; an
    // observer sees TICKS go two past its value at the stop.
    let ticks = symbol(&firmware_elf(), "TICKS");
    let mut o = s.client();
    assert!(!is_controller(&mut o), "a second connection observes");
    let at_stop = read_u32(&mut o, ticks);
    c.send_packet(b"vCont;c").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = read_u32(&mut o, ticks);
        if now >= at_stop + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "TICKS stayed at {now} (stopped at {at_stop}): the Z0 was not removed"
        );
    }
    c.interrupt().unwrap();
    let stop = String::from_utf8(c.recv_packet().unwrap()).unwrap();
    assert!(stop.starts_with("T02") || stop.starts_with("S02"), "{stop}");
}

#[test]
fn raw_z0_and_z1_share_a_comparator_until_both_are_removed() {
    let (_s, mut c) = loaded();
    let tick = symbol(&firmware_elf(), "tick");
    assert_eq!(c.ask(&format!("Z0,{tick:x},2")).unwrap(), "OK");
    assert_eq!(c.ask(&format!("Z1,{tick:x},2")).unwrap(), "OK");
    assert_eq!(c.ask(&format!("z0,{tick:x},2")).unwrap(), "OK");
    let stop = c.ask("vCont;c").unwrap();
    assert!(stop.starts_with("T05"), "the Z1 still stands: {stop}");
    assert_eq!(c.ask(&format!("z1,{tick:x},2")).unwrap(), "OK");
    assert_eq!(
        c.ask(&format!("z1,{tick:x},2")).unwrap(),
        "E16",
        "nothing left to remove"
    );
}

#[test]
fn invalid_z0_in_flash_past_the_comparators_or_in_the_window_says_why() {
    let (_s, mut c) = loaded();
    assert_eq!(c.ask("QEnableErrorStrings").unwrap(), "OK");
    let mut n = 0u32;
    let full = loop {
        let reply = c.ask(&format!("Z0,{:x},2", 0x0800_0100 + 2 * n)).unwrap();
        if reply != "OK" {
            break reply;
        }
        n += 1;
        assert!(n <= 8, "more comparators than the FPB has");
    };
    assert_eq!(n, 6, "the F407's six FPB code comparators");
    let text = lldb_error_text(&full);
    assert!(full.starts_with("E10;"), "{full}");
    assert!(
        text.contains("no free FPB comparator for a breakpoint at 0x0800010c")
            && text.contains(
                "(at 0x08000100, 0x08000102, 0x08000104, 0x08000106, 0x08000108, 0x0800010a)"
            ),
        "{text}"
    );
    // Freeing one makes room again.
    assert_eq!(c.ask("z0,8000100,2").unwrap(), "OK");
    assert_eq!(c.ask("Z0,800010c,2").unwrap(), "OK");

    let window = c.ask("Z0,90000100,2").unwrap();
    assert!(
        lldb_error_text(&window).contains("external-flash window"),
        "{window}"
    );
    let ram = c.ask("Z1,20001000,2").unwrap();
    assert!(lldb_error_text(&ram).contains("below 0x20000000"), "{ram}");
    // RAM still takes a software breakpoint.
    assert_eq!(c.ask("Z0,20001000,2").unwrap(), "OK");
    assert_eq!(c.ask("m20001000,2").unwrap(), "00be");
    assert_eq!(c.ask("z0,20001000,2").unwrap(), "OK");
}

#[test]
fn raw_k_gets_an_exit_reply_and_leaves_the_core_halted() {
    let (s, mut c) = loaded();
    c.send_packet(b"vCont;c").unwrap();
    c.interrupt().unwrap();
    let stop = String::from_utf8(c.recv_packet().unwrap()).unwrap();
    assert!(stop.starts_with("T02") || stop.starts_with("S02"), "{stop}");
    assert_eq!(c.ask("k").unwrap(), "X09");
    // The connection stays usable, the core halted where it was.
    let pc = c.ask("pf").unwrap();
    assert_eq!(c.ask("pf").unwrap(), pc, "still halted");
    assert_eq!(c.ask("vKill;1").unwrap(), "OK", "GDB's vKill unchanged");
    drop(c);
    let mut c = s.client_after_close();
    assert_eq!(c.ask("pf").unwrap(), pc, "left halted after the connection");
}

#[test]
fn raw_error_strings_only_when_asked_lldb_hex_and_gdb_e_dot_text() {
    let (s, mut c) = loaded();
    let features = c.ask("qSupported:multiprocess+;swbreak+").unwrap();
    assert!(!features.contains("error-message"), "{features}");
    // Nothing asked: bare numbers.
    assert_eq!(c.ask("mfffffe00,200").unwrap(), "E0e");
    assert_eq!(c.ask("QEnableErrorStrings").unwrap(), "OK");
    let reply = c.ask("mfffffe00,200").unwrap();
    let text = lldb_error_text(&reply);
    assert!(reply.starts_with("E0e;"), "{reply}");
    assert!(text.contains("0xfffffe00"), "{text}");
    // A packet that succeeds after a failed one carries no stale text.
    assert!(!c.ask("m8000000,4").unwrap().starts_with('E'));
    let crc = c.ask("qCRC:fffffe00,100").unwrap();
    assert!(lldb_error_text(&crc).contains("qCRC"), "{crc}");
    drop(c);

    // GDB 15: `error-message+` in qSupported; `m` and `qRcmd` get E.text.
    let mut c = s.client_after_close();
    let features = c
        .ask("qSupported:multiprocess+;swbreak+;error-message+")
        .unwrap();
    assert!(features.ends_with(";error-message+"), "{features}");
    c.start_no_ack_mode().unwrap();
    let reply = c.ask("mfffffe00,200").unwrap();
    assert!(
        reply.starts_with("E.reading 512 bytes at 0xfffffe00 failed"),
        "{reply}"
    );
    let (console, reply) = c.monitor("reset later").unwrap();
    assert!(console.contains("monitor commands"), "{console}");
    assert!(
        reply.starts_with("E.unknown monitor command `reset later`"),
        "{reply}"
    );
    let (_, reply) = c.monitor("reset halt").unwrap();
    assert_eq!(reply, "OK", "a monitor command that works still ends in OK");
    assert_eq!(
        c.ask("Z1,20001000,2").unwrap(),
        "E10",
        "other packets keep Exx"
    );
}

/// LLDB's `target modules load --load` order: erase a block, write it,
/// erase the next, in internal flash and the window alike; writes over
/// written bytes and erases over them are refused by name.
#[test]
fn raw_flash_requests_in_lldb_order_program_both_flashes() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    assert_eq!(c.ask("QEnableErrorStrings").unwrap(), "OK");
    let flash = |c: &mut RspClient, packet: &[u8]| {
        String::from_utf8_lossy(&c.request(packet).unwrap()).into_owned()
    };
    let write = |addr: u32, data: &[u8]| {
        let mut p = format!("vFlashWrite:{addr:x}:").into_bytes();
        for &b in data {
            match b {
                b'#' | b'$' | b'}' | b'*' => p.extend([b'}', b ^ 0x20]),
                b => p.push(b),
            }
        }
        p
    };
    let a = [0x11u8; 0x40];
    let b = [0x22u8; 0x10];
    let w1 = [0x33u8; 0x100];
    let w2 = [0x44u8; 0x80];
    for (packet, want) in [
        (b"vFlashErase:8000000,4000".to_vec(), "OK"),
        (write(0x0800_0000, &a), "OK"),
        (b"vFlashErase:8004000,4000".to_vec(), "OK"),
        (write(0x0800_4000, &b), "OK"),
        (b"vFlashErase:90001000,1000".to_vec(), "OK"),
        (write(0x9000_1000, &w1), "OK"),
        (b"vFlashErase:90000000,1000".to_vec(), "OK"),
        (write(0x9000_0f80, &w2), "OK"),
    ] {
        assert_eq!(
            flash(&mut c, &packet),
            want,
            "{}",
            String::from_utf8_lossy(&packet[..24.min(packet.len())])
        );
    }
    assert_eq!(flash(&mut c, b"vFlashDone"), "OK");
    assert_eq!(c.ask("m8000000,4").unwrap(), "11111111");
    assert_eq!(c.ask("m8004000,4").unwrap(), "22222222");
    assert_eq!(c.ask("m90000f80,4").unwrap(), "44444444");
    assert_eq!(c.ask("m90001000,4").unwrap(), "33333333");

    // Overlaps: the whole request is dropped, the reply says which bytes.
    assert_eq!(flash(&mut c, b"vFlashErase:90002000,1000"), "OK");
    assert_eq!(flash(&mut c, &write(0x9000_2000, &w1)), "OK");
    let again = flash(&mut c, &write(0x9000_20f0, &w2));
    assert!(
        lldb_error_text(&again).contains("overlaps 256 bytes written at 0x90002000"),
        "{again}"
    );
    assert_eq!(
        flash(&mut c, b"vFlashErase:90002000,1000"),
        "OK",
        "a new load"
    );
    assert_eq!(flash(&mut c, &write(0x9000_2000, &w1)), "OK");
    let wipe = flash(&mut c, b"vFlashErase:90002000,1000");
    assert!(
        lldb_error_text(&wipe).contains("would wipe 256 bytes written at 0x90002000"),
        "{wipe}"
    );
}

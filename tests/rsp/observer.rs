//! Observer connections at the packet level (issue 12): beside a
//! controlling GDB whose core runs, further connections read but cannot
//! act (every acting packet is an `E0d` and changes nothing), at most four
//! observe at once, and roles follow the documented rule: when the
//! controller leaves, observers stay observers and the next new connection
//! controls.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::hardening::{Core, InProcess};
use crate::support::rsp::{frame, is_controller, RspClient};
use extflash_gdb::server::{Limits, MAX_OBSERVERS};

/// The counting loop the in-process board runs at 0x20000000.
const LOOP_BYTES: &str = "0130fde7";

/// A controller that has continued the core (its `vCont;c` is pending).
fn running_controller(srv: &InProcess) -> RspClient {
    let mut c = srv.client();
    c.start_no_ack_mode().unwrap();
    c.send_packet(b"vCont;c").unwrap();
    assert!(
        srv.wait_halted(false),
        "the controller's continue runs the core"
    );
    c
}

/// A new connection that the server serves as an observer.
fn observer(srv: &InProcess) -> RspClient {
    let mut o = RspClient::connect(&srv.addr).expect("connect");
    o.start_no_ack_mode().expect("observer served");
    assert!(!is_controller(&mut o), "a second connection observes");
    o
}

/// The controller's Ctrl-C: a SIGINT stop reply, so its session was
/// undisturbed.
fn interrupt_sees_sigint(c: &mut RspClient) {
    c.interrupt().unwrap();
    let stop = String::from_utf8_lossy(&c.recv_packet().unwrap()).into_owned();
    assert!(stop.starts_with("T02") || stop.starts_with("S02"), "{stop}");
}

#[test]
fn observer_reads_a_running_core_without_halting_it() {
    let srv = InProcess::start(Core::HaltedAtLoop, Limits::default());
    let mut c = srv.client();
    c.start_no_ack_mode().unwrap();
    let halted_g = c.ask("g").unwrap();
    c.send_packet(b"vCont;c").unwrap();
    assert!(srv.wait_halted(false));
    let halts = srv.sim.lock().halts();
    let mut o = observer(&srv);
    let stop = o.ask("?").unwrap();
    assert!(stop.starts_with("T05"), "a stop reply for GDB: {stop}");
    assert!(!srv.halted(), "`?` on an observer halted the core");
    assert_eq!(o.ask("m20000000,4").unwrap(), LOOP_BYTES);
    assert_eq!(
        o.ask("g").unwrap(),
        halted_g,
        "while the core runs: the registers as last seen halted"
    );
    let map = o.ask("qXfer:memory-map:read::0,ffff").unwrap();
    assert!(
        map.contains("<memory type=\"flash\" start=\"0x90000000\""),
        "{map}"
    );
    let xml = o.ask("qXfer:features:read:target.xml:0,ffff").unwrap();
    assert!(xml.contains("org.gnu.gdb.arm.m-profile"), "{xml}");
    assert_eq!(o.ask("qCRC:20000000,0").unwrap(), "Cffffffff");
    let (help, ok) = o.monitor("help").unwrap();
    assert!(help.contains("observer"), "{help}");
    assert_eq!(ok, "OK");
    // The window needs the stub, which cannot run on a running core.
    let window = o.ask("m90000000,4").unwrap();
    assert_eq!(window, "E0e", "window read while the core runs");
    assert_eq!(
        srv.sim.lock().halts(),
        halts,
        "observer reads halted the core"
    );
    interrupt_sees_sigint(&mut c);
}

#[test]
fn observer_reads_registers_and_the_window_while_the_controller_has_the_core_halted() {
    let srv = InProcess::start(Core::HaltedAtLoop, Limits::default());
    let mut c = srv.client();
    c.start_no_ack_mode().unwrap();
    let controller_g = c.ask("g").unwrap();
    let mut o = observer(&srv);
    assert_eq!(o.ask("g").unwrap(), controller_g, "current registers");
    assert_eq!(
        o.ask("m90000000,4").unwrap(),
        "ffffffff",
        "erased chip via the stub"
    );
    // The controller sees no change (the stub session stays resident
    // until the core runs, as after a window read of its own).
    assert_eq!(
        c.ask("g").unwrap(),
        controller_g,
        "the controller sees no change"
    );
    assert_eq!(c.ask("m20000000,4").unwrap(), LOOP_BYTES);
    c.send_packet(b"vCont;c").unwrap();
    assert!(srv.wait_halted(false));
    interrupt_sees_sigint(&mut c);
    let pc = c.ask("pf").unwrap();
    let pc = u32::from_str_radix(&pc, 16).unwrap().swap_bytes();
    assert!((0x2000_0000..0x2000_0004).contains(&pc), "pc {pc:#x}");
}

#[test]
fn invalid_acting_packets_from_an_observer_get_e0d_and_change_nothing() {
    let srv = InProcess::start(Core::HaltedAtLoop, Limits::default());
    let mut c = running_controller(&srv);
    let halts = srv.sim.lock().halts();
    let mut o = observer(&srv);
    let g = "0".repeat((17 * 4 + 16 * 8 + 7 * 4) * 2);
    let acting: Vec<Vec<u8>> = vec![
        b"c".to_vec(),
        b"s".to_vec(),
        b"vCont;c".to_vec(),
        b"vCont;s".to_vec(),
        b"Z0,20000000,2".to_vec(),
        b"Z1,20000000,2".to_vec(),
        b"Z2,20000000,4".to_vec(),
        b"M20000000,4:00000000".to_vec(),
        b"X20000000,4:\x00\x00\x00\x00".to_vec(),
        b"vFlashErase:08000000,4000".to_vec(),
        b"vFlashWrite:08000000:\x00".to_vec(),
        b"vFlashDone".to_vec(),
        format!("G{g}").into_bytes(),
        b"Pf=00000020".to_vec(),
        b"k".to_vec(),
        b"vKill;1".to_vec(),
    ];
    for p in &acting {
        let reply = String::from_utf8_lossy(&o.request(p).unwrap()).into_owned();
        assert_eq!(reply, "E0d", "{}", String::from_utf8_lossy(p));
    }
    let (console, reply) = o.monitor("reset halt").unwrap();
    assert_eq!(reply, "E0d");
    assert!(console.contains("only observes"), "{console}");
    assert_eq!(o.monitor("halt").unwrap().1, "E0d");
    // Ctrl-C: no reply, no halt.
    o.interrupt().unwrap();
    assert_eq!(
        o.ask("m20000000,4").unwrap(),
        LOOP_BYTES,
        "no stop reply came first"
    );
    assert_eq!(
        o.ask("m20000000,4").unwrap(),
        LOOP_BYTES,
        "memory unchanged"
    );
    drop(o);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        srv.sim.lock().halts(),
        halts,
        "an observer's packets or its disconnect halted the core"
    );
    interrupt_sees_sigint(&mut c);
    // Nothing stayed behind: no breakpoint, registers as the loop left them.
    assert_eq!(c.ask("m20000000,4").unwrap(), LOOP_BYTES);
    let pc = c.ask("pf").unwrap();
    let pc = u32::from_str_radix(&pc, 16).unwrap().swap_bytes();
    assert!((0x2000_0000..0x2000_0004).contains(&pc), "pc {pc:#x}");
}

/// Whether the server closed `s` without a reply (EOF within the timeout).
fn closed_without_reply(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"+");
    let _ = s.write_all(&frame(b"?"));
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn invalid_fifth_observer_is_refused_and_a_freed_slot_is_reused() {
    let srv = InProcess::start(Core::HaltedAtLoop, Limits::default());
    let mut c = running_controller(&srv);
    let mut observers: Vec<RspClient> = (0..MAX_OBSERVERS).map(|_| observer(&srv)).collect();
    let fifth = TcpStream::connect(&srv.addr).unwrap();
    assert!(closed_without_reply(fifth), "a fifth observer was served");
    for o in &mut observers {
        assert_eq!(o.ask("m20000000,4").unwrap(), LOOP_BYTES);
    }
    // One leaves (the core keeps running); its slot serves the next one.
    drop(observers.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut next = loop {
        let mut o = RspClient::connect(&srv.addr).unwrap();
        if o.start_no_ack_mode().is_ok() {
            break o;
        }
        assert!(
            Instant::now() < deadline,
            "the freed observer slot was not reused"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!is_controller(&mut next));
    assert!(!srv.halted(), "observers coming and going halted the core");
    interrupt_sees_sigint(&mut c);
}

#[test]
fn valid_hand_over_observers_stay_observers_and_the_next_new_connection_controls() {
    let srv = InProcess::start(Core::HaltedAtLoop, Limits::default());
    let c = running_controller(&srv);
    let mut o = observer(&srv);
    // The controller leaves without detaching: the core was halted when it
    // connected, so it is halted again (the controller's rule, unchanged).
    drop(c);
    assert!(srv.wait_halted(true));
    // The observer still observes: reads work, acting is still refused.
    assert_eq!(o.ask("m20000000,4").unwrap(), LOOP_BYTES);
    assert_eq!(o.ask("vCont;c").unwrap(), "E0d");
    assert!(!is_controller(&mut o));
    // Without a controller the window cannot be read (no stub run).
    assert_eq!(o.ask("m90000000,4").unwrap(), "E0e");
    // The next new connection controls.
    let mut next = srv.client();
    next.start_no_ack_mode().unwrap();
    next.send_packet(b"vCont;c").unwrap();
    assert!(srv.wait_halted(false), "the new controller runs the core");
    let halts = srv.sim.lock().halts();
    // The observer leaves: nothing changes on the target.
    drop(o);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        srv.sim.lock().halts(),
        halts,
        "a disconnecting observer halted the core"
    );
    interrupt_sees_sigint(&mut next);
}

#[test]
fn valid_observer_disconnect_leaves_a_halted_core_halted() {
    let srv = InProcess::start(Core::HaltedAtLoop, Limits::default());
    let mut c = srv.client();
    c.start_no_ack_mode().unwrap();
    let mut o = observer(&srv);
    assert_eq!(o.ask("D").unwrap(), "OK");
    drop(o);
    std::thread::sleep(Duration::from_millis(300));
    assert!(srv.halted(), "an observer's detach resumed the core");
    assert_eq!(c.ask("m20000000,4").unwrap(), LOOP_BYTES);
}

#[test]
fn invalid_http_request_on_an_observer_connection_is_closed_and_writes_nothing() {
    let srv = InProcess::start(Core::HaltedAtLoop, Limits::default());
    let mut c = running_controller(&srv);
    let mut h = TcpStream::connect(&srv.addr).unwrap();
    h.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    h.write_all(b"POST / HTTP/1.1\r\nX: $M20000000,4:efbeadde#89\r\n\r\n")
        .unwrap();
    let mut b = [0u8; 64];
    assert!(
        matches!(h.read(&mut b), Ok(0) | Err(_)),
        "the server kept a non-RSP observer open"
    );
    assert!(!srv.halted());
    interrupt_sees_sigint(&mut c);
    assert_eq!(c.ask("m20000000,4").unwrap(), LOOP_BYTES, "nothing written");
}

/// Two observers loop `qCRC` over the whole window (refused: over the
/// budget) and over budget-sized pieces of it while the controller steps:
/// every step is served within 50 ms of board time and 1 s of wall time.
/// `--nocapture` prints the figures the README quotes.
#[test]
fn valid_controller_steps_promptly_while_two_observers_loop_qcrc_over_the_window() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    const STEPS: usize = 40;
    let srv = InProcess::start(Core::HaltedAtLoop, Limits::default());
    let mut c = srv.client();
    c.start_no_ack_mode().unwrap();
    // Identify the chip once (the first window access), as GDB's first
    // look at the window would.
    assert!(c.ask("qCRC:90000000,4").unwrap().starts_with('C'));
    let stop = Arc::new(AtomicBool::new(false));
    let pieces = Arc::new(AtomicUsize::new(0));
    let max = extflash_gdb::server::OBSERVER_CRC_MAX;
    let observers: Vec<_> = (0..2)
        .map(|n| {
            let mut o = observer(&srv);
            let (stop, pieces) = (stop.clone(), pieces.clone());
            std::thread::spawn(move || {
                let mut at = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let whole = o.ask("qCRC:90000000,800000").unwrap();
                    assert_eq!(whole, "E1b", "observer {n}: the whole window is refused");
                    let piece = o
                        .ask(&format!("qCRC:{:x},{max:x}", 0x9000_0000 + at))
                        .unwrap();
                    match piece.as_str() {
                        p if p.starts_with('C') => {
                            pieces.fetch_add(1, Ordering::SeqCst);
                        }
                        // The stub is not loaded (the controller stepped).
                        "E0e" | "E0b" => {}
                        other => panic!("observer {n}: {other}"),
                    }
                    at = (at + max) % 0x80_0000;
                }
            })
        })
        .collect();
    let (mut worst_wall, mut worst_board) = (Duration::ZERO, 0u64);
    let mut served_during = 0;
    for i in 0..STEPS {
        // The controller's own window access loads the stub (observers
        // never do); their pieces run while it is loaded.
        assert!(c.ask("qCRC:90000000,100").unwrap().starts_with('C'));
        std::thread::sleep(Duration::from_millis(20));
        let before = pieces.load(Ordering::SeqCst);
        let (t, b) = (Instant::now(), srv.sim.lock().now());
        let stop_reply = String::from_utf8_lossy(&c.request(b"vCont;s").unwrap()).into_owned();
        let (wall, board) = (t.elapsed(), srv.sim.lock().now() - b);
        assert!(
            stop_reply.starts_with("T05") || stop_reply.starts_with("S05"),
            "step {i}: {stop_reply}"
        );
        worst_wall = worst_wall.max(wall);
        worst_board = worst_board.max(board);
        // Some steps wait for the observers' pieces in between.
        if pieces.load(Ordering::SeqCst) > before {
            served_during += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for o in observers {
        o.join().unwrap();
    }
    let board_ms = worst_board as f64 / 1e9;
    eprintln!(
        "controller steps beside two observers looping qCRC: worst {worst_wall:?} wall, \
         {board_ms:.2} ms board time; {} window pieces of {max:#x} bytes served, {served_during} \
         of {STEPS} steps overlapped them",
        pieces.load(Ordering::SeqCst)
    );
    assert!(
        pieces.load(Ordering::SeqCst) > 0,
        "the observers never got a window CRC: nothing was measured"
    );
    assert!(board_ms < 50.0, "{board_ms} ms of board time");
}

#[test]
fn valid_observer_takes_control_with_monitor_control_once_the_controller_left() {
    let srv = InProcess::start(Core::HaltedAtLoop, Limits::default());
    let c = running_controller(&srv);
    let mut o = observer(&srv);
    let (console, reply) = o.monitor("control").unwrap();
    assert_eq!(reply, "E0d", "refused while another GDB controls");
    assert!(console.contains("controls the board"), "{console}");
    assert!(!is_controller(&mut o));
    // The controller leaves (the core is halted again, as found).
    drop(c);
    assert!(srv.wait_halted(true));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (console, reply) = o.monitor("control").unwrap();
        if reply == "OK" {
            assert!(console.contains("now controls"), "{console}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was not freed: {console}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still in no-ack mode: the next reply comes without a `+` first.
    o.send_raw(&frame(b"m20000000,4")).unwrap();
    assert_eq!(o.recv_raw_byte().unwrap(), b'$', "no ack in no-ack mode");
    assert_eq!(String::from_utf8_lossy(&o.recv_packet_rest()), LOOP_BYTES);
    assert!(is_controller(&mut o), "the observer now controls");
    o.send_packet(b"vCont;c").unwrap();
    assert!(srv.wait_halted(false), "it runs the core");
    // A new connection observes.
    let mut next = observer(&srv);
    assert_eq!(next.ask("vCont;c").unwrap(), "E0d");
    interrupt_sees_sigint(&mut o);
}

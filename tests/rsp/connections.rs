//! Connections cannot starve each other (issue 18): a role is given at the
//! first valid packet, so connections that never speak (a forgotten `nc`,
//! a port scanner) or never finish a packet (slow loris) hold no slot and
//! are closed; a session that has spoken may idle.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hardening::{Core, InProcess};
use crate::support::rsp::{frame, hex, is_controller, RspClient};
use crate::support::server::SimServer;
use extflash_gdb::server::{Limits, MAX_OBSERVERS};

/// A short first-packet limit so the tests see silent connections closed.
fn limits(first_packet: Duration) -> Limits {
    Limits {
        first_packet,
        ..Limits::default()
    }
}

/// A connection that sends nothing.
fn silent(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Whether the server closes `s` (EOF or reset) within its read timeout.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A slow-loris client: starts a packet and sends one more byte of it
/// every `every` on its own thread until the server closes the
/// connection; `done` tells whether it was closed.
pub(crate) struct SlowLoris {
    closed: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowLoris {
    pub(crate) fn start(addr: &str, every: Duration) -> SlowLoris {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(every)).unwrap();
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        let thread = std::thread::spawn(move || {
            let give_up = Instant::now() + Duration::from_secs(30);
            let mut b = [0u8; 64];
            let mut next = b"+$qSupported:".iter().chain(b"x".iter().cycle());
            while Instant::now() < give_up {
                if s.write_all(&[*next.next().unwrap()]).is_err() {
                    break;
                }
                // Waits `every` (the read timeout) unless the server closes.
                match s.read(&mut b) {
                    Ok(0) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                    _ => {}
                }
            }
            flag.store(Instant::now() < give_up, Ordering::SeqCst);
        });
        SlowLoris {
            closed,
            thread: Some(thread),
        }
    }

    /// Wait for the client thread; whether the server closed it.
    pub(crate) fn closed(mut self) -> bool {
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.closed.load(Ordering::SeqCst)
    }
}

#[test]
fn invalid_silent_and_slow_loris_connections_hold_no_role_and_are_closed() {
    let srv = InProcess::start(Core::RunningLoop, limits(Duration::from_secs(2)));
    // Five that never speak (the controller and four observer slots under
    // roles-at-accept) and one that never finishes its packet.
    let mut quiet: Vec<TcpStream> = (0..5).map(|_| silent(&srv.addr)).collect();
    let loris = SlowLoris::start(&srv.addr, Duration::from_millis(100));
    // A GDB connecting now controls the board, at once.
    let mut gdb = RspClient::connect(&srv.addr).unwrap();
    assert!(gdb
        .ask("qSupported:swbreak+")
        .unwrap()
        .contains("PacketSize"));
    assert!(
        is_controller(&mut gdb),
        "a silent connection holds the role"
    );
    // And every observer slot is free: the cap counts only speakers.
    let mut observers: Vec<RspClient> = (0..MAX_OBSERVERS)
        .map(|_| {
            let mut o = RspClient::connect(&srv.addr).unwrap();
            assert_eq!(o.ask("m20000000,4").unwrap(), "0130fde7");
            assert!(!is_controller(&mut o));
            o
        })
        .collect();
    // The silent ones and the slow loris are closed by the first-packet limit.
    for (i, s) in quiet.iter_mut().enumerate() {
        assert!(closed_by_server(s), "silent connection {i} still open");
    }
    assert!(loris.closed(), "the slow-loris connection is still open");
    // The sessions that spoke are undisturbed.
    assert_eq!(gdb.ask("m20000000,4").unwrap(), "0130fde7");
    for o in &mut observers {
        assert_eq!(o.ask("m20000000,4").unwrap(), "0130fde7");
    }
}

#[test]
fn valid_role_goes_to_the_first_connection_that_speaks_not_the_first_accepted() {
    let srv = InProcess::start(Core::HaltedAtLoop, limits(Duration::from_secs(5)));
    let mut first = RspClient::connect(&srv.addr).unwrap();
    let mut second = RspClient::connect(&srv.addr).unwrap();
    assert!(second.ask("qSupported:swbreak+").is_ok());
    assert!(is_controller(&mut second), "the first to speak controls");
    assert!(first.ask("qSupported:swbreak+").is_ok());
    assert!(!is_controller(&mut first), "the first accepted observes");
}

#[test]
fn valid_session_that_has_spoken_may_idle_past_the_first_packet_limit() {
    let limit = Duration::from_millis(300);
    let srv = InProcess::start(Core::HaltedAtLoop, limits(limit));
    let mut gdb = srv.client();
    // Nothing to wait for but time: GDB sends nothing while its user reads.
    std::thread::sleep(limit * 4);
    assert_eq!(gdb.ask("m20000000,4").unwrap(), "0130fde7");
    assert!(is_controller(&mut gdb));
}

#[test]
fn valid_first_packet_with_a_bad_checksum_is_nakked_and_the_resend_served() {
    let srv = InProcess::start(Core::HaltedAtLoop, Limits::default());
    let mut s = silent(&srv.addr);
    s.write_all(b"+$qSupported:swbreak+#00").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"-", "a bad checksum is NAKed");
    let mut c = RspClient::connect(&srv.addr).unwrap();
    assert!(is_controller(&mut c), "a NAKed packet gave no role");
    drop(c);
    // The retransmission is served (as an observer or, once the other
    // controller is gone, as the controller).
    s.write_all(&crate::support::rsp::frame(b"qSupported:swbreak+"))
        .unwrap();
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"+");
}

/// `serve`'s own log filter (`main.rs`): what a user's log file gets.
const SERVE_LOG: &str = "warn,extflash_gdb=info";

#[test]
fn invalid_100k_refused_observer_packets_grow_the_log_by_less_than_100_kb() {
    const PACKETS: usize = 100_000;
    let dir = std::env::temp_dir().join(format!("extflash-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.log");
    let file = std::fs::File::create(&path).unwrap();
    let srv = SimServer::start_with_log(&[], SERVE_LOG, file.into());
    let mut gdb = srv.client();
    gdb.start_no_ack_mode().unwrap();
    assert!(is_controller(&mut gdb));
    let mut o = srv.client();
    o.start_no_ack_mode().unwrap();
    assert!(!is_controller(&mut o), "an observer");
    let before = std::fs::metadata(&path).unwrap().len();
    // Pipelined, as the flood: a writer thread, replies read here.
    let packet = frame(b"M20000000,4:00000000");
    let mut writer = o.try_clone_stream().unwrap();
    let sender = std::thread::spawn(move || {
        let batch: Vec<u8> = packet.repeat(1000);
        for _ in 0..PACKETS / 1000 {
            writer.write_all(&batch).unwrap();
        }
    });
    for i in 0..PACKETS {
        let reply = o.recv_packet().unwrap_or_else(|e| panic!("reply {i}: {e}"));
        assert_eq!(reply, b"E0d", "reply {i}");
    }
    sender.join().unwrap();
    // The flood is over; the observer's counts are written when it leaves
    // (a file, not a socket: bounded polling).
    drop(o);
    assert_eq!(gdb.ask("m20000000,4").unwrap().len(), 8);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = String::new();
    while Instant::now() < deadline {
        log = std::fs::read_to_string(&path).unwrap();
        if log.contains("observer session ended") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown = std::fs::metadata(&path).unwrap().len() - before;
    eprintln!("log grew by {grown} bytes for {PACKETS} refused packets");
    assert!(grown < 100 * 1024, "log grew by {grown} bytes:\n{log}");
    assert!(
        log.contains("refusing to write memory"),
        "the first refusals are logged:\n{log}"
    );
    assert!(
        log.contains("more refused packets from observer connection"),
        "the rest are counted:\n{log}"
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One connection, no retry (`InProcess::client` retries until it controls).
fn connect_once(addr: &str) -> RspClient {
    let mut c = RspClient::connect(addr).expect("connect");
    c.ask("qSupported:swbreak+;hwbreak+").expect("qSupported");
    c
}

/// GDB `disconnect` then `target extended-remote`, an IDE restart: the
/// next connection speaks the moment the controller's socket closed,
/// usually before the server has read that EOF. It controls every time
/// (it once got `E0d` as an observer about one time in ten).
#[test]
fn valid_reconnect_right_after_the_controller_closed_controls_every_time() {
    let srv = InProcess::start(Core::HaltedAtLoop, limits(Duration::from_secs(5)));
    drop(srv.client());
    for cycle in 0..30 {
        let mut c = connect_once(&srv.addr);
        assert!(
            is_controller(&mut c),
            "cycle {cycle}: the connection made right after the controller closed observes"
        );
        // A write only a controller may do.
        assert_eq!(
            c.ask("M20000100,4:01020304").unwrap(),
            "OK",
            "cycle {cycle}"
        );
        drop(c);
    }
}

/// The controller is still connected: a new connection observes (it does
/// not wait for, or get, the role of a live client).
#[test]
fn valid_live_controller_keeps_control_while_another_connects() {
    let srv = InProcess::start(Core::HaltedAtLoop, limits(Duration::from_secs(5)));
    let mut c = srv.client();
    let mut o = connect_once(&srv.addr);
    assert!(!is_controller(&mut o), "the second connection controls");
    assert!(is_controller(&mut c), "the first connection lost control");
    // The controller leaves; the observer stays one, the next controls.
    drop(c);
    let mut n = connect_once(&srv.addr);
    assert!(is_controller(&mut n), "the next connection observes");
    assert!(!is_controller(&mut o), "the observer took control");
}

/// A GDB killed right after sending a command: the next connection waits
/// for the old session to finish it, then controls and sees its effect.
#[test]
fn valid_reconnect_after_a_client_closed_mid_command_controls_and_sees_it_done() {
    let srv = InProcess::start(Core::HaltedAtLoop, limits(Duration::from_secs(5)));
    drop(srv.client());
    for cycle in 0..20u32 {
        let mut old = connect_once(&srv.addr);
        assert!(is_controller(&mut old), "cycle {cycle}");
        let value = 0xc0de_0000u32 + cycle;
        let write = format!("M20010000,4:{}", hex(&value.to_le_bytes()));
        // Sent, never waited for: the socket closes behind it.
        old.send_raw(&frame(write.as_bytes())).unwrap();
        drop(old);
        let mut new = connect_once(&srv.addr);
        assert!(
            is_controller(&mut new),
            "cycle {cycle}: the next connection observes"
        );
        assert_eq!(
            new.ask("m20010000,4").unwrap(),
            hex(&value.to_le_bytes()),
            "cycle {cycle}: the old session's last write"
        );
    }
}

//! Checks the raw RSP test client against a scripted fake server, so the
//! end-to-end tests can trust it.

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::support::rsp::{decode_rle, frame, RspClient};

fn read_frame(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    let mut hashes = None;
    loop {
        s.read_exact(&mut b).unwrap();
        if out.is_empty() && b[0] != b'$' {
            continue;
        }
        out.push(b[0]);
        match hashes {
            Some(2) => {}
            Some(n) => {
                hashes = Some(n + 1);
                if n + 1 == 2 {
                    return out;
                }
            }
            None if b[0] == b'#' => hashes = Some(0),
            None => {}
        }
    }
}

#[test]
fn client_resends_on_nak_acks_until_no_ack_mode_and_decodes_rle_and_console_output() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // 1: ack mode, first attempt rejected with '-'.
        assert_eq!(read_frame(&mut s), frame(b"qSupported"));
        s.write_all(b"-").unwrap();
        assert_eq!(read_frame(&mut s), frame(b"qSupported"));
        s.write_all(b"+").unwrap();
        s.write_all(&frame(b"PacketSize=4000")).unwrap();
        let mut ack = [0u8; 1];
        s.read_exact(&mut ack).unwrap();
        assert_eq!(&ack, b"+");
        // 2: no-ack mode.
        assert_eq!(read_frame(&mut s), frame(b"QStartNoAckMode"));
        s.write_all(b"+").unwrap();
        s.write_all(&frame(b"OK")).unwrap();
        s.read_exact(&mut ack).unwrap();
        assert_eq!(&ack, b"+", "the OK to QStartNoAckMode is still acked");
        assert_eq!(read_frame(&mut s), frame(b"g"));
        // RLE: "0" followed by '*' and ' ' (32-29 = 3 more zeros).
        s.write_all(&frame(b"0* 1")).unwrap();
        // 3: a console packet then OK for qRcmd.
        let f = read_frame(&mut s);
        assert!(
            f.starts_with(b"$qRcmd,68656c70#"),
            "{}",
            String::from_utf8_lossy(&f)
        );
        s.write_all(&frame(b"O68690a")).unwrap();
        s.write_all(&frame(b"OK")).unwrap();
        // No acks may have been sent in no-ack mode.
        s.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let mut rest = [0u8; 8];
        assert!(s.read(&mut rest).map(|n| n == 0).unwrap_or(true));
    });

    let mut c = RspClient::connect(addr).unwrap();
    assert_eq!(c.ask("qSupported").unwrap(), "PacketSize=4000");
    c.start_no_ack_mode().unwrap();
    assert!(!c.ack_mode());
    assert_eq!(c.ask("g").unwrap(), "00001");
    let (console, reply) = c.monitor("help").unwrap();
    assert_eq!(console, "hi\n");
    assert_eq!(reply, "OK");
    drop(c);
    server.join().unwrap();
}

#[test]
fn rle_decoding_repeats_previous_byte() {
    assert_eq!(decode_rle(b"a*\""), b"aaaaaa"); // '"' = 34 -> 5 more
    assert_eq!(decode_rle(b"ab"), b"ab");
}

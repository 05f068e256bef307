//! The server answers malformed or hostile RSP input correctly, or closes
//! that one connection and keeps serving the next: bad checksums, lengths
//! beyond the packet size, and addresses at the top of the address space.

use crate::support::rsp::{frame, unhex, RspClient};
use crate::support::server::SimServer;

/// The PacketSize the server advertises in qSupported.
fn packet_size(c: &mut RspClient) -> usize {
    let sup = c.ask("qSupported:swbreak+;hwbreak+").unwrap();
    let field = sup
        .split(';')
        .find_map(|f| f.strip_prefix("PacketSize="))
        .unwrap_or_else(|| panic!("qSupported without PacketSize: {sup}"));
    usize::from_str_radix(field, 16).unwrap()
}

#[test]
fn invalid_checksum_is_nakked_and_the_retransmission_served() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    let good = frame(b"m20000000,4");
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] = if bad[n - 1] == b'0' { b'1' } else { b'0' };
    c.send_raw(&bad).unwrap();
    // Ack mode: the first byte back is the NAK, not an ack or a reply.
    let answer = c.recv_raw_byte().unwrap();
    assert_eq!(
        answer as char, '-',
        "a packet with a bad checksum must be NAKed"
    );
    // GDB retransmits the same packet: it is acked and served.
    c.send_raw(&good).unwrap();
    let ack = c.recv_raw_byte().unwrap();
    assert_eq!(ack as char, '+', "the retransmission is acked");
    let reply = c.recv_packet().unwrap();
    assert_eq!(reply.len(), 8, "{:?}", String::from_utf8_lossy(&reply));
}

#[test]
fn invalid_m_length_beyond_packet_size_is_bounded_or_refused() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    let size = packet_size(&mut c);
    let reply = c.ask("m20000000,100000").unwrap();
    assert!(
        reply.starts_with('E') || reply.len() <= size,
        "reply of {} bytes for a 1 MiB read exceeds PacketSize {size}",
        reply.len()
    );
    assert_eq!(
        c.ask("m20000000,4").unwrap().len(),
        8,
        "session still usable"
    );
}

#[test]
fn invalid_m_write_with_short_data_changes_nothing() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    assert_eq!(c.ask("M20000100,4:11223344").unwrap(), "OK");
    // Says 16 bytes, carries 1.
    match c.ask("M20000100,10:aa") {
        Ok(reply) => assert!(reply.starts_with('E'), "{reply}"),
        Err(_) => c = s.client_after_close(),
    }
    let mem = c.ask("m20000100,4").unwrap();
    assert_eq!(mem, "11223344", "a malformed write must not touch memory");
}

#[test]
fn invalid_x_length_mismatch_changes_nothing() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    assert_eq!(c.ask("M20000200,2:5566").unwrap(), "OK");
    let mut pkt = b"X20000200,8:".to_vec();
    pkt.extend_from_slice(&[0xAA, 0xBB]);
    c.send_packet(&pkt).unwrap();
    match c.recv_packet() {
        Ok(reply) => assert!(
            reply.starts_with(b"E"),
            "{:?}",
            String::from_utf8_lossy(&reply)
        ),
        Err(_) => c = s.client_after_close(),
    }
    assert_eq!(c.ask("m20000200,2").unwrap(), "5566");
}

#[test]
fn invalid_addresses_at_top_of_address_space_are_e_replies() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    // Wraps past 0xFFFFFFFF.
    let r = c.ask("mffffffff,4").unwrap();
    assert!(r.starts_with('E'), "{r}");
    let r = c.ask("Mfffffffe,4:00000000").unwrap();
    assert!(r.starts_with('E'), "{r}");
    // Vendor PPB space that faults on silicon.
    let r = c.ask("mfffffff0,4").unwrap();
    assert!(r.starts_with('E'), "{r}");
    // Core debug registers at the top of the PPB stay readable.
    assert_eq!(c.ask("me000edf0,4").unwrap().len(), 8);
}

#[test]
fn valid_connection_after_oversized_packet_is_served() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    let size = packet_size(&mut c);
    let mut huge = b"$X20000000,10000:".to_vec();
    huge.extend(std::iter::repeat_n(b'A', size * 4));
    huge.extend_from_slice(b"#00");
    let _ = c.send_raw(&huge);
    let mut c = s.client_after_close();
    assert_eq!(c.ask("m20000000,4").unwrap().len(), 8);
}

#[test]
fn valid_nak_of_a_reply_gets_it_resent() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    // Ask, read the reply, then NAK it as if it arrived garbled.
    c.send_packet(b"m20000000,4").unwrap();
    let first = c.recv_packet().unwrap();
    c.send_raw(b"-").unwrap();
    let again = c.recv_packet().unwrap();
    assert_eq!(again, first, "the same reply is sent again");
    assert_eq!(
        c.ask("m20000000,4").unwrap().len(),
        8,
        "session still usable"
    );
}

/// An access past the end of the chip (an ELF section or `x` beyond 8 MiB)
/// is refused by name, whether it starts in the window or after it; an
/// empty `X` (GDB's probe for binary writes) is still answered `OK`.
#[test]
fn invalid_access_past_the_window_end_names_the_window_and_chip_size() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    assert_eq!(c.ask("QEnableErrorStrings").unwrap(), "OK");
    let text = |reply: &str| {
        let (code, hex) = reply
            .split_once(';')
            .unwrap_or_else(|| panic!("no error text in {reply:?}"));
        assert_eq!(code, "E0e", "{reply}");
        String::from_utf8(unhex(hex.as_bytes())).unwrap()
    };
    let want = "0x90800000 is past the end of the external-flash window \
                0x90000000..0x90800000 (8192 KiB chip)";
    for packet in [
        "m907ffff0,20",
        "m90800000,4",
        "M90800000,4:01020304",
        "qCRC:907ff000,2000",
    ] {
        let reply = c.ask(packet).unwrap();
        if packet.starts_with("qCRC") {
            assert!(reply.starts_with('E'), "{packet}: {reply}");
            continue;
        }
        let t = text(&reply);
        assert!(t.contains(want), "{packet}: {t}");
    }
    let mut x = b"X90800000,0:".to_vec();
    assert_eq!(c.request(&x).unwrap(), b"OK", "empty X probe");
    x = b"X90800000,2:ab".to_vec();
    assert!(text(&String::from_utf8_lossy(&c.request(&x).unwrap())).contains(want));
    // The last bytes of the chip still read.
    assert_eq!(c.ask("m907ffffc,4").unwrap().len(), 8);
}

/// A write where no region, window or device range of the board is gets
/// `E0e` naming the nearest region; peripheral, PPB and RAM writes still
/// succeed, and so does GDB's empty `X` probe.
#[test]
fn invalid_write_past_internal_flash_names_the_region() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    assert_eq!(c.ask("QEnableErrorStrings").unwrap(), "OK");
    let text = |reply: &[u8]| {
        let reply = String::from_utf8_lossy(reply).into_owned();
        let (code, hex) = reply
            .split_once(';')
            .unwrap_or_else(|| panic!("no error text in {reply:?}"));
        assert_eq!(code, "E0e", "{reply}");
        String::from_utf8(unhex(hex.as_bytes())).unwrap()
    };
    let want = "past the end of internal flash 0x08000000..0x08080000 (512 KiB)";
    let t = text(c.ask("M8080000,4:01020304").unwrap().as_bytes());
    assert!(t.contains("write of 4 bytes at 0x08080000"), "{t}");
    assert!(t.contains(want), "{t}");
    let t = text(&c.request(b"X8080100,2:ab").unwrap());
    assert!(t.contains("write of 2 bytes at 0x08080100"), "{t}");
    assert!(t.contains(want), "{t}");
    assert_eq!(c.request(b"X8080000,0:").unwrap(), b"OK", "empty X probe");
    let t = text(c.ask("M3000000,4:01020304").unwrap().as_bytes());
    assert!(t.contains("0x03000000"), "{t}");
    // RAM, a peripheral (RCC's backup-domain register) and the PPB (DCRDR)
    // keep working.
    for packet in [
        "M20000000,4:11223344",
        "M40023870,4:00000000",
        "Me000edf8,4:55aa55aa",
    ] {
        assert_eq!(c.ask(packet).unwrap(), "OK", "{packet}");
    }
    assert_eq!(c.ask("m20000000,4").unwrap(), "11223344");
    // GDB sends no flash request there (the map says `ram`), but a client
    // that does is refused the same way.
    let t = text(c.ask("vFlashErase:08080000,00004000").unwrap().as_bytes());
    assert!(t.contains("write of 16384 bytes at 0x08080000"), "{t}");
    assert!(t.contains(want), "{t}");
}

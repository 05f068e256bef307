//! `vFlashDone` answers OK only when everything accepted since the last
//! one was programmed and verified (issue 17): a refused request drops
//! its load, and the `vFlashDone` that follows says so.

use crate::support::rsp::{hex, RspClient};
use crate::support::server::SimServer;

fn ask(c: &mut RspClient, packet: &[u8]) -> String {
    String::from_utf8_lossy(&c.request(packet).unwrap()).into_owned()
}

fn write(addr: u32, data: &[u8]) -> Vec<u8> {
    let mut p = format!("vFlashWrite:{addr:x}:").into_bytes();
    p.extend_from_slice(data);
    p
}

#[test]
fn vflash_done_after_a_refused_write_is_an_error_and_nothing_is_claimed_programmed() {
    let s = SimServer::start(&[]);
    let mut c = s.client();
    c.start_no_ack_mode().unwrap();
    let data = [0x5a_u8; 16];
    // The window: a write outside any erase is refused, the load dropped.
    assert_eq!(ask(&mut c, b"vFlashErase:90010000,1000"), "OK");
    assert_eq!(ask(&mut c, &write(0x9001_0000, &data)), "OK");
    assert!(ask(&mut c, &write(0x9002_0000, &[1, 2, 3, 4])).starts_with('E'));
    let done = ask(&mut c, b"vFlashDone");
    assert!(
        done.starts_with('E'),
        "vFlashDone after a refused write: {done}"
    );
    assert_eq!(
        c.ask("m90010000,10").unwrap(),
        "ff".repeat(16),
        "the dropped write is not on the chip (still erased)"
    );
    // The next load is whole again: its vFlashDone is OK and true.
    assert_eq!(ask(&mut c, b"vFlashErase:90010000,1000"), "OK");
    assert_eq!(ask(&mut c, &write(0x9001_0000, &data)), "OK");
    assert_eq!(ask(&mut c, b"vFlashDone"), "OK");
    assert_eq!(c.ask("m90010000,10").unwrap(), hex(&data));

    // Internal flash: the same.
    assert_eq!(ask(&mut c, b"vFlashErase:08000000,4000"), "OK");
    assert_eq!(ask(&mut c, &write(0x0800_0000, &data)), "OK");
    assert!(ask(&mut c, &write(0x0800_4000, &[7; 4])).starts_with('E'));
    assert!(ask(&mut c, b"vFlashDone").starts_with('E'));
    assert_ne!(c.ask("m08000000,10").unwrap(), hex(&data));
    // A vFlashDone with nothing pending and nothing dropped is OK.
    assert_eq!(ask(&mut c, b"vFlashDone"), "OK");
}

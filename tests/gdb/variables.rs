//! GDB prints and changes program variables (globals and locals) on the
//! virtual board after `load`.

use crate::support::elf::FIRMWARE;
use crate::support::server::SimServer;

#[test]
fn gdb_prints_globals_and_locals_and_sets_a_variable() {
    let s = SimServer::start(&[]);
    let out = s.gdb(
        FIRMWARE,
        &[
            "monitor reset halt",
            "load",
            "monitor reset halt",
            "break firmware::compute",
            "continue",
            "print/x firmware::DATA_WORD",
            "print/x firmware::BOOT_MARKER",
            "print x",
            "set var firmware::DATA_WORD = 0x0badf00d",
            "print/x firmware::DATA_WORD",
            "x/1xw 0x20000000",
        ],
    );
    assert!(
        out.contains("$1 = 0x12345678"),
        ".data copied from flash:\n{out}"
    );
    assert!(out.contains("$2 = 0xb007c0de"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("$3 = ") && l[5..].trim().parse::<u32>().is_ok()),
        "the argument of compute prints as a number:\n{out}"
    );
    assert!(out.contains("$4 = 0xbadf00d"), "{out}");
    assert!(out.contains("0x20000000 <DATA_WORD>:\t0x0badf00d"), "{out}");
}

//! probe-rs 0.32's ST-Link `read_16`/`write_16` step their address wrongly
//! on silicon, so the product must never make a 16-bit memory access. The
//! virtual board counts AP data transfers made with CSW.Size = halfword
//! (`Counters::halfword_transfers`, also in the summary line); a GDB
//! session over every path the product has (window load and reads, RAM,
//! registers, internal flash) must leave it at 0.

use std::sync::Arc;
use std::time::Duration;

use crate::support::server::{gdb_batch, in_process, GdbLimits};
use crate::support::sim::{attach, board};
use extflash_gdb::board::Board;
use extflash_gdb::flash::FlashEvent;
use extflash_gdb::sim::SimConfig;
use probe_rs::MemoryInterface;

#[test]
fn deliberate_16_bit_accesses_are_counted_one_per_transfer() {
    let sim = board(SimConfig::default());
    let mut session = attach(&sim);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_secs(1)).unwrap();
    let before = sim.lock().counters().halfword_transfers;
    core.write_word_32(0x2000_0100, 0).unwrap();
    core.read_word_8(0x2000_0101).unwrap();
    assert_eq!(
        sim.lock().counters().halfword_transfers,
        before,
        "8- and 32-bit accesses are not counted"
    );
    core.write_16(0x2000_0102, &[0xBEEF]).unwrap();
    assert_eq!(sim.lock().counters().halfword_transfers, before + 1);
    let mut h = [0u16; 2];
    core.read_16(0x2000_0100, &mut h).unwrap();
    assert_eq!(h, [0, 0xBEEF]);
    assert_eq!(sim.lock().counters().halfword_transfers, before + 3);
    let s = sim.log_summary("after 16-bit accesses");
    assert!(s.to_string().contains("3 16-bit AP transfers"), "{s}");
}

#[test]
fn a_gdb_session_over_window_ram_registers_and_internal_flash_makes_no_16_bit_access() {
    let sim = board(SimConfig::default());
    let addr = in_process(sim.clone(), Board::builtin(), Arc::new(|_: &FlashEvent| {}));
    let elf = crate::support::elf::FIRMWARE_ASSETS;
    let out = gdb_batch(
        &addr,
        elf,
        &[
            "monitor reset halt",
            "load",
            "compare-sections",
            "x/8xw 0x90000000",
            "x/3xb 0x90000001",
            "x/2xh 0x90000002",
            "x/4xh 0x08000002",
            "x/3xh 0x20000002",
            "set var *(unsigned short *)0x20000012 = 0x1234",
            "x/xh 0x20000012",
            "info registers",
            "p/x $sp",
            "set var $r3 = 0x55aa",
            "p/x $r3",
        ],
        GdbLimits::STUB_RUNS,
    );
    assert!(!out.contains("MIS-MATCHED"), "{out}");
    assert!(
        out.contains("0x1234"),
        "the RAM halfword write reached the board: {out}"
    );
    assert!(out.contains("0x55aa"), "{out}");
    let c = sim.lock().counters();
    assert!(c.ap_bytes > 64 * 1024, "the session moved data: {c:?}");
    assert_eq!(c.halfword_transfers, 0, "16-bit AP transfers: {c:?}");
}

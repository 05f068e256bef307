//! DWT data comparators match data accesses only: FUNCTION 5/6/7 are data
//! read/write watchpoints, and instruction fetches never match them.

use std::time::Duration;

use crate::support::sim::*;
use extflash_gdb::sim::SimConfig;
use probe_rs::{CoreStatus, HaltReason, MemoryInterface, RegisterId};

const DEMCR: u64 = 0xE000_EDFC;
const DWT: u64 = 0xE000_1000;
const CODE: u32 = 0x2000_0200;

/// `movs r0,#0; loop: adds r0,#1; ldr r1,[r2]; b loop` with r2 = `data`.
fn load_loop(core: &mut probe_rs::Core<'_>, data: u32) {
    for (i, hw) in [0x2000u16, 0x3001, 0x6811, 0xE7FC].iter().enumerate() {
        core.write_word_16(CODE as u64 + 2 * i as u64, *hw).unwrap();
    }
    core.write_core_reg(core.program_counter().id(), CODE)
        .unwrap();
    core.write_core_reg(RegisterId(2), data).unwrap();
    core.write_core_reg(core.registers().psr().unwrap().id(), 0x0100_0000u32)
        .unwrap();
}

fn watch_reads(core: &mut probe_rs::Core<'_>, addr: u32) {
    let demcr = core.read_word_32(DEMCR).unwrap();
    core.write_word_32(DEMCR, demcr | 1 << 24).unwrap();
    core.write_word_32(DWT + 0x20, addr).unwrap();
    core.write_word_32(DWT + 0x24, 0).unwrap();
    core.write_word_32(DWT + 0x28, 5).unwrap(); // data read
}

#[test]
fn read_watchpoint_on_code_is_not_hit_by_instruction_fetch() {
    let board = board(SimConfig::default());
    let mut session = attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_millis(100)).unwrap();
    load_loop(&mut core, 0x2000_0400);
    watch_reads(&mut core, CODE + 2); // the `adds` the loop fetches
    core.run().unwrap();
    for _ in 0..50 {
        let _ = core.read_word_32(0x2000_0400).unwrap();
    }
    assert_eq!(
        core.status().unwrap(),
        CoreStatus::Running,
        "fetches do not match"
    );
    core.halt(Duration::from_millis(100)).unwrap();
    let r0: u32 = core.read_core_reg(RegisterId(0)).unwrap();
    assert!(r0 > 100, "the loop ran (r0 = {r0})");
}

#[test]
fn read_watchpoint_on_data_halts_after_the_load() {
    let board = board(SimConfig::default());
    let mut session = attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_millis(100)).unwrap();
    load_loop(&mut core, 0x2000_0400);
    watch_reads(&mut core, 0x2000_0400);
    core.run().unwrap();
    let reason = wait_halted(&mut core);
    assert!(matches!(reason, HaltReason::Watchpoint), "{reason:?}");
    let pc: u32 = core.read_core_reg(core.program_counter().id()).unwrap();
    assert_eq!(pc, CODE + 6, "after the ldr");
}

//! Exceptions on the virtual board as a debugger sees them: a SysTick
//! handler runs while the core runs, a BKPT in it halts in Handler
//! mode with EXC_RETURN in LR, and stepping out of it returns to the
//! interrupted loop in Thread mode.

use std::time::Duration;

use crate::support::sim::*;
use extflash_gdb::sim::SimConfig;
use probe_rs::{HaltReason, MemoryInterface, RegisterId};

const VECTORS: u32 = 0x2000_0000;
const MAIN: u32 = 0x2000_0200;
const HANDLER: u32 = 0x2000_0300;
const VTOR: u64 = 0xE000_ED08;

#[test]
fn systick_handler_runs_halts_in_handler_mode_and_steps_back_to_thread_mode() {
    let board = board(SimConfig::default());
    let mut session = attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_millis(100)).unwrap();
    // SysTick (exception 15) -> HANDLER: `adds r5, #1; bx lr`.
    core.write_word_32((VECTORS + 15 * 4) as u64, HANDLER | 1)
        .unwrap();
    core.write_word_32(VTOR, VECTORS).unwrap();
    for (i, hw) in [0x3501u16, 0x4770].iter().enumerate() {
        core.write_word_16(HANDLER as u64 + 2 * i as u64, *hw)
            .unwrap();
    }
    // RVR = r3, CVR, CSR = r4 (ENABLE, TICKINT, CLKSOURCE), then `b .`.
    for (i, hw) in [0x6053u16, 0x6093, 0x6014, 0xE7FE].iter().enumerate() {
        core.write_word_16(MAIN as u64 + 2 * i as u64, *hw).unwrap();
    }
    for (r, v) in [(2, 0xE000_E010u32), (3, 999), (4, 7), (5, 0)] {
        core.write_core_reg(RegisterId(r), v).unwrap();
    }
    core.write_core_reg(core.stack_pointer().id(), 0x2000_1000u32)
        .unwrap();
    core.write_core_reg(core.program_counter().id(), MAIN)
        .unwrap();
    core.write_core_reg(core.registers().psr().unwrap().id(), 1u32 << 24)
        .unwrap();
    core.run().unwrap();
    for _ in 0..200 {
        let _ = core.read_word_32(VECTORS as u64).unwrap(); // time passes
    }
    core.halt(Duration::from_millis(100)).unwrap();
    let ticks: u32 = core.read_core_reg(RegisterId(5)).unwrap();
    assert!(ticks > 0, "the SysTick handler ran ({ticks} times)");

    // FPBv1 breaks only below 0x20000000: a BKPT on the handler's first
    // instruction instead.
    core.write_word_16(HANDLER as u64, 0xBE00).unwrap();
    core.run().unwrap();
    let reason = wait_halted(&mut core);
    assert!(matches!(reason, HaltReason::Breakpoint(_)), "{reason:?}");
    let xpsr: u32 = core
        .read_core_reg(core.registers().psr().unwrap().id())
        .unwrap();
    assert_eq!(xpsr & 0x1FF, 15, "IPSR: SysTick");
    let lr: u32 = core.read_core_reg(RegisterId(14)).unwrap();
    assert_eq!(lr, 0xFFFF_FFF9, "EXC_RETURN: Thread mode, main stack");
    core.write_word_16(HANDLER as u64, 0x3501).unwrap();
    // Mask it so the steps below stay in this handler instance.
    core.write_word_32(0xE000_E010, 5).unwrap(); // TICKINT off
    core.step().unwrap(); // adds
    let info = core.step().unwrap(); // bx lr: unstacks
    assert_eq!(info.pc, MAIN as u64 + 6, "back on the interrupted `b .`");
    let xpsr: u32 = core
        .read_core_reg(core.registers().psr().unwrap().id())
        .unwrap();
    assert_eq!(xpsr & 0x1FF, 0, "Thread mode");
    let sp: u32 = core.read_core_reg(core.stack_pointer().id()).unwrap();
    assert_eq!(sp, 0x2000_1000, "frame unstacked");
}

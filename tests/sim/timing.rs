//! Instruction timing as software sees it through DWT CYCCNT (Cortex-M4
//! TRM r0p1, 3.3.1): what a loop body costs per iteration.

use std::time::Duration;

use crate::support::sim::*;
use extflash_gdb::sim::SimConfig;
use probe_rs::{MemoryInterface, RegisterId};

const DEMCR: u64 = 0xE000_EDFC;
const DWT_CTRL: u64 = 0xE000_1000;
const CYCCNT: u32 = 0xE000_1004;
const CODE: u64 = 0x2000_0200;
const DATA: u32 = 0x2000_0400;

/// CYCCNT cycles from the first `ldr r4, [r5]` to the second around
/// `iterations` runs of `body` (r0 = r0 so Z = 1 in the body, r2 -> RAM):
///
/// ```text
///     nop                  @ probe-rs's run() steps one instruction first
///     ldr  r4, [r5]        @ CYCCNT
///     movs r1, #iterations
/// 1:  cmp  r0, r0
///     <body>
///     subs r1, #1
///     bne  1b
///     ldr  r6, [r5]        @ CYCCNT
///     bkpt
/// ```
fn cycles_of(core: &mut probe_rs::Core<'_>, body: &[u16], iterations: u8) -> u32 {
    let mut code = vec![0xBF00, 0x682C, 0x2100 | iterations as u16, 0x4280];
    code.extend_from_slice(body);
    code.push(0x3901);
    // bne back to the cmp: offset from this instruction's PC + 4.
    let back = 2 * 3 - (2 * code.len() as i32 + 4);
    code.push(0xD100 | ((back / 2) as u8) as u16);
    code.extend_from_slice(&[0x682E, 0xBE00]);
    let bytes: Vec<u8> = code.iter().flat_map(|h| h.to_le_bytes()).collect();
    core.write_8(CODE, &bytes).unwrap();
    core.write_core_reg(RegisterId(2), DATA).unwrap();
    core.write_core_reg(RegisterId(5), CYCCNT).unwrap();
    core.write_core_reg(core.program_counter().id(), CODE as u32)
        .unwrap();
    core.write_core_reg(core.registers().psr().unwrap().id(), 0x0100_0000u32)
        .unwrap();
    core.run().unwrap();
    wait_halted(core);
    let start: u32 = core.read_core_reg(RegisterId(4)).unwrap();
    let end: u32 = core.read_core_reg(RegisterId(6)).unwrap();
    end.wrapping_sub(start)
}

/// Cycles one more iteration of `body`'s loop costs (the loop's set-up and
/// exit cancel out).
fn per_iteration(core: &mut probe_rs::Core<'_>, body: &[u16]) -> u32 {
    let c100 = cycles_of(core, body, 100);
    let c200 = cycles_of(core, body, 200);
    assert_eq!((c200 - c100) % 100, 0, "{c100} / {c200} cycles");
    (c200 - c100) / 100
}

#[test]
fn it_block_instruction_whose_condition_fails_costs_one_cycle() {
    let board = board(SimConfig::default());
    let mut session = attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_millis(100)).unwrap();
    core.write_word_32(DEMCR, 1 << 24).unwrap(); // TRCENA
    core.write_word_32(DWT_CTRL, 1).unwrap(); // CYCCNTENA
    core.write_word_32(DATA as u64, 0x1234_5678).unwrap();
    core.write_core_reg(RegisterId(3), 0u32).unwrap();

    // cmp 1 + it 1 + ldr 2 + subs 1 + bne taken 1 + P (2) = 8.
    let passes = per_iteration(&mut core, &[0xBF08, 0x6813]); // it eq; ldreq r3, [r2]
    assert_eq!(passes, 8, "a load whose condition passes costs 2");
    let r3: u32 = core.read_core_reg(RegisterId(3)).unwrap();
    assert_eq!(r3, 0x1234_5678, "the passing load ran");

    core.write_core_reg(RegisterId(3), 0u32).unwrap();
    // The same load under NE with Z = 1 is not executed: 1 cycle.
    let fails = per_iteration(&mut core, &[0xBF18, 0x6813]); // it ne; ldrne r3, [r2]
    assert_eq!(fails, 7, "a load whose condition fails costs 1 (TRM 3.3.1)");
    let r3: u32 = core.read_core_reg(RegisterId(3)).unwrap();
    assert_eq!(r3, 0, "the failing load did not run");

    // A push/pop pair of four registers (5 cycles each when executed)
    // fails as cheaply: 1 each.
    let fails_multiple = per_iteration(&mut core, &[0xBF1C, 0xB40F, 0xBC0F]); // itt ne; push; pop
    assert_eq!(fails_multiple, 8, "failed PUSH and POP cost 1 each");
}

#[test]
fn conditional_branch_not_taken_costs_one_cycle() {
    let board = board(SimConfig::default());
    let mut session = attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_millis(100)).unwrap();
    core.write_word_32(DEMCR, 1 << 24).unwrap();
    core.write_word_32(DWT_CTRL, 1).unwrap();
    // bne over a nop (Z = 1: not taken), then the nop: 1 + 1, plus the
    // loop's cmp 1, subs 1, bne taken 3.
    let not_taken = per_iteration(&mut core, &[0xD100, 0xBF00]);
    assert_eq!(not_taken, 7);
    // beq over the nop (taken): 1 + P, the nop skipped.
    let taken = per_iteration(&mut core, &[0xD000, 0xBF00]);
    assert_eq!(taken, 8);
}

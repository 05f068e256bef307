//! Instructions armagnac 0.3 panics on or would send down its own
//! (incomplete) exception path, done by our CPU wrapper instead: SEV, UDIV
//! and SDIV (division by zero), loads to the PC (`ldr pc, [..]` panics when
//! the address is aligned), and the coprocessor/FP space (armagnac queues a
//! UsageFault of its own; this emulator executes no FP instructions).
//!
//! This module owns these instructions' semantics (ARMv7-M ARM A7.7) and
//! the operand-dependent cycle count of the divides.

use std::cell::Cell;
use std::rc::Rc;

use armagnac::core::{Effect, ItState, Processor, RunError};
use armagnac::decoder::DecodeError;
use armagnac::instructions::{Encoding, Instruction, Pattern};

use super::cpu::{reg, set_reg};

/// Cycles the last divide took (Cortex-M4 TRM 3.3.1: 2-12, early
/// termination), set by [`Div`] for the timing model.
pub type DivCycles = Rc<Cell<u8>>;

/// Decode the instructions this module does; `None` for everything else.
pub fn decode(ins: u32, wide: bool, div: &DivCycles) -> Option<Rc<dyn Instruction>> {
    if !wide {
        // SEV: no other core or event to signal; the event register is
        // not modelled (WFE sleeps until an exception or the debugger).
        return (ins == 0xBF40).then(|| Rc::new(Nop("sev")) as Rc<dyn Instruction>);
    }
    let hw1 = ins >> 16;
    if ins == 0xF3AF_8004 {
        return Some(Rc::new(Nop("sev.w")));
    }
    // UDIV / SDIV: 1111 1011 1011/1001 Rn | 1111 Rd 1111 Rm
    if ins & 0xFFD0_F0F0 == 0xFB90_F0F0 {
        return Some(Rc::new(Div {
            signed: hw1 & 0x20 == 0,
            rn: (hw1 & 0xF) as u8,
            rd: ((ins >> 8) & 0xF) as u8,
            rm: (ins & 0xF) as u8,
            cycles: div.clone(),
        }));
    }
    // Coprocessor and FP space: 111x 11xx xxxx xxxx.
    if hw1 & 0xEC00 == 0xEC00 {
        return Some(Rc::new(NoFpu(ins)));
    }
    None
}

struct Nop(&'static str);

impl Instruction for Nop {
    fn patterns() -> &'static [Pattern] {
        &[]
    }
    fn try_decode(_: Encoding, _: u32, _: ItState) -> Result<Self, DecodeError> {
        Err(DecodeError::Other)
    }
    fn execute(&self, _proc: &mut Processor) -> Result<Effect, RunError> {
        Ok(Effect::None)
    }
    fn name(&self) -> String {
        self.0.into()
    }
    fn args(&self, _pc: u32) -> String {
        String::new()
    }
}

struct Div {
    signed: bool,
    rn: u8,
    rd: u8,
    rm: u8,
    cycles: DivCycles,
}

/// Divide cycles: 2, plus one per 3 bits of quotient the divider has to
/// produce (an approximation of the TRM's early termination; 2 to 12).
pub fn div_cycles(n: u32, m: u32) -> u8 {
    let bits = |v: u32| 32 - v.leading_zeros();
    let q = bits(n).saturating_sub(bits(m)) + 1;
    2 + (q.min(30) / 3) as u8
}

impl Instruction for Div {
    fn patterns() -> &'static [Pattern] {
        &[]
    }
    fn try_decode(_: Encoding, _: u32, _: ItState) -> Result<Self, DecodeError> {
        Err(DecodeError::Other)
    }
    fn execute(&self, proc: &mut Processor) -> Result<Effect, RunError> {
        if [self.rd, self.rn, self.rm].iter().any(|&r| r >= 13) {
            return Err(RunError::InstructionUnpredictable);
        }
        let n = reg(proc, self.rn);
        let m = reg(proc, self.rm);
        // Division by zero gives 0 (CCR.DIV_0_TRP clear, its reset value;
        // the trap is not modelled).
        let q = match (m, self.signed) {
            (0, _) => 0,
            (_, false) => n / m,
            (_, true) => (n as i32).wrapping_div(m as i32) as u32,
        };
        let (an, am) = if self.signed {
            ((n as i32).unsigned_abs(), (m as i32).unsigned_abs())
        } else {
            (n, m)
        };
        self.cycles.set(if m == 0 { 2 } else { div_cycles(an, am) });
        set_reg(proc, self.rd, q);
        Ok(Effect::None)
    }
    fn name(&self) -> String {
        if self.signed { "sdiv" } else { "udiv" }.into()
    }
    fn args(&self, _pc: u32) -> String {
        format!("r{}, r{}, r{}", self.rd, self.rn, self.rm)
    }
}

/// An FP or coprocessor instruction: the core locks up with a message
/// that says so (on silicon it executes, or faults with NOCP).
struct NoFpu(u32);

impl Instruction for NoFpu {
    fn patterns() -> &'static [Pattern] {
        &[]
    }
    fn try_decode(_: Encoding, _: u32, _: ItState) -> Result<Self, DecodeError> {
        Err(DecodeError::Other)
    }
    fn execute(&self, _proc: &mut Processor) -> Result<Effect, RunError> {
        Err(RunError::InstructionUnknown)
    }
    fn name(&self) -> String {
        format!("fp/coprocessor instruction {:#010x} (not executed by the virtual CPU: build for thumbv7em-none-eabi)", self.0)
    }
    fn args(&self, _pc: u32) -> String {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divide_cycles_stay_within_the_trms_2_to_12() {
        assert_eq!(div_cycles(5, 7), 2, "quotient 0: early out");
        assert_eq!(div_cycles(u32::MAX, 1), 12);
        assert!((3..=6).contains(&div_cycles(1_000_000, 1_000)));
    }
}

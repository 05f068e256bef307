//! Alignment rules of the ARMv7-M ARM (A3.2.1) that armagnac does not keep
//! as silicon does: only LDR, STR, LDRH, STRH (and their T and signed
//! forms) may be unaligned; LDM, STM, PUSH, POP, LDRD, STRD and the
//! exclusives need a word-aligned address (LDREXH/STREXH a halfword one)
//! and take a UsageFault (UNALIGNED) otherwise, whatever CCR.UNALIGN_TRP
//! says. armagnac would enter its own UsageFault behind our wrapper's back
//! (and go on with the access); the wrapper checks the base register
//! first and refuses the instruction, so the board locks the core up
//! naming the rule (faults are not taken, see `docs/virtual-board.md`).
//!
//! This module owns the decoding of these forms' base register and the
//! wording of the fault; the board decides what a fault does.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use armagnac::core::{Effect, ItState, Processor, RunError};
use armagnac::decoder::DecodeError;
use armagnac::instructions::{Encoding, Instruction, Pattern};
use armagnac::memory::MemoryAccessError;

use super::cpu::reg;

/// CCR.UNALIGN_TRP, shared by the SCS model (which sets it whenever CCR
/// changes) and the instructions that check it, so no step pays for
/// asking.
pub type TrapFlag = Rc<Cell<bool>>;

/// What the wrapper's instructions share with the board: CCR.UNALIGN_TRP,
/// and why the last instruction was refused, for the lockup message
/// (armagnac's `RunError` carries no text).
#[derive(Debug, Default)]
pub struct Rules {
    pub unalign_trp: TrapFlag,
    pub why: RefCell<Option<String>>,
}

pub type Shared = Rc<Rules>;

impl Rules {
    /// Refuse the instruction: record `why`, return the error armagnac
    /// passes up.
    pub fn refuse(&self, why: String, address: u32, size: u32) -> RunError {
        *self.why.borrow_mut() = Some(why);
        RunError::MemRead {
            address,
            size,
            cause: MemoryAccessError::InvalidAlignment,
        }
    }

    /// The rule a single LDR/STR/LDRH/STRH of `size` bytes at `addr`
    /// breaks, if any: with CCR.UNALIGN_TRP every unaligned one
    /// (UsageFault), and in the PPB (0xE000_0000 and up) any unaligned
    /// one (the Cortex-M4 does not support them there).
    #[inline]
    pub fn check_single(&self, what: &str, addr: u32, size: u32) -> Result<(), RunError> {
        if addr & (size - 1) == 0 {
            return Ok(());
        }
        self.check_unaligned(what, addr, size)
    }

    #[cold]
    fn check_unaligned(&self, what: &str, addr: u32, size: u32) -> Result<(), RunError> {
        let why = if self.unalign_trp.get() {
            format!(
                "{what} of {size} bytes at unaligned address {addr:#010x} with CCR.UNALIGN_TRP \
                 set: a UsageFault (UNALIGNED) on silicon (ARMv7-M A3.2.1)"
            )
        } else if addr >= PPB_BASE {
            format!(
                "{what} of {size} bytes at unaligned address {addr:#010x} in the Private \
                 Peripheral Bus: unaligned accesses to the PPB are not supported (Cortex-M4 \
                 TRM 3.4.2; UNPREDICTABLE in ARMv7-M)"
            )
        } else {
            return Ok(());
        };
        Err(self.refuse(why, addr, size))
    }
}

/// Start of the Private Peripheral Bus.
pub const PPB_BASE: u32 = 0xE000_0000;

/// A multiple, dual or exclusive access: its base register, the alignment
/// it needs and its mnemonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form {
    pub rn: u8,
    pub align: u32,
    pub what: &'static str,
}

/// The alignment rule `ins` is under, if it is one of the forms above.
/// Every address these forms access is the base register plus a multiple
/// of 4 (LDRD/STRD imm8 x 4, LDM/STM's register list), so the base's
/// alignment decides. Literal LDRD reads from Align(PC, 4): always fine.
pub fn form(ins: u32, wide: bool) -> Option<Form> {
    let f = |rn: u32, align, what| {
        Some(Form {
            rn: rn as u8,
            align,
            what,
        })
    };
    if !wide {
        let i = ins & 0xFFFF;
        return match i >> 8 {
            0xB4 | 0xB5 => f(13, 4, "PUSH"),
            0xBC | 0xBD => f(13, 4, "POP"),
            0xC0..=0xC7 => f((i >> 8) & 7, 4, "STM"),
            0xC8..=0xCF => f((i >> 8) & 7, 4, "LDM"),
            _ => None,
        };
    }
    let hw1 = ins >> 16;
    let hw2 = ins & 0xFFFF;
    if hw1 >> 9 != 0b1110100 {
        return None;
    }
    let rn = hw1 & 0xF;
    let load = hw1 & 0x10 != 0;
    if hw1 & 0x40 == 0 {
        // LDM/STM (IA, DB), PUSH.W/POP.W among them.
        return f(rn, 4, if load { "LDM" } else { "STM" });
    }
    let (p, w) = (hw1 & 0x100 != 0, hw1 & 0x20 != 0);
    if p || w {
        if rn == 15 {
            return None;
        }
        return f(rn, 4, if load { "LDRD" } else { "STRD" });
    }
    match hw1 & 0xFFF0 {
        0xE840 => f(rn, 4, "STREX"),
        0xE850 => f(rn, 4, "LDREX"),
        0xE8C0 if (hw2 >> 4) & 0xF == 5 => f(rn, 2, "STREXH"),
        0xE8D0 if (hw2 >> 4) & 0xF == 5 => f(rn, 2, "LDREXH"),
        // TBB/TBH (unaligned halfwords allowed), byte exclusives.
        _ => None,
    }
}

/// The fault text for `form` at base address `addr`.
pub fn unaligned(what: &str, addr: u32, align: u32) -> String {
    format!(
        "{what} at address {addr:#010x}, not {align}-byte aligned: a UsageFault (UNALIGNED) \
         on silicon (ARMv7-M A3.2.1: only LDR/STR/LDRH/STRH may be unaligned)"
    )
}

struct Aligned {
    inner: Rc<dyn Instruction>,
    form: Form,
    rules: Shared,
}

/// Wrap `inner` when it is one of the forms above.
pub fn wrap(
    ins: u32,
    wide: bool,
    inner: Rc<dyn Instruction>,
    rules: &Shared,
) -> Rc<dyn Instruction> {
    match form(ins, wide) {
        Some(form) => Rc::new(Aligned {
            inner,
            form,
            rules: rules.clone(),
        }),
        None => inner,
    }
}

impl Instruction for Aligned {
    fn patterns() -> &'static [Pattern] {
        &[]
    }
    fn try_decode(_: Encoding, _: u32, _: ItState) -> Result<Self, DecodeError> {
        Err(DecodeError::Other)
    }
    fn execute(&self, proc: &mut Processor) -> Result<Effect, RunError> {
        let Form { rn, align, what } = self.form;
        let addr = reg(proc, rn);
        if addr % align != 0 {
            return Err(self.rules.refuse(unaligned(what, addr, align), addr, align));
        }
        self.inner.execute(proc)
    }
    fn name(&self) -> String {
        self.inner.name()
    }
    fn args(&self, pc: u32) -> String {
        self.inner.args(pc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiple_dual_and_exclusive_forms_name_their_base_and_alignment() {
        let w = |i| form(i, true);
        let n = |i| form(i, false);
        let is = |f: Option<Form>, rn, align| {
            let f = f.unwrap();
            assert_eq!((f.rn, f.align), (rn, align), "{}", f.what);
        };
        is(n(0xB5F0), 13, 4); // push {r4-r7, lr}
        is(n(0xBDF0), 13, 4); // pop {r4-r7, pc}
        is(n(0xC90C), 1, 4); // ldmia r1!, {r2, r3}
        is(n(0xC40C), 4, 4); // stmia r4!, {r2, r3}
        is(w(0xE92D_41F0), 13, 4); // push.w
        is(w(0xE8BD_81F0), 13, 4); // pop.w
        is(w(0xE890_000C), 0, 4); // ldm.w r0, {r2, r3}
        is(w(0xE9D0_2300), 0, 4); // ldrd r2, r3, [r0]
        is(w(0xE9C1_2302), 1, 4); // strd r2, r3, [r1, #8]
        is(w(0xE850_1F00), 0, 4); // ldrex r1, [r0]
        is(w(0xE841_2000), 1, 4); // strex r0, r2, [r1]
        is(w(0xE8D0_1F5F), 0, 2); // ldrexh r1, [r0]
        assert_eq!(w(0xE8D0_1F4F), None, "ldrexb: bytes are always aligned");
        assert_eq!(w(0xE8DF_F001), None, "tbb");
        assert_eq!(w(0xE8DF_F011), None, "tbh reads MemU");
        assert_eq!(w(0xE9DF_2300), None, "ldrd literal");
        assert_eq!(w(0xF8D1_0DFC), None, "ldr.w may be unaligned");
        assert_eq!(n(0x6811), None, "ldr r1, [r2]");
    }
}

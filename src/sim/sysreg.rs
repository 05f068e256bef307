//! The special registers armagnac lacks (PRIMASK, BASEPRI, BASEPRI_MAX,
//! FAULTMASK, CONTROL.FPCA) and the instructions that reach them: MSR, MRS,
//! CPSIE/CPSID, decoded by our CPU wrapper before armagnac sees them
//! (armagnac 0.3 panics on MSR PRIMASK, MRS BASEPRI and friends).
//!
//! This module owns the special-register state and its semantics after the
//! ARMv7-M ARM (B5.2.2 MRS, B5.2.3 MSR, B5.2.1 CPS). It must not know about
//! exceptions beyond the Handler-mode flag the wrapper keeps here: the
//! board decides what the masks mean for exception entry.

use std::cell::Cell;
use std::rc::Rc;

use armagnac::core::{Effect, ItState, Processor, RunError};
use armagnac::decoder::DecodeError;
use armagnac::instructions::{Encoding, Instruction, Pattern};

use super::cpu::{reg, set_reg};

/// Special-register state kept outside armagnac.
///
/// armagnac runs every exception handler in privileged Thread mode on the
/// main stack (its own exception return is incomplete); `handler` says
/// whether the core is architecturally in Handler mode and `npriv` keeps
/// Thread mode's CONTROL.nPRIV meanwhile.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpecialRegs {
    pub primask: bool,
    pub faultmask: bool,
    /// BASEPRI; the F407 implements bits [7:4] (4 priority bits).
    pub basepri: u8,
    pub fpca: bool,
    pub npriv: bool,
    pub handler: bool,
    /// An SVC executed: SVCall is to be pended (the board takes it).
    pub svc: bool,
}

/// Priority bits the STM32F407 implements (RM0090 10.1: 16 levels).
pub const PRIO_MASK: u8 = 0xF0;

pub type Shared = Rc<Cell<SpecialRegs>>;

/// Decode MSR, MRS and CPS ourselves; `None` for everything else.
pub fn decode(ins: u32, wide: bool, regs: &Shared) -> Option<Rc<dyn Instruction>> {
    let regs = regs.clone();
    if !wide {
        // CPS: 1011 0110 011 im (0)(0) I F
        // SVC: 1101 1111 imm8 (armagnac would enter it through its own,
        // incomplete exception path).
        if ins & 0xFF00 == 0xDF00 {
            return Some(Rc::new(Svc { regs }));
        }
        if ins & 0xFFE0 == 0xB660 {
            return Some(Rc::new(Cps {
                enable: ins & 0x10 == 0,
                i: ins & 2 != 0,
                f: ins & 1 != 0,
                regs,
            }));
        }
        return None;
    }
    let sysm = (ins & 0xFF) as u8;
    // MSR: 1111 0011 100(0) Rn | 10(0)0 mask (0)(0) SYSm
    if ins & 0xFFE0_D000 == 0xF380_8000 {
        return Some(Rc::new(Msr {
            rn: ((ins >> 16) & 0xF) as u8,
            sysm,
            mask: ((ins >> 10) & 3) as u8,
            regs,
        }));
    }
    // MRS: 1111 0011 1110 1111 | 10(0)0 Rd SYSm
    if ins & 0xFFFF_D000 == 0xF3EF_8000 {
        return Some(Rc::new(Mrs {
            rd: ((ins >> 8) & 0xF) as u8,
            sysm,
            regs,
        }));
    }
    None
}

/// APSR bits an MSR/MRS moves: N Z C V Q and GE[3:0].
const APSR_NZCVQ: u32 = 0xF800_0000;
const APSR_GE: u32 = 0x000F_0000;

struct Msr {
    rn: u8,
    sysm: u8,
    mask: u8,
    regs: Shared,
}

impl Instruction for Msr {
    fn patterns() -> &'static [Pattern] {
        &[]
    }
    fn try_decode(_: Encoding, _: u32, _: ItState) -> Result<Self, DecodeError> {
        Err(DecodeError::Other)
    }
    fn execute(&self, proc: &mut Processor) -> Result<Effect, RunError> {
        if self.rn >= 13 {
            return Err(RunError::InstructionUnpredictable);
        }
        let v = reg(proc, self.rn);
        let privileged = proc.is_privileged();
        let mut s = self.regs.get();
        match self.sysm {
            0..=7 => {
                // Only the APSR part is writable (SYSm<2> = 0).
                if self.sysm & 4 == 0 {
                    let mut bits = 0;
                    if self.mask & 2 != 0 {
                        bits |= APSR_NZCVQ;
                    }
                    if self.mask & 1 != 0 {
                        bits |= APSR_GE;
                    }
                    let psr = proc.registers.psr.get();
                    proc.registers.psr.set(psr & !bits | v & bits);
                }
            }
            8 if privileged => proc.registers.msp = v & !3,
            9 if privileged => proc.registers.psp = v & !3,
            16 if privileged => s.primask = v & 1 != 0,
            17 if privileged => s.basepri = v as u8 & PRIO_MASK,
            18 if privileged => {
                let new = v as u8 & PRIO_MASK;
                if new != 0 && (new < s.basepri || s.basepri == 0) {
                    s.basepri = new;
                }
            }
            // ExecutionPriority > -1 always holds: HardFault and NMI
            // handlers are not entered by this model.
            19 if privileged => s.faultmask = v & 1 != 0,
            20 if privileged => {
                s.npriv = v & 1 != 0;
                s.fpca = v & 4 != 0;
                if !s.handler {
                    proc.registers.control.set_privileged_bit(s.npriv);
                    proc.registers.control.set_spsel(v & 2 != 0);
                }
            }
            8 | 9 | 16..=20 => {} // unprivileged: ignored
            _ => return Err(RunError::InstructionUnpredictable),
        }
        self.regs.set(s);
        Ok(Effect::None)
    }
    fn name(&self) -> String {
        "msr".into()
    }
    fn args(&self, _pc: u32) -> String {
        format!("sysm{}, r{}", self.sysm, self.rn)
    }
}

struct Mrs {
    rd: u8,
    sysm: u8,
    regs: Shared,
}

impl Instruction for Mrs {
    fn patterns() -> &'static [Pattern] {
        &[]
    }
    fn try_decode(_: Encoding, _: u32, _: ItState) -> Result<Self, DecodeError> {
        Err(DecodeError::Other)
    }
    fn execute(&self, proc: &mut Processor) -> Result<Effect, RunError> {
        if self.rd >= 13 {
            return Err(RunError::InstructionUnpredictable);
        }
        let privileged = proc.is_privileged();
        let s = self.regs.get();
        let psr = proc.registers.psr.get();
        let v = match self.sysm {
            0..=7 => {
                let mut v = 0;
                if self.sysm & 1 != 0 {
                    v |= psr & 0x1FF; // IPSR
                }
                if self.sysm & 4 == 0 {
                    v |= psr & (APSR_NZCVQ | APSR_GE);
                }
                v // EPSR reads as zero
            }
            8 if privileged => proc.registers.msp,
            9 if privileged => proc.registers.psp,
            16 if privileged => s.primask as u32,
            17 | 18 if privileged => s.basepri as u32,
            19 if privileged => s.faultmask as u32,
            20 => control(proc, &s),
            8 | 9 | 16..=19 => 0,
            _ => return Err(RunError::InstructionUnpredictable),
        };
        set_reg(proc, self.rd, v);
        Ok(Effect::None)
    }
    fn name(&self) -> String {
        "mrs".into()
    }
    fn args(&self, _pc: u32) -> String {
        format!("r{}, sysm{}", self.rd, self.sysm)
    }
}

/// CONTROL as software and the debugger read it: nPRIV, SPSEL (0 in
/// Handler mode), FPCA.
pub fn control(proc: &Processor, s: &SpecialRegs) -> u32 {
    let spsel = !s.handler && proc.registers.control.spsel();
    s.npriv as u32 | (spsel as u32) << 1 | (s.fpca as u32) << 2
}

struct Cps {
    enable: bool,
    i: bool,
    f: bool,
    regs: Shared,
}

impl Instruction for Cps {
    fn patterns() -> &'static [Pattern] {
        &[]
    }
    fn try_decode(_: Encoding, _: u32, _: ItState) -> Result<Self, DecodeError> {
        Err(DecodeError::Other)
    }
    fn execute(&self, proc: &mut Processor) -> Result<Effect, RunError> {
        if proc.is_privileged() {
            let mut s = self.regs.get();
            if self.i {
                s.primask = !self.enable;
            }
            if self.f {
                s.faultmask = !self.enable;
            }
            self.regs.set(s);
        }
        Ok(Effect::None)
    }
    fn name(&self) -> String {
        if self.enable { "cpsie" } else { "cpsid" }.into()
    }
    fn args(&self, _pc: u32) -> String {
        format!(
            "{}{}",
            if self.i { "i" } else { "" },
            if self.f { "f" } else { "" }
        )
    }
}

struct Svc {
    regs: Shared,
}

impl Instruction for Svc {
    fn patterns() -> &'static [Pattern] {
        &[]
    }
    fn try_decode(_: Encoding, _: u32, _: ItState) -> Result<Self, DecodeError> {
        Err(DecodeError::Other)
    }
    fn execute(&self, _proc: &mut Processor) -> Result<Effect, RunError> {
        let mut s = self.regs.get();
        s.svc = true;
        self.regs.set(s);
        Ok(Effect::None)
    }
    fn name(&self) -> String {
        "svc".into()
    }
    fn args(&self, _pc: u32) -> String {
        String::new()
    }
}

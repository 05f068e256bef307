//! The ARMv7E-M DSP-extension instructions armagnac 0.3 does not decode
//! (it reports them as unknown, which locks the virtual core up), decoded
//! by our CPU wrapper before armagnac sees them. Compilers emit them for
//! ordinary code on `thumbv7em` targets: UXTAB for `u8 + u32`, SMULBB for
//! `i16 * i16`, SMMUL for the high word of `i32 * i32`, UMAAL in 64-bit
//! multiplies, PKHBT to pack halfwords.
//!
//! Semantics after the ARMv7-M Architecture Reference Manual (DDI 0403E,
//! A7.7): the extend-and-add group (A5.3.12), the 32-bit multiplies
//! (A5.3.16: SMLA/SMUL<x><y>, SMLAW/SMULW<y>, SMLAD/SMUAD, SMLSD/SMUSD,
//! SMMLA/SMMUL/SMMLS, USAD8/USADA8), the long multiplies (A5.3.17:
//! SMLAL<x><y>, SMLALD, SMLSLD, UMAAL) and PKHBT/PKHTB. Not covered: the
//! parallel add/subtract group beyond what armagnac has (SADD16/8,
//! QADD16/8, QSUB16/8), SEL and SSAT16.
//!
//! This module owns only instruction decoding and execution; conditions
//! inside IT blocks are applied by armagnac's core as for its own
//! instructions.

use std::rc::Rc;

use armagnac::core::{Effect, ItState, Processor, RunError};
use armagnac::decoder::DecodeError;
use armagnac::instructions::{Encoding, Instruction, Pattern};

use super::cpu::{reg, set_reg};

/// APSR.Q, the sticky saturation flag.
const Q: u32 = 1 << 27;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// SXTAH/UXTAH/SXTAB16/UXTAB16/SXTAB/UXTAB (and SXTB16/UXTB16 with
    /// Rn = PC): `kind` is op1 of A5.3.12 (0..=5), `rot` in bits.
    ExtendAdd { kind: u8, rot: u32 },
    /// SMLA<x><y> / SMUL<x><y>: top halves of Rn (n) and Rm (m).
    MulHalf { n: bool, m: bool },
    /// SMLAW<y> / SMULW<y>.
    MulWord { m: bool },
    /// SMLAD{X} / SMUAD{X} (`sub` false), SMLSD{X} / SMUSD{X} (`sub`).
    Dual { sub: bool, x: bool },
    /// SMMLA{R} / SMMUL{R} (`sub` false), SMMLS{R} (`sub`).
    MostSig { sub: bool, round: bool },
    /// USADA8 / USAD8.
    Usad8,
    /// SMLAL<x><y>.
    MulHalfLong { n: bool, m: bool },
    /// SMLALD{X} / SMLSLD{X}.
    DualLong { sub: bool, x: bool },
    /// UMAAL.
    Umaal,
    /// PKHBT (`tb` false, LSL) / PKHTB (`tb`, ASR; 0 means 32).
    Pack { tb: bool, shift: u32 },
}

/// One decoded instruction. `ra` is 15 for the forms without accumulate;
/// for the long multiplies `rd` is RdHi and `ra` RdLo.
struct Dsp {
    op: Op,
    rd: u8,
    rn: u8,
    rm: u8,
    ra: u8,
}

/// Decode the instructions of this module; `None` for everything else
/// (armagnac decodes it, or reports it unknown).
pub fn decode(ins: u32, wide: bool) -> Option<Rc<dyn Instruction>> {
    if !wide {
        return None;
    }
    let rn = ((ins >> 16) & 0xF) as u8;
    let rd = ((ins >> 8) & 0xF) as u8;
    let rm = (ins & 0xF) as u8;
    let ra = ((ins >> 12) & 0xF) as u8;
    let op1 = (ins >> 20) & 7;
    let op = if ins & 0xFF80_F0C0 == 0xFA00_F080 {
        // 1111 1010 0 op1 Rn | 1111 Rd 10 rot Rm (A5.3.12, op1 <= 5).
        // SXTH/UXTH/SXTB/UXTB (Rn = PC, op1 != 2, 3) are armagnac's.
        let b16 = op1 == 2 || op1 == 3;
        if op1 > 5 || (rn == 15 && !b16) {
            return None;
        }
        Op::ExtendAdd {
            kind: op1 as u8,
            rot: ((ins >> 4) & 3) * 8,
        }
    } else if ins & 0xFF80_00C0 == 0xFB00_0000 {
        // 1111 1011 0 op1 Rn | Ra Rd 00 op2 Rm (A5.3.16).
        let (b5, b4) = (ins & 0x20 != 0, ins & 0x10 != 0);
        match (op1, b5) {
            (1, _) => Op::MulHalf { n: b5, m: b4 },
            (2, false) => Op::Dual { sub: false, x: b4 },
            (3, false) => Op::MulWord { m: b4 },
            (4, false) => Op::Dual { sub: true, x: b4 },
            (5, false) => Op::MostSig {
                sub: false,
                round: b4,
            },
            (6, false) => {
                if ra == 15 {
                    return None; // SMMLS has no Ra = PC form
                }
                Op::MostSig {
                    sub: true,
                    round: b4,
                }
            }
            (7, false) if !b4 => Op::Usad8,
            _ => return None, // MUL/MLA/MLS (op1 0) and undefined ones
        }
    } else if ins & 0xFF80_0000 == 0xFB80_0000 {
        // 1111 1011 1 op1 Rn | RdLo RdHi op2 Rm (A5.3.17).
        let op2 = (ins >> 4) & 0xF;
        match (op1, op2) {
            (4, 0b1000..=0b1011) => Op::MulHalfLong {
                n: op2 & 2 != 0,
                m: op2 & 1 != 0,
            },
            (4, 0b1100 | 0b1101) => Op::DualLong {
                sub: false,
                x: op2 & 1 != 0,
            },
            (5, 0b1100 | 0b1101) => Op::DualLong {
                sub: true,
                x: op2 & 1 != 0,
            },
            (6, 0b0110) => Op::Umaal,
            _ => return None,
        }
    } else if ins & 0xFFF0_8010 == 0xEAC0_0000 {
        // 1110 1010 110 0 Rn | 0 imm3 Rd imm2 tb 0 Rm (PKHBT/PKHTB).
        Op::Pack {
            tb: ins & 0x20 != 0,
            shift: ((ins >> 10) & 0x1C) | ((ins >> 6) & 3),
        }
    } else {
        return None;
    };
    Some(Rc::new(Dsp { op, rd, rn, rm, ra }))
}

/// Bottom (false) or top (true) halfword, sign-extended.
fn half(v: u32, top: bool) -> i64 {
    i64::from(if top { (v >> 16) as i16 } else { v as i16 })
}

/// Sets APSR.Q when `r` does not fit in 32 signed bits; returns its low word.
fn sat_flag(proc: &mut Processor, r: i64) -> u32 {
    if r != i64::from(r as i32) {
        let psr = proc.registers.psr.get();
        proc.registers.psr.set(psr | Q);
    }
    r as u32
}

impl Dsp {
    /// Registers that must not be SP or PC (UNPREDICTABLE, A7.7).
    fn unpredictable(&self) -> bool {
        let bad = |r: u8| r == 13 || r == 15;
        let acc_bad = |r: u8| r == 13; // Ra = PC selects the non-accumulating form
        match self.op {
            Op::ExtendAdd { .. } => bad(self.rd) || bad(self.rm) || self.rn == 13,
            Op::MulHalfLong { .. } | Op::DualLong { .. } | Op::Umaal => {
                bad(self.rd) || bad(self.rn) || bad(self.rm) || bad(self.ra) || self.rd == self.ra
            }
            Op::Pack { .. } => bad(self.rd) || bad(self.rn) || bad(self.rm),
            _ => bad(self.rd) || bad(self.rn) || bad(self.rm) || acc_bad(self.ra),
        }
    }

    fn accumulate(&self, proc: &Processor) -> Option<u32> {
        (self.ra != 15).then(|| reg(proc, self.ra))
    }

    fn long_acc(&self, proc: &Processor) -> u64 {
        (u64::from(reg(proc, self.rd)) << 32) | u64::from(reg(proc, self.ra))
    }

    fn set_long(&self, proc: &mut Processor, v: u64) {
        set_reg(proc, self.ra, v as u32);
        set_reg(proc, self.rd, (v >> 32) as u32);
    }
}

impl Instruction for Dsp {
    fn patterns() -> &'static [Pattern] {
        &[]
    }

    fn try_decode(_: Encoding, _: u32, _: ItState) -> Result<Self, DecodeError> {
        Err(DecodeError::Other)
    }

    fn execute(&self, proc: &mut Processor) -> Result<Effect, RunError> {
        if self.unpredictable() {
            return Err(RunError::InstructionUnpredictable);
        }
        let rn = reg(proc, self.rn);
        let rm = reg(proc, self.rm);
        match self.op {
            Op::ExtendAdd { kind, rot } => {
                let r = rm.rotate_right(rot);
                let base = if self.rn == 15 { 0 } else { rn };
                let v = match kind {
                    0 => base.wrapping_add(r as i16 as u32),
                    1 => base.wrapping_add(r & 0xFFFF),
                    2 | 3 => {
                        let ext = |b: u32| {
                            if kind == 2 {
                                b as u8 as i8 as u16
                            } else {
                                b as u8 as u16
                            }
                        };
                        let lo = (base as u16).wrapping_add(ext(r));
                        let hi = ((base >> 16) as u16).wrapping_add(ext(r >> 16));
                        (u32::from(hi) << 16) | u32::from(lo)
                    }
                    4 => base.wrapping_add(r as i8 as u32),
                    _ => base.wrapping_add(r & 0xFF),
                };
                set_reg(proc, self.rd, v);
            }
            Op::MulHalf { n, m } => {
                let p = half(rn, n) * half(rm, m);
                let v = match self.accumulate(proc) {
                    Some(a) => sat_flag(proc, p + i64::from(a as i32)),
                    None => p as u32,
                };
                set_reg(proc, self.rd, v);
            }
            Op::MulWord { m } => {
                let p = (i64::from(rn as i32) * half(rm, m)) >> 16;
                let v = match self.accumulate(proc) {
                    Some(a) => sat_flag(proc, p + i64::from(a as i32)),
                    None => p as u32,
                };
                set_reg(proc, self.rd, v);
            }
            Op::Dual { sub, x } => {
                let rm = if x { rm.rotate_right(16) } else { rm };
                let p1 = half(rn, false) * half(rm, false);
                let p2 = half(rn, true) * half(rm, true);
                let p = if sub { p1 - p2 } else { p1 + p2 };
                let acc = self.accumulate(proc).map_or(0, |a| i64::from(a as i32));
                // SMUSD cannot overflow; SMUAD can (0x8000 * 0x8000 twice).
                let v = sat_flag(proc, p + acc);
                set_reg(proc, self.rd, v);
            }
            Op::MostSig { sub, round } => {
                let p = i64::from(rn as i32) * i64::from(rm as i32);
                let acc = self
                    .accumulate(proc)
                    .map_or(0, |a| i64::from(a as i32) << 32);
                let mut r = if sub {
                    acc.wrapping_sub(p)
                } else {
                    acc.wrapping_add(p)
                };
                if round {
                    r = r.wrapping_add(0x8000_0000);
                }
                set_reg(proc, self.rd, (r >> 32) as u32);
            }
            Op::Usad8 => {
                let sum: u32 = (0..4)
                    .map(|i| ((rn >> (8 * i)) as u8).abs_diff((rm >> (8 * i)) as u8) as u32)
                    .sum();
                let acc = self.accumulate(proc).unwrap_or(0);
                set_reg(proc, self.rd, acc.wrapping_add(sum));
            }
            Op::MulHalfLong { n, m } => {
                let p = half(rn, n) * half(rm, m);
                let v = (self.long_acc(proc) as i64).wrapping_add(p);
                self.set_long(proc, v as u64);
            }
            Op::DualLong { sub, x } => {
                let rm = if x { rm.rotate_right(16) } else { rm };
                let p1 = half(rn, false) * half(rm, false);
                let p2 = half(rn, true) * half(rm, true);
                let p = if sub { p1 - p2 } else { p1 + p2 };
                let v = (self.long_acc(proc) as i64).wrapping_add(p);
                self.set_long(proc, v as u64);
            }
            Op::Umaal => {
                // RdHi:RdLo = Rn * Rm + RdHi + RdLo (never overflows 64 bits).
                let v = u64::from(rn) * u64::from(rm)
                    + u64::from(reg(proc, self.rd))
                    + u64::from(reg(proc, self.ra));
                self.set_long(proc, v);
            }
            Op::Pack { tb, shift } => {
                let v = if tb {
                    let sh = if shift == 0 { 31 } else { shift };
                    (rn & 0xFFFF_0000) | (((rm as i32) >> sh) as u32 & 0xFFFF)
                } else {
                    (rn & 0xFFFF) | ((rm << shift) & 0xFFFF_0000)
                };
                set_reg(proc, self.rd, v);
            }
        }
        Ok(Effect::None)
    }

    fn name(&self) -> String {
        let xy = |t: bool| if t { 't' } else { 'b' };
        let acc = self.ra != 15;
        match self.op {
            Op::ExtendAdd { kind, .. } => {
                let add = if self.rn == 15 { "" } else { "a" };
                let s = ["sxt", "uxt", "sxt", "uxt", "sxt", "uxt"][kind as usize];
                let t = ["h", "h", "b16", "b16", "b", "b"][kind as usize];
                format!("{s}{add}{t}")
            }
            Op::MulHalf { n, m } => {
                format!("{}{}{}", if acc { "smla" } else { "smul" }, xy(n), xy(m))
            }
            Op::MulWord { m } => format!("{}{}", if acc { "smlaw" } else { "smulw" }, xy(m)),
            Op::Dual { sub, x } => format!(
                "{}{}",
                match (sub, acc) {
                    (false, true) => "smlad",
                    (false, false) => "smuad",
                    (true, true) => "smlsd",
                    (true, false) => "smusd",
                },
                if x { "x" } else { "" }
            ),
            Op::MostSig { sub, round } => format!(
                "{}{}",
                match (sub, acc) {
                    (true, _) => "smmls",
                    (false, true) => "smmla",
                    (false, false) => "smmul",
                },
                if round { "r" } else { "" }
            ),
            Op::Usad8 => if acc { "usada8" } else { "usad8" }.into(),
            Op::MulHalfLong { n, m } => format!("smlal{}{}", xy(n), xy(m)),
            Op::DualLong { sub, x } => {
                format!(
                    "{}{}",
                    if sub { "smlsld" } else { "smlald" },
                    if x { "x" } else { "" }
                )
            }
            Op::Umaal => "umaal".into(),
            Op::Pack { tb, .. } => if tb { "pkhtb" } else { "pkhbt" }.into(),
        }
    }

    fn args(&self, _pc: u32) -> String {
        match self.op {
            Op::MulHalfLong { .. } | Op::DualLong { .. } | Op::Umaal => {
                format!("r{}, r{}, r{}, r{}", self.ra, self.rd, self.rn, self.rm)
            }
            _ if self.ra != 15 => {
                format!("r{}, r{}, r{}, r{}", self.rd, self.rn, self.rm, self.ra)
            }
            _ => format!("r{}, r{}, r{}", self.rd, self.rn, self.rm),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use armagnac::memory::{Env, MemoryInterface, RamMemory};

    use super::*;
    use crate::sim::cpu::{ArmagnacCpu, CoreReg, Cpu, StepOutcome};

    /// Runs one 32-bit instruction (`hw1`, `hw2` as an assembler lays
    /// them out) with r0-r3 preset; returns r0-r3 and the Q flag.
    fn exec(hw1: u16, hw2: u16, regs: [u32; 4]) -> ([u32; 4], bool) {
        let ram = Rc::new(RefCell::new(RamMemory::new_zero(0x1000)));
        let mut cpu = ArmagnacCpu::new(ram.clone(), 0x1000, Vec::new(), None);
        cpu.reset(0x800, 0x100 | 1);
        let mut env = Env::new(0, true);
        let mut m = ram.borrow_mut();
        m.write_u16le(0x100, hw1, &mut env).unwrap();
        m.write_u16le(0x102, hw2, &mut env).unwrap();
        drop(m);
        for (i, v) in regs.iter().enumerate() {
            cpu.write_reg(CoreReg::R(i as u8), *v);
        }
        assert_eq!(cpu.step().0, StepOutcome::Retired, "{hw1:04x} {hw2:04x}");
        assert_eq!(
            cpu.read_reg(CoreReg::Pc),
            0x104,
            "pc after {hw1:04x} {hw2:04x}"
        );
        let out = [0, 1, 2, 3].map(|i| cpu.read_reg(CoreReg::R(i)));
        let q = cpu.read_reg(CoreReg::Xpsr) & Q != 0;
        (out, q)
    }

    /// r0 after the instruction.
    fn r0(hw1: u16, hw2: u16, regs: [u32; 4]) -> u32 {
        exec(hw1, hw2, regs).0[0]
    }

    // Encodings from `llvm-mc -triple=thumbv7em-none-eabi -show-encoding`.

    #[test]
    fn extend_and_add_family() {
        let r = [0, 0x1000_0000, 0x8081_82F3, 0];
        // uxtab r0, r1, r2: r1 + 0xF3
        assert_eq!(r0(0xFA51, 0xF082, r), 0x1000_00F3);
        // uxtab r0, r1, r2, ror #8: r1 + 0x82
        assert_eq!(r0(0xFA51, 0xF092, r), 0x1000_0082);
        // sxtab r0, r1, r2, ror #16: r1 + (-127)
        assert_eq!(r0(0xFA41, 0xF0A2, r), 0x1000_0000u32.wrapping_sub(127));
        // uxtah r0, r1, r2, ror #24: rotated = 0x8182F380 -> 0xF380
        assert_eq!(r0(0xFA11, 0xF0B2, r), 0x1000_F380);
        // sxtah r0, r1, r2: r1 + sext(0x82F3)
        assert_eq!(
            r0(0xFA01, 0xF082, r),
            0x1000_0000u32.wrapping_add(0xFFFF_82F3)
        );
        // uxtab16 r0, r1, r2, ror #8: rotated 0xF3808182 -> +0x82 lo, +0x80 hi
        assert_eq!(
            r0(0xFA31, 0xF092, [0, 0x0001_FFFF, 0x8081_82F3, 0]),
            0x0081_0081
        );
        // sxtab16 r0, r1, r2: lo + sext(0xF3), hi + sext(0x81)
        assert_eq!(
            r0(0xFA21, 0xF082, [0, 0x0100_0100, 0x8081_82F3, 0]),
            0x0081_00F3
        );
        // uxtb16 r0, r2 and sxtb16 r0, r2, ror #8
        assert_eq!(r0(0xFA3F, 0xF082, r), 0x0081_00F3);
        assert_eq!(r0(0xFA2F, 0xF092, r), 0xFF80_FF82);
    }

    #[test]
    fn halfword_and_word_multiplies() {
        let r = [0, 0xFFFE_0003, 0x0004_FFF9, 100];
        // smulbb: 3 * -7
        assert_eq!(r0(0xFB11, 0xF002, r), (-21i32) as u32);
        // smultb: -2 * -7; smulbt: 3 * 4
        assert_eq!(r0(0xFB11, 0xF022, r), 14);
        assert_eq!(r0(0xFB11, 0xF012, r), 12);
        // smlatt: -2 * 4 + 100; smlabb: -21 + 100
        assert_eq!(r0(0xFB11, 0x3032, r), 92);
        assert_eq!(r0(0xFB11, 0x3002, r), 79);
        // smulwb: (0x40000000 * -7) >> 16
        assert_eq!(
            r0(0xFB31, 0xF002, [0, 0x4000_0000, 0xFFF9, 0]),
            (-7i32 << 14) as u32
        );
        // smlawt: (0x40000000 * 4) >> 16 + 100
        assert_eq!(
            r0(0xFB31, 0x3012, [0, 0x4000_0000, 0x0004_0000, 100]),
            0x10064
        );
        // smlabb overflow sets Q: 0x7FFFFFFF + 1
        let (out, q) = exec(0xFB11, 0x3002, [0, 1, 1, 0x7FFF_FFFF]);
        assert_eq!((out[0], q), (0x8000_0000, true));
        assert!(!exec(0xFB11, 0x3002, r).1);
    }

    #[test]
    fn dual_and_most_significant_multiplies() {
        let r = [0, 0x0002_0003, 0x0005_0007, 1000];
        // smuad: 3*7 + 2*5; smuadx: 3*5 + 2*7; smlad: + 1000
        assert_eq!(r0(0xFB21, 0xF002, r), 31);
        assert_eq!(r0(0xFB21, 0xF012, r), 29);
        assert_eq!(r0(0xFB21, 0x3002, r), 1031);
        // smusd: 21 - 10; smlsdx: 15 - 14 + 1000
        assert_eq!(r0(0xFB41, 0xF002, r), 11);
        assert_eq!(r0(0xFB41, 0x3012, r), 1001);
        // smuad of 0x8000 * 0x8000 twice overflows: Q
        let (out, q) = exec(0xFB21, 0xF002, [0, 0x8000_8000, 0x8000_8000, 0]);
        assert_eq!((out[0], q), (0x8000_0000, true));
        // smmul: high word of 0x40000000 * -8; smmulr rounds
        let m = [0, 0x4000_0000, (-8i32) as u32, 5];
        assert_eq!(r0(0xFB51, 0xF002, m), (-2i32) as u32);
        // 0x40000000 * 3 = 0x0_C0000000: smmul truncates to 0, smmulr rounds to 1
        assert_eq!(r0(0xFB51, 0xF002, [0, 0x4000_0000, 3, 0]), 0);
        assert_eq!(r0(0xFB51, 0xF012, [0, 0x4000_0000, 3, 0]), 1);
        // smmla: 5 + (-2); smmls: 5 - (-2) (exact: low word 0), smmlsr
        assert_eq!(r0(0xFB51, 0x3002, m), 3);
        assert_eq!(r0(0xFB61, 0x3002, m), 7);
        assert_eq!(r0(0xFB61, 0x3012, m), 7);
    }

    #[test]
    fn usad8_sums_absolute_byte_differences() {
        let r = [0, 0x0A14_FF00, 0x1400_00FF, 7];
        let sad = 10 + 20 + 255 + 255;
        assert_eq!(r0(0xFB71, 0xF002, r), sad);
        assert_eq!(r0(0xFB71, 0x3002, r), sad + 7);
    }

    #[test]
    fn long_multiplies_accumulate_into_rdhi_rdlo() {
        // umaal r0, r1, r2, r3: r1:r0 = r2 * r3 + r1 + r0
        let (out, _) = exec(
            0xFBE2,
            0x0163,
            [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF],
        );
        assert_eq!((out[1], out[0]), (0xFFFF_FFFF, 0xFFFF_FFFF));
        let (out, _) = exec(0xFBE2, 0x0163, [5, 1, 0x1_0000, 0x1_0000]);
        assert_eq!((out[1], out[0]), (1, 6));
        // smlalbb r0, r1, r2, r3: r1:r0 += -2 * 3
        let (out, _) = exec(0xFBC2, 0x0183, [1, 0, 0xFFFE, 3]);
        assert_eq!((out[1], out[0]), (0xFFFF_FFFF, (-5i32) as u32));
        // smlaltb: top of r2 (4) * bottom of r3 (3)
        let (out, _) = exec(0xFBC2, 0x01A3, [0, 0, 0x0004_0000, 3]);
        assert_eq!((out[1], out[0]), (0, 12));
        // smlald: 3*7 + 2*5 added to 0x1_FFFFFFFF
        let (out, _) = exec(0xFBC2, 0x01C3, [0xFFFF_FFFF, 1, 0x0002_0003, 0x0005_0007]);
        assert_eq!((out[1], out[0]), (2, 30));
        // smlsldx: 3*5 - 2*7 = 1
        let (out, _) = exec(0xFBD2, 0x01D3, [0, 0, 0x0002_0003, 0x0005_0007]);
        assert_eq!((out[1], out[0]), (0, 1));
    }

    #[test]
    fn pack_halfwords() {
        let r = [0, 0x1111_2222, 0x3333_4444, 0];
        // pkhbt r0, r1, r2, lsl #16
        assert_eq!(r0(0xEAC1, 0x4002, r), 0x4444_2222);
        // pkhtb r0, r1, r2, asr #16; asr #32 (encoded as 0) gives the sign
        assert_eq!(r0(0xEAC1, 0x4022, r), 0x1111_3333);
        assert_eq!(
            r0(0xEAC1, 0x0022, [0, 0x1111_2222, 0x8000_0000, 0]),
            0x1111_FFFF
        );
    }

    #[test]
    fn instructions_armagnac_decodes_are_left_to_it() {
        // uxtb.w r0, r2 (Rn = PC), mul r0, r1, r2, smull, sdiv
        for ins in [0xFA5F_F082u32, 0xFB01_F002, 0xFB81_0002, 0xFB91_F0F2] {
            assert!(decode(ins, true).is_none(), "{ins:08x}");
        }
        assert!(decode(0xFA51_F082, true).is_some());
    }
}

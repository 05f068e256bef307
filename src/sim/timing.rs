//! Cortex-M4 instruction timing by class, after the Cortex-M4 TRM r0p1,
//! 3.3.1 "Cortex-M4 instructions" (table 3-1 cycle counts):
//!
//! | class | cycles |
//! | --- | --- |
//! | data processing, MUL, MLA, long multiply, bit field, extend, IT, hints | 1 |
//! | MLS, MSR, MRS | 2 |
//! | load or store of one register | 2 (the TRM's pipelining of neighbouring loads/stores to 1 is not modelled) |
//! | LDRD, STRD | 1 + N = 3 |
//! | LDM, STM, PUSH, POP | 1 + N (registers) |
//! | UDIV, SDIV | 2-12 by operand size (early termination, see `patch.rs`) |
//! | TBB, TBH | 2 + P |
//! | ISB | 1 + P |
//! | any instruction that writes the PC (taken branch, BX, POP/LDR pc) | + P |
//!
//! P, the pipeline refill, is 1-3 on silicon; this model takes P = 2. An
//! instruction in an IT block whose condition fails is not executed and
//! costs 1 whatever its class (the CPU wrapper tests the condition before
//! the step); a B<cond> not taken writes no PC and so costs 1 too. Flash
//! wait states are added by the board (`Mcu::wait_states`).
//!
//! This module owns only the classification of encodings; it must not know
//! how the board charges time.

/// Pipeline refill after a write to the PC.
pub const REFILL: u64 = 2;

/// What an instruction costs before its operands are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Alu,
    /// MLS, MSR, MRS.
    Two,
    /// Load or store of one register.
    Mem,
    /// LDRD/STRD.
    Dual,
    /// LDM/STM/PUSH/POP of this many registers.
    Multiple(u8),
    Branch,
    /// TBB/TBH.
    Table,
    Div,
    Isb,
    /// The FP and coprocessor space (not executed).
    Coproc,
}

impl Class {
    /// Core cycles: the class's count, `div` for a divide, plus the refill
    /// when the instruction wrote the PC; 1 if its condition failed.
    pub fn cycles(self, pc_written: bool, condition_failed: bool, div: u8) -> u64 {
        if condition_failed {
            return 1;
        }
        let base = match self {
            Class::Alu | Class::Branch | Class::Coproc => 1,
            Class::Two | Class::Mem | Class::Table => 2,
            Class::Dual => 3,
            Class::Multiple(n) => 1 + n as u64,
            Class::Div => div.max(2) as u64,
            Class::Isb => 1 + REFILL,
        };
        base + if pc_written { REFILL } else { 0 }
    }
}

/// Classify a Thumb encoding (`ins` is the halfword, or both halfwords
/// first << 16 | second).
pub fn classify(ins: u32, wide: bool) -> Class {
    if wide {
        classify32(ins)
    } else {
        classify16(ins as u16)
    }
}

fn classify16(i: u16) -> Class {
    match i >> 10 {
        // BX, BLX (register)
        0b010001 if i & 0xFF00 == 0x4700 => Class::Branch,
        // LDR (literal)
        0b010010 | 0b010011 => Class::Mem,
        // load/store single: 0101, 011x, 100x
        0b010100..=0b100111 => Class::Mem,
        0b101100..=0b101111 => match i >> 8 {
            // CBZ/CBNZ
            0xB1 | 0xB3 | 0xB9 | 0xBB => Class::Branch,
            // PUSH (M = LR), POP (P = PC)
            0xB4 | 0xB5 => Class::Multiple(((i & 0x1FF).count_ones()) as u8),
            0xBC | 0xBD => Class::Multiple(((i & 0x1FF).count_ones()) as u8),
            _ => Class::Alu,
        },
        // LDM/STM
        0b110000..=0b110011 => Class::Multiple((i & 0xFF).count_ones() as u8),
        // B<cond>, SVC, UDF
        0b110100..=0b110111 => Class::Branch,
        // B
        0b111000 | 0b111001 => Class::Branch,
        _ => Class::Alu,
    }
}

fn classify32(ins: u32) -> Class {
    let hw1 = ins >> 16;
    let hw2 = ins & 0xFFFF;
    match hw1 >> 9 {
        // 1110 100x: load/store multiple, dual, exclusive, table branch
        0b1110100 => {
            if hw1 & 0x40 == 0 {
                Class::Multiple((hw2 & 0xDFFF).count_ones() as u8)
            } else if hw1 & 0xFFF0 == 0xE8D0 && hw2 & 0xFFE0 == 0xF000 {
                Class::Table
            } else if hw1 & 0xFF20 == 0xE800 || hw1 & 0xFFE0 == 0xE8C0 {
                Class::Mem // LDREX/STREX (and byte/halfword forms)
            } else {
                Class::Dual
            }
        }
        0b1110101 => Class::Alu,
        0b1110110 | 0b1110111 | 0b1111110 | 0b1111111 => Class::Coproc,
        0b1111000..=0b1111011 => {
            if hw2 & 0x8000 == 0 {
                return Class::Alu; // data processing (immediate)
            }
            match hw2 & 0x5000 {
                0x1000 | 0x4000 | 0x5000 => Class::Branch, // B.W, BLX, BL
                _ => {
                    // B<cond>.W, or misc control (op = 0x38..=0x3F)
                    let op = (hw1 >> 4) & 0x3F;
                    if op & 0x38 != 0x38 {
                        Class::Branch
                    } else if hw1 & 0xFFF0 == 0xF3B0 && hw2 & 0xF0 == 0x60 {
                        Class::Isb
                    } else if matches!(hw1 & 0xFFE0, 0xF380 | 0xF3E0) {
                        Class::Two // MSR, MRS
                    } else {
                        Class::Alu // hints, DSB, DMB, CLREX
                    }
                }
            }
        }
        0b1111100 => Class::Mem,
        0b1111101 => {
            if hw1 & 0xFF80 == 0xFB00 && hw2 & 0xF0 == 0x10 && hw1 & 0x70 == 0 {
                Class::Two // MLS
            } else if matches!(hw1 & 0xFFF0, 0xFB90 | 0xFBB0) && hw2 & 0xF0 == 0xF0 {
                Class::Div
            } else {
                Class::Alu // data processing (register), multiplies
            }
        }
        _ => Class::Alu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_fall_in_the_trms_classes() {
        let c16 = |i: u16| classify(i as u32, false);
        let c32 = |i: u32| classify(i, true);
        assert_eq!(c16(0x3001), Class::Alu, "adds r0, #1");
        assert_eq!(c16(0x6811), Class::Mem, "ldr r1, [r2]");
        assert_eq!(c16(0x4A01), Class::Mem, "ldr r2, [pc, #4]");
        assert_eq!(c16(0xB5F0), Class::Multiple(5), "push {{r4-r7, lr}}");
        assert_eq!(c16(0xBDF0), Class::Multiple(5), "pop {{r4-r7, pc}}");
        assert_eq!(c16(0xC90C), Class::Multiple(2), "ldmia r1!, {{r2, r3}}");
        assert_eq!(c16(0xE7FE), Class::Branch, "b .");
        assert_eq!(c16(0xD1FC), Class::Branch, "bne");
        assert_eq!(c16(0x4770), Class::Branch, "bx lr");
        assert_eq!(c16(0xB911), Class::Branch, "cbnz r1");
        assert_eq!(c16(0xBF08), Class::Alu, "it eq");
        assert_eq!(c32(0xF000_F800), Class::Branch, "bl");
        assert_eq!(c32(0xF47F_AFFE), Class::Branch, "bne.w");
        assert_eq!(c32(0xF8D1_0DFC), Class::Mem, "ldr.w");
        assert_eq!(c32(0xE9D0_2300), Class::Dual, "ldrd r2, r3, [r0]");
        assert_eq!(c32(0xE92D_41F0), Class::Multiple(6), "push.w {{r4-r8, lr}}");
        assert_eq!(c32(0xE8DF_F001), Class::Table, "tbb [pc, r1]");
        assert_eq!(c32(0xE850_1F00), Class::Mem, "ldrex r1, [r0]");
        assert_eq!(c32(0xFB00_F001), Class::Alu, "mul.w");
        assert_eq!(c32(0xFB00_2011), Class::Two, "mls");
        assert_eq!(c32(0xFBB0_F0F1), Class::Div, "udiv");
        assert_eq!(c32(0xF3EF_8010), Class::Two, "mrs primask");
        assert_eq!(c32(0xF3BF_8F6F), Class::Isb, "isb");
        assert_eq!(c32(0xF3BF_8F4F), Class::Alu, "dsb");
        assert_eq!(c32(0xEE00_0A10), Class::Coproc, "vmov s0, r0");
        assert_eq!(c32(0xF04F_0001), Class::Alu, "mov.w r0, #1");
    }

    #[test]
    fn cycles_follow_the_table() {
        assert_eq!(Class::Branch.cycles(true, false, 0), 3);
        assert_eq!(Class::Branch.cycles(false, true, 0), 1);
        assert_eq!(
            Class::Mem.cycles(false, true, 0),
            1,
            "ldrne, condition failed"
        );
        assert_eq!(
            Class::Multiple(4).cycles(false, true, 0),
            1,
            "popne, failed"
        );
        assert_eq!(
            Class::Multiple(5).cycles(true, false, 0),
            8,
            "pop {{4 regs, pc}}"
        );
        assert_eq!(Class::Mem.cycles(false, false, 0), 2);
        assert_eq!(Class::Div.cycles(false, false, 7), 7);
    }
}

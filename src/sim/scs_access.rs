//! CPU loads and stores that reach the System Control Space
//! (0xE000_E000..0xE000_F000), routed to the board's SCS model, and word
//! loads to the PC (armagnac panics on an aligned `ldr pc, [..]`).
//!
//! armagnac maps its own SCS and MPU there (and panics on CPUID, ICSR,
//! SCR reads) and cannot be unmapped, so the CPU wrapper decodes the
//! single-register load/store forms itself (ARMv7-M A5.2.4, A5.3.7-A5.3.10)
//! and serves an access that lands in the SCS through the board's port;
//! every other address runs armagnac's instruction unchanged. Literal,
//! SP-relative, LDRD/STRD, LDM/STM and exclusive forms are not wrapped:
//! software does not address the SCS with them.

use std::cell::RefCell;
use std::rc::Rc;

use armagnac::core::{Effect, ItState, Processor, RunError};
use armagnac::decoder::DecodeError;
use armagnac::instructions::{Encoding, Instruction, Pattern};
use armagnac::memory::{Env, MemoryAccessError, MemoryInterface};

use super::align;
use super::cpu::{reg, set_reg};

pub const SCS_BASE: u32 = 0xE000_E000;
pub const SCS_SIZE: u32 = 0x1000;

pub type Port = Rc<RefCell<dyn MemoryInterface>>;

#[derive(Debug, Clone, Copy)]
enum Offset {
    /// Immediate: signed offset, P (index), W (write back).
    Imm { off: i32, index: bool, wback: bool },
    /// Register, shifted left.
    Reg { rm: u8, shift: u8 },
}

struct LoadStore {
    inner: Rc<dyn Instruction>,
    load: bool,
    size: u8,
    signed: bool,
    rt: u8,
    rn: u8,
    offset: Offset,
    port: Port,
    rules: align::Shared,
}

/// (load, size, signed, rt, rn, offset) of a single load/store encoding.
type Form = (bool, u8, bool, u8, u8, Offset);

fn decode16(ins: u32) -> Option<Form> {
    let rt = (ins & 7) as u8;
    let rn = ((ins >> 3) & 7) as u8;
    let imm5 = ((ins >> 6) & 0x1F) as i32;
    let load = ins & (1 << 11) != 0;
    let imm = |off| Offset::Imm {
        off,
        index: true,
        wback: false,
    };
    Some(match ins >> 12 {
        0b0110 => (load, 4, false, rt, rn, imm(imm5 * 4)),
        0b0111 => (load, 1, false, rt, rn, imm(imm5)),
        0b1000 => (load, 2, false, rt, rn, imm(imm5 * 2)),
        0b0101 => {
            let rm = ((ins >> 6) & 7) as u8;
            let reg = Offset::Reg { rm, shift: 0 };
            let (load, size, signed) = match (ins >> 9) & 7 {
                0 => (false, 4, false),
                1 => (false, 2, false),
                2 => (false, 1, false),
                3 => (true, 1, true),
                4 => (true, 4, false),
                5 => (true, 2, false),
                6 => (true, 1, false),
                _ => (true, 2, true),
            };
            (load, size, signed, rt, rn, reg)
        }
        _ => return None,
    })
}

fn decode32(ins: u32) -> Option<Form> {
    let hw1 = ins >> 16;
    let hw2 = ins & 0xFFFF;
    if hw1 & 0xFE00 != 0xF800 {
        return None;
    }
    let signed = hw1 & 0x100 != 0;
    let imm12 = hw1 & 0x80 != 0;
    let size = match (hw1 >> 5) & 3 {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => return None,
    };
    let load = hw1 & 0x10 != 0;
    let rn = (hw1 & 0xF) as u8;
    let rt = (hw2 >> 12) as u8;
    // Literal forms and hints (PLD/PLI) are left to armagnac; a word load
    // to the PC is ours wherever it reads (armagnac panics on it).
    let to_pc = rt == 15 && load && size == 4;
    if rn == 15 || (rt == 15 && !to_pc) || (signed && (!load || size == 4)) {
        return None;
    }
    // Stack accesses never reach the SCS: left to armagnac (host speed).
    if rn == 13 && !to_pc {
        return None;
    }
    let offset = if imm12 {
        Offset::Imm {
            off: (hw2 & 0xFFF) as i32,
            index: true,
            wback: false,
        }
    } else if hw2 & 0x800 != 0 {
        let (p, u, w) = (hw2 & 0x400 != 0, hw2 & 0x200 != 0, hw2 & 0x100 != 0);
        if !p && !w {
            return None;
        }
        let imm8 = (hw2 & 0xFF) as i32;
        Offset::Imm {
            off: if u { imm8 } else { -imm8 },
            index: p,
            wback: w,
        }
    } else if hw2 & 0xFC0 == 0 {
        Offset::Reg {
            rm: (hw2 & 0xF) as u8,
            shift: ((hw2 >> 4) & 3) as u8,
        }
    } else {
        return None;
    };
    Some((load, size, signed, rt, rn, offset))
}

/// Wrap `inner` when it is a load/store form that may address the SCS;
/// the wrapper also keeps the alignment rules of single accesses
/// ([`align::Rules::check_single`]).
pub fn wrap(
    ins: u32,
    wide: bool,
    inner: Rc<dyn Instruction>,
    port: &Port,
    rules: &align::Shared,
) -> Rc<dyn Instruction> {
    let form = if wide { decode32(ins) } else { decode16(ins) };
    match form {
        Some((load, size, signed, rt, rn, offset)) => Rc::new(LoadStore {
            inner,
            load,
            size,
            signed,
            rt,
            rn,
            offset,
            port: port.clone(),
            rules: rules.clone(),
        }),
        None => inner,
    }
}

impl Instruction for LoadStore {
    fn patterns() -> &'static [Pattern] {
        &[]
    }
    fn try_decode(_: Encoding, _: u32, _: ItState) -> Result<Self, DecodeError> {
        Err(DecodeError::Other)
    }
    fn execute(&self, proc: &mut Processor) -> Result<Effect, RunError> {
        let base = reg(proc, self.rn);
        let (addr, wback) = match self.offset {
            Offset::Imm { off, index, wback } => {
                let o = base.wrapping_add(off as u32);
                (if index { o } else { base }, wback.then_some(o))
            }
            Offset::Reg { rm, shift } => (base.wrapping_add(reg(proc, rm) << shift), None),
        };
        let in_scs = addr.wrapping_sub(SCS_BASE) < SCS_SIZE;
        if self.rt == 15 && !in_scs {
            // LoadWritePC (A2.3.1): an aligned word, then an interworking
            // branch (EXC_RETURN included, see `cpu.rs`).
            if addr & 3 != 0 {
                return Err(RunError::Unpredictable);
            }
            let v = proc.read_u32le_iface(addr)?;
            if let Some(wb) = wback {
                set_reg(proc, self.rn, wb);
            }
            proc.bx_write_pc(v)?;
            return Ok(Effect::Branch);
        }
        if self.size > 1 {
            let what = if self.load { "load" } else { "store" };
            self.rules.check_single(what, addr, self.size as u32)?;
        }
        if !in_scs {
            return self.inner.execute(proc);
        }
        if self.rt == 15 {
            return Err(RunError::Unpredictable);
        }
        let fault = |cause| {
            if self.load {
                RunError::MemRead {
                    address: addr,
                    size: self.size as u32,
                    cause,
                }
            } else {
                RunError::MemWrite {
                    address: addr,
                    size: self.size as u32,
                    value: reg(proc, self.rt),
                    cause,
                }
            }
        };
        if addr % self.size as u32 != 0 {
            return Err(fault(MemoryAccessError::InvalidAlignment));
        }
        let off = addr - SCS_BASE;
        let mut env = Env::new(0, proc.is_privileged());
        let mut port = self.port.borrow_mut();
        if self.load {
            let v = match self.size {
                1 => port.read_u8(off, &mut env).map(|v| {
                    if self.signed {
                        v as i8 as u32
                    } else {
                        v as u32
                    }
                }),
                2 => port.read_u16le(off, &mut env).map(|v| {
                    if self.signed {
                        v as i16 as u32
                    } else {
                        v as u32
                    }
                }),
                _ => port.read_u32le(off, &mut env),
            }
            .map_err(fault)?;
            drop(port);
            set_reg(proc, self.rt, v);
        } else {
            let v = reg(proc, self.rt);
            match self.size {
                1 => port.write_u8(off, v as u8, &mut env),
                2 => port.write_u16le(off, v as u16, &mut env),
                _ => port.write_u32le(off, v, &mut env),
            }
            .map_err(fault)?;
        }
        if let Some(wb) = wback {
            set_reg(proc, self.rn, wb);
        }
        Ok(Effect::None)
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
    fn decodes_the_forms_software_uses_for_the_scs() {
        // str r1, [r0, #4]
        let (load, size, _, rt, rn, off) = decode16(0x6041).unwrap();
        assert!(!load && size == 4 && rt == 1 && rn == 0);
        assert!(matches!(
            off,
            Offset::Imm {
                off: 4,
                index: true,
                wback: false
            }
        ));
        // strb r2, [r3, r1]
        let (load, size, _, rt, rn, off) = decode16(0x545A).unwrap();
        assert!(!load && size == 1 && rt == 2 && rn == 3);
        assert!(matches!(off, Offset::Reg { rm: 1, shift: 0 }));
        // ldr.w r0, [r1, #0xdfc]
        let (load, size, _, rt, rn, off) = decode32(0xF8D1_0DFC).unwrap();
        assert!(load && size == 4 && rt == 0 && rn == 1);
        assert!(matches!(off, Offset::Imm { off: 0xDFC, .. }));
        // ldr r0, [r1, #-4]!
        let (_, _, _, _, _, off) = decode32(0xF851_0D04).unwrap();
        assert!(matches!(
            off,
            Offset::Imm {
                off: -4,
                index: true,
                wback: true
            }
        ));
        // ldrsh.w r0, [r1, r2, lsl #1]
        let (load, size, signed, _, _, off) = decode32(0xF931_0012).unwrap();
        assert!(load && size == 2 && signed);
        assert!(matches!(off, Offset::Reg { rm: 2, shift: 1 }));
        // ldr r0, [pc, #8] (literal) and pld [r0] are armagnac's.
        assert!(decode32(0xF8DF_0008).is_none());
        assert!(decode32(0xF890_F000).is_none());
        // ldr pc, [sp], #4 is ours.
        let (load, size, _, rt, rn, off) = decode32(0xF85D_FB04).unwrap();
        assert!(load && size == 4 && rt == 15 && rn == 13);
        assert!(matches!(
            off,
            Offset::Imm {
                off: 4,
                index: false,
                wback: true
            }
        ));
    }
}

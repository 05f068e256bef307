//! The Cortex-M4 debug block as the debugger sees it on the private
//! peripheral bus: DHCSR/DCRSR/DCRDR/DEMCR, DFSR, FPB, DWT, DBGMCU, the ROM
//! table and the CoreSight component IDs.
//!
//! This module owns debug *register state* only. Halting, stepping and
//! register transfer are carried out by the board, which reads the
//! requests recorded here.

use super::mcu::DataWatch;

// The architecture's addresses and bits come from the one register module
// the product uses too; the board models them.
pub use crate::cortex_m::{
    demcr, dfsr, AIRCR, CPUID, DCRDR, DCRSR, DEMCR, DFSR, DHCSR, ETM_BASE, ICSR, ITM_BASE,
    ROM_TABLE, SCS_BASE, TPIU_BASE, VTOR,
};
pub const FPB_BASE: u32 = crate::cortex_m::fpb::BASE;
pub const DWT_BASE: u32 = crate::cortex_m::dwt::BASE;
pub const DBGMCU_BASE: u32 = 0xE004_2000;

pub const CPUID_CORTEX_M4_R0P1: u32 = 0x410F_C241;
pub const DBGMCU_IDCODE_F407: u32 = 0x1007_6413;

const DBGKEY: u32 = 0xA05F_0000;
pub const FPB_CODE_COMPARATORS: usize = 6;
const FPB_LITERAL_COMPARATORS: usize = 2;
pub const DWT_COMPARATORS: usize = crate::cortex_m::dwt::COMPARATORS;

/// What the board has to do after a debug-register write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugAction {
    None,
    Halt,
    Resume,
    /// A DCRSR write: transfer register `regsel`, writing if `write`.
    RegisterTransfer {
        regsel: u32,
        write: bool,
    },
    /// DWT comparators changed: re-arm the bus watchpoints.
    WatchesChanged,
    /// The write went to the armagnac-owned SCS (VTOR...).
    ForwardToCore,
}

#[derive(Debug, Clone, Default)]
pub struct DebugRegs {
    pub c_debugen: bool,
    pub c_halt: bool,
    pub c_step: bool,
    pub c_maskints: bool,
    pub dcrdr: u32,
    pub demcr: u32,
    pub dfsr: u32,
    pub fp_ctrl_enable: bool,
    pub fp_remap: u32,
    pub fp_comp: [u32; FPB_CODE_COMPARATORS + FPB_LITERAL_COMPARATORS],
    pub dwt_ctrl: u32,
    /// CYCCNT = cycles - cyccnt_base while counting.
    pub cyccnt_base: u64,
    pub dwt_comp: [u32; DWT_COMPARATORS],
    pub dwt_mask: [u32; DWT_COMPARATORS],
    pub dwt_function: [u32; DWT_COMPARATORS],
    pub dbgmcu_cr: u32,
    pub dbgmcu_apb1_fz: u32,
    pub dbgmcu_apb2_fz: u32,
    pub vtor: u32,
    pub itm: [u32; 4],
}

impl DebugRegs {
    /// Reset by SYSRESETREQ: the FPB is disabled (probe-rs relies on it), the
    /// halting-debug state survives (it is in the debug reset domain).
    pub fn system_reset(&mut self) {
        self.fp_ctrl_enable = false;
        self.vtor = 0;
    }

    /// DHCSR's control bits as last written (C_DEBUGEN, C_HALT, C_STEP,
    /// C_MASKINTS, bits 0-3): what software reads of DHCSR; the debugger's
    /// read adds the status bits, which only the board knows.
    pub fn dhcsr_control(&self) -> u32 {
        self.c_debugen as u32
            | (self.c_halt as u32) << 1
            | (self.c_step as u32) << 2
            | (self.c_maskints as u32) << 3
    }

    /// FPB breakpoint addresses currently armed (FPBv1 REPLACE encoding).
    pub fn fpb_breakpoints(&self) -> impl Iterator<Item = u32> + '_ {
        let enabled = self.fp_ctrl_enable && self.c_debugen;
        self.fp_comp[..FPB_CODE_COMPARATORS]
            .iter()
            .filter(move |&&c| enabled && c & 1 != 0)
            .flat_map(|&c| {
                let base = c & 0x1FFF_FFFC;
                let lo = (c >> 30) & 1 != 0;
                let hi = (c >> 31) & 1 != 0;
                [lo.then_some(base), hi.then_some(base + 2)]
                    .into_iter()
                    .flatten()
            })
    }

    /// DWT data comparators as bus watches (function 5 read, 6 write, 7 both).
    pub fn data_watches(&self) -> [Option<DataWatch>; 4] {
        let mut out = [None; 4];
        if self.demcr & demcr::TRCENA == 0 {
            return out;
        }
        for (i, slot) in out.iter_mut().enumerate() {
            let f = self.dwt_function[i] & 0xF;
            let (on_read, on_write) = match f {
                5 => (true, false),
                6 => (false, true),
                7 => (true, true),
                _ => continue,
            };
            *slot = Some(DataWatch {
                address: self.dwt_comp[i],
                mask_bits: self.dwt_mask[i] & 0x1F,
                on_read,
                on_write,
            });
        }
        out
    }

    /// Read a debug-block register (not DHCSR, which the board composes).
    /// `None` means the address is not a debug register.
    pub fn read(&self, addr: u32, cycles: u64) -> Option<u32> {
        Some(match addr {
            DCRDR => self.dcrdr,
            DEMCR => self.demcr,
            DFSR => self.dfsr,
            CPUID => CPUID_CORTEX_M4_R0P1,
            VTOR => self.vtor,
            DCRSR => 0,
            // FPB
            a if (FPB_BASE..FPB_BASE + 0x1000).contains(&a) => match a - FPB_BASE {
                0x000 => {
                    // NUM_CODE = 6, NUM_LIT = 2, REV 0 (FPBv1).
                    (FPB_CODE_COMPARATORS as u32) << 4
                        | (FPB_LITERAL_COMPARATORS as u32) << 8
                        | self.fp_ctrl_enable as u32
                }
                0x004 => self.fp_remap,
                o @ 0x008..=0x024 => self.fp_comp[((o - 8) / 4) as usize],
                o => component_id(o, [0x03, 0xB0, 0x2B, 0x00, 0x04], 0xE).unwrap_or(0),
            },
            // DWT
            a if (DWT_BASE..DWT_BASE + 0x1000).contains(&a) => match a - DWT_BASE {
                0x000 => (DWT_COMPARATORS as u32) << 28 | self.dwt_ctrl & 0x0FFF_FFFF,
                0x004 => self.cyccnt(cycles),
                0x008..=0x018 => 0,
                0x01C => 0, // PCSR
                o @ 0x020..=0x05C => {
                    let i = ((o - 0x20) / 16) as usize;
                    match (o - 0x20) % 16 {
                        0 => self.dwt_comp[i],
                        4 => self.dwt_mask[i],
                        8 => self.dwt_function[i],
                        _ => 0,
                    }
                }
                o => component_id(o, [0x02, 0xB0, 0x3B, 0x00, 0x04], 0xE).unwrap_or(0),
            },
            a if (ITM_BASE..ITM_BASE + 0x1000).contains(&a) => match a - ITM_BASE {
                0xE00 => self.itm[0],
                0xE40 => self.itm[1],
                0xE80 => self.itm[2],
                o if o < 0x80 => 1, // stimulus ports ready
                o => component_id(o, [0x01, 0xB0, 0x3B, 0x00, 0x04], 0xE).unwrap_or(0),
            },
            a if (TPIU_BASE..TPIU_BASE + 0x1000).contains(&a) => {
                component_id(a - TPIU_BASE, [0xA1, 0xB9, 0x0B, 0x00, 0x04], 0x9).unwrap_or(0)
            }
            a if (ETM_BASE..ETM_BASE + 0x1000).contains(&a) => {
                component_id(a - ETM_BASE, [0x25, 0xB9, 0x4B, 0x00, 0x04], 0x9).unwrap_or(0)
            }
            a if (DBGMCU_BASE..DBGMCU_BASE + 0x10).contains(&a) => match a - DBGMCU_BASE {
                0x0 => DBGMCU_IDCODE_F407,
                0x4 => self.dbgmcu_cr,
                0x8 => self.dbgmcu_apb1_fz,
                _ => self.dbgmcu_apb2_fz,
            },
            a if (ROM_TABLE..ROM_TABLE + 0x1000).contains(&a) => rom_table(a - ROM_TABLE)?,
            a if (SCS_BASE + 0xFD0..SCS_BASE + 0x1000).contains(&a) => {
                component_id(a - SCS_BASE, [0x0C, 0xB0, 0x0B, 0x00, 0x04], 0xE)?
            }
            _ => return None,
        })
    }

    /// Write a debug-block register; `None` if not a debug register.
    pub fn write(&mut self, addr: u32, value: u32, cycles: u64) -> Option<DebugAction> {
        Some(match addr {
            DHCSR => {
                if value & 0xFFFF_0000 != DBGKEY {
                    return Some(DebugAction::None);
                }
                self.c_debugen = value & 1 != 0;
                let halt = self.c_debugen && value & 2 != 0;
                self.c_step = self.c_debugen && value & 4 != 0;
                self.c_maskints = self.c_debugen && value & 8 != 0;
                let was = self.c_halt;
                self.c_halt = halt;
                match (was, halt) {
                    (false, true) => DebugAction::Halt,
                    (true, false) => DebugAction::Resume,
                    (false, false) if self.c_step => DebugAction::Resume,
                    _ => DebugAction::None,
                }
            }
            DCRSR => DebugAction::RegisterTransfer {
                regsel: value & 0x7F,
                write: value & (1 << 16) != 0,
            },
            DCRDR => {
                self.dcrdr = value;
                DebugAction::None
            }
            DEMCR => {
                self.keep_cyccnt(cycles, |d| d.demcr = value & 0x010F_07F1);
                DebugAction::WatchesChanged
            }
            DFSR => {
                self.dfsr &= !value;
                DebugAction::None
            }
            VTOR => {
                self.vtor = value & 0xFFFF_FF80;
                DebugAction::ForwardToCore
            }
            a if (FPB_BASE..FPB_BASE + 0x1000).contains(&a) => {
                match a - FPB_BASE {
                    0x000 if value & 2 != 0 => self.fp_ctrl_enable = value & 1 != 0,
                    0x004 => self.fp_remap = value & 0x1FFF_FFE0,
                    o @ 0x008..=0x024 => self.fp_comp[((o - 8) / 4) as usize] = value,
                    _ => {}
                }
                DebugAction::None
            }
            a if (DWT_BASE..DWT_BASE + 0x1000).contains(&a) => {
                match a - DWT_BASE {
                    0x000 => self.keep_cyccnt(cycles, |d| d.dwt_ctrl = value & 0x0FFF_FFFF),
                    // While stopped, `cyccnt_base` holds the frozen count.
                    0x004 if self.cyccnt_counting() => {
                        self.cyccnt_base = cycles.wrapping_sub(value as u64)
                    }
                    0x004 => self.cyccnt_base = value as u64,
                    o @ 0x020..=0x05C => {
                        let i = ((o - 0x20) / 16) as usize;
                        match (o - 0x20) % 16 {
                            0 => self.dwt_comp[i] = value,
                            4 => self.dwt_mask[i] = value & 0x1F,
                            8 => self.dwt_function[i] = value & 0x000F_0DBF,
                            _ => {}
                        }
                    }
                    _ => {}
                }
                DebugAction::WatchesChanged
            }
            a if (ITM_BASE..ITM_BASE + 0x1000).contains(&a) => {
                match a - ITM_BASE {
                    0xE00 => self.itm[0] = value,
                    0xE40 => self.itm[1] = value,
                    0xE80 => self.itm[2] = value,
                    _ => {}
                }
                DebugAction::None
            }
            a if (TPIU_BASE..ETM_BASE + 0x1000).contains(&a) => DebugAction::None,
            a if (DBGMCU_BASE..DBGMCU_BASE + 0x10).contains(&a) => {
                match a - DBGMCU_BASE {
                    0x4 => self.dbgmcu_cr = value & 0xE7,
                    0x8 => self.dbgmcu_apb1_fz = value,
                    0xC => self.dbgmcu_apb2_fz = value,
                    _ => {}
                }
                DebugAction::None
            }
            a if (ROM_TABLE..ROM_TABLE + 0x1000).contains(&a) => DebugAction::None,
            _ => return None,
        })
    }

    /// CYCCNT counts with DWT_CTRL.CYCCNTENA and DEMCR.TRCENA both set
    /// (ARMv7-M C1.8.7: TRCENA enables the DWT).
    fn cyccnt_counting(&self) -> bool {
        self.dwt_ctrl & 1 != 0 && self.demcr & demcr::TRCENA != 0
    }

    /// Apply `change` to DWT_CTRL or DEMCR keeping CYCCNT's value: it
    /// freezes or resumes counting from where it was.
    fn keep_cyccnt(&mut self, cycles: u64, change: impl FnOnce(&mut Self)) {
        let was = self.cyccnt_counting();
        let count = self.cyccnt(cycles);
        change(self);
        match (was, self.cyccnt_counting()) {
            (false, true) => self.cyccnt_base = cycles.wrapping_sub(count as u64),
            (true, false) => self.cyccnt_base = count as u64,
            _ => {}
        }
    }

    fn cyccnt(&self, cycles: u64) -> u32 {
        if self.cyccnt_counting() {
            cycles.wrapping_sub(self.cyccnt_base) as u32
        } else {
            self.cyccnt_base as u32
        }
    }

    /// Mark DWT comparator `i` as matched (DWT_FUNCTION.MATCHED).
    pub fn dwt_matched(&mut self, i: usize) {
        if let Some(f) = self.dwt_function.get_mut(i) {
            *f |= 1 << 24;
        }
    }

    /// DWT_FUNCTION reads clear MATCHED.
    pub fn clear_matched_on_read(&mut self, addr: u32) {
        if (DWT_BASE + 0x28..DWT_BASE + 0x60).contains(&addr) && (addr - DWT_BASE - 0x28) % 16 == 0
        {
            let i = ((addr - DWT_BASE - 0x28) / 16) as usize;
            self.dwt_function[i] &= !(1 << 24);
        }
    }
}

/// CoreSight peripheral and component ID registers at 0xFD0..0xFFC of a
/// 4 KiB component. `pid` is PIDR0..PIDR4, `class` the CIDR1 component class.
fn component_id(offset: u32, pid: [u8; 5], class: u8) -> Option<u32> {
    Some(match offset {
        0xFD0 => pid[4] as u32,
        0xFD4..=0xFDC => 0,
        0xFE0 => pid[0] as u32,
        0xFE4 => pid[1] as u32,
        0xFE8 => pid[2] as u32,
        0xFEC => pid[3] as u32,
        0xFF0 => 0x0D,
        0xFF4 => (class as u32) << 4,
        0xFF8 => 0x05,
        0xFFC => 0xB1,
        _ => return None,
    })
}

/// The Cortex-M4 ROM table: SCS, DWT, FPB, ITM, TPIU, ETM.
fn rom_table(offset: u32) -> Option<u32> {
    let entry = |target: u32| target.wrapping_sub(ROM_TABLE) | 0b11;
    Some(match offset {
        0x000 => entry(SCS_BASE),
        0x004 => entry(DWT_BASE),
        0x008 => entry(FPB_BASE),
        0x00C => entry(ITM_BASE),
        0x010 => entry(TPIU_BASE),
        // The STM32F407 has an ETM (RM0090, debug chapter); the Cortex-M ROM
        // table entry reads 0xFFF42003 when it is present.
        0x014 => entry(ETM_BASE),
        0x018..=0xFC8 => 0,
        0xFCC => 1, // MEMTYPE: system memory present
        // ST's ROM table: JEP106 ST (0x20), part 0x413.
        o => component_id(o, [0x13, 0x04, 0x0A, 0x00, 0x00], 0x1)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcsr_write_without_key_is_ignored() {
        let mut d = DebugRegs::default();
        assert_eq!(d.write(DHCSR, 0x0000_0003, 0), Some(DebugAction::None));
        assert!(!d.c_halt && !d.c_debugen);
        assert_eq!(d.write(DHCSR, DBGKEY | 3, 0), Some(DebugAction::Halt));
    }

    #[test]
    fn fpb_v1_replace_encodes_halfword() {
        let mut d = DebugRegs {
            c_debugen: true,
            ..Default::default()
        };
        d.write(FPB_BASE, 3, 0);
        d.write(FPB_BASE + 8, 0x4000_0000 | 0x0800_0100 | 1, 0);
        d.write(FPB_BASE + 12, 0x8000_0000 | 0x0800_0200 | 1, 0);
        let bps: Vec<u32> = d.fpb_breakpoints().collect();
        assert_eq!(bps, vec![0x0800_0100, 0x0800_0202]);
    }

    #[test]
    fn rom_table_points_at_scs_and_has_class_1_cid() {
        let scs = rom_table(0).unwrap();
        assert_eq!(ROM_TABLE.wrapping_add(scs & !3), SCS_BASE);
        assert_eq!(rom_table(0xFF4), Some(0x10));
    }

    #[test]
    fn cyccnt_counts_only_when_enabled() {
        let mut d = DebugRegs::default();
        d.write(DEMCR, demcr::TRCENA, 0);
        d.write(DWT_BASE + 4, 100, 1000);
        assert_eq!(d.read(DWT_BASE + 4, 5000), Some(100));
        d.write(DWT_BASE, 1, 5000);
        assert_eq!(d.read(DWT_BASE + 4, 5100), Some(200));
    }

    #[test]
    fn cyccnt_needs_trcena_and_keeps_its_count_across_it() {
        let mut d = DebugRegs::default();
        d.write(DWT_BASE, 1, 0); // CYCCNTENA without TRCENA
        assert_eq!(d.read(DWT_BASE + 4, 1000), Some(0), "silicon needs TRCENA");
        d.write(DEMCR, demcr::TRCENA, 1000);
        assert_eq!(d.read(DWT_BASE + 4, 1500), Some(500));
        d.write(DEMCR, 0, 1500);
        assert_eq!(d.read(DWT_BASE + 4, 9000), Some(500), "frozen");
        d.write(DEMCR, demcr::TRCENA, 9000);
        assert_eq!(d.read(DWT_BASE + 4, 9010), Some(510));
    }
}

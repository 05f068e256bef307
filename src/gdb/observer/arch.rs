//! The observer's register file: the Cortex-M4F's, or unavailable.
//!
//! RSP lets a `g` reply mark a register unavailable with `xx` for each of
//! its bytes; GDB then shows `<unavailable>` instead of failing the
//! connection as it does on an `E` reply (it still refuses to connect
//! without a program counter). An observer's registers are unavailable
//! only when the probe worker does not answer in time.

use gdbstub::arch::{Arch, Registers};
use gdbstub_arch::arm::ArmBreakpointKind;

use crate::gdb::arch::{CortexMRegId, CortexMRegs, G_PACKET_LEN};

/// Marker type: [`crate::gdb::arch::CortexM4F`] with unavailable registers.
pub enum ObserverArch {}

impl Arch for ObserverArch {
    type Usize = u32;
    type Registers = ObservedRegs;
    type RegId = CortexMRegId;
    type BreakpointKind = ArmBreakpointKind;

    fn target_description_xml() -> Option<&'static str> {
        Some(crate::gdb::tdesc::TARGET_XML)
    }
}

/// The registers as observed: `None` when the worker did not answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ObservedRegs(pub Option<CortexMRegs>);

impl Registers for ObservedRegs {
    type ProgramCounter = u32;

    fn pc(&self) -> u32 {
        self.0.as_ref().map_or(0, |r| r.pc)
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        match &self.0 {
            Some(regs) => regs.gdb_serialize(write_byte),
            None => (0..G_PACKET_LEN).for_each(|_| write_byte(None)),
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let mut regs = CortexMRegs::default();
        regs.gdb_deserialize(bytes)?;
        self.0 = Some(regs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialize(regs: &ObservedRegs) -> String {
        let mut out = String::new();
        regs.gdb_serialize(|b| match b {
            Some(b) => out.push_str(&format!("{b:02x}")),
            None => out.push_str("xx"),
        });
        out
    }

    #[test]
    fn unavailable_registers_are_all_xx_with_the_g_packet_length() {
        let g = serialize(&ObservedRegs(None));
        assert_eq!(g.len(), G_PACKET_LEN * 2);
        assert!(g.chars().all(|c| c == 'x'), "{g}");
    }

    #[test]
    fn known_registers_serialize_as_the_controllers_do() {
        let mut v = vec![0u64; CortexMRegId::COUNT];
        v[15] = 0x0800_0141;
        v[CortexMRegId::D0] = 0x1122_3344_5566_7788;
        let regs = CortexMRegs::from_values(&v);
        assert_eq!(regs.pc, 0x0800_0141);
        let g = serialize(&ObservedRegs(Some(regs.clone())));
        let mut want = String::new();
        regs.gdb_serialize(|b| want.push_str(&format!("{:02x}", b.unwrap())));
        assert_eq!(g, want);
        assert_eq!(&g[15 * 8..16 * 8], "41010008", "pc little-endian");
        assert_eq!(&g[17 * 8..17 * 8 + 16], "8877665544332211", "d0");
    }
}

//! The Cortex-M4F register file as GDB sees it: a custom gdbstub [`Arch`]
//! whose register numbers follow the `regnum`s of our target description
//! (see `tdesc.rs`), so `g`/`G`/`p`/`P` all agree with it.
//!
//! Pure data: no probe access here. `base.rs` maps these registers onto
//! probe-rs register ids (`cortex_m::regsel`).

use core::num::NonZeroUsize;

use gdbstub::arch::{Arch, RegId, Registers};
use gdbstub_arch::arm::ArmBreakpointKind;

/// Marker type for the Cortex-M4F architecture.
pub enum CortexM4F {}

impl Arch for CortexM4F {
    type Usize = u32;
    type Registers = CortexMRegs;
    type RegId = CortexMRegId;
    type BreakpointKind = ArmBreakpointKind;

    fn target_description_xml() -> Option<&'static str> {
        Some(super::tdesc::TARGET_XML)
    }
}

/// Every register in target-description order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CortexMRegs {
    /// r0..r12
    pub r: [u32; 13],
    pub sp: u32,
    pub lr: u32,
    pub pc: u32,
    pub xpsr: u32,
    /// d0..d15; d_n = s_2n | s_2n+1 << 32.
    pub d: [u64; 16],
    pub fpscr: u32,
    pub msp: u32,
    pub psp: u32,
    pub primask: u32,
    pub basepri: u32,
    pub faultmask: u32,
    pub control: u32,
}

/// Size of a `g` packet body in bytes.
pub const G_PACKET_LEN: usize = 17 * 4 + 16 * 8 + 7 * 4;

impl CortexMRegs {
    /// Build d-registers from probe-rs's single-precision view.
    #[cfg(test)]
    pub fn set_s(&mut self, s: &[u32; 32]) {
        for (n, d) in self.d.iter_mut().enumerate() {
            *d = d_from_s(s[2 * n], s[2 * n + 1]);
        }
    }

    /// Registers from values indexed by GDB register number (d registers
    /// as 64-bit values); missing entries read as 0.
    pub fn from_values(v: &[u64]) -> CortexMRegs {
        let at = |n: usize| v.get(n).copied().unwrap_or(0);
        let w = |n: usize| at(n) as u32;
        let m = CortexMRegId::MSP;
        CortexMRegs {
            r: std::array::from_fn(w),
            sp: w(13),
            lr: w(14),
            pc: w(15),
            xpsr: w(CortexMRegId::XPSR),
            d: std::array::from_fn(|n| at(CortexMRegId::D0 + n)),
            fpscr: w(CortexMRegId::FPSCR),
            msp: w(m),
            psp: w(m + 1),
            primask: w(m + 2),
            basepri: w(m + 3),
            faultmask: w(m + 4),
            control: w(m + 5),
        }
    }

    /// The single-precision view of d0..d15.
    #[cfg(test)]
    pub fn s(&self) -> [u32; 32] {
        let mut s = [0; 32];
        for (n, d) in self.d.iter().enumerate() {
            (s[2 * n], s[2 * n + 1]) = s_from_d(*d);
        }
        s
    }

    /// Every 32-bit word of a `g` packet in order; 64-bit registers are
    /// split low word first (little-endian target).
    fn words(&self) -> impl Iterator<Item = u32> + '_ {
        let head = self
            .r
            .iter()
            .copied()
            .chain([self.sp, self.lr, self.pc, self.xpsr]);
        let d = self.d.iter().flat_map(|d| {
            let (lo, hi) = s_from_d(*d);
            [lo, hi]
        });
        let tail = [
            self.fpscr,
            self.msp,
            self.psp,
            self.primask,
            self.basepri,
            self.faultmask,
            self.control,
        ];
        head.chain(d).chain(tail)
    }
}

/// d_n from its two single-precision halves (little-endian register pair).
pub fn d_from_s(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | u64::from(hi) << 32
}

/// The (s_2n, s_2n+1) halves of d_n.
pub fn s_from_d(d: u64) -> (u32, u32) {
    (d as u32, (d >> 32) as u32)
}

impl Registers for CortexMRegs {
    type ProgramCounter = u32;

    fn pc(&self) -> u32 {
        self.pc
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        for word in self.words() {
            for b in word.to_le_bytes() {
                write_byte(Some(b));
            }
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if bytes.len() != G_PACKET_LEN {
            return Err(());
        }
        let mut w = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let mut next = || w.next().ok_or(());
        for r in self.r.iter_mut() {
            *r = next()?;
        }
        self.sp = next()?;
        self.lr = next()?;
        self.pc = next()?;
        self.xpsr = next()?;
        for d in self.d.iter_mut() {
            let lo = next()?;
            let hi = next()?;
            *d = d_from_s(lo, hi);
        }
        self.fpscr = next()?;
        self.msp = next()?;
        self.psp = next()?;
        self.primask = next()?;
        self.basepri = next()?;
        self.faultmask = next()?;
        self.control = next()?;
        Ok(())
    }
}

/// A register by its GDB number (the `regnum` in our target description).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CortexMRegId {
    /// r0..r12, sp (13), lr (14), pc (15)
    Core(u8),
    Xpsr,
    /// d0..d15
    D(u8),
    Fpscr,
    Msp,
    Psp,
    Primask,
    Basepri,
    Faultmask,
    Control,
}

impl CortexMRegId {
    pub const XPSR: usize = 16;
    pub const D0: usize = 17;
    pub const FPSCR: usize = 33;
    pub const MSP: usize = 34;
    /// One past the last register number.
    pub const COUNT: usize = 40;

    pub fn from_regnum(n: usize) -> Option<Self> {
        Some(match n {
            0..=15 => Self::Core(n as u8),
            Self::XPSR => Self::Xpsr,
            17..=32 => Self::D((n - Self::D0) as u8),
            Self::FPSCR => Self::Fpscr,
            34 => Self::Msp,
            35 => Self::Psp,
            36 => Self::Primask,
            37 => Self::Basepri,
            38 => Self::Faultmask,
            39 => Self::Control,
            _ => return None,
        })
    }

    pub fn regnum(self) -> usize {
        match self {
            Self::Core(n) => n as usize,
            Self::Xpsr => Self::XPSR,
            Self::D(n) => Self::D0 + n as usize,
            Self::Fpscr => Self::FPSCR,
            Self::Msp => 34,
            Self::Psp => 35,
            Self::Primask => 36,
            Self::Basepri => 37,
            Self::Faultmask => 38,
            Self::Control => 39,
        }
    }

    /// Size in bytes on the wire.
    pub fn size(self) -> usize {
        match self {
            Self::D(_) => 8,
            _ => 4,
        }
    }

    /// Name used in the target description and error messages.
    pub fn name(self) -> String {
        match self {
            Self::Core(13) => "sp".into(),
            Self::Core(14) => "lr".into(),
            Self::Core(15) => "pc".into(),
            Self::Core(n) => format!("r{n}"),
            Self::Xpsr => "xpsr".into(),
            Self::D(n) => format!("d{n}"),
            Self::Fpscr => "fpscr".into(),
            Self::Msp => "msp".into(),
            Self::Psp => "psp".into(),
            Self::Primask => "primask".into(),
            Self::Basepri => "basepri".into(),
            Self::Faultmask => "faultmask".into(),
            Self::Control => "control".into(),
        }
    }
}

impl RegId for CortexMRegId {
    fn from_raw_id(id: usize) -> Option<(Self, Option<NonZeroUsize>)> {
        let reg = Self::from_regnum(id)?;
        Some((reg, NonZeroUsize::new(reg.size())))
    }

    fn to_raw_id(&self) -> Option<usize> {
        Some(self.regnum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialize(regs: &CortexMRegs) -> Vec<u8> {
        let mut out = Vec::new();
        regs.gdb_serialize(|b| out.push(b.unwrap()));
        out
    }

    fn sample() -> CortexMRegs {
        let mut regs = CortexMRegs::default();
        for (i, r) in regs.r.iter_mut().enumerate() {
            *r = 0x1000_0000 + i as u32;
        }
        regs.sp = 0x2001_FFF0;
        regs.lr = 0x0800_0123;
        regs.pc = 0x0800_0400;
        regs.xpsr = 0x0100_0000;
        let mut s = [0u32; 32];
        for (i, v) in s.iter_mut().enumerate() {
            *v = 0x3F80_0000 + i as u32;
        }
        regs.set_s(&s);
        regs.fpscr = 0x0300_0000;
        regs.msp = 0x2002_0000;
        regs.psp = 0x2001_0000;
        regs.primask = 1;
        regs.basepri = 0x40;
        regs.faultmask = 0;
        regs.control = 2;
        regs
    }

    #[test]
    fn d_register_is_even_s_low_odd_s_high() {
        let mut regs = CortexMRegs::default();
        let mut s = [0u32; 32];
        s[2] = 0x0000_0000;
        s[3] = 0x3FF0_0000; // d1 = 1.0
        s[30] = 0xAAAA_AAAA;
        s[31] = 0x5555_5555;
        regs.set_s(&s);
        assert_eq!(f64::from_bits(regs.d[1]), 1.0);
        assert_eq!(regs.d[15], 0x5555_5555_AAAA_AAAA);
        assert_eq!(regs.s(), s);
    }

    #[test]
    fn g_packet_layout_matches_tdesc_order() {
        let regs = sample();
        let bytes = serialize(&regs);
        assert_eq!(bytes.len(), G_PACKET_LEN);
        // r0 first, little-endian.
        assert_eq!(&bytes[0..4], &0x1000_0000u32.to_le_bytes());
        // pc is register 15, xpsr 16.
        assert_eq!(&bytes[60..64], &0x0800_0400u32.to_le_bytes());
        assert_eq!(&bytes[64..68], &0x0100_0000u32.to_le_bytes());
        // d0 at 68, 8 bytes little-endian: s0 then s1.
        assert_eq!(&bytes[68..76], &regs.d[0].to_le_bytes());
        assert_eq!(&bytes[68..72], &0x3F80_0000u32.to_le_bytes());
        // fpscr right after d15, then msp..control.
        let fpscr = 68 + 16 * 8;
        assert_eq!(&bytes[fpscr..fpscr + 4], &0x0300_0000u32.to_le_bytes());
        assert_eq!(&bytes[fpscr + 4..fpscr + 8], &0x2002_0000u32.to_le_bytes());
        assert_eq!(&bytes[G_PACKET_LEN - 4..], &2u32.to_le_bytes());
    }

    #[test]
    fn g_packet_roundtrips() {
        let regs = sample();
        let bytes = serialize(&regs);
        let mut back = CortexMRegs::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, regs);
    }

    #[test]
    fn invalid_g_packet_length_is_rejected() {
        let bytes = serialize(&sample());
        let mut regs = CortexMRegs::default();
        assert!(regs.gdb_deserialize(&bytes[..bytes.len() - 4]).is_err());
        let mut long = bytes.clone();
        long.extend_from_slice(&[0; 4]);
        assert!(regs.gdb_deserialize(&long).is_err());
    }

    #[test]
    fn regnums_roundtrip_with_sizes() {
        for n in 0..CortexMRegId::COUNT {
            let (id, size) = CortexMRegId::from_raw_id(n).unwrap();
            assert_eq!(id.regnum(), n);
            assert_eq!(
                size.unwrap().get(),
                if (17..=32).contains(&n) { 8 } else { 4 }
            );
        }
        assert!(CortexMRegId::from_raw_id(CortexMRegId::COUNT).is_none());
        assert_eq!(CortexMRegId::from_regnum(13).unwrap().name(), "sp");
        assert_eq!(CortexMRegId::from_regnum(32).unwrap().name(), "d15");
    }
}

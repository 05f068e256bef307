//! Registers and memory (`g`/`G`/`p`/`P`/`m`/`M`/`X`).
//!
//! Reads of the external-flash window go through the SPI stub (and its
//! cache), never to the core: on the F407, 0x90000000 is FSMC bank 4 and a
//! bus read there faults. `M`/`X` into the window get an `E` reply: the
//! chip is only written by `load` (`vFlashWrite`).
//!
//! Memory accesses use 32-bit transfers for the aligned middle and bytes at
//! unaligned edges ([`access_pieces`]), so a 4-byte aligned read of a
//! peripheral register is one 32-bit bus access as the hardware expects.
//! Never 16-bit: probe-rs 0.32's ST-Link driver steps 16-bit addresses
//! wrongly.

use gdbstub::target::ext::base::single_register_access::{
    SingleRegisterAccess, SingleRegisterAccessOps,
};
use gdbstub::target::ext::base::singlethread::{SingleThreadBase, SingleThreadResumeOps};
use gdbstub::target::{TargetError, TargetResult};
use probe_rs::{Core, MemoryInterface, RegisterId};

use super::arch::{CortexMRegId, CortexMRegs};
use super::{to_target_error, GdbError, GdbTarget};
use crate::cortex_m::regsel;

/// Where a GDB register lives in probe-rs: a whole register, or one byte of
/// the packed CONTROL/FAULTMASK/BASEPRI/PRIMASK word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegLocation {
    Word(u16),
    /// d_n: two single-precision registers, low half first.
    Pair(u16),
    ExtraByte(u32),
}

pub(crate) fn location(reg: CortexMRegId) -> RegLocation {
    match reg {
        CortexMRegId::Core(n) => RegLocation::Word(n.into()),
        CortexMRegId::Xpsr => RegLocation::Word(regsel::XPSR),
        CortexMRegId::D(n) => RegLocation::Pair(regsel::S0 + 2 * u16::from(n)),
        CortexMRegId::Fpscr => RegLocation::Word(regsel::FPSCR),
        CortexMRegId::Msp => RegLocation::Word(regsel::MSP),
        CortexMRegId::Psp => RegLocation::Word(regsel::PSP),
        CortexMRegId::Primask => RegLocation::ExtraByte(0),
        CortexMRegId::Basepri => RegLocation::ExtraByte(1),
        CortexMRegId::Faultmask => RegLocation::ExtraByte(2),
        CortexMRegId::Control => RegLocation::ExtraByte(3),
    }
}

/// Replace byte `index` of the packed special-register word.
pub(crate) fn set_extra_byte(extra: u32, index: u32, value: u32) -> u32 {
    let shift = index * 8;
    (extra & !(0xFF << shift)) | ((value & 0xFF) << shift)
}

fn read_word(core: &mut Core<'_>, sel: u16, name: &dyn Fn() -> String) -> Result<u32, GdbError> {
    core.read_core_reg::<u32>(RegisterId(sel))
        .map_err(|source| GdbError::RegisterRead {
            register: name(),
            source,
        })
}

fn write_word(
    core: &mut Core<'_>,
    sel: u16,
    value: u32,
    name: &dyn Fn() -> String,
) -> Result<(), GdbError> {
    core.write_core_reg(RegisterId(sel), value)
        .map_err(|source| GdbError::RegisterWrite {
            register: name(),
            source,
        })
}

/// Read one register as its wire value (d registers are 64-bit).
pub(crate) fn read_reg(core: &mut Core<'_>, reg: CortexMRegId) -> Result<u64, GdbError> {
    let name = || reg.name();
    Ok(match location(reg) {
        RegLocation::Word(sel) => read_word(core, sel, &name)?.into(),
        RegLocation::Pair(sel) => {
            let lo = read_word(core, sel, &name)?;
            let hi = read_word(core, sel + 1, &name)?;
            super::arch::d_from_s(lo, hi)
        }
        RegLocation::ExtraByte(i) => {
            u64::from((read_word(core, regsel::EXTRA, &name)? >> (i * 8)) & 0xFF)
        }
    })
}

pub(crate) fn write_reg(
    core: &mut Core<'_>,
    reg: CortexMRegId,
    value: u64,
) -> Result<(), GdbError> {
    let name = || reg.name();
    match location(reg) {
        RegLocation::Word(sel) => write_word(core, sel, value as u32, &name),
        RegLocation::Pair(sel) => {
            let (lo, hi) = super::arch::s_from_d(value);
            write_word(core, sel, lo, &name)?;
            write_word(core, sel + 1, hi, &name)
        }
        RegLocation::ExtraByte(i) => {
            let extra = read_word(core, regsel::EXTRA, &name)?;
            write_word(
                core,
                regsel::EXTRA,
                set_extra_byte(extra, i, value as u32),
                &name,
            )
        }
    }
}

fn check_range(address: u32, len: usize) -> Result<(), GdbError> {
    if u64::from(address) + len as u64 > 1 << 32 {
        return Err(GdbError::MemoryWraps { address, len });
    }
    Ok(())
}

/// How a memory access is cut into probe accesses: bytes up to the first
/// word boundary, words, then the remaining bytes, as `(offset, len,
/// width)` with width 4 or 1. Never 16-bit: probe-rs 0.32's ST-Link
/// `read_16`/`write_16` step their addresses wrongly.
pub fn access_pieces(address: u32, len: usize) -> Vec<(usize, usize, usize)> {
    let head = ((4 - address as usize % 4) % 4).min(len);
    let body = (len - head) & !3;
    let tail = len - head - body;
    if body == 0 {
        return if len == 0 { vec![] } else { vec![(0, len, 1)] };
    }
    [(0, head, 1), (head, body, 4), (head + body, tail, 1)]
        .into_iter()
        .filter(|p| p.1 > 0)
        .collect()
}

pub(crate) fn read_memory(
    t: &mut GdbTarget,
    address: u32,
    data: &mut [u8],
) -> Result<(), GdbError> {
    check_range(address, data.len())?;
    if t.stub_session_conflicts(address, data.len(), false) {
        t.end_stub_session()?;
    }
    read_core_memory(&mut t.core()?, address, data)?;
    // While the stub runs, the work area holds its bytes: GDB sees the
    // application's.
    if let Some(ext) = t.ext.as_ref() {
        ext.overlay_saved(address, data);
    }
    Ok(())
}

/// Read memory through the probe (never the window: see the module doc).
/// probe-rs reads a running core's memory over the debug port, so this
/// needs no halt.
pub(crate) fn read_core_memory(
    core: &mut Core<'_>,
    address: u32,
    data: &mut [u8],
) -> Result<(), GdbError> {
    check_range(address, data.len())?;
    let len = data.len();
    access_pieces(address, len)
        .into_iter()
        .try_for_each(|(off, n, width)| {
            let addr = u64::from(address) + off as u64;
            let piece = &mut data[off..off + n];
            if width == 4 {
                let mut words = vec![0u32; n / 4];
                core.read_32(addr, &mut words)?;
                for (chunk, w) in piece.chunks_exact_mut(4).zip(words) {
                    chunk.copy_from_slice(&w.to_le_bytes());
                }
                Ok(())
            } else {
                core.read_8(addr, piece)
            }
        })
        .map_err(|source| GdbError::MemoryRead {
            address,
            len,
            source,
        })
}

/// The first byte of `addr..addr+len` that lies past the end of the
/// window but within the 16 MiB a 3-byte-address chip could span from its
/// base, outside every board region: nothing answers there (a bus access
/// faults), so the access is refused by name instead. `None` when the
/// chip's size is not known (the window may still grow when it is probed).
pub(crate) fn past_window_end(
    addr: u32,
    len: usize,
    window: Option<std::ops::Range<u64>>,
    regions: &[crate::board::Region],
) -> Option<u32> {
    let w = window.filter(|_| len > 0)?;
    let span_end = w.start + u64::from(crate::board::MAX_WINDOW_SIZE);
    let (start, end) = (u64::from(addr), u64::from(addr) + len as u64);
    let first = start.max(w.end);
    if first >= end.min(span_end) || regions.iter().any(|r| r.contains(first)) {
        return None;
    }
    Some(first as u32)
}

/// `addr..addr+len` cut at the window's edges: (start, len, in_window).
pub(crate) fn split_at_window(
    addr: u32,
    len: usize,
    window: Option<std::ops::Range<u64>>,
) -> Vec<(u32, usize, bool)> {
    let start = u64::from(addr);
    let end = start + len as u64;
    let Some(w) = window.filter(|w| start < w.end && w.start < end) else {
        return vec![(addr, len, false)];
    };
    let mut out = Vec::new();
    let mut cuts = vec![start];
    for c in [w.start, w.end] {
        if start < c && c < end {
            cuts.push(c);
        }
    }
    cuts.push(end);
    for pair in cuts.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        out.push((a as u32, (b - a) as usize, w.start <= a && b <= w.end));
    }
    out
}

/// Read any address: the window through the stub, the rest through the
/// probe.
pub(crate) fn read_any(t: &mut GdbTarget, address: u32, data: &mut [u8]) -> Result<(), GdbError> {
    check_range(address, data.len())?;
    t.refuse_past_window(address, data.len())?;
    let mut done = 0;
    for (addr, len, in_window) in split_at_window(address, data.len(), t.window()) {
        let piece = &mut data[done..done + len];
        if in_window {
            t.reprobe_ext_flash();
            // Cached window bytes need no core handle (probe-rs reads the
            // AP's registers for each one, a USB round trip each).
            if t.ext.as_ref().is_some_and(|e| e.read_cached(addr, piece)) {
                done += len;
                continue;
            }
            t.with_ext(|ext, core| ext.read(core, addr, piece))
                .map_err(|e| match e {
                    GdbError::ExtFlash(source) => GdbError::ExtFlashRead {
                        address: addr,
                        len,
                        source,
                    },
                    other => other,
                })?;
        } else {
            read_memory(t, addr, piece)?;
        }
        done += len;
    }
    Ok(())
}

pub(crate) fn write_memory(t: &mut GdbTarget, address: u32, data: &[u8]) -> Result<(), GdbError> {
    check_range(address, data.len())?;
    let len = data.len();
    if t.stub_session_conflicts(address, len, true) {
        t.end_stub_session()?;
    }
    let mut core = t.core()?;
    let result = access_pieces(address, len)
        .into_iter()
        .try_for_each(|(off, n, width)| {
            let addr = u64::from(address) + off as u64;
            let piece = &data[off..off + n];
            if width == 4 {
                let words: Vec<u32> = piece
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                core.write_32(addr, &words)
            } else {
                core.write_8(addr, piece)
            }
        });
    result
        .and_then(|()| core.flush())
        .map_err(|source| GdbError::MemoryWrite {
            address,
            len,
            source,
        })
}

pub(crate) fn all_regs() -> impl Iterator<Item = CortexMRegId> {
    (0..CortexMRegId::COUNT).filter_map(CortexMRegId::from_regnum)
}

impl GdbTarget {
    /// Refuse an access that reaches past the end of the window
    /// ([`past_window_end`]), naming the window and the chip's size.
    pub(crate) fn refuse_past_window(&self, address: u32, len: usize) -> Result<(), GdbError> {
        let window = self.window();
        match past_window_end(address, len, window.clone(), &self.board.regions) {
            Some(first) => {
                let w = window.unwrap_or_default();
                Err(GdbError::PastWindowEnd {
                    address,
                    len,
                    first,
                    start: w.start as u32,
                    end: w.end,
                })
            }
            None => Ok(()),
        }
    }

    /// Every register, by GDB register number: from the cache while the
    /// core has stayed halted (the only way while the stub session runs),
    /// else read (ending the session first) and cached.
    pub(crate) fn all_registers(&mut self) -> Result<Vec<u64>, GdbError> {
        if let Some(v) = &self.reg_cache {
            return Ok(v.clone());
        }
        self.end_stub_session()?;
        let mut core = self.core()?;
        let mut values = vec![0u64; CortexMRegId::COUNT];
        for reg in all_regs() {
            values[reg.regnum()] = read_reg(&mut core, reg)?;
        }
        drop(core);
        self.reg_cache = Some(values.clone());
        Ok(values)
    }
}

impl SingleThreadBase for GdbTarget {
    fn read_registers(&mut self, regs: &mut CortexMRegs) -> TargetResult<(), Self> {
        let v = self.all_registers().map_err(to_target_error)?;
        *regs = CortexMRegs::from_values(&v);
        Ok(())
    }

    fn write_registers(&mut self, regs: &CortexMRegs) -> TargetResult<(), Self> {
        self.reg_cache = None;
        self.end_stub_session().map_err(to_target_error)?;
        let mut values = [0u64; CortexMRegId::COUNT];
        for (i, r) in regs.r.iter().enumerate() {
            values[i] = (*r).into();
        }
        values[13] = regs.sp.into();
        values[14] = regs.lr.into();
        values[15] = regs.pc.into();
        values[CortexMRegId::XPSR] = regs.xpsr.into();
        for (n, d) in regs.d.iter().enumerate() {
            values[CortexMRegId::D0 + n] = *d;
        }
        values[CortexMRegId::FPSCR] = regs.fpscr.into();
        let m = CortexMRegId::MSP;
        for (i, v) in [
            regs.msp,
            regs.psp,
            regs.primask,
            regs.basepri,
            regs.faultmask,
            regs.control,
        ]
        .into_iter()
        .enumerate()
        {
            values[m + i] = v.into();
        }
        let result = self.core().and_then(|mut core| {
            for reg in all_regs() {
                write_reg(&mut core, reg, values[reg.regnum()])?;
            }
            Ok(())
        });
        result.map_err(to_target_error)
    }

    fn read_addrs(&mut self, start_addr: u32, data: &mut [u8]) -> TargetResult<usize, Self> {
        match read_any(self, start_addr, data) {
            Ok(()) => Ok(data.len()),
            Err(e) => Err(self.read_refused(e)),
        }
    }

    fn write_addrs(&mut self, start_addr: u32, data: &[u8]) -> TargetResult<(), Self> {
        if self.in_window(start_addr, data.len() as u64) {
            let e = crate::extflash::ExtFlashError::PlainWrite {
                address: start_addr,
                len: data.len(),
            };
            return Err(to_target_error(e.into()));
        }
        self.refuse_past_window(start_addr, data.len())
            .map_err(to_target_error)?;
        self.refuse_unmapped_write(start_addr, data.len())
            .map_err(to_target_error)?;
        write_memory(self, start_addr, data).map_err(to_target_error)
    }

    #[inline(always)]
    fn support_single_register_access(&mut self) -> Option<SingleRegisterAccessOps<'_, (), Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleRegisterAccess<()> for GdbTarget {
    fn read_register(
        &mut self,
        _tid: (),
        reg_id: CortexMRegId,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        // One register costs one register read, not all of them: the cache
        // answers while the stub session runs, else the core does.
        let value = match &self.reg_cache {
            Some(v) => v[reg_id.regnum()],
            None => self
                .end_stub_session()
                .and_then(|()| self.core())
                .and_then(|mut core| read_reg(&mut core, reg_id))
                .map_err(to_target_error)?,
        };
        let bytes = value.to_le_bytes();
        let n = reg_id.size().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok(n)
    }

    fn write_register(
        &mut self,
        _tid: (),
        reg_id: CortexMRegId,
        val: &[u8],
    ) -> TargetResult<(), Self> {
        if val.len() != reg_id.size() {
            return Err(TargetError::NonFatal);
        }
        let mut bytes = [0u8; 8];
        bytes[..val.len()].copy_from_slice(val);
        let value = u64::from_le_bytes(bytes);
        self.reg_cache = None;
        self.end_stub_session().map_err(to_target_error)?;
        self.core()
            .and_then(|mut core| write_reg(&mut core, reg_id, value))
            .map_err(to_target_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_pieces_use_words_inside_and_bytes_at_the_edges_never_halfwords() {
        type Case = (u32, usize, &'static [(usize, usize, usize)]);
        let cases: &[Case] = &[
            (0x2000_0000, 4, &[(0, 4, 4)]),
            (0x2000_0000, 8, &[(0, 8, 4)]),
            (0x2000_0000, 6, &[(0, 4, 4), (4, 2, 1)]),
            (0x2000_0002, 4, &[(0, 4, 1)]),
            (0x2000_0002, 2, &[(0, 2, 1)]),
            (0x2000_0001, 11, &[(0, 3, 1), (3, 8, 4)]),
            (0x2000_0003, 1, &[(0, 1, 1)]),
            (0x2000_0000, 0, &[]),
        ];
        for (addr, len, want) in cases {
            assert_eq!(access_pieces(*addr, *len), *want, "{addr:#x}+{len}");
        }
    }

    #[test]
    fn special_registers_map_to_bytes_of_extra_word() {
        assert_eq!(location(CortexMRegId::Primask), RegLocation::ExtraByte(0));
        assert_eq!(location(CortexMRegId::Control), RegLocation::ExtraByte(3));
        assert_eq!(location(CortexMRegId::D(3)), RegLocation::Pair(70));
        assert_eq!(location(CortexMRegId::Core(15)), RegLocation::Word(15));
        assert_eq!(location(CortexMRegId::Xpsr), RegLocation::Word(16));
        assert_eq!(location(CortexMRegId::Fpscr), RegLocation::Word(33));
    }

    #[test]
    fn set_extra_byte_keeps_other_fields() {
        let extra = 0x0201_4001; // control=2 faultmask=1 basepri=0x40 primask=1
        assert_eq!(set_extra_byte(extra, 1, 0x80), 0x0201_8001);
        assert_eq!(set_extra_byte(extra, 0, 0), 0x0201_4000);
        assert_eq!(
            set_extra_byte(extra, 3, 0x1FF),
            0xFF01_4001,
            "value masked to a byte"
        );
    }

    #[test]
    fn reads_are_cut_at_the_window_edges() {
        let w = Some(0x9000_0000u64..0x9080_0000);
        assert_eq!(
            split_at_window(0x2000_0000, 8, w.clone()),
            [(0x2000_0000, 8, false)]
        );
        assert_eq!(
            split_at_window(0x9000_0010, 8, w.clone()),
            [(0x9000_0010, 8, true)]
        );
        assert_eq!(
            split_at_window(0x8FFF_FFFC, 8, w.clone()),
            [(0x8FFF_FFFC, 4, false), (0x9000_0000, 4, true)]
        );
        assert_eq!(
            split_at_window(0x907F_FFFE, 4, w),
            [(0x907F_FFFE, 2, true), (0x9080_0000, 2, false)]
        );
        assert_eq!(
            split_at_window(0x9000_0000, 4, None),
            [(0x9000_0000, 4, false)]
        );
    }

    #[test]
    fn invalid_access_past_the_window_end_names_the_first_byte() {
        let w = Some(0x9000_0000u64..0x9080_0000);
        let sram = crate::board::Region {
            name: "sram".into(),
            start: 0x90C0_0000,
            size: 0x1000,
            kind: crate::board::RegionKind::Ram,
        };
        let regions = std::slice::from_ref(&sram);
        for (addr, len, want) in [
            (0x907F_FFF0, 0x10, None),
            (0x907F_FFF0, 0x20, Some(0x9080_0000)),
            (0x9080_0000, 1, Some(0x9080_0000)),
            (0x90FF_FFFF, 1, Some(0x90FF_FFFF)),
            (0x9100_0000, 4, None),
            (0x8FFF_FFFC, 4, None),
            (0x90C0_0000, 4, None),
        ] {
            assert_eq!(
                past_window_end(addr, len, w.clone(), regions),
                want,
                "{addr:#x}+{len:#x}"
            );
        }
        assert_eq!(past_window_end(0x9080_0000, 4, None, &[]), None);
        // GDB probes `X` support with an empty write.
        assert_eq!(past_window_end(0x9080_0000, 0, w, &[]), None);
    }

    #[test]
    fn invalid_range_wrapping_past_4g() {
        assert!(check_range(0xFFFF_FFFC, 4).is_ok());
        assert!(matches!(
            check_range(0xFFFF_FFFC, 8),
            Err(GdbError::MemoryWraps { .. })
        ));
    }
}

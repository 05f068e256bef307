//! Breakpoints (`Z0`/`Z1`) and watchpoints (`Z2`/`Z3`/`Z4`).
//!
//! - Hardware breakpoints use the FPB comparators through probe-rs. FPBv1
//!   (Cortex-M4) only matches the code region below 0x20000000; GDB asks for
//!   them itself in regions the memory map marks as flash.
//! - Software breakpoints: probe-rs has none, so we write `BKPT #0` (0xBE00)
//!   over the first halfword of the instruction, remember the original and
//!   write it back on removal. A Thumb-2 instruction only needs its first
//!   halfword replaced: the core traps on the `BKPT` before the second.
//! - Watchpoints: probe-rs 0.32's `Core` has no watchpoint API, so we program
//!   the DWT comparators directly (ARMv7-M ARM C1.8).

use gdbstub::target::ext::breakpoints::{
    Breakpoints, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint,
    SwBreakpointOps, WatchKind,
};
use gdbstub::target::TargetResult;
use gdbstub_arch::arm::ArmBreakpointKind;
use probe_rs::MemoryInterface;

use super::base::{read_memory, write_memory};
use super::{to_target_error, GdbError, GdbTarget, StopReason};
use crate::cortex_m::{self, demcr, dwt, fpb, DEMCR};

/// DWT FUNCTION value for a watch kind.
pub fn dwt_function_for(kind: WatchKind) -> u32 {
    match kind {
        WatchKind::Read => 5,
        WatchKind::Write => 6,
        WatchKind::ReadWrite => 7,
    }
}

/// A DWT comparator setting covering an address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DwtMatch {
    pub comp: u32,
    pub mask: u32,
}

/// The smallest DWT match (COMP with MASK low bits ignored) that covers
/// `addr..addr+len`; `None` if it needs more than [`dwt::MAX_MASK`] bits.
/// The comparator may cover a little more than asked: GDB checks the value
/// and only reports a change of the watched expression.
pub fn dwt_match(addr: u32, len: u32) -> Option<DwtMatch> {
    if len == 0 {
        return None;
    }
    let last = u64::from(addr) + u64::from(len) - 1;
    if last > u64::from(u32::MAX) {
        return None;
    }
    let last = last as u32;
    let mask = (0..=dwt::MAX_MASK).find(|m| addr >> m == last >> m)?;
    Some(DwtMatch {
        comp: addr & !((1u32 << mask) - 1),
        mask,
    })
}

/// A watchpoint GDB asked for, in a DWT comparator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSlot {
    pub addr: u32,
    pub len: u32,
    pub kind: WatchKind,
}

impl GdbTarget {
    /// Number of DWT comparators we may use (read once per connection).
    fn dwt_slots(&mut self) -> Result<usize, GdbError> {
        if self.watch_slots.is_empty() {
            let mut ctrl = [0u8; 4];
            read_memory(self, dwt::CTRL, &mut ctrl)?;
            let n = (u32::from_le_bytes(ctrl) >> 28) as usize;
            self.watch_slots = vec![None; n.min(dwt::COMPARATORS)];
        }
        Ok(self.watch_slots.len())
    }

    fn write_word(&mut self, addr: u32, value: u32) -> Result<(), GdbError> {
        write_memory(self, addr, &value.to_le_bytes())
    }

    pub(super) fn clear_watch_slot(&mut self, slot: usize) -> Result<(), GdbError> {
        self.watch_slots[slot] = None;
        self.write_word(dwt::function(slot), 0)
    }

    /// The watchpoint whose comparator matched, clearing MATCHED (it clears
    /// on read).
    pub(super) fn matched_watchpoint(&mut self) -> Result<Option<StopReason>, GdbError> {
        let mut hit = None;
        for slot in 0..self.watch_slots.len() {
            let Some(w) = self.watch_slots[slot] else {
                continue;
            };
            let mut f = [0u8; 4];
            read_memory(self, dwt::function(slot), &mut f)?;
            if u32::from_le_bytes(f) & dwt::FUNCTION_MATCHED != 0 && hit.is_none() {
                hit = Some(StopReason::Watch {
                    tid: (),
                    kind: w.kind,
                    addr: w.addr,
                });
            }
        }
        Ok(hit)
    }

    fn add_watch(&mut self, addr: u32, len: u32, kind: WatchKind) -> Result<bool, GdbError> {
        let Some(m) = dwt_match(addr, len) else {
            return Ok(false);
        };
        let slots = self.dwt_slots()?;
        let Some(slot) = (0..slots).find(|&s| self.watch_slots[s].is_none()) else {
            return Ok(false);
        };
        let program = |t: &mut GdbTarget| -> Result<(), GdbError> {
            let mut demcr = [0u8; 4];
            read_memory(t, DEMCR, &mut demcr)?;
            t.write_word(DEMCR, u32::from_le_bytes(demcr) | demcr::TRCENA)?;
            t.write_word(dwt::function(slot), 0)?;
            t.write_word(dwt::comp(slot), m.comp)?;
            t.write_word(dwt::mask(slot), m.mask)?;
            t.write_word(dwt::function(slot), dwt_function_for(kind))
        };
        program(self).map_err(|e| match e {
            GdbError::MemoryRead { source, .. } | GdbError::MemoryWrite { source, .. } => {
                GdbError::Watchpoint {
                    slot,
                    address: addr,
                    source,
                }
            }
            other => other,
        })?;
        self.watch_slots[slot] = Some(WatchSlot { addr, len, kind });
        Ok(true)
    }

    fn remove_watch(&mut self, addr: u32, len: u32, kind: WatchKind) -> Result<bool, GdbError> {
        let wanted = WatchSlot { addr, len, kind };
        match self.watch_slots.iter().position(|s| *s == Some(wanted)) {
            Some(slot) => self.clear_watch_slot(slot).map(|()| true),
            None => Ok(false),
        }
    }

    fn add_sw(&mut self, addr: u32) -> Result<bool, GdbError> {
        if addr % 2 != 0 {
            return Ok(false);
        }
        if self.sw_breakpoints.contains_key(&addr) {
            return Ok(true);
        }
        let mut orig = [0u8; 2];
        read_memory(self, addr, &mut orig)?;
        write_memory(self, addr, &cortex_m::BKPT.to_le_bytes())?;
        let mut back = [0u8; 2];
        read_memory(self, addr, &mut back)?;
        let found = u16::from_le_bytes(back);
        if found != cortex_m::BKPT {
            // Flash or ROM ignores the write; nothing to restore.
            return Err(GdbError::SwBreakpointNotWritable {
                address: addr,
                found,
            });
        }
        self.sw_breakpoints.insert(addr, u16::from_le_bytes(orig));
        Ok(true)
    }

    fn remove_sw(&mut self, addr: u32) -> Result<bool, GdbError> {
        let Some(orig) = self.sw_breakpoints.remove(&addr) else {
            return Ok(false);
        };
        write_memory(self, addr, &orig.to_le_bytes())?;
        Ok(true)
    }

    fn add_hw(&mut self, addr: u32) -> Result<bool, GdbError> {
        if addr >= fpb::CODE_LIMIT {
            return Ok(false);
        }
        if self.hw_breakpoints.contains(&addr) {
            return Ok(true);
        }
        let units = self
            .core()?
            .available_breakpoint_units()
            .map_err(|source| GdbError::HwBreakpoint {
                address: addr,
                source,
            })?;
        if self.hw_breakpoints.len() >= units as usize {
            return Ok(false);
        }
        self.core()?
            .set_hw_breakpoint(addr.into())
            .map_err(|source| GdbError::HwBreakpoint {
                address: addr,
                source,
            })?;
        self.hw_breakpoints.push(addr);
        Ok(true)
    }

    fn remove_hw(&mut self, addr: u32) -> Result<bool, GdbError> {
        let Some(i) = self.hw_breakpoints.iter().position(|a| *a == addr) else {
            return Ok(false);
        };
        self.hw_breakpoints.swap_remove(i);
        let mut core = self.core()?;
        core.clear_hw_breakpoint(addr.into())
            .map_err(|source| GdbError::HwBreakpoint {
                address: addr,
                source,
            })?;
        core.flush().map_err(|source| GdbError::HwBreakpoint {
            address: addr,
            source,
        })?;
        Ok(true)
    }
}

impl Breakpoints for GdbTarget {
    #[inline(always)]
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for GdbTarget {
    fn add_sw_breakpoint(
        &mut self,
        addr: u32,
        _kind: ArmBreakpointKind,
    ) -> TargetResult<bool, Self> {
        self.add_sw(addr).map_err(to_target_error)
    }

    fn remove_sw_breakpoint(
        &mut self,
        addr: u32,
        _kind: ArmBreakpointKind,
    ) -> TargetResult<bool, Self> {
        self.remove_sw(addr).map_err(to_target_error)
    }
}

impl HwBreakpoint for GdbTarget {
    fn add_hw_breakpoint(
        &mut self,
        addr: u32,
        _kind: ArmBreakpointKind,
    ) -> TargetResult<bool, Self> {
        self.add_hw(addr).map_err(to_target_error)
    }

    fn remove_hw_breakpoint(
        &mut self,
        addr: u32,
        _kind: ArmBreakpointKind,
    ) -> TargetResult<bool, Self> {
        self.remove_hw(addr).map_err(to_target_error)
    }
}

impl HwWatchpoint for GdbTarget {
    fn add_hw_watchpoint(
        &mut self,
        addr: u32,
        len: u32,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        self.add_watch(addr, len, kind).map_err(to_target_error)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u32,
        len: u32,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        self.remove_watch(addr, len, kind).map_err(to_target_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dwt_match_covers_range_with_smallest_mask() {
        for (addr, len, comp, mask) in [
            (0x2000_0000, 1, 0x2000_0000, 0),
            (0x2000_0001, 1, 0x2000_0001, 0),
            (0x2000_0000, 4, 0x2000_0000, 2),
            (0x2000_0004, 8, 0x2000_0000, 4), // 0x..04-0x..0B needs 16-byte block
            (0x2000_0002, 4, 0x2000_0000, 3), // straddles a word
            (0x2000_0100, 0x100, 0x2000_0100, 8),
        ] {
            let m = dwt_match(addr, len).unwrap();
            assert_eq!(m, DwtMatch { comp, mask }, "{addr:#x}+{len}");
            let covered = u64::from(m.comp)..u64::from(m.comp) + (1u64 << m.mask);
            assert!(
                covered.start <= addr.into() && u64::from(addr) + u64::from(len) <= covered.end
            );
        }
    }

    #[test]
    fn invalid_dwt_match_too_large_or_empty() {
        assert_eq!(dwt_match(0x2000_0000, 0x1_0000), None, "needs mask 16");
        assert_eq!(dwt_match(0x2000_0000, 0), None);
        assert_eq!(dwt_match(0xFFFF_FFFF, 2), None, "wraps");
        assert!(
            dwt_match(0x2000_0000, 0x8000).is_some(),
            "mask 15 is the limit"
        );
    }

    #[test]
    fn dwt_register_addresses_and_functions() {
        assert_eq!(dwt::comp(0), 0xE000_1020);
        assert_eq!(dwt::mask(1), 0xE000_1034);
        assert_eq!(dwt::function(3), 0xE000_1058);
        assert_eq!(dwt_function_for(WatchKind::Read), 5);
        assert_eq!(dwt_function_for(WatchKind::Write), 6);
        assert_eq!(dwt_function_for(WatchKind::ReadWrite), 7);
    }
}

//! Breakpoints (`Z0`/`Z1`) and watchpoints (`Z2`/`Z3`/`Z4`).
//!
//! - Hardware breakpoints use the FPB comparators through probe-rs. FPBv1
//!   (Cortex-M4) only matches the code region below 0x20000000.
//! - Software breakpoints: probe-rs has none, so we write `BKPT #0` (0xBE00)
//!   over the first halfword of the instruction, remember the original and
//!   write it back on removal. A Thumb-2 instruction only needs its first
//!   halfword replaced: the core traps on the `BKPT` before the second.
//! - A `Z0` in internal flash gets an FPB comparator instead: GDB asks for
//!   `Z1` itself where the memory map says flash, LLDB sends `Z0` anywhere,
//!   and a `BKPT` cannot be written to flash (on silicon the write would
//!   only set the flash controller's error flags). Decided from the board's
//!   flash regions before anything is written ([`placement`]).
//! - The external-flash window holds data the stub reads over SPI: the core
//!   cannot execute there, so a breakpoint in it is refused by name.
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

/// Which packet asked for a breakpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// `Z0`: a software breakpoint.
    Sw,
    /// `Z1`: a hardware breakpoint.
    Hw,
}

/// How a breakpoint at an address is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `BKPT #0` written over the instruction (RAM).
    Bkpt,
    /// An FPB comparator.
    Comparator,
    /// Refused: the external-flash window is not executable.
    Window,
    /// Refused: a hardware breakpoint the FPB cannot match.
    AboveCode,
}

/// Where a breakpoint at `addr` goes, from the memory map alone: a `Z0` in
/// internal flash (`flash`) becomes a comparator, a `Z1` is one wherever
/// the FPB can match, and nothing can be hit in the window.
pub fn placement(
    addr: u32,
    asked: Asked,
    flash: &[std::ops::Range<u64>],
    window: Option<&std::ops::Range<u64>>,
) -> Placement {
    let a = u64::from(addr);
    if window.is_some_and(|w| w.contains(&a)) {
        return Placement::Window;
    }
    match asked {
        Asked::Sw if !flash.iter().any(|f| f.contains(&a)) => Placement::Bkpt,
        _ if addr >= fpb::CODE_LIMIT => Placement::AboveCode,
        _ => Placement::Comparator,
    }
}

/// Who asked for one FPB comparator: a `Z0` in flash and a `Z1` at the
/// same address share it, and it is freed when neither stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Claims {
    pub sw: bool,
    pub hw: bool,
}

impl Claims {
    fn get(&mut self, asked: Asked) -> &mut bool {
        match asked {
            Asked::Sw => &mut self.sw,
            Asked::Hw => &mut self.hw,
        }
    }
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

    /// Where a breakpoint at `addr` goes on this board.
    fn place(&self, addr: u32, asked: Asked) -> Placement {
        let flash: Vec<_> = self
            .board
            .flash_geometry()
            .into_iter()
            .map(|g| g.range)
            .collect();
        placement(addr, asked, &flash, self.window().as_ref())
    }

    fn add_breakpoint(&mut self, addr: u32, asked: Asked) -> Result<bool, GdbError> {
        match self.place(addr, asked) {
            Placement::Bkpt => self.add_sw(addr),
            Placement::Comparator => self.add_hw(addr, asked),
            Placement::Window => Err(GdbError::BreakpointInWindow { address: addr }),
            Placement::AboveCode => Err(GdbError::HwBreakpointAboveCode { address: addr }),
        }
    }

    fn remove_breakpoint(&mut self, addr: u32, asked: Asked) -> Result<bool, GdbError> {
        match asked {
            Asked::Sw if self.sw_breakpoints.contains_key(&addr) => self.remove_sw(addr),
            _ => self.remove_hw(addr, asked),
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
            // ROM ignores the write; nothing to restore.
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

    /// Claim the FPB comparator at `addr` for `asked`, setting it unless
    /// another request already did.
    fn add_hw(&mut self, addr: u32, asked: Asked) -> Result<bool, GdbError> {
        if let Some(claims) = self.hw_breakpoints.get_mut(&addr) {
            *claims.get(asked) = true;
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
            return Err(GdbError::NoFreeComparator {
                address: addr,
                units,
                set: self.hw_breakpoints.keys().copied().collect(),
            });
        }
        self.core()?
            .set_hw_breakpoint(addr.into())
            .map_err(|source| GdbError::HwBreakpoint {
                address: addr,
                source,
            })?;
        let mut claims = Claims::default();
        *claims.get(asked) = true;
        self.hw_breakpoints.insert(addr, claims);
        Ok(true)
    }

    /// Drop `asked`'s claim on the comparator at `addr`; clear the
    /// comparator when no claim is left.
    fn remove_hw(&mut self, addr: u32, asked: Asked) -> Result<bool, GdbError> {
        let Some(claims) = self.hw_breakpoints.get_mut(&addr) else {
            return Ok(false);
        };
        if !std::mem::take(claims.get(asked)) {
            return Ok(false);
        }
        if claims.sw || claims.hw {
            return Ok(true);
        }
        self.hw_breakpoints.remove(&addr);
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

    /// Whether a breakpoint the client asked for as `Z0` stands at `pc`
    /// (a `BKPT`, or a comparator serving a `Z0` in flash).
    pub(super) fn sw_breakpoint_at(&self, pc: u32) -> bool {
        self.sw_breakpoints.contains_key(&pc) || self.hw_breakpoints.get(&pc).is_some_and(|c| c.sw)
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
        self.add_breakpoint(addr, Asked::Sw)
            .map_err(to_target_error)
    }

    fn remove_sw_breakpoint(
        &mut self,
        addr: u32,
        _kind: ArmBreakpointKind,
    ) -> TargetResult<bool, Self> {
        self.remove_breakpoint(addr, Asked::Sw)
            .map_err(to_target_error)
    }
}

impl HwBreakpoint for GdbTarget {
    fn add_hw_breakpoint(
        &mut self,
        addr: u32,
        _kind: ArmBreakpointKind,
    ) -> TargetResult<bool, Self> {
        self.add_breakpoint(addr, Asked::Hw)
            .map_err(to_target_error)
    }

    fn remove_hw_breakpoint(
        &mut self,
        addr: u32,
        _kind: ArmBreakpointKind,
    ) -> TargetResult<bool, Self> {
        self.remove_breakpoint(addr, Asked::Hw)
            .map_err(to_target_error)
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
    fn breakpoints_in_flash_use_comparators_ram_gets_bkpt_and_the_window_is_refused() {
        let flash = vec![0x0800_0000u64..0x0808_0000, 0x1FFF_7800..0x1FFF_7A10];
        let window = 0x9000_0000u64..0x9080_0000;
        use Asked::{Hw, Sw};
        use Placement::*;
        for (addr, asked, want) in [
            (0x0800_0132, Sw, Comparator), // LLDB's `breakpoint set -n main`
            (0x0807_FFFE, Sw, Comparator),
            (0x0800_0132, Hw, Comparator),
            (0x0808_0000, Sw, Bkpt), // past the flash: the map says RAM
            (0x2000_1004, Sw, Bkpt),
            (0x2000_1004, Hw, AboveCode),
            (0x1FFF_0000, Hw, Comparator), // system memory, FPB can match
            (0x1FFF_7800, Sw, Comparator), // a second flash region
            (0x9000_0000, Sw, Window),
            (0x907F_FFFE, Hw, Window),
            (0x9080_0000, Sw, Bkpt),
        ] {
            assert_eq!(
                placement(addr, asked, &flash, Some(&window)),
                want,
                "{addr:#x} {asked:?}"
            );
        }
        assert_eq!(placement(0x9000_0000, Sw, &flash, None), Bkpt, "no window");
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

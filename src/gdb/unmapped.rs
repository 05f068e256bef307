//! Reads where nothing answers. GDB's unwinder and disassembler read around
//! whatever PC and SP the core holds; on a locked-up core (blank internal
//! flash: PC 0xfffffffe, SP 0xfffffffc) those are addresses where no RAM,
//! flash or window is (0xe0100000..=0xffffffff is ARMv7-M's Vendor_SYS
//! space, reserved on the STM32F4: a debug access through the AHB-AP gets a
//! bus fault, as on silicon). Such a read is answered `E0e` (GDB then says
//! "Cannot access memory at address …", its only way to hear "nothing is
//! there") and logged once per connection at info, the rest at debug: GDB's
//! own probing does not fill the log with warnings. A failing read of a
//! region the board does have stays a warning.
//!
//! Writes there are the user's own action (`load` of a section past
//! internal flash): they are refused before any probe access, with `E0e`
//! and one warning naming the nearest region ([`unmapped_write`]).

use gdbstub::target::TargetError;

use super::error::{note_error_text, to_target_error, GdbError, SessionFault};
use super::GdbTarget;
use crate::error::DisplayChain;

/// First address of ARMv7-M's Vendor_SYS space (reserved on the STM32F4).
const VENDOR_SYS: u64 = 0xE010_0000;

/// Why nothing answers at `address..address+len` when no byte of it is in
/// `regions` or `window`; `None` when some byte is (a real failure).
pub(crate) fn unmapped_reason(
    address: u32,
    len: usize,
    regions: &[crate::board::Region],
    window: Option<std::ops::Range<u64>>,
) -> Option<&'static str> {
    let start = u64::from(address);
    let end = (start + len.max(1) as u64).min(crate::board::memory_map::SPACE_END);
    let overlaps = |r: std::ops::Range<u64>| r.start < end && start < r.end;
    if regions.iter().any(|r| overlaps(r.range())) || window.is_some_and(overlaps) {
        return None;
    }
    Some(if start >= VENDOR_SYS {
        "reserved address space (ARMv7-M Vendor_SYS); a debug read gets a bus fault"
    } else {
        "no RAM, flash or external-flash window of the board there; the bus faulted"
    })
}

/// Where a write outside every region may still land: ARMv7-M's
/// Peripheral (0x40000000..0x60000000, with its bit-band alias), the
/// FSMC's banks 1 to 3 (0x60000000..0x90000000: external SRAM/NOR, NAND, a
/// TFT's command/data addresses, RM0090 36.4; bank 4 lies under the
/// window), External device (0xA0000000..0xE0000000, e.g. the FSMC
/// registers) and PPB (0xE0000000..0xE0100000, the debug and system
/// registers), SRAM's bit-band alias, the boot alias at 0 and the STM32's
/// system memory, OTP and option bytes. A write to any of these is left to
/// the bus as before.
const DEVICE_RANGES: [std::ops::Range<u64>; 7] = [
    0x0000_0000..0x0010_0000,
    0x1FFF_0000..0x2000_0000,
    0x2200_0000..0x2400_0000,
    0x4000_0000..0x6000_0000,
    0x6000_0000..0x9000_0000,
    0xA000_0000..0xE000_0000,
    0xE000_0000..VENDOR_SYS,
];

/// The refusal of a non-empty write of `len` bytes at `address` that
/// touches no region, no window and no [`DEVICE_RANGES`] range: it would
/// only get a bus fault, so it is refused before any probe access, naming
/// the nearest region (or the window) and its bounds.
pub(crate) fn unmapped_write(
    address: u32,
    len: usize,
    regions: &[crate::board::Region],
    window: Option<std::ops::Range<u64>>,
) -> Option<GdbError> {
    if len == 0 {
        return None;
    }
    let start = u64::from(address);
    let end = (start + len as u64).min(crate::board::memory_map::SPACE_END);
    let overlaps = |r: &std::ops::Range<u64>| r.start < end && start < r.end;
    if DEVICE_RANGES.iter().any(overlaps) {
        return None;
    }
    unmapped_reason(address, len, regions, window.clone())?;
    let named = regions
        .iter()
        .map(|r| {
            let what = match (&r.kind, r.name.as_str()) {
                (crate::board::RegionKind::Flash { .. }, "flash") => "internal flash".to_string(),
                (crate::board::RegionKind::Flash { .. }, n) => format!("internal flash {n:?}"),
                (crate::board::RegionKind::Ram, n) => format!("RAM {n:?}"),
            };
            (what, r.range())
        })
        .chain(window.map(|w| ("the external-flash window".to_string(), w)));
    let distance = |r: &std::ops::Range<u64>| {
        if start >= r.end {
            start - r.end
        } else {
            r.start.saturating_sub(end)
        }
    };
    let (region, r) = named.min_by_key(|(_, r)| distance(r))?;
    Some(GdbError::UnmappedWrite {
        address,
        len,
        side: if start >= r.end {
            "past the end of"
        } else {
            "below the start of"
        },
        region,
        start: r.start as u32,
        end: r.end,
    })
}

impl GdbTarget {
    /// Refuse a write where nothing is ([`unmapped_write`]).
    pub(crate) fn refuse_unmapped_write(&self, address: u32, len: usize) -> Result<(), GdbError> {
        match unmapped_write(address, len, &self.board.regions, self.window()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The reply for a failed memory read `e`: a read where nothing answers
    /// is logged quietly (see the module doc); everything else as any error.
    pub(crate) fn read_refused(&mut self, e: GdbError) -> TargetError<SessionFault> {
        let (address, len) = match &e {
            GdbError::MemoryRead { address, len, .. } if !e.is_probe_lost() => (*address, *len),
            // What lies below 4 GiB of a read that wraps is Vendor_SYS.
            GdbError::MemoryWraps { address, len } => (*address, *len),
            _ => return to_target_error(e),
        };
        let Some(reason) = unmapped_reason(address, len, &self.board.regions, self.window()) else {
            return to_target_error(e);
        };
        self.unmapped_reads += 1;
        if self.unmapped_reads == 1 {
            tracing::info!(
                "GDB read {len} bytes at {address:#010x}: {reason}; answered E0e \
                 (further reads where nothing answers are logged at debug)"
            );
        } else {
            tracing::debug!(address, len, reason, "read where nothing answers: E0e");
        }
        tracing::debug!(error = %DisplayChain(&e), "unmapped read");
        note_error_text(format!("{e}: {reason}"));
        TargetError::Errno(e.errno())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::Board;

    #[test]
    fn the_locked_up_cores_pc_and_stack_are_unmapped_and_reserved() {
        let b = Board::builtin();
        let w = Some(0x9000_0000..0x9080_0000);
        for (a, n) in [(0xFFFF_FFFE, 2), (0xFFFF_FFFA, 4), (0xFFFF_FFC0, 64)] {
            let r = unmapped_reason(a, n, &b.regions, w.clone()).unwrap();
            assert!(r.contains("Vendor_SYS"), "{a:#x}: {r}");
        }
        let r = unmapped_reason(0x3000_0000, 4, &b.regions, w.clone()).unwrap();
        assert!(r.contains("no RAM, flash"), "{r}");
    }

    #[test]
    fn reads_touching_ram_flash_or_the_window_are_real_failures() {
        let b = Board::builtin();
        let w = Some(0x9000_0000..0x9080_0000);
        for (a, n) in [
            (0x2000_0000, 4),
            (0x0800_0000, 2),
            (0x9000_0000, 8),
            (0x1fff_fffe, 4),
        ] {
            assert_eq!(unmapped_reason(a, n, &b.regions, w.clone()), None, "{a:#x}");
        }
        // Past the window's end (a smaller chip) nothing answers.
        assert!(unmapped_reason(0x9080_0000, 4, &b.regions, w).is_some());
    }

    #[test]
    fn invalid_write_past_internal_flash_names_the_nearest_region() {
        let b = Board::builtin();
        let w = Some(0x9000_0000..0x9080_0000);
        let e = unmapped_write(0x0808_0000, 1024, &b.regions, w.clone()).unwrap();
        assert_eq!(
            e.to_string(),
            "write of 1024 bytes at 0x08080000: past the end of internal flash \
             0x08000000..0x08080000 (512 KiB); no RAM, flash or window of the board is there"
        );
        // FSMC bank 3's last bytes are left to the bus; past the window
        // (bank 4 lies under it) nothing is.
        assert!(unmapped_write(0x8FFF_FFF0, 4, &b.regions, w.clone()).is_none());
        let e = unmapped_write(0x9900_0000, 4, &b.regions, w.clone()).unwrap();
        assert!(
            e.to_string()
                .contains("past the end of the external-flash window 0x90000000..0x90800000"),
            "{e}"
        );
        let e = unmapped_write(0x0FFF_FFF0, 4, &b.regions, w.clone()).unwrap();
        assert!(e.to_string().contains("below the start of"), "{e}");
        let e = unmapped_write(0x2002_0000, 4, &b.regions, w.clone()).unwrap();
        assert!(
            e.to_string().contains("past the end of RAM \"sram\""),
            "{e}"
        );
        assert!(unmapped_write(0xFFFF_FFFC, 4, &b.regions, w.clone()).is_some());
    }

    #[test]
    fn writes_to_regions_peripherals_and_system_space_are_left_to_the_bus() {
        let b = Board::builtin();
        let w = Some(0x9000_0000..0x9080_0000);
        for (a, n) in [
            (0x2000_0000, 4),
            (0x0807_fffc, 8),
            (0x4002_3800, 4),
            (0x4242_0000, 4),
            (0x2200_0000, 4),
            (0xA000_0000, 4),
            (0x6C00_0000, 2),
            (0x6008_0000, 2),
            (0xE000_EDF0, 4),
            (0xE000_0000, 4),
            (0x1FFF_C000, 4),
            (0x0000_0000, 4),
            (0x9000_0000, 4),
            (0x0808_0000, 0),
        ] {
            assert!(
                unmapped_write(a, n, &b.regions, w.clone()).is_none(),
                "{a:#x}+{n}"
            );
        }
    }
}

//! The locked-up core, named. A Cortex-M4 whose vector table is erased
//! fetches SP and PC 0xffffffff at reset, faults, and locks up: ARMv7-M
//! sets PC to the lockup address 0xfffffffe (B1.5.15). GDB then only shows
//! `<signal handler called>` and "Cannot access memory"; the server says
//! why, in the log at connect and in `monitor halt`/`monitor reset halt`
//! replies, as OpenOCD and probe-rs users see it.

use probe_rs::{MemoryInterface, RegisterId};

use super::GdbTarget;
use crate::cortex_m::regsel;

/// Whether `pc` is ARMv7-M's lockup address (0xfffffffe, or 0xeffffffe when
/// the lockup happened in an exception return to Thread mode).
fn is_lockup_pc(pc: u32) -> bool {
    pc | 0x1000_0000 == 0xFFFF_FFFE
}

/// The hint for a halted core at `pc` whose vector table at `base` starts
/// with `vectors` (initial SP, reset vector; `None` if unreadable), or
/// `None` when the core is not locked up.
pub(crate) fn lockup_hint(pc: u32, vectors: Option<[u32; 2]>, base: u32) -> Option<String> {
    if !is_lockup_pc(pc) {
        return None;
    }
    Some(match vectors {
        Some([0xFFFF_FFFF, 0xFFFF_FFFF]) => format!(
            "core is locked up (pc {pc:#010x}): no valid vector table at {base:#010x} (internal \
             flash erased); `load` a program, then `monitor reset halt`"
        ),
        Some([sp, reset]) => format!(
            "core is locked up (pc {pc:#010x}): a fault it could not handle; vector table at \
             {base:#010x}: initial SP {sp:#010x}, reset vector {reset:#010x}"
        ),
        None => format!(
            "core is locked up (pc {pc:#010x}): a fault it could not handle; the vector table \
             at {base:#010x} could not be read"
        ),
    })
}

impl GdbTarget {
    /// [`lockup_hint`] for the halted core; `None` also when the core
    /// cannot be asked (that error shows where it matters). The vector
    /// table is read only for a core at the lockup address: a healthy
    /// connect costs one register read.
    pub(crate) fn lockup_hint(&mut self) -> Option<String> {
        let base = self.board.flash_regions().next()?.start;
        let mut core = self.core().ok()?;
        let pc: u32 = core.read_core_reg(RegisterId(regsel::PC)).ok()?;
        if !is_lockup_pc(pc) {
            return None;
        }
        let mut v = [0u32; 2];
        let vectors = core.read_32(base.into(), &mut v).ok().map(|_| v);
        lockup_hint(pc, vectors, base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erased_vector_table_is_named_with_the_way_out() {
        let h = lockup_hint(0xFFFF_FFFE, Some([!0, !0]), 0x0800_0000).unwrap();
        assert!(
            h.contains("no valid vector table at 0x08000000") && h.contains("`load`"),
            "{h}"
        );
    }

    #[test]
    fn a_lockup_with_a_programmed_table_shows_the_table() {
        let h = lockup_hint(0xEFFF_FFFE, Some([0x2002_0000, 0x0800_0041]), 0x0800_0000).unwrap();
        assert!(h.contains("reset vector 0x08000041"), "{h}");
        assert!(lockup_hint(0xFFFF_FFFE, None, 0x0800_0000)
            .unwrap()
            .contains("could not be read"));
    }

    #[test]
    fn a_core_elsewhere_is_not_locked_up() {
        for pc in [0x0800_0040, 0xFFFF_FFFC, 0xFFFF_FFFF, 0] {
            assert_eq!(lockup_hint(pc, Some([!0, !0]), 0x0800_0000), None);
        }
    }
}

//! Cortex-M4 debug architecture facts, in one place: System Control Space
//! and debug register addresses and bits (ARMv7-M ARM, chapter C1), the
//! DCRSR register selectors probe-rs uses as `RegisterId`s, the Thumb `BKPT`
//! encoding, and how long halts and resets may take.
//!
//! Pure data, no probe access: the GDB layer, the stub runner and the
//! virtual board's debug block all read their addresses from here.

use std::time::Duration;

/// How long a halt request may take before the core counts as unresponsive.
pub const HALT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long reset-and-halt may take.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(1);

/// `BKPT #0` in Thumb.
pub const BKPT: u16 = 0xBE00;

/// System Control Space.
pub const SCS_BASE: u32 = 0xE000_E000;
pub const CPUID: u32 = 0xE000_ED00;
pub const ICSR: u32 = 0xE000_ED04;
pub const VTOR: u32 = 0xE000_ED08;
pub const AIRCR: u32 = 0xE000_ED0C;
/// Debug Fault Status Register (write one to clear).
pub const DFSR: u32 = 0xE000_ED30;
/// Debug Halting Control and Status Register.
pub const DHCSR: u32 = 0xE000_EDF0;
/// DHCSR.S_HALT: the core is in debug state (halted).
pub const DHCSR_S_HALT: u32 = 1 << 17;
/// Debug Core Register Selector Register.
pub const DCRSR: u32 = 0xE000_EDF4;
/// Debug Core Register Data Register.
pub const DCRDR: u32 = 0xE000_EDF8;
/// Debug Exception and Monitor Control Register.
pub const DEMCR: u32 = 0xE000_EDFC;

/// DEMCR bits.
pub mod demcr {
    /// Halt on core reset (vector catch).
    pub const VC_CORERESET: u32 = 1 << 0;
    /// Halt on HardFault.
    pub const VC_HARDERR: u32 = 1 << 10;
    /// Halt on every fault: MemManage, NOCP, CHK, STAT, BusFault, INT and
    /// HardFault (VC_MMERR..VC_HARDERR, bits 4-10).
    pub const VC_FAULTS: u32 = 0x7F0;
    /// DWT and ITM enable: DWT registers read as zero without it.
    pub const TRCENA: u32 = 1 << 24;
}

/// DFSR bits.
pub mod dfsr {
    pub const HALTED: u32 = 1 << 0;
    pub const BKPT: u32 = 1 << 1;
    pub const DWTTRAP: u32 = 1 << 2;
    pub const VCATCH: u32 = 1 << 3;
    pub const EXTERNAL: u32 = 1 << 4;
}

/// Data Watchpoint and Trace unit.
pub mod dwt {
    pub const BASE: u32 = 0xE000_1000;
    pub const CTRL: u32 = BASE;
    pub const CYCCNT: u32 = BASE + 0x04;
    /// DWT_CTRL.CYCCNTENA.
    pub const CTRL_CYCCNTENA: u32 = 1;
    /// The STM32F407 has four comparators.
    pub const COMPARATORS: usize = 4;
    /// Largest MASK on the Cortex-M4 (address bits ignored in the match).
    pub const MAX_MASK: u32 = 15;
    /// FUNCTION.MATCHED (cleared on read).
    pub const FUNCTION_MATCHED: u32 = 1 << 24;

    pub const fn comp(n: usize) -> u32 {
        BASE + 0x20 + 16 * n as u32
    }
    pub const fn mask(n: usize) -> u32 {
        BASE + 0x24 + 16 * n as u32
    }
    pub const fn function(n: usize) -> u32 {
        BASE + 0x28 + 16 * n as u32
    }
}

/// Flash Patch and Breakpoint unit (FPBv1 on the Cortex-M4).
pub mod fpb {
    pub const BASE: u32 = 0xE000_2000;
    /// FPBv1 comparators only match addresses below this.
    pub const CODE_LIMIT: u32 = 0x2000_0000;
}

pub const ITM_BASE: u32 = 0xE000_0000;
pub const TPIU_BASE: u32 = 0xE004_0000;
pub const ETM_BASE: u32 = 0xE004_1000;
pub const ROM_TABLE: u32 = 0xE00F_F000;

/// DCRSR.REGSEL values (ARMv7-M C1.6.3), which probe-rs takes as
/// `RegisterId`s: r0-r12 are 0-12.
pub mod regsel {
    pub const SP: u16 = 13;
    pub const LR: u16 = 14;
    pub const PC: u16 = 15;
    pub const XPSR: u16 = 16;
    pub const MSP: u16 = 17;
    pub const PSP: u16 = 18;
    /// CONTROL[31:24] FAULTMASK[23:16] BASEPRI[15:8] PRIMASK[7:0].
    pub const EXTRA: u16 = 20;
    pub const FPSCR: u16 = 33;
    /// s0; s1..s31 follow.
    pub const S0: u16 = 64;
}

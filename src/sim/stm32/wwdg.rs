//! STM32F407 window watchdog (WWDG, 0x4000_2C00), RM0090 §20.
//!
//! Owns CR (WDGA, T[6:0]), CFR (EWI, WDGTB, W[6:0]) and SR (EWIF). The
//! 7-bit counter counts down once every 4096 x 2^WDGTB PCLK1 cycles while
//! the peripheral is clocked (RCC_APB1ENR.WWDGEN) and not frozen
//! (DBGMCU_APB1_FZ.DBG_WWDG_STOP with the core halted): the board decides
//! both and tells [`Wwdg::set_clocking`]. It is kept as the virtual time
//! and value of the last re-anchoring, so nothing runs per count. Once
//! WDGA is set (only a reset clears it) the chip resets when T6 clears
//! (0x40 -> 0x3F), when software writes T6 = 0, or when it reloads CR while
//! the counter is above the window W. EWIF is set when the counter reaches
//! 0x40 (cleared by writing 0). Without WDGA the counter runs freely
//! (wrapping) and resets nothing.

use crate::sim::clock::PS_PER_S;

/// Register offsets.
pub const CR: u32 = 0x00;
pub const CFR: u32 = 0x04;
pub const SR: u32 = 0x08;

/// CR: activation (set only, cleared by reset).
pub const CR_WDGA: u32 = 1 << 7;
/// CFR: early wakeup interrupt enable.
pub const CFR_EWI: u32 = 1 << 9;
/// SR: early wakeup interrupt flag.
pub const SR_EWIF: u32 = 1;
/// Counter value whose next decrement resets the chip (T6 still set).
pub const LAST: u32 = 0x40;

/// WWDG register block.
#[derive(Debug, Clone)]
pub struct Wwdg {
    wdga: bool,
    cfr: u32,
    ewif: bool,
    /// Counter value at `anchor`.
    count: u32,
    anchor: u64,
    /// Picoseconds per count while counting; `None` while stopped (clock
    /// gated or frozen).
    period: Option<u64>,
    /// PCLK1 at the last [`Wwdg::set_clocking`], for a new WDGTB.
    pclk1_hz: u64,
    /// A write asked for a reset (T6 cleared, or a reload above W).
    reset_requested: bool,
}

impl Default for Wwdg {
    fn default() -> Self {
        Self::new()
    }
}

impl Wwdg {
    /// Reset values: CR 0x7F, CFR 0x7F, SR 0; not clocked.
    pub fn new() -> Self {
        Wwdg {
            wdga: false,
            cfr: 0x7F,
            ewif: false,
            count: 0x7F,
            anchor: 0,
            period: None,
            pclk1_hz: 16_000_000,
            reset_requested: false,
        }
    }

    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Whether the watchdog is activated (WDGA).
    pub fn active(&self) -> bool {
        self.wdga
    }

    fn window(&self) -> u32 {
        self.cfr & 0x7F
    }

    fn wdgtb(&self) -> u32 {
        (self.cfr >> 7) & 3
    }

    /// Time of one count at `pclk1_hz` with the current prescaler.
    pub fn period_ps(&self, pclk1_hz: u64) -> u64 {
        (4096u64 << self.wdgtb()) * PS_PER_S / pclk1_hz.max(1)
    }

    /// Counts since the anchor at `now`.
    fn elapsed(&self, now: u64) -> u64 {
        match self.period {
            Some(p) => now.saturating_sub(self.anchor) / p,
            None => 0,
        }
    }

    /// The 7-bit counter at `now` (frozen at 0x3F once it has reset the
    /// chip: the board resets it before anyone reads it).
    pub fn counter(&self, now: u64) -> u32 {
        let n = self.elapsed(now);
        if self.wdga {
            self.count.saturating_sub(n.min(0x7F) as u32).max(LAST - 1)
        } else {
            (self.count as u64).wrapping_sub(n) as u32 & 0x7F
        }
    }

    /// Fold the counts so far into the anchor (before any change).
    fn reanchor(&mut self, now: u64) {
        self.ewif |= self.ewi_due(now);
        self.count = self.counter(now);
        self.anchor = now;
    }

    /// The counter has come down to 0x40 since the anchor.
    fn ewi_due(&self, now: u64) -> bool {
        self.period.is_some()
            && self.count > LAST
            && self.elapsed(now) >= u64::from(self.count - LAST)
    }

    /// Start or stop counting: `running` when WWDGEN is set and the core is
    /// not halted with DBG_WWDG_STOP; `pclk1_hz` is the APB1 clock.
    pub fn set_clocking(&mut self, running: bool, pclk1_hz: u64, now: u64) {
        let period = running.then(|| self.period_ps(pclk1_hz));
        if period == self.period && pclk1_hz == self.pclk1_hz {
            return;
        }
        self.reanchor(now);
        self.period = period;
        self.pclk1_hz = pclk1_hz;
    }

    /// Virtual time at which the watchdog resets the chip, if it will.
    pub fn deadline(&self) -> Option<u64> {
        if self.reset_requested {
            return Some(self.anchor);
        }
        match (self.wdga, self.period) {
            (true, Some(p)) if self.count >= LAST => {
                Some(self.anchor + u64::from(self.count - LAST + 1) * p)
            }
            _ => None,
        }
    }

    /// Whether the watchdog resets the chip at `now`.
    pub fn expired(&self, now: u64) -> bool {
        self.deadline().is_some_and(|t| now >= t)
    }

    pub fn read(&mut self, offset: u32, now: u64) -> u32 {
        match offset {
            CR => self.counter(now) | if self.wdga { CR_WDGA } else { 0 },
            CFR => self.cfr,
            SR => u32::from(self.ewif || self.ewi_due(now)),
            _ => 0,
        }
    }

    /// Write register at `offset` (`mask` selects the byte lanes written).
    pub fn write(&mut self, offset: u32, value: u32, mask: u32, now: u64) {
        self.reanchor(now);
        match offset {
            CR => {
                let v = value & mask;
                if mask & 0x7F == 0 {
                    return;
                }
                // RM0090 §20.3: a reload above the window resets, as does
                // T6 = 0, once the watchdog is active.
                if self.wdga && self.count > self.window() {
                    self.reset_requested = true;
                }
                self.wdga |= v & CR_WDGA != 0;
                self.count = v & 0x7F;
                if self.wdga && self.count < LAST {
                    self.reset_requested = true;
                }
            }
            CFR => {
                self.cfr = (self.cfr & !mask) | (value & mask & 0x3FF);
                if self.period.is_some() {
                    self.period = Some(self.period_ps(self.pclk1_hz));
                }
            }
            SR if mask & SR_EWIF != 0 && value & SR_EWIF == 0 => self.ewif = false,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = PS_PER_S / 1000;
    const PCLK1: u64 = 16_000_000;

    fn running() -> Wwdg {
        let mut w = Wwdg::new();
        w.set_clocking(true, PCLK1, 0);
        w
    }

    #[test]
    fn reset_values_and_free_running_counter_without_wdga() {
        let mut w = Wwdg::new();
        assert_eq!(w.read(CR, 0), 0x7F);
        assert_eq!(w.read(CFR, 0), 0x7F);
        assert_eq!(w.read(SR, 0), 0);
        // Not clocked: nothing counts.
        assert_eq!(w.read(CR, 1000 * MS), 0x7F);
        let mut w = running();
        // 4096 / 16 MHz = 256 us per count; free-running, it wraps.
        assert_eq!(w.period_ps(PCLK1), 256 * MS / 1000);
        assert_eq!(w.read(CR, MS), 0x7F - 3);
        assert_eq!(w.read(CR, 128 * 256 * MS / 1000), 0x7F);
        assert_eq!(w.deadline(), None, "no reset without WDGA");
    }

    #[test]
    fn active_watchdog_resets_when_t6_clears_and_flags_ewi_at_0x40() {
        let mut w = running();
        w.write(CFR, 3 << 7 | 0x7F, !0, 0); // /8: 2.048 ms per count
        w.write(CR, CR_WDGA | 0x7F, !0, 0);
        let p = 2048 * MS / 1000;
        assert_eq!(w.deadline(), Some(64 * p), "0x7F -> 0x3F: 64 counts");
        assert_eq!(w.read(SR, 63 * p - 1), 0);
        assert_eq!(w.read(SR, 63 * p), SR_EWIF, "counter at 0x40");
        assert_eq!(w.read(CR, 63 * p) & 0x7F, 0x40);
        assert!(!w.expired(64 * p - 1) && w.expired(64 * p));
        w.write(SR, 0, !0, 63 * p);
        assert_eq!(w.read(SR, 63 * p), 0, "EWIF cleared by writing 0");
    }

    #[test]
    fn reload_inside_the_window_restarts_above_it_resets() {
        let mut w = running();
        w.write(CFR, 0x50, !0, 0);
        w.write(CR, CR_WDGA | 0x7F, !0, 0);
        let p = w.period_ps(PCLK1);
        // At 0x60 (> W 0x50): too early.
        let mut early = w.clone();
        early.write(CR, 0x7F, 0x7F, 0x1F * p);
        assert!(early.expired(0x1F * p), "refresh above the window");
        // At 0x50: inside the window; the countdown starts again.
        w.write(CR, 0x7F, 0x7F, 0x2F * p);
        assert!(!w.expired(0x2F * p));
        assert_eq!(w.deadline(), Some(0x2F * p + 64 * p));
        // T6 = 0 resets at once.
        w.write(CR, 0x3F, 0x7F, 0x70 * p);
        assert!(w.expired(0x70 * p));
    }

    #[test]
    fn gated_or_frozen_counter_keeps_its_value_and_wdga_sticks_until_reset() {
        let mut w = running();
        w.write(CR, CR_WDGA | 0x7F, !0, 0);
        let p = w.period_ps(PCLK1);
        w.set_clocking(false, PCLK1, 10 * p);
        assert_eq!(w.deadline(), None);
        assert_eq!(w.read(CR, 1000 * p), CR_WDGA | 0x75);
        w.set_clocking(true, PCLK1, 1000 * p);
        assert_eq!(w.deadline(), Some(1000 * p + (0x75 - 0x3F) * p));
        w.write(CR, 0x7F, 0x7F, 1000 * p + 50 * p); // at 0x43, inside W 0x7F
        assert!(!w.expired(1050 * p));
        assert!(w.active(), "WDGA is not cleared by a write");
        w.reset();
        assert!(!w.active());
    }
}

//! STM32F407 independent watchdog (IWDG, 0x4000_3000).
//!
//! Owns KR/PR/RLR/SR, the started and write-access state, and the
//! countdown: once started (KR 0xCCCC) the counter runs from the ~32 kHz
//! LSI, one step every 4 << PR LSI cycles, from RLR down to 0, which resets
//! the chip. The countdown is kept as the virtual time of expiry:
//! (RLR + 1) x (4 << PR) / 32 kHz after a start or a reload (0xAAAA), as in
//! RM0090 Table 108 (0.125 ms at /4, RLR 0 ... 512 ms at /4, RLR 0xFFF).
//! A new PR/RLR takes effect at the next reload. While frozen (core halted
//! in debug with DBGMCU_APB1_FZ.DBG_IWDG_STOP, decided by the board) the
//! remaining time is kept. KR 0x5555 enables writes to PR and RLR, any other
//! key write-protects them again. SR (PVU/RVU) reads 0: register updates
//! complete instantly. Once started the watchdog runs until reset; the
//! board's reset clears it (the option bytes select the software watchdog).

use crate::sim::clock::PS_PER_S;

/// Register offsets.
pub const KR: u32 = 0x00;
/// Prescaler register.
pub const PR: u32 = 0x04;
/// Reload register.
pub const RLR: u32 = 0x08;
/// Status register.
pub const SR: u32 = 0x0C;

/// Key: reload the counter.
pub const KEY_RELOAD: u32 = 0xAAAA;
/// Key: enable PR/RLR write access.
pub const KEY_ACCESS: u32 = 0x5555;
/// Key: start the watchdog.
pub const KEY_START: u32 = 0xCCCC;

/// LSI frequency the IWDG timings of RM0090 assume.
pub const LSI_HZ: u64 = 32_000;

/// Where the countdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Countdown {
    Stopped,
    /// Running: expires at this virtual time.
    Until(u64),
    /// Frozen with this much time left.
    Frozen(u64),
}

/// IWDG register block.
#[derive(Debug, Clone)]
pub struct Iwdg {
    pr: u32,
    rlr: u32,
    access: bool,
    countdown: Countdown,
    frozen: bool,
    reloads: u64,
}

impl Default for Iwdg {
    fn default() -> Self {
        Self::new()
    }
}

impl Iwdg {
    /// IWDG at reset values (stopped, PR=0, RLR=0xFFF).
    pub fn new() -> Self {
        Iwdg {
            pr: 0,
            rlr: 0xFFF,
            access: false,
            countdown: Countdown::Stopped,
            frozen: false,
            reloads: 0,
        }
    }

    /// Back to reset values (stops the watchdog).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// True once 0xCCCC was written to KR.
    pub fn started(&self) -> bool {
        self.countdown != Countdown::Stopped
    }

    /// Number of 0xAAAA reloads since reset.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// Time from a reload to the reset with the current PR and RLR.
    pub fn timeout_ps(&self) -> u64 {
        let ticks = (self.rlr as u64 + 1) * (4u64 << self.pr.min(6));
        ticks * PS_PER_S / LSI_HZ
    }

    /// Virtual time at which the watchdog resets the chip, if it runs.
    pub fn deadline(&self) -> Option<u64> {
        match self.countdown {
            Countdown::Until(t) => Some(t),
            _ => None,
        }
    }

    /// Whether the countdown has run out at `now`.
    pub fn expired(&self, now: u64) -> bool {
        self.deadline().is_some_and(|t| now >= t)
    }

    /// Freeze or thaw the countdown (DBG_IWDG_STOP while the core is halted).
    pub fn set_frozen(&mut self, frozen: bool, now: u64) {
        if frozen == self.frozen {
            return;
        }
        self.frozen = frozen;
        self.countdown = match self.countdown {
            Countdown::Until(t) if frozen => Countdown::Frozen(t.saturating_sub(now)),
            Countdown::Frozen(left) if !frozen => Countdown::Until(now.saturating_add(left)),
            c => c,
        };
    }

    fn reload(&mut self, now: u64) {
        let t = self.timeout_ps();
        self.countdown = if self.frozen {
            Countdown::Frozen(t)
        } else {
            Countdown::Until(now.saturating_add(t))
        };
    }

    /// Read register at `offset`: KR and SR read 0, unknown offsets read 0.
    pub fn read(&mut self, offset: u32, _now: u64) -> u32 {
        match offset {
            PR => self.pr,
            RLR => self.rlr,
            _ => 0,
        }
    }

    /// Write register at `offset` (`mask` selects the byte lanes written).
    pub fn write(&mut self, offset: u32, value: u32, mask: u32, now: u64) {
        let m = mask
            & match offset {
                PR => 0x7,
                RLR => 0xFFF,
                _ => 0xFFFF,
            };
        match offset {
            KR => {
                let key = value & m;
                self.access = key == KEY_ACCESS;
                match key {
                    KEY_START if !self.started() => self.reload(now),
                    KEY_RELOAD if self.started() => {
                        self.reloads = self.reloads.wrapping_add(1);
                        self.reload(now);
                    }
                    KEY_RELOAD => self.reloads = self.reloads.wrapping_add(1),
                    _ => {}
                }
            }
            PR if self.access => self.pr = (self.pr & !m) | (value & m),
            RLR if self.access => self.rlr = (self.rlr & !m) | (value & m),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_values_and_write_only_kr() {
        let mut w = Iwdg::new();
        assert_eq!(w.read(KR, 0), 0);
        assert_eq!(w.read(PR, 0), 0);
        assert_eq!(w.read(RLR, 0), 0xFFF);
        assert_eq!(w.read(SR, 0), 0);
        assert!(!w.started());
    }

    #[test]
    fn pr_rlr_need_0x5555_and_other_keys_relock() {
        let mut w = Iwdg::new();
        w.write(PR, 4, !0, 0);
        w.write(RLR, 0x123, !0, 0);
        assert_eq!((w.read(PR, 0), w.read(RLR, 0)), (0, 0xFFF));
        w.write(KR, KEY_ACCESS, !0, 0);
        w.write(PR, 0xFF, !0, 0);
        w.write(RLR, 0xF123, !0, 0);
        assert_eq!((w.read(PR, 0), w.read(RLR, 0)), (7, 0x123));
        w.write(KR, KEY_RELOAD, !0, 0);
        w.write(PR, 1, !0, 0);
        assert_eq!(w.read(PR, 0), 7);
        assert_eq!(w.reloads(), 1);
    }

    const MS: u64 = PS_PER_S / 1000;

    #[test]
    fn countdown_follows_lsi_prescaler_and_reload() {
        let mut w = Iwdg::new();
        w.write(KR, KEY_ACCESS, !0, 0);
        w.write(PR, 0, !0, 0);
        w.write(RLR, 0, !0, 0);
        assert_eq!(w.timeout_ps(), MS / 8, "RLR 0 at /4: 0.125 ms");
        w.write(RLR, 0xFFF, !0, 0);
        assert_eq!(w.timeout_ps(), 512 * MS, "RLR 0xFFF at /4: 512 ms");
        w.write(PR, 6, !0, 0);
        assert_eq!(w.timeout_ps(), 32_768 * MS, "RLR 0xFFF at /256: 32.768 s");
        w.write(PR, 0, !0, 0);
        w.write(RLR, 39, !0, 0); // 5 ms
        assert_eq!(w.deadline(), None);
        w.write(KR, KEY_START, !0, MS);
        assert_eq!(w.deadline(), Some(6 * MS));
        assert!(!w.expired(6 * MS - 1) && w.expired(6 * MS));
        w.write(KR, KEY_RELOAD, !0, 4 * MS);
        assert_eq!(
            w.deadline(),
            Some(9 * MS),
            "a reload restarts the countdown"
        );
    }

    #[test]
    fn frozen_countdown_keeps_its_remaining_time() {
        let mut w = Iwdg::new();
        w.write(KR, KEY_ACCESS, !0, 0);
        w.write(RLR, 39, !0, 0);
        w.write(KR, KEY_START, !0, 0);
        w.set_frozen(true, 2 * MS);
        assert_eq!(w.deadline(), None);
        assert!(!w.expired(100 * MS));
        w.set_frozen(false, 100 * MS);
        assert_eq!(w.deadline(), Some(103 * MS));
    }

    #[test]
    fn cccc_starts_and_only_reset_stops() {
        let mut w = Iwdg::new();
        w.write(KR, 0xCC, 0xFF, 0); // byte write is not the key
        assert!(!w.started());
        w.write(KR, KEY_START, !0, 0);
        assert!(w.started());
        w.write(KR, 0, !0, 0);
        assert!(w.started());
        w.reset();
        assert!(!w.started());
        w.write(0x40, !0, !0, 0);
        assert_eq!(w.read(0x40, 0), 0);
    }
}

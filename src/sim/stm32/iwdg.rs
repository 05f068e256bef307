//! STM32F407 independent watchdog (IWDG, 0x4000_3000).
//!
//! Owns KR/PR/RLR/SR as storage plus the started and write-access state.
//! No countdown and no reset are modelled: the board only needs to know
//! whether firmware started the watchdog. KR keys: 0xCCCC starts, 0xAAAA
//! reloads (and, like any key other than 0x5555, write-protects PR/RLR),
//! 0x5555 enables writes to PR and RLR. SR (PVU/RVU) reads 0: register
//! updates complete instantly. Once started the watchdog runs until reset.

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

/// IWDG register block.
#[derive(Debug, Clone)]
pub struct Iwdg {
    pr: u32,
    rlr: u32,
    access: bool,
    started: bool,
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
            started: false,
            reloads: 0,
        }
    }

    /// Back to reset values (stops the watchdog).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// True once 0xCCCC was written to KR.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Number of 0xAAAA reloads since reset.
    pub fn reloads(&self) -> u64 {
        self.reloads
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
    pub fn write(&mut self, offset: u32, value: u32, mask: u32, _now: u64) {
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
                    KEY_START => self.started = true,
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

//! One STM32F407 GPIO port (GPIOA..GPIOE at 0x4002_0000 + 0x400 * n).
//!
//! Owns the port's configuration and output registers and the levels that
//! the outside world drives onto its pins ([`GpioPort::set_input`]).
//!
//! Modelling choices:
//! - A pin not driven from outside reads its pull: pull-up → 1, pull-down →
//!   0, floating (or the reserved PUPDR=11) → 1.
//! - An output pin reads its ODR bit, except an open-drain output with ODR=1,
//!   which releases the line and reads like an input.
//! - Alternate-function pins read like inputs (the peripheral's drive is not
//!   modelled here); analog pins read 0 in IDR (Schmitt trigger disabled).
//! - LCKR's lock key sequence (RM0090 8.4.8: LCKK written 1, 0, 1 with the
//!   same LCK[15:0]; anything else aborts it) locks the port at its third
//!   write: LCKK then reads 1, LCKR ignores writes and the locked pins'
//!   fields of MODER, OTYPER, OSPEEDR, PUPDR, AFRL and AFRH keep their
//!   values until reset (a write changes only unlocked pins). ODR and BSRR
//!   are not locked.

/// Register offsets.
pub const MODER: u32 = 0x00;
/// Output type register.
pub const OTYPER: u32 = 0x04;
/// Output speed register.
pub const OSPEEDR: u32 = 0x08;
/// Pull-up/pull-down register.
pub const PUPDR: u32 = 0x0C;
/// Input data register (read-only).
pub const IDR: u32 = 0x10;
/// Output data register.
pub const ODR: u32 = 0x14;
/// Bit set/reset register (write-only).
pub const BSRR: u32 = 0x18;
/// Configuration lock register.
pub const LCKR: u32 = 0x1C;
/// Alternate function low register (pins 0..7).
pub const AFRL: u32 = 0x20;
/// Alternate function high register (pins 8..15).
pub const AFRH: u32 = 0x24;

/// Mode of one pin as configured by MODER (and AFRL/AFRH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    /// MODER = 00.
    Input,
    /// MODER = 01.
    Output,
    /// MODER = 10, with the AF number from AFRL/AFRH.
    Alternate(u8),
    /// MODER = 11.
    Analog,
}

/// One GPIO port.
#[derive(Debug, Clone)]
pub struct GpioPort {
    index: u8,
    moder: u32,
    otyper: u32,
    ospeedr: u32,
    pupdr: u32,
    odr: u32,
    /// LCK[15:0] (LCKK is `locked`).
    lckr: u32,
    /// Writes of the lock key sequence seen so far (0-2).
    lock_stage: u8,
    /// The key sequence completed: the LCK pins are frozen until reset.
    locked: bool,
    afrl: u32,
    afrh: u32,
    /// Pins driven from outside, and their levels.
    ext_driven: u16,
    ext_level: u16,
}

fn merge(old: u32, value: u32, mask: u32, writable: u32) -> u32 {
    let m = mask & writable;
    (old & !m) | (value & m)
}

impl GpioPort {
    /// Port `port_index` (0 = GPIOA, 1 = GPIOB, ...), at reset values.
    pub fn new(port_index: u8) -> Self {
        let mut p = GpioPort {
            index: port_index,
            moder: 0,
            otyper: 0,
            ospeedr: 0,
            pupdr: 0,
            odr: 0,
            lckr: 0,
            lock_stage: 0,
            locked: false,
            afrl: 0,
            afrh: 0,
            ext_driven: 0,
            ext_level: 0,
        };
        p.reset();
        p
    }

    /// Port index given at construction.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Registers to their reset values (GPIOA/GPIOB carry the debug pins'
    /// configuration). External drive levels are kept: they are not part of
    /// the chip.
    pub fn reset(&mut self) {
        let (moder, pupdr, ospeedr) = match self.index {
            0 => (0xA800_0000, 0x6400_0000, 0x0C00_0000),
            1 => (0x0000_0280, 0x0000_0100, 0x0000_00C0),
            _ => (0, 0, 0),
        };
        self.moder = moder;
        self.pupdr = pupdr;
        self.ospeedr = ospeedr;
        self.otyper = 0;
        self.odr = 0;
        self.lckr = 0;
        self.lock_stage = 0;
        self.locked = false;
        self.afrl = 0;
        self.afrh = 0;
    }

    /// Whether LCKR's key sequence locked the port (LCKK).
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Bits of a register with `width`-bit fields per pin (pins `first`..)
    /// that the lock freezes.
    fn frozen(&self, width: u32, first: u32) -> u32 {
        if !self.locked {
            return 0;
        }
        let field = (1u32 << width) - 1;
        (0..32 / width)
            .filter(|i| (self.lckr >> (first + i)) & 1 != 0)
            .fold(0, |m, i| m | field << (width * i))
    }

    /// LCKR write: the lock key sequence (RM0090 8.4.8).
    fn write_lckr(&mut self, value: u32, mask: u32) {
        if self.locked {
            return;
        }
        let new = merge(self.lckr, value, mask, 0x1_FFFF);
        let (lckk, bits) = (new & 1 << 16 != 0, new & 0xFFFF);
        let same = bits == self.lckr;
        self.lock_stage = match (self.lock_stage, lckk) {
            (1, false) if same => 2,
            (2, true) if same => {
                self.locked = true;
                0
            }
            (_, true) => 1,
            _ => 0,
        };
        self.lckr = bits;
    }

    /// Mode of `pin` (pins ≥ 16 report `Input`).
    pub fn pin_mode(&self, pin: u8) -> PinMode {
        if pin >= 16 {
            return PinMode::Input;
        }
        let p = pin as u32;
        match (self.moder >> (2 * p)) & 3 {
            0 => PinMode::Input,
            1 => PinMode::Output,
            2 => {
                let afr = if p < 8 { self.afrl } else { self.afrh };
                PinMode::Alternate(((afr >> (4 * (p % 8))) & 0xF) as u8)
            }
            _ => PinMode::Analog,
        }
    }

    /// ODR bit of `pin` (false for pins ≥ 16).
    pub fn output_level(&self, pin: u8) -> bool {
        pin < 16 && (self.odr >> pin) & 1 != 0
    }

    /// True if `pin` is configured open-drain (OTYPER).
    pub fn open_drain(&self, pin: u8) -> bool {
        pin < 16 && (self.otyper >> pin) & 1 != 0
    }

    /// Level the pin would have as an undriven-by-us input.
    fn input_level(&self, pin: u8) -> bool {
        if (self.ext_driven >> pin) & 1 != 0 {
            return (self.ext_level >> pin) & 1 != 0;
        }
        // 01 pull-up, 10 pull-down, 00 floating, 11 reserved: float high.
        (self.pupdr >> (2 * pin as u32)) & 3 != 2
    }

    /// Level seen on the pin: a push-pull output → ODR; an open-drain output
    /// → 0 if ODR=0, else as an input; input/alternate/analog → the external
    /// level if driven ([`GpioPort::set_input`]), else pull-up → 1,
    /// pull-down → 0, floating → 1. Pins ≥ 16 read false.
    pub fn pin_level(&self, pin: u8) -> bool {
        if pin >= 16 {
            return false;
        }
        match self.pin_mode(pin) {
            PinMode::Output => {
                if self.output_level(pin) {
                    !self.open_drain(pin) || self.input_level(pin)
                } else {
                    false
                }
            }
            _ => self.input_level(pin),
        }
    }

    /// Drive `pin` from outside (`Some(level)`) or release it (`None`).
    /// Pins ≥ 16 are ignored.
    pub fn set_input(&mut self, pin: u8, level: Option<bool>) {
        if pin >= 16 {
            return;
        }
        let bit = 1u16 << pin;
        match level {
            Some(l) => {
                self.ext_driven |= bit;
                if l {
                    self.ext_level |= bit;
                } else {
                    self.ext_level &= !bit;
                }
            }
            None => {
                self.ext_driven &= !bit;
                self.ext_level &= !bit;
            }
        }
    }

    fn idr(&self) -> u32 {
        (0..16u8)
            .filter(|&p| self.pin_mode(p) != PinMode::Analog && self.pin_level(p))
            .fold(0, |acc, p| acc | (1 << p))
    }

    /// Read register at `offset` (BSRR and unknown offsets read 0).
    pub fn read(&mut self, offset: u32, _now: u64) -> u32 {
        match offset {
            MODER => self.moder,
            OTYPER => self.otyper,
            OSPEEDR => self.ospeedr,
            PUPDR => self.pupdr,
            IDR => self.idr(),
            ODR => self.odr,
            LCKR => self.lckr | (self.locked as u32) << 16,
            AFRL => self.afrl,
            AFRH => self.afrh,
            _ => 0,
        }
    }

    /// Write register at `offset` (`mask` selects the byte lanes written).
    /// BSRR: bits 15:0 set ODR bits, bits 31:16 reset them; set wins.
    pub fn write(&mut self, offset: u32, value: u32, mask: u32, _now: u64) {
        match offset {
            MODER => self.moder = merge(self.moder, value, mask, !self.frozen(2, 0)),
            OTYPER => self.otyper = merge(self.otyper, value, mask, 0xFFFF & !self.frozen(1, 0)),
            OSPEEDR => self.ospeedr = merge(self.ospeedr, value, mask, !self.frozen(2, 0)),
            PUPDR => self.pupdr = merge(self.pupdr, value, mask, !self.frozen(2, 0)),
            ODR => self.odr = merge(self.odr, value, mask, 0xFFFF),
            BSRR => {
                let v = value & mask;
                let set = v & 0xFFFF;
                let clr = v >> 16;
                self.odr = ((self.odr & !clr) | set) & 0xFFFF;
            }
            LCKR => self.write_lckr(value, mask),
            AFRL => self.afrl = merge(self.afrl, value, mask, !self.frozen(4, 0)),
            AFRH => self.afrh = merge(self.afrh, value, mask, !self.frozen(4, 8)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_values_for_gpioa_gpiob_and_others() {
        let mut a = GpioPort::new(0);
        assert_eq!(a.read(MODER, 0), 0xA800_0000);
        assert_eq!(a.read(PUPDR, 0), 0x6400_0000);
        assert_eq!(a.read(OSPEEDR, 0), 0x0C00_0000);
        let mut b = GpioPort::new(1);
        assert_eq!(b.read(MODER, 0), 0x0000_0280);
        assert_eq!(b.read(PUPDR, 0), 0x0000_0100);
        assert_eq!(b.read(OSPEEDR, 0), 0x0000_00C0);
        for n in 2..5 {
            let mut p = GpioPort::new(n);
            for off in [MODER, OTYPER, OSPEEDR, PUPDR, ODR, LCKR, AFRL, AFRH] {
                assert_eq!(p.read(off, 0), 0, "port {n} offset {off:#x}");
            }
        }
        // reset() restores after writes.
        a.write(MODER, 0, !0, 0);
        a.write(ODR, 0xFFFF, !0, 0);
        a.reset();
        assert_eq!(a.read(MODER, 0), 0xA800_0000);
        assert_eq!(a.read(ODR, 0), 0);
    }

    #[test]
    fn bsrr_sets_low_half_resets_high_half_and_set_wins() {
        let mut p = GpioPort::new(3);
        p.write(ODR, 0x00F0, !0, 0);
        p.write(BSRR, 0x0030_0001, !0, 0); // reset 4,5; set 0
        assert_eq!(p.read(ODR, 0), 0x00C1);
        p.write(BSRR, 0x0002_0002, !0, 0); // set and reset pin 1: set wins
        assert_eq!(p.read(ODR, 0), 0x00C3);
        assert_eq!(p.read(BSRR, 0), 0);
        // Halfword write to the reset half only.
        p.write(BSRR, 0x0001_0000, 0xFFFF_0000, 0);
        assert_eq!(p.read(ODR, 0), 0x00C2);
        // Lanes not in mask are not written.
        p.write(BSRR, 0x0000_FF00, 0x0000_00FF, 0);
        assert_eq!(p.read(ODR, 0), 0x00C2);
    }

    #[test]
    fn pin_mode_from_moder_and_afr() {
        let mut p = GpioPort::new(2);
        // pin0 input, pin1 output, pin2 AF, pin3 analog; pin10 AF.
        p.write(MODER, 0b11_10_01_00 | (2 << 20), !0, 0);
        p.write(AFRL, 5 << 8, !0, 0);
        p.write(AFRH, 0xC << 8, !0, 0);
        assert_eq!(p.pin_mode(0), PinMode::Input);
        assert_eq!(p.pin_mode(1), PinMode::Output);
        assert_eq!(p.pin_mode(2), PinMode::Alternate(5));
        assert_eq!(p.pin_mode(3), PinMode::Analog);
        assert_eq!(p.pin_mode(10), PinMode::Alternate(12));
        assert_eq!(p.pin_mode(200), PinMode::Input);
        let a = GpioPort::new(0);
        assert_eq!(a.pin_mode(13), PinMode::Alternate(0)); // SWDIO
        assert_eq!(a.pin_mode(14), PinMode::Alternate(0)); // SWCLK
    }

    #[test]
    fn idr_reflects_outputs_pulls_and_external_levels() {
        let mut p = GpioPort::new(4);
        // pin0 output, pin1 input pull-down, pin2 input pull-up, pin3 floating.
        p.write(MODER, 0b01, !0, 0);
        p.write(PUPDR, (0b10 << 2) | (0b01 << 4), !0, 0);
        assert_eq!(p.read(IDR, 0) & 0xF, 0b1100);
        p.write(BSRR, 1, !0, 0);
        assert_eq!(p.read(IDR, 0) & 0xF, 0b1101);
        p.set_input(1, Some(true));
        p.set_input(2, Some(false));
        assert_eq!(p.read(IDR, 0) & 0xF, 0b1011);
        assert!(p.pin_level(1));
        p.set_input(1, None);
        assert!(!p.pin_level(1));
        // Output overrides external drive.
        p.set_input(0, Some(false));
        assert!(p.pin_level(0));
        // Analog pins read 0 in IDR.
        p.write(MODER, 0b11 << 6, 0xFF, 0);
        assert_eq!(p.read(IDR, 0) & 0x8, 0);
        p.set_input(99, Some(true));
        assert!(!p.pin_level(99));
        assert!(!p.output_level(99));
    }

    #[test]
    fn open_drain_high_releases_the_line() {
        let mut p = GpioPort::new(2);
        p.write(MODER, 0b01, !0, 0);
        p.write(OTYPER, 1, !0, 0);
        p.write(ODR, 1, !0, 0);
        assert!(p.pin_level(0)); // floating → 1
        p.set_input(0, Some(false));
        assert!(!p.pin_level(0));
        p.write(ODR, 0, !0, 0);
        p.set_input(0, Some(true));
        assert!(!p.pin_level(0));
    }

    #[test]
    fn sixteen_bit_registers_ignore_upper_bits_and_unknown_offsets() {
        let mut p = GpioPort::new(1);
        p.write(ODR, 0xFFFF_FFFF, !0, 0);
        assert_eq!(p.read(ODR, 0), 0xFFFF);
        p.write(OTYPER, 0xFFFF_FFFF, !0, 0);
        assert_eq!(p.read(OTYPER, 0), 0xFFFF);
        p.write(IDR, 0, !0, 0);
        p.write(0x400, 1, !0, 0);
        assert_eq!(p.read(0x400, 0), 0);
        assert_eq!(p.read(3, 0), 0);
    }

    #[test]
    fn lckr_key_sequence_freezes_the_locked_pins_configuration_until_reset() {
        let mut p = GpioPort::new(1);
        let lock = |p: &mut GpioPort, bits: u32| {
            p.write(LCKR, 1 << 16 | bits, !0, 0);
            p.write(LCKR, bits, !0, 0);
            p.write(LCKR, 1 << 16 | bits, !0, 0);
        };
        // A sequence whose LCK bits change on the way aborts.
        p.write(LCKR, 1 << 16 | 1 << 3, !0, 0);
        p.write(LCKR, 1 << 4, !0, 0);
        p.write(LCKR, 1 << 16 | 1 << 4, !0, 0);
        assert_eq!(p.read(LCKR, 0), 1 << 4, "not locked: LCKK reads 0");
        p.write(MODER, 0b01 << 6, 0b11 << 6, 0);
        assert_eq!(p.pin_mode(3), PinMode::Output, "still writable");
        p.write(MODER, 0, 0b11 << 6, 0);

        lock(&mut p, 1 << 3); // PB3
        assert_eq!(p.read(LCKR, 0), 1 << 16 | 1 << 3);
        assert!(p.locked());
        p.write(MODER, 0b10 << 6 | 0b01 << 8, !0, 0);
        assert_eq!(p.pin_mode(3), PinMode::Input, "PB3 frozen");
        assert_eq!(p.pin_mode(4), PinMode::Output, "PB4 not locked");
        p.write(AFRL, 0x0055_5000, !0, 0);
        assert_eq!(p.read(AFRL, 0), 0x0055_0000, "AF of PB3 frozen");
        p.write(OTYPER, 0xFFFF, !0, 0);
        assert_eq!(p.read(OTYPER, 0), 0xFFF7);
        p.write(LCKR, 0, !0, 0);
        assert_eq!(p.read(LCKR, 0), 1 << 16 | 1 << 3, "LCKR frozen too");
        p.write(BSRR, 1 << 3, !0, 0);
        assert_eq!(p.read(ODR, 0) & 1 << 3, 1 << 3, "ODR is not locked");
        p.reset();
        assert!(!p.locked());
        p.write(MODER, 0b10 << 6, 0b11 << 6, 0);
        assert_eq!(p.pin_mode(3), PinMode::Alternate(0), "unlocked by reset");
    }
}

//! Why no chip answers when the application locked the SPI pins: GPIOx_LCKR
//! (RM0090 8.4.8) freezes a pin's MODER, OTYPER, OSPEEDR, PUPDR and AFR
//! fields from the key sequence until reset, so the stub cannot route it to
//! the SPI and the chip reads as absent. Only the failure path reads these
//! registers: a working session costs no extra probe traffic.
//!
//! [`diagnose`] is pure (the wiring and each port's registers in, the first
//! pin locked in a mode other than the stub needs out); [`locked_pin`]
//! reads the registers and runs it.

use probe_rs::Core;

use super::error::{ExtFlashError, SpiWiring};
use super::probe_io::rd_block;
use super::wiring::{gpio_base, ports};
use crate::board::{ExtFlashWiring, Pin};
use crate::stm32f4::{GPIO_AFRH, GPIO_AFRL, GPIO_LCKR, GPIO_LCKR_LCKK, GPIO_MODER};

/// A pin's mode as MODER and AFR say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    Input,
    Output,
    Alternate(u8),
    Analog,
}

impl std::fmt::Display for PinMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinMode::Input => write!(f, "input"),
            PinMode::Output => write!(f, "output"),
            PinMode::Alternate(af) => write!(f, "AF{af}"),
            PinMode::Analog => write!(f, "analog"),
        }
    }
}

/// The registers of one port that decide a pin's mode and its lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortRegs {
    pub moder: u32,
    pub lckr: u32,
    pub afrl: u32,
    pub afrh: u32,
}

impl PortRegs {
    /// From the words MODER..AFRH (offsets 0x00..=0x24).
    fn from_block(w: &[u32]) -> PortRegs {
        let at = |off: u32| w[(off / 4) as usize];
        PortRegs {
            moder: at(GPIO_MODER),
            lckr: at(GPIO_LCKR),
            afrl: at(GPIO_AFRL),
            afrh: at(GPIO_AFRH),
        }
    }

    fn mode(&self, pin: u8) -> PinMode {
        let n = u32::from(pin);
        match (self.moder >> (2 * n)) & 0b11 {
            0b00 => PinMode::Input,
            0b01 => PinMode::Output,
            0b10 => {
                let afr = if n < 8 { self.afrl } else { self.afrh };
                PinMode::Alternate(((afr >> (4 * (n % 8))) & 0xF) as u8)
            }
            _ => PinMode::Analog,
        }
    }

    fn is_locked(&self, pin: u8) -> bool {
        self.lckr & GPIO_LCKR_LCKK != 0 && self.lckr & (1 << pin) != 0
    }
}

/// A wiring pin the application locked in a mode the stub cannot change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedPin {
    pub pin: Pin,
    pub lckr: u32,
    pub locked_as: PinMode,
    pub needed: PinMode,
}

/// The modes the stub gives the wiring's pins: SCK, MISO and MOSI on the
/// board file's AF, CS a GPIO output.
fn needed_modes(ext: &ExtFlashWiring) -> [(Pin, PinMode); 4] {
    let af = PinMode::Alternate(ext.af);
    [
        (ext.sck, af),
        (ext.miso, af),
        (ext.mosi, af),
        (ext.cs, PinMode::Output),
    ]
}

/// The first wiring pin (SCK, MISO, MOSI, CS order) whose port is locked
/// (LCKK set) with that pin's LCK bit set and whose mode is not what the
/// stub needs; `regs` returns a port's registers (`None`: not read).
pub fn diagnose(
    ext: &ExtFlashWiring,
    regs: impl Fn(char) -> Option<PortRegs>,
) -> Option<LockedPin> {
    needed_modes(ext).into_iter().find_map(|(pin, needed)| {
        let r = regs(pin.port)?;
        let locked_as = r.mode(pin.number);
        (r.is_locked(pin.number) && locked_as != needed).then_some(LockedPin {
            pin,
            lckr: r.lckr,
            locked_as,
            needed,
        })
    })
}

/// Read MODER..AFRH of the wiring's ports and name a locked pin, if one
/// explains why no chip answers. One block read per port.
pub fn locked_pin(
    core: &mut Core<'_>,
    ext: &ExtFlashWiring,
) -> Result<Option<LockedPin>, ExtFlashError> {
    let mut read = Vec::new();
    for port in ports(ext) {
        let words = rd_block(core, gpio_base(port), (GPIO_AFRH / 4 + 1) as usize)?;
        read.push((port, PortRegs::from_block(&words)));
    }
    Ok(diagnose(ext, |port| {
        read.iter().find(|(p, _)| *p == port).map(|(_, r)| *r)
    }))
}

/// What to report when no chip answers on `ext`'s wiring: the locked pin
/// that explains it, or [`ExtFlashError::NoChip`]. A failed register read
/// leaves the plain `NoChip` (logged).
pub fn no_chip_error(core: &mut Core<'_>, ext: &ExtFlashWiring) -> ExtFlashError {
    let wiring = SpiWiring::of(ext);
    match locked_pin(core, ext) {
        Ok(Some(l)) => ExtFlashError::PinLocked {
            wiring,
            pin: l.pin,
            lckr: l.lckr,
            locked_as: l.locked_as,
            needed: l.needed,
        },
        Ok(None) => ExtFlashError::NoChip { wiring },
        Err(e) => {
            tracing::warn!(error = %crate::error::DisplayChain(&e), "reading GPIOx_LCKR of the SPI pins");
            ExtFlashError::NoChip { wiring }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::Board;

    /// GPIOB after reset with PB3 (JTDO, AF0) and PB4 (NJTRST, AF0) as the
    /// F407 leaves them.
    const PORTB_RESET: PortRegs = PortRegs {
        moder: 0x0000_0280,
        lckr: 0,
        afrl: 0,
        afrh: 0,
    };

    fn ext() -> ExtFlashWiring {
        Board::builtin().external_flash.unwrap()
    }

    /// GPIOB as the stub leaves it: PB3/4/5 AF5, PB0 output.
    fn portb_spi() -> PortRegs {
        PortRegs {
            moder: 0b10 << 6 | 0b10 << 8 | 0b10 << 10 | 0b01,
            lckr: 0,
            afrl: 5 << 12 | 5 << 16 | 5 << 20,
            afrh: 0,
        }
    }

    #[test]
    fn pb3_locked_at_reset_af0_is_named_with_lckr_and_modes() {
        let b = PortRegs {
            lckr: GPIO_LCKR_LCKK | 1 << 3,
            ..PORTB_RESET
        };
        let got = diagnose(&ext(), |p| (p == 'B').then_some(b)).unwrap();
        assert_eq!(got.pin.to_string(), "PB3");
        assert_eq!(got.lckr, 0x0001_0008);
        assert_eq!(got.locked_as, PinMode::Alternate(0));
        assert_eq!(got.needed, PinMode::Alternate(5));
    }

    #[test]
    fn lck_bits_without_lckk_are_not_a_lock() {
        let b = PortRegs {
            lckr: 0x38,
            ..PORTB_RESET
        };
        assert_eq!(diagnose(&ext(), |_| Some(b)), None);
    }

    #[test]
    fn a_pin_locked_in_the_mode_the_stub_needs_is_no_cause() {
        let b = PortRegs {
            lckr: GPIO_LCKR_LCKK | 0x39,
            ..portb_spi()
        };
        assert_eq!(diagnose(&ext(), |_| Some(b)), None);
    }

    #[test]
    fn cs_locked_as_input_needs_output() {
        let b = PortRegs {
            lckr: GPIO_LCKR_LCKK | 1,
            moder: portb_spi().moder & !0b11,
            ..portb_spi()
        };
        let got = diagnose(&ext(), |_| Some(b)).unwrap();
        assert_eq!(got.pin.to_string(), "PB0");
        assert_eq!(
            (got.locked_as, got.needed),
            (PinMode::Input, PinMode::Output)
        );
    }

    #[test]
    fn wrong_af_on_a_locked_pin_counts_and_other_ports_are_asked() {
        // SPI3 on port C with CS PA15: PC11 (MISO) locked on AF5, not AF6.
        let ext = super::super::wiring::spi3_on_two_ports();
        let c = PortRegs {
            moder: 0b10 << 22,
            lckr: GPIO_LCKR_LCKK | 1 << 11,
            afrl: 0,
            afrh: 5 << 12,
        };
        let got = diagnose(&ext, |p| (p == 'C').then_some(c)).unwrap();
        assert_eq!(got.pin.to_string(), "PC11");
        assert_eq!(got.locked_as, PinMode::Alternate(5));
        assert_eq!(got.needed, PinMode::Alternate(6));
        assert_eq!(
            diagnose(&ext, |p| (p == 'A').then_some(c)),
            None,
            "port A's registers say nothing of PC11"
        );
    }

    #[test]
    fn message_names_pin_lckr_mode_and_the_reset() {
        let e = ExtFlashError::PinLocked {
            wiring: SpiWiring::of(&ext()),
            pin: ext().sck,
            lckr: 0x0001_0038,
            locked_as: PinMode::Input,
            needed: PinMode::Alternate(5),
        };
        let text = e.to_string();
        assert!(
            text.contains("PB3 is locked by the application (GPIOB_LCKR = 0x0001_0038)"),
            "{text}"
        );
        assert!(text.contains("cannot be set to AF5 until reset"), "{text}");
        assert!(text.contains("`monitor reset halt`"), "{text}");
    }
}

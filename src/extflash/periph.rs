//! The application's RCC/GPIO/SPI registers the host changes to reach the
//! chip: which ones (one table), what was found in them, and how they go
//! back. Shared by a stub session (`save.rs`: everything the stub may
//! change, saved up front) and a direct read (`direct.rs`: only what it
//! changes, saved as it changes it); each passes its [`Policy`].
//!
//! Restore order, the same for both: the SPI (stopped before it is
//! reconfigured, SPE last), then each port's pins (MODER last, so a pin
//! changes mode only once its level, pad and AF are back), then the RCC
//! enables (last, so the writes above still have their clocks).

use probe_rs::Core;

use super::error::ExtFlashError;
use super::probe_io::{rd, wr, write_block};
use super::wiring;
use crate::board::ExtFlashWiring;
use crate::stm32f4::*;

/// GPIO registers saved per port, in restore order: level and pad
/// settings first, MODER last so a pin never drives a stale level.
pub(crate) const GPIO_SAVED: [u32; 7] = [
    GPIO_ODR,
    GPIO_OTYPER,
    GPIO_OSPEEDR,
    GPIO_PUPDR,
    GPIO_AFRL,
    GPIO_AFRH,
    GPIO_MODER,
];
/// SPI registers a session saves beside CR1 and CR2, which only the stub
/// changes (CRC polynomial, I2S mode).
const SPI_SESSION_EXTRA: [u32; 2] = [SPI_CRCPR, SPI_I2SCFGR];

/// How a path saved and puts registers back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// After a stub session: the stub may have changed any register of the
    /// table and left its SPI running. The SPI is stopped as it is before
    /// it is reconfigured, then every saved register is written, one
    /// write each.
    Session,
    /// After a direct read: only what it changed, which it knows. Adjacent
    /// registers go back in one block write; CR1 is written again only to
    /// set SPE.
    Direct,
}

/// Collects the first error of a restore that goes on past errors.
#[derive(Default)]
pub(crate) struct FirstError(Option<ExtFlashError>);

impl FirstError {
    pub(crate) fn keep(&mut self, r: Result<(), ExtFlashError>) {
        if let Err(e) = r {
            self.0.get_or_insert(e);
        }
    }

    pub(crate) fn result(self) -> Result<(), ExtFlashError> {
        self.0.map_or(Ok(()), Err)
    }
}

/// A port's registers as found, in [`GPIO_SAVED`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortSaved {
    pub base: u32,
    pub values: [u32; 7],
}

impl PortSaved {
    /// From a read of the port's MODER..AFRH (ten words from `base`).
    pub(crate) fn from_block(base: u32, block: &[u32]) -> PortSaved {
        PortSaved {
            base,
            values: GPIO_SAVED.map(|o| block[(o / 4) as usize]),
        }
    }

    fn restore(&self, core: &mut Core<'_>, policy: Policy, errors: &mut FirstError) {
        let base = self.base;
        match policy {
            Policy::Session => {
                for (o, v) in GPIO_SAVED.iter().zip(self.values) {
                    errors.keep(wr(core, base + o, v));
                }
            }
            Policy::Direct => {
                // ODR, OTYPER..PUPDR, AFRL..AFRH, MODER: GPIO_SAVED's order.
                let [odr, otyper, ospeedr, pupdr, afrl, afrh, moder] = self.values;
                errors.keep(wr(core, base + GPIO_ODR, odr));
                errors.keep(write_block(
                    core,
                    base + GPIO_OTYPER,
                    &[otyper, ospeedr, pupdr],
                ));
                errors.keep(write_block(core, base + GPIO_AFRL, &[afrl, afrh]));
                errors.keep(wr(core, base + GPIO_MODER, moder));
            }
        }
    }
}

/// The SPI's registers as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpiSaved {
    pub base: u32,
    pub cr1: u32,
    pub cr2: u32,
    /// [`SPI_SESSION_EXTRA`]'s values (a session only).
    pub extra: Option<[u32; 2]>,
}

impl SpiSaved {
    fn restore(&self, core: &mut Core<'_>, policy: Policy, errors: &mut FirstError) {
        let cr1 = self.base + SPI_CR1;
        // CR1 changes only with SPE clear (RM0090 28.5.1): stop the stub's
        // transfer configuration first; the direct read knows its own.
        if policy == Policy::Session {
            errors.keep(rd(core, cr1).and_then(|now| wr(core, cr1, now & !SPI_CR1_SPE)));
        }
        errors.keep(wr(core, cr1, self.cr1 & !SPI_CR1_SPE));
        errors.keep(wr(core, self.base + SPI_CR2, self.cr2));
        for (o, v) in SPI_SESSION_EXTRA
            .iter()
            .zip(self.extra.into_iter().flatten())
        {
            errors.keep(wr(core, self.base + o, v));
        }
        if policy == Policy::Session || self.cr1 & SPI_CR1_SPE != 0 {
            errors.keep(wr(core, cr1, self.cr1));
        }
    }
}

/// The RCC enables as found, where they were changed (`None`: not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Enables {
    pub ahb1: Option<u32>,
    /// The SPI's enable register and its value.
    pub apb: Option<(u32, u32)>,
}

impl Enables {
    /// Switch on the `gpio_mask` bits of AHB1ENR (found `ahb1`) and the
    /// SPI's enable (found `apb`), noting each value before its write. A
    /// session writes both whatever they hold (its mask has more clocks);
    /// a direct read writes only what is off.
    pub(crate) fn switch_on(
        &mut self,
        core: &mut Core<'_>,
        ext: &ExtFlashWiring,
        (ahb1, apb): (u32, u32),
        gpio_mask: u32,
        policy: Policy,
    ) -> Result<(), ExtFlashError> {
        let (_, enr, spi_bit) = wiring::spi_regs(ext.spi);
        let always = policy == Policy::Session;
        if always || ahb1 & gpio_mask != gpio_mask {
            self.ahb1 = Some(ahb1);
            wr(core, RCC_AHB1ENR, ahb1 | gpio_mask)?;
        }
        if always || apb & spi_bit == 0 {
            self.apb = Some((enr, apb));
            wr(core, enr, apb | spi_bit)?;
        }
        Ok(())
    }

    fn restore(&self, core: &mut Core<'_>, errors: &mut FirstError) {
        if let Some((enr, apb)) = self.apb {
            errors.keep(wr(core, enr, apb));
        }
        if let Some(ahb1) = self.ahb1 {
            errors.keep(wr(core, RCC_AHB1ENR, ahb1));
        }
    }
}

/// Everything of the table a path saved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeriphSaved {
    pub spi: Option<SpiSaved>,
    pub ports: Vec<PortSaved>,
    pub enables: Enables,
}

impl PeriphSaved {
    /// Put back what was saved, in the module's restore order, going on
    /// past errors (the first is kept).
    pub(crate) fn restore(&self, core: &mut Core<'_>, policy: Policy, errors: &mut FirstError) {
        if let Some(spi) = &self.spi {
            spi.restore(core, policy, errors);
        }
        for port in &self.ports {
            port.restore(core, policy, errors);
        }
        self.enables.restore(core, errors);
    }

    /// Every register address saved.
    pub(crate) fn addresses(&self) -> Vec<u32> {
        let mut out = Vec::new();
        if let Some(s) = &self.spi {
            out.extend([s.base + SPI_CR1, s.base + SPI_CR2]);
            if s.extra.is_some() {
                out.extend(SPI_SESSION_EXTRA.map(|o| s.base + o));
            }
        }
        for p in &self.ports {
            out.extend(GPIO_SAVED.map(|o| p.base + o));
        }
        out.extend(self.enables.apb.map(|(enr, _)| enr));
        out.extend(self.enables.ahb1.map(|_| RCC_AHB1ENR));
        out
    }

    /// What a session saves of `ext`'s wiring, from `value`, which gives a
    /// register's value by address (read by one batched read of
    /// [`session_registers`]); the enables as `enables` found them.
    pub(crate) fn session(
        ext: &ExtFlashWiring,
        enables: Enables,
        value: impl Fn(u32) -> u32,
    ) -> PeriphSaved {
        let (spi, _, _) = wiring::spi_regs(ext.spi);
        PeriphSaved {
            spi: Some(SpiSaved {
                base: spi,
                cr1: value(spi + SPI_CR1),
                cr2: value(spi + SPI_CR2),
                extra: Some(SPI_SESSION_EXTRA.map(|o| value(spi + o))),
            }),
            ports: wiring::ports(ext)
                .into_iter()
                .map(|port| {
                    let base = wiring::gpio_base(port);
                    PortSaved {
                        base,
                        values: GPIO_SAVED.map(|o| value(base + o)),
                    }
                })
                .collect(),
            enables,
        }
    }
}

/// Every register of the table a session saves for `ext`'s wiring: each
/// port's, the SPI's, its RCC enable and AHB1ENR.
pub(crate) fn session_registers(ext: &ExtFlashWiring) -> Vec<u32> {
    let (_, enr, _) = wiring::spi_regs(ext.spi);
    let enables = Enables {
        ahb1: Some(0),
        apb: Some((enr, 0)),
    };
    PeriphSaved::session(ext, enables, |_| 0).addresses()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_saves_every_port_the_spi_and_both_enables() {
        let ext = wiring::spi3_on_two_ports();
        let regs = session_registers(&ext);
        assert_eq!(regs.len(), 4 + 7 * 2 + 2);
        let spi3 = 0x4000_3C00;
        assert_eq!(regs[..4], [spi3, spi3 + 4, spi3 + 0x10, spi3 + 0x1C]);
        assert!(!regs.contains(&(spi3 + SPI_DR)), "a DR read pops a frame");
        assert_eq!(regs[4 + 6], 0x4002_0800, "GPIOC MODER last of its port");
        assert_eq!(regs[4 + 7], 0x4002_0000 + GPIO_ODR, "then GPIOA");
        assert_eq!(&regs[regs.len() - 2..], &[RCC_APB1ENR, RCC_AHB1ENR]);
    }

    #[test]
    fn a_direct_read_names_only_what_it_changed() {
        let mut saved = PeriphSaved::default();
        assert!(saved.addresses().is_empty());
        saved.enables.apb = Some((RCC_APB2ENR, 0));
        saved.ports.push(PortSaved::from_block(
            0x4002_0400,
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ));
        assert_eq!(
            saved.ports[0].values,
            [5, 1, 2, 3, 8, 9, 0],
            "GPIO_SAVED order"
        );
        assert_eq!(saved.addresses().len(), 7 + 1);
        assert!(!saved.addresses().contains(&RCC_AHB1ENR), "left alone");
    }
}

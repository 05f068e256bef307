//! The STM32F4 RCC and FLASH_ACR facts the session clock involves (RM0090
//! 7.3, 3.9): the stub's `stub_clock` switches to it, the host saves what
//! it changes, reads which clock runs and puts the application's back.
//! One home for both sides; the host's other register facts are in its
//! `stm32f4` module.

pub const BASE: u32 = 0x4002_3800;
/// RCC_CR and its PLL bits.
pub const CR: u32 = BASE;
pub const CR_PLLON: u32 = 1 << 24;
pub const CR_PLLRDY: u32 = 1 << 25;
pub const PLLCFGR: u32 = BASE + 0x04;
pub const CFGR: u32 = BASE + 0x08;
/// RCC_CFGR.SW: the system clock asked for (0 HSI, 1 HSE, 2 PLL).
pub const CFGR_SW: u32 = 3;
/// RCC_CFGR.SWS: the system clock in use, in SW's encoding.
pub const CFGR_SWS: u32 = CFGR_SW << CFGR_SWS_SHIFT;
pub const CFGR_SWS_SHIFT: u32 = 2;
/// The SW/SWS value of the PLL.
pub const SW_PLL: u32 = 2;
/// RCC_CFGR's bus prescalers and SW: HPRE, PPRE1, PPRE2, SW.
pub const CFGR_BUS_BITS: u32 = 0xF << 4 | 7 << 10 | 7 << 13 | CFGR_SW;
/// FLASH_ACR and its LATENCY field.
pub const FLASH_ACR: u32 = 0x4002_3C00;
pub const ACR_LATENCY: u32 = 7;
/// Five wait states: 150-168 MHz at 2.7-3.6 V (RM0090 table 10).
pub const ACR_LATENCY_168: u32 = 5;

/// The system clock RCC_CFGR `cfgr` says is in use (SWS, in SW's encoding).
pub const fn sws(cfgr: u32) -> u32 {
    (cfgr & CFGR_SWS) >> CFGR_SWS_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SESSION_CFGR;

    #[test]
    fn the_session_cfgr_selects_the_pll_with_its_bus_prescalers() {
        assert_eq!(sws(SESSION_CFGR), SW_PLL, "SWS = PLL as the host reads it");
        assert_eq!(
            SESSION_CFGR & CFGR_SW,
            SW_PLL,
            "SW = PLL as the stub writes it"
        );
        // HPRE / 1, PPRE1 / 4 (0b101), PPRE2 / 2 (0b100): RM0090 7.3.3.
        assert_eq!(SESSION_CFGR & CFGR_BUS_BITS, 0b101 << 10 | 0b100 << 13 | 2);
        assert_eq!(sws(0b0100), 1, "HSE");
        assert_eq!(sws(!CFGR_SWS), 0);
    }
}

//! From the board file's `[external_flash]` section to what the stub and
//! the runner need: the stub's [`Config`] block, and the STM32F407 GPIO,
//! SPI and RCC addresses of the wiring (which of them are saved and
//! restored is `periph.rs`'s table).
//!
//! Pure: addresses and values only (RM0090 memory map and register
//! layouts); nothing here talks to the target.

use extflash_stub_abi::{self as abi, Config, PinCfg, Timeouts};

use crate::board::{ExtFlashWiring, Pin};
use crate::stm32f4::*;

/// The core clock (HCLK, which DWT CYCCNT counts) that RCC_CFGR and
/// RCC_PLLCFGR select: SW status, PLL M/N/P from HSI or HSE, AHB prescaler.
/// Never above [`MAX_CORE_HZ`].
pub fn hclk_hz(cfgr: u32, pllcfgr: u32) -> u32 {
    let sysclk = match rcc_cfgr_sws(cfgr) {
        0 => u64::from(HSI_HZ),
        1 => u64::from(HSE_MAX_HZ),
        2 => {
            let src = if pllcfgr & (1 << 22) != 0 {
                HSE_MAX_HZ
            } else {
                HSI_HZ
            };
            let m = u64::from(pllcfgr & 0x3F);
            let n = u64::from((pllcfgr >> 6) & 0x1FF);
            let p = u64::from((pllcfgr >> 16) & 3) * 2 + 2;
            u64::from(src)
                .checked_div(m)
                .map_or(u64::from(MAX_CORE_HZ), |f| f * n / p)
        }
        _ => u64::from(MAX_CORE_HZ),
    };
    let hpre = (cfgr >> 4) & 0xF;
    let shift = match hpre {
        0..=7 => 0,
        8..=11 => hpre - 7,
        _ => hpre - 6,
    };
    (sysclk >> shift).clamp(1_000_000, u64::from(MAX_CORE_HZ)) as u32
}

/// GPIOx base of a port letter (A..E, H).
pub fn gpio_base(port: char) -> u32 {
    GPIO_BASE + 0x400 * port_index(port)
}

/// Whether the application holds chip select `pin` of a port whose MODER
/// and ODR read `moder` and `odr`: configured as a GPIO output (MODER =
/// 01) and driven low. The stub never starts under such a transaction.
pub fn cs_held(moder: u32, odr: u32, pin: u8) -> bool {
    let pin = u32::from(pin);
    (moder >> (2 * pin)) & 0b11 == 0b01 && odr & (1 << pin) == 0
}

/// RCC_AHB1ENR bit index of a port (GPIOAEN = 0 .. GPIOHEN = 7).
pub fn port_index(port: char) -> u32 {
    u32::from(port as u8 - b'A')
}

/// SPIx base, and its RCC enable register and bit.
pub fn spi_regs(spi: u8) -> (u32, u32, u32) {
    match spi {
        1 => (SPI1_BASE, RCC_APB2ENR, 1 << 12),
        2 => (SPI2_BASE, RCC_APB1ENR, 1 << 14),
        _ => (SPI3_BASE, RCC_APB1ENR, 1 << 15),
    }
}

/// The APB clock of SPIx (APB2 for SPI1, APB1 for SPI2/3) that RCC_CFGR's
/// PPRE2/PPRE1 derive from `hclk`.
pub fn spi_pclk_hz(spi: u8, cfgr: u32, hclk: u32) -> u32 {
    let ppre = if spi == 1 {
        (cfgr >> 13) & 7
    } else {
        (cfgr >> 10) & 7
    };
    let shift = if ppre < 4 { 0 } else { ppre - 3 };
    hclk >> shift
}

/// The SPI clock the board file means: its prescaler applied to the APB
/// clock at the F407's full speed (84 MHz APB2, 42 MHz APB1).
pub fn intended_spi_hz(ext: &ExtFlashWiring) -> u32 {
    let nominal = if ext.spi == 1 { 84_000_000 } else { 42_000_000 };
    nominal / u32::from(ext.prescaler.max(2))
}

/// CR1.BR for the fastest SPI clock at or below what the board file means,
/// at the APB clock the application left (after reset the core runs from
/// the 16 MHz HSI, where the board's prescaler alone would run the SPI
/// 5 times slower than intended).
pub fn session_br(ext: &ExtFlashWiring, pclk: u32) -> u32 {
    let want = intended_spi_hz(ext);
    (0..8u32).find(|br| pclk >> (br + 1) <= want).unwrap_or(7)
}

/// CR1.BR for a prescaler of 2..=256: PCLK / 2^(br+1).
pub fn baud_rate_bits(prescaler: u16) -> u32 {
    prescaler.trailing_zeros().saturating_sub(1)
}

/// "SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0)" for messages.
pub fn describe(ext: &ExtFlashWiring) -> String {
    super::SpiWiring::of(ext).to_string()
}

/// The ports the four pins use, each once, in pin order.
pub fn ports(ext: &ExtFlashWiring) -> Vec<char> {
    let mut out = Vec::new();
    for p in [ext.sck, ext.miso, ext.mosi, ext.cs] {
        if !out.contains(&p.port) {
            out.push(p.port);
        }
    }
    out
}

fn pin_cfg(pin: Pin, af: u32) -> PinCfg {
    PinCfg {
        gpio_base: gpio_base(pin.port),
        pin: u32::from(pin.number),
        af,
    }
}

/// The stub's config block for this wiring.
pub fn config(ext: &ExtFlashWiring, timeouts: Timeouts) -> Config {
    let (spi_base, rcc_spi_enr, rcc_spi_bit) = spi_regs(ext.spi);
    let af = u32::from(ext.af);
    Config {
        magic: abi::CONFIG_MAGIC,
        spi_base,
        rcc_spi_enr,
        rcc_spi_bit,
        rcc_gpio_enr: RCC_AHB1ENR,
        rcc_gpio_mask: ports(ext).iter().fold(0, |m, p| m | 1 << port_index(*p))
            | RCC_AHB1ENR_CRCEN,
        pins: [
            pin_cfg(ext.sck, af),
            pin_cfg(ext.miso, af),
            pin_cfg(ext.mosi, af),
            pin_cfg(ext.cs, abi::PIN_GPIO_OUTPUT),
        ],
        br: baud_rate_bits(ext.prescaler),
        cycles_per_ms: MAX_CORE_HZ / 1000,
        timeouts,
        iwdg_kr: 0,
        dma_base: 0,
        dma_rx_stream: 0,
        dma_tx_stream: 0,
        dma_channel: 0,
    }
}

/// The built-in board rewired to SPI3 on ports C (SCK, MISO, MOSI) and A
/// (CS PA15), for tests.
#[cfg(test)]
pub(crate) fn spi3_on_two_ports() -> ExtFlashWiring {
    let text = crate::board::DEFAULT_BOARD_TOML
        .replace("spi = 1", "spi = 3")
        .replace("\"PB3\"", "\"PC10\"")
        .replace("\"PB4\"", "\"PC11\"")
        .replace("\"PB5\"", "\"PC12\"")
        .replace("af = 5", "af = 6")
        .replace("\"PB0\"", "\"PA15\"");
    crate::board::Board::from_toml_str(&text, "t")
        .unwrap()
        .external_flash
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cs_is_held_only_as_a_low_gpio_output() {
        // PB0: MODER bits 1:0, ODR bit 0.
        assert!(cs_held(0b01, 0, 0));
        assert!(!cs_held(0b01, 1, 0), "driven high");
        assert!(!cs_held(0b10, 0, 0), "alternate function");
        assert!(!cs_held(0b00, 0, 0), "input");
        // PA15: MODER bits 31:30, ODR bit 15; other pins do not count.
        assert!(cs_held(0b01 << 30, !(1 << 15), 15));
        assert!(!cs_held(0x5555_5555 & !(0b11 << 30), 0, 15));
    }
    use crate::board::Board;

    #[test]
    fn builtin_board_config_matches_spi1_on_portb() {
        let ext = Board::builtin().external_flash.unwrap();
        let c = config(&ext, Timeouts::W25Q64JV);
        assert_eq!(c.spi_base, 0x4001_3000);
        assert_eq!((c.rcc_spi_enr, c.rcc_spi_bit), (0x4002_3844, 1 << 12));
        assert_eq!(c.rcc_gpio_mask, 1 << 1 | RCC_AHB1ENR_CRCEN, "GPIOB and CRC");
        assert_eq!(
            c.pins[0],
            PinCfg {
                gpio_base: 0x4002_0400,
                pin: 3,
                af: 5
            }
        );
        assert_eq!(c.pins[3].af, abi::PIN_GPIO_OUTPUT);
        assert_eq!(c.br, 0, "prescaler 2 → BR=000");
        assert_eq!(describe(&ext), "SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0)");
    }

    #[test]
    fn core_clock_follows_rcc_hsi_pll_and_ahb_prescaler() {
        // Reset: HSI, no prescaler.
        assert_eq!(hclk_hz(0, 0x2400_3010), 16_000_000);
        // PLL from HSE (taken at 26 MHz): M=26 N=336 P=2 → 168 MHz.
        let pll_hse = 1 << 22 | 26 | 336 << 6;
        assert_eq!(hclk_hz(2 << 2, pll_hse), 168_000_000);
        // PLL from HSI: M=16 N=336 P=4 → 84 MHz; AHB /2 → 42 MHz.
        let pll_hsi = 16 | 336 << 6 | 1 << 16;
        assert_eq!(hclk_hz(2 << 2, pll_hsi), 84_000_000);
        assert_eq!(hclk_hz(2 << 2 | 0b1000 << 4, pll_hsi), 42_000_000);
        // AHB /512 from HSI stays at the 1 MHz floor of the estimate.
        assert_eq!(hclk_hz(0b1111 << 4, 0), 1_000_000);
        // An HSE system clock is taken at its 26 MHz maximum.
        assert_eq!(hclk_hz(1 << 2, 0), 26_000_000);
    }

    #[test]
    fn session_prescaler_keeps_the_board_files_spi_clock_at_any_apb_clock() {
        let ext = Board::builtin().external_flash.unwrap();
        assert_eq!(intended_spi_hz(&ext), 42_000_000, "84 MHz / 2");
        // Full speed: the board's own prescaler.
        assert_eq!(session_br(&ext, 84_000_000), baud_rate_bits(ext.prescaler));
        // HSI after reset: /2 gives 8 MHz, the fastest not above 42 MHz.
        assert_eq!(session_br(&ext, 16_000_000), 0);
        // APB2 at 42 MHz (AHB /2): /2 = 21 MHz.
        assert_eq!(session_br(&ext, 42_000_000), 0);
        assert_eq!(session_br(&ext, 168_000_000), 1, "/4 = 42 MHz");
        // PPRE2 = /2 (0b100) from 168 MHz.
        assert_eq!(spi_pclk_hz(1, 0b100 << 13, 168_000_000), 84_000_000);
        assert_eq!(spi_pclk_hz(3, 0b101 << 10, 168_000_000), 42_000_000);
        assert_eq!(spi_pclk_hz(1, 0, 16_000_000), 16_000_000);
    }

    #[test]
    fn baud_rate_bits_cover_every_prescaler() {
        for (p, br) in [
            (2, 0),
            (4, 1),
            (8, 2),
            (16, 3),
            (32, 4),
            (64, 5),
            (128, 6),
            (256, 7),
        ] {
            assert_eq!(baud_rate_bits(p), br, "/{p}");
        }
    }

    #[test]
    fn spi3_on_two_ports_enables_both_ports() {
        let ext = spi3_on_two_ports();
        assert_eq!(ports(&ext), ['C', 'A']);
        let c = config(&ext, Timeouts::W25Q64JV);
        assert_eq!(c.rcc_gpio_mask, 0b101 | RCC_AHB1ENR_CRCEN);
        assert_eq!(
            (c.spi_base, c.rcc_spi_enr, c.rcc_spi_bit),
            (0x4000_3C00, RCC_APB1ENR, 1 << 15)
        );
    }
}

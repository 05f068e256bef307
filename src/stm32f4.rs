//! STM32F407 register facts for the product, in one place: RCC, FLASH_ACR,
//! the CRC unit, DMA1/DMA2, GPIO, SPI, DBGMCU, RCC_CSR, IWDG and WWDG
//! addresses and the bits the host uses (RM0090 memory map and register
//! layouts). Pure data; the Cortex-M core's own registers are in
//! `cortex_m`, and the virtual board (`sim`) keeps its own model.

/// RCC_CR, PLLCFGR, CFGR and FLASH_ACR are shared with the stub (which
/// switches the session clock): their home is `extflash_stub_abi::rcc`.
pub use extflash_stub_abi::rcc::{
    sws as rcc_cfgr_sws, BASE as RCC_BASE, CFGR as RCC_CFGR, CFGR_SW as RCC_CFGR_SW,
    CFGR_SWS as RCC_CFGR_SWS, CR as RCC_CR, CR_PLLON as RCC_CR_PLLON, FLASH_ACR,
    PLLCFGR as RCC_PLLCFGR,
};
pub const RCC_AHB1ENR: u32 = RCC_BASE + 0x30;
pub const RCC_APB1ENR: u32 = RCC_BASE + 0x40;
pub const RCC_APB2ENR: u32 = RCC_BASE + 0x44;
/// AHB1ENR enables of the CRC unit and DMA2 (RM0090 7.3.10).
pub const RCC_AHB1ENR_CRCEN: u32 = 1 << 12;
pub const RCC_AHB1ENR_DMA2EN: u32 = 1 << 22;
/// The CRC unit (RM0090 chapter 4): DR, IDR, CR.
pub const CRC_BASE: u32 = 0x4002_3000;
pub const CRC_IDR: u32 = CRC_BASE + 0x04;
/// CRC_CR and its RESET bit.
pub const CRC_CR: u32 = CRC_BASE + 0x08;
pub const CRC_CR_RESET: u32 = 1;
/// DMA2 (RM0090 chapter 10), which serves SPI1 on channel 3: RX on stream
/// 0 or 2, TX on stream 3 or 5 (table 43).
pub const DMA2_BASE: u32 = 0x4002_6400;
/// LIFCR, HIFCR: flag clears, after LISR, HISR.
pub const DMA_LIFCR: u32 = 0x08;
pub const SPI1_DMA_CHANNEL: u32 = 3;
pub const SPI1_DMA_RX_STREAMS: [u32; 2] = [2, 0];
pub const SPI1_DMA_TX_STREAMS: [u32; 2] = [3, 5];
/// Stream `x`'s registers (CR, NDTR, PAR, M0AR, M1AR, FCR).
pub fn dma_stream_regs(base: u32, x: u32) -> u32 {
    base + 0x10 + 0x18 * x
}
pub const GPIO_BASE: u32 = 0x4002_0000;

/// GPIO register offsets (RM0090 8.4).
pub const GPIO_MODER: u32 = 0x00;
pub const GPIO_OSPEEDR: u32 = 0x08;
pub const GPIO_PUPDR: u32 = 0x0C;
pub const GPIO_ODR: u32 = 0x14;
pub const GPIO_BSRR: u32 = 0x18;
pub const GPIO_AFRH: u32 = 0x24;
/// GPIOx_LCKR (RM0090 8.4.8): LCK[15:0] freeze those pins' MODER, OTYPER,
/// OSPEEDR, PUPDR and AFR fields once LCKK (bit 16) reads 1, until reset.
pub const GPIO_LCKR: u32 = 0x1C;
pub const GPIO_LCKR_LCKK: u32 = 1 << 16;

/// SPI register offsets.
pub const SPI_CR1: u32 = 0x00;
pub const SPI_CR2: u32 = 0x04;
pub const SPI_SR: u32 = 0x08;
pub const SPI_DR: u32 = 0x0C;
pub const SPI_CRCPR: u32 = 0x10;
pub const SPI_I2SCFGR: u32 = 0x1C;
/// CR1.SPE.
pub const SPI_CR1_SPE: u32 = 1 << 6;
/// CR1: master, internal slave select, software slave management.
pub const SPI_CR1_MSTR: u32 = 1 << 2;
pub const SPI_CR1_SSI: u32 = 1 << 8;
pub const SPI_CR1_SSM: u32 = 1 << 9;
/// SPI_SR: receive buffer not empty, overrun.
pub const SPI_SR_RXNE: u32 = 1 << 0;
pub const SPI_SR_OVR: u32 = 1 << 6;

/// The F407's core clock ceiling: the stub's CYCCNT timeouts assume it, so
/// at a slower clock they only get longer (never too short).
pub const MAX_CORE_HZ: u32 = 168_000_000;

/// The HSI's frequency; HSE is taken at the F407's maximum input (26 MHz)
/// since the board's crystal is not known: a core clock estimated too high
/// only makes the stub's timeouts longer, never too short.
pub const HSI_HZ: u32 = 16_000_000;
pub const HSE_MAX_HZ: u32 = 26_000_000;

/// DBGMCU_APB1_FZ and its DBG_IWDG_STOP bit: the application's watchdog
/// must not reset the chip while the core is halted between sessions.
pub const DBGMCU_APB1_FZ: u32 = 0xE004_2008;
pub const DBG_IWDG_STOP: u32 = 1 << 12;

/// RCC_CSR and its LSIRDY bit; IWDG_KR (RM0090 7.3.21, 21.4.1).
pub const RCC_CSR: u32 = 0x4002_3874;
pub const RCC_CSR_LSIRDY: u32 = 1 << 1;
pub const IWDG_KR: u32 = 0x4000_3000;

/// RCC_APB1ENR.WWDGEN: the window watchdog's clock. A stub session runs the
/// core, and DBG_WWDG_STOP freezes the WWDG only while it is halted; the
/// stub cannot refresh it safely either (the application's next refresh,
/// timed from its own, could then come before the window: a reset). With
/// its APB clock gated the WWDG's counter stops where the application left
/// it (RM0090 §20: it counts PCLK1 / 4096), so the session switches the
/// clock off and back on at its end: the application finds the count it
/// had, as after a halt with DBG_WWDG_STOP. Its registers stay as they
/// were (the session does not touch them).
pub const RCC_APB1ENR_WWDGEN: u32 = 1 << 11;
pub const WWDG_CR: u32 = 0x4000_2C00;

/// DBGMCU_IDCODE (RM0090 38.6.1): DEV_ID in bits 11:0, REV_ID in 31:16.
pub const DBGMCU_IDCODE: u32 = 0xE004_2000;

/// SPI1..SPI3 bases (RM0090 table 1).
pub const SPI1_BASE: u32 = 0x4001_3000;
pub const SPI2_BASE: u32 = 0x4000_3800;
pub const SPI3_BASE: u32 = 0x4000_3C00;
/// SPI_SR.BSY: a frame is on the wire.
pub const SPI_SR_BSY: u32 = 1 << 7;
/// SPI_CR2: RXDMAEN | TXDMAEN.
pub const SPI_CR2_DMAEN: u32 = 0b11;

/// DMA1 (RM0090 chapter 10), which serves SPI2 and SPI3 on channel 0.
pub const DMA1_BASE: u32 = 0x4002_6000;

/// GPIO register offsets written as blocks: OTYPER, OSPEEDR, PUPDR from
/// 0x04 and AFRL, AFRH from 0x20.
pub const GPIO_OTYPER: u32 = 0x04;
pub const GPIO_AFRL: u32 = 0x20;
/// Flash size register (RM0090 39.1): 16 bits, in KiB. Read as two bytes.
pub const FLASH_SIZE_REG: u32 = 0x1FFF_7A22;

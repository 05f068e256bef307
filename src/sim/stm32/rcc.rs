//! STM32F407 reset and clock control (RCC, 0x4002_3800).
//!
//! Owns the RCC registers: clock enables, peripheral reset bits, oscillator
//! and PLL control, and the clock tree they select (RM0090 6.2): SYSCLK from
//! the 16 MHz HSI, the board's 8 MHz HSE, or the main PLL
//! (src / PLLM x PLLN / PLLP); HCLK = SYSCLK / HPRE; PCLK1/PCLK2 = HCLK /
//! PPRE1/PPRE2. Oscillators and the PLL lock at once; the ready flags follow their
//! enable bits instantly (HSION→HSIRDY, HSEON→HSERDY, PLLON→PLLRDY,
//! PLLI2SON→PLLI2SRDY, LSEON→LSERDY, LSION→LSIRDY), and CFGR.SWS follows
//! CFGR.SW as soon as the selected source is ready (RM0090: the switch
//! happens once the target clock is ready). An oscillator that is the
//! current system clock (directly or through the PLL) cannot be switched off.
//! CIR ready flags are set on a ready bit's rising edge when the matching
//! interrupt enable is set; no interrupt is delivered. BDCR ignores PWR
//! backup-domain write protection. Writable bits are those RM0090 defines
//! for the STM32F407; reserved bits keep their reset value.

/// High-speed internal RC oscillator.
pub const HSI_HZ: u64 = 16_000_000;
/// The crystal on STM32F407VE boards.
pub const HSE_HZ: u64 = 8_000_000;

/// Register offsets.
pub const CR: u32 = 0x00;
/// PLL configuration.
pub const PLLCFGR: u32 = 0x04;
/// Clock configuration.
pub const CFGR: u32 = 0x08;
/// Clock interrupt register.
pub const CIR: u32 = 0x0C;
/// AHB1 peripheral reset.
pub const AHB1RSTR: u32 = 0x10;
/// AHB2 peripheral reset.
pub const AHB2RSTR: u32 = 0x14;
/// AHB3 peripheral reset.
pub const AHB3RSTR: u32 = 0x18;
/// APB1 peripheral reset.
pub const APB1RSTR: u32 = 0x20;
/// APB2 peripheral reset.
pub const APB2RSTR: u32 = 0x24;
/// AHB1 peripheral clock enable.
pub const AHB1ENR: u32 = 0x30;
/// AHB2 peripheral clock enable.
pub const AHB2ENR: u32 = 0x34;
/// AHB3 peripheral clock enable.
pub const AHB3ENR: u32 = 0x38;
/// APB1 peripheral clock enable.
pub const APB1ENR: u32 = 0x40;
/// APB2 peripheral clock enable.
pub const APB2ENR: u32 = 0x44;
/// AHB1 low-power clock enable.
pub const AHB1LPENR: u32 = 0x50;
/// AHB2 low-power clock enable.
pub const AHB2LPENR: u32 = 0x54;
/// AHB3 low-power clock enable.
pub const AHB3LPENR: u32 = 0x58;
/// APB1 low-power clock enable.
pub const APB1LPENR: u32 = 0x60;
/// APB2 low-power clock enable.
pub const APB2LPENR: u32 = 0x64;
/// Backup domain control.
pub const BDCR: u32 = 0x70;
/// Clock control & status.
pub const CSR: u32 = 0x74;
/// Spread spectrum clock generation.
pub const SSCGR: u32 = 0x80;
/// PLLI2S configuration.
pub const PLLI2SCFGR: u32 = 0x84;

/// CR bits.
pub const CR_HSION: u32 = 1 << 0;
/// HSI ready.
pub const CR_HSIRDY: u32 = 1 << 1;
/// HSE enable.
pub const CR_HSEON: u32 = 1 << 16;
/// HSE ready.
pub const CR_HSERDY: u32 = 1 << 17;
/// Main PLL enable.
pub const CR_PLLON: u32 = 1 << 24;
/// Main PLL ready.
pub const CR_PLLRDY: u32 = 1 << 25;
/// PLLI2S enable.
pub const CR_PLLI2SON: u32 = 1 << 26;
/// PLLI2S ready.
pub const CR_PLLI2SRDY: u32 = 1 << 27;
const CR_WRITABLE: u32 = 0x050D_00F9; // HSION, HSITRIM, HSEON, HSEBYP, CSSON, PLLON, PLLI2SON
const CR_RESET: u32 = 0x0000_0083;

const PLLCFGR_WRITABLE: u32 = 0x0F43_7FFF;
const PLLCFGR_RESET: u32 = 0x2400_3010;
const PLLCFGR_PLLSRC_HSE: u32 = 1 << 22;
const CFGR_WRITABLE: u32 = 0xFFFF_FCF3; // all but SWS and reserved 9:8

const CIR_IE: u32 = 0x0000_3F00;
const CIR_CLR: u32 = 0x00BF_0000;

const AHB1RSTR_W: u32 = 0x2260_11FF;
const AHB2_W: u32 = 0x0000_00F1;
const AHB3_W: u32 = 0x0000_0001;
const APB1_W: u32 = 0x36FE_C9FF;
const APB2RSTR_W: u32 = 0x0007_5933;
const AHB1ENR_W: u32 = 0x7E74_11FF;
const AHB1ENR_RESET: u32 = 0x0010_0000;
const APB2ENR_W: u32 = 0x0007_5F33;
const AHB1LPENR_RESET: u32 = 0x7E67_91FF;
const APB2LPENR_RESET: u32 = 0x0007_5F33;

const BDCR_LSEON: u32 = 1 << 0;
const BDCR_LSERDY: u32 = 1 << 1;
const BDCR_W: u32 = 0x0001_8305; // LSEON, LSEBYP, RTCSEL, RTCEN, BDRST
const CSR_LSION: u32 = 1 << 0;
const CSR_LSIRDY: u32 = 1 << 1;
const CSR_RMVF: u32 = 1 << 24;
const CSR_FLAGS: u32 = 0xFE00_0000;
const CSR_RESET: u32 = 0x0E00_0000;
/// CSR: software reset flag.
pub const CSR_SFTRSTF: u32 = 1 << 28;
/// CSR: independent watchdog reset flag.
pub const CSR_IWDGRSTF: u32 = 1 << 29;
/// CSR: window watchdog reset flag.
pub const CSR_WWDGRSTF: u32 = 1 << 30;
/// CSR: pin reset flag.
pub const CSR_PINRSTF: u32 = 1 << 26;
const SSCGR_W: u32 = 0xCFFF_FFFF;
const PLLI2SCFGR_W: u32 = 0x7000_7FC0;
const PLLI2SCFGR_RESET: u32 = 0x2000_3000;

/// RCC register block.
#[derive(Debug, Clone)]
pub struct Rcc {
    cr: u32,
    pllcfgr: u32,
    cfgr: u32,
    cir: u32,
    ahb1rstr: u32,
    ahb2rstr: u32,
    ahb3rstr: u32,
    apb1rstr: u32,
    apb2rstr: u32,
    ahb1enr: u32,
    ahb2enr: u32,
    ahb3enr: u32,
    apb1enr: u32,
    apb2enr: u32,
    ahb1lpenr: u32,
    ahb2lpenr: u32,
    ahb3lpenr: u32,
    apb1lpenr: u32,
    apb2lpenr: u32,
    bdcr: u32,
    csr: u32,
    sscgr: u32,
    plli2scfgr: u32,
}

fn merge(old: u32, value: u32, mask: u32, writable: u32) -> u32 {
    let m = mask & writable;
    (old & !m) | (value & m)
}

impl Default for Rcc {
    fn default() -> Self {
        Self::new()
    }
}

impl Rcc {
    /// RCC at power-on reset values.
    pub fn new() -> Self {
        let mut r = Rcc {
            cr: 0,
            pllcfgr: 0,
            cfgr: 0,
            cir: 0,
            ahb1rstr: 0,
            ahb2rstr: 0,
            ahb3rstr: 0,
            apb1rstr: 0,
            apb2rstr: 0,
            ahb1enr: 0,
            ahb2enr: 0,
            ahb3enr: 0,
            apb1enr: 0,
            apb2enr: 0,
            ahb1lpenr: 0,
            ahb2lpenr: 0,
            ahb3lpenr: 0,
            apb1lpenr: 0,
            apb2lpenr: 0,
            bdcr: 0,
            csr: 0,
            sscgr: 0,
            plli2scfgr: 0,
        };
        r.reset();
        r
    }

    /// Power-on reset: every register to its RM0090 reset value (including
    /// the backup-domain BDCR and CSR = 0x0E00_0000, POR/PIN/BOR flags set).
    pub fn reset(&mut self) {
        self.system_reset_common();
        self.bdcr = 0;
        self.csr = CSR_RESET;
    }

    /// System reset (e.g. SYSRESETREQ): like [`Rcc::reset`] but BDCR is kept
    /// (backup domain) and CSR keeps its reset flags, gaining
    /// `extra_flags` (e.g. [`CSR_SFTRSTF`] | [`CSR_PINRSTF`]); LSION clears.
    pub fn system_reset(&mut self, extra_flags: u32) {
        let flags = self.csr & CSR_FLAGS;
        self.system_reset_common();
        self.csr = flags | (extra_flags & CSR_FLAGS & !CSR_RMVF);
    }

    fn system_reset_common(&mut self) {
        self.cr = CR_RESET;
        self.pllcfgr = PLLCFGR_RESET;
        self.cfgr = 0;
        self.cir = 0;
        self.ahb1rstr = 0;
        self.ahb2rstr = 0;
        self.ahb3rstr = 0;
        self.apb1rstr = 0;
        self.apb2rstr = 0;
        self.ahb1enr = AHB1ENR_RESET;
        self.ahb2enr = 0;
        self.ahb3enr = 0;
        self.apb1enr = 0;
        self.apb2enr = 0;
        self.ahb1lpenr = AHB1LPENR_RESET;
        self.ahb2lpenr = AHB2_W;
        self.ahb3lpenr = AHB3_W;
        self.apb1lpenr = APB1_W;
        self.apb2lpenr = APB2LPENR_RESET;
        self.sscgr = 0;
        self.plli2scfgr = PLLI2SCFGR_RESET;
    }

    /// Read register at `offset` (unknown offsets read 0).
    pub fn read(&mut self, offset: u32, _now: u64) -> u32 {
        match offset {
            CR => self.cr,
            PLLCFGR => self.pllcfgr,
            CFGR => self.cfgr,
            CIR => self.cir,
            AHB1RSTR => self.ahb1rstr,
            AHB2RSTR => self.ahb2rstr,
            AHB3RSTR => self.ahb3rstr,
            APB1RSTR => self.apb1rstr,
            APB2RSTR => self.apb2rstr,
            AHB1ENR => self.ahb1enr,
            AHB2ENR => self.ahb2enr,
            AHB3ENR => self.ahb3enr,
            APB1ENR => self.apb1enr,
            APB2ENR => self.apb2enr,
            AHB1LPENR => self.ahb1lpenr,
            AHB2LPENR => self.ahb2lpenr,
            AHB3LPENR => self.ahb3lpenr,
            APB1LPENR => self.apb1lpenr,
            APB2LPENR => self.apb2lpenr,
            BDCR => self.bdcr,
            CSR => self.csr,
            SSCGR => self.sscgr,
            PLLI2SCFGR => self.plli2scfgr,
            _ => 0,
        }
    }

    /// Write register at `offset` (`mask` selects the byte lanes written).
    pub fn write(&mut self, offset: u32, value: u32, mask: u32, _now: u64) {
        match offset {
            CR => {
                let old = self.cr;
                let mut new = merge(self.cr, value, mask, CR_WRITABLE);
                new |= self.sysclk_keep_on();
                self.cr = new;
                self.settle(old, self.bdcr, self.csr);
            }
            PLLCFGR => self.pllcfgr = merge(self.pllcfgr, value, mask, PLLCFGR_WRITABLE),
            CFGR => {
                self.cfgr = merge(self.cfgr, value, mask, CFGR_WRITABLE);
                self.settle(self.cr, self.bdcr, self.csr);
            }
            CIR => {
                let v = value & mask;
                self.cir = merge(self.cir, value, mask, CIR_IE);
                // Clear bits 16..21 and 23 clear flags 0..5 and 7.
                self.cir &= !((v & CIR_CLR) >> 16);
            }
            AHB1RSTR => self.ahb1rstr = merge(self.ahb1rstr, value, mask, AHB1RSTR_W),
            AHB2RSTR => self.ahb2rstr = merge(self.ahb2rstr, value, mask, AHB2_W),
            AHB3RSTR => self.ahb3rstr = merge(self.ahb3rstr, value, mask, AHB3_W),
            APB1RSTR => self.apb1rstr = merge(self.apb1rstr, value, mask, APB1_W),
            APB2RSTR => self.apb2rstr = merge(self.apb2rstr, value, mask, APB2RSTR_W),
            AHB1ENR => self.ahb1enr = merge(self.ahb1enr, value, mask, AHB1ENR_W),
            AHB2ENR => self.ahb2enr = merge(self.ahb2enr, value, mask, AHB2_W),
            AHB3ENR => self.ahb3enr = merge(self.ahb3enr, value, mask, AHB3_W),
            APB1ENR => self.apb1enr = merge(self.apb1enr, value, mask, APB1_W),
            APB2ENR => self.apb2enr = merge(self.apb2enr, value, mask, APB2ENR_W),
            AHB1LPENR => self.ahb1lpenr = merge(self.ahb1lpenr, value, mask, AHB1LPENR_RESET),
            AHB2LPENR => self.ahb2lpenr = merge(self.ahb2lpenr, value, mask, AHB2_W),
            AHB3LPENR => self.ahb3lpenr = merge(self.ahb3lpenr, value, mask, AHB3_W),
            APB1LPENR => self.apb1lpenr = merge(self.apb1lpenr, value, mask, APB1_W),
            APB2LPENR => self.apb2lpenr = merge(self.apb2lpenr, value, mask, APB2LPENR_RESET),
            BDCR => {
                let old = self.bdcr;
                self.bdcr = merge(self.bdcr, value, mask, BDCR_W);
                self.settle(self.cr, old, self.csr);
            }
            CSR => {
                let old = self.csr;
                let v = value & mask;
                self.csr = merge(self.csr, value, mask, CSR_LSION);
                if v & CSR_RMVF != 0 {
                    self.csr &= !CSR_FLAGS;
                }
                self.settle(self.cr, self.bdcr, old);
            }
            SSCGR => self.sscgr = merge(self.sscgr, value, mask, SSCGR_W),
            PLLI2SCFGR => self.plli2scfgr = merge(self.plli2scfgr, value, mask, PLLI2SCFGR_W),
            _ => {}
        }
    }

    /// ON bits that cannot be cleared because they feed the system clock.
    fn sysclk_keep_on(&self) -> u32 {
        let pll_src = if self.pllcfgr & PLLCFGR_PLLSRC_HSE != 0 {
            CR_HSEON
        } else {
            CR_HSION
        };
        match (self.cfgr >> 2) & 3 {
            0 => CR_HSION,
            1 => CR_HSEON,
            2 => CR_PLLON | pll_src,
            _ => 0,
        }
    }

    /// Make ready bits follow their ON bits, raise CIR flags on rising
    /// edges, and complete a pending system clock switch.
    fn settle(&mut self, old_cr: u32, old_bdcr: u32, old_csr: u32) {
        let ready_of = |on: u32, rdy: u32, v: u32| if v & on != 0 { rdy } else { 0 };
        let cr_rdy = ready_of(CR_HSION, CR_HSIRDY, self.cr)
            | ready_of(CR_HSEON, CR_HSERDY, self.cr)
            | ready_of(CR_PLLON, CR_PLLRDY, self.cr)
            | ready_of(CR_PLLI2SON, CR_PLLI2SRDY, self.cr);
        self.cr = (self.cr & !(CR_HSIRDY | CR_HSERDY | CR_PLLRDY | CR_PLLI2SRDY)) | cr_rdy;
        let lse = if self.bdcr & BDCR_LSEON != 0 {
            BDCR_LSERDY
        } else {
            0
        };
        self.bdcr = (self.bdcr & !BDCR_LSERDY) | lse;
        let lsi = if self.csr & CSR_LSION != 0 {
            CSR_LSIRDY
        } else {
            0
        };
        self.csr = (self.csr & !CSR_LSIRDY) | lsi;

        // CIR flags: LSIRDYF 0, LSERDYF 1, HSIRDYF 2, HSERDYF 3, PLLRDYF 4, PLLI2SRDYF 5.
        let rose = |old: u32, new: u32, bit: u32| old & bit == 0 && new & bit != 0;
        let edges = [
            rose(old_csr, self.csr, CSR_LSIRDY),
            rose(old_bdcr, self.bdcr, BDCR_LSERDY),
            rose(old_cr, self.cr, CR_HSIRDY),
            rose(old_cr, self.cr, CR_HSERDY),
            rose(old_cr, self.cr, CR_PLLRDY),
            rose(old_cr, self.cr, CR_PLLI2SRDY),
        ];
        for (i, e) in edges.iter().enumerate() {
            if *e && self.cir & (1 << (8 + i)) != 0 {
                self.cir |= 1 << i;
            }
        }

        let sw = self.cfgr & 3;
        let ready = match sw {
            0 => self.cr & CR_HSIRDY != 0,
            1 => self.cr & CR_HSERDY != 0,
            2 => self.cr & CR_PLLRDY != 0,
            _ => false,
        };
        if ready {
            self.cfgr = (self.cfgr & !0xC) | (sw << 2);
        }
    }

    /// AHB1ENR GPIOxEN for port 0..=8 (A..I).
    pub fn gpio_clock_enabled(&self, port: u8) -> bool {
        port < 9 && self.ahb1enr & (1 << port) != 0
    }

    /// AHB1ENR.DMA2EN.
    pub fn dma2_clock_enabled(&self) -> bool {
        self.ahb1enr & (1 << 22) != 0
    }

    /// AHB1RSTR.DMA2RST.
    pub fn dma2_in_reset(&self) -> bool {
        self.ahb1rstr & (1 << 22) != 0
    }

    /// AHB1ENR.CRCEN.
    pub fn crc_clock_enabled(&self) -> bool {
        self.ahb1enr & (1 << 12) != 0
    }

    /// APB1ENR.WWDGEN: the window watchdog is clocked.
    pub fn wwdg_clock_enabled(&self) -> bool {
        self.apb1enr & (1 << 11) != 0
    }

    /// AHB1RSTR.CRCRST.
    pub fn crc_in_reset(&self) -> bool {
        self.ahb1rstr & (1 << 12) != 0
    }

    /// AHB1RSTR GPIOxRST for port 0..=8.
    pub fn gpio_in_reset(&self, port: u8) -> bool {
        port < 9 && self.ahb1rstr & (1 << port) != 0
    }

    /// Clock enable of SPI1 (APB2ENR.12), SPI2 (APB1ENR.14), SPI3 (APB1ENR.15);
    /// `spi` is 1..=3, others false.
    pub fn spi_clock_enabled(&self, spi: u8) -> bool {
        match spi {
            1 => self.apb2enr & (1 << 12) != 0,
            2 => self.apb1enr & (1 << 14) != 0,
            3 => self.apb1enr & (1 << 15) != 0,
            _ => false,
        }
    }

    /// Reset bit of SPI1 (APB2RSTR.12), SPI2 (APB1RSTR.14), SPI3 (APB1RSTR.15).
    pub fn spi_in_reset(&self, spi: u8) -> bool {
        match spi {
            1 => self.apb2rstr & (1 << 12) != 0,
            2 => self.apb1rstr & (1 << 14) != 0,
            3 => self.apb1rstr & (1 << 15) != 0,
            _ => false,
        }
    }

    /// SYSCLK in Hz from CFGR.SWS and the PLL configuration.
    pub fn sysclk_hz(&self) -> u64 {
        match self.sysclk_source() {
            1 => HSE_HZ,
            2 => {
                let src = if self.pllcfgr & PLLCFGR_PLLSRC_HSE != 0 {
                    HSE_HZ
                } else {
                    HSI_HZ
                };
                let m = (self.pllcfgr & 0x3F) as u64;
                let n = ((self.pllcfgr >> 6) & 0x1FF) as u64;
                let p = 2 * (((self.pllcfgr >> 16) & 3) as u64 + 1);
                // PLLM = 0/1 and PLLN < 2 are invalid settings: RM0090 leaves
                // them undefined; read them as the nearest valid ones.
                src / m.max(2) * n.max(2) / p
            }
            _ => HSI_HZ,
        }
    }

    /// HCLK: the core and AHB clock (SYSCLK / HPRE).
    pub fn hclk_hz(&self) -> u64 {
        let hpre = (self.cfgr >> 4) & 0xF;
        let div = if hpre < 8 {
            1
        } else {
            [2, 4, 8, 16, 64, 128, 256, 512][(hpre - 8) as usize]
        };
        self.sysclk_hz() / div
    }

    fn apb_div(ppre: u32) -> u64 {
        if ppre < 4 {
            1
        } else {
            1 << (ppre - 3)
        }
    }

    /// PCLK1 (APB1: SPI2/3, IWDG's bus, TIM2-7 at x2 when divided).
    pub fn pclk1_hz(&self) -> u64 {
        self.hclk_hz() / Self::apb_div((self.cfgr >> 10) & 7)
    }

    /// PCLK2 (APB2: SPI1).
    pub fn pclk2_hz(&self) -> u64 {
        self.hclk_hz() / Self::apb_div((self.cfgr >> 13) & 7)
    }

    /// Current system clock source per CFGR.SWS: 0 HSI, 1 HSE, 2 PLL.
    pub fn sysclk_source(&self) -> u8 {
        ((self.cfgr >> 2) & 3) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_values_match_rm0090() {
        let mut r = Rcc::new();
        let expect = [
            (CR, 0x0000_0083),
            (PLLCFGR, 0x2400_3010),
            (CFGR, 0),
            (CIR, 0),
            (AHB1RSTR, 0),
            (APB1RSTR, 0),
            (APB2RSTR, 0),
            (AHB1ENR, 0x0010_0000),
            (AHB2ENR, 0),
            (APB1ENR, 0),
            (APB2ENR, 0),
            (AHB1LPENR, 0x7E67_91FF),
            (AHB2LPENR, 0x0000_00F1),
            (AHB3LPENR, 0x0000_0001),
            (APB1LPENR, 0x36FE_C9FF),
            (APB2LPENR, 0x0007_5F33),
            (BDCR, 0),
            (CSR, 0x0E00_0000),
            (SSCGR, 0),
            (PLLI2SCFGR, 0x2000_3000),
        ];
        for (off, v) in expect {
            assert_eq!(r.read(off, 0), v, "offset {off:#x}");
        }
    }

    #[test]
    fn hse_and_pll_ready_bits_follow_on_bits() {
        let mut r = Rcc::new();
        r.write(CR, CR_HSEON | CR_HSION, !0, 0);
        assert_ne!(r.read(CR, 0) & CR_HSERDY, 0);
        assert_eq!(r.read(CR, 0) & CR_PLLRDY, 0);
        r.write(CR, CR_HSEON | CR_HSION | CR_PLLON, !0, 0);
        assert_ne!(r.read(CR, 0) & CR_PLLRDY, 0);
        r.write(CR, CR_HSION, !0, 0);
        assert_eq!(r.read(CR, 0) & (CR_PLLRDY | CR_HSERDY), 0);
        // Writes to ready bits themselves are ignored.
        r.write(CR, CR_HSION | CR_PLLRDY | CR_HSERDY, !0, 0);
        assert_eq!(r.read(CR, 0) & (CR_PLLRDY | CR_HSERDY), 0);
        // Byte write to the PLL lane only.
        r.write(CR, CR_PLLON, 0xFF00_0000, 0);
        // Full-word writes above cleared HSITRIM; the byte write keeps lane 0.
        assert_eq!(r.read(CR, 0), 0x03 | CR_PLLON | CR_PLLRDY);
    }

    #[test]
    fn sws_follows_sw_when_source_ready() {
        let mut r = Rcc::new();
        r.write(CFGR, 2, !0, 0); // PLL not on yet: no switch
        assert_eq!(r.read(CFGR, 0) & 0xF, 0x2);
        r.write(CR, CR_HSION | CR_HSEON | CR_PLLON, !0, 0);
        assert_eq!(r.read(CFGR, 0) & 0xF, 0xA);
        assert_eq!(r.sysclk_source(), 2);
        // The PLL (and its HSI source) cannot be stopped while it is SYSCLK.
        r.write(CR, 0, !0, 0);
        assert_ne!(r.read(CR, 0) & CR_PLLON, 0);
        assert_ne!(r.read(CR, 0) & CR_HSION, 0);
        r.write(CFGR, 1, !0, 0); // HSE is off: stays on PLL
        assert_eq!(r.read(CFGR, 0) & 0xF, 0x9);
        r.write(CR, CR_HSEON, !0, 0);
        assert_eq!(r.read(CFGR, 0) & 0xF, 0x5);
        // SWS is read-only.
        r.write(CFGR, 0x1 | 0xC, !0, 0);
        assert_eq!(r.read(CFGR, 0) & 0xF, 0x5);
    }

    #[test]
    fn lsi_and_lse_ready_and_rmvf() {
        let mut r = Rcc::new();
        r.write(CSR, 1, !0, 0);
        assert_eq!(r.read(CSR, 0), 0x0E00_0003);
        r.write(CSR, CSR_RMVF | 1, !0, 0);
        assert_eq!(r.read(CSR, 0), 0x3);
        r.write(BDCR, 1, !0, 0);
        assert_eq!(r.read(BDCR, 0), 0x3);
        r.system_reset(CSR_SFTRSTF | CSR_PINRSTF);
        assert_eq!(r.read(BDCR, 0), 0x3);
        assert_eq!(r.read(CSR, 0), CSR_SFTRSTF | CSR_PINRSTF);
        r.reset();
        assert_eq!(r.read(BDCR, 0), 0);
    }

    #[test]
    fn cir_flags_set_on_ready_edge_when_enabled_and_clear() {
        let mut r = Rcc::new();
        r.write(CIR, 1 << 11, !0, 0); // HSERDYIE
        r.write(CR, CR_HSION | CR_HSEON | CR_PLLON, !0, 0);
        assert_eq!(r.read(CIR, 0), (1 << 11) | (1 << 3));
        r.write(CIR, (1 << 11) | (1 << 19), !0, 0);
        assert_eq!(r.read(CIR, 0), 1 << 11);
    }

    #[test]
    fn clock_tree_hsi_after_reset_and_168_mhz_from_hse_pll() {
        let mut r = Rcc::new();
        assert_eq!(
            (r.hclk_hz(), r.pclk1_hz(), r.pclk2_hz()),
            (16_000_000, 16_000_000, 16_000_000)
        );
        // The usual set-up: HSE 8 MHz, PLLM 8, PLLN 336, PLLP 2; AHB /1,
        // APB1 /4, APB2 /2.
        r.write(CR, CR_HSION | CR_HSEON, !0, 0);
        r.write(PLLCFGR, PLLCFGR_PLLSRC_HSE | 8 | 336 << 6 | 7 << 24, !0, 0);
        r.write(CR, CR_HSION | CR_HSEON | CR_PLLON, !0, 0);
        r.write(CFGR, 2 | 0b101 << 10 | 0b100 << 13, !0, 0);
        assert_eq!(r.sysclk_hz(), 168_000_000);
        assert_eq!((r.pclk1_hz(), r.pclk2_hz()), (42_000_000, 84_000_000));
        r.write(CFGR, 2 | 0b1000 << 4, !0, 0);
        assert_eq!(r.hclk_hz(), 84_000_000, "HPRE /2");
        r.system_reset(CSR_SFTRSTF);
        assert_eq!(r.hclk_hz(), HSI_HZ);
    }

    #[test]
    fn clock_enable_and_reset_helpers() {
        let mut r = Rcc::new();
        assert!(!r.gpio_clock_enabled(0));
        r.write(AHB1ENR, 0x1F, !0, 0);
        for p in 0..5 {
            assert!(r.gpio_clock_enabled(p));
        }
        assert!(!r.gpio_clock_enabled(5));
        assert!(!r.gpio_clock_enabled(200));
        r.write(APB2ENR, 1 << 12, !0, 0);
        r.write(APB1ENR, 1 << 15, !0, 0);
        assert!(r.spi_clock_enabled(1));
        assert!(!r.spi_clock_enabled(2));
        assert!(r.spi_clock_enabled(3));
        assert!(!r.spi_clock_enabled(0));
        r.write(APB1RSTR, 1 << 14, !0, 0);
        r.write(APB2RSTR, 1 << 12, !0, 0);
        r.write(AHB1RSTR, 1 << 2, !0, 0);
        assert!(r.spi_in_reset(1) && r.spi_in_reset(2) && !r.spi_in_reset(3));
        assert!(r.gpio_in_reset(2) && !r.gpio_in_reset(0));
        r.write(AHB1RSTR, 0, !0, 0);
        assert!(!r.gpio_in_reset(2));
        // Reserved bits stay zero.
        r.write(APB1ENR, !0, !0, 0);
        assert_eq!(r.read(APB1ENR, 0), 0x36FE_C9FF);
        r.write(0x1C, !0, !0, 0);
        assert_eq!(r.read(0x1C, 0), 0);
        assert_eq!(r.read(0xFFFF_FFFC, 0), 0);
    }
}

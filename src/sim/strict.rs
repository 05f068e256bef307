//! Strict mode: the documented rules of RM0090 for the peripherals the
//! board models (and the W25Q64JV's /CS deselect time), checked on every
//! access. A broken rule is logged
//! (tracing target `sim`, level warn, with the RM0090 section) and counted
//! ([`Strict::count`]); with enforcement on (`serve --sim --sim-strict`,
//! `SimConfig::strict`) a core that breaks one locks up with the rule as
//! its fault and a debugger access that breaks one answers FAULT, so a
//! test cannot pass over it.
//!
//! This module owns the rules' wording and the record; the bus (`mcu.rs`)
//! decides when one is broken.

use super::mcu::Master;

/// A rule of RM0090 that software broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// BR, CPOL, CPHA, MSTR, LSBFIRST or DFF changed while SPE = 1.
    SpiCr1WhileEnabled { spi: u8, changed: u32 },
    /// DR read with RXNE = 0 and no overrun to clear (the data is stale).
    SpiDrWithoutRxne { spi: u8 },
    /// DR written with TXE = 0: the data still in the TX buffer is lost.
    SpiDrWithoutTxe { spi: u8 },
    /// SPE cleared while a frame is in progress (TXE = 0 or BSY = 1).
    SpiDisabledWhileBusy { spi: u8, sr: u32 },
    /// A stream register other than CR.EN written while EN = 1.
    DmaConfigWhileEnabled { stream: u8, offset: u32 },
    /// EN set with the stream's flags still pending in LISR/HISR.
    DmaEnableWithFlags { stream: u8, flags: u32 },
    /// FLASH_CR written while LOCK = 1.
    FlashCrWhileLocked,
    /// Programming with PSIZE x64, which needs VPP; the board runs at
    /// 2.7-3.6 V without it.
    FlashPsizeForVoltage,
    /// A program access whose size is not PSIZE's.
    FlashPsizeMismatch { psize_bytes: u32, size: u32 },
    /// The W25Q64JV selected again less than tSHSL after /CS rose.
    FlashCsDeselectTooShort { gap_ps: u64, min_ps: u64 },
    /// A byte or halfword access to registers that take words only.
    WordOnly {
        block: &'static str,
        section: &'static str,
        addr: u32,
        size: u32,
    },
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Rule::SpiCr1WhileEnabled { spi, changed } => write!(
                f,
                "SPI{spi}_CR1 bits {changed:#06x} (BR/CPOL/CPHA/MSTR/LSBFIRST/DFF) changed while \
                 SPE=1 (RM0090 28.5.1: clear SPE first)"
            ),
            Rule::SpiDrWithoutRxne { spi } => write!(
                f,
                "SPI{spi}_DR read with RXNE=0 and OVR=0 (RM0090 28.3.5: wait for RXNE; the data is \
                 stale)"
            ),
            Rule::SpiDrWithoutTxe { spi } => write!(
                f,
                "SPI{spi}_DR written with TXE=0 (RM0090 28.3.7: wait for TXE; the data still in \
                 the TX buffer is overwritten and never sent)"
            ),
            Rule::SpiDisabledWhileBusy { spi, sr } => write!(
                f,
                "SPI{spi}_CR1.SPE cleared with SR {sr:#06x} (TXE={}, BSY={}) (RM0090 28.3.8: wait \
                 for TXE=1, then BSY=0, before disabling; the frame in progress is cut)",
                sr >> 1 & 1,
                sr >> 7 & 1
            ),
            Rule::DmaConfigWhileEnabled { stream, offset } => write!(
                f,
                "DMA2 stream {stream} register +{offset:#04x} written while EN=1 (RM0090 10.5.5: \
                 configuration is read-only while the stream is enabled)"
            ),
            Rule::DmaEnableWithFlags { stream, flags } => write!(
                f,
                "DMA2 stream {stream} enabled with flags {flags:#04x} pending (RM0090 10.3.17: \
                 clear them in LIFCR/HIFCR before setting EN)"
            ),
            Rule::FlashCrWhileLocked => write!(
                f,
                "FLASH_CR written while LOCK=1 (RM0090 3.5.1: unlock with KEYR first)"
            ),
            Rule::FlashPsizeForVoltage => write!(
                f,
                "flash programmed with PSIZE=x64, which needs VPP (RM0090 3.5.2, table 7: at \
                 2.7-3.6 V use x32)"
            ),
            Rule::FlashCsDeselectTooShort { gap_ps, min_ps } => write!(
                f,
                "W25Q64JV /CS selected {} ns after it rose, less than {} {} ns (W25Q64JV \
                 datasheet, AC electrical characteristics: /CS deselect time{})",
                gap_ps / 1000,
                if min_ps == super::w25q64jv::T_SHSL2 {
                    "tSHSL2"
                } else {
                    "tSHSL1"
                },
                min_ps / 1000,
                if min_ps == super::w25q64jv::T_SHSL2 {
                    " after an erase, program or status write"
                } else {
                    ""
                }
            ),
            Rule::WordOnly {
                block,
                section,
                addr,
                size,
            } => write!(
                f,
                "{block} register at {addr:#010x} accessed with a {size}-byte access (RM0090 \
                 {section}: its registers take 32-bit accesses only)"
            ),
            Rule::FlashPsizeMismatch { psize_bytes, size } => write!(
                f,
                "flash programmed with a {size}-byte access while PSIZE is {psize_bytes} bytes \
                 (RM0090 3.5.4, PGPERR)"
            ),
        }
    }
}

/// Broken rules so far.
#[derive(Debug, Clone, Default)]
pub struct Strict {
    /// Lock the core up / fault the debugger on a broken rule.
    pub enforce: bool,
    pub count: u64,
    /// The first broken rule, as logged.
    pub first: Option<String>,
    /// A rule the core broke under enforcement, for the board to lock up.
    pub lockup: Option<String>,
}

impl Strict {
    /// Record `rule` broken by `master`; true if the access is to be
    /// refused (enforced, by the debugger).
    pub fn broke(&mut self, rule: Rule, master: Master) -> bool {
        let who = match master {
            Master::Cpu => "software",
            Master::Debugger => "the debugger",
        };
        let msg = format!("strict: {who} broke a rule: {rule}");
        tracing::warn!(target: "sim", "{msg}");
        self.count += 1;
        self.first.get_or_insert_with(|| msg.clone());
        if !self.enforce {
            return false;
        }
        match master {
            Master::Cpu => {
                self.lockup.get_or_insert(msg);
                false
            }
            Master::Debugger => true,
        }
    }
}

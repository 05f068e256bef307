//! Small window reads without the stub: the host drives the SPI itself
//! through the debug port, two memory calls per byte. For a handful of
//! bytes while no stub session runs, this is far cheaper than starting one
//! (no stub to save, load and check, no core register touched): it is what
//! a debugger's first look at the window costs (issue 9: a cold 4-byte
//! read in about 40 ms on an ST-Link V2 instead of a quarter second).
//!
//! Relies on every debug-port memory access taking longer than one SPI
//! frame: an SWD transaction is 54 bits (11.7 µs at an ST-Link's fastest
//! 4.6 MHz, still over 1 µs at 50 MHz) and a frame here at most 1 µs (SPI
//! at 8 MHz or faster, which the HSI after reset gives; else the stub
//! reads).
//! So a DR write always finds TXE set, and a DR read after it finds that
//! frame complete, without polling SR. Leaves every register it touched
//! (RCC enables, the pins' GPIO registers, SPI CR1/CR2) as it found them,
//! through `periph.rs` ([`Policy::Direct`]).

use crate::stm32f4;
use extflash_stub_abi::spi_nor::op;
use probe_rs::Core;

use super::error::ExtFlashError;
use super::periph::{FirstError, PeriphSaved, Policy, PortSaved, SpiSaved};
use super::probe_io::{rd, rd_block, wr, write_block};
use super::wiring;
use crate::board::ExtFlashWiring;

/// Reads of at most this many bytes (with no stub session running) go
/// this way.
pub const MAX_LEN: u32 = 32;

/// Below this SPI clock a frame could outlast an SWD transaction.
const MIN_SPI_HZ: u32 = 8_000_000;

const SR1_BUSY: u32 = 1;
const READ_STATUS_1: u32 = op::READ_STATUS1 as u32;
const FAST_READ: u32 = op::FAST_READ as u32;

/// Read `len` (≤ [`MAX_LEN`]) bytes at chip offset `offset`, or `None`
/// when this way cannot (SPI clock too slow, chip busy or asleep): the
/// caller then uses the stub, which waits and wakes the chip. The caller
/// has checked that the application is not using the SPI (chip select,
/// frame on the wire, DMA) and that no stub session runs.
pub fn read(
    core: &mut Core<'_>,
    ext: &ExtFlashWiring,
    offset: u32,
    len: u32,
) -> Result<Option<Vec<u8>>, ExtFlashError> {
    // RCC CR .. APB2ENR: the clock tree and the enables, in one read.
    let rcc = rd_block(core, stm32f4::RCC_BASE, 18)?;
    let (pllcfgr, cfgr, ahb1) = (rcc[1], rcc[2], rcc[12]);
    let hclk = wiring::hclk_hz(cfgr, pllcfgr);
    let pclk = wiring::spi_pclk_hz(ext.spi, cfgr, hclk);
    let br = wiring::session_br(ext, pclk);
    if pclk >> (br + 1) < MIN_SPI_HZ {
        return Ok(None);
    }
    let (_, enr, _) = wiring::spi_regs(ext.spi);
    let apb = rcc[((enr - stm32f4::RCC_BASE) / 4) as usize];
    let gpio_mask = wiring::ports(ext)
        .iter()
        .fold(0, |m, p| m | 1 << wiring::port_index(*p));
    let mut saved = PeriphSaved::default();
    let on = saved
        .enables
        .switch_on(core, ext, (ahb1, apb), gpio_mask, Policy::Direct);
    let result = on.and_then(|()| transact(core, ext, &mut saved, br, offset, len));
    let mut errors = FirstError::default();
    saved.restore(core, Policy::Direct, &mut errors);
    let data = result?;
    errors.result()?;
    Ok(data)
}

/// Pins and SPI set up, status checked, bytes read; `saved` gains what
/// is changed as it is changed.
fn transact(
    core: &mut Core<'_>,
    ext: &ExtFlashWiring,
    saved: &mut PeriphSaved,
    br: u32,
    offset: u32,
    len: u32,
) -> Result<Option<Vec<u8>>, ExtFlashError> {
    let (spi, _, _) = wiring::spi_regs(ext.spi);
    let cr = rd_block(core, spi + stm32f4::SPI_CR1, 2)?;
    saved.spi = Some(SpiSaved {
        base: spi,
        cr1: cr[0],
        cr2: cr[1],
        extra: None,
    });
    let af = u32::from(ext.af);
    let cs = ext.cs;
    for port in wiring::ports(ext) {
        let base = wiring::gpio_base(port);
        // MODER .. AFRH: IDR, BSRR and LCKR reads have no side effect.
        let was = PortSaved::from_block(base, &rd_block(core, base, 10)?);
        let [_, mut otyper, mut ospeedr, mut pupdr, mut afrl, mut afrh, mut moder] = was.values;
        saved.ports.push(was);
        let pins = [(ext.sck, false), (ext.miso, true), (ext.mosi, false)];
        for (p, pull_up) in pins.into_iter().filter(|(p, _)| p.port == port) {
            let n = u32::from(p.number);
            let afr = if n < 8 { &mut afrl } else { &mut afrh };
            *afr = (*afr & !(0xF << (4 * (n % 8)))) | af << (4 * (n % 8));
            moder = (moder & !(3 << (2 * n))) | 0b10 << (2 * n);
            otyper &= !(1 << n);
            ospeedr = (ospeedr & !(3 << (2 * n))) | 0b10 << (2 * n);
            if pull_up {
                pupdr = (pupdr & !(3 << (2 * n))) | 0b01 << (2 * n);
            }
        }
        if cs.port == port {
            let n = u32::from(cs.number);
            // Driven high before it becomes an output: no glitch low.
            wr(core, base + stm32f4::GPIO_BSRR, 1 << n)?;
            moder = (moder & !(3 << (2 * n))) | 0b01 << (2 * n);
            otyper &= !(1 << n);
            ospeedr = (ospeedr & !(3 << (2 * n))) | 0b10 << (2 * n);
        }
        write_block(core, base + stm32f4::GPIO_AFRL, &[afrl, afrh])?;
        write_block(core, base + stm32f4::GPIO_OTYPER, &[otyper, ospeedr, pupdr])?;
        wr(core, base + stm32f4::GPIO_MODER, moder)?;
    }
    // Master, mode 0, 8 bit, MSB first, software NSS; BR changes only with
    // SPE clear. Then DR and SR reads drop RXNE and OVR, if either is set
    // (a DR read with neither returns stale data: RM0090 28.3.5).
    let cr1 = stm32f4::SPI_CR1_MSTR | stm32f4::SPI_CR1_SSM | stm32f4::SPI_CR1_SSI | (br & 7) << 3;
    wr(core, spi + stm32f4::SPI_CR1, 0)?;
    write_block(core, spi + stm32f4::SPI_CR1, &[cr1, 0])?;
    wr(core, spi + stm32f4::SPI_CR1, cr1 | stm32f4::SPI_CR1_SPE)?;
    let dr = spi + stm32f4::SPI_DR;
    let sr = spi + stm32f4::SPI_SR;
    if rd(core, sr)? & (stm32f4::SPI_SR_RXNE | stm32f4::SPI_SR_OVR) != 0 {
        rd(core, dr)?;
        rd(core, sr)?;
    }
    let cs_base = wiring::gpio_base(cs.port) + stm32f4::GPIO_BSRR;
    let cs_bit = 1u32 << cs.number;
    // SR1: busy (an operation the application started) or 0xFF (asleep or
    // absent) leaves the read to the stub.
    wr(core, cs_base, cs_bit << 16)?;
    wr(core, dr, READ_STATUS_1)?;
    rd(core, dr)?;
    wr(core, dr, 0)?;
    let sr1 = rd(core, dr)? & 0xFF;
    wr(core, cs_base, cs_bit)?;
    if sr1 & SR1_BUSY != 0 || sr1 == 0xFF {
        return Ok(None);
    }
    // 0Bh, address, dummy: the replies overrun the receiver and are
    // dropped (DR then SR clears OVR); then one frame per byte.
    wr(core, cs_base, cs_bit << 16)?;
    for b in [FAST_READ, offset >> 16, offset >> 8, offset, 0] {
        wr(core, dr, b & 0xFF)?;
    }
    rd(core, dr)?;
    rd(core, sr)?;
    let mut out = Vec::with_capacity(len as usize);
    for _ in 0..len {
        wr(core, dr, 0xFF)?;
        out.push(rd(core, dr)? as u8);
    }
    wr(core, cs_base, cs_bit)?;
    Ok(Some(out))
}

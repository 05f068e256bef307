//! What the application is doing on the flash's SPI bus when the core
//! halted: its chip select held, a frame on the wire, or a DMA stream
//! serving the SPI. Read only; the stub must not start under either.

use probe_rs::Core;

use super::error::ExtFlashError;
use super::probe_io::{rd, rd_block};
use super::wiring;
use crate::board::ExtFlashWiring;
use crate::stm32f4::{
    DMA1_BASE, DMA2_BASE, GPIO_MODER, SPI1_DMA_CHANNEL, SPI_CR1_SPE, SPI_CR2_DMAEN, SPI_SR_BSY,
};

/// Whether the application holds the flash's chip select: CS configured as
/// a GPIO output (MODER = 01) and driven low.
pub fn cs_asserted(core: &mut Core<'_>, ext: &ExtFlashWiring) -> Result<bool, ExtFlashError> {
    let base = wiring::gpio_base(ext.cs.port);
    // MODER..ODR in one read.
    let r = rd_block(core, base + GPIO_MODER, 6)?;
    Ok(wiring::cs_held(r[0], r[5], ext.cs.number))
}

/// What the application is doing with the flash's SPI when the core halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpiActivity {
    Idle,
    /// SPE and SR.BSY: a frame is on the wire.
    FrameOnWire,
    /// A DMA stream serving this SPI is enabled (the transfer goes on
    /// without the core).
    Dma {
        controller: u8,
        stream: u8,
    },
}

/// The DMA controller and channel that serve SPIx on the F407 (RM0090
/// tables 42/43): SPI1 on DMA2 channel 3, SPI2 and SPI3 on DMA1 channel 0.
pub(super) fn spi_dma(spi: u8) -> (u8, u32, u32) {
    match spi {
        1 => (2, DMA2_BASE, SPI1_DMA_CHANNEL),
        _ => (1, DMA1_BASE, 0),
    }
}

/// Whether the application's SPI is mid-transfer: a frame on the wire, or
/// its DMA requests on and a stream of its channel enabled. The stub must
/// not reconfigure the SPI under either.
pub fn spi_activity(
    core: &mut Core<'_>,
    ext: &ExtFlashWiring,
) -> Result<SpiActivity, ExtFlashError> {
    let (spi, _, _) = wiring::spi_regs(ext.spi);
    let r = rd_block(core, spi, 3)?; // CR1, CR2, SR
    let (cr1, cr2, sr) = (r[0], r[1], r[2]);
    if cr1 & SPI_CR1_SPE != 0 && sr & SPI_SR_BSY != 0 {
        return Ok(SpiActivity::FrameOnWire);
    }
    if cr2 & SPI_CR2_DMAEN != 0 {
        let (controller, base, channel) = spi_dma(ext.spi);
        for stream in 0..8u8 {
            let cr = rd(
                core,
                crate::stm32f4::dma_stream_regs(base, u32::from(stream)),
            )?;
            if cr & 1 != 0 && (cr >> 25) & 7 == channel {
                return Ok(SpiActivity::Dma { controller, stream });
            }
        }
    }
    Ok(SpiActivity::Idle)
}

//! Raising the core clock for the rest of a stub session
//! (`Call::Clock`), after saving RCC and FLASH_ACR for the restore.

use crate::stm32f4;
use probe_rs::MemoryInterface;

use super::call::{timeout_for, Call};
use super::error::{ExtFlashError, ProbeOp};
use super::probe_io::{rd, rd_block, to_words};
use super::runner::StubSession;
use extflash_stub_abi::{Config, Words};

impl StubSession<'_, '_> {
    /// Run the rest of the session at `abi::SESSION_CORE_HZ` (once per
    /// session; only from the clock after reset, see `stub_clock`), with the
    /// SPI at the board file's clock: long operations then run at the SPI's
    /// limit. RCC and FLASH_ACR are saved first and put back at the end. A
    /// PLL that does not lock leaves the clock as it was (logged).
    pub fn raise_clock(&mut self) -> Result<(), ExtFlashError> {
        if self.res.clock_tried || self.res.broken {
            return Ok(());
        }
        self.res.clock_tried = true;
        let rcc = rd_block(self.core, stm32f4::RCC_CR, 3)?;
        if rcc[2] & stm32f4::RCC_CFGR_SWS != 0 || rcc[0] & stm32f4::RCC_CR_PLLON != 0 {
            return Ok(());
        }
        let acr = rd(self.core, stm32f4::FLASH_ACR)?;
        self.res.saved.clock = Some([rcc[0], rcc[1], rcc[2], acr]);
        let hz = match self.call(Call::Clock, 0, timeout_for(10, 0)) {
            Ok(hz) => hz,
            Err(e @ ExtFlashError::Stub { .. }) => {
                tracing::warn!(error = %crate::error::DisplayChain(&e), "staying on the application's clock");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if hz == 0 {
            return Ok(());
        }
        let res = &mut *self.res;
        res.config.cycles_per_ms = hz / 1000;
        res.config.br = res.fast_br;
        let mut block = vec![0u8; Config::SIZE];
        res.config.write_le(&mut block);
        self.core
            .write_32(res.layout.config.into(), &to_words(&block))
            .map_err(ExtFlashError::probe(ProbeOp::LoadStub(res.layout.config)))?;
        tracing::debug!(hz, br = res.fast_br, "stub session clock raised");
        Ok(())
    }
}

//! Save and restore of what a stub session disturbs: core registers, the
//! work area, DEMCR/DWT/DFSR, DBGMCU, the RCC/GPIO/SPI registers of the
//! wiring (`periph.rs`, [`Policy::Session`]), DMA2 streams, the CRC unit,
//! the WWDG clock and the core clock.
//! A save fills [`Saved`] step by step, so a failure leaves exactly what
//! must be put back; [`restore`] continues past errors.

use crate::stm32f4;
use probe_rs::{Core, MemoryInterface};

use super::error::{ExtFlashError, ProbeOp};
use super::periph::{self, FirstError, PeriphSaved, Policy};
use super::probe_io::{rd, rd_block, read_work_area, reg_rd, reg_wr, wr};
use super::wiring;
use crate::board::ExtFlashWiring;
use crate::cortex_m::{demcr, dwt, regsel as sel, DEMCR, DFSR, HALT_TIMEOUT};
use crate::stm32f4::{DBGMCU_APB1_FZ, DBG_IWDG_STOP, RCC_APB1ENR_WWDGEN};
use extflash_stub_abi::{layout::Layout, Config};

/// Registers the host saves and restores around a session, in restore
/// order: CONTROL first (it picks the stack pointer), then MSP, xPSR, pc.
/// r0-r12 and lr are saved and restored by `stub_serve` itself; PSP and the
/// FPU registers are never touched by the stub.
pub fn saved_registers() -> Vec<u16> {
    vec![sel::EXTRA, sel::MSP, sel::XPSR, sel::PC]
}

/// Vector catches set for a session: a fault in the stub halts the core at
/// once instead of running the application's handler.
pub(super) const SESSION_CATCH: u32 = demcr::VC_FAULTS;

/// Everything a session saved, restored by [`Resident::end`]; the default
/// restores nothing.
#[derive(Debug, Default)]
pub(super) struct Saved {
    pub(super) regs: Vec<(u16, u32)>,
    /// Work-area pieces, in address order (the buffer is saved lazily).
    pub(super) ram: Vec<(u32, Vec<u32>)>,
    /// `None` until saved (a save can fail midway): only what was saved
    /// is put back.
    pub(super) demcr: Option<u32>,
    /// DWT CTRL and CYCCNT.
    pub(super) dwt: Option<[u32; 2]>,
    /// DWT FUNCTION0..3: user watchpoints are disarmed for the session.
    pub(super) dwt_functions: Vec<u32>,
    pub(super) dfsr: Option<u32>,
    pub(super) apb1_fz: Option<u32>,
    /// The WWDG's clock was on and is off for the session.
    pub(super) wwdg_gated: bool,
    /// The wiring's GPIO ports, SPI and RCC enables.
    pub(super) periph: PeriphSaved,
    /// DMA streams the stub uses: registers address and CR..FCR.
    pub(super) dma_streams: Vec<(u32, [u32; 6])>,
    /// The DMA controller and its LISR/HISR at the start: flags the
    /// session raised are cleared again.
    pub(super) dma_isr: Option<(u32, [u32; 2])>,
    /// CRC unit DR and IDR.
    pub(super) crc: Option<[u32; 2]>,
    /// RCC CR, PLLCFGR, CFGR and FLASH_ACR before `Call::Clock`.
    pub(super) clock: Option<[u32; 4]>,
}

/// Save into `s` step by step, so a failure leaves `s` holding exactly what
/// must be put back (and what was changed is undone by `restore`).
pub(super) fn save(
    core: &mut Core<'_>,
    ext: &ExtFlashWiring,
    l: &Layout,
    s: &mut Saved,
    config: &mut Config,
) -> Result<(), ExtFlashError> {
    for sel in saved_registers() {
        let v = reg_rd(core, sel)?;
        s.regs.push((sel, v));
    }
    // The stub image, slots header and stack + config + mailbox; the buffer
    // only when a call first uses it.
    for range in [l.load..l.buf, l.canary..l.end] {
        let words = read_work_area(core, range.start, range.end)?;
        s.ram.push((range.start, words));
    }
    let app_demcr = rd(core, DEMCR)?;
    s.demcr = Some(app_demcr);
    // DWT registers are only readable with TRCENA set.
    wr(core, DEMCR, app_demcr | demcr::TRCENA | SESSION_CATCH)?;
    // CTRL, CYCCNT and every FUNCTIONn in one read.
    let last = dwt::function(dwt::COMPARATORS - 1);
    let dwt_regs = rd_block(core, dwt::CTRL, ((last - dwt::CTRL) / 4 + 1) as usize)?;
    s.dwt = Some([dwt_regs[0], dwt_regs[1]]);
    for n in 0..dwt::COMPARATORS {
        let f = dwt_regs[((dwt::function(n) - dwt::CTRL) / 4) as usize];
        s.dwt_functions.push(f);
        if f & 0xF != 0 {
            wr(core, dwt::function(n), 0)?;
        }
    }
    s.dfsr = Some(rd(core, DFSR)?);
    let apb1_fz = rd(core, DBGMCU_APB1_FZ)?;
    s.apb1_fz = Some(apb1_fz);
    wr(core, DBGMCU_APB1_FZ, apb1_fz | DBG_IWDG_STOP)?;
    // Peripheral registers read as zero with their clock off: read the
    // enables first, then switch the clocks on to read the real values.
    // (The RCC enables are restored last.)
    let (spi_base, spi_enr, _) = wiring::spi_regs(ext.spi);
    let ahb1 = rd(core, stm32f4::RCC_AHB1ENR)?;
    let apb = rd(core, spi_enr)?;
    let dma = ext.spi == 1;
    let gpio_mask = wiring::ports(ext)
        .iter()
        .fold(0, |m, p| m | 1 << wiring::port_index(*p))
        | stm32f4::RCC_AHB1ENR_CRCEN
        | if dma { stm32f4::RCC_AHB1ENR_DMA2EN } else { 0 };
    s.periph
        .enables
        .switch_on(core, ext, (ahb1, apb), gpio_mask, Policy::Session)?;
    config.rcc_gpio_mask = gpio_mask;
    let crc = rd_block(core, stm32f4::CRC_BASE, 2)?;
    s.crc = Some([crc[0], crc[1]]);
    if dma {
        claim_dma(core, s, config)?;
    }
    let regs = periph::session_registers(ext);
    let values = read_registers(core, &regs, &[spi_base + stm32f4::SPI_DR])?;
    // After the enables were read (the restore puts back what they say).
    let apb1 = rd(core, stm32f4::RCC_APB1ENR)?;
    if apb1 & RCC_APB1ENR_WWDGEN != 0 {
        wr(core, stm32f4::RCC_APB1ENR, apb1 & !RCC_APB1ENR_WWDGEN)?;
        s.wwdg_gated = true;
    }
    let found = |a: u32| values[regs.iter().position(|&r| r == a).expect("read above")];
    s.periph = PeriphSaved::session(ext, s.periph.enables.clone(), found);
    Ok(())
}

/// Read the registers at `addrs` (any order) with as few memory calls as
/// possible: addresses close together in one block read, as long as the
/// block spans none of `avoid` (registers whose read has a side effect,
/// such as SPI_DR). Values come back in the order of `addrs`.
pub(super) fn read_registers(
    core: &mut Core<'_>,
    addrs: &[u32],
    avoid: &[u32],
) -> Result<Vec<u32>, ExtFlashError> {
    let mut sorted: Vec<u32> = addrs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut values = std::collections::HashMap::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        let mut j = i + 1;
        while j < sorted.len()
            && sorted[j] - end <= 16
            && sorted[j] & !0x3FF == start & !0x3FF
            && !avoid.iter().any(|a| (end..sorted[j]).contains(a))
        {
            end = sorted[j];
            j += 1;
        }
        let words = rd_block(core, start, ((end - start) / 4 + 1) as usize)?;
        for &a in &sorted[i..j] {
            values.insert(a, words[((a - start) / 4) as usize]);
        }
        i = j;
    }
    Ok(addrs.iter().map(|a| values[a]).collect())
}

/// Pick free DMA2 streams for SPI1 (EN = 0 and no flag pending, on a
/// stream of each pair) and save their registers; with none free the stub
/// polls the SPI.
pub(super) fn claim_dma(
    core: &mut Core<'_>,
    s: &mut Saved,
    config: &mut Config,
) -> Result<(), ExtFlashError> {
    let base = stm32f4::DMA2_BASE;
    // LISR, HISR, LIFCR, HIFCR and streams 0..=5 in one read.
    let r = rd_block(core, base, 4 + 6 * 6)?;
    let stream = |x: u32| -> [u32; 6] {
        let at = 4 + 6 * x as usize;
        [r[at], r[at + 1], r[at + 2], r[at + 3], r[at + 4], r[at + 5]]
    };
    // Free: disabled, and no flag pending (the stub clears its streams'
    // flags, and flags cannot be set back).
    let flags = |x: u32| {
        let isr = if x < 4 { r[0] } else { r[1] };
        let shift = (x & 1) * 6 + (x & 2) * 8;
        (isr >> shift) & 0x3D
    };
    let free = |set: [u32; 2]| {
        set.into_iter()
            .find(|&x| stream(x)[0] & 1 == 0 && flags(x) == 0)
    };
    let (Some(rx), Some(tx)) = (
        free(stm32f4::SPI1_DMA_RX_STREAMS),
        free(stm32f4::SPI1_DMA_TX_STREAMS),
    ) else {
        tracing::debug!("DMA2 streams for SPI1 in use: the stub polls the SPI");
        return Ok(());
    };
    s.dma_isr = Some((base, [r[0], r[1]]));
    for x in [rx, tx] {
        s.dma_streams
            .push((crate::stm32f4::dma_stream_regs(base, x), stream(x)));
    }
    config.dma_base = base;
    config.dma_rx_stream = rx;
    config.dma_tx_stream = tx;
    config.dma_channel = stm32f4::SPI1_DMA_CHANNEL;
    Ok(())
}

/// The word that, fed to a freshly reset CRC unit, leaves `dr` in it: the
/// unit's step is invertible (the polynomial's bit 0 is set).
pub(super) fn crc_unit_preimage(dr: u32) -> u32 {
    let mut c = dr;
    for _ in 0..32 {
        c = if c & 1 != 0 {
            ((c ^ 0x04C1_1DB7) >> 1) | 0x8000_0000
        } else {
            c >> 1
        };
    }
    c ^ 0xFFFF_FFFF
}

/// Put back what `save` saved. Halts the core only when `stub_ran`: a
/// session that never started the stub found the core halted (or failed
/// before touching it) and must not stop an application it did not stop.
pub(super) fn restore(core: &mut Core<'_>, s: &Saved, stub_ran: bool) -> Result<(), ExtFlashError> {
    let mut errors = FirstError::default();
    if stub_ran
        && !core
            .core_halted()
            .map_err(ExtFlashError::probe(ProbeOp::CoreStatus))?
    {
        core.halt(HALT_TIMEOUT)
            .map_err(ExtFlashError::probe(ProbeOp::HaltStub("restore")))?;
    }
    for (at, words) in &s.ram {
        errors.keep(
            core.write_32((*at).into(), words)
                .and_then(|()| core.flush())
                .map_err(ExtFlashError::probe(ProbeOp::RestoreWorkArea {
                    start: *at,
                    end: at + 4 * words.len() as u32,
                })),
        );
    }
    if let Some([cr, pllcfgr, cfgr, acr]) = s.clock {
        // Back to the application's clock source first, then the PLL, and
        // the wait states last (they must cover the clock at every step).
        errors.keep(wr(core, stm32f4::RCC_CFGR, cfgr));
        for _ in 0..16 {
            match rd(core, stm32f4::RCC_CFGR) {
                Ok(now) if stm32f4::rcc_cfgr_sws(now) == cfgr & stm32f4::RCC_CFGR_SW => break,
                Ok(_) => continue,
                Err(e) => {
                    errors.keep(Err(e));
                    break;
                }
            }
        }
        errors.keep(wr(core, stm32f4::RCC_CR, cr));
        errors.keep(wr(core, stm32f4::RCC_PLLCFGR, pllcfgr));
        errors.keep(wr(core, stm32f4::FLASH_ACR, acr));
    }
    for (at, regs) in &s.dma_streams {
        errors.keep(
            core.write_32((*at).into(), regs)
                .map_err(ExtFlashError::probe(ProbeOp::WriteWord(*at))),
        );
    }
    if let Some((base, before)) = s.dma_isr {
        // Flags are cleared through LIFCR/HIFCR (the session only uses
        // streams that had none pending).
        match rd_block(core, base, 2) {
            Ok(now) => {
                for i in 0..2u32 {
                    let raised = now[i as usize] & !before[i as usize];
                    if raised != 0 {
                        errors.keep(wr(core, base + stm32f4::DMA_LIFCR + 4 * i, raised));
                    }
                }
            }
            Err(e) => errors.keep(Err(e)),
        }
    }
    if let Some([dr, idr]) = s.crc {
        errors.keep(wr(core, stm32f4::CRC_CR, stm32f4::CRC_CR_RESET));
        if dr != 0xFFFF_FFFF {
            errors.keep(wr(core, stm32f4::CRC_BASE, crc_unit_preimage(dr)));
        }
        errors.keep(wr(core, stm32f4::CRC_IDR, idr));
    }
    s.periph.restore(core, Policy::Session, &mut errors);
    if let Some(apb1_fz) = s.apb1_fz {
        errors.keep(wr(core, DBGMCU_APB1_FZ, apb1_fz));
    }
    // Last of the RCC: the WWDG counts on from where it stopped.
    if s.wwdg_gated {
        let enr = stm32f4::RCC_APB1ENR;
        errors.keep(rd(core, enr).and_then(|v| wr(core, enr, v | RCC_APB1ENR_WWDGEN)));
    }
    for (n, f) in s.dwt_functions.iter().enumerate() {
        if f & 0xF != 0 {
            errors.keep(wr(core, dwt::function(n), *f));
        }
    }
    if let Some([ctrl, cyccnt]) = s.dwt {
        errors.keep(wr(core, dwt::CYCCNT, cyccnt));
        errors.keep(wr(core, dwt::CTRL, ctrl));
    }
    if let Some(app_demcr) = s.demcr {
        errors.keep(wr(core, DEMCR, app_demcr));
    }
    // DFSR is write-one-to-clear: drop only what the session added.
    if let Some(saved) = s.dfsr {
        errors.keep(rd(core, DFSR).and_then(|dfsr| {
            if dfsr & !saved != 0 {
                wr(core, DFSR, dfsr & !saved)
            } else {
                Ok(())
            }
        }));
    }
    for &(sel, value) in &s.regs {
        errors.keep(reg_wr(core, sel, value));
    }
    errors.result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use extflash_stub_abi as abi;

    #[test]
    fn crc_unit_preimage_restores_any_dr_value() {
        // The unit takes a word MSB first: GDB's CRC of its big-endian bytes.
        for dr in [0u32, 1, 0x8000_0000, 0xDEAD_BEEF, 0x1234_5678, 0xFFFF_FFFE] {
            let word = crc_unit_preimage(dr).to_be_bytes();
            assert_eq!(abi::crc32_update(abi::CRC32_INIT, &word), dr);
        }
    }

    #[test]
    fn host_saves_only_what_stub_serve_does_not_restore_itself() {
        let r = saved_registers();
        assert_eq!(r[0], sel::EXTRA, "CONTROL restored first");
        assert_eq!(r, [sel::EXTRA, sel::MSP, sel::XPSR, sel::PC]);
    }
}

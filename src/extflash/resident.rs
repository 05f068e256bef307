//! Starting and ending a resident stub session: [`Resident::start`]
//! checks the work area, saves what the stub disturbs (`save.rs`), loads
//! the stub and its config, checks them by word readback, starts
//! `stub_serve` and identifies the chip; [`Resident::end`] sends `Exit`,
//! halts the core by request and restores everything, continuing past
//! errors. What a resident session answers for GDB meanwhile (saved work
//! area bytes, saved register blocks) is here too.

use crate::stm32f4;
use std::time::Duration;

use extflash_stub_abi::{self as abi, Command, Mailbox, Words};
use probe_rs::{Core, MemoryInterface};

use super::call::{timeout_for, Call};
use super::error::{ExtFlashError, ProbeOp, SpiWiring, StubOp, StubStatusError};
use super::probe_io::{rd, rd_block, reg_rd, reg_wr, to_words, wr};
use super::runner::{Resident, StubSession};
use super::save::{restore, save, Saved};
use super::stub::StubImage;
use super::wiring;
use crate::board::ExtFlashWiring;
use crate::cortex_m::{dwt, regsel as sel, DEMCR, DFSR, HALT_TIMEOUT};
use crate::stm32f4::{DBGMCU_APB1_FZ, IWDG_KR, RCC_CSR, RCC_CSR_LSIRDY, WWDG_CR};
use abi::layout::{layout_with_stack, Layout};
use abi::Config;

impl Resident {
    /// CYCCNT ticks per millisecond at the session's core clock: what the
    /// stub's config block says (it times its own waits by it).
    pub(super) fn cycles_per_ms(&self) -> u32 {
        self.config.cycles_per_ms
    }

    /// Save, load and start the stub, then identify the chip (`Init`). The
    /// core must be halted. On failure everything saved is restored.
    pub fn start(
        core: &mut Core<'_>,
        stub: &StubImage,
        ext: &ExtFlashWiring,
        config: &Config,
        stack: u32,
    ) -> Result<Resident, ExtFlashError> {
        let wa = &ext.work_area;
        let layout = layout_with_stack(wa, stub.bytes.len() as u32, stack).ok_or(
            ExtFlashError::WorkAreaTooSmall {
                start: wa.start,
                size: wa.end - wa.start,
                len: stub.bytes.len() as u32,
            },
        )?;
        let mut res = Resident {
            layout,
            entries: stub.entries,
            wiring: SpiWiring::of(ext),
            saved: Saved::default(),
            buf_saved: 0,
            seq: 0,
            jedec_id: 0,
            broken: false,
            running: false,
            config: *config,
            fast_br: wiring::session_br(
                ext,
                wiring::spi_pclk_hz(ext.spi, abi::SESSION_CFGR, abi::SESSION_CORE_HZ),
            ),
            clock_tried: false,
            ahead: None,
            read_stack_ok: false,
        };
        let mut config = *config;
        let mut started = save(core, ext, &layout, &mut res.saved, &mut config);
        if started.is_ok() {
            // LSI on means the application may have started the IWDG: the
            // stub must keep reloading it while it runs.
            started = rd(core, RCC_CSR).map(|csr| {
                if csr & RCC_CSR_LSIRDY != 0 {
                    config.iwdg_kr = IWDG_KR;
                }
            });
        }
        if started.is_ok() {
            // Timeouts in CYCCNT ticks at the clock the application left.
            started = rd_block(core, stm32f4::RCC_PLLCFGR, 2).map(|r| {
                let hclk = wiring::hclk_hz(r[1], r[0]);
                config.cycles_per_ms = hclk / 1000;
                config.br = wiring::session_br(ext, wiring::spi_pclk_hz(ext.spi, r[1], hclk));
            });
        }
        res.config = config;
        if started.is_ok() {
            started = load_and_run(core, stub, &layout, &config);
        }
        let id = match started {
            Ok(()) => {
                res.running = true;
                let wiring = res.wiring;
                // `stub_init` only waits for the chip: a missing chip ends
                // it at once, a BUSY bit that never clears runs it out.
                res.session(core)
                    .call(Call::Init, 0, timeout_for(10, 0))
                    .map_err(|e| match e {
                        ExtFlashError::Stub {
                            source: StubStatusError::NoChip,
                            ..
                        } => ExtFlashError::NoChip { wiring },
                        ExtFlashError::Timeout { .. }
                        | ExtFlashError::Stub {
                            source: StubStatusError::BusyTimeout { .. },
                            ..
                        } => ExtFlashError::StaysBusy { wiring },
                        other => other,
                    })
            }
            Err(e) => Err(e),
        };
        match id {
            Ok(id) => {
                res.jedec_id = id;
                Ok(res)
            }
            Err(e) => {
                if let Err(r) = res.end(core) {
                    tracing::error!(error = %crate::error::DisplayChain(&r), "restoring after a failed stub start also failed");
                }
                Err(e)
            }
        }
    }

    /// A session for some calls.
    pub fn session<'a, 'p>(&'a mut self, core: &'a mut Core<'p>) -> StubSession<'a, 'p> {
        StubSession { core, res: self }
    }

    /// Whether the session must end (a call left the stub in an unknown
    /// state).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Replace the bytes of `addr..addr+buf.len()` that the session saved
    /// with the application's values.
    pub fn overlay(&self, addr: u32, buf: &mut [u8]) {
        let start = u64::from(addr);
        let end = start + buf.len() as u64;
        for (at, words) in &self.saved.ram {
            let piece = u64::from(*at)..u64::from(*at) + 4 * words.len() as u64;
            let (from, to) = (start.max(piece.start), end.min(piece.end));
            for a in from..to {
                let off = (a - piece.start) as usize;
                buf[(a - start) as usize] = words[off / 4].to_le_bytes()[off % 4];
            }
        }
    }

    /// Whether `addr..addr+len` touches a register block whose application
    /// values the session holds or whose live state it changes: the GPIO
    /// ports, SPI and RCC of the wiring (a write to BSRR changes ODR, which
    /// the session restores), the WWDG it stopped, the DWT, DEMCR/DFSR and
    /// DBGMCU. A GDB access
    /// there must end the session first.
    pub fn saved_registers_touch(&self, addr: u32, len: u32) -> bool {
        let (a, e) = (u64::from(addr), u64::from(addr) + u64::from(len.max(1)));
        let hit = |r: std::ops::Range<u64>| a < r.end && r.start < e;
        let block = |r: u32| {
            let base = u64::from(r & !0x3FF);
            base..base + 0x400
        };
        self.saved.periph.addresses().into_iter().any(|r| hit(block(r)))
            || self.saved.dma_streams.iter().any(|(r, _)| hit(block(*r)))
            || (self.saved.crc.is_some() && hit(block(stm32f4::CRC_BASE)))
            // Unclocked for the session, the WWDG would read as zero.
            || (self.saved.wwdg_gated && hit(block(WWDG_CR)))
            || (self.saved.clock.is_some() && hit(block(stm32f4::FLASH_ACR)))
            || hit(u64::from(dwt::BASE)..u64::from(dwt::BASE) + 0x1000)
            || hit(u64::from(DFSR)..u64::from(DFSR) + 4)
            || hit(u64::from(DEMCR)..u64::from(DEMCR) + 4)
            || hit(u64::from(DBGMCU_APB1_FZ & !0xFF)..u64::from(DBGMCU_APB1_FZ & !0xFF) + 0x100)
    }

    /// Stop the stub and restore everything saved, leaving the core halted
    /// (by request, so probe-rs does not take the next step for a
    /// breakpoint). Continues past errors; returns the first.
    pub fn end(mut self, core: &mut Core<'_>) -> Result<(), ExtFlashError> {
        let mut first: Option<ExtFlashError> = None;
        let mut keep = |r: Result<(), ExtFlashError>| {
            if let Err(e) = r {
                tracing::warn!(error = %crate::error::DisplayChain(&e), "restoring after the stub");
                first.get_or_insert(e);
            }
        };
        if self.running {
            keep(self.park(core));
        }
        keep(restore(core, &self.saved, self.running));
        first.map_or(Ok(()), Err)
    }

    /// Leave the loop with `Exit` (the stub pops r0-r12/lr and spins at
    /// `stub_park`), then halt by request.
    fn park(&mut self, core: &mut Core<'_>) -> Result<(), ExtFlashError> {
        let park = self.layout.load + self.entries.park;
        if !self.broken {
            let exited = self
                .session(core)
                .post(Command::Exit, [0; 3], Duration::from_millis(500));
            if exited.is_err() {
                self.broken = true;
            }
        }
        // The stub writes `done` a few instructions before it parks.
        for _ in 0..8 {
            if !core
                .core_halted()
                .map_err(ExtFlashError::probe(ProbeOp::CoreStatus))?
            {
                core.halt(HALT_TIMEOUT)
                    .map_err(ExtFlashError::probe(ProbeOp::HaltStub("end of session")))?;
            }
            let pc = reg_rd(core, sel::PC)?;
            if pc == park || self.broken {
                if self.broken {
                    tracing::warn!(pc = format_args!("{pc:#010x}"), "ending a stub session that did not exit: r0-r12/lr are restored from the stub's stack");
                    self.restore_pushed(core)?;
                }
                return Ok(());
            }
            core.run()
                .map_err(ExtFlashError::probe(ProbeOp::StartStub("exit")))?;
        }
        Err(ExtFlashError::WrongHalt {
            op: StubOp::Exit,
            address: 0,
            pc: reg_rd(core, sel::PC)?,
        })
    }

    /// r0-r12 and lr as `stub_serve` pushed them (just below its initial
    /// sp), written back through the debug port.
    fn restore_pushed(&mut self, core: &mut Core<'_>) -> Result<(), ExtFlashError> {
        let words = rd_block(core, self.layout.config - 56, 14)?;
        for (i, v) in words.iter().enumerate() {
            let reg = if i < 13 { i as u16 } else { sel::LR };
            reg_wr(core, reg, *v)?;
        }
        Ok(())
    }
}

/// Write the stub, config and an empty mailbox, check the stub by word
/// readback, enable CYCCNT and start `stub_serve`.
fn load_and_run(
    core: &mut Core<'_>,
    stub: &StubImage,
    l: &Layout,
    config: &Config,
) -> Result<(), ExtFlashError> {
    let mut image = stub.bytes.clone();
    image.resize(image.len().div_ceil(4) * 4, 0);
    let words = to_words(&image);
    core.write_32(l.load.into(), &words)
        .map_err(ExtFlashError::probe(ProbeOp::LoadStub(l.load)))?;
    let mut blocks = vec![0u8; Config::SIZE + Mailbox::SIZE];
    config.write_le(&mut blocks[..Config::SIZE]);
    Mailbox::default().write_le(&mut blocks[Config::SIZE..]);
    core.write_32(l.config.into(), &to_words(&blocks))
        .and_then(|()| core.flush())
        .map_err(ExtFlashError::probe(ProbeOp::LoadStub(l.config)))?;
    // The lowest stack word: checked after every call (`post_inner`).
    wr(core, l.canary, abi::STACK_CANARY)?;
    let back = rd_block(core, l.load, words.len())
        .map_err(|_| ExtFlashError::Readback { address: l.load })?;
    if let Some(i) = back.iter().zip(&words).position(|(a, b)| a != b) {
        return Err(ExtFlashError::Readback {
            address: l.load + 4 * i as u32,
        });
    }
    let ctrl = rd(core, dwt::CTRL)?;
    wr(core, dwt::CTRL, ctrl | dwt::CTRL_CYCCNTENA)?;
    // PRIMASK = 1, CONTROL = 0 (privileged, MSP): the stub runs with
    // interrupts masked on the main stack, whose top is the config block.
    for (sel, value) in [
        (sel::EXTRA, 1),
        (sel::MSP, l.config),
        (sel::XPSR, 1 << 24),
        (sel::PC, l.load + stub.entries.serve),
    ] {
        reg_wr(core, sel, value)?;
    }
    core.run()
        .map_err(ExtFlashError::probe(ProbeOp::StartStub("stub_serve")))
}

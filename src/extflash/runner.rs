//! The one fixed sequence for the SPI driver stub: a resident session.
//!
//! [`Resident::start`] saves what the stub disturbs (pc, xPSR, MSP and
//! CONTROL/PRIMASK; the work-area bytes it uses; DEMCR, DWT CTRL/CYCCNT and
//! comparator functions, DFSR, DBGMCU_APB1_FZ; the RCC/GPIO/SPI registers of
//! the wiring), loads the stub and its config block, checks them by word
//! readback, and starts `stub_serve`, which pushes r0-r12/lr and then waits
//! for commands in its mailbox. Each [`StubSession::call`] is one mailbox
//! post and a poll of `done` — a few round trips, no register traffic. The
//! session stays while the core is (to GDB) halted; [`Resident::end`] sends
//! `Exit` (the stub pops r0-r12/lr and parks), halts the core by request and
//! restores everything, continuing past errors so that as much as possible
//! is put back.
//!
//! Relies on the stub ABI (`extflash_stub_abi`): `stub_serve` finds its
//! config at its initial sp and the mailbox right after it, only touches
//! the work area, DWT CYCCNT and the peripherals the config names, never
//! executes FPU instructions, and while idle only reads memory.

use std::ops::Range;
use std::time::{Duration, Instant};

use extflash_stub_abi::{
    self as abi, mailbox_offset, slots_offset, Command, Mailbox, Slots, Words,
};
use probe_rs::{Core, CoreStatus, MemoryInterface, RegisterId};

use super::error::{ExtFlashError, ProbeOp, SpiWiring, StubOp, StubStatusError};
use super::stream::{PackError, Stream};
use super::stub::{Entries, StubImage};
use super::wiring;
use crate::board::ExternalFlash;
use crate::cortex_m::{demcr, dwt, regsel as sel, DEMCR, DFSR, HALT_TIMEOUT};
use abi::layout::{layout_with_stack, Layout, STREAM_PAGE_BUF};
use abi::Config;

/// Registers the host saves and restores around a session, in restore
/// order: CONTROL first (it picks the stack pointer), then MSP, xPSR, pc.
/// r0-r12 and lr are saved and restored by `stub_serve` itself; PSP and the
/// FPU registers are never touched by the stub.
pub fn saved_registers() -> Vec<u16> {
    vec![sel::EXTRA, sel::MSP, sel::XPSR, sel::PC]
}

/// A gap before a chunk's trailer that goes out as padding in the chunk's
/// memory call rather than as a call of its own (about what one round trip
/// of a full-speed probe could otherwise carry).
const SMALL_GAP: usize = 64;

/// One stub entry point with its arguments (r1..r3; r0 is the config), as
/// the ABI blocks above the entry points in `target-stub/src/main.rs` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Wake and identify the chip → r1 = mfr << 16 | type << 8 | capacity.
    Init,
    /// Read `len` bytes at chip `addr` into the buffer (r1 addr, r2 dst, r3 len).
    Read { addr: u32, len: u32 },
    /// CRC-32 (GDB qCRC, from `CRC32_INIT`) of `len` bytes at `addr` → r1.
    Crc32 { addr: u32, len: u32 },
    /// One CRC per `abi::CRC_BLOCK` of `count` blocks from `addr`, into
    /// the buffer (r1 addr, r2 dst, r3 count).
    CrcBlocks { addr: u32, count: u32 },
    /// r1 addr, r2 kind.
    Erase { addr: u32, kind: abi::EraseKind },
    /// Read `len` bytes of SFDP space at `addr` into the buffer.
    ReadSfdp { addr: u32, len: u32 },
    /// Raise the core clock for the session → r1 = the new clock, or 0.
    Clock,
    /// → r1 = SR1 | SR2 << 8 | SR3 << 16.
    ReadStatus,
    /// Write status register `which` (1..3) with `value`; `volatile`: 50h
    /// first instead of 06h (r1 which, r2 value, r3 volatile).
    WriteStatus {
        which: u32,
        value: u8,
        volatile: bool,
    },
}

impl Call {
    pub fn op(&self) -> StubOp {
        match self {
            Call::Init => StubOp::Identify,
            Call::Read { .. } => StubOp::Read,
            Call::Crc32 { .. } => StubOp::Crc,
            Call::CrcBlocks { .. } => StubOp::BlockCrcs,
            Call::Erase { .. } => StubOp::Erase,
            Call::ReadSfdp { .. } => StubOp::ReadSfdp,
            Call::ReadStatus => StubOp::ReadStatus,
            Call::WriteStatus { .. } => StubOp::WriteStatus,
            Call::Clock => StubOp::Clock,
        }
    }

    pub fn address(&self) -> u32 {
        match *self {
            Call::Read { addr, .. }
            | Call::Crc32 { addr, .. }
            | Call::CrcBlocks { addr, .. }
            | Call::Erase { addr, .. }
            | Call::ReadSfdp { addr, .. } => addr,
            _ => 0,
        }
    }

    fn command(&self) -> Command {
        match self {
            Call::Init => Command::Init,
            Call::Read { .. } => Command::Read,
            Call::Crc32 { .. } => Command::Crc32,
            Call::CrcBlocks { .. } => Command::CrcBlocks,
            Call::Erase { .. } => Command::Erase,
            Call::ReadSfdp { .. } => Command::ReadSfdp,
            Call::ReadStatus => Command::ReadStatus,
            Call::WriteStatus { .. } => Command::WriteStatus,
            Call::Clock => Command::Clock,
        }
    }

    /// Bytes of the data buffer the call writes or reads.
    fn buffer_use(&self) -> u32 {
        match *self {
            Call::Read { len, .. } | Call::ReadSfdp { len, .. } => len,
            Call::CrcBlocks { count, .. } => count * 4 * abi::CRC_BLOCK_WORDS + abi::CRC_SCRATCH,
            Call::Crc32 { .. } => abi::CRC_SCRATCH,
            _ => 0,
        }
    }

    /// r1, r2, r3.
    pub fn args(&self, l: &Layout) -> [u32; 3] {
        match *self {
            Call::Init | Call::ReadStatus | Call::Clock => [0; 3],
            Call::Read { addr, len } | Call::ReadSfdp { addr, len } => [addr, l.buf, len],
            Call::Crc32 { addr, len } => [addr, len, l.buf],
            Call::CrcBlocks { addr, count } => [addr, l.buf, count],
            Call::Erase { addr, kind } => [addr, kind as u32, 0],
            Call::WriteStatus {
                which,
                value,
                volatile,
            } => [which, value.into(), u32::from(volatile)],
        }
    }
}

pub(super) fn rd(core: &mut Core<'_>, addr: u32) -> Result<u32, ExtFlashError> {
    core.read_word_32(addr.into())
        .map_err(ExtFlashError::probe(ProbeOp::ReadWord(addr)))
}

pub(super) fn wr(core: &mut Core<'_>, addr: u32, value: u32) -> Result<(), ExtFlashError> {
    core.write_word_32(addr.into(), value)
        .map_err(ExtFlashError::probe(ProbeOp::WriteWord(addr)))
}

pub(super) fn rd_block(
    core: &mut Core<'_>,
    addr: u32,
    words: usize,
) -> Result<Vec<u32>, ExtFlashError> {
    let mut out = vec![0u32; words];
    core.read_32(addr.into(), &mut out)
        .map_err(ExtFlashError::probe(ProbeOp::ReadWord(addr)))?;
    Ok(out)
}

/// The application's words of the work area in `start..end`, saved before
/// the stub overwrites them; a failed read names the range.
fn read_work_area(core: &mut Core<'_>, start: u32, end: u32) -> Result<Vec<u32>, ExtFlashError> {
    let mut out = vec![0u32; ((end - start) / 4) as usize];
    core.read_32(start.into(), &mut out)
        .map_err(ExtFlashError::probe(ProbeOp::SaveWorkArea { start, end }))?;
    Ok(out)
}

fn reg_rd(core: &mut Core<'_>, sel: u16) -> Result<u32, ExtFlashError> {
    core.read_core_reg::<u32>(RegisterId(sel))
        .map_err(ExtFlashError::probe(ProbeOp::ReadRegister(sel)))
}

fn reg_wr(core: &mut Core<'_>, sel: u16, value: u32) -> Result<(), ExtFlashError> {
    core.write_core_reg(RegisterId(sel), value)
        .map_err(ExtFlashError::probe(ProbeOp::WriteRegister(sel)))
}

/// Whether the application holds the flash's chip select: CS configured as
/// a GPIO output (MODER = 01) and driven low.
pub fn cs_asserted(core: &mut Core<'_>, ext: &ExternalFlash) -> Result<bool, ExtFlashError> {
    let base = wiring::gpio_base(ext.cs.port);
    // MODER..ODR in one read.
    let r = rd_block(core, base + wiring::GPIO_MODER, 6)?;
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
fn spi_dma(spi: u8) -> (u8, u32, u32) {
    match spi {
        1 => (2, 0x4002_6400, 3),
        _ => (1, 0x4002_6000, 0),
    }
}

/// Whether the application's SPI is mid-transfer: a frame on the wire, or
/// its DMA requests on and a stream of its channel enabled. The stub must
/// not reconfigure the SPI under either.
pub fn spi_activity(
    core: &mut Core<'_>,
    ext: &ExternalFlash,
) -> Result<SpiActivity, ExtFlashError> {
    let (spi, _, _) = wiring::spi_regs(ext.spi);
    let r = rd_block(core, spi, 3)?; // CR1, CR2, SR
    let (cr1, cr2, sr) = (r[0], r[1], r[2]);
    if cr1 & wiring::SPI_CR1_SPE != 0 && sr & (1 << 7) != 0 {
        return Ok(SpiActivity::FrameOnWire);
    }
    if cr2 & 0b11 != 0 {
        let (controller, base, channel) = spi_dma(ext.spi);
        for stream in 0..8u8 {
            let cr = rd(core, base + 0x10 + 0x18 * u32::from(stream))?;
            if cr & 1 != 0 && (cr >> 25) & 7 == channel {
                return Ok(SpiActivity::Dma { controller, stream });
            }
        }
    }
    Ok(SpiActivity::Idle)
}

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

/// Vector catches set for a session: a fault in the stub halts the core at
/// once instead of running the application's handler.
const SESSION_CATCH: u32 = demcr::VC_FAULTS;

/// Everything a session saved, restored by [`Resident::end`]; the default
/// restores nothing.
#[derive(Debug, Default)]
struct Saved {
    regs: Vec<(u16, u32)>,
    /// Work-area pieces, in address order (the buffer is saved lazily).
    ram: Vec<(u32, Vec<u32>)>,
    /// `None` until saved (a save can fail midway): only what was saved
    /// is put back.
    demcr: Option<u32>,
    /// DWT CTRL and CYCCNT.
    dwt: Option<[u32; 2]>,
    /// DWT FUNCTION0..3: user watchpoints are disarmed for the session.
    dwt_functions: Vec<u32>,
    dfsr: Option<u32>,
    apb1_fz: Option<u32>,
    /// The WWDG's clock was on and is off for the session.
    wwdg_gated: bool,
    periph: Vec<(u32, u32)>,
    /// DMA streams the stub uses: registers address and CR..FCR.
    dma_streams: Vec<(u32, [u32; 6])>,
    /// The DMA controller and its LISR/HISR at the start: flags the
    /// session raised are cleared again.
    dma_isr: Option<(u32, [u32; 2])>,
    /// CRC unit DR and IDR.
    crc: Option<[u32; 2]>,
    /// RCC CR, PLLCFGR, CFGR and FLASH_ACR before `Call::Clock`.
    clock: Option<[u32; 4]>,
}

/// A loaded, running stub with the application's state saved.
#[derive(Debug)]
pub struct Resident {
    pub layout: Layout,
    entries: Entries,
    wiring: SpiWiring,
    saved: Saved,
    /// Bytes of the data buffer saved so far (from `layout.buf`).
    buf_saved: u32,
    seq: u32,
    /// The JEDEC ID `stub_init` returned when the session started.
    pub jedec_id: u32,
    /// Set when a call failed in a way that leaves the stub's state
    /// unknown: the session must end.
    broken: bool,
    /// `stub_serve` was started (so ending the session must stop it).
    running: bool,
    /// CYCCNT ticks per millisecond at the core clock of the session.
    cycles_per_ms: u32,
    /// The config block as the stub has it.
    config: Config,
    /// CR1.BR for the board file's SPI clock at the session clock.
    fast_br: u32,
    /// `Call::Clock` was tried (once per session).
    clock_tried: bool,
}

/// What a poll of a running command saw.
pub struct Polled {
    /// The slots header's `rp`: for `Stream`, the chunks consumed.
    pub rp: u32,
    /// Target cycles (CYCCNT) since the command was posted, sampled every
    /// 16 polls.
    pub target_cycles: u64,
}

/// A session borrowed for a few calls.
pub struct StubSession<'a, 'p> {
    core: &'a mut Core<'p>,
    res: &'a mut Resident,
}

impl Resident {
    /// Save, load and start the stub, then identify the chip (`Init`). The
    /// core must be halted. On failure everything saved is restored.
    pub fn start(
        core: &mut Core<'_>,
        stub: &StubImage,
        ext: &ExternalFlash,
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
            cycles_per_ms: wiring::MAX_CORE_HZ / 1000,
            config: *config,
            fast_br: wiring::session_br(
                ext,
                wiring::spi_pclk_hz(ext.spi, SESSION_CFGR, abi::SESSION_CORE_HZ),
            ),
            clock_tried: false,
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
            started = rd_block(core, wiring::RCC_PLLCFGR, 2).map(|r| {
                let hclk = wiring::hclk_hz(r[1], r[0]);
                config.cycles_per_ms = hclk / 1000;
                config.br = wiring::session_br(ext, wiring::spi_pclk_hz(ext.spi, r[1], hclk));
            });
        }
        res.cycles_per_ms = config.cycles_per_ms;
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
                if let Err(r) = res.end(core, ext) {
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
        self.saved.periph.iter().any(|(r, _)| hit(block(*r)))
            || self.saved.dma_streams.iter().any(|(r, _)| hit(block(*r)))
            || (self.saved.crc.is_some() && hit(block(wiring::CRC_BASE)))
            // Unclocked for the session, the WWDG would read as zero.
            || (self.saved.wwdg_gated && hit(block(WWDG_CR)))
            || (self.saved.clock.is_some() && hit(block(wiring::FLASH_ACR)))
            || hit(u64::from(dwt::BASE)..u64::from(dwt::BASE) + 0x1000)
            || hit(u64::from(DFSR)..u64::from(DFSR) + 4)
            || hit(u64::from(DEMCR)..u64::from(DEMCR) + 4)
            || hit(u64::from(DBGMCU_APB1_FZ & !0xFF)..u64::from(DBGMCU_APB1_FZ & !0xFF) + 0x100)
    }

    /// Stop the stub and restore everything saved, leaving the core halted
    /// (by request, so probe-rs does not take the next step for a
    /// breakpoint). Continues past errors; returns the first.
    pub fn end(mut self, core: &mut Core<'_>, ext: &ExternalFlash) -> Result<(), ExtFlashError> {
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
        keep(restore(core, ext, &self.saved, self.running));
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

/// Save into `s` step by step, so a failure leaves `s` holding exactly what
/// must be put back (and what was changed is undone by `restore`).
fn save(
    core: &mut Core<'_>,
    ext: &ExternalFlash,
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
    let (_, spi_enr, spi_bit) = wiring::spi_regs(ext.spi);
    let ahb1 = rd(core, wiring::RCC_AHB1ENR)?;
    let apb = rd(core, spi_enr)?;
    s.periph.push((wiring::RCC_AHB1ENR, ahb1));
    s.periph.push((spi_enr, apb));
    let dma = ext.spi == 1;
    let gpio_mask = wiring::ports(ext)
        .iter()
        .fold(0, |m, p| m | 1 << wiring::port_index(*p))
        | wiring::RCC_AHB1ENR_CRCEN
        | if dma { wiring::RCC_AHB1ENR_DMA2EN } else { 0 };
    wr(core, wiring::RCC_AHB1ENR, ahb1 | gpio_mask)?;
    wr(core, spi_enr, apb | spi_bit)?;
    config.rcc_gpio_mask = gpio_mask;
    let crc = rd_block(core, wiring::CRC_BASE, 2)?;
    s.crc = Some([crc[0], crc[1]]);
    if dma {
        claim_dma(core, s, config)?;
    }
    let regs = wiring::peripheral_registers(ext);
    let (spi_base, _, _) = wiring::spi_regs(ext.spi);
    let values = read_registers(core, &regs, &[spi_base + wiring::SPI_DR])?;
    // After the enables were read (the restore puts back what they say).
    let apb1 = rd(core, wiring::RCC_APB1ENR)?;
    if apb1 & RCC_APB1ENR_WWDGEN != 0 {
        wr(core, wiring::RCC_APB1ENR, apb1 & !RCC_APB1ENR_WWDGEN)?;
        s.wwdg_gated = true;
    }
    s.periph = regs
        .iter()
        .zip(values)
        .map(|(&addr, v)| {
            let v = if addr == wiring::RCC_AHB1ENR {
                ahb1
            } else if addr == spi_enr {
                apb
            } else {
                v
            };
            (addr, v)
        })
        .collect();
    Ok(())
}

/// Read the registers at `addrs` (any order) with as few memory calls as
/// possible: addresses close together in one block read, as long as the
/// block spans none of `avoid` (registers whose read has a side effect,
/// such as SPI_DR). Values come back in the order of `addrs`.
fn read_registers(
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
fn claim_dma(core: &mut Core<'_>, s: &mut Saved, config: &mut Config) -> Result<(), ExtFlashError> {
    let base = wiring::DMA2_BASE;
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
        free(wiring::SPI1_DMA_RX_STREAMS),
        free(wiring::SPI1_DMA_TX_STREAMS),
    ) else {
        tracing::debug!("DMA2 streams for SPI1 in use: the stub polls the SPI");
        return Ok(());
    };
    s.dma_isr = Some((base, [r[0], r[1]]));
    for x in [rx, tx] {
        s.dma_streams
            .push((wiring::dma_stream_regs(base, x), stream(x)));
    }
    config.dma_base = base;
    config.dma_rx_stream = rx;
    config.dma_tx_stream = tx;
    config.dma_channel = wiring::SPI1_DMA_CHANNEL;
    Ok(())
}

/// The word that, fed to a freshly reset CRC unit, leaves `dr` in it: the
/// unit's step is invertible (the polynomial's bit 0 is set).
fn crc_unit_preimage(dr: u32) -> u32 {
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

/// CFGR bus bits of the session clock (`abi::SESSION_CORE_HZ`): AHB / 1,
/// APB1 / 4, APB2 / 2, SW = PLL.
const SESSION_CFGR: u32 = 5 << 10 | 4 << 13 | 2 | 2 << 2;

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

/// Put back what `save` saved. Halts the core only when `stub_ran`: a
/// session that never started the stub found the core halted (or failed
/// before touching it) and must not stop an application it did not stop.
fn restore(
    core: &mut Core<'_>,
    ext: &ExternalFlash,
    s: &Saved,
    stub_ran: bool,
) -> Result<(), ExtFlashError> {
    let mut first: Option<ExtFlashError> = None;
    let mut keep = |r: Result<(), ExtFlashError>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    if stub_ran
        && !core
            .core_halted()
            .map_err(ExtFlashError::probe(ProbeOp::CoreStatus))?
    {
        core.halt(HALT_TIMEOUT)
            .map_err(ExtFlashError::probe(ProbeOp::HaltStub("restore")))?;
    }
    for (at, words) in &s.ram {
        keep(
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
        keep(wr(core, wiring::RCC_CFGR, cfgr));
        for _ in 0..16 {
            match rd(core, wiring::RCC_CFGR) {
                Ok(now) if (now >> 2) & 3 == cfgr & 3 => break,
                Ok(_) => continue,
                Err(e) => {
                    keep(Err(e));
                    break;
                }
            }
        }
        keep(wr(core, wiring::RCC_CR, cr));
        keep(wr(core, wiring::RCC_PLLCFGR, pllcfgr));
        keep(wr(core, wiring::FLASH_ACR, acr));
    }
    for (at, regs) in &s.dma_streams {
        keep(
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
                        keep(wr(core, base + 8 + 4 * i, raised));
                    }
                }
            }
            Err(e) => keep(Err(e)),
        }
    }
    if let Some([dr, idr]) = s.crc {
        keep(wr(core, wiring::CRC_BASE + 8, 1));
        if dr != 0xFFFF_FFFF {
            keep(wr(core, wiring::CRC_BASE, crc_unit_preimage(dr)));
        }
        keep(wr(core, wiring::CRC_BASE + 4, idr));
    }
    let (spi, _, _) = wiring::spi_regs(ext.spi);
    let cr1 = spi + wiring::SPI_CR1;
    for &(addr, value) in &s.periph {
        if addr == spi + wiring::SPI_CR2 {
            // CR1 must be changed with SPE clear, and SPE comes back last,
            // after the rest of the configuration, so no frame starts.
            let saved_cr1 = s.periph.iter().find(|(a, _)| *a == cr1).map(|p| p.1);
            keep(rd(core, cr1).and_then(|now| wr(core, cr1, now & !wiring::SPI_CR1_SPE)));
            keep(wr(core, cr1, saved_cr1.unwrap_or(0) & !wiring::SPI_CR1_SPE));
        }
        keep(wr(core, addr, value));
    }
    if let Some(apb1_fz) = s.apb1_fz {
        keep(wr(core, DBGMCU_APB1_FZ, apb1_fz));
    }
    // Last of the RCC: the WWDG counts on from where it stopped.
    if s.wwdg_gated {
        let enr = wiring::RCC_APB1ENR;
        keep(rd(core, enr).and_then(|v| wr(core, enr, v | RCC_APB1ENR_WWDGEN)));
    }
    for (n, f) in s.dwt_functions.iter().enumerate() {
        if f & 0xF != 0 {
            keep(wr(core, dwt::function(n), *f));
        }
    }
    if let Some([ctrl, cyccnt]) = s.dwt {
        keep(wr(core, dwt::CYCCNT, cyccnt));
        keep(wr(core, dwt::CTRL, ctrl));
    }
    if let Some(app_demcr) = s.demcr {
        keep(wr(core, DEMCR, app_demcr));
    }
    // DFSR is write-one-to-clear: drop only what the session added.
    if let Some(saved) = s.dfsr {
        keep(rd(core, DFSR).and_then(|dfsr| {
            if dfsr & !saved != 0 {
                wr(core, DFSR, dfsr & !saved)
            } else {
                Ok(())
            }
        }));
    }
    for &(sel, value) in &s.regs {
        keep(reg_wr(core, sel, value));
    }
    first.map_or(Ok(()), Err)
}

fn to_words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Target time to allow for a stub call whose datasheet maximum is
/// `max_ms`, moving `bytes` over SPI: half again the maximum, 8 µs per byte
/// (SPI at 4 MHz or faster on a 16 MHz core, with the loop's overhead),
/// plus 1 s. Counted in CYCCNT ticks at the session's core clock.
pub fn timeout_for(max_ms: u64, bytes: u64) -> Duration {
    Duration::from_millis(max_ms + max_ms / 2 + bytes * 8 / 1000 + 1_000)
}

impl StubSession<'_, '_> {
    /// Where the session's blocks are.
    pub fn layout(&self) -> Layout {
        self.res.layout
    }

    /// Save the application's bytes of the data buffer up to `len` before
    /// the stub first writes them.
    fn save_buffer(&mut self, len: u32) -> Result<(), ExtFlashError> {
        let l = self.res.layout;
        let want = len.min(l.buf_len).div_ceil(4) * 4;
        if want <= self.res.buf_saved {
            return Ok(());
        }
        let from = l.buf + self.res.buf_saved;
        let to = l.buf + want;
        let words = read_work_area(self.core, from, to)?;
        self.res.saved.ram.push((from, words));
        self.res.buf_saved = want;
        Ok(())
    }

    /// Post `command` and wait for `done`; returns (status, value).
    fn post(
        &mut self,
        command: Command,
        args: [u32; 3],
        timeout: Duration,
    ) -> Result<(u32, u32), ExtFlashError> {
        self.post_with(command, args, StubOp::Exit, timeout, &mut |_, _| Ok(()))
    }

    /// Like [`post`](Self::post), running `poll` after each poll of `done`
    /// that finds the command still running (the stream's slots are fed
    /// from there), with what that poll read. Any error leaves the stub in
    /// an unknown state (the command may still run, or the post may never
    /// have landed): the session is marked broken, so it ends before the
    /// next use.
    fn post_with(
        &mut self,
        command: Command,
        args: [u32; 3],
        op: StubOp,
        timeout: Duration,
        poll: &mut dyn FnMut(&mut Core<'_>, &Polled) -> Result<(), ExtFlashError>,
    ) -> Result<(u32, u32), ExtFlashError> {
        let r = self.post_inner(command, args, op, timeout, poll);
        if r.is_err() {
            self.res.broken = true;
        }
        r
    }

    fn post_inner(
        &mut self,
        command: Command,
        args: [u32; 3],
        op: StubOp,
        timeout: Duration,
        poll: &mut dyn FnMut(&mut Core<'_>, &Polled) -> Result<(), ExtFlashError>,
    ) -> Result<(u32, u32), ExtFlashError> {
        let seq = self.post_begin(command, args)?;
        self.post_wait(seq, args[0], op, timeout, poll)
    }

    /// Write the mailbox: the stub starts `command` at once. Returns the
    /// sequence number its `done` will carry.
    fn post_begin(&mut self, command: Command, args: [u32; 3]) -> Result<u32, ExtFlashError> {
        let res = &mut *self.res;
        let mb = res.layout.mailbox;
        res.seq = res.seq.wrapping_add(1).max(1);
        let seq = res.seq;
        let post = [command as u32, args[0], args[1], args[2], seq];
        let core = &mut *self.core;
        core.write_32(mb.into(), &post)
            .and_then(|()| core.flush())
            .map_err(ExtFlashError::probe(ProbeOp::WriteWord(mb)))?;
        Ok(seq)
    }

    /// Wait for `done == seq` of the command [`post_begin`](Self::post_begin)
    /// started (`address`: its first argument, for messages).
    fn post_wait(
        &mut self,
        seq: u32,
        address: u32,
        op: StubOp,
        timeout: Duration,
        poll: &mut dyn FnMut(&mut Core<'_>, &Polled) -> Result<(), ExtFlashError>,
    ) -> Result<(u32, u32), ExtFlashError> {
        let res = &mut *self.res;
        let mb = res.layout.mailbox;
        let core = &mut *self.core;
        // The timeout counts target time (DWT CYCCNT, which the session
        // keeps running): a slow link or an emulated core on a busy host
        // then cannot fail a call that the target is still doing. A
        // wall-clock backstop catches a core that does not advance at all.
        let limit_cycles = timeout.as_millis() as u64 * u64::from(res.cycles_per_ms);
        let backstop = timeout * 20 + Duration::from_secs(60);
        let started = Instant::now();
        // The first CYCCNT sample comes with the 16th poll: a short command
        // (most of them) costs no extra round trip, and a long one only
        // gets a slightly longer timeout.
        let mut last_cycles: Option<u32> = None;
        let mut cycles = 0u64;
        let mut polls = 0u32;
        loop {
            // done, status, value and the slots header's count, rp: adjacent
            // (see `layout`), so one read.
            let r = rd_block(core, mb + mailbox_offset::DONE, 5)?;
            if r[0] == seq {
                // The stub's deepest stack use must have stayed above its
                // lowest word: otherwise it wrote into the data buffer,
                // and what the call returned cannot be trusted.
                let canary = res.layout.canary;
                let found = rd(core, canary)?;
                if found != abi::STACK_CANARY {
                    res.broken = true;
                    return Err(ExtFlashError::StackOverflow { op, canary, found });
                }
                return Ok((r[1], r[2]));
            }
            poll(
                core,
                &Polled {
                    rp: r[4],
                    target_cycles: cycles,
                },
            )?;
            polls += 1;
            if polls % 16 == 0 {
                let now = rd(core, dwt::CYCCNT)?;
                if let Some(last) = last_cycles {
                    cycles += u64::from(now.wrapping_sub(last));
                }
                last_cycles = Some(now);
            }
            // Now and then: is the stub still running at all?
            if polls % 64 == 0 {
                match core
                    .status()
                    .map_err(ExtFlashError::probe(ProbeOp::PollStub))?
                {
                    CoreStatus::Halted(_) | CoreStatus::LockedUp => {
                        res.broken = true;
                        if !core
                            .core_halted()
                            .map_err(ExtFlashError::probe(ProbeOp::CoreStatus))?
                        {
                            core.halt(HALT_TIMEOUT)
                                .map_err(ExtFlashError::probe(ProbeOp::HaltStub("locked up")))?;
                        }
                        return Err(ExtFlashError::WrongHalt {
                            op,
                            address,
                            pc: reg_rd(core, sel::PC)?,
                        });
                    }
                    _ => {}
                }
            }
            if cycles > limit_cycles || started.elapsed() > backstop {
                res.broken = true;
                return Err(ExtFlashError::Timeout {
                    op,
                    address,
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            // Back-to-back polls at first (short calls; an emulated core
            // advances with debug traffic), then every millisecond.
            if started.elapsed() > Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Run one command; returns its value. `limit_ms` is the chip-side
    /// maximum reported in a busy-timeout message.
    pub fn call(
        &mut self,
        call: Call,
        limit_ms: u32,
        timeout: Duration,
    ) -> Result<u32, ExtFlashError> {
        self.call_with(call, limit_ms, timeout, &mut |_, _| Ok(()))
    }

    /// Like [`call`](Self::call), calling `tick` between polls (for
    /// progress output during long operations).
    pub fn call_progress(
        &mut self,
        call: Call,
        limit_ms: u32,
        timeout: Duration,
        tick: &mut dyn FnMut(),
    ) -> Result<u32, ExtFlashError> {
        self.call_with(call, limit_ms, timeout, &mut |_, _| {
            tick();
            Ok(())
        })
    }

    fn call_with(
        &mut self,
        call: Call,
        limit_ms: u32,
        timeout: Duration,
        poll: &mut dyn FnMut(&mut Core<'_>, &Polled) -> Result<(), ExtFlashError>,
    ) -> Result<u32, ExtFlashError> {
        let l = self.res.layout;
        if call.buffer_use() > l.buf_len {
            return Err(ExtFlashError::Stub {
                op: call.op(),
                address: call.address(),
                wiring: self.res.wiring,
                source: StubStatusError::BadArgument,
            });
        }
        self.save_buffer(call.buffer_use())?;
        let (status, value) =
            self.post_with(call.command(), call.args(&l), call.op(), timeout, poll)?;
        StubStatusError::check(status, limit_ms).map_err(|source| ExtFlashError::Stub {
            op: call.op(),
            address: call.address(),
            wiring: self.res.wiring,
            source,
        })?;
        Ok(value)
    }

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
        let rcc = rd_block(self.core, wiring::RCC_CR, 3)?;
        if rcc[2] & 0xC != 0 || rcc[0] & wiring::RCC_CR_PLLON != 0 {
            return Ok(());
        }
        let acr = rd(self.core, wiring::FLASH_ACR)?;
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
        res.cycles_per_ms = res.config.cycles_per_ms;
        let mut block = vec![0u8; Config::SIZE];
        res.config.write_le(&mut block);
        self.core
            .write_32(res.layout.config.into(), &to_words(&block))
            .map_err(ExtFlashError::probe(ProbeOp::LoadStub(res.layout.config)))?;
        tracing::debug!(hz, br = res.fast_br, "stub session clock raised");
        Ok(())
    }

    /// Read `len` (≤ `layout.buf_len`) bytes of the data buffer.
    pub fn read_buffer(&mut self, len: u32) -> Result<Vec<u8>, ExtFlashError> {
        let at = self.res.layout.buf;
        let mut words = vec![0u32; len.div_ceil(4) as usize];
        self.core
            .read_32(at.into(), &mut words)
            .map_err(ExtFlashError::probe(ProbeOp::ReadBuffer(at)))?;
        let mut out: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.truncate(len as usize);
        Ok(out)
    }

    /// Read the chip ranges `runs` (each at most the buffer) in order.
    /// When there are several and each fits half the buffer, the halves
    /// alternate: the stub reads run `k + 1` over SPI into one while the
    /// host reads run `k` out of the other, so the SPI's time hides behind
    /// the link's. Relies on `stub_read` writing only `dst..dst + len`.
    pub fn read_runs(&mut self, runs: &[Range<u32>]) -> Result<Vec<Vec<u8>>, ExtFlashError> {
        let l = self.res.layout;
        let half = (l.buf_len / 2) & !3;
        let len = |r: &Range<u32>| r.end.saturating_sub(r.start);
        if let Some(r) = runs.iter().find(|r| len(r) > l.buf_len) {
            return Err(ExtFlashError::Stub {
                op: StubOp::Read,
                address: r.start,
                wiring: self.res.wiring,
                source: StubStatusError::BadArgument,
            });
        }
        let pipelined = runs.len() > 1 && runs.iter().all(|r| len(r) <= half);
        let used = if pipelined {
            2 * half
        } else {
            runs.iter().map(len).max().unwrap_or(0)
        };
        self.save_buffer(used)?;
        let dst = |k: usize| l.buf + if pipelined { (k as u32 % 2) * half } else { 0 };
        let r = self.read_runs_inner(runs, pipelined, &dst);
        if r.is_err() {
            self.res.broken = true;
        }
        r
    }

    fn read_runs_inner(
        &mut self,
        runs: &[Range<u32>],
        pipelined: bool,
        dst: &dyn Fn(usize) -> u32,
    ) -> Result<Vec<Vec<u8>>, ExtFlashError> {
        let op = StubOp::Read;
        let len = |k: usize| runs[k].end - runs[k].start;
        let begin =
            |s: &mut Self, k: usize| s.post_begin(Command::Read, [runs[k].start, dst(k), len(k)]);
        let mut out = Vec::with_capacity(runs.len());
        let mut seq = match runs.first() {
            Some(_) => begin(self, 0)?,
            None => return Ok(out),
        };
        for k in 0..runs.len() {
            let timeout = timeout_for(0, u64::from(len(k)));
            let (status, _) =
                self.post_wait(seq, runs[k].start, op, timeout, &mut |_, _| Ok(()))?;
            StubStatusError::check(status, 0).map_err(|source| ExtFlashError::Stub {
                op,
                address: runs[k].start,
                wiring: self.res.wiring,
                source,
            })?;
            let next = k + 1 < runs.len();
            if pipelined && next {
                seq = begin(self, k + 1)?;
            }
            let at = dst(k);
            let mut words = vec![0u32; len(k).div_ceil(4) as usize];
            self.core
                .read_32(at.into(), &mut words)
                .map_err(ExtFlashError::probe(ProbeOp::ReadBuffer(at)))?;
            let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            bytes.truncate(len(k) as usize);
            out.push(bytes);
            if !pipelined && next {
                seq = begin(self, k + 1)?;
            }
        }
        Ok(out)
    }

    /// Run `stream` (chunks packed for [`Layout::stream_slots`]) through
    /// `Command::Stream`: the host writes chunk `k` into slot `k % count`
    /// once the stub has consumed chunk `k - count`, data and trailer in
    /// one memory call, and several chunks per poll when the stub is
    /// ahead, so the link keeps sending while the chip erases.
    /// `consumed(k)` reports each chunk the stub is done with. A failing
    /// record is reported with its operation and chip address. Returns the
    /// 4 KiB sectors whose `ERASE_UNLESS_BLANK` erase the stub skipped.
    pub fn stream(
        &mut self,
        stream: &Stream,
        consumed: &mut dyn FnMut(usize),
    ) -> Result<u32, ExtFlashError> {
        let l = self.res.layout;
        let (count, slot) = l.stream_slots();
        let chunks = &stream.chunks;
        let n = chunks.len();
        if n == 0 {
            return Ok(0);
        }
        if let Some(c) = chunks.iter().find(|c| c.bytes.len() as u32 > slot - 4) {
            return Err(ExtFlashError::Stream(PackError::ChunkTooLarge {
                len: c.bytes.len() as u32,
                capacity: slot - 4,
            }));
        }
        let start = l.buf + STREAM_PAGE_BUF;
        let used = (n as u32).min(count);
        self.save_buffer(STREAM_PAGE_BUF + used * slot)?;
        let header = Slots {
            count,
            rp: 0,
            start,
            end: start + count * slot,
            abort: 0,
        };
        let mut block = [0u8; Slots::SIZE];
        header.write_le(&mut block);
        self.core
            .write_32(l.slots.into(), &to_words(&block))
            .map_err(ExtFlashError::probe(ProbeOp::SlotsHeader(l.slots)))?;
        // Chunks `k..end` into their slots, with their trailers: in one
        // call when each nearly fills its slot (the gap before a trailer
        // then costs less wire time than another call) and the slots are
        // adjacent. The stub starts on a chunk as soon as its trailer lands,
        // before the call ends.
        let full = |k: usize| slot as usize - 4 - chunks[k].bytes.len() <= SMALL_GAP;
        let put_run = |core: &mut Core<'_>, k: usize, end: usize| -> Result<(), ExtFlashError> {
            let base = start + (k as u32 % count) * slot;
            let mut words = Vec::with_capacity((end - k) * slot as usize / 4);
            for (j, c) in chunks.iter().enumerate().take(end).skip(k) {
                let at = words.len();
                words.extend(to_words(&c.bytes));
                words.resize(at + (slot as usize - 4) / 4, u32::MAX);
                words.push(abi::stream::trailer(j as u32, c.bytes.len() as u32));
            }
            core.write_32(base.into(), &words)
                .map_err(ExtFlashError::probe(ProbeOp::FillSlot(base)))
        };
        let put = |core: &mut Core<'_>, k: usize| -> Result<(), ExtFlashError> {
            let c = &chunks[k].bytes[..];
            let base = start + (k as u32 % count) * slot;
            let trailer = abi::stream::trailer(k as u32, c.len() as u32);
            let words = to_words(c);
            if full(k) {
                put_run(core, k, k + 1)
            } else {
                if !words.is_empty() {
                    core.write_32(base.into(), &words)
                        .map_err(ExtFlashError::probe(ProbeOp::FillSlot(base)))?;
                }
                wr(core, base + slot - 4, trailer)
            }
        };
        // Chunk 0, then every other slot that will be used gets a stale
        // trailer (the application's bytes could pass for a chunk's).
        put(&mut *self.core, 0)?;
        for j in 1..used {
            wr(self.core, start + j * slot + slot - 4, 0)?;
        }
        let mut written = 1usize;
        let timeout = timeout_for(stream.busy_max_ms, stream.sent_bytes * 4);
        // Target time without progress before the host gives up: the
        // longest single operation and a chunk's worth of pages after it.
        let cycles_per_ms = self.res.cycles_per_ms;
        let stall_cycles = (u64::from(stream.op_max_ms()) * 2 + 2_000) * u64::from(cycles_per_ms);
        let mut done = 0usize;
        let mut moved_at = 0u64;
        let mut aborted = false;
        let posted = self.post_with(
            Command::Stream,
            [l.slots, n as u32, l.buf],
            StubOp::StreamProgram,
            timeout,
            &mut |core, p| {
                let now = (p.rp as usize).min(n);
                // The stall clock runs only while the stub has a chunk to
                // work on: a host that fell behind is no stall.
                if now > done || written == done {
                    (done..now).for_each(&mut *consumed);
                    done = now;
                    moved_at = p.target_cycles;
                } else if p.target_cycles.saturating_sub(moved_at) > stall_cycles {
                    if !aborted {
                        aborted = true;
                        wr(core, l.slots + slots_offset::ABORT, 1)?;
                    } else if p.target_cycles.saturating_sub(moved_at) > 2 * stall_cycles {
                        // The stub sees `abort` only between chunks: one
                        // stuck inside an operation (a DMA transfer that
                        // never ends) is halted when the session ends.
                        return Err(ExtFlashError::Timeout {
                            op: StubOp::StreamProgram,
                            address: stream.chunk_address(done),
                            timeout_ms: stall_cycles / u64::from(cycles_per_ms.max(1)),
                        });
                    }
                }
                // Chunk k goes where chunk k - count was: free once consumed.
                let free = (done + count as usize).min(n);
                while written < free {
                    let mut end = written + 1;
                    while full(end - 1) && end < free && end % count as usize != 0 && full(end) {
                        end += 1;
                    }
                    if end - written > 1 {
                        put_run(core, written, end)?;
                    } else {
                        put(core, written)?;
                    }
                    written = end;
                }
                Ok(())
            },
        );
        // Errors name the chunk the stub was on, not the slots header.
        let at = stream.chunk_address(done);
        let (status, value) = posted.map_err(|e| match e {
            ExtFlashError::Timeout { op, timeout_ms, .. } => ExtFlashError::Timeout {
                op,
                address: at,
                timeout_ms,
            },
            ExtFlashError::WrongHalt { op, pc, .. } => ExtFlashError::WrongHalt {
                op,
                address: at,
                pc,
            },
            other => other,
        })?;
        // The failing record's op and chip address (`fail_value`).
        let (op, limit_ms) = if value >> 24 == abi::stream::OP_ERASE {
            (StubOp::StreamErase, stream.erase_max_ms)
        } else {
            (StubOp::StreamProgram, stream.page_ms)
        };
        StubStatusError::check(status, limit_ms).map_err(|source| ExtFlashError::Stub {
            op,
            address: value & 0xFF_FFFF,
            wiring: self.res.wiring,
            source,
        })?;
        (done..n).for_each(consumed);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn timeouts_follow_the_datasheet_maximum_and_the_spi_clock() {
        assert!(timeout_for(100_000, 0) > Duration::from_secs(100));
        assert!(timeout_for(3, 256) >= Duration::from_secs(1));
        // 8 MiB through SPI: seconds, not hours.
        let t = timeout_for(0, 8 << 20);
        assert!(
            t > Duration::from_secs(60) && t < Duration::from_secs(80),
            "{t:?}"
        );
    }
}

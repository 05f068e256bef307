//! The one fixed call sequence for the SPI driver stub.
//!
//! [`with_stub`] saves everything the stub disturbs (work-area RAM, every
//! core register including the FPU and the special registers, DEMCR, DWT
//! CTRL/CYCCNT, DFSR, and the RCC/GPIO/SPI registers of the wiring), loads
//! the stub and its config block and checks them by readback, lets the
//! caller make any number of [`StubSession::call`]s, and restores all of it
//! in every path, errors included, leaving the core halted where it was.
//!
//! Each call: place the stack canary, set r0..r3, sp, lr = `stub_bkpt | 1`,
//! pc = entry, xPSR.T, PRIMASK = 1; run; wait for the halt with a timeout;
//! check the core stopped on `stub_bkpt`; read r0/r1; check the canary.
//!
//! Relies on the stub ABI (`extflash_stub_abi`): the stub only touches the
//! work area, r0-r3/r12/lr/xPSR flags, DWT CYCCNT and the peripherals named
//! by the config block, and ends on `stub_bkpt`.

use std::ops::Range;
use std::time::{Duration, Instant};

use extflash_stub_abi::{self as abi, ring_offset, Ring, Words};
use probe_rs::{Core, CoreStatus, MemoryInterface, RegisterId};

use super::error::{ExtFlashError, ProbeOp, StubStatusError, WiringText};
use super::stub::{Entries, StubImage};
use super::wiring;
use crate::board::ExternalFlash;
use crate::cortex_m::{demcr, dwt, regsel as sel, DEMCR, DFSR, HALT_TIMEOUT};

/// Stack the stub gets, at the top of the work area.
pub const STACK_SIZE: u32 = 1024;

/// Registers saved and restored, in restore order: CONTROL first (it picks
/// the stack pointer), then both stack pointers, then the rest. `sp` itself
/// is not restored: it is MSP or PSP.
pub fn saved_registers() -> Vec<u16> {
    let mut r = vec![sel::EXTRA, sel::MSP, sel::PSP];
    r.extend(0..13);
    r.extend([sel::LR, sel::PC, sel::XPSR, sel::FPSCR]);
    r.extend((0..32).map(|n| sel::S0 + n));
    r
}

/// Where things go in the work area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub load: u32,
    pub config: u32,
    pub ring: u32,
    /// Data buffer (reads, SFDP, the program ring's storage).
    pub buf: u32,
    pub buf_len: u32,
    /// Lowest stack word.
    pub canary: u32,
    pub stack_top: u32,
}

/// Plan the work area: stub, config, ring header, buffer, stack.
pub fn layout(work_area: &Range<u32>, image_len: u32) -> Option<Layout> {
    let align = |v: u32, a: u32| v.div_ceil(a) * a;
    let load = work_area.start;
    let config = align(load + image_len, 8);
    let ring = align(config + std::mem::size_of::<abi::Config>() as u32, 8);
    let buf = align(ring + std::mem::size_of::<Ring>() as u32, 8);
    let stack_top = work_area.end & !7;
    let canary = stack_top.checked_sub(STACK_SIZE)?;
    let buf_len = canary.checked_sub(buf)? & !0xFF;
    (buf_len >= 1024).then_some(Layout {
        load,
        config,
        ring,
        buf,
        buf_len,
        canary,
        stack_top,
    })
}

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
    /// Program `len` bytes at `addr`, drained from the ring (r1 addr,
    /// r2 &Ring, r3 len).
    Program { addr: u32, len: u32 },
    /// Read `len` bytes of SFDP space at `addr` into the buffer.
    ReadSfdp { addr: u32, len: u32 },
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
    pub fn name(&self) -> &'static str {
        match self {
            Call::Init => "identify (stub_init)",
            Call::Read { .. } => "read (stub_read)",
            Call::Crc32 { .. } => "CRC (stub_crc32)",
            Call::CrcBlocks { .. } => "block CRCs (stub_crc_blocks)",
            Call::Erase { .. } => "erase (stub_erase)",
            Call::Program { .. } => "program (stub_program)",
            Call::ReadSfdp { .. } => "SFDP read (stub_read_sfdp)",
            Call::ReadStatus => "status read (stub_read_status)",
            Call::WriteStatus { .. } => "status write (stub_write_status)",
        }
    }

    pub fn address(&self) -> u32 {
        match *self {
            Call::Read { addr, .. }
            | Call::Crc32 { addr, .. }
            | Call::CrcBlocks { addr, .. }
            | Call::Erase { addr, .. }
            | Call::Program { addr, .. }
            | Call::ReadSfdp { addr, .. } => addr,
            _ => 0,
        }
    }

    fn entry(&self, e: &Entries) -> u32 {
        match self {
            Call::Init => e.init,
            Call::Read { .. } => e.read,
            Call::Crc32 { .. } => e.crc32,
            Call::CrcBlocks { .. } => e.crc_blocks,
            Call::Erase { .. } => e.erase,
            Call::Program { .. } => e.program,
            Call::ReadSfdp { .. } => e.read_sfdp,
            Call::ReadStatus => e.read_status,
            Call::WriteStatus { .. } => e.write_status,
        }
    }

    /// r1, r2, r3.
    pub fn args(&self, l: &Layout) -> [u32; 3] {
        match *self {
            Call::Init | Call::ReadStatus => [0; 3],
            Call::Read { addr, len } | Call::ReadSfdp { addr, len } => [addr, l.buf, len],
            Call::Crc32 { addr, len } => [addr, len, 0],
            Call::CrcBlocks { addr, count } => [addr, l.buf, count],
            Call::Erase { addr, kind } => [addr, kind as u32, 0],
            Call::Program { addr, len } => [addr, l.ring, len],
            Call::WriteStatus {
                which,
                value,
                volatile,
            } => [which, value.into(), u32::from(volatile)],
        }
    }
}

struct Saved {
    regs: Vec<(u16, u32)>,
    ram: Vec<u32>,
    demcr: u32,
    dwt_ctrl: u32,
    cyccnt: u32,
    dfsr: u32,
    periph: Vec<(u32, u32)>,
}

/// A loaded stub between save and restore.
pub struct StubSession<'a, 'p> {
    core: &'a mut Core<'p>,
    pub layout: Layout,
    entries: Entries,
    wiring: WiringText,
}

fn rd(core: &mut Core<'_>, addr: u32) -> Result<u32, ExtFlashError> {
    core.read_word_32(addr.into())
        .map_err(ExtFlashError::probe(ProbeOp::ReadWord(addr)))
}

fn wr(core: &mut Core<'_>, addr: u32, value: u32) -> Result<(), ExtFlashError> {
    core.write_word_32(addr.into(), value)
        .map_err(ExtFlashError::probe(ProbeOp::WriteWord(addr)))
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
    let pin = u32::from(ext.cs.number);
    let moder = rd(core, base + wiring::GPIO_MODER)?;
    let odr = rd(core, base + wiring::GPIO_ODR)?;
    Ok((moder >> (2 * pin)) & 0b11 == 0b01 && odr & (1 << pin) == 0)
}

/// Save, load the stub, run `f`, restore (always). The core must be halted.
pub fn with_stub<R>(
    core: &mut Core<'_>,
    stub: &StubImage,
    ext: &ExternalFlash,
    config: &abi::Config,
    f: impl FnOnce(&mut StubSession<'_, '_>) -> Result<R, ExtFlashError>,
) -> Result<R, ExtFlashError> {
    let wa = &ext.work_area;
    let layout = layout(wa, stub.bytes.len() as u32).ok_or(ExtFlashError::WorkAreaTooSmall {
        start: wa.start,
        size: wa.end - wa.start,
        len: stub.bytes.len() as u32,
    })?;
    let saved = save(core, ext)?;
    let result = (|| {
        load(core, stub, &layout, config)?;
        let mut session = StubSession {
            core: &mut *core,
            layout,
            entries: stub.entries,
            wiring: WiringText(wiring::describe(ext)),
        };
        f(&mut session)
    })();
    let restored = restore(core, ext, &saved);
    match (result, restored) {
        (Ok(r), Ok(())) => Ok(r),
        (Err(e), Ok(())) => Err(e),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(r)) => {
            tracing::error!(error = %crate::error::DisplayChain(&r), "restoring after a failed stub run also failed");
            Err(e)
        }
    }
}

fn save(core: &mut Core<'_>, ext: &ExternalFlash) -> Result<Saved, ExtFlashError> {
    let mut regs = Vec::new();
    for sel in saved_registers() {
        regs.push((sel, reg_rd(core, sel)?));
    }
    let wa = &ext.work_area;
    let mut ram = vec![0u32; ((wa.end - wa.start) / 4) as usize];
    core.read_32(wa.start.into(), &mut ram)
        .map_err(ExtFlashError::probe(ProbeOp::SaveWorkArea {
            start: wa.start,
            end: wa.end,
        }))?;
    let demcr = rd(core, DEMCR)?;
    // DWT registers are only readable with TRCENA set.
    wr(core, DEMCR, demcr | demcr::TRCENA)?;
    let dwt_ctrl = rd(core, dwt::CTRL)?;
    let cyccnt = rd(core, dwt::CYCCNT)?;
    let dfsr = rd(core, DFSR)?;
    // Peripheral registers read as zero with their clock off: read the
    // enables first, then switch the clocks on to read the real values.
    // (The RCC enables are restored last.)
    let mut periph = Vec::new();
    let (_, spi_enr, spi_bit) = wiring::spi_regs(ext.spi);
    let ahb1 = rd(core, wiring::RCC_AHB1ENR)?;
    let apb = rd(core, spi_enr)?;
    let gpio_mask = wiring::ports(ext)
        .iter()
        .fold(0, |m, p| m | 1 << wiring::port_index(*p));
    wr(core, wiring::RCC_AHB1ENR, ahb1 | gpio_mask)?;
    wr(core, spi_enr, apb | spi_bit)?;
    for addr in wiring::peripheral_registers(ext) {
        let v = if addr == wiring::RCC_AHB1ENR {
            ahb1
        } else if addr == spi_enr {
            apb
        } else {
            rd(core, addr)?
        };
        periph.push((addr, v));
    }
    Ok(Saved {
        regs,
        ram,
        demcr,
        dwt_ctrl,
        cyccnt,
        dfsr,
        periph,
    })
}

fn load(
    core: &mut Core<'_>,
    stub: &StubImage,
    l: &Layout,
    config: &abi::Config,
) -> Result<(), ExtFlashError> {
    let cfg = wiring::config_bytes(config);
    for (addr, bytes) in [(l.load, &stub.bytes), (l.config, &cfg)] {
        core.write_8(addr.into(), bytes)
            .and_then(|()| core.flush())
            .map_err(ExtFlashError::probe(ProbeOp::LoadStub(addr)))?;
        let mut back = vec![0u8; bytes.len()];
        core.read_8(addr.into(), &mut back)
            .map_err(ExtFlashError::probe(ProbeOp::ReadBackStub(addr)))?;
        if let Some(i) = back.iter().zip(bytes.iter()).position(|(a, b)| a != b) {
            return Err(ExtFlashError::Readback {
                address: addr + i as u32,
            });
        }
    }
    let ctrl = rd(core, dwt::CTRL)?;
    wr(core, dwt::CTRL, ctrl | dwt::CTRL_CYCCNTENA)?;
    Ok(())
}

fn restore(core: &mut Core<'_>, ext: &ExternalFlash, s: &Saved) -> Result<(), ExtFlashError> {
    // A run that timed out or failed may have left the core running.
    if !core
        .core_halted()
        .map_err(ExtFlashError::probe(ProbeOp::CoreStatus))?
    {
        core.halt(HALT_TIMEOUT)
            .map_err(ExtFlashError::probe(ProbeOp::HaltStub("restore")))?;
    }
    let wa = &ext.work_area;
    core.write_32(wa.start.into(), &s.ram)
        .and_then(|()| core.flush())
        .map_err(ExtFlashError::probe(ProbeOp::RestoreWorkArea {
            start: wa.start,
            end: wa.end,
        }))?;
    let (spi, _, _) = wiring::spi_regs(ext.spi);
    let cr1 = spi + wiring::SPI_CR1;
    for &(addr, value) in &s.periph {
        if addr == spi + wiring::SPI_CR2 {
            // CR1 must be changed with SPE clear, and SPE comes back last,
            // after the rest of the configuration, so no frame starts.
            let now = rd(core, cr1)?;
            wr(core, cr1, now & !wiring::SPI_CR1_SPE)?;
            let saved_cr1 = s.periph.iter().find(|(a, _)| *a == cr1).map(|p| p.1);
            wr(core, cr1, saved_cr1.unwrap_or(0) & !wiring::SPI_CR1_SPE)?;
        }
        wr(core, addr, value)?;
    }
    wr(core, dwt::CYCCNT, s.cyccnt)?;
    wr(core, dwt::CTRL, s.dwt_ctrl)?;
    wr(core, DEMCR, s.demcr)?;
    // DFSR is write-one-to-clear: drop only what our BKPT added.
    let dfsr = rd(core, DFSR)?;
    if dfsr & !s.dfsr != 0 {
        wr(core, DFSR, dfsr & !s.dfsr)?;
    }
    for &(sel, value) in &s.regs {
        reg_wr(core, sel, value)?;
    }
    Ok(())
}

/// Write bytes with as few SWD transactions as possible: byte writes
/// (`write_8`) for an unaligned head and tail, word writes in between (one
/// transaction per word instead of per byte).
fn write_bytes(core: &mut Core<'_>, addr: u32, data: &[u8]) -> Result<(), ExtFlashError> {
    let fail = || ExtFlashError::probe(ProbeOp::FillRing(addr));
    let head = ((4 - addr % 4) % 4).min(data.len() as u32) as usize;
    let body = (data.len() - head) & !3;
    if head > 0 {
        core.write_8(addr.into(), &data[..head]).map_err(fail())?;
    }
    if body > 0 {
        let words: Vec<u32> = data[head..head + body]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        core.write_32((addr + head as u32).into(), &words)
            .map_err(fail())?;
    }
    if head + body < data.len() {
        core.write_8((addr + (head + body) as u32).into(), &data[head + body..])
            .map_err(fail())?;
    }
    Ok(())
}

/// Wall-clock time to allow for a stub run whose datasheet maximum is
/// `max_ms`, moving `bytes` over SPI: the maximum, plus the transfer at a
/// pessimistic 2 KB/s (an emulated core on a busy host), plus 2 s.
pub fn timeout_for(max_ms: u64, bytes: u64) -> Duration {
    Duration::from_millis(max_ms + max_ms / 2 + bytes / 2 + 2_000)
}

impl StubSession<'_, '_> {
    /// Run one entry point; returns r1. `limit_ms` is the chip-side maximum
    /// reported in a busy-timeout message.
    pub fn call(
        &mut self,
        call: Call,
        limit_ms: u32,
        timeout: Duration,
    ) -> Result<u32, ExtFlashError> {
        self.call_with(call, limit_ms, timeout, &mut |_, _| Ok(()))
    }

    /// Like [`call`](Self::call), calling `tick` between status polls (for
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

    /// Like [`call`](Self::call), running `poll` between core status polls
    /// (the program ring is fed from there).
    fn call_with(
        &mut self,
        call: Call,
        limit_ms: u32,
        timeout: Duration,
        poll: &mut dyn FnMut(&mut Core<'_>, &Layout) -> Result<(), ExtFlashError>,
    ) -> Result<u32, ExtFlashError> {
        let l = self.layout;
        let core = &mut *self.core;
        wr(core, l.canary, abi::STACK_CANARY)?;
        let [r1, r2, r3] = call.args(&l);
        // PRIMASK = 1, CONTROL = 0 (privileged, MSP): the stub runs with
        // interrupts masked on the main stack.
        reg_wr(core, sel::EXTRA, 1)?;
        for (sel, value) in [
            (0, l.config),
            (1, r1),
            (2, r2),
            (3, r3),
            (sel::SP, l.stack_top),
            (sel::LR, (l.load + self.entries.bkpt) | 1),
            (sel::PC, l.load + call.entry(&self.entries)),
            (sel::XPSR, 1 << 24),
        ] {
            reg_wr(core, sel, value)?;
        }
        core.run()
            .map_err(ExtFlashError::probe(ProbeOp::StartStub(call.name())))?;
        let started = Instant::now();
        loop {
            poll(core, &l)?;
            let status = core
                .status()
                .map_err(ExtFlashError::probe(ProbeOp::PollStub))?;
            match status {
                CoreStatus::Halted(_) => break,
                CoreStatus::LockedUp => {
                    core.halt(HALT_TIMEOUT)
                        .map_err(ExtFlashError::probe(ProbeOp::HaltStub("locked up")))?;
                    break;
                }
                _ => {}
            }
            if started.elapsed() > timeout {
                core.halt(HALT_TIMEOUT)
                    .map_err(ExtFlashError::probe(ProbeOp::HaltStub("timed out")))?;
                return Err(ExtFlashError::Timeout {
                    op: call.name(),
                    address: call.address(),
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            // Back-to-back polls at first (short calls, and an emulated
            // core advances with debug traffic), then every millisecond.
            if started.elapsed() > Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let pc = reg_rd(core, sel::PC)?;
        if pc != l.load + self.entries.bkpt {
            return Err(ExtFlashError::WrongHalt {
                op: call.name(),
                address: call.address(),
                pc,
            });
        }
        let r0 = reg_rd(core, 0)?;
        let r1 = reg_rd(core, 1)?;
        let canary = rd(core, l.canary)?;
        if canary != abi::STACK_CANARY {
            return Err(ExtFlashError::StackOverflow {
                op: call.name(),
                canary: l.canary,
                found: canary,
            });
        }
        StubStatusError::check(r0, limit_ms).map_err(|source| ExtFlashError::Stub {
            op: call.name(),
            address: call.address(),
            wiring: self.wiring.clone(),
            source,
        })?;
        Ok(r1)
    }

    /// Read `len` (≤ `layout.buf_len`) bytes of the data buffer.
    pub fn read_buffer(&mut self, len: u32) -> Result<Vec<u8>, ExtFlashError> {
        let mut out = vec![0u8; len as usize];
        let at = self.layout.buf;
        if len % 4 == 0 {
            let mut words = vec![0u32; len as usize / 4];
            self.core
                .read_32(at.into(), &mut words)
                .map_err(ExtFlashError::probe(ProbeOp::ReadBuffer(at)))?;
            for (c, w) in out.chunks_exact_mut(4).zip(words) {
                c.copy_from_slice(&w.to_le_bytes());
            }
        } else {
            self.core
                .read_8(at.into(), &mut out)
                .map_err(ExtFlashError::probe(ProbeOp::ReadBuffer(at)))?;
        }
        Ok(out)
    }

    /// Program `data` at chip `addr` through the ring: the host keeps the
    /// ring filled while the stub drains it into page programs, so SWD
    /// transfers overlap page-program time. `drained(n)` reports bytes the
    /// stub has taken from the ring (into the chip's page buffer).
    ///
    /// Relies on the [`Ring`] protocol: the host only writes data, `wp` and
    /// `abort`; the stub only writes `rp`; one byte always stays free.
    pub fn program(
        &mut self,
        addr: u32,
        data: &[u8],
        page_size: u32,
        page_ms: u32,
        drained: &mut dyn FnMut(u32),
    ) -> Result<(), ExtFlashError> {
        let l = self.layout;
        let ring = Ring {
            wp: l.buf,
            rp: l.buf,
            start: l.buf,
            end: l.buf + l.buf_len,
            abort: 0,
        };
        {
            let mut header = [0u8; Ring::SIZE];
            ring.write_le(&mut header);
            let words: Vec<u32> = header
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            self.core
                .write_32(l.ring.into(), &words)
                .map_err(ExtFlashError::probe(ProbeOp::RingHeader(l.ring)))?;
        }
        let total = data.len() as u64;
        let pages = total.div_ceil(u64::from(page_size.max(1))) + 1;
        let timeout = timeout_for(u64::from(page_ms) * pages, total * 4);
        let mut sent = 0usize;
        let mut wp = ring.wp;
        let mut last_rp = ring.rp;
        let mut last_move = Instant::now();
        // Time without progress before the host gives up on the stub.
        let stall = Duration::from_millis(u64::from(page_ms) * 4 + 2_000);
        let mut feed = |core: &mut Core<'_>, _: &Layout| -> Result<(), ExtFlashError> {
            let rp = rd(core, l.ring + ring_offset::RP)?;
            if rp != last_rp {
                let moved = if rp >= last_rp {
                    rp - last_rp
                } else {
                    (ring.end - last_rp) + (rp - ring.start)
                };
                drained(moved);
                last_rp = rp;
                last_move = Instant::now();
            } else if sent < data.len() && last_move.elapsed() > stall {
                wr(core, l.ring + ring_offset::ABORT, 1)?;
            }
            let cur = Ring { wp, rp, ..ring };
            let mut room = cur.writable() as usize;
            let mut wrote = false;
            while room > 0 && sent < data.len() {
                // Up to the end of the ring, then wrap.
                let contiguous = (ring.end - wp) as usize;
                let n = room.min(contiguous).min(data.len() - sent);
                write_bytes(core, wp, &data[sent..sent + n])?;
                sent += n;
                room -= n;
                wp = cur.advance(wp, n as u32);
                wrote = true;
            }
            if wrote {
                core.flush()
                    .map_err(ExtFlashError::probe(ProbeOp::FillRing(wp)))?;
                wr(core, l.ring + ring_offset::WP, wp)?;
            }
            Ok(())
        };
        // Prime the ring before the stub starts.
        feed(&mut *self.core, &l)?;
        self.call_with(
            Call::Program {
                addr,
                len: data.len() as u32,
            },
            page_ms,
            timeout,
            &mut feed,
        )?;
        // What the stub drained after the last poll.
        let last = rd(self.core, l.ring + ring_offset::RP)?;
        if last != last_rp {
            let moved = if last >= last_rp {
                last - last_rp
            } else {
                (ring.end - last_rp) + (last - ring.start)
            };
            drained(moved);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_the_builtin_work_area() {
        let l = layout(&(0x2001_C000..0x2002_0000), 0x6A2).unwrap();
        assert_eq!(l.load, 0x2001_C000);
        assert_eq!(l.config, 0x2001_C6A8);
        assert!(l.ring >= l.config + 112);
        assert!(l.buf >= l.ring + 20);
        assert_eq!(l.stack_top, 0x2002_0000);
        assert_eq!(l.canary, 0x2002_0000 - STACK_SIZE);
        assert!(l.buf + l.buf_len <= l.canary);
        assert_eq!(l.buf_len % 256, 0);
        assert!(l.buf_len >= 8 * 1024);
    }

    #[test]
    fn invalid_layout_when_the_stub_fills_the_work_area() {
        assert_eq!(layout(&(0x2001_F000..0x2002_0000), 0xC00), None);
    }

    #[test]
    fn saved_registers_cover_core_fpu_and_special_registers() {
        let r = saved_registers();
        assert_eq!(r[0], sel::EXTRA, "CONTROL restored first");
        for s in (0..13).chain([14, 15, 16, 17, 18, 20, 33]).chain(64..96) {
            assert!(r.contains(&s), "register {s}");
        }
        assert!(!r.contains(&sel::SP), "sp is MSP or PSP");
    }

    #[test]
    fn timeouts_grow_with_the_datasheet_maximum() {
        assert!(timeout_for(100_000, 0) > Duration::from_secs(100));
        assert!(timeout_for(3, 256) >= Duration::from_secs(2));
    }
}

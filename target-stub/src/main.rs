//! extflash-gdb's SPI NOR driver stub: runs in target RAM, called by the host
//! through the debug probe, drives a W25Q64JV-class chip on an STM32F4 SPI.
//!
//! The calling convention, the config block, the record stream and the status
//! codes are defined once, in `abi/src/lib.rs`; this file implements them.
//!
//! What it touches: what [`Config`] names — RCC bits `rcc_gpio_mask` in
//! `rcc_gpio_enr` and `rcc_spi_bit` in `rcc_spi_enr`; MODER, OTYPER,
//! OSPEEDR, PUPDR (MISO only), AFRL/AFRH and BSRR of the four pins (only
//! their own bit fields); SPI CR1, CR2, SR, DR of `spi_base`; the two DMA
//! streams (CR, NDTR, PAR, M0AR) and their LISR/HISR flags (LIFCR/HIFCR) of
//! `dma_base` when it is set; IWDG_KR (`iwdg_kr`, reload only) when it is
//! set — plus, at fixed addresses, the CRC unit (CR, DR), RCC CR, PLLCFGR
//! and CFGR and FLASH_ACR (`stub_clock` only, from the reset clock tree),
//! and DWT CYCCNT/CTRL (read only). The host saves and restores all of
//! them except IWDG_KR, whose reload is what the application's watchdog
//! expects anyway.
//!
//! Every call is self-contained: it (re)configures clocks, pins and the SPI
//! from the config, so the host may restore the application's registers
//! between calls. On return chip select is high, SPI.BSY is 0 and DR has been
//! read (RXNE = 0).
//!
//! Position independence: built with `-C relocation-model=ropi`; there is no
//! writable data (the linker script asserts it), no function-pointer table,
//! and no call into the precompiled `compiler_builtins` (which is not ropi).
//! build.sh links the stub at two addresses and checks the bytes are equal.
//!
//! Chip semantics relied on (W25Q64JV datasheet): program/erase/status writes
//! start on /CS rising and need WEL; a refused one (protected range, SRL)
//! leaves BUSY = 0 and WEL = 1; WEL clears when the operation completes;
//! status reads (05h/35h/15h) are answered while BUSY.
#![no_std]
#![no_main]

use core::arch::global_asm;
use core::cell::Cell;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use extflash_stub_abi::spi_nor::op;
use extflash_stub_abi::{
    crc32_update, lz, stream, Command, Config, EraseKind, Mailbox, PinCfg, Slots, Status, CONFIG_MAGIC,
    CRC_BLOCK, CRC_BLOCK_WORDS, CRC_CHUNK, PIN_CS, PIN_GPIO_OUTPUT, PIN_MISO, SESSION_CFGR,
    SESSION_CORE_HZ, SESSION_PLLCFGR,
};
use extflash_stub_abi::rcc;

/// A failed operation's `Status` code (one byte keeps `Res<()>` in a
/// register, which keeps the stub small).
#[derive(Clone, Copy)]
struct Fail(u8);

fn fail(s: Status) -> Fail {
    Fail(s as u8)
}

type Res<T> = Result<T, Fail>;

#[cfg(any(feature = "stldr", feature = "flm"))]
mod loader;

/// STM32F4 CRC calculation unit (RM0090 chapter 4): CRC-32 0x04C11DB7 of
/// 32-bit words, MSB first, from 0xFFFFFFFF, no final XOR. Fed each word
/// byte-swapped, it computes GDB's `qCRC` over the bytes in memory order.
mod crc {
    pub const DR: u32 = 0x4002_3000;
    pub const CR: u32 = 0x4002_3008;
    pub const CR_RESET: u32 = 1;
}

/// Feed `words` words at `p` to the CRC unit; returns `and` ANDed with
/// each word (all ones: every byte was 0xFF).
#[inline(never)]
fn crc_words(p: *const u32, words: u32, and: u32) -> u32 {
    let mut a = and;
    let mut q = p;
    for _ in 0..words {
        // SAFETY: the caller's chunk is RAM the DMA or the loop just filled.
        let w = unsafe { q.read_volatile() };
        wr(crc::DR, w.swap_bytes());
        a &= w;
        q = q.wrapping_add(1);
    }
    a
}

/// STM32F4 DMA stream registers (RM0090 chapter 10), direct mode.
mod dma {
    pub const CR: u32 = 0x00;
    pub const NDTR: u32 = 0x04;
    pub const PAR: u32 = 0x08;
    pub const M0AR: u32 = 0x0C;
    pub const CR_EN: u32 = 1;
    pub const CR_DIR_M2P: u32 = 1 << 6;
    pub const CR_MINC: u32 = 1 << 10;
    pub const CR_CHSEL_SHIFT: u32 = 25;
    pub const TCIF: u32 = 1 << 5;
    /// FEIF, DMEIF, TEIF, HTIF, TCIF of one stream.
    pub const FLAGS: u32 = 0x3D;
}

/// One DMA stream: its registers and where its flags sit in LISR/HISR.
#[derive(Clone, Copy)]
struct Stream {
    regs: u32,
    isr: u32,
    shift: u32,
}

impl Stream {
    fn new(dma_base: u32, x: u32) -> Self {
        let high = if x & 4 != 0 { 4 } else { 0 };
        Stream {
            regs: dma_base + 0x10 + 0x18 * (x & 7),
            isr: dma_base + high,
            shift: (x & 1) * 6 + (x & 2) * 8,
        }
    }

    /// Clear the flags and start `n` items between `par` and `mem`.
    #[inline(never)]
    fn start(&self, cr: u32, par: u32, mem: u32, n: u32) {
        // The stream is idle (EN cleared itself at the last transfer's end,
        // and the host checked it free); IFCR sits 8 bytes above the ISR.
        wr(self.isr + 8, dma::FLAGS << self.shift);
        wr(self.regs + dma::PAR, par);
        wr(self.regs + dma::M0AR, mem);
        wr(self.regs + dma::NDTR, n);
        wr(self.regs + dma::CR, cr | dma::CR_EN);
    }

    /// Wait for transfer complete: a loop that only reads one flag (an
    /// emulated board skips it). No deadline of its own: it ends when the
    /// SPI moves the bytes, and the host's command timeout covers an SPI
    /// that never does.
    #[inline(never)]
    fn wait(&self) {
        let bit = dma::TCIF << self.shift;
        while rd(self.isr) & bit == 0 {}
    }
}

/// W25Q64JV instructions the stub uses (opcodes from the ABI crate).
#[derive(Clone, Copy)]
#[repr(u8)]
enum Op {
    WriteEnable = op::WRITE_ENABLE,
    WriteDisable = op::WRITE_DISABLE,
    VolatileSrWriteEnable = op::VOLATILE_SR_WRITE_ENABLE,
    ReadStatus1 = op::READ_STATUS1,
    ReadStatus2 = op::READ_STATUS2,
    ReadStatus3 = op::READ_STATUS3,
    WriteStatus1 = op::WRITE_STATUS1,
    WriteStatus2 = op::WRITE_STATUS2,
    WriteStatus3 = op::WRITE_STATUS3,
    FastRead = op::FAST_READ,
    ReadSfdp = op::READ_SFDP,
    PageProgram = op::PAGE_PROGRAM,
    SectorErase = op::SECTOR_ERASE,
    BlockErase32 = op::BLOCK_ERASE_32K,
    BlockErase64 = op::BLOCK_ERASE_64K,
    ChipErase = op::CHIP_ERASE,
    ReleasePowerDown = op::RELEASE_POWER_DOWN,
    JedecId = op::JEDEC_ID,
}

/// Status register 1 bits.
const SR1_BUSY: u8 = 1 << 0;
const SR1_WEL: u8 = 1 << 1;

const PAGE: u32 = 256;
/// Bytes per DMA transfer of a read.
const READ_PIECE: u32 = 1024;
/// 24-bit addressing: offsets at or above this are a host bug.
const ADDR_LIMIT: u32 = 1 << 24;

/// STM32F4 GPIO register offsets.
mod gpio {
    pub const MODER: u32 = 0x00;
    pub const OTYPER: u32 = 0x04;
    pub const OSPEEDR: u32 = 0x08;
    pub const PUPDR: u32 = 0x0C;
    pub const BSRR: u32 = 0x18;
    pub const AFRL: u32 = 0x20;
}

/// STM32F4 SPI register offsets and bits.
mod spi {
    pub const CR1: u32 = 0x00;
    pub const CR2: u32 = 0x04;
    pub const SR: u32 = 0x08;
    pub const DR: u32 = 0x0C;
    pub const CR1_MSTR: u32 = 1 << 2;
    pub const CR1_BR_SHIFT: u32 = 3;
    pub const CR1_SPE: u32 = 1 << 6;
    pub const CR1_SSI: u32 = 1 << 8;
    pub const CR1_SSM: u32 = 1 << 9;
    pub const CR2_RXDMAEN: u32 = 1 << 0;
    pub const CR2_TXDMAEN: u32 = 1 << 1;
    pub const SR_RXNE: u32 = 1 << 0;
    pub const SR_OVR: u32 = 1 << 6;
    pub const SR_BSY: u32 = 1 << 7;
}

/// Clear RXNE and OVR (a DR read then an SR read, RM0090 28.4.8) without
/// reading a DR that holds nothing new (RXNE = 0 and OVR = 0: stale data,
/// which the virtual board's strict mode reports).
#[inline(never)]
fn drain_spi(s: u32) {
    if rd(s + spi::SR) & (spi::SR_RXNE | spi::SR_OVR) != 0 {
        rd(s + spi::DR);
        rd(s + spi::SR);
    }
}

const DWT_CTRL: u32 = 0xE000_1000;
const DWT_CYCCNT: u32 = 0xE000_1004;

#[inline(always)]
fn rd(addr: u32) -> u32 {
    // SAFETY: addresses come from the host's config (registers it names) or
    // are fixed Cortex-M/DWT registers.
    unsafe { read_volatile(addr as *const u32) }
}

#[inline(always)]
fn wr(addr: u32, v: u32) {
    // SAFETY: as for `rd`.
    unsafe { write_volatile(addr as *mut u32, v) }
}

/// Read-modify-write of the bits in `mask`.
#[inline(never)]
fn modify(addr: u32, mask: u32, v: u32) {
    wr(addr, (rd(addr) & !mask) | (v & mask));
}

/// Refresh the application's independent watchdog when the host says it
/// runs (`Config::iwdg_kr` non-zero): it keeps counting while the stub runs,
/// and a reset in the middle of an erase or program would lose data. With
/// no watchdog running the stub writes nothing, so its waits only read.
#[inline(always)]
fn kick_watchdog_at(iwdg_kr: u32) {
    if iwdg_kr != 0 {
        wr(iwdg_kr, IWDG_RELOAD);
    }
}

fn kick_watchdog(cfg: &Config) {
    kick_watchdog_at(cfg.iwdg_kr);
}

/// IWDG_KR value that reloads the counter.
const IWDG_RELOAD: u32 = 0xAAAA;

fn cyccnt() -> u32 {
    rd(DWT_CYCCNT)
}

/// A timeout in milliseconds measured with CYCCNT. Elapsed ticks accumulate
/// in 64 bits, so limits beyond CYCCNT's 25 s wrap (chip erase) work as long
/// as it is polled at least once per wrap.
struct Deadline {
    /// `Config::iwdg_kr`: every wait refreshes a running watchdog.
    iwdg_kr: u32,
    last: u32,
    elapsed: u64,
    limit: u64,
}

impl Deadline {
    fn new(ms: u32, cycles_per_ms: u32, iwdg_kr: u32) -> Self {
        Deadline {
            iwdg_kr,
            last: cyccnt(),
            elapsed: 0,
            limit: ms as u64 * cycles_per_ms as u64,
        }
    }

    #[inline(never)]
    fn expired(&mut self) -> bool {
        kick_watchdog_at(self.iwdg_kr);
        let now = cyccnt();
        self.elapsed += now.wrapping_sub(self.last) as u64;
        self.last = now;
        self.elapsed >= self.limit
    }
}

/// The configured SPI and chip select.
///
/// SPI frame timeouts are sticky: after one, `dead` is set and every later
/// frame returns 0 at once without waiting. Zero reads as "idle, WEL = 0"
/// status and a 0 JEDEC ID, so every loop over chip status ends quickly,
/// and `dispatch` reports `SpiTimeout` whatever the operation concluded.
/// That keeps error handling out of every byte transfer.
struct Bus<'a> {
    cfg: &'a Config,
    spi: u32,
    cs_bsrr: u32,
    cs_bit: u32,
    dead: Cell<bool>,
    /// The operation's result for r1 (JEDEC ID, CRC, status registers).
    value: Cell<u32>,
    /// DMA streams for bulk transfers (`Config::dma_base` non-zero).
    dma: Option<(Stream, Stream)>,
    /// SxCR.CHSEL bits of both streams.
    chsel: u32,
}

impl<'a> Bus<'a> {
    /// Clocks, pins and SPI as the config says: master, mode 0, 8 bit,
    /// MSB first, software NSS, PCLK / 2^(br+1).
    #[inline(never)]
    fn setup(cfg: &'a Config) -> Self {
        modify(cfg.rcc_gpio_enr, cfg.rcc_gpio_mask, !0);
        // Errata ES0182 2.2.x: a peripheral needs two AHB cycles after its
        // clock enable; the RCC read-modify-write of the SPI clock covers
        // the GPIOs, and the pin set-up covers the SPI.
        modify(cfg.rcc_spi_enr, cfg.rcc_spi_bit, !0);
        for (i, p) in cfg.pins.iter().enumerate() {
            config_pin(p, i == PIN_MISO);
        }
        let cs = &cfg.pins[PIN_CS];
        let bus = Bus {
            cfg,
            spi: cfg.spi_base,
            cs_bsrr: cs.gpio_base + gpio::BSRR,
            cs_bit: 1 << (cs.pin & 15),
            dead: Cell::new(false),
            value: Cell::new(0),
            dma: (cfg.dma_base != 0).then(|| {
                (
                    Stream::new(cfg.dma_base, cfg.dma_rx_stream),
                    Stream::new(cfg.dma_base, cfg.dma_tx_stream),
                )
            }),
            chsel: (cfg.dma_channel & 7) << dma::CR_CHSEL_SHIFT,
        };
        let s = bus.spi;
        // BR may only change with SPE = 0. (A frame the application left on
        // the wire ended long ago: the host needed milliseconds to get here.)
        wr(s + spi::CR1, 0);
        wr(s + spi::CR2, 0);
        // SR read then CR1 write clears MODF; DR then SR read, RXNE and OVR.
        drain_spi(s);
        let cr1 = spi::CR1_MSTR | spi::CR1_SSM | spi::CR1_SSI | (cfg.br & 7) << spi::CR1_BR_SHIFT;
        wr(s + spi::CR1, cr1);
        wr(s + spi::CR1, cr1 | spi::CR1_SPE);
        bus
    }

    #[inline(never)]
    fn deadline(&self, ms: u32) -> Deadline {
        Deadline::new(ms, self.cfg.cycles_per_ms, self.cfg.iwdg_kr)
    }

    fn select(&self) {
        wr(self.cs_bsrr, self.cs_bit << 16);
    }

    fn deselect(&self) {
        wr(self.cs_bsrr, self.cs_bit);
    }

    /// Start a frame (TXE is 1: only one frame is ever in flight).
    fn start(&self, b: u8) {
        wr(self.spi + spi::DR, b as u32);
    }

    /// Wait (at most `spi_frame_ms`) for the frame in flight and return
    /// what MISO gave; 0 once the SPI is dead.
    #[inline(never)]
    fn finish_frame(&self) -> u8 {
        // A frame at the session's SPI clock (8 bits in 32 to 256 core
        // cycles) ends within a few reads of SR: only a slow or dead SPI
        // costs the deadline's set-up.
        for _ in 0..8 {
            if rd(self.spi + spi::SR) & spi::SR_RXNE != 0 {
                return rd(self.spi + spi::DR) as u8;
            }
        }
        let mut dl = self.deadline(self.cfg.timeouts.spi_frame_ms);
        while !self.dead.get() {
            if rd(self.spi + spi::SR) & spi::SR_RXNE != 0 {
                return rd(self.spi + spi::DR) as u8;
            }
            if dl.expired() {
                self.dead.set(true);
            }
        }
        0
    }

    #[inline(never)]
    fn xfer(&self, b: u8) -> u8 {
        self.start(b);
        self.finish_frame()
    }

    /// A one-byte instruction in its own chip-select frame.
    #[inline(never)]
    fn command(&self, op: Op) {
        self.select();
        self.xfer(op as u8);
        self.deselect();
    }

    /// Opcode and 24-bit address; the chip stays selected.
    #[inline(never)]
    fn command_addr(&self, op: Op, addr: u32) {
        self.select();
        self.xfer(op as u8);
        self.xfer((addr >> 16) as u8);
        self.xfer((addr >> 8) as u8);
        self.xfer(addr as u8);
    }

    /// A register read in its own chip-select frame. A fresh frame per
    /// status poll: the virtual board skips BUSY time on each selection.
    #[inline(never)]
    fn read_reg(&self, op: Op) -> u8 {
        self.select();
        self.xfer(op as u8);
        let v = self.xfer(0);
        self.deselect();
        v
    }

    fn sr1(&self) -> u8 {
        self.read_reg(Op::ReadStatus1)
    }

    /// Start receiving `n` (1..=0xFFFF) bytes into `dst`, clocking out
    /// dummy bytes: by DMA (then [`rx_wait`](Self::rx_wait) waits for the
    /// end) or, without DMA, byte by byte before returning. Only one frame
    /// is ever in flight without DMA, so the receiver cannot overrun.
    #[inline(never)]
    fn rx_start(&self, dst: *mut u8, n: u32) {
        let dr = self.spi + spi::DR;
        if let Some((rx, tx)) = self.dma {
            // RM0090 28.3.9: RXDMAEN, then the streams, then TXDMAEN. The
            // TX stream repeats one byte (the config's first): MOSI is a
            // don't-care while the chip sends.
            wr(self.spi + spi::CR2, spi::CR2_RXDMAEN);
            rx.start(self.chsel | dma::CR_MINC, dr, dst as u32, n);
            tx.start(self.chsel | dma::CR_DIR_M2P, dr, self.cfg as *const Config as u32, n);
            wr(self.spi + spi::CR2, spi::CR2_RXDMAEN | spi::CR2_TXDMAEN);
            return;
        }
        let mut p = dst;
        self.start(0);
        for left in (0..n).rev() {
            let b = self.finish_frame();
            if left != 0 {
                self.start(0);
            }
            // SAFETY: the caller passes RAM for dst..dst+n.
            unsafe {
                p.write_volatile(b);
                p = p.add(1);
            }
        }
    }

    /// Wait for the DMA reception [`rx_start`](Self::rx_start) began.
    #[inline(never)]
    fn rx_wait(&self) {
        if let Some((rx, _)) = self.dma {
            rx.wait();
            wr(self.spi + spi::CR2, 0);
        }
        kick_watchdog(self.cfg);
    }

    /// Send `n` (0..=0xFFFF) bytes from `src`, discarding what comes back;
    /// on return the last frame is complete and RXNE/OVR are clear.
    #[inline(never)]
    fn tx(&self, src: *const u8, n: u32) {
        if n == 0 {
            return;
        }
        if let Some((_, tx)) = self.dma {
            tx.start(
                self.chsel | dma::CR_DIR_M2P | dma::CR_MINC,
                self.spi + spi::DR,
                src as u32,
                n,
            );
            wr(self.spi + spi::CR2, spi::CR2_TXDMAEN);
            tx.wait();
            wr(self.spi + spi::CR2, 0);
            // The stream is done when DR took the last byte: wait for the
            // frame, then read DR and SR (clears RXNE and OVR).
            self.wait_spi_idle();
            drain_spi(self.spi);
            return;
        }
        let mut p = src;
        for _ in 0..n {
            // SAFETY: the caller passes readable memory for src..src+n.
            let b = unsafe { p.read_volatile() };
            p = p.wrapping_add(1);
            self.xfer(b);
        }
    }

    /// `op` + address + one dummy byte, then `len` bytes into `dst`.
    #[inline(never)]
    fn read_into(&self, op: Op, addr: u32, dst: *mut u8, len: u32) -> Res<()> {
        if addr >= ADDR_LIMIT {
            return Err(fail(Status::BadArgument));
        }
        self.ready()?;
        self.command_addr(op, addr);
        self.xfer(0);
        let mut p = dst;
        let mut left = len;
        while left != 0 && !self.dead.get() {
            // Pieces of 1 KiB (1 ms at 8 MHz SPI): `rx_wait` reloads a
            // running watchdog after each, however long the read.
            let n = left.min(READ_PIECE);
            self.rx_start(p, n);
            self.rx_wait();
            p = p.wrapping_add(n as usize);
            left -= n;
        }
        self.deselect();
        Ok(())
    }

    /// CRC-32 of `len` bytes at `addr`, read with 0Bh in one chip-select
    /// frame: chunks of `CRC_CHUNK` arrive by DMA in the two halves of
    /// `scratch` while the CRC unit takes the previous one. With `out`
    /// null, the CRC of the whole range goes to `value`; otherwise each
    /// `block` bytes store [CRC, AND of the words] at `out` (the unit
    /// restarts per block; `block` is a multiple of `CRC_CHUNK`).
    #[inline(never)]
    fn crc_stream(&self, addr: u32, len: u32, block: u32, out: *mut u32, scratch: u32) -> Res<()> {
        if addr >= ADDR_LIMIT || len > ADDR_LIMIT - addr {
            return Err(fail(Status::BadArgument));
        }
        self.ready()?;
        self.command_addr(Op::FastRead, addr);
        self.xfer(0);
        wr(crc::CR, crc::CR_RESET);
        let mut out = out;
        let mut and = !0u32;
        let mut in_block = 0u32;
        let mut left = len;
        let (mut prev, mut prev_n) = (0u32, 0u32);
        let mut half = 0u32;
        loop {
            let n = left.min(CRC_CHUNK);
            let buf = scratch + half * CRC_CHUNK;
            if n != 0 && !self.dead.get() {
                self.rx_start(buf as *mut u8, n);
            }
            if prev_n != 0 {
                and = crc_words(prev as *const u32, prev_n / 4, and);
                in_block += prev_n;
                let tail = prev_n & 3;
                if in_block >= block || n == 0 {
                    let mut c = rd(crc::DR);
                    if tail != 0 {
                        // SAFETY: the tail's word lies in the chunk just CRC'd.
                        let w = unsafe { ((prev + (prev_n & !3)) as *const u32).read_volatile() };
                        c = crc32_update(c, &w.to_le_bytes()[..(tail & 3) as usize]);
                    }
                    if out.is_null() {
                        self.value.set(c);
                    } else {
                        // SAFETY: the host guarantees room for every block's
                        // pair at `out` (entry contract of stub_crc_blocks).
                        unsafe {
                            out.write_volatile(c);
                            out.add(1).write_volatile(and);
                            out = out.add(CRC_BLOCK_WORDS as usize);
                        }
                    }
                    wr(crc::CR, crc::CR_RESET);
                    and = !0;
                    in_block = 0;
                }
            }
            if n == 0 || self.dead.get() {
                break;
            }
            self.rx_wait();
            left -= n;
            prev = buf;
            prev_n = n;
            half ^= 1;
        }
        self.deselect();
        Ok(())
    }

    /// Wait until the chip is idle (an application may have left an
    /// operation running). SR1 = 0xFF is what a missing chip reads (MISO
    /// pulled up): `NoChip` rather than waiting for a BUSY that never ends.
    #[inline(never)]
    fn ready(&self) -> Res<()> {
        let mut dl = self.deadline(self.cfg.timeouts.chip_erase_ms);
        loop {
            let sr = self.sr1();
            if sr == 0xFF {
                return Err(fail(Status::NoChip));
            }
            if sr & SR1_BUSY == 0 {
                return Ok(());
            }
            if dl.expired() {
                return Err(fail(Status::BusyTimeout));
            }
        }
    }

    /// 06h, then check that WEL is set.
    #[inline(never)]
    fn write_enable(&self) -> Res<()> {
        self.command(Op::WriteEnable);
        if self.sr1() & SR1_WEL == 0 {
            return Err(fail(Status::WelNotSet));
        }
        Ok(())
    }

    /// After a program/erase/status write was sent (chip deselected):
    /// BUSY = 0 with WEL still 1 right away means the chip refused it
    /// (protected; WEL is then cleared with 04h so the application does not
    /// inherit it); otherwise wait for BUSY = 0 within `ms`, and WEL must
    /// have cleared with the completion.
    #[inline(never)]
    fn wait_done(&self, ms: u32) -> Res<()> {
        let mut dl = self.deadline(ms);
        let mut sr = self.sr1();
        if sr & (SR1_BUSY | SR1_WEL) == SR1_WEL {
            self.command(Op::WriteDisable);
            return Err(fail(Status::Protected));
        }
        while sr & SR1_BUSY != 0 {
            if dl.expired() {
                return Err(fail(Status::BusyTimeout));
            }
            sr = self.sr1();
        }
        if sr & SR1_WEL != 0 {
            return Err(fail(Status::Protected));
        }
        Ok(())
    }

    /// Bounded wait for SPI.BSY = 0.
    #[inline(never)]
    fn wait_spi_idle(&self) {
        let mut dl = self.deadline(self.cfg.timeouts.spi_frame_ms);
        while rd(self.spi + spi::SR) & spi::SR_BSY != 0 && !dl.expired() {}
    }

    /// Leave the bus as the ABI promises: CS high, BSY = 0, RXNE = 0.
    #[inline(never)]
    fn finish(&self) {
        self.deselect();
        self.wait_spi_idle();
        drain_spi(self.spi);
    }
}

/// One pin: chip select becomes a push-pull output driven high (ODR set
/// before MODER switches, so it never glitches low); the SPI pins become
/// alternate function `af` (AFR set before MODER). High speed, push-pull;
/// MISO gets a pull-up so a missing chip reads all ones.
#[inline(never)]
fn config_pin(p: &PinCfg, pull_up: bool) {
    let g = p.gpio_base;
    let n = p.pin & 15;
    let field = 3 << (2 * n);
    let mode = if p.af == PIN_GPIO_OUTPUT {
        wr(g + gpio::BSRR, 1 << n);
        0b01
    } else {
        let sh = (n & 7) * 4;
        modify(g + gpio::AFRL + (n >> 3) * 4, 0xF << sh, p.af << sh);
        0b10
    };
    modify(g + gpio::OTYPER, 1 << n, 0);
    modify(g + gpio::OSPEEDR, field, 0b10 << (2 * n));
    if pull_up {
        modify(g + gpio::PUPDR, field, 0b01 << (2 * n));
    }
    modify(g + gpio::MODER, field, mode << (2 * n));
}

/// The entry points, for [`dispatch`].
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Entry {
    Init,
    Read,
    ReadSfdp,
    Crc32,
    ReadStatus,
    WriteStatus,
    Erase,
    CrcBlocks,
    Clock,
    Stream,
}

/// Common frame of every entry point, shared so the stub stays small: check
/// the config and CYCCNT, set up the bus, run the operation, leave the bus
/// clean. Returns status | value << 32 (r0:r1 for the `u64` entries).
#[inline(never)]
fn dispatch(cfg: &Config, a: u32, b: u32, c: u32, entry: Entry) -> u64 {
    // Without a running CYCCNT no timeout could ever expire.
    if cfg.magic != CONFIG_MAGIC || rd(DWT_CTRL) & 1 == 0 {
        return Status::BadConfig as u64;
    }
    let bus = Bus::setup(cfg);
    let r = match entry {
        Entry::Init => init(&bus),
        // A null `dst` would mean CRC: the host never passes RAM at 0.
        Entry::Read => bus.read_into(Op::FastRead, a, b as *mut u8, c),
        Entry::ReadSfdp => bus.read_into(Op::ReadSfdp, a, b as *mut u8, c),
        Entry::Crc32 => {
            bus.value.set(!0);
            bus.crc_stream(a, b, b, core::ptr::null_mut(), c)
        }
        Entry::Clock => clock(&bus),
        Entry::ReadStatus => read_status(&bus),
        Entry::WriteStatus => write_status(&bus, a, b, c),
        Entry::Erase => erase(&bus, a, b, None),
        Entry::Stream => stream(&bus, a as *mut Slots, b, c as *mut [u8; lz::PAGE]),
        Entry::CrcBlocks => crc_blocks(&bus, a, b as *mut u32, c),
    };
    bus.finish();
    let value = bus.value.get();
    let status = match r {
        _ if bus.dead.get() => Status::SpiTimeout as u32,
        Ok(()) => Status::Ok as u32,
        Err(Fail(s)) => s as u32,
    };
    (value as u64) << 32 | status as u64
}

fn init(bus: &Bus) -> Res<()> {
    bus.command(Op::ReleasePowerDown);
    let t0 = cyccnt();
    // tRES1 = 3 µs; 1/256 ms (3.9 µs) is as good and needs no division.
    let tres1 = (bus.cfg.cycles_per_ms >> 8) + 1;
    while cyccnt().wrapping_sub(t0) < tres1 {}
    // With `NoChip`, r1 tells what MISO gave: all ones or all zeros.
    bus.value.set(0x00FF_FFFF);
    bus.ready()?;
    bus.select();
    bus.xfer(Op::JedecId as u8);
    let mut id = 0u32;
    for _ in 0..3 {
        id = id << 8 | bus.xfer(0) as u32;
    }
    bus.deselect();
    bus.value.set(id);
    if id == 0 || id == 0x00FF_FFFF {
        return Err(fail(Status::NoChip));
    }
    Ok(())
}

fn crc_blocks(bus: &Bus, addr: u32, dst: *mut u32, count: u32) -> Res<()> {
    if addr >= ADDR_LIMIT || count > (ADDR_LIMIT - addr) / CRC_BLOCK {
        return Err(fail(Status::BadArgument));
    }
    // The scratch chunks follow the results.
    let scratch = dst as u32 + count * 4 * CRC_BLOCK_WORDS;
    bus.crc_stream(addr, count * CRC_BLOCK, CRC_BLOCK, dst, scratch)
}

/// Run the core at `SESSION_CORE_HZ` when the application left it on the
/// HSI with the PLL off (the state after reset): wait states first, then
/// the PLL from the HSI, then the switch. Otherwise change nothing. r1 =
/// the new core clock, 0 when unchanged. The host saved RCC and FLASH_ACR
/// and puts them back in the reverse order.
fn clock(bus: &Bus) -> Res<()> {
    bus.value.set(0);
    let cfgr = rd(rcc::CFGR);
    if cfgr & rcc::CFGR_SWS != 0 || rd(rcc::CR) & rcc::CR_PLLON != 0 {
        return Ok(());
    }
    modify(rcc::FLASH_ACR, rcc::ACR_LATENCY, rcc::ACR_LATENCY_168);
    if rd(rcc::FLASH_ACR) & rcc::ACR_LATENCY != rcc::ACR_LATENCY_168 {
        return Err(fail(Status::ClockFailed));
    }
    wr(rcc::PLLCFGR, SESSION_PLLCFGR);
    modify(rcc::CR, rcc::CR_PLLON, rcc::CR_PLLON);
    // PLL lock takes about 100 µs (DS8626 table 35).
    let mut dl = bus.deadline(2);
    while rd(rcc::CR) & rcc::CR_PLLRDY == 0 {
        if dl.expired() {
            modify(rcc::CR, rcc::CR_PLLON, 0);
            return Err(fail(Status::ClockFailed));
        }
    }
    wr(rcc::CFGR, (cfgr & !rcc::CFGR_BUS_BITS) | SESSION_CFGR & rcc::CFGR_BUS_BITS);
    let mut dl = bus.deadline(2);
    while rd(rcc::CFGR) & rcc::CFGR_SWS != SESSION_CFGR & rcc::CFGR_SWS {
        if dl.expired() {
            return Err(fail(Status::ClockFailed));
        }
    }
    bus.value.set(SESSION_CORE_HZ);
    Ok(())
}

fn read_status(bus: &Bus) -> Res<()> {
    let s1 = bus.read_reg(Op::ReadStatus1) as u32;
    let s2 = bus.read_reg(Op::ReadStatus2) as u32;
    let s3 = bus.read_reg(Op::ReadStatus3) as u32;
    bus.value.set(s1 | s2 << 8 | s3 << 16);
    Ok(())
}

fn write_status(bus: &Bus, which: u32, value: u32, volatile: u32) -> Res<()> {
    let op = match which {
        1 => Op::WriteStatus1,
        2 => Op::WriteStatus2,
        3 => Op::WriteStatus3,
        _ => return Err(fail(Status::BadArgument)),
    };
    bus.ready()?;
    if volatile != 0 {
        bus.command(Op::VolatileSrWriteEnable);
    } else {
        bus.write_enable()?;
    }
    bus.select();
    bus.xfer(op as u8);
    bus.xfer(value as u8);
    bus.deselect();
    if volatile != 0 {
        bus.ready()?;
    } else {
        bus.wait_done(bus.cfg.timeouts.write_status_ms)?;
    }
    Ok(())
}

/// Where a stream op reports its chunk consumed: `Slots::rp` and the value
/// to store, or nothing (not the chunk's last record).
type Release = Option<(*mut u32, u32)>;

fn release(r: Release) {
    if let Some((at, k)) = r {
        // SAFETY: `at` is the `rp` field of the host's `Slots` (entry
        // contract of stub_stream); the host only reads it.
        unsafe { write_volatile(at, k) };
    }
}

/// Erase the sector/block of `kind` at `addr`; `rel` is released once the
/// erase has started (the chip needs no more data from RAM).
fn erase(bus: &Bus, addr: u32, kind: u32, rel: Release) -> Res<()> {
    let t = &bus.cfg.timeouts;
    let (op, ms, size_mask) = match EraseKind::from_u32(kind) {
        Some(EraseKind::Sector4K) => (Op::SectorErase, t.sector_erase_ms, 0xFFF),
        Some(EraseKind::Block32K) => (Op::BlockErase32, t.block32_erase_ms, 0x7FFF),
        Some(EraseKind::Block64K) => (Op::BlockErase64, t.block64_erase_ms, 0xFFFF),
        // Chip erase takes address 0 only, as a guard against a stray kind.
        Some(EraseKind::Chip) => (Op::ChipErase, t.chip_erase_ms, !0),
        None => return Err(fail(Status::BadArgument)),
    };
    if addr >= ADDR_LIMIT || addr & size_mask != 0 {
        return Err(fail(Status::BadArgument));
    }
    bus.ready()?;
    bus.write_enable()?;
    if matches!(op, Op::ChipErase) {
        bus.command(op);
    } else {
        bus.command_addr(op, addr);
        bus.deselect();
    }
    release(rel);
    bus.wait_done(ms)?;
    Ok(())
}

/// One page program of `n` bytes (within one page) from `src` at `addr`,
/// releasing `rel` before the busy wait; then the page is read back into
/// `check` and compared with `src` (`VerifyFailed`; a null `check` skips
/// this). `src` must stay unchanged until then: the slot of a released
/// chunk may not.
#[inline(never)]
fn page_program(bus: &Bus, addr: u32, src: *const u8, n: u32, rel: Release, check: *mut u8) -> Res<()> {
    bus.write_enable()?;
    bus.command_addr(Op::PageProgram, addr);
    bus.tx(src, n);
    bus.deselect();
    release(rel);
    bus.wait_done(bus.cfg.timeouts.page_program_ms)?;
    if check.is_null() {
        return Ok(());
    }
    // The chip is idle (BUSY = 0): read the page straight back with 0Bh.
    bus.command_addr(Op::FastRead, addr);
    bus.xfer(0);
    bus.rx_start(check, n);
    bus.rx_wait();
    bus.deselect();
    if same(src, check, n) {
        return Ok(());
    }
    // The record's op with this page's address.
    bus.value.set(bus.value.get() & !0xFF_FFFF | addr & 0xFF_FFFF);
    Err(fail(Status::VerifyFailed))
}

/// Whether `n` bytes at `a` and `b` are equal (word by word where both
/// are aligned).
#[inline(never)]
fn same(a: *const u8, b: *const u8, n: u32) -> bool {
    let mut i = 0usize;
    let n = n as usize;
    // SAFETY: both ranges are RAM of n bytes (the caller's page and slot).
    unsafe {
        if (a as usize | b as usize) & 3 == 0 {
            while i + 4 <= n {
                if (a.add(i) as *const u32).read_volatile() != (b.add(i) as *const u32).read_volatile() {
                    return false;
                }
                i += 4;
            }
        }
        while i < n {
            if a.add(i).read_volatile() != b.add(i).read_volatile() {
                return false;
            }
            i += 1;
        }
    }
    true
}

/// `n` bytes at `addr` from `src`, page by page (DMA straight from the
/// slot); `rel` goes with the last page, which is first copied into the
/// page buffer so that its read-back has the bytes to compare with.
fn program_raw(bus: &Bus, addr: u32, src: u32, n: u32, rel: Release, page: *mut [u8; lz::PAGE], check: *mut u8) -> Res<()> {
    if addr > ADDR_LIMIT || n > ADDR_LIMIT - addr {
        return Err(fail(Status::BadArgument));
    }
    let buf = page as *mut u8;
    let mut off = 0;
    while off < n {
        let at = addr + off;
        let m = (PAGE - (at & (PAGE - 1))).min(n - off);
        off += m;
        let mut from = (src + off - m) as *const u8;
        let r = if off == n { rel } else { None };
        if r.is_some() && !check.is_null() {
            // Byte by byte (volatile: no memcpy in the stub).
            for i in 0..m as usize {
                // SAFETY: the slot's m bytes and the page buffer (entry contract).
                unsafe { buf.add(i).write_volatile(from.add(i).read_volatile()) };
            }
            from = buf;
        }
        page_program(bus, at, from, m, r, check)?;
    }
    Ok(())
}

/// `n` bytes at `addr` from the `lz` blocks in `src..src+len`: each page
/// is decoded into `page` and checked to lie within the payload before
/// anything is programmed from it; `rel` goes once the last block is
/// decoded (the slot is then no longer needed).
#[allow(clippy::too_many_arguments)]
fn program_lz(
    bus: &Bus,
    addr: u32,
    src: u32,
    len: u32,
    n: u32,
    page: *mut [u8; lz::PAGE],
    rel: Release,
    check: *mut u8,
) -> Res<()> {
    if addr > ADDR_LIMIT || n > ADDR_LIMIT - addr {
        return Err(fail(Status::BadArgument));
    }
    // SAFETY: the payload lies inside the chunk (checked by `stream`), and
    // the page buffer is RAM of its own (entry contract).
    let (input, out) = unsafe {
        (
            core::slice::from_raw_parts(src as *const u8, len as usize),
            &mut *page,
        )
    };
    let (mut ip, mut off) = (0u32, 0u32);
    while off < n {
        let at = addr + off;
        let m = (PAGE - (at & (PAGE - 1))).min(n - off);
        let block = input.get(ip as usize..).unwrap_or(&[]);
        match lz::decode_block(block, out, m as usize) {
            Ok(used) if used as u32 <= len - ip => ip += used as u32,
            _ => return Err(fail(Status::BadArgument)),
        }
        off += m;
        // The last page ends the payload exactly, or nothing of it goes.
        if off == n && ip != len {
            return Err(fail(Status::BadArgument));
        }
        let r = if off == n { rel } else { None };
        page_program(bus, at, out.as_ptr(), m, r, check)?;
    }
    Ok(())
}

/// Wait for chunk `k`'s trailer at `trailer` (a pure read loop, a running
/// watchdog aside: an emulated board skips it), or the host's abort.
#[inline(never)]
fn wait_chunk(bus: &Bus, hdr: *mut Slots, trailer: u32, k: u32) -> Res<u32> {
    let want = stream::trailer_seq(k);
    loop {
        // SAFETY: `hdr` is the host's `Slots` (entry contract).
        if unsafe { read_volatile(addr_of!((*hdr).abort)) } != 0 {
            return Err(fail(Status::Aborted));
        }
        let t = rd(trailer);
        if t & !stream::LEN_MASK == want {
            return Ok(t);
        }
        kick_watchdog(bus.cfg);
    }
}

/// `Command::Stream`: run the records of chunks `0..count` as the host
/// writes them into the slots (`extflash_stub_abi::stream`).
fn stream(bus: &Bus, hdr: *mut Slots, count: u32, page: *mut [u8; lz::PAGE]) -> Res<()> {
    // SAFETY (header accesses): the host guarantees `hdr` is a `Slots` in
    // RAM (entry contract); the fields it writes are read volatile.
    let (n, start, end) = unsafe {
        (
            read_volatile(addr_of!((*hdr).count)),
            read_volatile(addr_of!((*hdr).start)),
            read_volatile(addr_of!((*hdr).end)),
        )
    };
    let slot = stream::slot_size(start, end, n);
    if n == 0 || n > stream::MAX_SLOTS || slot <= stream::HEADER + 4 || slot > stream::MAX_SLOT || page.is_null() {
        return Err(fail(Status::BadArgument));
    }
    bus.ready()?;
    // Each programmed page is read back here (on the stub's stack, which
    // the DMA reaches like the work area it lies in).
    let mut back = core::mem::MaybeUninit::<[u32; lz::PAGE / 4]>::uninit();
    let check = back.as_mut_ptr() as *mut u8;
    let rp = unsafe { addr_of_mut!((*hdr).rp) };
    let mut skipped = 0u32;
    for k in 0..count {
        let base = start + (k % n) * slot;
        let used = wait_chunk(bus, hdr, base + slot - 4, k)? & stream::LEN_MASK;
        if used > slot - 4 {
            return Err(fail(Status::BadArgument));
        }
        let mut off = 0;
        while off < used {
            if used - off < stream::HEADER {
                return Err(fail(Status::BadArgument));
            }
            let w = base + off;
            let (head, addr, arg) = (rd(w), rd(w + 4), rd(w + 8));
            let (op, len) = (head >> 24, head & stream::MAX_PAYLOAD);
            off += stream::HEADER;
            if len > used - off {
                return Err(fail(Status::BadArgument));
            }
            let payload = base + off;
            off += stream::padded(len);
            let rel = (off >= used).then_some((rp, k + 1));
            bus.value.set(stream::fail_value(op, addr));
            match op {
                stream::OP_ERASE if len == 0 => {
                    let kind = arg & !stream::ERASE_UNLESS_BLANK;
                    if arg != kind && blank(bus, addr, kind, check)? {
                        skipped += EraseKind::from_u32(kind).map_or(0, |k| k.size() / CRC_BLOCK);
                        release(rel);
                    } else {
                        erase(bus, addr, kind, rel)?
                    }
                }
                stream::OP_PROGRAM if len == arg => program_raw(bus, addr, payload, len, rel, page, check)?,
                stream::OP_VERIFY_BLANK if len == 0 && addr < ADDR_LIMIT && arg <= ADDR_LIMIT - addr => {
                    if !blank_range(bus, addr, arg, check)? {
                        return Err(fail(Status::VerifyFailed));
                    }
                    release(rel);
                }
                // Blocks for no pages, or pages from no blocks: malformed.
                stream::OP_PROGRAM_LZ if (arg == 0) == (len == 0) => {
                    program_lz(bus, addr, payload, len, arg, page, rel, check)?
                }
                _ => return Err(fail(Status::BadArgument)),
            }
        }
        // An empty chunk, or a record that released nothing (no bytes).
        release(Some((rp, k + 1)));
    }
    bus.value.set(skipped);
    Ok(())
}

/// Whether the sector/block of `kind` at `addr` reads all 0xFF. A kind or
/// address `erase` rejects reads as not blank, for `erase` to report.
#[inline(never)]
fn blank(bus: &Bus, addr: u32, kind: u32, buf: *mut u8) -> Res<bool> {
    let size = match EraseKind::from_u32(kind) {
        Some(EraseKind::Chip) | None => return Ok(false),
        Some(k) => k.size(),
    };
    if addr >= ADDR_LIMIT || addr & (size - 1) != 0 {
        return Ok(false);
    }
    blank_range(bus, addr, size, buf)
}

/// Whether the `len` bytes at `addr` (in the chip) read all 0xFF: 0Bh in
/// pieces of a page into `buf`, stopping at the first other byte.
#[inline(never)]
fn blank_range(bus: &Bus, addr: u32, len: u32, buf: *mut u8) -> Res<bool> {
    bus.ready()?;
    bus.command_addr(Op::FastRead, addr);
    bus.xfer(0);
    let mut left = len;
    let mut and = !0u32;
    while left != 0 && and == !0 && !bus.dead.get() {
        let n = left.min(PAGE);
        bus.rx_start(buf, n);
        bus.rx_wait();
        let words = (n / 4) as usize;
        for i in 0..words {
            // SAFETY: the piece the DMA just filled (4-byte aligned).
            and &= unsafe { (buf as *const u32).add(i).read_volatile() };
        }
        for i in words * 4..n as usize {
            // SAFETY: as above, its last bytes.
            and &= unsafe { buf.add(i).read_volatile() } as u32 | !0xFF;
        }
        left -= n;
    }
    bus.deselect();
    Ok(and == !0)
}

// ---------------------------------------------------------------------------
// Entry points. Calling convention for all (abi/src/lib.rs): r0 = &Config,
// sp = top of the stub stack (8-byte aligned), lr = stub_bkpt | 1; out r0 =
// Status; clobbered r0-r3, r12, lr, flags; r4-r11 preserved. Before any
// operation every entry checks `Config::magic` and DWT_CTRL.CYCCNTENA
// (`BadConfig`), configures clocks/pins/SPI, and waits for the chip to be
// idle (`NoChip` if SR1 reads 0xFF, `BusyTimeout` after `chip_erase_ms`),
// except `stub_read_status`, which reads the registers whatever the state.
// Any SPI frame that does not complete within `spi_frame_ms` gives
// `SpiTimeout`.
// ---------------------------------------------------------------------------

/// `stub_init`: wake the chip and identify it.
///
/// - in: r0 = &Config.
/// - out: r0 = Status (`Ok`, `BadConfig`, `NoChip`, `BusyTimeout`,
///   `SpiTimeout`); r1 = JEDEC ID `mfr << 16 | type << 8 | capacity`
///   (0x00EF4017 for a W25Q64JV-IQ), also with `NoChip` (then 0xFFFFFF or
///   0, what MISO gave).
/// - clobbered: r2, r3, r12, lr, flags.
///
/// Sends ABh (release from power-down), waits tRES1 (3 µs), waits for BUSY
/// to clear, reads 9Fh.
#[no_mangle]
pub extern "C" fn stub_init(cfg: &Config) -> u64 {
    dispatch(cfg, 0, 0, 0, Entry::Init)
}

/// `stub_read`: fast read (0Bh, 3-byte address, 1 dummy byte) of `len`
/// bytes at chip address `addr` into RAM at `dst`.
///
/// - in: r0 = &Config, r1 = addr (< 2^24), r2 = dst (not 0), r3 = len.
/// - out: r0 = Status (`Ok`, `BadConfig`, `BadArgument`, `NoChip`,
///   `BusyTimeout`, `SpiTimeout`); r1 undefined.
/// - clobbered: r1-r3, r12, lr, flags.
///
/// # Safety
/// `dst..dst+len` must be writable target RAM outside the stub and its stack.
#[no_mangle]
pub unsafe extern "C" fn stub_read(cfg: &Config, addr: u32, dst: *mut u8, len: u32) -> u32 {
    dispatch(cfg, addr, dst as u32, len, Entry::Read) as u32
}

/// `stub_read_sfdp`: SFDP read (5Ah, 3-byte address, 1 dummy byte) of `len`
/// bytes at SFDP address `addr` into RAM at `dst`.
///
/// - in: r0 = &Config, r1 = addr, r2 = dst, r3 = len.
/// - out: r0 = Status, as `stub_read`.
/// - clobbered: r1-r3, r12, lr, flags.
///
/// # Safety
/// As `stub_read`.
#[no_mangle]
pub unsafe extern "C" fn stub_read_sfdp(cfg: &Config, addr: u32, dst: *mut u8, len: u32) -> u32 {
    dispatch(cfg, addr, dst as u32, len, Entry::ReadSfdp) as u32
}

/// `stub_crc32`: GDB `qCRC` CRC-32 (abi `crc32_update` from `CRC32_INIT`)
/// of `len` chip bytes at `addr`, read with 0Bh in chunks of `CRC_CHUNK`
/// (by DMA when configured) that the CRC unit takes word by word.
///
/// - in: r0 = &Config, r1 = addr (< 2^24), r2 = len, r3 = scratch
///   (4-byte aligned RAM of `CRC_SCRATCH` bytes).
/// - out: r0 = Status, as `stub_read`; r1 = CRC (0 unless `Ok`).
/// - clobbered: r2, r3, r12, lr, flags.
///
/// # Safety
/// `scratch..scratch+CRC_SCRATCH` must be writable target RAM outside the
/// stub and its stack.
#[no_mangle]
pub unsafe extern "C" fn stub_crc32(cfg: &Config, addr: u32, len: u32, scratch: u32) -> u64 {
    dispatch(cfg, addr, len, scratch, Entry::Crc32)
}

/// `stub_read_status`: the three status registers (05h, 35h, 15h).
///
/// - in: r0 = &Config.
/// - out: r0 = Status (`Ok`, `BadConfig`, `SpiTimeout`);
///   r1 = SR1 | SR2 << 8 | SR3 << 16 (0xFFFFFF: no chip answers).
/// - clobbered: r2, r3, r12, lr, flags.
#[no_mangle]
pub extern "C" fn stub_read_status(cfg: &Config) -> u64 {
    dispatch(cfg, 0, 0, 0, Entry::ReadStatus)
}

/// `stub_write_status`: write status register `which` (1, 2, 3 → 01h, 31h,
/// 11h) with `value`.
///
/// - in: r0 = &Config, r1 = which, r2 = value (low byte), r3 = volatile
///   (non-zero: 50h first; the write changes only the volatile copy, needs
///   no WEL and is not checked for refusal. Zero: 06h + WEL check, then
///   refusal check and BUSY wait with `write_status_ms`).
/// - out: r0 = Status (`Ok`, `BadConfig`, `BadArgument`, `NoChip`,
///   `WelNotSet`, `Protected` (refused: SRL set), `BusyTimeout`,
///   `SpiTimeout`).
/// - clobbered: r1-r3, r12, lr, flags.
#[no_mangle]
pub extern "C" fn stub_write_status(cfg: &Config, which: u32, value: u32, volatile: u32) -> u32 {
    dispatch(cfg, which, value, volatile, Entry::WriteStatus) as u32
}

/// `stub_erase`: erase the sector/block at `addr`, or the whole chip.
///
/// - in: r0 = &Config, r1 = addr (aligned to the kind's size, < 2^24; 0 for
///   `Chip`), r2 = kind (`EraseKind`: 0 4 KiB 20h, 1 32 KiB 52h, 2 64 KiB
///   D8h, 3 chip C7h).
/// - out: r0 = Status (`Ok`, `BadConfig`, `BadArgument`, `NoChip`,
///   `WelNotSet`, `Protected`, `BusyTimeout` (after the kind's timeout),
///   `SpiTimeout`).
/// - clobbered: r1-r3, r12, lr, flags.
#[no_mangle]
pub extern "C" fn stub_erase(cfg: &Config, addr: u32, kind: u32) -> u32 {
    dispatch(cfg, addr, kind, 0, Entry::Erase) as u32
}

/// `stub_stream`: erase and program from the record stream the host
/// writes into slots as the stub consumes them (abi `stream`).
///
/// - in: r0 = &Config, r1 = &Slots (`count` 1..=255 slots of more than 16
///   bytes in `[start, end)`), r2 = chunks to run, r3 = page buffer (256
///   bytes of RAM the DMA reaches, outside the slots).
/// - out: r0 = Status (`Ok`, `BadConfig`, `BadArgument` (a malformed
///   record, or an `lz` block that does not decode to its page), `NoChip`,
///   `WelNotSet`, `Protected`, `BusyTimeout`, `VerifyFailed` (a page read
///   back differs from what was programmed), `Aborted` (`Slots::abort`
///   set), `SpiTimeout`); r1 = the 4 KiB sectors whose erase was skipped
///   as blank, or on failure the record's
///   `stream::fail_value` (op and chip address; for `VerifyFailed` the
///   page's address). `Slots::rp` tells the chunks consumed.
/// - clobbered: r1-r3, r12, lr, flags.
///
/// Per record: ERASE as `stub_erase`; PROGRAM page by page (06h + WEL
/// check, 02h + address + data by DMA from the slot, CS high, BUSY wait
/// with `page_program_ms`, a refusal is `Protected`, then the page read
/// back with 0Bh and compared with what was sent); PROGRAM_LZ the same
/// from each page's decoded block; VERIFY_BLANK reads its range with 0Bh
/// and fails with `VerifyFailed` (r1: its op and address) unless every
/// byte is 0xFF. `Ok` therefore means every page holds its bytes and every
/// range verified blank is. An ERASE with `ERASE_UNLESS_BLANK` is skipped
/// when the sector/block reads all 0xFF (r1 = the 4 KiB sectors so
/// skipped). A chunk is released (`rp`) before its last operation's busy
/// wait, so the host refills during it (a raw chunk's last page is copied
/// into the page buffer first, for its read-back).
///
/// # Safety
/// `slots` must point to a `Slots` in target RAM whose `[start, end)` is
/// RAM; only the host writes its `count`, `start`, `end` and `abort`, and
/// the slots' data.
#[no_mangle]
pub unsafe extern "C" fn stub_stream(cfg: &Config, slots: *mut Slots, count: u32, page: *mut u8) -> u64 {
    dispatch(cfg, slots as u32, count, page as u32, Entry::Stream)
}

/// `stub_crc_blocks`: per `CRC_BLOCK` bytes of `count` consecutive blocks
/// from chip address `addr`, the CRC-32 (as `stub_crc32`) and the AND of
/// the block's words, stored as pairs at `dst`. The host compares the CRCs
/// with its image to skip blocks that already hold it (a reload of
/// unchanged assets erases and programs nothing), and programs blocks whose
/// AND is 0xFFFFFFFF (erased) without erasing them.
///
/// - in: r0 = &Config, r1 = addr (< 2^24), r2 = dst (4-byte aligned, room
///   for `count` pairs, then `CRC_SCRATCH` bytes of scratch), r3 = count
///   (`addr + count * CRC_BLOCK <= 2^24`).
/// - out: r0 = Status, as `stub_read`.
/// - clobbered: r1-r3, r12, lr, flags.
///
/// # Safety
/// `dst..dst+8*count+CRC_SCRATCH` must be writable target RAM outside the
/// stub and its stack.
#[no_mangle]
pub unsafe extern "C" fn stub_crc_blocks(cfg: &Config, addr: u32, dst: *mut u32, count: u32) -> u32 {
    dispatch(cfg, addr, dst as u32, count, Entry::CrcBlocks) as u32
}

/// The resident loop behind `stub_serve`: waits for a command in the
/// [`Mailbox`] right after `cfg`, runs it as its entry point would, posts
/// the result, until [`Command::Exit`].
///
/// # Safety
/// `cfg` must be followed by a `Mailbox` in RAM that only the host writes
/// `seq`, `command` and `args` of; the addresses in the commands' arguments
/// follow each entry point's contract.
#[no_mangle]
pub unsafe extern "C" fn serve_main(cfg: &Config) {
    let mb = (cfg as *const Config).add(1) as *mut Mailbox;
    loop {
        let seq = loop {
            let seq = read_volatile(addr_of!((*mb).seq));
            if seq != read_volatile(addr_of!((*mb).done)) {
                break seq;
            }
            kick_watchdog(cfg);
        };
        let command = read_volatile(addr_of!((*mb).command));
        let [a, b, c] = read_volatile(addr_of!((*mb).args));
        let entry = match Command::from_u32(command) {
            Some(Command::Init) => Some(Entry::Init),
            Some(Command::Read) => Some(Entry::Read),
            Some(Command::ReadSfdp) => Some(Entry::ReadSfdp),
            Some(Command::Crc32) => Some(Entry::Crc32),
            Some(Command::ReadStatus) => Some(Entry::ReadStatus),
            Some(Command::WriteStatus) => Some(Entry::WriteStatus),
            Some(Command::Erase) => Some(Entry::Erase),
            Some(Command::CrcBlocks) => Some(Entry::CrcBlocks),
            Some(Command::Clock) => Some(Entry::Clock),
            Some(Command::Stream) => Some(Entry::Stream),
            Some(Command::Exit) => None,
            None => {
                write_volatile(addr_of_mut!((*mb).status), Status::BadArgument as u32);
                write_volatile(addr_of_mut!((*mb).done), seq);
                continue;
            }
        };
        let Some(entry) = entry else {
            write_volatile(addr_of_mut!((*mb).status), Status::Ok as u32);
            write_volatile(addr_of_mut!((*mb).done), seq);
            return;
        };
        let r = dispatch(cfg, a, b, c, entry);
        write_volatile(addr_of_mut!((*mb).status), r as u32);
        write_volatile(addr_of_mut!((*mb).value), (r >> 32) as u32);
        write_volatile(addr_of_mut!((*mb).done), seq);
    }
}

// `stub_serve`: the resident command loop (`Mailbox` protocol).
//
// - in: pc = stub_serve, sp = &Config (8-byte aligned; the Mailbox follows
//   the Config, the stub stack grows down below it), xPSR.T = 1, CONTROL = 0
//   (MSP), PRIMASK = 1. r0-r12 and lr are NOT set by the host: they still
//   hold the application's values, which the stub pushes first and pops
//   again on `Exit`, so the host need not save or restore them.
// - out (after `Exit`): r0-r12, lr as on entry; the core spins at
//   `stub_park` (a branch to itself, which changes no state) until the host
//   halts it.
// - clobbered: sp (MSP), pc, xPSR flags, the stub stack.
global_asm!(
    ".section .text.stub_serve,\"ax\",%progbits",
    ".global stub_serve",
    ".type stub_serve,%function",
    ".thumb_func",
    "stub_serve:",
    "push {{r0-r12, lr}}",
    "add r0, sp, #56",
    "bl serve_main",
    "pop {{r0-r12, lr}}",
    ".global stub_park",
    ".type stub_park,%function",
    ".thumb_func",
    "stub_park:",
    "b stub_park",
    ".size stub_serve, . - stub_serve",
);

// `stub_bkpt`: `bkpt #0`, where every entry point returns to (the host sets
// lr = stub_bkpt | 1). Not callable; in: nothing; out: the core halts.
global_asm!(
    ".section .text.stub_bkpt,\"ax\",%progbits",
    ".global stub_bkpt",
    ".type stub_bkpt,%function",
    ".thumb_func",
    "stub_bkpt:",
    "bkpt #0",
    "b stub_bkpt",
    ".size stub_bkpt, . - stub_bkpt",
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Unreachable by construction (no indexing that can fail, no unwrap);
    // if it ever is, stop at a breakpoint rather than run on.
    loop {
        // SAFETY: bkpt only halts the core under the debugger.
        unsafe { core::arch::asm!("bkpt #1") };
    }
}

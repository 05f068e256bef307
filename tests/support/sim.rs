//! A virtual board driven through probe-rs and the simulated probe, as a
//! debugger drives silicon: attach, FlashLoader, halt waits, SPI1 by
//! register writes, deterministic test data. Board internals are only read
//! back.
//!
//! Self-contained but for the sibling `elf` module (`super::elf`), so
//! `examples/virtual_time.rs` includes both files.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use extflash_gdb::sim::{SimBoard, SimConfig};
use probe_rs::flashing::DownloadOptions;
use probe_rs::{CoreStatus, HaltReason, MemoryInterface, Permissions};

use super::elf::load_segments;

/// The probe-rs target name of the board's MCU.
pub const CHIP: &str = "STM32F407VETx";

/// How long a test waits for the core to halt before it fails: generous,
/// as the wait is counted in polls of the board, not host time.
pub const HALT_TIMEOUT: Duration = Duration::from_secs(300);

/// A virtual board enforcing RM0090's rules (`SimConfig::strict`): code
/// that breaks one locks the core up, a debugger access that breaks one
/// fails.
pub fn board(config: SimConfig) -> SimBoard {
    SimBoard::new(SimConfig {
        strict: true,
        ..config
    })
    .expect("virtual board")
}

pub fn attach(board: &SimBoard) -> probe_rs::Session {
    board
        .probe()
        .attach(CHIP, Permissions::default())
        .expect("probe-rs attaches to the virtual board")
}

/// Program every loadable segment of `elf` with probe-rs's FlashLoader and
/// its built-in STM32F4 algorithm, verifying afterwards.
pub fn flash_elf(session: &mut probe_rs::Session, elf: &[u8]) {
    let mut loader = session.target().flash_loader();
    for (addr, data) in load_segments(elf) {
        loader.add_data(addr as u64, &data).unwrap();
    }
    let mut opts = DownloadOptions::default();
    opts.verify = true;
    loader
        .commit(session, opts)
        .expect("FlashLoader programs the ELF");
}

/// Wait for the core to halt; why it halted.
///
/// Each DHCSR read is an SWD transaction, which advances the virtual board
/// by the link's time for it: polling without pauses waits in board time,
/// however loaded the host (probe-rs's own wait sleeps 1 ms of host time
/// per poll and gives up after host time). [`HALT_TIMEOUT`] only bounds a
/// core that never halts.
pub fn wait_halted(core: &mut probe_rs::Core<'_>) -> HaltReason {
    let deadline = Instant::now() + HALT_TIMEOUT;
    loop {
        match core.status().expect("DHCSR readable") {
            CoreStatus::Halted(r) => return r,
            CoreStatus::LockedUp => panic!("the core locked up instead of halting"),
            other => assert!(
                Instant::now() < deadline,
                "the core did not halt within {HALT_TIMEOUT:?}: {other:?}"
            ),
        }
    }
}

/// Registers of the STM32F407 the debugger pokes to run SPI1 itself.
pub mod reg {
    pub const RCC_AHB1ENR: u64 = 0x4002_3830;
    pub const RCC_APB2ENR: u64 = 0x4002_3844;
    pub const GPIOBEN: u32 = 1 << 1;
    pub const SPI1EN: u32 = 1 << 12;
    pub const GPIOB_MODER: u64 = 0x4002_0400;
    pub const GPIOB_BSRR: u64 = 0x4002_0418;
    pub const GPIOB_AFRL: u64 = 0x4002_0420;
    pub const SPI1_CR1: u64 = 0x4001_3000;
    pub const SPI1_SR: u64 = 0x4001_3008;
    pub const SPI1_DR: u64 = 0x4001_300C;
    pub const SR_RXNE: u32 = 1 << 0;
    /// Master, fPCLK/4, mode 0, 8 bit, SSM = SSI = 1, SPE: what the firmware uses.
    pub const CR1_MASTER_DIV4: u32 = 1 << 2 | 1 << 3 | 1 << 6 | 1 << 8 | 1 << 9;
}

/// Which of the wired SPI pins the debugger routes to SPI1 (AF5).
#[derive(Debug, Clone, Copy)]
pub struct Pins {
    pub sck: bool,
    pub miso: bool,
    pub mosi: bool,
}

impl Pins {
    pub const ALL: Pins = Pins {
        sck: true,
        miso: true,
        mosi: true,
    };
}

/// Set up GPIOB and SPI1 as the firmware does (clocks, PB0 output high,
/// PB3/4/5 AF5, master /4), except that pins not in `pins` are left as
/// inputs and the SPI1 clock is only enabled when `spi_clock`.
pub fn setup_spi1(core: &mut probe_rs::Core<'_>, pins: Pins, spi_clock: bool) {
    use reg::*;
    let en = core.read_word_32(RCC_AHB1ENR).unwrap();
    core.write_word_32(RCC_AHB1ENR, en | GPIOBEN).unwrap();
    let en = core.read_word_32(RCC_APB2ENR).unwrap();
    let en = if spi_clock { en | SPI1EN } else { en & !SPI1EN };
    core.write_word_32(RCC_APB2ENR, en).unwrap();
    core.write_word_32(GPIOB_BSRR, 1).unwrap(); // CS high before it drives
    let mut moder = core.read_word_32(GPIOB_MODER).unwrap();
    moder &= !(0b11 | 0b11 << 6 | 0b11 << 8 | 0b11 << 10);
    moder |= 0b01; // PB0 output
    for (pin, on) in [(3, pins.sck), (4, pins.miso), (5, pins.mosi)] {
        if on {
            moder |= 0b10 << (2 * pin);
        }
    }
    core.write_word_32(GPIOB_MODER, moder).unwrap();
    let afrl = core.read_word_32(GPIOB_AFRL).unwrap() & !0x00FF_F000;
    core.write_word_32(GPIOB_AFRL, afrl | 0x0055_5000).unwrap();
    core.write_word_32(SPI1_CR1, CR1_MASTER_DIV4).unwrap();
}

/// One byte through SPI1 DR, waiting (boundedly) for RXNE. Returns what DR
/// reads, and whether RXNE came up.
pub fn spi_xfer(core: &mut probe_rs::Core<'_>, out: u8) -> (u8, bool) {
    use reg::*;
    core.write_word_32(SPI1_DR, out as u32).unwrap();
    let mut rxne = false;
    for _ in 0..16 {
        if core.read_word_32(SPI1_SR).unwrap() & SR_RXNE != 0 {
            rxne = true;
            break;
        }
    }
    (core.read_word_32(SPI1_DR).unwrap() as u8, rxne)
}

/// A CS-framed transaction: `tx` out, every byte in.
pub fn spi_transaction(core: &mut probe_rs::Core<'_>, tx: &[u8]) -> Vec<u8> {
    core.write_word_32(reg::GPIOB_BSRR, 1 << 16).unwrap(); // CS low
    let rx = tx.iter().map(|&b| spi_xfer(core, b).0).collect();
    core.write_word_32(reg::GPIOB_BSRR, 1).unwrap(); // CS high
    rx
}

/// 0x9F through debugger writes: the three ID bytes.
pub fn read_jedec_id(core: &mut probe_rs::Core<'_>) -> [u8; 3] {
    let rx = spi_transaction(core, &[0x9F, 0, 0, 0]);
    [rx[1], rx[2], rx[3]]
}

/// Deterministic test bytes (xorshift32).
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as u8
        })
        .collect()
}

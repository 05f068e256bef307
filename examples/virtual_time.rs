//! Host time against virtual time on the virtual board, with the activity
//! counters and each job's physical lower bounds.
//!
//! `cargo run --example virtual_time` prints the table; the test
//! `tests/sim/virtual_time.rs` runs the same jobs and checks the relations
//! (virtual time is never below a physical limit), never host speed.
//!
//! Jobs:
//! - program 64 KiB of internal flash with probe-rs's FlashLoader;
//! - read the W25Q64JV's JEDEC ID by debugger writes to SPI1 (core halted);
//! - the test firmware from reset to `assets_checked` (JEDEC ID, 16-byte
//!   read, CRC of 4 KiB, all by the firmware over SPI1).

// The test binaries' helpers for the virtual board and the firmware ELF
// (`sim.rs` uses its sibling `elf` module).
#[path = "../tests/support/elf.rs"]
mod elf;
#[path = "../tests/support/sim.rs"]
mod sim;

use std::fmt;
use std::time::{Duration, Instant};

use elf::{firmware_elf, symbol};
use extflash_gdb::sim::clock::{Counters, CPU_HZ, PS_PER_S, SWD_BITS_PER_TRANSACTION};
use extflash_gdb::sim::{LinkProfile, SimBoard, SimConfig};
use probe_rs::flashing::DownloadOptions;
use probe_rs::HaltReason;
use sim::*;

/// STM32F407 datasheet, typical sector erase times (16, 64, 128 KiB) at
/// x32 parallelism (the fastest without VPP) and at x8.
const ERASE_X32_PS: [u64; 3] = [250 * MS, 550 * MS, 1000 * MS];
const ERASE_X8_PS: [u64; 3] = [400 * MS, 1200 * MS, 2000 * MS];
/// Word (x32) program time, typical.
const WORD_PROGRAM_PS: u64 = 16 * PS_PER_S / 1_000_000;
const MS: u64 = PS_PER_S / 1000;
/// SPI1 at fPCLK2/4 = 84 MHz / 4, what the firmware and the pokes use.
const SPI_HZ: u64 = 21_000_000;

/// One lower bound on a job's duration that no implementation can beat.
#[derive(Debug, Clone)]
pub struct Limit {
    pub what: &'static str,
    pub ps: u64,
}

/// What one job cost.
#[derive(Debug, Clone)]
pub struct Figures {
    pub job: String,
    pub host: Duration,
    pub virtual_ps: u64,
    pub counters: Counters,
    pub swd_hz: u64,
    pub limits: Vec<Limit>,
}

impl Figures {
    /// Host seconds spent per second of virtual time.
    pub fn host_per_virtual(&self) -> f64 {
        self.host.as_secs_f64() / (self.virtual_ps as f64 / PS_PER_S as f64).max(1e-12)
    }

    /// The largest physical limit: the job cannot be faster than this.
    pub fn physical_limit(&self) -> &Limit {
        self.limits.iter().max_by_key(|l| l.ps).expect("limits")
    }
}

fn ms(ps: u64) -> f64 {
    ps as f64 / 1e9
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        writeln!(f, "{}", self.job)?;
        writeln!(
            f,
            "  host {:>10.3} ms   virtual {:>10.3} ms   (host s per virtual s: {:.3})",
            self.host.as_secs_f64() * 1e3,
            ms(self.virtual_ps),
            self.host_per_virtual()
        )?;
        writeln!(
            f,
            "  SWD {} transactions, {} bits, {} AP bytes @ {} kHz | {} round trips ({:.3} ms) | {} instructions (+{} fast-forwarded) | {} SPI bytes | skipped {:.3} ms",
            c.swd_transactions,
            c.swd_bits,
            c.ap_bytes,
            self.swd_hz / 1000,
            c.round_trips,
            ms(c.link_wait_ps),
            c.instructions,
            c.ff_instructions,
            c.spi_bytes,
            ms(c.skipped_ps)
        )?;
        for l in &self.limits {
            writeln!(
                f,
                "  limit {:<56} {:>10.3} ms   virtual/limit {:>8.2}",
                l.what,
                ms(l.ps),
                self.virtual_ps as f64 / l.ps.max(1) as f64
            )?;
        }
        Ok(())
    }
}

fn delta(a: Counters, b: Counters) -> Counters {
    b.since(&a)
}

/// Measure `job` on `board`: host time, virtual time and counter deltas.
fn measure<T>(board: &SimBoard, job: impl FnOnce() -> T) -> (T, Duration, u64, Counters) {
    let (t0, c0) = {
        let b = board.lock();
        (b.now(), b.counters())
    };
    let h0 = Instant::now();
    let out = job();
    let host = h0.elapsed();
    let b = board.lock();
    (out, host, b.now() - t0, delta(c0, b.counters()))
}

fn swd_ps(transactions: u64, swd_hz: u64) -> u64 {
    (u128::from(transactions) * u128::from(SWD_BITS_PER_TRANSACTION) * u128::from(PS_PER_S)
        / u128::from(swd_hz)) as u64
}

/// Datasheet erase time of the sectors `[0, len)` covers (with `erase`,
/// the 16/64/128 KiB sector times) plus one word program per 4 bytes.
pub fn flash_limit_ps(len: usize, erase: [u64; 3]) -> u64 {
    let sectors = [0, 0, 0, 0, 1, 2, 2, 2].map(|i| ([16 << 10, 64 << 10, 128 << 10][i], erase[i]));
    let mut total = 0;
    let mut start = 0;
    for (size, ps) in sectors {
        if start < len {
            total += ps;
        }
        start += size;
    }
    total + len.div_ceil(4) as u64 * WORD_PROGRAM_PS
}

/// The physical limit for any flasher: x32 erase and program.
pub fn flash_limit_x32_ps(len: usize) -> u64 {
    flash_limit_ps(len, ERASE_X32_PS)
}

/// The limit for probe-rs's STM32F4 algorithm, which erases with PSIZE x8
/// (its erase writes CR = SER | SNB, so PSIZE = 0) and programs words (x32).
pub fn flash_limit_probe_rs_algorithm_ps(len: usize) -> u64 {
    flash_limit_ps(len, ERASE_X8_PS)
}

/// Program `len` bytes at 0x08000000 with FlashLoader (erase + program,
/// `verify` optional). Returns the board for checks.
pub fn program_internal_flash(len: usize, verify: bool) -> (Figures, SimBoard, Vec<u8>) {
    program_internal_flash_over(LinkProfile::Ideal, len, verify)
}

/// [`program_internal_flash`] behind a given probe link.
pub fn program_internal_flash_over(
    link: LinkProfile,
    len: usize,
    verify: bool,
) -> (Figures, SimBoard, Vec<u8>) {
    let board = board(SimConfig {
        link,
        ..SimConfig::default()
    });
    let mut session = attach(&board);
    let data = pattern(0x5EED_F1A5, len);
    let swd_hz = board.lock().mcu().clock.swd_hz();
    let ((), host, virtual_ps, counters) = measure(&board, || {
        let mut loader = session.target().flash_loader();
        loader.add_data(0x0800_0000, &data).unwrap();
        let mut opts = DownloadOptions::default();
        opts.verify = verify;
        loader.commit(&mut session, opts).expect("FlashLoader");
    });
    let figures = Figures {
        job: format!(
            "program {} KiB of internal flash with FlashLoader{} over {link}",
            len >> 10,
            if verify { " and verify" } else { "" }
        ),
        host,
        virtual_ps,
        counters,
        swd_hz,
        limits: vec![
            Limit {
                what: "SWD: image once over the wire, 4 B/transaction",
                ps: swd_ps(len.div_ceil(4) as u64, swd_hz),
            },
            Limit {
                what: "SWD: the transactions probe-rs made",
                ps: swd_ps(counters.swd_transactions, swd_hz),
            },
            Limit {
                what: "flash: datasheet x32 sector erase + word program",
                ps: flash_limit_x32_ps(len),
            },
            Limit {
                what: "flash: as probe-rs drives it (x8 erase, x32 program)",
                ps: flash_limit_probe_rs_algorithm_ps(len),
            },
        ],
    };
    drop(session);
    (figures, board, data)
}

/// 9Fh by debugger writes to SPI1 with the core halted (setup not counted).
pub fn read_jedec_id_by_register_pokes() -> (Figures, [u8; 3]) {
    let board = board(SimConfig::default());
    let mut session = attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_millis(100)).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    let swd_hz = board.lock().mcu().clock.swd_hz();
    let (id, host, virtual_ps, counters) = measure(&board, || read_jedec_id(&mut core));
    let figures = Figures {
        job: "read the JEDEC ID by debugger writes to SPI1 (core halted)".into(),
        host,
        virtual_ps,
        counters,
        swd_hz,
        limits: vec![
            Limit {
                what: "SPI: 4 bytes at 21 MHz",
                ps: 4 * 8 * PS_PER_S / SPI_HZ,
            },
            Limit {
                // CS low, 4 x (DR write, DR read), CS high.
                what: "SWD: 10 register accesses",
                ps: swd_ps(10, swd_hz),
            },
            Limit {
                what: "SWD: the transactions probe-rs made",
                ps: swd_ps(counters.swd_transactions, swd_hz),
            },
        ],
    };
    (figures, id)
}

/// The firmware from reset to `assets_checked` (flashing not counted).
pub fn firmware_boot_reads_jedec_id() -> (Figures, [u8; 3]) {
    let elf = firmware_elf();
    let board = board(SimConfig::default());
    let mut session = attach(&board);
    flash_elf(&mut session, &elf);
    let mut core = session.core(0).unwrap();
    core.reset_and_halt(Duration::from_millis(500)).unwrap();
    core.set_hw_breakpoint(symbol(&elf, "assets_checked") as u64)
        .unwrap();
    let swd_hz = board.lock().mcu().clock.swd_hz();
    let (reason, host, virtual_ps, counters) = measure(&board, || {
        core.run().unwrap();
        wait_halted(&mut core)
    });
    assert!(matches!(reason, HaltReason::Breakpoint(_)), "{reason:?}");
    let mut id = [0; 3];
    probe_rs::MemoryInterface::read_8(&mut core, symbol(&elf, "JEDEC_ID") as u64, &mut id).unwrap();
    let figures = Figures {
        job: "firmware: reset to assets_checked (JEDEC ID, 16-byte read, CRC of 4 KiB)".into(),
        host,
        virtual_ps,
        counters,
        swd_hz,
        limits: vec![
            Limit {
                what: "CPU: instructions at 168 MHz, 1 per cycle",
                ps: counters.instructions * PS_PER_S / CPU_HZ,
            },
            Limit {
                what: "SPI: bytes on the bus at 21 MHz",
                ps: counters.spi_bytes * 8 * PS_PER_S / SPI_HZ,
            },
        ],
    };
    (figures, id)
}

/// `str r2, [r3]; 1: ldr r1, [r0]; lsls r1, r1, #26; bpl 1b; bkpt`: start
/// SPI1's DMA requests (r3 = SPI1_CR2, r2 = RXDMAEN | TXDMAEN), then poll
/// DMA2_LISR (r0) until stream 0's TCIF (bit 5) is set.
const DMA_WAIT: [u16; 6] = [0x601A, 0x6801, 0x0689, 0xD5FC, 0xBE00, 0xBF00];

/// What a DMA read job left behind: virtual time, PC, r0-r3, the counters
/// and the bytes read.
pub type DmaEnd = (u64, u32, [u32; 4], Counters, Vec<u8>);

/// A `03h` read of `len` bytes at 0 through SPI1, moved by DMA2 streams 3
/// (TX, from a buffer of the command and zeros) and 0 (RX), while the core
/// polls for the end: the host cost of a stub that waits for DMA.
pub fn dma_read_while_the_core_polls(len: usize, fast_forward: bool) -> (Figures, DmaEnd) {
    use probe_rs::{MemoryInterface, RegisterId};
    const DMA2: u64 = 0x4002_6400;
    const S0: u64 = DMA2 + 0x10;
    const S3: u64 = DMA2 + 0x10 + 3 * 0x18;
    const SPI1_CR2: u32 = 0x4001_3004;
    const CODE: u64 = 0x2000_0100;
    const TX: u64 = 0x2000_1000;
    let rx = TX + len as u64 + 4;
    const CH3: u32 = 3 << 25;
    const MINC: u32 = 1 << 10;
    const M2P: u32 = 1 << 6;
    let board = board(SimConfig {
        fast_forward,
        ..Default::default()
    });
    let mut session = attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_secs(1)).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    let en = core.read_word_32(reg::RCC_AHB1ENR).unwrap();
    core.write_word_32(reg::RCC_AHB1ENR, en | 1 << 22).unwrap();
    let mut tx = vec![0u8; len + 4];
    tx[0] = 0x03;
    core.write_8(TX, &tx).unwrap();
    for (s, mar, cr) in [(S0, rx, CH3 | MINC), (S3, TX, CH3 | MINC | M2P)] {
        core.write_word_32(s + 4, len as u32 + 4).unwrap();
        core.write_word_32(s + 8, reg::SPI1_DR as u32).unwrap();
        core.write_word_32(s + 0xC, mar as u32).unwrap();
        core.write_word_32(s, cr | 1).unwrap();
    }
    core.write_word_32(reg::GPIOB_BSRR, 1 << 16).unwrap(); // CS low
    let code: Vec<u8> = DMA_WAIT.iter().flat_map(|h| h.to_le_bytes()).collect();
    core.write_8(CODE, &code).unwrap();
    core.write_core_reg(RegisterId(0), DMA2 as u32).unwrap();
    core.write_core_reg(RegisterId(2), 3u32).unwrap();
    core.write_core_reg(RegisterId(3), SPI1_CR2).unwrap();
    core.write_core_reg(core.program_counter().id(), CODE as u32)
        .unwrap();
    core.write_core_reg(core.registers().psr().unwrap().id(), 0x0100_0000u32)
        .unwrap();
    let swd_hz = board.lock().mcu().clock.swd_hz();
    // Virtual time passes with probe traffic: 32-bit reads, as a host
    // polling a mailbox makes them (probe-rs's halt wait would sleep 1 ms
    // of host time per poll, which is not the board's cost).
    let ((), host, virtual_ps, counters) = measure(&board, || {
        core.run().unwrap();
        for _ in 0..1_000_000 {
            if board.lock().is_halted() {
                break;
            }
            core.read_word_32(0x2000_0000).unwrap();
        }
    });
    let reason = core.status().unwrap();
    assert!(
        matches!(
            reason,
            probe_rs::CoreStatus::Halted(HaltReason::Breakpoint(_))
        ),
        "{reason:?}"
    );
    core.write_word_32(reg::GPIOB_BSRR, 1).unwrap(); // CS high
    let pc: u32 = core.read_core_reg(core.program_counter().id()).unwrap();
    let regs = [0u16, 1, 2, 3].map(|r| core.read_core_reg::<u32>(RegisterId(r)).unwrap());
    let mut data = vec![0u8; len];
    core.read_8(rx + 4, &mut data).unwrap();
    let end = (board.lock().now(), pc, regs, counters, data);
    let figures = Figures {
        job: format!(
            "DMA2 read of {} KiB through SPI1 (HSI, SPI at 4 MHz), core polling TCIF",
            len >> 10
        ),
        host,
        virtual_ps,
        counters,
        swd_hz,
        limits: vec![Limit {
            what: "SPI: bytes on the bus at 4 MHz",
            ps: counters.spi_bytes * 8 * PS_PER_S / 4_000_000,
        }],
    };
    (figures, end)
}

/// A 14 KiB 32-bit block write into RAM by one probe-rs call (the core
/// halted, or spinning in a wait loop): the host cost of filling a stub's
/// buffer.
pub fn block_write_14_kib(spinning: bool) -> Figures {
    use probe_rs::MemoryInterface;
    const BUF: u64 = 0x2000_4000;
    let board = board(SimConfig::default());
    let mut session = attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_secs(1)).unwrap();
    if spinning {
        // `1: ldr r1, [r0]; cmp r1, #0; beq 1b; bkpt` on a zero flag.
        let code: Vec<u8> = [0x6801u16, 0x2900, 0xD0FC, 0xBE00]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        core.write_8(0x2000_0100, &code).unwrap();
        core.write_word_32(0x2000_0200, 0).unwrap();
        core.write_core_reg(probe_rs::RegisterId(0), 0x2000_0200u32)
            .unwrap();
        core.write_core_reg(core.program_counter().id(), 0x2000_0100u32)
            .unwrap();
        core.write_core_reg(core.registers().psr().unwrap().id(), 0x0100_0000u32)
            .unwrap();
        core.run().unwrap();
    }
    let words: Vec<u32> = (0..14 * 256u32)
        .map(|i| i.wrapping_mul(0x9E37_79B9))
        .collect();
    let swd_hz = board.lock().mcu().clock.swd_hz();
    let ((), host, virtual_ps, counters) = measure(&board, || {
        core.write_32(BUF, &words).unwrap();
    });
    let mut back = vec![0u32; words.len()];
    core.read_32(BUF, &mut back).unwrap();
    assert!(back == words, "the block reached RAM");
    Figures {
        job: format!(
            "14 KiB 32-bit block write into RAM, ideal link, core {}",
            if spinning { "spinning" } else { "halted" }
        ),
        host,
        virtual_ps,
        counters,
        swd_hz,
        limits: vec![Limit {
            what: "SWD: wire time of the transactions",
            ps: swd_ps(counters.swd_transactions, swd_hz),
        }],
    }
}

#[allow(dead_code)]
fn main() {
    // `-- host-paths`: only the jobs that time the host's per-byte paths.
    let host_paths = std::env::args().any(|a| a == "host-paths");
    if std::env::args().any(|a| a == "dma-only") {
        for _ in 0..10 {
            let (f, _) = dma_read_while_the_core_polls(32 << 10, true);
            println!("{f}");
        }
        return;
    }
    if host_paths {
        let (f, _) = dma_read_while_the_core_polls(32 << 10, true);
        println!("{f}");
        for spinning in [false, true] {
            println!("{}", block_write_14_kib(spinning));
        }
        return;
    }
    let (f, _, _) = program_internal_flash(64 << 10, false);
    println!("{f}");
    let (f, id) = read_jedec_id_by_register_pokes();
    println!("{f}  ID {id:02X?}\n");
    let (f, id) = firmware_boot_reads_jedec_id();
    println!("{f}  ID {id:02X?}\n");
    let (f, _, _) = program_internal_flash(512 << 10, true);
    println!("{f}");
    let (f, _) = dma_read_while_the_core_polls(32 << 10, true);
    println!("{f}");
    for spinning in [false, true] {
        println!("{}", block_write_14_kib(spinning));
    }
    // probe-rs issue #209 measured 13.1 KB/s programming (44 KB/s erase)
    // with an ST-Link/V2 at 1800 kHz on an STM32F429.
    for link in [LinkProfile::StlinkV2, LinkProfile::CmsisDapV2] {
        let (f, _, _) = program_internal_flash_over(link, 128 << 10, false);
        println!("{f}");
        println!(
            "  {:.1} KiB/s of virtual time\n",
            128.0 / (f.virtual_ps as f64 / PS_PER_S as f64)
        );
    }
}

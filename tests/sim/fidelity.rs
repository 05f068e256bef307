//! Virtual-board fidelity: link profiles, deterministic virtual time,
//! clock tree, watchdog, faults and wiring from the command line,
//! fast-forward. Everything goes through probe-rs and the simulated probe
//! (or the `serve --sim` binary); board internals are only read back.

use std::time::Duration;

use extflash_gdb::sim::board::clock_of;
use extflash_gdb::sim::clock::{Counters, PS_PER_S, SWD_BITS_PER_TRANSACTION};
use extflash_gdb::sim::link::{CMSIS_DAP_BLOCK_WORDS, STLINK_MAX_READ_32, STLINK_MAX_WRITE_32};
use extflash_gdb::sim::{LinkProfile, SimBoard, SimConfig};
use probe_rs::{MemoryInterface, RegisterId};

fn snapshot(board: &SimBoard) -> (u64, Counters) {
    let c = clock_of(&board.lock());
    (c.now(), c.counters)
}

/// What one probe-rs call cost on the board: virtual time, round trips,
/// SWD transactions.
#[derive(Debug, PartialEq, Eq)]
struct Cost {
    ps: u64,
    round_trips: u64,
    transactions: u64,
}

fn measure(board: &SimBoard, f: impl FnOnce()) -> Cost {
    let (t0, c0) = snapshot(board);
    f();
    let (t1, c1) = snapshot(board);
    Cost {
        ps: t1 - t0,
        round_trips: c1.round_trips - c0.round_trips,
        transactions: c1.swd_transactions - c0.swd_transactions,
    }
}

/// The documented cost model (docs/virtual-board.md, "Link profiles"):
/// time = transactions x 54 bits / SWD clock + round trips x latency.
fn formula_ps(link: LinkProfile, khz: u64, transactions: u64, round_trips: u64) -> u64 {
    transactions * SWD_BITS_PER_TRANSACTION * PS_PER_S / (khz * 1000)
        + round_trips * link.round_trip_ps()
}

/// Round trips of a 32-bit block transfer of `words` at a 1 KiB-aligned
/// address with the transfer size already set: probe-rs writes TAR and
/// moves one DRW block per 1 KiB.
fn block_round_trips(link: LinkProfile, words: u64, write: bool) -> u64 {
    let chunks = (words * 4).div_ceil(1024);
    match link {
        LinkProfile::StlinkV2 => {
            let max = if write {
                STLINK_MAX_WRITE_32
            } else {
                STLINK_MAX_READ_32
            } as u64;
            2 * (words * 4).div_ceil(max)
        }
        // The queued TAR write goes out, then the block in packets.
        LinkProfile::CmsisDapV2 => (0..chunks)
            .map(|i| {
                1 + (words - i * 256)
                    .min(256)
                    .div_ceil(CMSIS_DAP_BLOCK_WORDS as u64)
            })
            .sum(),
        LinkProfile::Ideal => 2 * chunks,
    }
}

#[test]
fn each_link_profile_charges_its_documented_formula() {
    for link in LinkProfile::ALL {
        let board = crate::support::sim::board(SimConfig {
            link,
            ..Default::default()
        });
        let khz = link.default_khz() as u64;
        let mut session = crate::support::sim::attach(&board);
        let mut core = session.core(0).unwrap();
        core.halt(Duration::from_secs(1)).unwrap();
        // Settle the transfer size at 32 bits.
        core.read_word_32(0x2000_0000).unwrap();

        for words in [256u64, 2048] {
            let mut buf = vec![0u32; words as usize];
            let c = measure(&board, || core.read_32(0x2000_0000, &mut buf).unwrap());
            assert_eq!(
                c.transactions,
                words + words * 4 / 1024,
                "{link} read {words}"
            );
            assert_eq!(
                c.round_trips,
                block_round_trips(link, words, false),
                "{link} read {words}"
            );
            assert_eq!(
                c.ps,
                formula_ps(link, khz, c.transactions, c.round_trips),
                "{link}"
            );

            let data = vec![0x5A5A_5A5Au32; words as usize];
            let c = measure(&board, || core.write_32(0x2000_0000, &data).unwrap());
            assert_eq!(
                c.round_trips,
                block_round_trips(link, words, true),
                "{link} write {words}"
            );
            assert_eq!(
                c.ps,
                formula_ps(link, khz, c.transactions, c.round_trips),
                "{link}"
            );
        }

        // A core register read is three memory calls (DCRSR write, DHCSR
        // poll, DCRDR read), each a TAR write and one DRW access.
        let c = measure(&board, || {
            let _: u32 = core.read_core_reg(RegisterId(0)).unwrap();
        });
        assert_eq!(c.transactions, 6, "{link} register read");
        let want = match link {
            LinkProfile::StlinkV2 => 3 * 2,
            // DCRSR write is queued and goes out with the DHCSR read.
            LinkProfile::CmsisDapV2 | LinkProfile::Ideal => 2,
        };
        assert_eq!(c.round_trips, want, "{link} register read");
        assert_eq!(
            c.ps,
            formula_ps(link, khz, c.transactions, c.round_trips),
            "{link}"
        );
    }
}

#[test]
fn stlink_v2_speed_rounds_down_to_its_table_and_refuses_below_100_khz() {
    let board = crate::support::sim::board(SimConfig {
        link: LinkProfile::StlinkV2,
        ..Default::default()
    });
    let mut probe = board.probe();
    assert_eq!(probe.speed_khz(), 1800, "ST-Link/V2 default");
    assert_eq!(probe.set_speed(4000).unwrap(), 1800);
    assert_eq!(board.lock().mcu().clock.swd_hz(), 1_800_000);
    assert_eq!(probe.set_speed(1000).unwrap(), 950);
    assert!(probe.set_speed(50).is_err());
    assert_eq!(board.lock().mcu().clock.swd_hz(), 950_000);

    let err = SimBoard::new(SimConfig {
        link: LinkProfile::StlinkV2,
        speed_khz: Some(5),
        ..Default::default()
    });
    assert!(err.is_err(), "a board config below the table is refused");
}

/// Flash the test firmware, let it run while the host polls, halt, read a
/// variable: the whole job's virtual time and counters.
fn firmware_job() -> (u64, Counters, u32) {
    let elf = crate::support::elf::firmware_elf();
    let board = crate::support::sim::board(SimConfig {
        link: LinkProfile::StlinkV2,
        ..Default::default()
    });
    let mut session = crate::support::sim::attach(&board);
    crate::support::sim::flash_elf(&mut session, &elf);
    let mut core = session.core(0).unwrap();
    core.reset().unwrap();
    for _ in 0..50 {
        core.status().unwrap();
    }
    core.halt(Duration::from_secs(1)).unwrap();
    let ticks = core
        .read_word_32(crate::support::elf::symbol(&elf, "TICKS") as u64)
        .unwrap();
    let (t, c) = snapshot(&board);
    (t, c, ticks)
}

#[test]
fn same_job_twice_gives_identical_virtual_time_and_counters() {
    let host = std::time::Instant::now();
    let first = firmware_job();
    let second = firmware_job();
    eprintln!("{first:?} in {:?}", host.elapsed());
    assert!(first.2 > 0, "the firmware ran: {first:?}");
    assert!(first.1.round_trips > 0 && first.1.instructions > 0);
    assert_eq!(first, second);
}

// ---- clock tree ---------------------------------------------------------

/// A usual STM32F407 clock set-up, as firmware does it: HSE on, PLL from
/// HSE (PLLM 8, PLLN 336, PLLP 2, PLLQ 7) = 168 MHz, FLASH_ACR 5 wait
/// states + prefetch + caches, APB1 /4, APB2 /2, switch to the PLL, wait
/// for SWS, BKPT. Assembled with `llvm-mc -triple=thumbv7m-none-eabi`:
///
/// ```text
///     ldr r0, =0x40023800      @ RCC
///     ldr r1, [r0, #0]
///     orr r1, r1, #0x10000     @ HSEON
///     str r1, [r0, #0]
/// 1:  ldr r1, [r0, #0]
///     tst r1, #0x20000         @ HSERDY
///     beq 1b
///     ldr r1, =0x07405408      @ PLLCFGR
///     str r1, [r0, #4]
///     ldr r1, [r0, #0]
///     orr r1, r1, #0x1000000   @ PLLON
///     str r1, [r0, #0]
/// 2:  ldr r1, [r0, #0]
///     tst r1, #0x2000000       @ PLLRDY
///     beq 2b
///     ldr r2, =0x40023C00      @ FLASH_ACR
///     movw r1, #0x705
///     str r1, [r2]
///     movw r1, #0x9402         @ PPRE2 /2, PPRE1 /4, SW = PLL
///     str r1, [r0, #8]
/// 3:  ldr r1, [r0, #8]
///     and r1, r1, #0xC
///     cmp r1, #8
///     bne 3b
///     bkpt #0
///     .ltorg
/// ```
const CLOCK_SETUP_168_MHZ: [u16; 38] = [
    0x480F, 0x6801, 0xF441, 0x3180, 0x6001, 0x6801, 0xF411, 0x3F00, 0xD0FB, 0x490C, 0x6041, 0x6801,
    0xF041, 0x7180, 0x6001, 0x6801, 0xF011, 0x7F00, 0xD0FB, 0x4A08, 0xF240, 0x7105, 0x6011, 0xF249,
    0x4102, 0x6081, 0x6881, 0xF001, 0x010C, 0x2908, 0xD1FA, 0xBE00, 0x3800, 0x4002, 0x5408, 0x0740,
    0x3C00, 0x4002,
];

/// `movs r3, #100; 1: subs r3, #1; bne 1b; bkpt #0`: 202 instructions.
const COUNT_DOWN_100: [u16; 4] = [0x2364, 0x3B01, 0xD1FD, 0xBE00];
const COUNT_DOWN_INSTRUCTIONS: u64 = 1 + 2 * 100 + 1;
/// Its core cycles by the Cortex-M4 TRM's table (3.3.1, P = 2): movs 1,
/// subs 1 each, bne taken 1 + P 99 times and not taken 1 once, bkpt 1.
const COUNT_DOWN_CYCLES: u64 = 1 + 100 + 99 * 3 + 1 + 1;

const CODE_AT: u64 = 0x2000_1000;
const RCC_CFGR: u64 = 0x4002_3808;

/// Load Thumb code into RAM with byte writes, run it from its start and
/// wait (bounded) for the BKPT at its end.
fn run_code(core: &mut probe_rs::Core<'_>, code: &[u16]) {
    let bytes: Vec<u8> = code.iter().flat_map(|h| h.to_le_bytes()).collect();
    core.write_8(CODE_AT, &bytes).unwrap();
    core.write_core_reg(core.program_counter().id(), CODE_AT as u32)
        .unwrap();
    core.write_core_reg(core.registers().psr().unwrap().id(), 0x0100_0000u32)
        .unwrap();
    core.run().unwrap();
    crate::support::sim::wait_halted(core);
}

fn cpu_hz(board: &SimBoard) -> u64 {
    board.lock().mcu().clock.cpu_hz()
}

/// Virtual time per core cycle of the count-down loop, from the counters.
fn count_down_ps_per_cycle(board: &SimBoard, core: &mut probe_rs::Core<'_>) -> u64 {
    let (_, c0) = snapshot(board);
    run_code(core, &COUNT_DOWN_100);
    let (_, c1) = snapshot(board);
    let c = c1.since(&c0);
    assert_eq!(c.instructions, COUNT_DOWN_INSTRUCTIONS);
    c.cpu_ps / COUNT_DOWN_CYCLES
}

#[test]
fn core_runs_on_hsi_after_reset_and_at_168_mhz_once_code_sets_up_the_pll() {
    let board = crate::support::sim::board(SimConfig::default());
    let mut session = crate::support::sim::attach(&board);
    let mut core = session.core(0).unwrap();
    core.reset_and_halt(Duration::from_secs(1)).unwrap();
    assert_eq!(cpu_hz(&board), 16_000_000, "HSI after reset");
    assert_eq!(count_down_ps_per_cycle(&board, &mut core), 62_500);

    crate::support::sim::setup_spi1(&mut core, crate::support::sim::Pins::ALL, true);
    assert_eq!(
        board.lock().mcu().spi[0].frame_ps(),
        8 * 4 * PS_PER_S / 16_000_000,
        "SPI1 at fPCLK2/4 from the 16 MHz HSI"
    );

    run_code(&mut core, &CLOCK_SETUP_168_MHZ);
    assert_eq!(core.read_word_32(RCC_CFGR).unwrap() & 0xF, 0xA, "SWS = PLL");
    assert_eq!(cpu_hz(&board), 168_000_000);
    assert_eq!(
        count_down_ps_per_cycle(&board, &mut core),
        PS_PER_S / 168_000_000
    );
    assert_eq!(
        board.lock().mcu().spi[0].frame_ps(),
        8 * 4 * PS_PER_S / 84_000_000,
        "SPI1 bit time follows APB2 (84 MHz)"
    );
    assert_eq!(
        crate::support::sim::read_jedec_id(&mut core),
        extflash_gdb::sim::w25q64jv::JEDEC_ID_IQ,
        "the chip still answers at 21 MHz"
    );

    core.reset_and_halt(Duration::from_secs(1)).unwrap();
    assert_eq!(
        cpu_hz(&board),
        16_000_000,
        "reset halt leaves the core on HSI"
    );
    assert_eq!(core.read_word_32(RCC_CFGR).unwrap(), 0);
}

// ---- independent watchdog -----------------------------------------------

const IWDG_KR: u64 = 0x4000_3000;
const IWDG_PR: u64 = 0x4000_3004;
const IWDG_RLR: u64 = 0x4000_3008;
const RCC_CSR: u64 = 0x4002_3874;
const CSR_RMVF: u32 = 1 << 24;
const CSR_IWDGRSTF: u32 = 1 << 29;
const DBGMCU_APB1_FZ: u64 = 0xE004_2008;
const DBG_IWDG_STOP: u32 = 1 << 12;

/// `1: b 1b`: spins without touching the watchdog.
const SPIN: [u16; 1] = [0xE7FE];
/// `ldr r0, =IWDG_KR; movw r1, #0xAAAA; 1: str r1, [r0]; b 1b`: refreshes
/// the watchdog forever (llvm-mc, as above).
const KICK_FOREVER: [u16; 8] = [
    0x4802, 0xF64A, 0x21AA, 0x6001, 0xE7FD, 0x0000, 0x3000, 0x4000,
];

/// A halted ST-Link board with the reset flags cleared.
fn watchdog_board() -> (SimBoard, probe_rs::Session) {
    let board = crate::support::sim::board(SimConfig {
        link: LinkProfile::StlinkV2,
        ..Default::default()
    });
    let mut session = crate::support::sim::attach(&board);
    {
        let mut core = session.core(0).unwrap();
        core.halt(Duration::from_secs(1)).unwrap();
        core.write_word_32(RCC_CSR, CSR_RMVF).unwrap();
    }
    (board, session)
}

/// Start the IWDG at /4 with RLR 39: (39 + 1) x 4 / 32 kHz = 5 ms.
fn start_watchdog_5ms(core: &mut probe_rs::Core<'_>) {
    core.write_word_32(IWDG_KR, 0x5555).unwrap();
    core.write_word_32(IWDG_PR, 0).unwrap();
    core.write_word_32(IWDG_RLR, 39).unwrap();
    core.write_word_32(IWDG_KR, 0xCCCC).unwrap();
}

/// Let at least `ms` of virtual time pass through ST-Link memory reads
/// (0.8 ms of round trips each, plus wire time).
fn pass_ms(board: &SimBoard, core: &mut probe_rs::Core<'_>, ms: u64) {
    let end = board.lock().now() + ms * PS_PER_S / 1000;
    while board.lock().now() < end {
        core.read_word_32(0x2000_0000).unwrap();
    }
}

fn watchdog_reset_seen(core: &mut probe_rs::Core<'_>) -> bool {
    core.read_word_32(RCC_CSR).unwrap() & CSR_IWDGRSTF != 0
}

/// Start code at `CODE_AT` and leave the core running.
fn start_code(core: &mut probe_rs::Core<'_>, code: &[u16]) {
    let bytes: Vec<u8> = code.iter().flat_map(|h| h.to_le_bytes()).collect();
    core.write_8(CODE_AT, &bytes).unwrap();
    core.write_core_reg(core.program_counter().id(), CODE_AT as u32)
        .unwrap();
    core.write_core_reg(core.registers().psr().unwrap().id(), 0x0100_0000u32)
        .unwrap();
    core.run().unwrap();
}

#[test]
fn iwdg_resets_the_chip_when_not_refreshed_in_time() {
    let (board, mut session) = watchdog_board();
    let mut core = session.core(0).unwrap();
    start_code(&mut core, &SPIN);
    start_watchdog_5ms(&mut core);
    // Each probe call is ~0.86 ms: 3 ms of reads plus the flag read stay
    // below the 5 ms timeout.
    pass_ms(&board, &mut core, 3);
    assert!(
        !watchdog_reset_seen(&mut core),
        "not yet at the 5 ms timeout"
    );
    pass_ms(&board, &mut core, 2);
    assert!(watchdog_reset_seen(&mut core), "reset after 5 ms");
    assert_eq!(board.lock().mcu().clock.cpu_hz(), 16_000_000, "back on HSI");
    assert!(
        !board.lock().mcu().iwdg.started(),
        "reset stops the software watchdog"
    );
}

#[test]
fn iwdg_is_frozen_while_halted_only_with_dbg_iwdg_stop() {
    let (board, mut session) = watchdog_board();
    let mut core = session.core(0).unwrap();
    core.write_word_32(DBGMCU_APB1_FZ, DBG_IWDG_STOP).unwrap();
    start_watchdog_5ms(&mut core);
    let pc: u32 = core.read_core_reg(core.program_counter().id()).unwrap();
    pass_ms(&board, &mut core, 50);
    assert!(!watchdog_reset_seen(&mut core), "frozen while halted");
    let pc_after: u32 = core.read_core_reg(core.program_counter().id()).unwrap();
    assert_eq!(pc, pc_after);

    // Without the freeze bit a halted core does not stop the watchdog.
    core.write_word_32(DBGMCU_APB1_FZ, 0).unwrap();
    pass_ms(&board, &mut core, 6);
    assert!(
        watchdog_reset_seen(&mut core),
        "counts while halted without DBG_IWDG_STOP"
    );
}

#[test]
fn iwdg_keeps_counting_while_debugger_started_code_runs_unless_it_refreshes() {
    let (board, mut session) = watchdog_board();
    let mut core = session.core(0).unwrap();
    core.write_word_32(DBGMCU_APB1_FZ, DBG_IWDG_STOP).unwrap();
    start_watchdog_5ms(&mut core);

    start_code(&mut core, &KICK_FOREVER);
    pass_ms(&board, &mut core, 50);
    assert!(
        !watchdog_reset_seen(&mut core),
        "the running code refreshes it"
    );
    assert!(board.lock().mcu().iwdg.reloads() > 100);

    core.halt(Duration::from_secs(1)).unwrap();
    start_code(&mut core, &SPIN);
    pass_ms(&board, &mut core, 6);
    assert!(
        watchdog_reset_seen(&mut core),
        "DBG_IWDG_STOP freezes only a halted core: running code must refresh"
    );
}

// ---- faults and wiring from the command line -----------------------------

/// `extflash-gdb serve --sim --port 0 ARGS` with stderr captured; killed
/// on drop.
struct Server {
    child: std::process::Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        use std::io::BufRead;
        let log = std::env::temp_dir().join(format!(
            "sim-fidelity-{}-{}.log",
            std::process::id(),
            args.join("_").replace(['/', '.'], "")
        ));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
            .args(["serve", "--sim", "--port", "0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn extflash-gdb");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("expected `listening on`, got {line:?}"))
            .to_string();
        Server { child, addr, log }
    }

    /// What the server logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Undo RSP run-length encoding (`X*n` repeats X n - 29 more times).
fn decode_rle(data: &[u8]) -> String {
    let mut out: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'*' && i + 1 < data.len() {
            let last = *out.last().unwrap_or(&b'0');
            out.extend(std::iter::repeat_n(last, data[i + 1] as usize - 29));
            i += 2;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A bare RSP client: acks on, every read bounded by a timeout.
struct Rsp {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Rsp {
    fn connect(addr: &str) -> Rsp {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        Rsp {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, payload: &str) {
        use std::io::Write;
        let sum = payload.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        // A refused connection may already be closed: `recv` reports it.
        let _ = write!(self.stream, "${payload}#{sum:02x}");
    }

    /// The next packet's payload (acks skipped, packet acked).
    fn recv(&mut self) -> String {
        self.try_recv()
            .expect("a reply before the connection closes")
    }

    /// The next packet, or `None` if the connection closed or timed out.
    fn try_recv(&mut self) -> Option<String> {
        use std::io::{Read, Write};
        loop {
            if let Some(start) = self.buf.iter().position(|&b| b == b'$') {
                if let Some(end) = self.buf[start..].iter().position(|&b| b == b'#') {
                    let end = start + end;
                    if self.buf.len() >= end + 3 {
                        let payload = decode_rle(&self.buf[start + 1..end]);
                        self.buf.drain(..end + 3);
                        self.stream.write_all(b"+").ok()?;
                        return Some(payload);
                    }
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn ask(&mut self, payload: &str) -> String {
        self.send(payload);
        self.recv()
    }

    /// `monitor CMD`: the text of its `O` packets and the final reply.
    fn monitor(&mut self, cmd: &str) -> (String, String) {
        let hex: String = cmd.bytes().map(|b| format!("{b:02x}")).collect();
        self.send(&format!("qRcmd,{hex}"));
        let mut text = String::new();
        loop {
            let p = self.recv();
            match p.strip_prefix('O') {
                Some(h) if p != "OK" => {
                    let bytes: Vec<u8> = (0..h.len() / 2)
                        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                        .collect();
                    text.push_str(&String::from_utf8_lossy(&bytes));
                }
                _ => return (text, p),
            }
        }
    }
}

const WIRED_SPI1: &str = "SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0)";
const SPI3_BOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/memory-maps/stm32f407ve-w25q64jv-spi3.toml"
);

/// The window read and `monitor flash info` when no chip answers where the
/// server believes it is wired.
fn assert_no_chip_on_spi1(s: &Server) {
    let mut c = Rsp::connect(&s.addr);
    let (text, reply) = c.monitor("flash info");
    assert_eq!(reply, "OK");
    assert!(
        text.contains(&format!(
            "no SPI flash answers on {WIRED_SPI1}: check wiring and power"
        )),
        "{text}"
    );
    let m = c.ask("m90000000,4");
    assert!(m.starts_with('E'), "window read: {m}");
    assert!(s
        .log()
        .contains(&format!("no SPI flash answers on {WIRED_SPI1}")));
    assert_eq!(c.ask("m20000000,4").len(), 8, "the session goes on");
}

#[test]
fn serve_sim_fault_no_chip_window_read_is_an_error_naming_the_wiring() {
    assert_no_chip_on_spi1(&Server::start(&["--sim-fault", "no-chip"]));
}

#[test]
fn serve_sim_board_wired_differently_from_board_shows_the_wrong_wiring() {
    // The chip sits on SPI3; the default --board says SPI1.
    assert_no_chip_on_spi1(&Server::start(&["--sim-board", SPI3_BOARD]));
    // Believing the right wiring finds it.
    let s = Server::start(&["--sim-board", SPI3_BOARD, "--board", SPI3_BOARD]);
    let (text, _) = Rsp::connect(&s.addr).monitor("flash info");
    assert!(
        text.contains("(JEDEC ID EF 40 17) on SPI3 (SCK PC10"),
        "{text}"
    );
}

/// A fresh virtual board is erased: the load programs without erasing,
/// so the faults show in the page program.
#[test]
fn serve_sim_fault_program_faults_fail_the_load_with_their_cause() {
    for (fault, op, cause) in [
        (
            "protected",
            "protection check (stub_read_status)",
            "it is write-protected: run `monitor flash unprotect`",
        ),
        (
            "stuck-busy",
            "program (stub_stream)",
            "the chip stayed busy past its datasheet maximum (3 ms)",
        ),
        (
            "wel-never-set",
            "program (stub_stream)",
            "write enable (06h) did not set WEL",
        ),
        // 'a' (0x61) needs bit 1 cleared: the stub's read-back sees 0x63.
        (
            "worn-bit",
            "program (stub_stream)",
            "the page read back after programming differs from what was sent",
        ),
    ] {
        let s = Server::start(&["--sim-fault", fault]);
        let mut c = Rsp::connect(&s.addr);
        assert_eq!(c.ask("vFlashErase:90000000,1000"), "OK");
        assert_eq!(c.ask("vFlashWrite:90000000:abcd"), "OK");
        let done = c.ask("vFlashDone");
        assert!(done.starts_with('E'), "{fault}: vFlashDone gave {done}");
        let log = s.log();
        assert!(
            log.contains(&format!("{op} at 0x90000000 failed on {WIRED_SPI1}"))
                && log.contains(cause),
            "{fault}: log lacks `{cause}`:\n{log}"
        );
        // A stream that stopped says which part of the window may differ.
        if op.contains("stub_stream") {
            assert!(
                log.contains("the load stopped: 0x90000000..0x90000004 may not hold the image"),
                "{fault}: {log}"
            );
        }
    }
}

#[test]
fn serve_sim_fault_locked_protection_cannot_be_lifted() {
    let s = Server::start(&["--sim-fault", "protected,locked"]);
    let (text, _) = Rsp::connect(&s.addr).monitor("flash unprotect");
    assert!(
        text.contains("still protected: the status registers are locked (SRL)"),
        "{text}"
    );
}

#[test]
fn serve_rejects_an_unknown_sim_fault() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
        .args([
            "serve",
            "--sim",
            "--port",
            "0",
            "--sim-fault",
            "no-chip,sparks",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown virtual-board fault `sparks`"),
        "{err}"
    );
}

// ---- per-connection summary ----------------------------------------------

#[test]
fn summary_reports_what_happened_since_the_previous_one() {
    let board = crate::support::sim::board(SimConfig {
        link: LinkProfile::StlinkV2,
        ..Default::default()
    });
    let mut session = crate::support::sim::attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_secs(1)).unwrap();
    board.log_summary("before");
    let mut buf = [0u32; 2048];
    let cost = measure(&board, || core.read_32(0x2000_0000, &mut buf).unwrap());
    let s = board.log_summary("read 8 KiB");
    assert_eq!(s.link, LinkProfile::StlinkV2);
    assert_eq!(s.counters.round_trips, 4);
    assert_eq!(s.counters.swd_transactions, cost.transactions);
    assert_eq!(s.virtual_ps, cost.ps);
    let s = board.log_summary("nothing");
    assert_eq!((s.virtual_ps, s.counters.round_trips), (0, 0));
    let text = s.to_string();
    for part in [
        "link stlink-v2",
        "virtual time",
        "round trips",
        "SWD transactions",
        "instructions executed",
        "skipped by fast-forward",
        "SPI bytes",
        "chip busy",
    ] {
        assert!(text.contains(part), "{text}");
    }
}

#[test]
fn serve_logs_one_sim_summary_line_per_gdb_connection() {
    let s = Server::start(&["--sim-link", "cmsis-dap-v2"]);
    {
        let mut c = Rsp::connect(&s.addr);
        assert_eq!(c.ask("m20000000,4").len(), 8);
    }
    // The worker serves connections in order: once a later connection is
    // answered, the first one's summary has been logged. A connection made
    // while the first is being torn down is refused (closed): retry.
    let mut answered = false;
    for _ in 0..50 {
        let mut c = Rsp::connect(&s.addr);
        c.send("m20000000,4");
        if matches!(c.try_recv(), Some(r) if r.len() == 8) {
            answered = true;
            break;
        }
    }
    assert!(answered, "the server accepts a second connection");
    let log = s.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("GDB connection ended: link cmsis-dap-v2"))
        .collect();
    assert!(!lines.is_empty(), "{log}");
    assert!(
        lines[0].contains("INFO") && lines[0].contains("sim"),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains(" 0 round trips"), "{}", lines[0]);
}

// ---- idle fast-forward ----------------------------------------------------

/// `mov.w r0, #0x20002000; 1: ldr r1, [r0]; cmp r1, #0; beq 1b; bkpt #0`:
/// waits for the debugger to set a flag in RAM, reading memory only.
const WAIT_FOR_FLAG: [u16; 6] = [0xF04F, 0x2020, 0x6801, 0x2900, 0xD0FC, 0xBE00];
const FLAG: u64 = 0x2000_2000;

/// What a job left behind: virtual time, PC, r0-r3, RCC_CSR, and the
/// instructions executed plus those skipped.
#[derive(Debug, PartialEq, Eq)]
struct EndState {
    now: u64,
    pc: u32,
    regs: [u32; 4],
    csr: u32,
    instructions_total: u64,
}

fn end_state(board: &SimBoard, core: &mut probe_rs::Core<'_>) -> (EndState, Counters) {
    let pc: u32 = core.read_core_reg(core.program_counter().id()).unwrap();
    let regs = [0u16, 1, 2, 3].map(|r| core.read_core_reg::<u32>(RegisterId(r)).unwrap());
    let csr = core.read_word_32(RCC_CSR).unwrap();
    let (now, c) = snapshot(board);
    let state = EndState {
        now,
        pc,
        regs,
        csr,
        instructions_total: c.instructions + c.ff_instructions,
    };
    (state, c)
}

/// The core waits for a flag while the host polls for 20 ms, then the
/// debugger sets the flag and the loop ends on its BKPT.
fn flag_job(fast_forward: bool) -> (EndState, Counters) {
    let board = crate::support::sim::board(SimConfig {
        link: LinkProfile::StlinkV2,
        fast_forward,
        ..Default::default()
    });
    let mut session = crate::support::sim::attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_secs(1)).unwrap();
    core.write_word_32(FLAG, 0).unwrap();
    start_code(&mut core, &WAIT_FOR_FLAG);
    pass_ms(&board, &mut core, 20);
    core.write_word_32(FLAG, 1).unwrap();
    crate::support::sim::wait_halted(&mut core);
    end_state(&board, &mut core)
}

/// A spinning core and a 5 ms watchdog, with time passing by host polls.
fn watchdog_job(fast_forward: bool) -> (EndState, Counters) {
    let board = crate::support::sim::board(SimConfig {
        link: LinkProfile::StlinkV2,
        fast_forward,
        ..Default::default()
    });
    let mut session = crate::support::sim::attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_secs(1)).unwrap();
    core.write_word_32(RCC_CSR, CSR_RMVF).unwrap();
    start_code(&mut core, &SPIN);
    start_watchdog_5ms(&mut core);
    pass_ms(&board, &mut core, 8);
    core.halt(Duration::from_secs(1)).ok();
    end_state(&board, &mut core)
}

#[test]
fn fast_forward_on_and_off_end_in_the_same_state_at_the_same_virtual_time() {
    let (on, c_on) = flag_job(true);
    let (off, c_off) = flag_job(false);
    assert_eq!(on, off);
    assert_eq!(on.regs[1], 1, "the loop saw the flag");
    assert_eq!(c_off.ff_instructions, 0);
    assert!(
        c_on.ff_instructions > 10 * c_on.instructions,
        "nearly every iteration skipped: {c_on:?}"
    );
    assert!(
        on.instructions_total > 100_000,
        "20 ms at 16 MHz of spinning"
    );
}

#[test]
fn fast_forward_stops_at_the_watchdog_expiry() {
    let (on, c_on) = watchdog_job(true);
    let (off, _) = watchdog_job(false);
    assert_ne!(on.csr & CSR_IWDGRSTF, 0, "the watchdog fired");
    assert!(c_on.ff_instructions > 0);
    assert_eq!(on, off);
}

// ---- CRC unit ---------------------------------------------------------------

#[test]
fn crc_unit_gives_gdbs_qcrc_for_big_endian_words_once_clocked() {
    const RCC_AHB1ENR: u64 = 0x4002_3830;
    const CRC_DR: u64 = 0x4002_3000;
    const CRC_CR: u64 = 0x4002_3008;
    let board = crate::support::sim::board(SimConfig::default());
    let mut session = crate::support::sim::attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_secs(1)).unwrap();
    assert_eq!(core.read_word_32(CRC_DR).unwrap(), 0, "unclocked");
    let en = core.read_word_32(RCC_AHB1ENR).unwrap();
    core.write_word_32(RCC_AHB1ENR, en | 1 << 12).unwrap();
    assert_eq!(core.read_word_32(CRC_DR).unwrap(), 0xFFFF_FFFF);

    let data = crate::support::sim::pattern(7, 256);
    for w in data.chunks(4) {
        core.write_word_32(CRC_DR, u32::from_be_bytes(w.try_into().unwrap()))
            .unwrap();
    }
    assert_eq!(
        core.read_word_32(CRC_DR).unwrap(),
        extflash_stub_abi::crc32_update(extflash_stub_abi::CRC32_INIT, &data)
    );
    core.write_word_32(CRC_CR, 1).unwrap();
    assert_eq!(core.read_word_32(CRC_DR).unwrap(), 0xFFFF_FFFF, "CR.RESET");
}

// ---- command-line plumbing ----------------------------------------------

#[test]
fn serve_speed_is_rounded_by_the_link_profiles_probe() {
    let s = Server::start(&["--speed", "4000", "--sim-no-fast-forward"]);
    assert!(s.log().contains("SWD speed 1800 kHz"), "{}", s.log());
    drop(s);
    let s = Server::start(&["--speed", "4000", "--sim-link", "cmsis-dap-v2"]);
    assert!(s.log().contains("SWD speed 4000 kHz"), "{}", s.log());
    drop(s);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
        .args(["serve", "--sim", "--port", "0", "--speed", "50"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--speed 50: stlink-v2 cannot clock SWD at 50 kHz (lowest setting 100 kHz)"),
        "{err}"
    );
}

#[test]
fn realtime_board_lets_a_running_core_catch_up_with_host_time() {
    let run = |realtime: bool| {
        let board = crate::support::sim::board(SimConfig {
            realtime,
            ..Default::default()
        });
        let mut session = crate::support::sim::attach(&board);
        let mut core = session.core(0).unwrap();
        core.halt(Duration::from_secs(1)).unwrap();
        start_code(&mut core, &SPIN);
        let (_, c0) = snapshot(&board);
        // Host time passes with no probe traffic (what an interactive user
        // does between commands), then one read.
        std::thread::sleep(Duration::from_millis(30));
        core.read_word_32(0x2000_0000).unwrap();
        let (_, c1) = snapshot(&board);
        let c = c1.since(&c0);
        c.instructions + c.ff_instructions
    };
    let fixed = run(false);
    let realtime = run(true);
    assert!(fixed < 1_000, "only wire time passed: {fixed}");
    // Catch-up runs 2,000 instructions per host ms, at most 40,000 per
    // transaction.
    assert!(realtime >= 20 * 2_000, "host time caught up: {realtime}");
}

// ---- DMA2 for SPI1 ----------------------------------------------------------

#[test]
fn dma2_streams_move_a_jedec_id_transaction_through_spi1_at_its_frame_pace() {
    const RCC_AHB1ENR: u64 = 0x4002_3830;
    const DMA2: u64 = 0x4002_6400;
    const S0: u64 = DMA2 + 0x10; // SPI1_RX: stream 0, channel 3
    const S3: u64 = DMA2 + 0x10 + 3 * 0x18; // SPI1_TX: stream 3, channel 3
    const SPI1_CR2: u64 = 0x4001_3004;
    const TX_BUF: u64 = 0x2000_3000;
    const RX_BUF: u64 = 0x2000_3100;
    const CH3: u32 = 3 << 25;
    const MINC: u32 = 1 << 10;
    const M2P: u32 = 1 << 6;
    const EN: u32 = 1;

    let board = crate::support::sim::board(SimConfig::default());
    let mut session = crate::support::sim::attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_secs(1)).unwrap();
    crate::support::sim::setup_spi1(&mut core, crate::support::sim::Pins::ALL, true);
    let en = core.read_word_32(RCC_AHB1ENR).unwrap();
    core.write_word_32(RCC_AHB1ENR, en | 1 << 22).unwrap();

    core.write_8(TX_BUF, &[0x9F, 0, 0, 0]).unwrap();
    core.write_8(RX_BUF, &[0xAA; 4]).unwrap();
    for (s, par, mar, cr) in [
        (S0, 0x4001_300C, RX_BUF, CH3 | MINC),
        (S3, 0x4001_300C, TX_BUF, CH3 | MINC | M2P),
    ] {
        core.write_word_32(s + 4, 4).unwrap();
        core.write_word_32(s + 8, par).unwrap();
        core.write_word_32(s + 0xC, mar as u32).unwrap();
        core.write_word_32(s, cr | EN).unwrap();
    }
    core.write_word_32(crate::support::sim::reg::GPIOB_BSRR, 1 << 16)
        .unwrap(); // CS low
    let t0 = board.lock().now();
    core.write_word_32(SPI1_CR2, 0b11).unwrap(); // RXDMAEN | TXDMAEN
                                                 // The enable wrote the first byte to DR and the second to the buffer:
                                                 // the rest waits for the frames (2 us each at fPCLK2/4 on the HSI).
    let started = board.lock().mcu().clock.counters.spi_bytes;
    assert!(started < 4, "paced by the frames: {started} bytes at once");
    while board.lock().now() < t0 + 10 * PS_PER_S / 1_000_000 {
        core.read_word_32(0x2000_0000).unwrap();
    }
    core.write_word_32(crate::support::sim::reg::GPIOB_BSRR, 1)
        .unwrap(); // CS high

    let mut rx = [0u8; 4];
    core.read_8(RX_BUF, &mut rx).unwrap();
    assert_eq!(&rx[1..], &extflash_gdb::sim::w25q64jv::JEDEC_ID_IQ[..]);
    let lisr = core.read_word_32(DMA2).unwrap();
    assert_ne!(lisr & 1 << 5, 0, "stream 0 TCIF");
    assert_ne!(lisr & 1 << 27, 0, "stream 3 TCIF");
    assert_eq!(
        core.read_word_32(S0).unwrap() & EN,
        0,
        "EN clears at the end"
    );
    assert_eq!(core.read_word_32(S0 + 4).unwrap(), 0, "NDTR counted down");
    assert_eq!(board.lock().mcu().clock.counters.spi_bytes, 4);
}

#[test]
fn dma2_memory_to_memory_copies_at_once_and_sets_tcif() {
    const RCC_AHB1ENR: u64 = 0x4002_3830;
    const DMA2: u64 = 0x4002_6400;
    const S1: u64 = DMA2 + 0x10 + 0x18;
    let board = crate::support::sim::board(SimConfig::default());
    let mut session = crate::support::sim::attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_secs(1)).unwrap();
    let data = crate::support::sim::pattern(3, 64);
    core.write_8(0x2000_4000, &data).unwrap();
    core.write_word_32(S1, 2 << 6 | 1 << 10 | 1 << 9 | 2 << 11 | 2 << 13 | 1)
        .unwrap();
    assert_eq!(core.read_word_32(S1).unwrap(), 0, "DMA2 unclocked: ignored");
    let en = core.read_word_32(RCC_AHB1ENR).unwrap();
    core.write_word_32(RCC_AHB1ENR, en | 1 << 22).unwrap();
    core.write_word_32(S1 + 4, 16).unwrap();
    core.write_word_32(S1 + 8, 0x2000_4000).unwrap();
    core.write_word_32(S1 + 0xC, 0x2000_5000).unwrap();
    // MemToMem, MINC, PINC, 32-bit, EN.
    core.write_word_32(S1, 2 << 6 | 1 << 10 | 1 << 9 | 2 << 11 | 2 << 13 | 1)
        .unwrap();
    let mut out = vec![0u8; 64];
    core.read_8(0x2000_5000, &mut out).unwrap();
    assert_eq!(out, data);
    assert_ne!(
        core.read_word_32(DMA2).unwrap() & 1 << 11,
        0,
        "stream 1 TCIF"
    );
}

// ---- window watchdog -------------------------------------------------------

const RCC_APB1ENR: u64 = 0x4002_3840;
const WWDGEN: u32 = 1 << 11;
const WWDG_CR: u64 = 0x4000_2C00;
const WWDG_CFR: u64 = 0x4000_2C04;
const CSR_WWDGRSTF: u32 = 1 << 30;
const DBG_WWDG_STOP: u32 = 1 << 11;

/// Clock and activate the WWDG with window `w`: /1 at PCLK1 = HSI 16 MHz,
/// 4096 / 16 MHz = 256 us per count, 0x7F -> 0x3F in 16.4 ms.
fn start_wwdg(core: &mut probe_rs::Core<'_>, w: u32) {
    let apb1 = core.read_word_32(RCC_APB1ENR).unwrap();
    core.write_word_32(RCC_APB1ENR, apb1 | WWDGEN).unwrap();
    core.write_word_32(WWDG_CFR, w).unwrap();
    core.write_word_32(WWDG_CR, 0x80 | 0x7F).unwrap();
}

fn wwdg_reset_seen(core: &mut probe_rs::Core<'_>) -> bool {
    core.read_word_32(RCC_CSR).unwrap() & CSR_WWDGRSTF != 0
}

#[test]
fn wwdg_resets_the_chip_when_t6_clears() {
    let (board, mut session) = watchdog_board();
    let mut core = session.core(0).unwrap();
    start_code(&mut core, &SPIN);
    start_wwdg(&mut core, 0x7F);
    pass_ms(&board, &mut core, 10);
    assert!(!wwdg_reset_seen(&mut core), "not yet at 16.4 ms");
    let counter = core.read_word_32(WWDG_CR).unwrap() & 0x7F;
    assert!((0x40..0x7F - 30).contains(&counter), "{counter:#x}");
    pass_ms(&board, &mut core, 7);
    assert!(wwdg_reset_seen(&mut core), "reset when T6 cleared");
    assert!(
        core.read_word_32(RCC_CSR).unwrap() & CSR_IWDGRSTF == 0,
        "the window watchdog's flag, not the independent one's"
    );
    assert!(!board.lock().mcu().wwdg.active(), "reset clears WDGA");
}

#[test]
fn wwdg_refresh_above_the_window_resets_the_chip() {
    let (board, mut session) = watchdog_board();
    let mut core = session.core(0).unwrap();
    core.write_word_32(DBGMCU_APB1_FZ, DBG_WWDG_STOP).unwrap();
    start_code(&mut core, &SPIN);
    start_wwdg(&mut core, 0x50);
    pass_ms(&board, &mut core, 1);
    // Counter near 0x7B, above W = 0x50: too early.
    core.write_word_32(WWDG_CR, 0x7F).unwrap();
    pass_ms(&board, &mut core, 1);
    assert!(wwdg_reset_seen(&mut core), "a refresh before the window");
}

#[test]
fn wwdg_stops_while_halted_with_dbg_wwdg_stop_or_its_clock_off_and_keeps_its_count() {
    let (board, mut session) = watchdog_board();
    let mut core = session.core(0).unwrap();
    core.write_word_32(DBGMCU_APB1_FZ, DBG_WWDG_STOP).unwrap();
    start_wwdg(&mut core, 0x7F);
    let before = core.read_word_32(WWDG_CR).unwrap();
    pass_ms(&board, &mut core, 50);
    assert_eq!(core.read_word_32(WWDG_CR).unwrap(), before, "frozen halted");
    assert!(!wwdg_reset_seen(&mut core));
    // Running with its clock gated (what a stub session does): no count.
    let apb1 = core.read_word_32(RCC_APB1ENR).unwrap();
    core.write_word_32(RCC_APB1ENR, apb1 & !WWDGEN).unwrap();
    start_code(&mut core, &SPIN);
    pass_ms(&board, &mut core, 50);
    core.halt(Duration::from_secs(1)).unwrap();
    core.write_word_32(RCC_APB1ENR, apb1).unwrap();
    assert_eq!(core.read_word_32(WWDG_CR).unwrap(), before, "gated: kept");
    assert!(!wwdg_reset_seen(&mut core));
    // Halted without the freeze bit it counts, and resets.
    core.write_word_32(DBGMCU_APB1_FZ, 0).unwrap();
    pass_ms(&board, &mut core, 20);
    assert!(
        wwdg_reset_seen(&mut core),
        "counts halted without DBG_WWDG_STOP"
    );
}

//! Virtual-board fidelity: link profiles, deterministic virtual time,
//! clock tree, watchdog, faults and wiring from the command line,
//! fast-forward. Everything goes through probe-rs and the simulated probe
//! (or the `serve --sim` binary); board internals are only read back.

mod sim_support;

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
        let board = sim_support::board(SimConfig {
            link,
            ..Default::default()
        });
        let khz = link.default_khz() as u64;
        let mut session = sim_support::attach(&board);
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
    let board = sim_support::board(SimConfig {
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
    let elf = sim_support::firmware_elf();
    let board = sim_support::board(SimConfig {
        link: LinkProfile::StlinkV2,
        ..Default::default()
    });
    let mut session = sim_support::attach(&board);
    sim_support::flash_elf(&mut session, &elf);
    let mut core = session.core(0).unwrap();
    core.reset().unwrap();
    for _ in 0..50 {
        core.status().unwrap();
    }
    core.halt(Duration::from_secs(1)).unwrap();
    let ticks = core
        .read_word_32(sim_support::symbol(&elf, "TICKS") as u64)
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

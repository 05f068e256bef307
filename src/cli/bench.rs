//! `bench [--sim [--sim-link PROFILE]] [--size BYTES] [--speeds [KHZ,..]]
//! [--json]`: load, overwrite, reload, CRC and reads of the external window
//! through the in-process GDB server, with the packets GDB sends, timed
//! against the physical limit.
//!
//! On the virtual board each job reports the board clock's delta (virtual
//! time), host time, round trips, and the limit: the larger of the chip's
//! BUSY time for what must be erased and programmed (datasheet typical
//! values) and the link's time for the bytes that must cross it under the
//! profile's cost model (`sim::link`). On a real board only wall time is
//! known. Owns the limits' arithmetic and the goals (pure functions, tested
//! here) and the printing; the server does the work.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use extflash_gdb::extflash::chip::typical_erase_ms;
use extflash_gdb::flash::FlashEvent;
use extflash_gdb::prng::Prng;
use extflash_gdb::sim::clock::{PS_PER_S, SWD_BITS_PER_TRANSACTION};
use extflash_gdb::sim::link::{DapOp, Link, Reg};
use extflash_gdb::sim::LinkProfile;
use serde::Serialize;

mod report;

#[cfg(test)]
use report::{goals, Goal};
use report::{json, json_runs, row, speeds_table, table};

use super::image::Segment;
use super::mmap;
use super::options::{parse_len, TargetArgs};
use super::session::BoardSession;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Image size (decimal, 0x hex, K/M suffix), a multiple of 4 KiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_len, default_value = "8M")]
    pub size: u32,
    /// The part of the window to use, ADDR LEN (4 KiB aligned): required on
    /// a real board, whose range is erased and programmed. With --sim the
    /// default is --size bytes at the window's start.
    #[arg(long, num_args = 2, value_names = ["ADDR", "LEN"], value_parser = parse_len,
          conflicts_with = "size")]
    pub range: Option<Vec<u32>>,
    /// Run every job once per SWD clock (kHz, comma-separated), each on a
    /// fresh session. Without a list, the clocks of the --sim-link profile
    /// that matter: stlink-v2 4600,1800,950; cmsis-dap-v2 1000,4000,10000;
    /// ideal its one.
    #[arg(long, value_name = "KHZ,..", num_args = 0..=1, value_delimiter = ',',
          conflicts_with = "speed")]
    pub speeds: Option<Vec<u32>>,
    /// Confirm that the range may be erased and programmed (real board).
    #[arg(long)]
    pub yes: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// W25Q64JV datasheet typical times, picoseconds (erases: the planner's
/// figures, `extflash::chip::typical_erase_ms`).
pub const T_SE_PS: u64 = typical_erase_ms(0x1000) * PS_PER_S / 1000;
pub const T_BE32_PS: u64 = typical_erase_ms(0x8000) * PS_PER_S / 1000;
pub const T_BE64_PS: u64 = typical_erase_ms(0x1_0000) * PS_PER_S / 1000;
pub const T_PP_PS: u64 =
    extflash_stub_abi::spi_nor::w25q64jv::TYP_PAGE_PROGRAM_US as u64 * PS_PER_S / 1_000_000;
const PAGE: usize = 256;
const SECTOR: usize = 4096;
const BLOCK32: usize = 32 * 1024;
const BLOCK64: usize = 64 * 1024;
/// `dump` reads at most this much.
const DUMP_MAX: u32 = 1 << 20;
/// Host time the virtual board may take per MiB of a `vFlashDone` or
/// `qCRC` beyond the usual timeout (a release build needs about 2 minutes
/// per MiB of `load` on an idle machine).
const SIM_HOST_PER_MIB: std::time::Duration = std::time::Duration::from_secs(600);
/// Seeds of the deterministic images.
/// (Odd, as the images of earlier figures were made with `seed | 1`.)
const SEED_LOAD: u64 = 0x9E37_79B9_7F4A_7C15;
const SEED_OVERWRITE: u64 = 0xBF58_476D_1CE4_E5B9;
const SEED_ASSETS: u64 = 0xD1B5_4A32_D192_ED03;

/// One job's figures. Times in seconds; `None` prints as null.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    pub name: &'static str,
    pub bytes: u64,
    pub virtual_s: Option<f64>,
    pub host_s: f64,
    pub limit_s: Option<f64>,
    /// The chip's own share of the limit: erase and program busy time, or
    /// the SPI time of a job that reads. Compression can beat the link's
    /// share of a limit, never this one.
    pub chip_s: Option<f64>,
    /// Link time of the records that actually crossed, when pages went
    /// compressed (`assets`): with `chip_s`, what compression could reach.
    pub sent_s: Option<f64>,
    /// The least this design can take ([`floor_ps`]), for jobs that
    /// program: where a goal lies below it, the bench names the bound.
    pub floor_s: Option<f64>,
    pub round_trips: Option<u64>,
}

impl JobResult {
    pub fn ratio(&self) -> Option<f64> {
        match (self.virtual_s, self.limit_s) {
            (Some(v), Some(l)) if l > 0.0 => Some(v / l),
            _ => None,
        }
    }
}

/// A job as it appears in the JSON (the ratio added).
#[derive(Serialize)]
struct JobJson<'a> {
    name: &'a str,
    bytes: u64,
    virtual_s: Option<f64>,
    host_s: f64,
    limit_s: Option<f64>,
    ratio: Option<f64>,
    chip_s: Option<f64>,
    sent_s: Option<f64>,
    floor_s: Option<f64>,
    round_trips: Option<u64>,
}

/// What the run measured, for printing.
pub struct Report {
    /// The link profile's name, or `hardware`.
    pub link: String,
    pub address: u32,
    pub size: u32,
    /// The SWD clock the probe ran at (the virtual board's, after the
    /// probe's rounding; on hardware the requested `--speed`).
    pub swd_hz: Option<u64>,
    /// SPI clock the limits assume (the board file's prescaler at the
    /// highest APB clock) and the one the virtual board had after reset.
    pub spi_hz: u64,
    pub spi_hz_at_reset: Option<u64>,
    pub jobs: Vec<JobResult>,
    /// `assets`: bytes programmed from `lz` blocks, and bytes sent in all.
    pub assets_compression: Option<(u64, u64)>,
    /// What the stream's slots hold ([`slot_bytes`]).
    pub slot_bytes: Option<u64>,
}

/// SWD clocks (kHz) of `profile` that `--speeds` runs by default: the
/// ST-Link/V2's top setting, its default and the next lower one
/// (`sim::link::STLINK_V2_SWD_KHZ`); a CMSIS-DAP probe's default and two
/// common faster ones; the ideal link's only one.
pub fn profile_speeds(profile: LinkProfile) -> Vec<u32> {
    match profile {
        LinkProfile::StlinkV2 => vec![4600, 1800, 950],
        LinkProfile::CmsisDapV2 => vec![1000, 4000, 10_000],
        LinkProfile::Ideal => vec![profile.default_khz()],
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let text = match &args.speeds {
        None => {
            let report = run_once(&args, &args.target)?;
            if args.json {
                json(&report)
            } else {
                table(&report)
            }
        }
        Some(list) => {
            let speeds = if !list.is_empty() {
                list.clone()
            } else if args.target.sim {
                profile_speeds(args.target.sim_link)
            } else {
                anyhow::bail!(
                    "on a real board, name the SWD clocks: --speeds 4600,1800 (kHz); only the \
                     virtual board knows its probe's"
                );
            };
            if args.target.sim {
                // Before any run: the virtual board's probe rounds or
                // refuses as the real one would.
                for &khz in &speeds {
                    args.target.sim_link.supported_khz(khz)?;
                }
            }
            let mut reports = Vec::new();
            for khz in speeds {
                let target = TargetArgs {
                    speed: Some(khz),
                    ..args.target.clone()
                };
                say(args.json, &format!("bench: SWD clock {khz} kHz"));
                let report = run_once(&args, &target)
                    .with_context(|| format!("bench at an SWD clock of {khz} kHz"))?;
                if !args.json {
                    eprintln!("{}", table(&report));
                }
                reports.push(report);
            }
            if args.json {
                json_runs(&reports)
            } else {
                speeds_table(&reports)
            }
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Every job once on a fresh session opened with `target`.
fn run_once(args: &BenchArgs, target: &TargetArgs) -> anyhow::Result<Report> {
    let board = Arc::new(target.load_board()?);
    let ext = board
        .external_flash
        .clone()
        .context("bench needs a board file with an [external_flash] section")?;
    let sim = target.sim;
    let (address, size) = match args.range.as_deref() {
        Some(&[a, n]) => (a, n),
        _ if sim => (ext.window, args.size),
        _ => anyhow::bail!(
            "on a real board, bench needs --range ADDR LEN inside the window ({:#010x}...) and \
             --yes: it erases and programs that range",
            ext.window
        ),
    };
    if !sim && !args.yes {
        anyhow::bail!(
            "bench erases and programs {size:#x} bytes at {address:#010x}: add --yes to confirm"
        );
    }
    if size == 0 || size as usize % SECTOR != 0 || address as usize % SECTOR != 0 {
        anyhow::bail!(
            "bench needs a range on 4 KiB boundaries: {size:#x} bytes at {address:#010x}"
        );
    }
    if address < ext.window {
        anyhow::bail!(
            "{address:#010x} is below the external flash window at {:#010x}",
            ext.window
        );
    }
    let spi_hz = apb_max_hz(ext.spi) / u64::from(ext.prescaler.max(1));

    let (source, handle) = target.source_with_sim(&board)?;
    // The last load's compression figures, from its progress events.
    let compression = Arc::new(std::sync::Mutex::new(None));
    let sink = compression.clone();
    let mut session = BoardSession::open_source(
        board.clone(),
        source,
        Arc::new(move |e: &FlashEvent| {
            if let FlashEvent::Compressed { bytes, sent, .. } = e {
                *sink.lock().unwrap_or_else(|p| p.into_inner()) = Some((*bytes, *sent));
            }
        }),
    )?;
    if sim {
        // Host time, not virtual: a loaded machine emulates slowly.
        let mib = u64::from(size).div_ceil(1 << 20);
        session.set_long_timeout(super::rsp::LONG_TIMEOUT + SIM_HOST_PER_MIB * mib as u32);
    }
    session.settle(true)?;
    let map = session.memory_map()?;
    let end = u64::from(address) + u64::from(size);
    if !map.iter().any(|e| {
        e.blocksize.is_some() && e.start == u64::from(ext.window) && end <= e.start + e.length
    }) {
        anyhow::bail!(
            "{size:#x} bytes at {address:#010x} do not fit in the external flash window (memory \
             map: {})",
            map.iter()
                .filter(|e| e.blocksize.is_some())
                .map(|e| format!("{:#010x}+{:#x}", e.start, e.length))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let ram = session.ram_ranges();
    let chunk = (session.packet_size()? / 2) as u32;
    let reading = || handle.as_ref().and_then(|h| h.read());
    let first = reading();
    // The SPI clock the stub runs at on the board's current APB clock (the
    // server picks the prescaler the same way, `wiring::session_br`).
    let spi_hz_at_reset = first.map(|r| {
        let pclk = if ext.spi == 1 { r.pclk2_hz } else { r.pclk1_hz };
        let br = extflash_gdb::extflash::wiring::session_br(&ext, pclk as u32);
        pclk >> (br + 1)
    });
    let profile = first.map(|r| (r.link, r.swd_hz));

    // What the range holds before the first job: a fresh virtual board
    // starts erased; anything else is erased first (not timed).
    if !(sim && target.sim_state.is_none()) {
        say(args.json, "bench: erasing the range first (not timed)");
        session.erase(std::slice::from_ref(&(u64::from(address)..end)))?;
    }
    let mut held = vec![0xFFu8; size as usize];
    let mut jobs = Vec::new();
    let mut timed = |session: &mut BoardSession,
                     name: &'static str,
                     bytes: u64,
                     (limit_ps, chip_ps): (Option<u64>, Option<u64>),
                     floor: &dyn Fn() -> Option<u64>,
                     job: &mut dyn FnMut(&mut BoardSession) -> anyhow::Result<()>|
     -> anyhow::Result<()> {
        let before = reading();
        let host = Instant::now();
        job(session).with_context(|| format!("bench job `{name}`"))?;
        let host_s = host.elapsed().as_secs_f64();
        let after = reading();
        let (virtual_s, round_trips, limit_s, chip_s, floor_s) = match (before, after) {
            (Some(b), Some(a)) => (
                Some((a.now_ps - b.now_ps) as f64 / PS_PER_S as f64),
                Some(a.counters.round_trips - b.counters.round_trips),
                secs(limit_ps),
                secs(chip_ps),
                secs(floor()),
            ),
            _ => (None, None, None, None, None),
        };
        let r = JobResult {
            name,
            bytes,
            virtual_s,
            host_s,
            limit_s,
            chip_s,
            sent_s: None,
            floor_s,
            round_trips,
        };
        say(args.json, &format!("bench: {}", row(&r)));
        jobs.push(r);
        Ok(())
    };
    let link_ps =
        |bytes: u64, write: bool| profile.map(|(p, swd)| link_transfer(p, swd, bytes, write).0);

    // How far the link can run ahead of the chip: the stream's slots.
    let ahead = slot_bytes(&ext);
    let sink = compression.clone();
    let mut load = |session: &mut BoardSession,
                    name: &'static str,
                    held: &mut Vec<u8>,
                    data: &[u8]|
     -> anyhow::Result<()> {
        let offset = (address - ext.window) as usize;
        let limits = if held[..] == data[..] {
            // Nothing to erase or program: the least is reading it back
            // for the comparison.
            let read = spi_read_ps(size.into(), spi_hz);
            (Some(read), Some(read))
        } else {
            let chip = chip_busy_ps(offset, held, data);
            (
                link_ps(bytes_to_send(held, data), true).map(|l| l.max(chip)),
                Some(chip),
            )
        };
        let plan = mmap::plan(
            &[Segment {
                address,
                data: data.to_vec(),
            }],
            &map,
            &ram,
        )?;
        *sink.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let send = bytes_to_send(held, data);
        let floor = || {
            let (p, swd) = profile?;
            if send == 0 {
                return None;
            }
            // Compressed records shrink the link's share by what crossed.
            let sent = sink
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .map(|(_, s)| s);
            let scale = sent.map_or(1.0, |s| s as f64 / send as f64);
            let link = |b: u64| link_transfer(p, swd, (b as f64 * scale) as u64, true).0;
            // The whole range is read first only when its first 64 KiB
            // hold the image already (extflash::commit's probe).
            let probe = BLOCK64.min(held.len());
            let first = if held[..probe] == data[..probe] {
                held.len()
            } else {
                probe
            };
            Some(floor_ps(offset, held, data, (first, spi_hz), ahead?, &link))
        };
        timed(session, name, size.into(), limits, &floor, &mut |s| {
            s.load(&plan)
        })?;
        held.copy_from_slice(data);
        Ok(())
    };
    let image = random_image(size as usize, SEED_LOAD);
    load(&mut session, "load", &mut held, &image)?;
    load(&mut session, "reload", &mut held, &image)?;
    drop(image);
    // Every page differs from the held image, so every block is erased.
    let other = random_image(size as usize, SEED_OVERWRITE);
    load(&mut session, "overwrite", &mut held, &other)?;
    drop(other);
    let assets = assets_image(size as usize, SEED_ASSETS);
    load(&mut session, "assets", &mut held, &assets)?;
    let assets_compression = compression.lock().unwrap_or_else(|p| p.into_inner()).take();

    let want = extflash_stub_abi::crc32_update(extflash_stub_abi::CRC32_INIT, &held);
    timed(
        &mut session,
        "crc",
        size.into(),
        {
            let read = Some(spi_read_ps(size.into(), spi_hz));
            (read, read)
        },
        &|| None,
        &mut |s| {
            let got = s.crc(address, size)?;
            anyhow::ensure!(got == want, "qCRC {got:08x}, image {want:08x}");
            Ok(())
        },
    )?;
    let n = size.min(DUMP_MAX);
    timed(
        &mut session,
        "dump",
        n.into(),
        (
            link_ps(n.into(), false),
            profile.map(|_| spi_read_ps(n.into(), spi_hz)),
        ),
        &|| None,
        &mut |s| {
            let data = s.read_in(address, n, chunk, None)?;
            anyhow::ensure!(
                data[..] == held[..n as usize],
                "the dump differs from the image"
            );
            Ok(())
        },
    )?;
    // Reset and halt: the core has just halted and no stub session is
    // resident.
    session.monitor("reset halt", &mut |_| {})?;
    for name in ["read-cold", "read-warm"] {
        timed(&mut session, name, 4, (None, None), &|| None, &mut |s| {
            let data = s.read_in(address, 4, chunk, None)?;
            anyhow::ensure!(data[..] == held[..4], "the read differs from the image");
            Ok(())
        })?;
    }
    session.close()?;

    // What compression could reach: the link time of what crossed.
    if let (Some((_, sent)), Some(j)) = (
        assets_compression,
        jobs.iter_mut().find(|j| j.name == "assets"),
    ) {
        j.sent_s = secs(link_ps(sent, true));
    }
    Ok(Report {
        link: profile.map_or("hardware".into(), |(p, _)| p.name().to_string()),
        address,
        size,
        swd_hz: profile
            .map(|(_, s)| s)
            .or(target.speed.map(|k| u64::from(k) * 1000)),
        spi_hz,
        spi_hz_at_reset,
        jobs,
        assets_compression,
        slot_bytes: ahead,
    })
}

fn secs(ps: Option<u64>) -> Option<f64> {
    ps.map(|l| l as f64 / PS_PER_S as f64)
}

/// Progress for people on stderr (not with --json, which scripts read).
fn say(json: bool, line: &str) {
    if !json {
        eprintln!("{line}");
    }
}

/// Highest APB clock of the bus an SPI sits on (RM0090: APB2 84 MHz for
/// SPI1, APB1 42 MHz for SPI2/3).
pub fn apb_max_hz(spi: u8) -> u64 {
    if spi == 1 {
        84_000_000
    } else {
        42_000_000
    }
}

/// SPI-bound time to read `bytes` (8 clocks a byte; the command bytes are
/// left out, so this stays a lower bound).
pub fn spi_read_ps(bytes: u64, spi_hz: u64) -> u64 {
    (u128::from(bytes) * 8 * u128::from(PS_PER_S) / u128::from(spi_hz.max(1))) as u64
}

/// SPI bytes a programmed page needs while the chip neither programs nor
/// erases: 06h (write enable), 02h with its 3 address bytes and the 256
/// data bytes, and for the verification 0Bh with 3 address bytes, the
/// dummy byte and the 256 bytes read back (W25Q64JV datasheet 8.2.6,
/// 8.2.13, 8.2.15; one data line: the STM32F4 SPI has no dual or quad
/// mode). Status polls are left out, so this stays a lower bound.
pub const PAGE_SPI_BYTES: u64 = 1 + (4 + PAGE as u64) + (5 + PAGE as u64);

/// SPI time of [`PAGE_SPI_BYTES`] at `spi_hz`.
pub fn page_spi_ps(spi_hz: u64) -> u64 {
    spi_read_ps(PAGE_SPI_BYTES, spi_hz)
}

/// Bytes that must cross the link for `new` to replace `old`: every page
/// that changes and is not all 0xFF (an erased page needs no data).
pub fn bytes_to_send(old: &[u8], new: &[u8]) -> u64 {
    old.chunks(PAGE)
        .zip(new.chunks(PAGE))
        .filter(|(o, n)| o != n && n.iter().any(|&b| b != 0xFF))
        .map(|(_, n)| n.len() as u64)
        .sum()
}

/// Bytes of records the stream's slots hold at once: how far the link can
/// run ahead of a chip that erases (`abi::layout::Layout::stream_slots` for
/// the board file's work area and the built-in stub).
pub fn slot_bytes(ext: &extflash_gdb::board::ExtFlashWiring) -> Option<u64> {
    use extflash_gdb::extflash::stub::StubImage;
    let stub = StubImage::builtin().ok()?;
    let (count, slot) =
        extflash_stub_abi::layout::layout(&ext.work_area, stub.bytes.len() as u32)?.stream_slots();
    let records = slot.checked_sub(extflash_stub_abi::stream::HEADER + 4)?;
    Some(u64::from(count) * u64::from(records))
}

/// The least this design can take to turn `old` into `new` (`offset`
/// bytes into the chip), the SPI reading at `spi_hz`:
/// - the first `first` bytes are read first (the block CRCs that find
///   unchanged and erased blocks: 64 KiB, or the whole range when those
///   hold the image already; the chip cannot be read while it erases or
///   programs, and the link has nothing to send before the plan);
/// - a block past them that needs no erase is blank: the stub reads it
///   whole before skipping its erase (`ERASE_UNLESS_BLANK`);
/// - per 64 KiB block, its erase if it needs one, then the larger of
///   programming its pages and the link time (`link(bytes)`) of its data
///   beyond the `ahead` bytes the slots took while it erased; a block
///   without an erase, the larger of programming and sending;
/// - each programmed page crosses the SPI twice while the chip can do
///   nothing else ([`page_spi_ps`]): its program instruction with the
///   data before the chip starts, and the read-back after it ends (the
///   stub's verification); a page that becomes all 0xFF is read back
///   once its block is erased; that time adds to the chip's share;
/// - never less than the link time of all the data.
pub fn floor_ps(
    offset: usize,
    old: &[u8],
    new: &[u8],
    (first, spi_hz): (usize, u64),
    ahead: u64,
    link: &dyn Fn(u64) -> u64,
) -> u64 {
    let len = old.len().min(new.len());
    let read_ps = spi_read_ps(first.min(len) as u64, spi_hz);
    let page_spi = page_spi_ps(spi_hz);
    let pages = |d: &[u8]| {
        d.chunks(PAGE)
            .filter(|p| p.iter().any(|&b| b != 0xFF))
            .count() as u64
    };
    let (mut blocks, mut sent, mut at) = (0u64, 0u64, 0usize);
    while at < len {
        let end = len.min(at + BLOCK64 - (offset + at) % BLOCK64);
        let (o, n) = (&old[at..end], &new[at..end]);
        let chip = chip_busy_ps(offset + at, o, n);
        let send = bytes_to_send(o, n);
        let changed = o
            .chunks(PAGE)
            .zip(n.chunks(PAGE))
            .filter(|(a, b)| a != b)
            .count() as u64;
        blocks += if chip <= changed * T_PP_PS {
            let back = chip / T_PP_PS * page_spi;
            let blank = if at >= first && send > 0 {
                spi_read_ps((end - at) as u64, spi_hz)
            } else {
                0
            };
            (chip + back + blank).max(if send > 0 { link(send) } else { 0 })
        } else {
            let program = pages(n) * T_PP_PS;
            let late = send.saturating_sub(ahead);
            // Pages that become 0xFF are read back too (`VERIFY_BLANK`).
            let blank = o
                .chunks(PAGE)
                .zip(n.chunks(PAGE))
                .filter(|(a, b)| a != b && b.iter().all(|&x| x == 0xFF))
                .map(|(_, b)| b.len() as u64)
                .sum();
            let busy = program + pages(n) * page_spi + spi_read_ps(blank, spi_hz);
            chip.saturating_sub(program) + busy.max(if late > 0 { link(late) } else { 0 })
        };
        sent += send;
        at = end;
    }
    read_ps + blocks.max(if sent > 0 { link(sent) } else { 0 })
}

/// Least W25Q64JV BUSY time (typical values) that turns `old` into `new`,
/// which start `offset` bytes into the chip (4 KiB aligned; bytes past the
/// shorter of the two are ignored). Per 64 KiB block, the cheapest of one
/// 64 KiB erase, or per 32 KiB half one 32 KiB erase, or per 4 KiB sector
/// an erase (needed when a bit goes from 0 to 1) or programming only the
/// changed pages. After an erase every page that is not all 0xFF is
/// programmed. Bytes of a block outside the range count as erased and
/// unchanged, so the result stays a lower bound.
pub fn chip_busy_ps(offset: usize, old: &[u8], new: &[u8]) -> u64 {
    let len = old.len().min(new.len());
    let lead = offset % BLOCK64;
    let span = (lead + len).div_ceil(BLOCK64) * BLOCK64;
    let mut o = vec![0xFFu8; span];
    let mut n = vec![0xFFu8; span];
    o[lead..lead + len].copy_from_slice(&old[..len]);
    n[lead..lead + len].copy_from_slice(&new[..len]);
    let pages = |d: &[u8]| {
        d.chunks(PAGE)
            .filter(|p| p.iter().any(|&b| b != 0xFF))
            .count() as u64
    };
    let after_erase = |r: std::ops::Range<usize>| pages(&n[r]) * T_PP_PS;
    let sector = |at: usize| {
        let r = at..at + SECTOR;
        let erase = T_SE_PS + after_erase(r.clone());
        if o[r.clone()]
            .iter()
            .zip(&n[r.clone()])
            .any(|(a, b)| b & !a != 0)
        {
            return erase;
        }
        let changed = o[r.clone()]
            .chunks(PAGE)
            .zip(n[r].chunks(PAGE))
            .filter(|(a, b)| a != b)
            .count() as u64;
        erase.min(changed * T_PP_PS)
    };
    let half = |at: usize| {
        let sectors: u64 = (at..at + BLOCK32).step_by(SECTOR).map(sector).sum();
        sectors.min(T_BE32_PS + after_erase(at..at + BLOCK32))
    };
    (0..span)
        .step_by(BLOCK64)
        .map(|at| (half(at) + half(at + BLOCK32)).min(T_BE64_PS + after_erase(at..at + BLOCK64)))
        .sum()
}

/// Time and round trips for moving `bytes` between host and target RAM in
/// one 32-bit memory call under `profile` at `swd_hz`, as the board charges
/// it: probe-rs's ADI layer writes CSW once, then TAR and a DRW block per
/// 1 KiB; each SWD transaction costs its bits, each round trip the
/// profile's latency. The best case for the link, so a lower bound.
pub fn link_transfer(profile: LinkProfile, swd_hz: u64, bytes: u64, write: bool) -> (u64, u64) {
    // AHB-AP CSW (0x00), TAR (0x04), DRW (0x0C).
    const CSW_32: u32 = 0x2300_0052;
    let mut link = Link::new(profile);
    let mut trips = link.charge(DapOp::Write(Reg::Ap(0x00), CSW_32));
    let mut transactions = 1u64;
    let words = bytes.div_ceil(4);
    let mut at = 0x2000_0000u32;
    let mut done = 0u64;
    while done < words {
        let n = (words - done).min(256);
        trips += link.charge(DapOp::Write(Reg::Ap(0x04), at));
        let op = if write {
            DapOp::WriteBlock(Reg::Ap(0x0C), n as usize)
        } else {
            DapOp::ReadBlock(Reg::Ap(0x0C), n as usize)
        };
        trips += link.charge(op);
        transactions += 1 + n;
        done += n;
        at = at.wrapping_add(n as u32 * 4);
    }
    trips += link.charge(DapOp::Flush);
    let wire = u128::from(transactions * SWD_BITS_PER_TRANSACTION) * u128::from(PS_PER_S)
        / u128::from(swd_hz.max(1));
    (wire as u64 + trips * profile.round_trip_ps(), trips)
}

pub fn random_image(size: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; size];
    Prng::new(seed).fill(&mut out);
    out
}

/// Realistic assets: per 16 KiB, 8 KiB of random data (compressed
/// textures, code), a 4 KiB run of 0xFF (gaps, padding) and 4 KiB of a
/// repetitive table (fixed-size records with a counter).
pub fn assets_image(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Prng::new(seed);
    let mut out = vec![0u8; size];
    for (i, unit) in out.chunks_mut(16 * 1024).enumerate() {
        let (random, rest) = unit.split_at_mut(unit.len().min(8 * 1024));
        rng.fill(random);
        let (ff, table) = rest.split_at_mut(rest.len().min(4 * 1024));
        ff.fill(0xFF);
        for (j, rec) in table.chunks_mut(16).enumerate() {
            let record = [
                (i as u32).to_le_bytes(),
                (j as u32).to_le_bytes(),
                0x3F80_0000u32.to_le_bytes(),
                0u32.to_le_bytes(),
            ]
            .concat();
            rec.copy_from_slice(&record[..rec.len()]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = PS_PER_S / 1000;

    #[test]
    fn chip_busy_for_a_blank_64k_block_is_programming_only() {
        let old = vec![0xFF; BLOCK64];
        let new = random_image(BLOCK64, 1);
        assert_eq!(chip_busy_ps(0, &old, &new), 256 * T_PP_PS);
    }

    #[test]
    fn chip_busy_over_different_data_takes_the_64k_erase() {
        let old = random_image(BLOCK64, 1);
        let new = random_image(BLOCK64, 2);
        assert_eq!(chip_busy_ps(0, &old, &new), 150 * MS + 256 * T_PP_PS);
    }

    #[test]
    fn chip_busy_cases_from_the_datasheet() {
        let old = random_image(BLOCK64, 1);
        // Unchanged: nothing.
        assert_eq!(chip_busy_ps(0, &old, &old), 0);
        // One bit 1 -> 0 in one page: one page program, no erase.
        let mut new = old.clone();
        let i = new.iter().position(|&b| b != 0).unwrap();
        new[i] &= new[i] - 1;
        assert_eq!(chip_busy_ps(0, &old, &new), T_PP_PS);
        // One bit 0 -> 1: erase that sector and program its 16 pages.
        let mut new = old.clone();
        let i = new.iter().position(|&b| b != 0xFF).unwrap();
        new[i] = 0xFF;
        assert_eq!(chip_busy_ps(0, &old, &new), 45 * MS + 16 * T_PP_PS);
        // Everything to 0xFF: one 64 KiB erase, nothing to program.
        assert_eq!(chip_busy_ps(0, &old, &vec![0xFF; BLOCK64]), 150 * MS);
        // Half to 0xFF, half unchanged: one 32 KiB erase.
        let mut new = old.clone();
        new[..BLOCK32].fill(0xFF);
        assert_eq!(chip_busy_ps(0, &old, &new), 120 * MS);
    }

    #[test]
    fn chip_busy_of_an_unaligned_range_counts_only_its_sectors() {
        let old = random_image(SECTOR, 1);
        let new = random_image(SECTOR, 2);
        // One sector in the middle of a 64 KiB block.
        assert_eq!(chip_busy_ps(5 * SECTOR, &old, &new), 45 * MS + 16 * T_PP_PS);
    }

    #[test]
    fn floor_adds_the_first_read_and_the_link_beyond_the_slots_during_erases() {
        // 1 ms a KiB over the link, no fixed cost; SPI at 42 MHz.
        let link = |b: u64| b * MS / 1024;
        let (spi, ahead) = (42_000_000, 16 * 1024);
        let whole = 2 * BLOCK64;
        let read = spi_read_ps(whole as u64, spi);
        let back = page_spi_ps(spi);
        let old = random_image(2 * BLOCK64, 1);
        let new = random_image(2 * BLOCK64, 2);
        // Every block erased (150 ms), then 256 pages (102.4 ms), each read
        // back, against the 48 KiB the slots did not take during the erase
        // (48 ms).
        let f = floor_ps(0, &old, &new, (whole, spi), ahead, &link);
        assert_eq!(f, read + 2 * (150 * MS + 256 * (T_PP_PS + back)));
        // Only the first block read first: less of the read.
        let f64k = floor_ps(0, &old, &new, (BLOCK64, spi), ahead, &link);
        assert_eq!(f - f64k, read - spi_read_ps(BLOCK64 as u64, spi));
        // A slow link: 4 ms a KiB, 192 ms for the late 48 KiB.
        let slow = |b: u64| 4 * b * MS / 1024;
        let f = floor_ps(0, &old, &new, (whole, spi), ahead, &slow);
        assert_eq!(f, read + 2 * (150 * MS + 192 * MS));
        // Onto an erased chip: no erase, the link alone (4 ms a KiB).
        let blank = vec![0xFF; 2 * BLOCK64];
        let f = floor_ps(0, &blank, &new, (whole, spi), ahead, &slow);
        assert_eq!(f, read + 512 * MS);
        // With the fast link the chip decides, and the second block, not
        // read first, is read whole before its erase is skipped.
        let f = floor_ps(0, &blank, &new, (BLOCK64, spi), ahead, &link);
        let block = 256 * (T_PP_PS + back);
        assert_eq!(
            f,
            spi_read_ps(BLOCK64 as u64, spi) + 2 * block + spi_read_ps(BLOCK64 as u64, spi)
        );
        // Pages that become 0xFF are read back after the erase: the
        // second half of each block, with the fast link.
        let mut half = new.clone();
        for b in half.chunks_mut(BLOCK64) {
            b[BLOCK64 / 2..].fill(0xFF);
        }
        let f = floor_ps(0, &old, &half, (whole, spi), ahead, &link);
        let back_half = spi_read_ps(BLOCK64 as u64 / 2, spi);
        assert_eq!(
            f,
            read + 2 * (150 * MS + 128 * (T_PP_PS + back) + back_half)
        );
        // Nothing changes: only the read.
        assert_eq!(floor_ps(0, &new, &new, (whole, spi), ahead, &slow), read);
        // Never below the chip's own time or the link's for all the data.
        for (o, n) in [(&old, &new), (&blank, &new)] {
            let f = floor_ps(0, o, n, (0, spi), ahead, &slow);
            assert!(f >= chip_busy_ps(0, o, n) && f >= slow(bytes_to_send(o, n)));
        }
    }

    #[test]
    fn a_page_needs_its_program_and_its_read_back_on_the_spi() {
        // 06h; 02h, 3 address bytes, 256 data; 0Bh, 3 address bytes, a
        // dummy, 256 data: 522 bytes, 4176 clocks.
        assert_eq!(PAGE_SPI_BYTES, 522);
        assert_eq!(page_spi_ps(42_000_000), 4176 * PS_PER_S / 42_000_000);
        assert_eq!(page_spi_ps(21_000_000), 2 * page_spi_ps(42_000_000));
    }

    #[test]
    fn bytes_to_send_skip_unchanged_and_erased_pages() {
        let old = random_image(4 * PAGE, 1);
        let mut new = old.clone();
        new[PAGE..2 * PAGE].fill(0xFF);
        new[3 * PAGE] ^= 1;
        assert_eq!(bytes_to_send(&old, &new), PAGE as u64);
        assert_eq!(bytes_to_send(&vec![0xFF; 4 * PAGE], &old), 4 * PAGE as u64);
    }

    #[test]
    fn link_transfer_follows_the_documented_formulas() {
        // 64 KiB = 16384 words: 16384 + 64 TAR writes + 1 CSW transactions.
        let wire = |hz: u64| (16384 + 64 + 1) * SWD_BITS_PER_TRANSACTION * PS_PER_S / hz;
        let (ps, trips) = link_transfer(LinkProfile::Ideal, 4_000_000, 65536, true);
        assert_eq!(ps, wire(4_000_000));
        assert_eq!(
            trips, 128,
            "ideal: the queued TAR write and the block, per 1 KiB"
        );
        // ST-Link: writes 65532 bytes a command, 2 round trips each.
        let (ps, trips) = link_transfer(LinkProfile::StlinkV2, 1_800_000, 65536, true);
        assert_eq!(trips, 4);
        assert_eq!(
            ps,
            wire(1_800_000) + 4 * LinkProfile::StlinkV2.round_trip_ps()
        );
        // Reads 6144 bytes a command: ceil(65536 / 6144) = 11 commands.
        let (_, trips) = link_transfer(LinkProfile::StlinkV2, 1_800_000, 65536, false);
        assert_eq!(trips, 22);
    }

    #[test]
    fn spi_read_of_one_mib_at_21_mhz() {
        let ps = spi_read_ps(1 << 20, 21_000_000);
        assert_eq!(ps, (8u128 << 20) as u64 * PS_PER_S / 21_000_000);
        assert_eq!(apb_max_hz(1) / 4, 21_000_000);
    }

    #[test]
    fn images_are_deterministic_and_assets_have_their_mix() {
        assert_eq!(random_image(1000, 7), random_image(1000, 7));
        assert_ne!(random_image(64, 7), random_image(64, 8));
        let a = assets_image(64 * 1024, 3);
        let ff = a
            .chunks(PAGE)
            .filter(|p| p.iter().all(|&b| b == 0xFF))
            .count();
        assert_eq!(ff, 64 * 1024 / 4 / PAGE, "a quarter is 0xFF pages");
        assert_eq!(&a[12 * 1024..12 * 1024 + 4], &0u32.to_le_bytes());
        assert_eq!(&a[12 * 1024 + 20..12 * 1024 + 24], &1u32.to_le_bytes());
    }

    fn job(name: &'static str, v: f64, l: Option<f64>, trips: u64) -> JobResult {
        JobResult {
            name,
            bytes: 1,
            virtual_s: Some(v),
            host_s: 1.0,
            limit_s: l,
            chip_s: l.map(|l| l / 2.0),
            sent_s: None,
            floor_s: None,
            round_trips: Some(trips),
        }
    }

    fn report(jobs: Vec<JobResult>) -> Report {
        Report {
            link: "stlink-v2".into(),
            address: 0x9000_0000,
            size: 4096,
            swd_hz: Some(4_600_000),
            spi_hz: 42_000_000,
            spi_hz_at_reset: None,
            assets_compression: None,
            slot_bytes: Some(26 * 1024),
            jobs,
        }
    }

    fn find<'a>(g: &'a [Goal], job: &str) -> &'a Goal {
        g.iter()
            .find(|g| g.job == job)
            .unwrap_or_else(|| panic!("no goal for {job}: {g:?}"))
    }

    #[test]
    fn goals_compare_each_figure_with_the_issue() {
        let mut assets = job("assets", 8.2, Some(10.0), 50);
        // Chip 5 s, compressed link 8 s: the link decides, 8.2 / 8.
        assets.sent_s = Some(8.0);
        let r = report(vec![
            job("load", 10.4, Some(9.5), 100),
            job("reload", 0.6, Some(0.1), 10),
            job("overwrite", 11.0, Some(10.0), 100),
            assets,
            job("crc", 0.106, Some(0.1), 2),
            job("dump", 1.2, Some(1.0), 20),
            job("read-cold", 0.0431, None, 97),
            job("read-warm", 0.001, None, 4),
        ]);
        let g = goals(&r);
        let jobs: Vec<_> = g.iter().map(|g| g.job).collect();
        assert_eq!(
            jobs,
            [
                "load",
                "overwrite",
                "dump",
                "assets",
                "reload",
                "crc",
                "read-cold",
                "read-warm"
            ]
        );
        let met = |job| find(&g, job).met;
        assert!(met("load"), "10.4 / 9.5 = 1.095: {g:?}");
        assert!(met("overwrite"), "1.10 exactly");
        assert!(!met("dump"), "1.20");
        assert!(met("assets"));
        assert!(!met("crc"), "1.06");
        assert!(met("read-cold"));
        assert!(!met("read-warm"), "4 round trips");
        // reload: 5 % of 10.4 s = 0.52 s beats 1.10 x 0.1 s; 0.6 s misses.
        let reload = find(&g, "reload");
        assert!(
            (reload.max - 0.52).abs() < 1e-12 && !reload.met,
            "{reload:?}"
        );
        assert_eq!(reload.bound, None);
        let a = find(&g, "assets");
        assert!(
            (a.value - 1.025).abs() < 1e-12 && a.bound.is_none(),
            "{a:?}"
        );
        assert_eq!(
            find(&g, "dump").to_string(),
            "dump: 1.20 x its limit (goal <= 1.10): not met"
        );
        assert_eq!(
            find(&g, "read-warm").to_string(),
            "read-warm: 4 round trips (goal <= 3 round trips, issue 9): not met"
        );
    }

    #[test]
    fn goals_name_the_physical_bound_where_it_decides() {
        // assets: the chip (5 s) above the compressed link (3 s).
        let mut assets = job("assets", 5.2, Some(10.0), 50);
        assets.sent_s = Some(3.0);
        // reload: reading back over SPI (1.6 s) is more than 5 % of load.
        // overwrite: this design's floor (11.5 s) is above 1.10 x 10 s.
        let mut overwrite = job("overwrite", 12.0, Some(10.0), 100);
        overwrite.floor_s = Some(11.5);
        let mut load = job("load", 28.0, Some(27.0), 100);
        load.floor_s = Some(28.5);
        let r = report(vec![
            load,
            job("reload", 1.7, Some(1.6), 10),
            overwrite,
            assets,
        ]);
        let g = goals(&r);
        let o = find(&g, "overwrite");
        let b = o.bound.as_deref().unwrap_or_default();
        assert!(
            !o.met && b.starts_with("bound: 11.500 s = 1.150 x"),
            "{o:?}"
        );
        assert!(b.contains("26 KiB ahead"), "{b}");
        assert!(
            b.contains("crosses the SPI twice")
                && b.contains("(99 us a page")
                && b.contains("42.0 MHz"),
            "{b}"
        );
        assert_eq!(
            find(&g, "load").bound,
            None,
            "28.5 / 27 = 1.06: below the goal"
        );
        let a = find(&g, "assets");
        assert!((a.value - 1.04).abs() < 1e-12 && a.met, "{a:?}");
        assert!(
            a.bound.as_deref().unwrap().contains("busy time (5.000 s)"),
            "{a:?}"
        );
        let rl = find(&g, "reload");
        assert!((rl.max - 1.76).abs() < 1e-12 && rl.met, "{rl:?}");
        assert!(rl.bound.as_deref().unwrap().contains("1.600 s"), "{rl:?}");
        // Jobs without virtual time (hardware) have no goals.
        let mut hw = r;
        for j in &mut hw.jobs {
            j.virtual_s = None;
        }
        assert!(goals(&hw).is_empty());
    }

    #[test]
    fn default_speeds_are_ones_the_profile_runs_at() {
        assert_eq!(profile_speeds(LinkProfile::StlinkV2), [4600, 1800, 950]);
        assert_eq!(profile_speeds(LinkProfile::Ideal), [4000]);
        for p in LinkProfile::ALL {
            for k in profile_speeds(p) {
                assert_eq!(p.supported_khz(k), Ok(k), "{p} {k} kHz");
            }
        }
    }

    #[test]
    fn speeds_table_has_a_column_per_clock_and_lists_missed_goals() {
        let at = |khz: u64, load: f64| Report {
            swd_hz: Some(khz * 1000),
            ..report(vec![
                job("load", load, Some(1.0), 10),
                job("read-cold", 0.0431, None, 97),
            ])
        };
        let t = speeds_table(&[at(4600, 1.2), at(1800, 1.05)]);
        let lines: Vec<_> = t.lines().collect();
        assert!(
            lines[1].contains("4600 kHz") && lines[1].contains("1800 kHz"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("load") && lines[2].contains("1.20"),
            "{t}"
        );
        assert!(lines[2].contains("1.05"), "{t}");
        assert!(
            lines[3].starts_with("read-cold") && lines[3].contains("43.1"),
            "{t}"
        );
        assert_eq!(lines[4], "goals at 4600 kHz: 1 of 2 met");
        assert!(lines[5].contains("load: 1.20 x"), "{t}");
        assert_eq!(lines[6], "goals at 1800 kHz: 2 of 2 met");
    }

    #[test]
    fn json_is_one_object_with_nulls_for_unknowns() {
        let r = Report {
            link: "hardware".into(),
            address: 0x9000_0000,
            size: 4096,
            swd_hz: None,
            spi_hz: 21_000_000,
            spi_hz_at_reset: None,
            assets_compression: None,
            slot_bytes: None,
            jobs: vec![JobResult {
                name: "load",
                bytes: 4096,
                virtual_s: None,
                host_s: 0.5,
                limit_s: None,
                chip_s: None,
                sent_s: None,
                floor_s: None,
                round_trips: None,
            }],
        };
        assert_eq!(
            json(&r),
            "{\"link\":\"hardware\",\"address\":2415919104,\"size\":4096,\"swd_hz\":null,\
             \"spi_hz\":21000000,\"spi_hz_at_reset\":null,\"jobs\":[{\"name\":\"load\",\
             \"bytes\":4096,\"virtual_s\":null,\"host_s\":0.5,\"limit_s\":null,\"ratio\":null,\
             \"chip_s\":null,\"sent_s\":null,\"floor_s\":null,\"round_trips\":null}],\
             \"assets_compression\":null,\"goals\":[]}"
        );
    }

    #[test]
    fn json_runs_carry_each_clock_and_escape_names() {
        let mut a = report(vec![job("load", 1.2, Some(1.0), 10)]);
        a.link = "odd \"name\"".into();
        a.assets_compression = Some((10, 4));
        let b = Report {
            swd_hz: Some(1_800_000),
            ..report(vec![job("load", 1.0, Some(1.0), 10)])
        };
        let v: serde_json::Value = serde_json::from_str(&json_runs(&[a, b])).unwrap();
        let runs = v["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0]["link"], "odd \"name\"");
        assert_eq!(runs[0]["swd_hz"], 4_600_000);
        assert_eq!(runs[1]["swd_hz"], 1_800_000);
        assert_eq!(runs[0]["assets_compression"]["sent_bytes"], 4);
        assert_eq!(runs[0]["jobs"][0]["ratio"], 1.2);
        assert_eq!(runs[0]["goals"][0]["met"], false);
        assert_eq!(runs[1]["goals"][0]["met"], true);
    }
}

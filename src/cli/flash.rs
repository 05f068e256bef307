//! `flash FILE [--verify] [--reset] [--base ADDR]`: GDB's `load` of an ELF,
//! Intel HEX, Motorola S-record or raw binary through the in-process server, then optionally
//! `compare-sections` (qCRC per section) and a reset that lets the core run.

use std::path::PathBuf;

use super::image::{self, Segment};
use super::mmap;
use super::options::{parse_u32, TargetArgs};
use super::progress::{rate, Progress, Stopwatch};
use super::session::BoardSession;

#[derive(clap::Args, Debug)]
pub struct FlashArgs {
    /// ELF, Intel HEX (`.hex`), Motorola S-records (`.s19`, `.srec`, `.mot`)
    /// or raw binary (needs --base).
    pub file: PathBuf,
    /// Check every section by on-target CRC after programming.
    #[arg(long)]
    pub verify: bool,
    /// Reset the chip and let it run afterwards.
    #[arg(long)]
    pub reset: bool,
    /// Load address of a raw binary.
    #[arg(long, value_name = "ADDR", value_parser = parse_u32)]
    pub base: Option<u32>,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run(args: FlashArgs) -> anyhow::Result<()> {
    // Every check on the file happens before the probe is opened.
    let segments = image::load(&args.file, args.base)?;
    let progress = Progress::new();
    let mut session = BoardSession::open(&args.target, progress.sink())?;
    session.settle(true)?;
    let map = session.memory_map()?;
    let plan = mmap::plan(&segments, &map, &session.ram_ranges())?;
    let ram_bytes: usize = plan.ram.iter().map(|s| s.data.len()).sum();

    let clock = Stopwatch::start();
    session.load(&plan)?;
    let elapsed = clock.elapsed();
    let t = progress.totals();
    println!(
        "flashed {}: erased {} bytes, programmed {} bytes, skipped {} unchanged bytes, wrote \
         {ram_bytes} bytes of RAM in {:.2} s ({:.1} KB/s)",
        args.file.display(),
        t.erased,
        t.programmed,
        t.skipped,
        elapsed.as_secs_f64(),
        rate(t.programmed + ram_bytes as u64, elapsed)
    );
    if let Some(board) = t.board_busy {
        // The board's own clock (virtual time on the virtual board): what
        // the flash work takes on the desk.
        println!(
            "board time of the flash work: {:.2} s ({:.1} KB/s)",
            board.as_secs_f64(),
            rate(t.programmed, board)
        );
    }

    if args.verify {
        let mismatched = verify_segments(&mut session, &segments)?;
        if mismatched > 0 {
            anyhow::bail!("verify failed: {mismatched} section(s) differ from the file");
        }
    }
    if args.reset {
        session.monitor("reset run", &mut |_| {})?;
        println!("reset; core running");
        session.detach_running()
    } else {
        session.close()
    }
}

/// Compare every segment by on-target CRC (qCRC), printing one line per
/// segment; returns the number that differ.
pub fn verify_segments(session: &mut BoardSession, segments: &[Segment]) -> anyhow::Result<usize> {
    let mut mismatched = 0;
    for s in segments {
        let want = extflash_stub_abi::crc32_update(extflash_stub_abi::CRC32_INIT, &s.data);
        let got = session.crc(s.address, s.data.len() as u32)?;
        let verdict = if got == want {
            "matched"
        } else {
            mismatched += 1;
            "MISMATCHED"
        };
        println!(
            "  {:#010x}..{:#010x} ({} bytes): {verdict} (crc {got:08x}, file {want:08x})",
            s.address,
            s.end(),
            s.data.len()
        );
    }
    Ok(mismatched)
}

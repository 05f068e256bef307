//! `erase [--chip-erase | ADDR LEN]`: a range through `vFlashErase` + `vFlashDone`
//! (rounded out to the memory map's blocks, as GDB rounds), or the whole
//! external chip through `monitor flash erase-all`.

use super::image::Segment;
use super::mmap;
use super::options::{parse_len, parse_u32, TargetArgs};
use super::progress::{Progress, Stopwatch};
use super::session::BoardSession;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["chip_erase", "address"])))]
pub struct EraseArgs {
    /// Erase the whole external flash (chip erase; up to 100 s on a
    /// W25Q64JV). Not to be confused with `--chip`, which names the
    /// probe-rs target, as for `serve`.
    #[arg(long, visible_alias = "all", conflicts_with_all = ["address", "len"])]
    pub chip_erase: bool,
    /// Start address (rounded down to its erase block).
    #[arg(value_parser = parse_u32, requires = "len")]
    pub address: Option<u32>,
    /// Bytes (rounded up to the end of the last erase block).
    #[arg(value_parser = parse_len)]
    pub len: Option<u32>,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run(args: EraseArgs) -> anyhow::Result<()> {
    let progress = Progress::new();
    let mut session = BoardSession::open(&args.target, progress.sink())?;
    session.settle(true)?;
    let clock = Stopwatch::start();
    if args.chip_erase {
        progress.line("erasing the whole external flash...");
        // The worker's events report it as it runs; the console repeats them.
        session.monitor("flash erase-all", &mut |_| {})?;
    } else {
        let (Some(address), Some(len)) = (args.address, args.len) else {
            anyhow::bail!("give --chip-erase or ADDR LEN");
        };
        if len == 0 {
            anyhow::bail!("nothing to erase: LEN is 0");
        }
        let map = session.memory_map()?;
        // Plan as if writing the range, keep only the erases.
        let probe = Segment {
            address,
            data: vec![0; len as usize],
        };
        let plan = mmap::plan(&[probe], &map, &[]).map_err(|e| match e {
            mmap::MapError::OutsideRegions { address, len } => anyhow::anyhow!(
                "{len:#x} bytes at {address:#010x} are not flash (internal flash or the \
                 external-flash window); nothing was erased"
            ),
            e => e.into(),
        })?;
        for r in &plan.erases {
            println!(
                "erasing {:#010x}..{:#010x} ({} KiB)",
                r.start,
                r.end,
                (r.end - r.start) / 1024
            );
        }
        session.erase(&plan.erases)?;
    }
    let t = progress.totals();
    println!(
        "erased {} bytes in {:.2} s",
        t.erased,
        clock.elapsed().as_secs_f64()
    );
    session.close()
}

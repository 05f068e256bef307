//! `verify FILE`: on-target CRC (qCRC) of every section of a file, as GDB's
//! `compare-sections`; non-zero exit when any differs.

use std::path::PathBuf;

use super::flash::verify_segments;
use super::image;
use super::options::{parse_u32, TargetArgs};
use super::progress::Progress;
use super::session::BoardSession;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// ELF, Intel HEX, S-records or raw binary (needs --base).
    pub file: PathBuf,
    /// Load address of a raw binary.
    #[arg(long, value_name = "ADDR", value_parser = parse_u32)]
    pub base: Option<u32>,
    /// Reset the chip and halt it at the reset vector before starting
    /// (`flash`, `erase` and `selftest` always do).
    #[arg(long)]
    pub reset_halt: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let segments = image::load(&args.file, args.base)?;
    let progress = Progress::new();
    let mut session = BoardSession::open(&args.target, progress.sink())?;
    session.settle(args.reset_halt)?;
    println!("verifying {}:", args.file.display());
    let mismatched = verify_segments(&mut session, &segments)?;
    session.close()?;
    if mismatched > 0 {
        anyhow::bail!(
            "{mismatched} of {} section(s) differ from {}",
            segments.len(),
            args.file.display()
        );
    }
    println!("all {} section(s) match", segments.len());
    Ok(())
}

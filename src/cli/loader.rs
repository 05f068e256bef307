//! `loader --format stldr|flm|probe-rs [--board FILE] -o PATH`: write a flash
//! loader for another tool (STM32CubeProgrammer, Keil/pyOCD, probe-rs) for
//! the board file's wiring (`extflash_gdb::loader`). Needs no probe.

use std::path::PathBuf;

use anyhow::Context as _;
use extflash_gdb::board::{Board, DEFAULT_BOARD_NAME};
use extflash_gdb::loader::{self, Format};

#[derive(clap::Args, Debug)]
pub struct LoaderArgs {
    /// stldr (STM32CubeProgrammer, ST-LINK_gdbserver), flm (CMSIS-Pack:
    /// Keil, pyOCD) or probe-rs (target description YAML).
    #[arg(long, value_enum)]
    pub format: Format,
    /// Board file [default: the built-in memory-maps/stm32f407ve-w25q64jv.toml].
    #[arg(long, value_name = "FILE")]
    pub board: Option<PathBuf>,
    /// Where to write the loader.
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
}

pub fn run(args: LoaderArgs) -> anyhow::Result<()> {
    let (board, name) = match &args.board {
        Some(p) => (Board::from_file(p)?, p.display().to_string()),
        None => (Board::builtin(), format!("{DEFAULT_BOARD_NAME} (built in)")),
    };
    let format = clap::ValueEnum::to_possible_value(&args.format)
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let bytes = loader::generate(&board, args.format)
        .with_context(|| format!("cannot make a {format} loader for {name}"))?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let spec = loader::Spec::from_board(&board)?;
    println!(
        "wrote {} ({} bytes): {format} loader for {} at {:#010x}, {} KiB, from {name}",
        args.output.display(),
        bytes.len(),
        spec.name,
        spec.window,
        spec.size >> 10,
    );
    if args.format == Format::ProbeRs {
        println!(
            "use: probe-rs run --chip-description-path {} --chip {} app.elf",
            args.output.display(),
            loader::probe_rs::variant_name(&spec)
        );
    }
    Ok(())
}

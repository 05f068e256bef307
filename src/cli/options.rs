//! Options every board subcommand shares with `serve`: the board file, the
//! probe (or `--sim`), and how to attach.

use std::path::PathBuf;

use extflash_gdb::board::{Board, DEFAULT_BOARD_NAME};
use extflash_gdb::server::SessionSource;

#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// Drive the virtual board instead of a real probe.
    #[arg(long)]
    pub sim: bool,
    /// Back the virtual board's flash with files in DIR (needs --sim), so
    /// consecutive commands see the same flash.
    #[arg(long, value_name = "DIR", requires = "sim")]
    pub sim_state: Option<PathBuf>,
    /// Probe link the virtual board charges its clock for: ideal,
    /// stlink-v2 (a typical desk) or cmsis-dap-v2 (needs --sim).
    #[arg(
        long,
        value_name = "PROFILE",
        default_value = "stlink-v2",
        requires = "sim"
    )]
    pub sim_link: extflash_gdb::sim::LinkProfile,
    /// Let the virtual board's running core keep up with host time between
    /// probe calls (an interactive, free-running board). Without it virtual
    /// time and counters are the same on every run of the same job.
    #[arg(long, requires = "sim")]
    pub sim_realtime: bool,
    /// Emulate every iteration of the core's wait loops instead of jumping
    /// over them (same results, slower on the host; for comparison).
    #[arg(long, requires = "sim")]
    pub sim_no_fast_forward: bool,
    /// Enforce the RM0090 rules of the virtual board's peripherals: a core
    /// that breaks one locks up, a debugger access that breaks one fails
    /// (without it they are logged as warnings, target `sim`).
    #[arg(long, requires = "sim")]
    pub sim_strict: bool,
    /// Faults of the virtual board, comma-separated: stuck-busy,
    /// wel-never-set, no-chip, protected, locked, worn-bit.
    #[arg(long, value_name = "LIST", value_parser = extflash_gdb::sim::SimFault::parse_list, requires = "sim")]
    pub sim_fault: Option<extflash_gdb::sim::Faults>,
    /// How the virtual board is actually wired (a board file) [default: the
    /// --board file]. --board stays what the server believes, so a
    /// difference shows what wrong wiring looks like.
    #[arg(long, value_name = "FILE", requires = "sim")]
    pub sim_board: Option<PathBuf>,
    /// probe-rs target name [default: the board file's `chip`].
    #[arg(long)]
    pub chip: Option<String>,
    /// Probe to use, as VID:PID[:SERIAL] (hex VID/PID).
    #[arg(long, value_name = "VID:PID[:SERIAL]", conflicts_with = "sim")]
    pub probe: Option<String>,
    /// SWD clock in kHz, rounded down to what the probe supports [default:
    /// the probe's own; with --sim the link profile's, 1800 for stlink-v2].
    #[arg(long, value_name = "KHZ")]
    pub speed: Option<u32>,
    /// Hold the chip in reset while attaching (for firmware that disables SWD).
    #[arg(long)]
    pub connect_under_reset: bool,
    /// Board file [default: the built-in memory-maps/stm32f407ve-w25q64jv.toml].
    #[arg(long, value_name = "FILE")]
    pub board: Option<PathBuf>,
}

impl TargetArgs {
    pub fn load_board(&self) -> anyhow::Result<Board> {
        Ok(match &self.board {
            Some(path) => Board::from_file(path)?,
            None => Board::builtin(),
        })
    }

    /// The board file's name for people.
    pub fn board_name(&self) -> String {
        match &self.board {
            Some(p) => p.display().to_string(),
            None => format!("{DEFAULT_BOARD_NAME} (built in)"),
        }
    }

    /// The probe for people.
    pub fn probe_name(&self) -> String {
        if self.sim {
            match &self.sim_state {
                Some(d) => format!("virtual board (simulated probe, state in {})", d.display()),
                None => "virtual board (simulated probe, flash starts erased)".into(),
            }
        } else {
            match &self.probe {
                Some(p) => format!("probe {p}"),
                None => "the only connected probe".into(),
            }
        }
    }

    /// The session opener: the probe, or the virtual board wired as
    /// `--sim-board` (else `board`) says.
    pub fn source(&self, board: &Board) -> anyhow::Result<SessionSource> {
        Ok(self.source_with_sim(board)?.0)
    }

    /// [`Self::source`], plus a handle on the virtual board with `--sim`.
    pub fn source_with_sim(
        &self,
        board: &Board,
    ) -> anyhow::Result<(SessionSource, Option<super::source::SimHandle>)> {
        let attach = super::source::AttachOptions {
            speed: self.speed,
            under_reset: self.connect_under_reset,
            chip: self.chip.clone().unwrap_or_else(|| board.chip.clone()),
        };
        if !self.sim {
            return Ok((
                super::source::probe_source(self.probe.clone(), attach),
                None,
            ));
        }
        if let Some(dir) = &self.sim_state {
            check_state_dir(dir)?;
        }
        // Checked before anything opens, with the profile's lowest clock
        // (the simulated probe alone would only say "not supported").
        if let Some(khz) = self.speed {
            self.sim_link
                .supported_khz(khz)
                .map_err(|e| anyhow::anyhow!("--speed {khz}: {e}"))?;
        }
        let wired = match &self.sim_board {
            Some(path) => Board::from_file(path)?,
            None => board.clone(),
        };
        let sim = super::source::SimOptions {
            state_dir: self.sim_state.clone(),
            link: self.sim_link,
            realtime: self.sim_realtime,
            fast_forward: !self.sim_no_fast_forward,
            strict: self.sim_strict,
            faults: self.sim_fault.unwrap_or_default(),
        };
        let (source, handle) = super::source::sim_source(sim, &wired, attach);
        Ok((source, Some(handle)))
    }
}

/// `--sim-state DIR` must name a folder (created if missing), not a file.
pub fn check_state_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!(
            "--sim-state {}: that is a file; give a folder (created if missing), where the \
             virtual board keeps its flash",
            dir.display()
        );
    }
    Ok(())
}

/// Parse `0x...` hex or decimal, with `_` separators allowed.
pub fn parse_u32(s: &str) -> Result<u32, String> {
    let t = s.trim().replace('_', "");
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse::<u64>(),
    }
    .map_err(|_| format!("`{s}` is not a number (use decimal or 0x hex)"))?;
    u32::try_from(v).map_err(|_| format!("`{s}` does not fit in 32 bits"))
}

/// Like [`parse_u32`], accepting a `K`/`M` (KiB/MiB) suffix for lengths.
pub fn parse_len(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1024u64),
        Some('m' | 'M') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    let n = parse_u32(num).map_err(|e| format!("{e}; a length may end in K or M"))?;
    let v = u64::from(n) * mult;
    u32::try_from(v).map_err(|_| format!("`{s}` does not fit in 32 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_as_hex_decimal_and_sizes() {
        assert_eq!(parse_u32("0x90000000"), Ok(0x9000_0000));
        assert_eq!(parse_u32("4096"), Ok(4096));
        assert_eq!(parse_u32("0x1_0000"), Ok(0x1_0000));
        assert!(parse_u32("0x100000000").is_err());
        assert!(parse_u32("abc").is_err());
        assert_eq!(parse_len("4K"), Ok(4096));
        assert_eq!(parse_len("0x10k"), Ok(0x4000));
        assert_eq!(parse_len("8M"), Ok(8 << 20));
    }
}

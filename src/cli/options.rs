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
    /// probe-rs target name [default: the board file's `chip`].
    #[arg(long)]
    pub chip: Option<String>,
    /// Probe to use, as VID:PID[:SERIAL] (hex VID/PID).
    #[arg(long, value_name = "VID:PID[:SERIAL]", conflicts_with = "sim")]
    pub probe: Option<String>,
    /// SWD clock in kHz.
    #[arg(long, value_name = "KHZ")]
    pub speed: Option<u32>,
    /// Hold the chip in reset while attaching (for firmware that disables SWD).
    #[arg(long)]
    pub connect_under_reset: bool,
    /// Board file [default: the built-in memory-maps/stm32f407ve-w25q64jv.toml].
    #[arg(long, value_name = "FILE")]
    pub board: Option<PathBuf>,
    /// Reset the chip and halt it at the reset vector before starting
    /// (`flash`, `erase` and `selftest` always do).
    #[arg(long)]
    pub reset_halt: bool,
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

    /// The same session opener `serve` uses.
    pub fn source(&self, board: &Board) -> SessionSource {
        let attach = crate::AttachOptions {
            speed: self.speed,
            under_reset: self.connect_under_reset,
            chip: self.chip.clone().unwrap_or_else(|| board.chip.clone()),
        };
        if self.sim {
            crate::sim_source(self.sim_state.clone(), board, attach)
        } else {
            crate::probe_source(self.probe.clone(), attach)
        }
    }
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
    let v = u64::from(parse_u32(num)?) * mult;
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

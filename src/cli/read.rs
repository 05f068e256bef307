//! `read ADDR LEN [-o FILE]`: memory at any address (the window through the
//! stub, as GDB's `x` or `dump` would), as a hex dump or a binary file.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use super::options::{parse_len, parse_u32, TargetArgs};
use super::progress::{rate, Progress, Stopwatch};
use super::session::BoardSession;

#[derive(clap::Args, Debug)]
pub struct ReadArgs {
    /// Start address (0x hex or decimal).
    #[arg(value_parser = parse_u32)]
    pub address: u32,
    /// Bytes to read (0x hex, decimal, or with a K/M suffix).
    #[arg(value_parser = parse_len)]
    pub len: u32,
    /// Write the bytes to FILE instead of a hex dump on stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Reset the chip and halt it at the reset vector before starting
    /// (`flash`, `erase` and `selftest` always do).
    #[arg(long)]
    pub reset_halt: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Show a bar for reads longer than this.
const BAR_FROM: u32 = 0x1_0000;

pub fn run(args: ReadArgs) -> anyhow::Result<()> {
    if u64::from(args.address) + u64::from(args.len) > 1 << 32 {
        anyhow::bail!(
            "{:#x} bytes at {:#010x} run past the end of the 32-bit address space",
            args.len,
            args.address
        );
    }
    let progress = Progress::new();
    let mut session = BoardSession::open(&args.target, progress.sink())?;
    session.settle(args.reset_halt)?;
    let clock = Stopwatch::start();
    let show = args.len >= BAR_FROM;
    if show {
        progress.begin("read", args.len.into());
    }
    let data = session.read(args.address, args.len, show.then_some(&*progress))?;
    progress.finish();
    let elapsed = clock.elapsed();
    session.close()?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &data)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "read {} bytes at {:#010x} into {} in {:.2} s ({:.1} KB/s)",
                data.len(),
                args.address,
                path.display(),
                elapsed.as_secs_f64(),
                rate(data.len() as u64, elapsed)
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(hexdump(args.address, &data).as_bytes())?;
            out.flush()?;
        }
    }
    Ok(())
}

/// `addr: 16 hex bytes  |ascii|` lines.
pub fn hexdump(address: u32, data: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in data.chunks(16).enumerate() {
        let at = address.wrapping_add(16 * i as u32);
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{at:08x}: {:<47}  |{ascii}|\n", hex.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hexdump_lines_carry_address_bytes_and_ascii() {
        let d = super::hexdump(0x9000_0000, b"AB\xff\x00");
        assert_eq!(d, format!("90000000: {:<47}  |AB..|\n", "41 42 ff 00"));
        assert_eq!(
            super::hexdump(0x10, &[0; 17])
                .lines()
                .nth(1)
                .unwrap()
                .get(..9),
            Some("00000020:")
        );
    }
}

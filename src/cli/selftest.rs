//! `selftest [--range ADDR LEN] [--yes]`: for someone with a board on the
//! desk. Attach, identify the chip (JEDEC/SFDP), then — only with `--yes`,
//! because it erases — erase, program, read back and CRC a scratch range
//! and restore what was there, check that the application's SPI and GPIO
//! registers are as before, and report speeds against the chip's limits.
//! Every failure names what to check on the board.

use std::ops::Range;
use std::time::Duration;

use extflash_gdb::board::{Board, ExtFlashWiring};
use extflash_gdb::extflash::wiring::{gpio_base, spi_regs};
use extflash_stub_abi::spi_nor::w25q64jv as typ;

use super::image::Segment;
use super::mmap::{self, LoadPlan};
use super::options::{parse_len, parse_u32, TargetArgs};
use super::progress::{rate, Progress, Stopwatch};
use super::session::BoardSession;

#[derive(clap::Args, Debug)]
pub struct SelftestArgs {
    /// Scratch range for the erase/program test [default: the last 64 KiB
    /// of the external flash]. Its contents are restored afterwards.
    #[arg(long, num_args = 2, value_names = ["ADDR", "LEN"])]
    pub range: Option<Vec<String>>,
    /// Allow the test to erase and reprogram the scratch range.
    #[arg(long)]
    pub yes: bool,
    /// Reset the chip and halt it at the reset vector before starting
    /// (`flash`, `erase` and `selftest` always do).
    #[arg(long)]
    pub reset_halt: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Typical W25Q64JV times (tPP, tBE64) for the "against the chip's limit"
/// figures.
const TYPICAL_PAGE_PROGRAM: Duration = Duration::from_micros(typ::TYP_PAGE_PROGRAM_US as u64);
const TYPICAL_BLOCK64_ERASE: Duration = Duration::from_micros(typ::TYP_BLOCK64_ERASE_US as u64);
/// APB clocks of the F407 at 168 MHz: SPI1 on APB2, SPI2/3 on APB1.
fn spi_pclk(spi: u8) -> u32 {
    if spi == 1 {
        84_000_000
    } else {
        42_000_000
    }
}

/// A failed step, with what to check.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {detail}\n  hint: {hint}")]
pub struct StepFailed {
    step: &'static str,
    detail: String,
    hint: String,
}

fn fail(step: &'static str, e: impl std::fmt::Display, hint: String) -> anyhow::Error {
    StepFailed {
        step,
        detail: e.to_string(),
        hint,
    }
    .into()
}

/// "no answer on SPI1: check PB3/PB4/PB5/PB0 and the chip's power".
pub fn spi_hint(e: &ExtFlashWiring) -> String {
    format!(
        "no answer on SPI{}: check {}/{}/{}/{} (SCK/MISO/MOSI/CS) and the chip's power",
        e.spi, e.sck, e.miso, e.mosi, e.cs
    )
}

/// The identification step's hint: no answer, or a chip the board file
/// does not expect.
fn id_hint(e: &ExtFlashWiring) -> String {
    match e.jedec_id {
        Some([a, b, c]) => format!(
            "{}; the board file expects JEDEC ID {a:02X} {b:02X} {c:02X} (`jedec_id`): \
             drop it to accept any chip that answers",
            spi_hint(e)
        ),
        None => spi_hint(e),
    }
}

/// The application's registers the stub must leave as they were: SPIx
/// CR1/CR2, and MODER/AFRL/AFRH/ODR of every port the wiring uses.
pub fn app_registers(e: &ExtFlashWiring) -> Vec<(String, u32)> {
    let (spi, _, _) = spi_regs(e.spi);
    let mut regs = vec![
        (format!("SPI{} CR1", e.spi), spi),
        (format!("SPI{} CR2", e.spi), spi + 4),
    ];
    let mut ports: Vec<char> = [e.sck, e.miso, e.mosi, e.cs]
        .iter()
        .map(|p| p.port)
        .collect();
    ports.sort();
    ports.dedup();
    for port in ports {
        let base = gpio_base(port);
        for (name, off) in [
            ("MODER", 0x00),
            ("AFRL", 0x20),
            ("AFRH", 0x24),
            ("ODR", 0x14),
        ] {
            regs.push((format!("GPIO{port} {name}"), base + off));
        }
    }
    regs
}

fn pattern(len: usize) -> Vec<u8> {
    // xorshift32: no long 0xFF runs, so every page is programmed.
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn ok(step: &str, detail: &str) {
    println!("[ ok ] {step}: {detail}");
}

pub fn run(args: SelftestArgs) -> anyhow::Result<()> {
    let board: Board = args.target.load_board()?;
    let Some(ext) = board.external_flash.clone() else {
        anyhow::bail!("the board file has no [external_flash] section: nothing to test");
    };
    let progress = Progress::new();
    let attach_hint = "check the probe's USB cable, SWDIO/SWCLK/GND between probe and board, \
         and the board's power; try --connect-under-reset or a lower --speed"
        .to_string();
    let mut s = BoardSession::open(&args.target, progress.sink())
        .map_err(|e| fail("attach", format!("{e:#}"), attach_hint.clone()))?;
    s.settle(args.reset_halt)?;
    let cpuid = s
        .read_u32(extflash_gdb::cortex_m::CPUID)
        .map_err(|e| fail("attach", format!("{e:#}"), attach_hint.clone()))?;
    ok("attach", &super::info::core_name(cpuid));

    let info = s
        .flash_info()
        .map_err(|e| fail("external flash", format!("{e:#}"), id_hint(&ext)))?;
    let [a, b, c] = info.jedec_id;
    ok(
        "JEDEC ID",
        &format!("{a:02X} {b:02X} {c:02X}: {} on {}", info.name, info.wiring),
    );
    ok(
        "geometry",
        &format!(
            "{} KiB, {}-byte pages ({})",
            info.size / 1024,
            info.page_size,
            info.source
        ),
    );
    if info.protected() {
        println!(
            "[note] the chip is write-protected (SR1..SR3 {:02X?}): the erase/program test \
             will fail; `monitor flash unprotect` lifts it until power-off",
            info.status.0
        );
    }

    let map = s.memory_map()?;
    let window = mmap::flash_entry(&map, ext.window.into()).ok_or_else(|| {
        anyhow::anyhow!("the memory map has no flash window at {:#010x}", ext.window)
    })?;
    let block = u64::from(window.blocksize.unwrap_or(0x1000));
    let range: Range<u64> = match &args.range {
        Some(v) => {
            let a = parse_u32(&v[0]).map_err(anyhow::Error::msg)?;
            let l = parse_len(&v[1]).map_err(anyhow::Error::msg)?;
            let start = u64::from(a) / block * block;
            let end = (u64::from(a) + u64::from(l)).div_ceil(block) * block;
            if l == 0 || start < window.start || end > window.start + window.length {
                anyhow::bail!(
                    "--range {:#x}+{l:#x} is not inside the external-flash window {:#010x}..{:#010x}",
                    a,
                    window.start,
                    window.start + window.length
                );
            }
            start..end
        }
        None => {
            let end = window.start + window.length;
            end - 0x1_0000.max(block)..end
        }
    };
    let len = (range.end - range.start) as u32;
    let start = range.start as u32;
    if !args.yes {
        println!(
            "[skip] erase/program test: pass --yes to let selftest erase {start:#010x}..{:#010x} \
             ({} KiB; its contents are restored)",
            range.end,
            len / 1024
        );
        return s.close();
    }

    let regs = app_registers(&ext);
    let read_regs = |s: &mut BoardSession| -> anyhow::Result<Vec<u32>> {
        regs.iter().map(|(_, a)| s.read_u32(*a)).collect()
    };
    let before = read_regs(&mut s)?;
    let spi_fail = |step, e: anyhow::Error| fail(step, format!("{e:#}"), spi_hint(&ext));

    // Save what is there.
    let clock = Stopwatch::start();
    let saved = s.read(start, len, None).map_err(|e| spi_fail("read", e))?;
    let read_time = clock.elapsed();

    // Erase, and check by CRC on the target.
    let clock = Stopwatch::start();
    s.erase(std::slice::from_ref(&range))
        .map_err(|e| spi_fail("erase", e))?;
    let erase_time = clock.elapsed();
    let blank = vec![0xFF; len as usize];
    check_crc(&mut s, start, &blank, "erase", &ext)?;
    ok("erase", &format!("{} KiB blank", len / 1024));

    // Program a pattern, read it back, CRC it.
    let data = pattern(len as usize);
    let plan = LoadPlan {
        ram: Vec::new(),
        erases: vec![range.clone()],
        flash: vec![Segment {
            address: start,
            data: data.clone(),
        }],
    };
    let clock = Stopwatch::start();
    s.load(&plan).map_err(|e| spi_fail("program", e))?;
    let load_time = clock.elapsed();
    let back = s
        .read(start, len, None)
        .map_err(|e| spi_fail("read back", e))?;
    if let Some(i) = back.iter().zip(&data).position(|(a, b)| a != b) {
        return Err(fail(
            "read back",
            format!(
                "byte at {:#010x} reads {:02X}, programmed {:02X}",
                start + i as u32,
                back[i],
                data[i]
            ),
            format!(
                "{}; a flaky MISO/SCK line or a too fast SPI clock (prescaler {}) also does this",
                spi_hint(&ext),
                ext.prescaler
            ),
        ));
    }
    check_crc(&mut s, start, &data, "program", &ext)?;
    ok(
        "program",
        &format!("{} KiB pattern read back and CRC-checked", len / 1024),
    );

    // Restore.
    let restore = LoadPlan {
        ram: Vec::new(),
        erases: vec![range.clone()],
        flash: vec![Segment {
            address: start,
            data: saved.clone(),
        }],
    };
    s.load(&restore).map_err(|e| spi_fail("restore", e))?;
    check_crc(&mut s, start, &saved, "restore", &ext)?;
    ok("restore", "previous contents back (CRC-checked)");

    // The application's view of SPI and the pins.
    let after = read_regs(&mut s)?;
    let changed: Vec<String> = regs
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| b != a)
        .map(|((name, _), (b, a))| format!("{name} {b:08X} -> {a:08X}"))
        .collect();
    if !changed.is_empty() {
        return Err(fail(
            "application state",
            changed.join(", "),
            "the stub did not restore the registers it used: report this as a bug".into(),
        ));
    }
    ok(
        "application state",
        &format!("{} SPI/GPIO registers unchanged", regs.len()),
    );

    // Speeds against the limits.
    let clk = spi_pclk(ext.spi) / u32::from(ext.prescaler);
    let read_limit = f64::from(clk) / 8.0 / 1024.0;
    let program_time = load_time.saturating_sub(erase_time);
    let page = 256.0;
    let program_limit = page / 1024.0 / TYPICAL_PAGE_PROGRAM.as_secs_f64();
    let erase_limit = 64.0 / TYPICAL_BLOCK64_ERASE.as_secs_f64();
    println!(
        "speed: read {:.1} KB/s (SPI at {:.1} MHz allows {read_limit:.0} KB/s)",
        rate(len.into(), read_time),
        f64::from(clk) / 1e6
    );
    println!(
        "speed: erase {:.1} KB/s (typical tBE64 {} ms per 64 KiB block: {erase_limit:.0} KB/s)",
        rate(len.into(), erase_time),
        TYPICAL_BLOCK64_ERASE.as_millis()
    );
    println!(
        "speed: program {:.1} KB/s (typical tPP {} ms per page: {program_limit:.0} KB/s)",
        rate(len.into(), program_time),
        TYPICAL_PAGE_PROGRAM.as_secs_f64() * 1e3
    );
    println!("selftest passed");
    s.close()
}

fn check_crc(
    s: &mut BoardSession,
    start: u32,
    want: &[u8],
    step: &'static str,
    ext: &ExtFlashWiring,
) -> anyhow::Result<()> {
    let expect = extflash_stub_abi::crc32_update(extflash_stub_abi::CRC32_INIT, want);
    let got = s
        .crc(start, want.len() as u32)
        .map_err(|e| fail(step, format!("{e:#}"), spi_hint(ext)))?;
    if got != expect {
        return Err(fail(
            step,
            format!("on-target CRC {got:08x}, expected {expect:08x}"),
            format!(
                "{}; the chip may be write-protected (`info` shows its status registers)",
                spi_hint(ext)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_names_the_board_file_pins() {
        let b = Board::builtin();
        let e = b.external_flash.unwrap();
        assert_eq!(
            spi_hint(&e),
            "no answer on SPI1: check PB3/PB4/PB5/PB0 (SCK/MISO/MOSI/CS) and the chip's power"
        );
        let regs = app_registers(&e);
        assert_eq!(regs[0], ("SPI1 CR1".to_string(), 0x4001_3000));
        assert!(regs.contains(&("GPIOB MODER".to_string(), 0x4002_0400)));
        assert!(regs.contains(&("GPIOB AFRL".to_string(), 0x4002_0420)));
        assert!(regs.contains(&("GPIOB ODR".to_string(), 0x4002_0414)));
        assert!(pattern(4096).iter().filter(|&&b| b == 0xFF).count() < 64);
    }
}

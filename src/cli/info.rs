//! `info`: what is attached — probe, target (core, IDCODE, flash size), the
//! external chip (the server's `FlashInfo`, as `monitor flash info` shows it: JEDEC ID, SFDP geometry, status and
//! protection, window and wiring) and the board file.

use extflash_gdb::board::RegionKind;

use super::options::TargetArgs;
use super::progress::Progress;
use super::session::BoardSession;

use extflash_gdb::cortex_m::CPUID;
use extflash_gdb::stm32f4::{DBGMCU_IDCODE, FLASH_SIZE_REG};

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Reset the chip and halt it at the reset vector before starting
    /// (`flash`, `erase` and `selftest` always do).
    #[arg(long)]
    pub reset_halt: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// "Cortex-M4 r0p1" from CPUID.
pub fn core_name(cpuid: u32) -> String {
    let part = (cpuid >> 4) & 0xFFF;
    let name = match part {
        0xC20 => "Cortex-M0",
        0xC60 => "Cortex-M0+",
        0xC23 => "Cortex-M3",
        0xC24 => "Cortex-M4",
        0xC27 => "Cortex-M7",
        0xD21 => "Cortex-M33",
        _ => "unknown core",
    };
    format!(
        "{name} r{}p{} (CPUID {cpuid:08X})",
        (cpuid >> 20) & 0xF,
        cpuid & 0xF
    )
}

/// STM32 device name for a DEV_ID.
pub fn device_name(dev_id: u32) -> &'static str {
    match dev_id {
        0x413 => "STM32F405/407/415/417",
        0x419 => "STM32F42x/43x",
        0x411 => "STM32F2xx",
        _ => "unknown device",
    }
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let progress = Progress::new();
    let mut s = BoardSession::open(&args.target, progress.sink())?;
    s.settle(args.reset_halt)?;
    println!("probe:       {}", args.target.probe_name());
    println!(
        "board file:  {} (chip {})",
        args.target.board_name(),
        s.board.chip
    );
    match s.read_u32(CPUID) {
        Ok(v) => println!("core:        {}", core_name(v)),
        Err(e) => println!("core:        unreadable ({e:#})"),
    }
    match s.read_u32(DBGMCU_IDCODE) {
        Ok(v) => println!(
            "IDCODE:      {v:08X} (DEV_ID {:03X} {}, REV_ID {:04X})",
            v & 0xFFF,
            device_name(v & 0xFFF),
            v >> 16
        ),
        Err(e) => println!("IDCODE:      unreadable ({e:#})"),
    }
    match s.read(FLASH_SIZE_REG, 2, None) {
        Ok(b) => println!(
            "flash size:  {} KiB (register {FLASH_SIZE_REG:#010x})",
            u16::from_le_bytes([b[0], b[1]])
        ),
        Err(e) => println!("flash size:  unreadable ({e:#})"),
    }
    for r in &s.board.regions {
        let kind = match &r.kind {
            RegionKind::Ram => "RAM".to_string(),
            RegionKind::Flash { sectors } => format!(
                "flash, {} sectors",
                sectors.iter().map(|x| x.count).sum::<u32>()
            ),
        };
        println!(
            "memory:      {:<6} {:#010x}..{:#010x} ({} KiB, {kind})",
            r.name,
            r.start,
            r.range().end,
            r.size / 1024
        );
    }
    if let Some(e) = &s.board.external_flash {
        println!(
            "work area:   {:#010x}..{:#010x} (stub RAM, saved and restored around each use)",
            e.work_area.start, e.work_area.end
        );
        println!("{}", s.flash_info()?);
    } else {
        println!("external flash: none in this board file");
    }
    s.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_and_dev_id_are_named() {
        assert_eq!(core_name(0x410F_C241), "Cortex-M4 r0p1 (CPUID 410FC241)");
        assert_eq!(device_name(0x413), "STM32F405/407/415/417");
        assert_eq!(device_name(0x999), "unknown device");
    }
}

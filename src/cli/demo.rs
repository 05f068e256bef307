//! `serve`'s first-run help: a plain line saying what the board holds, the
//! GDB command to connect, and `--demo`, which loads the test firmware and
//! its external-flash assets through the server's own GDB `load` path (the
//! same packets GDB sends), so GDB can `break main` with the assets in place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use extflash_gdb::board::Board;

use super::image;
use super::mmap;
use super::session::BoardSession;

/// The test firmware with assets in the window (`tests/firmware/`, see its
/// README for how it is built).
pub const DEMO_ELF: &[u8] = include_bytes!("../../tests/firmware/firmware-assets.elf");
const DEMO_NAME: &str = "firmware-assets.elf";

/// What the virtual board holds at start.
pub fn board_line(state_dir: Option<&Path>) -> String {
    match state_dir {
        Some(dir) => format!(
            "virtual board: STM32F407VE + W25Q64JV (8 MiB); internal and external flash kept in \
             {} (as the last run left them)",
            dir.display()
        ),
        None => "virtual board: STM32F407VE + W25Q64JV (8 MiB); internal flash blank (the core \
                 locks up at the reset vector until you load a program), external flash erased"
            .into(),
    }
}

/// The command that connects GDB to `addr`, with the reply timeout a
/// window `load` or `compare-sections` needs (GDB's default is 2 s).
pub fn connect_line(addr: SocketAddr, elf: Option<&Path>) -> String {
    let file = elf
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "your-app.elf".into());
    let extra = if elf.is_some() {
        " -ex 'break main' -ex 'continue'"
    } else {
        " -ex 'load'"
    };
    format!(
        "connect GDB with: gdb-multiarch -ex 'set remotetimeout 30' \
         -ex 'target extended-remote {addr}'{extra} {file}"
    )
}

/// Load the demo firmware through the server at `addr`, reset and halt it
/// at the reset vector; returns where the ELF was written for GDB.
pub fn load(addr: SocketAddr, board: Arc<Board>) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("extflash-gdb-demo-{}", std::process::id()));
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let elf = path.join(DEMO_NAME);
    std::fs::write(&elf, DEMO_ELF).with_context(|| format!("cannot write {}", elf.display()))?;
    let segments = image::parse(&elf, DEMO_ELF.to_vec(), None)?;
    let mut s = BoardSession::connect(addr, board)?;
    s.settle(true)?;
    let map = s.memory_map()?;
    let plan = mmap::plan(&segments, &map, &s.ram_ranges())?;
    s.load(&plan)?;
    s.monitor("reset halt", &mut |_| {})?;
    s.close()?;
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_image_has_internal_code_and_window_assets() {
        let segs = image::parse(Path::new(DEMO_NAME), DEMO_ELF.to_vec(), None).unwrap();
        assert!(segs.iter().any(|s| s.address == 0x0800_0000));
        assert!(segs.iter().any(|s| s.address >= 0x9000_0000));
        let line = connect_line(
            "127.0.0.1:3333".parse().unwrap(),
            Some(Path::new("/t/x.elf")),
        );
        assert_eq!(
            line,
            "connect GDB with: gdb-multiarch -ex 'set remotetimeout 30' \
             -ex 'target extended-remote 127.0.0.1:3333' -ex 'break main' -ex 'continue' /t/x.elf"
        );
    }
}

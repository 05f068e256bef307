//! The loaders `extflash-gdb loader` writes, run by the code that uses them
//! (probe-rs's flash loader, pyOCD's pack parser) or the way that code runs
//! them (STM32CubeProgrammer's external-loader calls), on the virtual
//! board; and the committed loader templates against their sources.
//!
//! One test binary (modules below) so probe-rs is linked once.

#[path = "../support/mod.rs"]
mod support;

mod committed;
mod flm;
mod probe_rs;
mod stldr;

use std::path::{Path, PathBuf};
use std::process::Command;

use extflash_gdb::board::Board;
use extflash_gdb::sim::{Pin, Wiring};

pub const SPI3_BOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/memory-maps/stm32f407ve-w25q64jv-spi3.toml"
);

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("extflash-loaders-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `extflash-gdb loader --format FORMAT [--board FILE] -o OUT` and
/// return the file's bytes.
pub fn generate(format: &str, board: Option<&str>, out: &Path) -> Vec<u8> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"));
    cmd.args(["loader", "--format", format, "-o"]).arg(out);
    if let Some(b) = board {
        cmd.args(["--board", b]);
    }
    let o = cmd.output().expect("run extflash-gdb loader");
    assert!(
        o.status.success(),
        "extflash-gdb loader --format {format} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(out).expect("the loader file")
}

/// The board file (built in when `None`).
pub fn board(path: Option<&str>) -> Board {
    match path {
        Some(p) => Board::from_file(Path::new(p)).unwrap(),
        None => Board::builtin(),
    }
}

/// The virtual board wired as the board file says.
pub fn wiring(board: &Board) -> Wiring {
    let e = board.external_flash.as_ref().unwrap();
    let pin = |p: extflash_gdb::board::Pin| Pin::new(p.port as u8 - b'A', p.number);
    Wiring {
        spi: e.spi,
        sck: pin(e.sck),
        miso: pin(e.miso),
        mosi: pin(e.mosi),
        af: e.af,
        cs: pin(e.cs),
    }
}

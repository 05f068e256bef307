//! The loaders `extflash-gdb loader` writes, run by the code that uses them
//! (probe-rs's flash loader, pyOCD's pack parser) or the way that code runs
//! them (STM32CubeProgrammer's external-loader calls), on the virtual
//! board; and the committed loader templates against their sources.
//!
//! One test binary (modules below) so probe-rs is linked once.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod committed;
mod flm;
mod probe_rs_yaml;
mod srec;
mod stldr;

use std::path::{Path, PathBuf};
use std::process::Command;

use extflash_gdb::board::Board;
use extflash_gdb::sim::Wiring;

pub const SPI3_BOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/memory-maps/stm32f407ve-w25q64jv-spi3.toml"
);

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("extflash-loaders-{name}-{}", std::process::id()));
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
    Wiring::from(
        board
            .external_flash
            .as_ref()
            .expect("the board has external flash"),
    )
}

/// The virtual board wired as `board` says, attached through probe-rs and
/// halted fresh out of reset: a host tool's view before it runs a loader.
pub struct Target {
    pub sim: extflash_gdb::sim::SimBoard,
    pub session: probe_rs::Session,
}

/// How long one loader call may take (virtual board, host time).
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Target {
    pub fn new(board: &Board) -> Target {
        Target::with_chip(board, extflash_gdb::sim::SimConfig::default().jedec_id)
    }

    /// [`Target::new`] with a chip answering `jedec_id`.
    pub fn with_chip(board: &Board, jedec_id: [u8; 3]) -> Target {
        use extflash_gdb::sim::{SimBoard, SimConfig};
        // An ST-Link/V2's link: each halt poll lets the board run 0.8 ms of
        // virtual time (a chip erase needs fewer polls than over an ideal
        // link).
        let sim = SimBoard::new(SimConfig {
            wiring: wiring(board),
            link: extflash_gdb::sim::LinkProfile::StlinkV2,
            jedec_id,
            ..Default::default()
        })
        .unwrap();
        let mut session = sim
            .probe()
            .attach(support::sim::CHIP, probe_rs::Permissions::default())
            .unwrap();
        session
            .core(0)
            .unwrap()
            .reset_and_halt(std::time::Duration::from_secs(5))
            .unwrap();
        Target { sim, session }
    }

    pub fn write(&mut self, addr: u32, data: &[u8]) {
        use probe_rs::MemoryInterface;
        self.session
            .core(0)
            .unwrap()
            .write(u64::from(addr), data)
            .unwrap();
    }

    pub fn read(&mut self, addr: u32, len: usize) -> Vec<u8> {
        use probe_rs::MemoryInterface;
        let mut v = vec![0; len];
        self.session
            .core(0)
            .unwrap()
            .read(u64::from(addr), &mut v)
            .unwrap();
        v
    }

    /// The W25Q64JV's bytes at chip offset `off`.
    pub fn chip(&self, off: u32, len: usize) -> Vec<u8> {
        let b = self.sim.lock();
        let mcu = b.mcu();
        mcu.chip.contents()[off as usize..off as usize + len].to_vec()
    }

    /// Call the function at `pc` (Thumb bit set) with `args` in r0..,
    /// `lr` at a BKPT, `sp`, and `r9` when given; wait for the halt on the
    /// BKPT; r0 and r1.
    pub fn call(&mut self, pc: u32, args: &[u32], lr: u32, sp: u32, r9: Option<u32>) -> (u32, u32) {
        use probe_rs::{CoreStatus, HaltReason, RegisterId};
        assert_eq!(pc & 1, 1, "{pc:#x}: Thumb bit");
        let mut core = self.session.core(0).unwrap();
        for (i, v) in args.iter().enumerate() {
            core.write_core_reg(RegisterId(i as u16), *v).unwrap();
        }
        if let Some(r9) = r9 {
            core.write_core_reg(RegisterId(9), r9).unwrap();
        }
        let id = core.stack_pointer().id();
        core.write_core_reg(id, sp).unwrap();
        let id = core.return_address().id();
        core.write_core_reg(id, lr | 1).unwrap();
        let id = core.registers().psr().unwrap().id();
        core.write_core_reg(id, 0x0100_0000u32).unwrap();
        let id = core.program_counter().id();
        core.write_core_reg(id, pc & !1).unwrap();
        core.run().unwrap();
        // Polls without host sleeps: the board's time advances with each
        // poll's link time, not with the host's.
        let deadline = std::time::Instant::now() + CALL_TIMEOUT;
        while !core.core_halted().unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "call of {pc:#x} did not return within {CALL_TIMEOUT:?}"
            );
        }
        match core.status().unwrap() {
            CoreStatus::Halted(HaltReason::Breakpoint(_)) => {}
            other => panic!("call of {pc:#x} did not end on the BKPT: {other:?}"),
        }
        let at: u32 = core.read_core_reg(core.program_counter().id()).unwrap();
        assert_eq!(at, lr & !1, "halted on the BKPT LR points at");
        let r0: u32 = core.read_core_reg(RegisterId(0)).unwrap();
        let r1: u32 = core.read_core_reg(RegisterId(1)).unwrap();
        (r0, r1)
    }
}

/// Deterministic test bytes (the one generator of every test binary).
pub use support::sim::pattern;

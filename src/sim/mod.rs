//! The virtual STM32F407VE + W25Q64JV board, driven by probe-rs through a
//! simulated SWD probe ([`probe::SimProbe`]).
//!
//! Product code never asks whether it runs on this board: it gets a
//! `probe_rs::probe::Probe` like any other.

pub mod align;
pub mod bitbang;
pub mod board;
pub mod clock;
pub mod cpu;
pub mod debug;
pub mod dsp;
pub mod link;
pub mod mcu;
pub mod patch;
pub mod persist;
pub mod probe;
pub mod scs;
pub mod scs_access;
pub mod stm32;
pub mod strict;
pub mod swd_wire;
pub mod sysreg;
pub mod timing;
pub mod w25q64jv;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

pub use board::{McuBoard, Summary};
pub use link::LinkProfile;
pub use mcu::{GpioPin, Wiring};
pub use w25q64jv::Faults;

use persist::{BackingFile, PersistError};

/// How to build a virtual board.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Back internal flash and the W25Q64JV with files in this folder.
    pub state_dir: Option<PathBuf>,
    /// Probe and USB link whose costs the clock charges.
    pub link: LinkProfile,
    /// Requested SWD clock in kHz [default: the link's own default]; the
    /// link rounds it as that probe would.
    pub speed_khz: Option<u32>,
    /// Let a running core catch up with host time between transactions (a
    /// free-running board for an interactive user). Off, the same job
    /// gives the same virtual time and counters on every run.
    pub realtime: bool,
    /// Jump over provable wait loops instead of emulating every iteration
    /// (same end state and virtual time).
    pub fast_forward: bool,
    /// Strict mode enforced: a core that breaks a documented RM0090 rule
    /// of a modelled peripheral locks up, a debugger access that breaks
    /// one answers FAULT (without it the rule is only logged and counted,
    /// see `strict.rs`).
    pub strict: bool,
    /// Wiring of the external flash.
    pub wiring: Wiring,
    pub jedec_id: [u8; 3],
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            state_dir: None,
            link: LinkProfile::Ideal,
            speed_khz: None,
            realtime: false,
            fast_forward: true,
            strict: false,
            wiring: Wiring::default(),
            jedec_id: w25q64jv::JEDEC_ID_IQ,
            faults: Faults::default(),
        }
    }
}

/// A fault of the virtual board named on the command line (`--sim-fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFault {
    /// The W25Q64JV's BUSY never clears once a program/erase starts.
    StuckBusy,
    /// Write enable (06h) is accepted but WEL never sets.
    WelNeverSet,
    /// No chip answers on the SPI bus.
    NoChip,
    /// Every block write-protected at power-on (BP2-0 = 111).
    Protected,
    /// Status registers locked until power-off (SRL = 1).
    Locked,
    /// Bit 1 of each byte of the chip's first page never programs to 0
    /// (worn cells).
    WornBit,
}

impl SimFault {
    pub const ALL: [SimFault; 6] = [
        Self::StuckBusy,
        Self::WelNeverSet,
        Self::NoChip,
        Self::Protected,
        Self::Locked,
        Self::WornBit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::StuckBusy => "stuck-busy",
            Self::WelNeverSet => "wel-never-set",
            Self::NoChip => "no-chip",
            Self::Protected => "protected",
            Self::Locked => "locked",
            Self::WornBit => "worn-bit",
        }
    }

    /// Add this fault to `faults`.
    pub fn apply(self, faults: &mut Faults) {
        match self {
            Self::StuckBusy => faults.stuck_busy = true,
            Self::WelNeverSet => faults.wel_never_sets = true,
            Self::NoChip => faults.absent = true,
            Self::Protected => faults.protected = true,
            Self::Locked => faults.status_locked = true,
            Self::WornBit => faults.worn_bit = true,
        }
    }

    /// A comma-separated list (`stuck-busy,protected`) as chip faults.
    pub fn parse_list(list: &str) -> Result<Faults, UnknownFault> {
        let mut faults = Faults::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            name.parse::<SimFault>()?.apply(&mut faults);
        }
        Ok(faults)
    }
}

impl std::str::FromStr for SimFault {
    type Err = UnknownFault;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFault {
                name: s.to_string(),
            })
    }
}

/// `--sim-fault` named no known fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown virtual-board fault `{name}` (expected stuck-busy, wel-never-set, no-chip, protected, locked or worn-bit)"
)]
pub struct UnknownFault {
    pub name: String,
}

/// Why a virtual board could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error(transparent)]
    Speed(#[from] link::UnsupportedSpeed),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_list_parses_every_name_and_rejects_unknown_ones() {
        let f = SimFault::parse_list("stuck-busy, no-chip,protected").unwrap();
        assert!(f.stuck_busy && f.absent && f.protected);
        assert!(!f.wel_never_sets && !f.status_locked);
        for fault in SimFault::ALL {
            assert_eq!(fault.name().parse::<SimFault>(), Ok(fault));
        }
        assert_eq!(SimFault::parse_list("").unwrap(), Faults::default());
        assert_eq!(
            SimFault::parse_list("no-chip,busy").unwrap_err(),
            UnknownFault {
                name: "busy".into()
            }
        );
    }

    #[test]
    fn protected_and_locked_set_bp_and_srl_at_power_on() {
        let faults = SimFault::parse_list("protected,locked").unwrap();
        let b = SimBoard::new(SimConfig {
            faults,
            ..Default::default()
        })
        .unwrap();
        let sr = b.lock().mcu().chip.status_registers();
        assert_eq!(sr[0] & 0x1C, 0x1C);
        assert_eq!(sr[1] & 0x01, 0x01);
    }
}

/// Names of the state files in `--sim-state DIR`.
pub const INTERNAL_FLASH_FILE: &str = "stm32f407ve-flash.bin";
pub const EXTERNAL_FLASH_FILE: &str = "w25q64jv.bin";

/// A shared handle on one virtual board: the probe drives it, tests and
/// benchmarks inspect it.
#[derive(Clone)]
pub struct SimBoard(Arc<Mutex<McuBoard>>);

impl SimBoard {
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        let khz = match config.speed_khz {
            Some(k) => config.link.supported_khz(k)?,
            None => config.link.default_khz(),
        };
        let (files, flash, chip) = match &config.state_dir {
            Some(dir) => {
                let (ff, flash) =
                    BackingFile::open(dir, INTERNAL_FLASH_FILE, stm32::flash::FLASH_SIZE)?;
                let (cf, chip) = BackingFile::open(dir, EXTERNAL_FLASH_FILE, w25q64jv::SIZE)?;
                (Some((ff, cf)), flash, chip)
            }
            None => (
                None,
                vec![0xFF; stm32::flash::FLASH_SIZE],
                vec![0xFF; w25q64jv::SIZE],
            ),
        };
        let mut chip = w25q64jv::W25q64jv::new(chip).with_jedec_id(config.jedec_id);
        chip.faults = config.faults;
        if config.faults.protected || config.faults.status_locked {
            let sr = config.faults.power_on_status(chip.status_registers());
            chip.set_status_registers(sr);
        }
        let mut mcu = mcu::Mcu::new(flash, chip, config.wiring, khz as u64 * 1000);
        mcu.strict.enforce = config.strict;
        let mut board = McuBoard::new(mcu, files);
        board.set_link(config.link, config.realtime);
        board.set_fast_forward(config.fast_forward);
        Ok(Self(Arc::new(Mutex::new(board))))
    }

    /// Lock the board. A panic while it was locked (a bug) does not make it
    /// unusable: the state is still the last consistent one.
    pub fn lock(&self) -> MutexGuard<'_, McuBoard> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Log one line (tracing target `sim`, level info) with what the board
    /// did since the previous summary: link profile, virtual time, round
    /// trips, SWD transactions, instructions executed and skipped by
    /// fast-forward, SPI bytes, chip BUSY time. Returns the figures.
    pub fn log_summary(&self, what: &str) -> Summary {
        self.lock().summary(what)
    }

    /// A probe-rs probe attached to this board.
    pub fn probe(&self) -> probe_rs::probe::Probe {
        probe_rs::probe::Probe::from_specific_probe(Box::new(probe::SimProbe::new(self.clone())))
    }
}

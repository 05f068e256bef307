//! Errors of the external-flash subsystem. Every variant carries what a user
//! needs to check on the board: the address, the SPI instance and pins, or
//! the register that did not come back.
//!
//! Tiering (an `E xx` reply vs. the end of the session) is decided by
//! variant in [`ExtFlashError::probe_error`], never by message text.

use extflash_stub_abi::{self as abi, Status};

use super::app_bus::SpiActivity;
use super::chip::SfdpError;
use super::stub::StubImageError;
use crate::board::{ExtFlashWiring, Pin};
use crate::flash::PlanError;

/// The SPI instance and pins of the external flash, for messages; its
/// `Display` is "SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0)".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiWiring {
    pub spi: u8,
    pub sck: Pin,
    pub miso: Pin,
    pub mosi: Pin,
    pub cs: Pin,
}

impl SpiWiring {
    pub fn of(ext: &ExtFlashWiring) -> SpiWiring {
        SpiWiring {
            spi: ext.spi,
            sck: ext.sck,
            miso: ext.miso,
            mosi: ext.mosi,
            cs: ext.cs,
        }
    }
}

impl std::fmt::Display for SpiWiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SPI{} (SCK {}, MISO {}, MOSI {}, CS {})",
            self.spi, self.sck, self.miso, self.mosi, self.cs
        )
    }
}

impl std::fmt::Display for SpiActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpiActivity::Idle => f.write_str("idle"),
            SpiActivity::FrameOnWire => f.write_str("a frame on the wire"),
            SpiActivity::Dma { controller, stream } => {
                write!(f, "DMA{controller} stream {stream} enabled")
            }
        }
    }
}

/// A stub operation, named in messages as "what (entry point)".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StubOp {
    Identify,
    Read,
    Crc,
    BlockCrcs,
    Erase,
    ReadSfdp,
    ReadStatus,
    WriteStatus,
    Clock,
    /// The status read before a load or chip erase that finds the chip
    /// protected.
    ProtectionCheck,
    /// A stream record that erases.
    StreamErase,
    /// A stream record that programs (and the stream as a whole).
    StreamProgram,
    /// A stream record that reads an erased range back (`VERIFY_BLANK`).
    StreamVerifyBlank,
    /// Leaving the resident loop.
    Exit,
}

impl StubOp {
    /// What the operation does, for people.
    pub fn what(self) -> &'static str {
        match self {
            StubOp::Identify => "identify",
            StubOp::Read => "read",
            StubOp::Crc => "CRC",
            StubOp::BlockCrcs => "block CRCs",
            StubOp::Erase | StubOp::StreamErase => "erase",
            StubOp::ReadSfdp => "SFDP read",
            StubOp::ReadStatus => "status read",
            StubOp::WriteStatus => "status write",
            StubOp::Clock => "clock switch",
            StubOp::ProtectionCheck => "protection check",
            StubOp::StreamProgram => "program",
            StubOp::StreamVerifyBlank => "check of erased bytes",
            StubOp::Exit => "exit",
        }
    }

    /// The stub entry point that runs it.
    pub fn entry(self) -> &'static str {
        match self {
            StubOp::Identify => abi::SYM_INIT,
            StubOp::Read => abi::SYM_READ,
            StubOp::Crc => abi::SYM_CRC32,
            StubOp::BlockCrcs => abi::SYM_CRC_BLOCKS,
            StubOp::Erase => abi::SYM_ERASE,
            StubOp::ReadSfdp => abi::SYM_READ_SFDP,
            StubOp::ReadStatus | StubOp::ProtectionCheck => abi::SYM_READ_STATUS,
            StubOp::WriteStatus => abi::SYM_WRITE_STATUS,
            StubOp::Clock => "stub_clock",
            StubOp::StreamErase | StubOp::StreamProgram | StubOp::StreamVerifyBlank => {
                abi::SYM_STREAM
            }
            StubOp::Exit => abi::SYM_SERVE,
        }
    }
}

impl std::fmt::Display for StubOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.what(), self.entry())
    }
}

/// A stub entry point returned something other than [`Status::Ok`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StubStatusError {
    #[error("the chip stayed busy past its datasheet maximum ({limit_ms} ms)")]
    BusyTimeout { limit_ms: u32 },
    #[error("write enable (06h) did not set WEL: check that /WP and the chip's supply are fine")]
    WelNotSet,
    #[error(
        "the chip ignored the program/erase: it is write-protected: run `monitor flash unprotect`"
    )]
    Protected,
    #[error("no chip answers (JEDEC ID read as all ones or all zeros)")]
    NoChip,
    #[error("the stub rejected its arguments (alignment, length or erase kind)")]
    BadArgument,
    #[error("aborted by the host")]
    Aborted,
    #[error("the SPI block never completed a frame (is its clock enabled? wrong SPI instance?)")]
    SpiTimeout,
    #[error("the stub found no valid config block")]
    BadConfig,
    #[error("the PLL did not lock (RCC_CR.PLLRDY) or SYSCLK did not switch to it")]
    ClockFailed,
    #[error(
        "the page read back after programming differs from what was sent: the range does \
         not hold the image (a worn or failing chip?)"
    )]
    VerifyFailed,
    #[error("the stub returned an unknown status {code:#x}")]
    Unknown { code: u32 },
}

impl StubStatusError {
    /// `Ok(())` for [`Status::Ok`]; `limit_ms` is the operation's busy limit.
    pub fn check(code: u32, limit_ms: u32) -> Result<(), StubStatusError> {
        Err(match Status::from_u32(code) {
            Some(Status::Ok) => return Ok(()),
            Some(Status::BusyTimeout) => StubStatusError::BusyTimeout { limit_ms },
            Some(Status::WelNotSet) => StubStatusError::WelNotSet,
            Some(Status::Protected) => StubStatusError::Protected,
            Some(Status::NoChip) => StubStatusError::NoChip,
            Some(Status::BadArgument) => StubStatusError::BadArgument,
            Some(Status::Aborted) => StubStatusError::Aborted,
            Some(Status::SpiTimeout) => StubStatusError::SpiTimeout,
            Some(Status::BadConfig) => StubStatusError::BadConfig,
            Some(Status::ClockFailed) => StubStatusError::ClockFailed,
            Some(Status::VerifyFailed) => StubStatusError::VerifyFailed,
            None => StubStatusError::Unknown { code },
        })
    }
}

/// What went wrong with the external flash.
#[derive(Debug, thiserror::Error)]
pub enum ExtFlashError {
    #[error("the board file has no [external_flash] section")]
    NotConfigured,
    #[error("the built-in SPI driver stub is unusable")]
    StubImage {
        #[source]
        source: StubImageError,
    },
    #[error(
        "the stub ({len} bytes) plus its buffers do not fit the work area {start:#010x}+{size:#x}"
    )]
    WorkAreaTooSmall { start: u32, size: u32, len: u32 },
    #[error(
        "the load stopped: {from:#010x}..{to:#010x} may not hold the image (the rest of the \
         window is as before); load again once the cause is fixed"
    )]
    LoadIncomplete {
        from: u32,
        to: u32,
        #[source]
        source: Box<ExtFlashError>,
    },
    #[error("cannot pack the load for the stub")]
    Stream(#[source] super::stream::PackError),
    #[error("no SPI flash answers on {wiring}: check wiring and power")]
    NoChip { wiring: SpiWiring },
    #[error(
        "no SPI flash answers on {wiring}: {pin} is locked by the application \
         (GPIO{}_LCKR = {}) as {locked_as}: its mode cannot be set to {needed} until reset; \
         `monitor reset halt` (the reset unlocks it) and retry",
        pin.port,
        grouped_hex(*lckr)
    )]
    PinLocked {
        wiring: SpiWiring,
        pin: Pin,
        lckr: u32,
        locked_as: super::pin_lock::PinMode,
        needed: super::pin_lock::PinMode,
    },
    #[error(
        "the board file pins the external flash size to {pinned:#x} bytes, but the chip on \
         {wiring} has {chip:#x}: fix `size` in [external_flash] (or remove it to use the chip's)"
    )]
    PinnedSizeTooLarge {
        wiring: SpiWiring,
        pinned: u32,
        chip: u32,
    },
    #[error(
        "the SPI flash on {wiring} stays busy (status BUSY never clears): an erase the \
         application started may still run, or the chip is stuck; power-cycle the board"
    )]
    StaysBusy { wiring: SpiWiring },
    #[error("the SPI flash on {wiring} has JEDEC ID {found:02X?}, the board file expects {expected:02X?}")]
    UnexpectedChip {
        wiring: SpiWiring,
        expected: [u8; 3],
        found: [u8; 3],
    },
    #[error(
        "the SPI flash on {wiring} (JEDEC ID {found:02X?}) has no usable SFDP table and is not \
         in the part table: set its `size` in [external_flash] of the board file"
    )]
    UnknownSize { wiring: SpiWiring, found: [u8; 3] },
    #[error(
        "the application is in the middle of its own SPI transaction (CS {cs} is low) and \
         {address:#010x}+{len:#x} is not cached: let it run past the transaction and try again"
    )]
    AppInTransaction { cs: Pin, address: u32, len: u32 },
    #[error(
        "the core is running (after `monitor resume` or `monitor reset run`): {} cannot be \
         reached without taking the SPI from the application (only bytes read while the core \
         was halted are cached); `monitor halt` first",
        running_target(*address, *len)
    )]
    CoreRunning { address: u32, len: u32 },
    #[error(
        "the application's SPI{spi} is in the middle of a transfer ({activity}) and \
         {address:#010x}+{len:#x} is not cached: let it run past the transfer and try again"
    )]
    AppSpiBusy {
        spi: u8,
        activity: SpiActivity,
        address: u32,
        len: u32,
    },
    #[error(
        "{address:#010x}+{len:#x} is outside the {size:#x}-byte external flash at {window:#010x}"
    )]
    OutsideChip {
        address: u32,
        len: u32,
        window: u32,
        size: u32,
    },
    #[error("{op} at {address:#010x} failed on {wiring}")]
    Stub {
        op: StubOp,
        address: u32,
        wiring: SpiWiring,
        #[source]
        source: StubStatusError,
    },
    #[error(
        "{op} at {address:#010x}: the stub did not finish within {timeout_ms} ms (halted it); \
         every operation first waits for the chip's BUSY bit, so the chip most likely stays \
         busy: power-cycle the board"
    )]
    Timeout {
        op: StubOp,
        address: u32,
        timeout_ms: u64,
    },
    #[error("{op} at {address:#010x}: the stub stopped at pc {pc:#010x} instead of its BKPT")]
    WrongHalt { op: StubOp, address: u32, pc: u32 },
    #[error(
        "{op}: the stub overflowed its stack (canary at {canary:#010x} reads {found:#010x}); \
         its result is discarded, and work-area RAM just below the stack may have been \
         overwritten"
    )]
    StackOverflow { op: StubOp, canary: u32, found: u32 },
    #[error(
        "verifying {address:#010x}+{len:#x} after programming: the chip's CRC is {found:#010x}, \
         the image's {expected:#010x}; the range does not hold the image"
    )]
    VerifyFailed {
        address: u32,
        len: u32,
        expected: u32,
        found: u32,
    },
    #[error("the stub image did not read back at {address:#010x}: is the work area RAM?")]
    Readback { address: u32 },
    #[error("{op} failed")]
    Probe {
        op: ProbeOp,
        #[source]
        source: probe_rs::Error,
    },
    #[error("the chip's SFDP table at {address:#x} is unusable")]
    Sfdp {
        address: u32,
        #[source]
        source: SfdpError,
    },
    #[error("the external-flash request cannot be planned")]
    Plan(#[from] PlanError),
    #[error("write of {len} bytes at {address:#010x}: the external flash is only written by `load` (vFlashWrite); plain memory writes are refused")]
    PlainWrite { address: u32, len: usize },
}

/// The debug-port access that failed under an [`ExtFlashError::Probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeOp {
    #[error("reading {0:#010x}")]
    ReadWord(u32),
    #[error("writing {0:#010x}")]
    WriteWord(u32),
    #[error("reading core register {0}")]
    ReadRegister(u16),
    #[error("writing core register {0}")]
    WriteRegister(u16),
    #[error("saving the work area {start:#010x}..{end:#010x}")]
    SaveWorkArea { start: u32, end: u32 },
    #[error("restoring the work area {start:#010x}..{end:#010x}")]
    RestoreWorkArea { start: u32, end: u32 },
    #[error("writing the stub at {0:#010x}")]
    LoadStub(u32),
    #[error("reading back the stub at {0:#010x}")]
    ReadBackStub(u32),
    #[error("reading the core status")]
    CoreStatus,
    #[error("halting the core after the stub ({0})")]
    HaltStub(&'static str),
    #[error("starting the stub for {0}")]
    StartStub(&'static str),
    #[error("polling the core while the stub runs")]
    PollStub,
    #[error("filling the load stream's slot at {0:#010x}")]
    FillSlot(u32),
    #[error("writing the load stream's slots header at {0:#010x}")]
    SlotsHeader(u32),
    #[error("reading the stub's buffer at {0:#010x}")]
    ReadBuffer(u32),
}

impl ExtFlashError {
    pub(crate) fn probe(op: ProbeOp) -> impl FnOnce(probe_rs::Error) -> Self {
        move |source| ExtFlashError::Probe { op, source }
    }

    /// The probe-rs error underneath, if any (used to tell a lost probe).
    pub fn probe_error(&self) -> Option<&probe_rs::Error> {
        match self {
            ExtFlashError::Probe { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `0x0001_0038`: a register's halves, as RM0090 prints them.
fn grouped_hex(v: u32) -> String {
    format!("{:#06x}_{:04x}", v >> 16, v & 0xFFFF)
}

/// What a [`ExtFlashError::CoreRunning`] refused: a range, or the chip
/// itself for commands without one (`monitor flash info`, `unprotect`).
fn running_target(address: u32, len: u32) -> String {
    if len == 0 {
        "the external flash".into()
    } else {
        format!("{address:#010x}+{len:#x} of the external flash")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_messages_users_can_act_on() {
        assert_eq!(StubStatusError::check(0, 1), Ok(()));
        let protected = StubStatusError::check(Status::Protected as u32, 1).unwrap_err();
        assert!(protected.to_string().contains("monitor flash unprotect"));
        assert_eq!(
            StubStatusError::check(Status::BusyTimeout as u32, 400),
            Err(StubStatusError::BusyTimeout { limit_ms: 400 })
        );
        assert!(StubStatusError::check(1, 400)
            .unwrap_err()
            .to_string()
            .contains("400 ms"));
        assert_eq!(
            StubStatusError::check(0x77, 1),
            Err(StubStatusError::Unknown { code: 0x77 })
        );
    }

    #[test]
    fn no_chip_message_names_instance_and_pins() {
        let e = ExtFlashError::NoChip {
            wiring: SpiWiring::of(&crate::board::Board::builtin().external_flash.unwrap()),
        };
        assert_eq!(
            e.to_string(),
            "no SPI flash answers on SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0): check wiring and power"
        );
    }

    /// Operation names and SPI activity are typed until a message renders
    /// them: the entry point is the ABI's symbol.
    #[test]
    fn stub_ops_and_spi_activity_render_only_in_messages() {
        assert_eq!(
            StubOp::ProtectionCheck.to_string(),
            "protection check (stub_read_status)"
        );
        assert_eq!(StubOp::StreamProgram.to_string(), "program (stub_stream)");
        assert_eq!(StubOp::Exit.entry(), abi::SYM_SERVE);
        let e = ExtFlashError::AppSpiBusy {
            spi: 1,
            activity: SpiActivity::Dma {
                controller: 2,
                stream: 3,
            },
            address: 0x9000_0000,
            len: 4,
        };
        assert!(
            e.to_string()
                .contains("SPI1 is in the middle of a transfer (DMA2 stream 3 enabled)"),
            "{e}"
        );
        let cs = Pin {
            port: 'B',
            number: 0,
        };
        let e = ExtFlashError::AppInTransaction {
            cs,
            address: 0x9000_0000,
            len: 4,
        };
        assert!(e.to_string().contains("(CS PB0 is low)"), "{e}");
    }
}

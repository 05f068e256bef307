//! The mapping from a [`Call`] (one stub entry point with typed arguments)
//! to what the mailbox carries: the ABI command, r1..r3, the data-buffer
//! bytes it uses, and the target time to allow for it.

use std::time::Duration;

use extflash_stub_abi::{self as abi, layout::Layout, Command};

use super::error::StubOp;

/// One stub entry point with its arguments (r1..r3; r0 is the config), as
/// the ABI blocks above the entry points in `target-stub/src/main.rs` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Wake and identify the chip → r1 = mfr << 16 | type << 8 | capacity.
    Init,
    /// Read `len` bytes at chip `addr` into the buffer (r1 addr, r2 dst, r3 len).
    Read { addr: u32, len: u32 },
    /// CRC-32 (GDB qCRC, from `CRC32_INIT`) of `len` bytes at `addr` → r1.
    Crc32 { addr: u32, len: u32 },
    /// One CRC per `abi::CRC_BLOCK` of `count` blocks from `addr`, into
    /// the buffer (r1 addr, r2 dst, r3 count).
    CrcBlocks { addr: u32, count: u32 },
    /// r1 addr, r2 kind.
    Erase { addr: u32, kind: abi::EraseKind },
    /// Read `len` bytes of SFDP space at `addr` into the buffer.
    ReadSfdp { addr: u32, len: u32 },
    /// Raise the core clock for the session → r1 = the new clock, or 0.
    Clock,
    /// → r1 = SR1 | SR2 << 8 | SR3 << 16.
    ReadStatus,
    /// Write status register `which` (1..3) with `value`; `volatile`: 50h
    /// first instead of 06h (r1 which, r2 value, r3 volatile).
    WriteStatus {
        which: u32,
        value: u8,
        volatile: bool,
    },
}

impl Call {
    pub fn op(&self) -> StubOp {
        match self {
            Call::Init => StubOp::Identify,
            Call::Read { .. } => StubOp::Read,
            Call::Crc32 { .. } => StubOp::Crc,
            Call::CrcBlocks { .. } => StubOp::BlockCrcs,
            Call::Erase { .. } => StubOp::Erase,
            Call::ReadSfdp { .. } => StubOp::ReadSfdp,
            Call::ReadStatus => StubOp::ReadStatus,
            Call::WriteStatus { .. } => StubOp::WriteStatus,
            Call::Clock => StubOp::Clock,
        }
    }

    pub fn address(&self) -> u32 {
        match *self {
            Call::Read { addr, .. }
            | Call::Crc32 { addr, .. }
            | Call::CrcBlocks { addr, .. }
            | Call::Erase { addr, .. }
            | Call::ReadSfdp { addr, .. } => addr,
            _ => 0,
        }
    }

    pub(super) fn command(&self) -> Command {
        match self {
            Call::Init => Command::Init,
            Call::Read { .. } => Command::Read,
            Call::Crc32 { .. } => Command::Crc32,
            Call::CrcBlocks { .. } => Command::CrcBlocks,
            Call::Erase { .. } => Command::Erase,
            Call::ReadSfdp { .. } => Command::ReadSfdp,
            Call::ReadStatus => Command::ReadStatus,
            Call::WriteStatus { .. } => Command::WriteStatus,
            Call::Clock => Command::Clock,
        }
    }

    /// Bytes of the data buffer the call writes or reads.
    pub(super) fn buffer_use(&self) -> u32 {
        match *self {
            Call::Read { len, .. } | Call::ReadSfdp { len, .. } => len,
            Call::CrcBlocks { count, .. } => count * 4 * abi::CRC_BLOCK_WORDS + abi::CRC_SCRATCH,
            Call::Crc32 { .. } => abi::CRC_SCRATCH,
            _ => 0,
        }
    }

    /// r1, r2, r3.
    pub fn args(&self, l: &Layout) -> [u32; 3] {
        match *self {
            Call::Init | Call::ReadStatus | Call::Clock => [0; 3],
            Call::Read { addr, len } | Call::ReadSfdp { addr, len } => [addr, l.buf, len],
            Call::Crc32 { addr, len } => [addr, len, l.buf],
            Call::CrcBlocks { addr, count } => [addr, l.buf, count],
            Call::Erase { addr, kind } => [addr, kind as u32, 0],
            Call::WriteStatus {
                which,
                value,
                volatile,
            } => [which, value.into(), u32::from(volatile)],
        }
    }
}

/// Target time to allow for a stub call whose datasheet maximum is
/// `max_ms`, moving `bytes` over SPI: half again the maximum, 8 µs per byte
/// (SPI at 4 MHz or faster on a 16 MHz core, with the loop's overhead),
/// plus 1 s. Counted in CYCCNT ticks at the session's core clock.
pub fn timeout_for(max_ms: u64, bytes: u64) -> Duration {
    Duration::from_millis(max_ms + max_ms / 2 + bytes * 8 / 1000 + 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_follow_the_datasheet_maximum_and_the_spi_clock() {
        assert!(timeout_for(100_000, 0) > Duration::from_secs(100));
        assert!(timeout_for(3, 256) >= Duration::from_secs(1));
        // 8 MiB through SPI: seconds, not hours.
        let t = timeout_for(0, 8 << 20);
        assert!(
            t > Duration::from_secs(60) && t < Duration::from_secs(80),
            "{t:?}"
        );
    }
}

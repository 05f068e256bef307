//! The contract between the extflash-gdb host and its SPI driver stub.
//!
//! Both sides compile this crate, so the config block, the mailbox, the
//! record stream's slots and the status codes cannot drift apart. Everything here is `#[repr(C)]`,
//! little endian, 32-bit fields only.
//!
//! # Calling convention (every entry point)
//! - in: `r0` = address of a [`Config`] block in target RAM, `r1..r3` per entry;
//!   `sp` = top of the stub stack in the work area; `lr` = address of a
//!   `BKPT` (the [`SYM_BKPT`] symbol, Thumb bit set); `pc` = the entry symbol.
//! - out: `r0` = [`Status`]; `r1` = the entry's result where it has one.
//! - clobbered: r0-r3, r12, lr, xPSR flags; r4-r11 are preserved (AAPCS).
//! - The stub ends by returning to `lr`, i.e. on the `BKPT`.
//! - Timeouts are measured with DWT CYCCNT: the host enables DEMCR.TRCENA and
//!   DWT_CTRL.CYCCNTENA before a call and restores both afterwards.
#![no_std]

pub mod layout;
pub mod loader;
pub mod lz;
pub mod rcc;
pub mod spi_nor;

/// `Config::magic`: guards against running with an unwritten config block.
pub const CONFIG_MAGIC: u32 = 0x5846_4C31; // "XFL1"

/// Written at the lowest word of the stub stack; checked after every call.
pub const STACK_CANARY: u32 = 0xC0DE_CA5E;

/// Entry point symbols in the stub ELF.
pub const SYM_INIT: &str = "stub_init";
pub const SYM_READ: &str = "stub_read";
pub const SYM_CRC32: &str = "stub_crc32";
pub const SYM_ERASE: &str = "stub_erase";
/// Program and erase from a stream of records in slots ([`stream`]).
pub const SYM_STREAM: &str = "stub_stream";
pub const SYM_READ_SFDP: &str = "stub_read_sfdp";
pub const SYM_READ_STATUS: &str = "stub_read_status";
pub const SYM_WRITE_STATUS: &str = "stub_write_status";
pub const SYM_CRC_BLOCKS: &str = "stub_crc_blocks";
/// The resident command loop (see [`Mailbox`]).
pub const SYM_SERVE: &str = "stub_serve";
/// Where `stub_serve` spins after `Exit`, registers restored, until the
/// host halts the core.
pub const SYM_PARK: &str = "stub_park";

/// Bytes per CRC of `stub_crc_blocks`: the smallest erase every SPI NOR
/// has, so a matching block never needs erasing.
pub const CRC_BLOCK: u32 = 4096;
/// A `bkpt #0` the host points `lr` at.
pub const SYM_BKPT: &str = "stub_bkpt";

/// Marks a pin in [`PinCfg::af`] as a push-pull GPIO output (chip select).
pub const PIN_GPIO_OUTPUT: u32 = 0xFF;

/// One GPIO pin the stub configures.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PinCfg {
    /// GPIOx base address (0x40020000 + 0x400 * port).
    pub gpio_base: u32,
    /// Pin number 0..=15.
    pub pin: u32,
    /// Alternate function 0..=15, or [`PIN_GPIO_OUTPUT`].
    pub af: u32,
}

/// Datasheet maxima the stub's busy-waits give up after, in milliseconds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// Page program (tPP max 3 ms).
    pub page_program_ms: u32,
    /// 4 KiB sector erase (tSE max 400 ms).
    pub sector_erase_ms: u32,
    /// 32 KiB block erase (tBE1 max 1600 ms).
    pub block32_erase_ms: u32,
    /// 64 KiB block erase (tBE2 max 2000 ms).
    pub block64_erase_ms: u32,
    /// Chip erase (tCE max 100 s).
    pub chip_erase_ms: u32,
    /// Write status register (tW max 15 ms).
    pub write_status_ms: u32,
    /// One SPI frame (TXE/RXNE never coming means a dead SPI block).
    pub spi_frame_ms: u32,
}

impl Timeouts {
    /// The maximum of an erase of `kind`.
    pub fn erase_ms(&self, kind: EraseKind) -> u32 {
        match kind {
            EraseKind::Sector4K => self.sector_erase_ms,
            EraseKind::Block32K => self.block32_erase_ms,
            EraseKind::Block64K => self.block64_erase_ms,
            EraseKind::Chip => self.chip_erase_ms,
        }
    }

    /// W25Q64JV datasheet maxima ([`spi_nor::w25q64jv`]).
    pub const W25Q64JV: Timeouts = {
        use spi_nor::w25q64jv as t;
        Timeouts {
            page_program_ms: t::MAX_PAGE_PROGRAM_MS,
            sector_erase_ms: t::MAX_SECTOR_ERASE_MS,
            block32_erase_ms: t::MAX_BLOCK32_ERASE_MS,
            block64_erase_ms: t::MAX_BLOCK64_ERASE_MS,
            chip_erase_ms: t::MAX_CHIP_ERASE_MS,
            write_status_ms: t::MAX_WRITE_STATUS_MS,
            spi_frame_ms: 1,
        }
    };
}

/// Everything the stub needs to know about the board: one stub serves every
/// board file.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    pub magic: u32,
    /// SPIx base address.
    pub spi_base: u32,
    /// Address of the RCC enable register of the SPI (APB2ENR/APB1ENR).
    pub rcc_spi_enr: u32,
    /// Bit mask of the SPI in that register.
    pub rcc_spi_bit: u32,
    /// Address of RCC AHB1ENR (GPIO, CRC and DMA clocks).
    pub rcc_gpio_enr: u32,
    /// Bits the stub sets in AHB1ENR: the GPIO ports the pins use, the CRC
    /// unit, and the DMA controller when [`Config::dma_base`] is set.
    pub rcc_gpio_mask: u32,
    /// SCK, MISO, MOSI (alternate function), CS (GPIO output).
    pub pins: [PinCfg; 4],
    /// SPI_CR1.BR: the SPI clock is PCLK / 2^(br+1).
    pub br: u32,
    /// DWT CYCCNT ticks per millisecond (the core clock / 1000).
    pub cycles_per_ms: u32,
    pub timeouts: Timeouts,
    /// Address of IWDG_KR when the application's watchdog may be running
    /// (the stub then reloads it, 0xAAAA, in every wait); 0 otherwise.
    pub iwdg_kr: u32,
    /// DMA controller serving the SPI (DMA2 0x40026400 for SPI1); 0: the
    /// stub moves every byte itself (polled SPI).
    pub dma_base: u32,
    /// Stream numbers (0..=7) for SPI RX and TX, and their channel
    /// (SxCR.CHSEL). Both streams must be free (EN = 0) for the session.
    pub dma_rx_stream: u32,
    pub dma_tx_stream: u32,
    pub dma_channel: u32,
}

/// Bytes per DMA chunk of a streamed CRC: the stub CRCs one chunk while the
/// next one arrives, in a scratch area of two chunks.
pub const CRC_CHUNK: u32 = 512;
/// Scratch bytes `stub_crc32` and `stub_crc_blocks` need.
pub const CRC_SCRATCH: u32 = 2 * CRC_CHUNK;
/// Words `stub_crc_blocks` stores per block: the CRC, then the AND of the
/// block's words (0xFFFFFFFF: the block is erased).
pub const CRC_BLOCK_WORDS: u32 = 2;

/// The core clock `Command::Clock` switches to: SYSCLK from the PLL fed by
/// the HSI (16 MHz / M 16 * N 336 / P 2), AHB / 1, APB1 / 4, APB2 / 2.
pub const SESSION_CORE_HZ: u32 = 168_000_000;
pub const SESSION_PLLCFGR: u32 = 16 | 336 << 6 | 7 << 24;
/// RCC_CFGR at the session clock as the host reads it: HPRE / 1, PPRE1 / 4,
/// PPRE2 / 2, SW = SWS = PLL. The stub writes its [`rcc::CFGR_BUS_BITS`].
pub const SESSION_CFGR: u32 = 5 << 10 | 4 << 13 | rcc::SW_PLL | rcc::SW_PLL << rcc::CFGR_SWS_SHIFT;

/// A `#[repr(C)]` ABI block made only of `u32` fields (directly or in
/// nested blocks of the same kind): no padding, 4-byte aligned, and laid
/// out identically for the host and the stub because both compile it here.
///
/// # Safety
/// Implement only for such types; [`to_le_bytes`](Words::to_le_bytes)
/// reads the value as a slice of `u32`.
pub unsafe trait Words: Sized + Copy {
    /// Size in bytes, as the target sees it.
    const SIZE: usize = core::mem::size_of::<Self>();

    /// The block as the little-endian bytes the target reads, each field at
    /// its `core::mem::offset_of!` position.
    fn write_le(&self, out: &mut [u8]) {
        assert!(out.len() >= Self::SIZE);
        // SAFETY: `Self` is repr(C) with only u32 fields (trait contract),
        // so it is a valid, aligned [u32; SIZE / 4].
        let words = unsafe {
            core::slice::from_raw_parts(self as *const Self as *const u32, Self::SIZE / 4)
        };
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
    }

    /// The inverse of [`write_le`](Words::write_le).
    fn read_le(bytes: &[u8]) -> Self
    where
        Self: Default,
    {
        assert!(bytes.len() >= Self::SIZE);
        let mut v = Self::default();
        // SAFETY: as above; every bit pattern is a valid u32.
        let words = unsafe {
            core::slice::from_raw_parts_mut(&mut v as *mut Self as *mut u32, Self::SIZE / 4)
        };
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
            *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        v
    }
}

// SAFETY: repr(C), u32 fields only (checked by `abi_blocks_have_no_padding`).
unsafe impl Words for PinCfg {}
// SAFETY: as above.
unsafe impl Words for Timeouts {}
// SAFETY: as above; `pins` and `timeouts` are Words blocks themselves.
unsafe impl Words for Config {}
// SAFETY: as above.
unsafe impl Words for Slots {}

/// Byte offsets of the [`Slots`] fields the host writes or polls.
pub mod slots_offset {
    use super::Slots;
    pub const COUNT: u32 = core::mem::offset_of!(Slots, count) as u32;
    pub const RP: u32 = core::mem::offset_of!(Slots, rp) as u32;
    pub const ABORT: u32 = core::mem::offset_of!(Slots, abort) as u32;
}

/// Commands of the resident loop ([`Mailbox::command`]); each runs the
/// entry point of the same name with `args` as its r1..r3.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Init = 1,
    Read = 2,
    ReadSfdp = 3,
    Crc32 = 4,
    ReadStatus = 5,
    WriteStatus = 6,
    Erase = 7,
    CrcBlocks = 9,
    /// Leave the loop: the stub restores r0-r12 and lr as they were when
    /// `stub_serve` started and spins at `stub_park` until the host halts
    /// it (a halt by request: no breakpoint for the debugger to step over).
    Exit = 10,
    /// Raise the core clock for the session (`stub_clock`).
    Clock = 11,
    /// Erase and program from a stream of records ([`stream`]); args
    /// (&Slots, slot count, page buffer), as `stub_stream`.
    Stream = 12,
}

impl Command {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Init,
            2 => Self::Read,
            3 => Self::ReadSfdp,
            4 => Self::Crc32,
            5 => Self::ReadStatus,
            6 => Self::WriteStatus,
            7 => Self::Erase,
            9 => Self::CrcBlocks,
            10 => Self::Exit,
            11 => Self::Clock,
            12 => Self::Stream,
            _ => return None,
        })
    }
}

/// The resident stub's mailbox, right after the [`Config`] block (which
/// sits right above the stub stack: `stub_serve` finds both from its
/// initial `sp`).
///
/// Protocol: the host writes `command`, `args` and `seq` (a new value) in
/// one transfer; `seq` comes after them in memory, so the debug port
/// writes it last and the stub never sees a new `seq` with old arguments.
/// The stub runs the command, writes `status` and `value`, then sets
/// `done = seq`. The host polls `done` (with `status`
/// and `value`, which are final once `done == seq`). Only the host writes
/// `seq`, `command` and `args`; only the stub writes `done`, `status` and
/// `value`. While it waits the stub only reads memory, so an idle loop
/// changes no state.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mailbox {
    pub command: u32,
    pub args: [u32; 3],
    pub seq: u32,
    pub done: u32,
    pub status: u32,
    pub value: u32,
}

// SAFETY: repr(C), u32 fields only (checked by `abi_blocks_have_no_padding`).
unsafe impl Words for Mailbox {}

/// Byte offsets of the [`Mailbox`] fields.
pub mod mailbox_offset {
    use super::Mailbox;
    pub const SEQ: u32 = core::mem::offset_of!(Mailbox, seq) as u32;
    pub const COMMAND: u32 = core::mem::offset_of!(Mailbox, command) as u32;
    pub const DONE: u32 = core::mem::offset_of!(Mailbox, done) as u32;
    pub const STATUS: u32 = core::mem::offset_of!(Mailbox, status) as u32;
    pub const VALUE: u32 = core::mem::offset_of!(Mailbox, value) as u32;
}

/// Index of each pin in [`Config::pins`].
pub const PIN_SCK: usize = 0;
pub const PIN_MISO: usize = 1;
pub const PIN_MOSI: usize = 2;
pub const PIN_CS: usize = 3;

/// The slot area of `Command::Stream`, in RAM right after the [`Mailbox`]
/// (one read polls `done` with `rp`).
///
/// `[start, end)` holds `count` slots of [`stream::slot_size`] bytes. Only
/// the host writes `count`, `start`, `end` and `abort`; only the stub
/// writes `rp`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slots {
    /// Number of slots (1..=255).
    pub count: u32,
    /// Slots the stub has consumed (their data is in the chip or in the
    /// stub's page buffer): the host may reuse slot `k % count` for chunk
    /// `k + count` once `rp > k`.
    pub rp: u32,
    pub start: u32,
    pub end: u32,
    /// Non-zero: the host gives up; the stub returns [`Status::Aborted`].
    pub abort: u32,
}

/// The record stream of `Command::Stream`: every erase and program of a
/// `load`, in order, through one command, so the link keeps sending while
/// the chip erases and no run of pages waits for the one before it.
///
/// # Transport
/// Chunk `k` goes into slot `k % count`, from its start; the slot's last
/// word is the chunk's trailer, [`trailer`]`(k, n)`, `n` the bytes of
/// records in the chunk. The host writes the data and then the trailer (in
/// one memory call when the chunk fills the slot: the debug port writes in
/// address order, so the stub never sees a trailer before its data). The
/// stub waits for the trailer, runs the chunk's records, and sets
/// `Slots::rp = k + 1` as soon as it no longer needs the chunk's bytes
/// (before the last operation's busy wait). The host writes chunk `k` only
/// once `rp > k - count`, and before posting the command it makes every
/// slot's trailer stale (a chunk of its own or a zero word): a slot's
/// trailer is then always the current chunk's or chunk `k - count`'s, which
/// [`trailer_seq`] tells apart.
///
/// # Records
/// Word-aligned, never across a chunk: three words, then a payload padded
/// to a word.
///
/// ```text
/// word 0  op << 24 | payload bytes
/// word 1  chip address
/// word 2  ERASE: EraseKind (4K, 32K or 64K); PROGRAM: byte count (= payload);
///         PROGRAM_LZ: bytes after decoding; VERIFY_BLANK: byte count (no
///         payload)
/// ```
///
/// `PROGRAM_LZ`'s payload is one [`lz`] block per page (the first and last
/// page cut at the record's ends), decoded into the page buffer and
/// programmed from there. A failing record leaves [`fail_value`] in the
/// mailbox's `value`.
pub mod stream {
    pub const OP_ERASE: u32 = 1;
    pub const OP_PROGRAM: u32 = 2;
    pub const OP_PROGRAM_LZ: u32 = 3;
    /// Read a range back and fail with `VerifyFailed` unless every byte is
    /// 0xFF: the bytes of the image that no program writes, verified where
    /// the stream has erased them, with no call of their own.
    pub const OP_VERIFY_BLANK: u32 = 4;
    /// Bytes of a record's three header words.
    pub const HEADER: u32 = 12;
    /// Payload bytes of one record (24 bits of word 0).
    pub const MAX_PAYLOAD: u32 = 0xFF_FFFF;
    /// Trailer bits holding the chunk's byte count.
    pub const LEN_MASK: u32 = 0xFFFF;
    /// Largest slot (the count must fit `LEN_MASK`).
    pub const MAX_SLOT: u32 = 0x1_0000;
    /// Most slots (chunk numbers are told apart by their low byte).
    pub const MAX_SLOTS: u32 = 255;
    /// In an ERASE record's word 2 with the kind: the stub first reads the
    /// sector/block and erases it only if some byte is not 0xFF (the
    /// reading overlaps the link's transfer of the data that follows).
    /// The stream's `value` on success is the 4 KiB sectors so skipped.
    pub const ERASE_UNLESS_BLANK: u32 = 1 << 8;

    /// Each slot of `count` in `[start, end)`, word-aligned.
    pub const fn slot_size(start: u32, end: u32, count: u32) -> u32 {
        if count == 0 {
            return 0;
        }
        (end.wrapping_sub(start) / count) & !3
    }

    /// The trailer's upper half for chunk `k`: a marker and `k`'s low byte
    /// (never chunk `k - count`'s for `count` below 256, never all zeros
    /// or ones).
    pub const fn trailer_seq(k: u32) -> u32 {
        (0xA5 << 24) | ((k & 0xFF) << 16)
    }

    /// The trailer of chunk `k` holding `n` bytes of records.
    pub const fn trailer(k: u32, n: u32) -> u32 {
        trailer_seq(k) | (n & LEN_MASK)
    }

    /// Word 0 of a record.
    pub const fn head(op: u32, payload: u32) -> u32 {
        op << 24 | (payload & MAX_PAYLOAD)
    }

    /// `n` rounded up to a word.
    pub const fn padded(n: u32) -> u32 {
        (n + 3) & !3
    }

    /// The mailbox `value` of a failed stream: the record's op and chip
    /// address (below 2^24).
    pub const fn fail_value(op: u32, addr: u32) -> u32 {
        op << 24 | (addr & 0xFF_FFFF)
    }
}

/// Erase granularity for `stub_erase` (`r2`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EraseKind {
    Sector4K = 0,
    Block32K = 1,
    Block64K = 2,
    Chip = 3,
}

impl EraseKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Sector4K,
            1 => Self::Block32K,
            2 => Self::Block64K,
            3 => Self::Chip,
            _ => return None,
        })
    }

    pub fn size(self) -> u32 {
        match self {
            Self::Sector4K => 4 * 1024,
            Self::Block32K => 32 * 1024,
            Self::Block64K => 64 * 1024,
            Self::Chip => u32::MAX,
        }
    }
}

/// What every entry point returns in `r0`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    /// The chip stayed BUSY past the datasheet maximum.
    BusyTimeout = 1,
    /// Write enable did not set WEL.
    WelNotSet = 2,
    /// The chip ignored a program/erase: the address is write-protected.
    Protected = 3,
    /// JEDEC ID read as all ones or all zeros: no chip answers.
    NoChip = 4,
    /// Bad argument (alignment, length, erase kind).
    BadArgument = 5,
    /// The host set `Slots::abort`.
    Aborted = 7,
    /// The SPI block never completed a frame (clock not enabled?).
    SpiTimeout = 8,
    /// `Config::magic` is wrong, or DWT_CTRL.CYCCNTENA is off (no timeout
    /// could ever expire).
    BadConfig = 9,
    /// The PLL did not lock, or the system clock did not switch to it.
    ClockFailed = 10,
    /// A page read back after programming differs from what was sent.
    VerifyFailed = 11,
}

impl Status {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::BusyTimeout,
            2 => Self::WelNotSet,
            3 => Self::Protected,
            4 => Self::NoChip,
            5 => Self::BadArgument,
            7 => Self::Aborted,
            8 => Self::SpiTimeout,
            9 => Self::BadConfig,
            10 => Self::ClockFailed,
            11 => Self::VerifyFailed,
            _ => return None,
        })
    }
}

/// CRC-32 as GDB's `qCRC` computes it: polynomial 0x04C11DB7, MSB first,
/// initial value 0xFFFFFFFF, no final inversion. Feed chunks by passing the
/// previous result as `crc`.
pub fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

pub const CRC32_INIT: u32 = 0xFFFF_FFFF;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_gdb_qcrc_of_known_data() {
        // 4096 bytes of 0xFF, as checked against the firmware's build notes.
        assert_eq!(crc32_update(CRC32_INIT, &[0xFF; 4096]), 0xAF19_D570);
        // Chunked == whole.
        let data: [u8; 7] = *b"abcdefg";
        let whole = crc32_update(CRC32_INIT, &data);
        assert_eq!(
            crc32_update(crc32_update(CRC32_INIT, &data[..3]), &data[3..]),
            whole
        );
    }

    /// A slot's stale trailer (chunk k - count) never passes for chunk k,
    /// for every slot count allowed, and a full slot's count fits.
    #[test]
    fn slot_trailers_tell_each_chunk_from_the_one_before_in_its_slot() {
        for count in 1..=stream::MAX_SLOTS {
            for k in count..count + 600 {
                let stale = stream::trailer(k - count, 0x1234);
                assert_ne!(
                    stale & !stream::LEN_MASK,
                    stream::trailer_seq(k),
                    "count {count} k {k}"
                );
            }
        }
        assert_ne!(stream::trailer_seq(0), 0);
        assert_ne!(stream::trailer_seq(0xFF) | stream::LEN_MASK, u32::MAX);
        let slot = stream::slot_size(0x2001_C6A8, 0x2001_C6A8 + 0x6D00 + 3, 4);
        assert_eq!(slot % 4, 0);
        assert_eq!(slot, 0x1B40);
        assert!(slot - 4 <= stream::LEN_MASK);
        assert_eq!(stream::trailer(3, slot - 4) & stream::LEN_MASK, slot - 4);
        assert_eq!(stream::slot_size(0, 100, 0), 0, "no slots, no size");
    }

    #[test]
    fn record_words_hold_op_payload_and_failing_address() {
        assert_eq!(stream::head(stream::OP_PROGRAM, 256), 0x0200_0100);
        assert_eq!(stream::head(stream::OP_ERASE, 0) >> 24, stream::OP_ERASE);
        assert_eq!(stream::padded(5), 8);
        assert_eq!(stream::padded(8), 8);
        assert_eq!(
            stream::fail_value(stream::OP_PROGRAM_LZ, 0x7F_FF00),
            0x037F_FF00
        );
    }

    #[test]
    fn abi_blocks_have_no_padding() {
        assert_eq!(core::mem::size_of::<PinCfg>(), 3 * 4);
        assert_eq!(core::mem::size_of::<Timeouts>(), 7 * 4);
        assert_eq!(
            core::mem::size_of::<Config>(),
            6 * 4 + 4 * 12 + 2 * 4 + 28 + 4 + 4 * 4
        );
        assert_eq!(core::mem::size_of::<Slots>(), 5 * 4);
        assert_eq!(core::mem::size_of::<Mailbox>(), 8 * 4);
    }

    #[test]
    fn mailbox_seq_is_written_after_command_and_args() {
        // One block write from `command` to `seq`: the debug port writes in
        // address order, so `seq` lands last. done/status/value follow, so
        // one read polls them together.
        assert_eq!(mailbox_offset::COMMAND, 0);
        assert_eq!(core::mem::offset_of!(Mailbox, args), 4);
        assert_eq!(mailbox_offset::SEQ, 16);
        assert_eq!(mailbox_offset::DONE, 20);
        assert_eq!(mailbox_offset::STATUS, mailbox_offset::DONE + 4);
        assert_eq!(mailbox_offset::VALUE, mailbox_offset::DONE + 8);
        for c in (1..=12).filter(|&c| c != 8) {
            assert_eq!(Command::from_u32(c).map(|c| c as u32), Some(c));
        }
        assert_eq!(Command::from_u32(8), None, "the ring Program is gone");
        assert_eq!(Command::from_u32(0), None);
    }

    fn word_at(bytes: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
    }

    /// Every field lands at the offset the stub reads it from: a
    /// serialiser that reordered or dropped a field fails here.
    #[test]
    fn serialised_config_puts_every_field_at_its_offset() {
        use core::mem::offset_of;
        let mut n = 0x100u32;
        let mut next = || {
            n += 1;
            n
        };
        let mut pins = [PinCfg::default(); 4];
        for p in &mut pins {
            *p = PinCfg {
                gpio_base: next(),
                pin: next(),
                af: next(),
            };
        }
        let t = Timeouts {
            page_program_ms: next(),
            sector_erase_ms: next(),
            block32_erase_ms: next(),
            block64_erase_ms: next(),
            chip_erase_ms: next(),
            write_status_ms: next(),
            spi_frame_ms: next(),
        };
        let c = Config {
            magic: next(),
            spi_base: next(),
            rcc_spi_enr: next(),
            rcc_spi_bit: next(),
            rcc_gpio_enr: next(),
            rcc_gpio_mask: next(),
            pins,
            br: next(),
            cycles_per_ms: next(),
            timeouts: t,
            iwdg_kr: next(),
            dma_base: next(),
            dma_rx_stream: next(),
            dma_tx_stream: next(),
            dma_channel: next(),
        };
        let mut b = [0u8; Config::SIZE];
        c.write_le(&mut b);
        let fields = [
            (offset_of!(Config, magic), c.magic),
            (offset_of!(Config, spi_base), c.spi_base),
            (offset_of!(Config, rcc_spi_enr), c.rcc_spi_enr),
            (offset_of!(Config, rcc_spi_bit), c.rcc_spi_bit),
            (offset_of!(Config, rcc_gpio_enr), c.rcc_gpio_enr),
            (offset_of!(Config, rcc_gpio_mask), c.rcc_gpio_mask),
            (offset_of!(Config, br), c.br),
            (offset_of!(Config, cycles_per_ms), c.cycles_per_ms),
            (offset_of!(Config, iwdg_kr), c.iwdg_kr),
            (offset_of!(Config, dma_base), c.dma_base),
            (offset_of!(Config, dma_rx_stream), c.dma_rx_stream),
            (offset_of!(Config, dma_tx_stream), c.dma_tx_stream),
            (offset_of!(Config, dma_channel), c.dma_channel),
        ];
        for (off, v) in fields {
            assert_eq!(word_at(&b, off), v, "field at {off}");
        }
        for (i, p) in c.pins.iter().enumerate() {
            let base = offset_of!(Config, pins) + i * core::mem::size_of::<PinCfg>();
            assert_eq!(
                word_at(&b, base + offset_of!(PinCfg, gpio_base)),
                p.gpio_base
            );
            assert_eq!(word_at(&b, base + offset_of!(PinCfg, pin)), p.pin);
            assert_eq!(word_at(&b, base + offset_of!(PinCfg, af)), p.af);
        }
        let tb = offset_of!(Config, timeouts);
        for (off, v) in [
            (offset_of!(Timeouts, page_program_ms), t.page_program_ms),
            (offset_of!(Timeouts, sector_erase_ms), t.sector_erase_ms),
            (offset_of!(Timeouts, block32_erase_ms), t.block32_erase_ms),
            (offset_of!(Timeouts, block64_erase_ms), t.block64_erase_ms),
            (offset_of!(Timeouts, chip_erase_ms), t.chip_erase_ms),
            (offset_of!(Timeouts, write_status_ms), t.write_status_ms),
            (offset_of!(Timeouts, spi_frame_ms), t.spi_frame_ms),
        ] {
            assert_eq!(word_at(&b, tb + off), v, "timeouts field at {off}");
        }
        assert_eq!(Config::read_le(&b), c, "round trip");
    }

    #[test]
    fn serialised_slots_match_the_offsets_the_host_polls() {
        let r = Slots {
            count: 1,
            rp: 2,
            start: 3,
            end: 4,
            abort: 5,
        };
        let mut b = [0u8; Slots::SIZE];
        r.write_le(&mut b);
        assert_eq!(word_at(&b, slots_offset::COUNT as usize), 1);
        assert_eq!(word_at(&b, slots_offset::RP as usize), 2);
        assert_eq!(word_at(&b, core::mem::offset_of!(Slots, start)), 3);
        assert_eq!(word_at(&b, core::mem::offset_of!(Slots, end)), 4);
        assert_eq!(word_at(&b, slots_offset::ABORT as usize), 5);
        assert_eq!(Slots::read_le(&b), r);
    }
}

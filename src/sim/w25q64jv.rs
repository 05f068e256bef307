//! Behavioural model of the Winbond W25Q64JV 64 Mbit SPI NOR flash (single-line SPI).
//!
//! Owns the array contents, the status registers (non-volatile values and their volatile
//! working copies), the write-enable latch, BUSY timing, block protection (BP/TB/SEC/CMP and the
//! WPS individual block locks), power-down, software reset, and the ID/SFDP/unique-ID reads.
//!
//! Time is virtual (picoseconds) and BUSY is evaluated lazily against the `now` passed to each
//! call, so the board can jump its clock to [`W25q64jv::busy_until`] instead of spinning.
//!
//! Modelling choices where the datasheet is silent or where we simplify (all deliberate):
//! - Program/erase data is applied when the operation starts; BUSY then only gates access. So
//!   a power cycle or reset during BUSY leaves the operation completed (real parts leave the
//!   region undefined).
//! - Single-byte instructions (06h, 04h, 50h, B9h, 66h, 99h, C7h/60h, 7Eh/98h) act only when
//!   /CS rises straight after the opcode byte; erase/lock need exactly opcode + 3 address bytes;
//!   page program needs at least one data byte; 01h takes 1 or 2 data bytes, 31h/11h exactly 1.
//! - A program/erase/status write that is refused (no WEL, protected, SRL) is ignored entirely:
//!   no BUSY and WEL keeps its value (the datasheet only says the instruction "will not be
//!   executed"; WEL is documented to clear on completion of an operation, which never starts).
//! - 66h+99h reset is accepted while BUSY and aborts the operation (datasheet: ongoing internal
//!   operations are terminated). tRST, tDP and tRES1 are modelled as zero.
//! - /WP is assumed high, so SRP has no effect; SRL=1 refuses every status write (volatile or
//!   not) and is cleared by a power cycle, as the datasheet describes.
//! - 50h arms a volatile status write for the next 01h/31h/11h; any instruction other than a
//!   status read or status write disarms it.
//! - SEC=1 with BP=110 is not listed in the protection table; it is treated like BP=10x (32 KB).
//! - /CS deselect time (tSHSL1 10 ns; tSHSL2 50 ns after a frame that started an operation):
//!   a selection that comes sooner is still accepted and reported
//!   ([`W25q64jv::take_short_deselect`]) for strict mode to judge.
//! - Not modelled: dual/quad I/O reads, security registers (42h/44h/48h), suspend/resume
//!   (75h/7Ah are ignored), the /HOLD and /RESET pins, and the tPUW power-up delay.

use extflash_stub_abi::spi_nor::{op, w25q64jv as typ};
use std::ops::Range;

/// Array size in bytes (8 MiB).
pub const SIZE: usize = 8 * 1024 * 1024;
/// JEDEC ID of the W25Q64JV-IQ/JQ (default).
pub const JEDEC_ID_IQ: [u8; 3] = [0xEF, 0x40, 0x17];
/// JEDEC ID of the W25Q64JV-IM/JM.
pub const JEDEC_ID_IM: [u8; 3] = [0xEF, 0x70, 0x17];

const PS_PER_US: u64 = 1_000_000;
/// Page program time, typical (ps).
pub const T_PP: u64 = typ::TYP_PAGE_PROGRAM_US as u64 * PS_PER_US;
/// 4 KB sector erase time, typical (ps).
pub const T_SE: u64 = typ::TYP_SECTOR_ERASE_US as u64 * PS_PER_US;
/// 32 KB block erase time, typical (ps).
pub const T_BE32: u64 = typ::TYP_BLOCK32_ERASE_US as u64 * PS_PER_US;
/// 64 KB block erase time, typical (ps).
pub const T_BE64: u64 = typ::TYP_BLOCK64_ERASE_US as u64 * PS_PER_US;
/// Chip erase time, typical (ps).
pub const T_CE: u64 = typ::TYP_CHIP_ERASE_US as u64 * PS_PER_US;
/// /CS deselect time, minimum (ps): between two instructions (tSHSL1).
pub const T_SHSL1: u64 = 10_000;
/// /CS deselect time after an erase, program or status write, before the
/// status read that polls it (tSHSL2), minimum (ps).
pub const T_SHSL2: u64 = 50_000;
/// Non-volatile status register write time, typical (ps).
pub const T_W: u64 = typ::TYP_WRITE_STATUS_US as u64 * PS_PER_US;

const PAGE: usize = 256;
const SECTOR: usize = 4 * 1024;
const BLOCK32: usize = 32 * 1024;
const BLOCK64: usize = 64 * 1024;
/// Addresses are 24 bits; A23 is beyond the 8 MiB array and ignored (the array wraps).
const ADDR_MASK: u32 = (SIZE as u32) - 1;

const SR1_BUSY: u8 = 0x01;
const SR1_WEL: u8 = 0x02;
const SR1_TB: u8 = 0x20;
const SR1_SEC: u8 = 0x40;
const SR2_SRL: u8 = 0x01;
const SR2_LB: u8 = 0x38;
const SR2_CMP: u8 = 0x40;
const SR3_WPS: u8 = 0x04;
/// Bits a status write can change: SR1 BP0-2/TB/SEC/SRP; SR2 SRL/QE/LB1-3/CMP; SR3 WPS/DRV.
const SR_WRITABLE: [u8; 3] = [0xFC, 0x7B, 0x64];
/// Factory state of the IQ part: QE=1, DRV=11 (as read from real parts: 00 02 60).
const SR_POWER_ON: [u8; 3] = [0x00, 0x02, 0x60];

/// Fixed, made-up 64-bit unique ID returned by 4Bh.
const UNIQUE_ID: [u8; 8] = [0xD8, 0x61, 0x4C, 0x33, 0xE7, 0x52, 0x1A, 0x2F];
const DEVICE_ID: u8 = 0x16;
const MANUFACTURER_ID: u8 = 0xEF;

/// SFDP header (0x00..0x10): "SFDP", revision 1.5, one parameter header: JEDEC basic flash
/// parameter table rev 1.5, 16 DWORDs, at 0x000080. Bytes as read from a real W25Q64JV.
const SFDP_HEADER: [u8; 16] = [
    0x53, 0x46, 0x44, 0x50, 0x05, 0x01, 0x00, 0xFF, //
    0x00, 0x05, 0x01, 0x10, 0x80, 0x00, 0x00, 0xFF,
];
const SFDP_BFPT_ADDR: usize = 0x80;
/// Basic flash parameter table (0x80..0xC0). Key DWORDs: DW2 density 0x03FFFFFF bits;
/// DW8/DW9 erase types 4 KB/20h, 32 KB/52h, 64 KB/D8h; DW11 bits 7:4 = 8 → 256-byte page.
const SFDP_BFPT: [u8; 64] = [
    0xE5, 0x20, 0xF9, 0xFF, 0xFF, 0xFF, 0xFF, 0x03, //
    0x44, 0xEB, 0x08, 0x6B, 0x08, 0x3B, 0x42, 0xBB, //
    0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, //
    0xFF, 0xFF, 0x40, 0xEB, 0x0C, 0x20, 0x0F, 0x52, //
    0x10, 0xD8, 0x00, 0x00, 0x36, 0x02, 0xA6, 0x00, //
    0x82, 0xEA, 0x14, 0xC4, 0xE9, 0x63, 0x76, 0x33, //
    0x7A, 0x75, 0x7A, 0x75, 0xF7, 0xA2, 0xD5, 0x5C, //
    0x19, 0xF7, 0x4D, 0xFF, 0xE9, 0x30, 0xF8, 0x80,
];

/// Individual lock units (WPS=1): the first and last 64 KB blocks lock per 4 KB sector,
/// every other block as a whole.
const LOCK_UNITS: usize = 16 + (SIZE / BLOCK64 - 2) + 16;

/// Faults a test can inject.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Once a program/erase/write-status starts, BUSY never clears (until reset/power cycle).
    pub stuck_busy: bool,
    /// 06h is accepted but WEL never becomes 1.
    pub wel_never_sets: bool,
    /// No chip on the bus: MISO floats high and nothing happens.
    pub absent: bool,
    /// At power-on BP2-0 = 111: every block is write-protected (volatile
    /// status writes can lift it until power-off).
    pub protected: bool,
    /// At power-on SR2.SRL = 1: status registers refuse every write until
    /// a power cycle (with `protected`, the chip cannot be unprotected).
    pub status_locked: bool,
    /// Worn cells: bit 1 of each byte of the first page (0x000-0x0FF)
    /// never programs to 0 (programs and erases otherwise complete
    /// normally, BUSY and WEL as usual).
    pub worn_bit: bool,
}

impl Faults {
    /// Status registers at power-on under these faults.
    pub fn power_on_status(&self, sr: [u8; 3]) -> [u8; 3] {
        let mut sr = sr;
        if self.protected {
            sr[0] |= 0x1C;
        }
        if self.status_locked {
            sr[1] |= SR2_SRL;
        }
        sr
    }
}

/// Activity counters for tests and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Bytes clocked while the chip was selected and present.
    pub bytes_exchanged: u64,
    /// Commands that took effect, by opcode. Reads count when the chip accepts the opcode;
    /// instructions that act on /CS rising count only when they actually execute.
    pub by_opcode: [u64; 256],
    /// Page-program data bytes that were applied to the array.
    pub bytes_programmed: u64,
    /// BUSY time of the programs, erases and status writes started (their
    /// datasheet durations; a stuck BUSY counts nothing).
    pub busy_ps: u64,
    /// Bytes covered by erases that executed.
    pub bytes_erased: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            bytes_exchanged: 0,
            by_opcode: [0; 256],
            bytes_programmed: 0,
            busy_ps: 0,
            bytes_erased: 0,
        }
    }
}

/// The transaction currently clocked between /CS falling and rising.
#[derive(Debug, Clone, Copy, Default)]
struct Txn {
    opcode: u8,
    /// Bytes clocked so far including the opcode (saturating).
    len: u64,
    /// False when the opcode is unknown or refused (BUSY, power-down): the rest is ignored.
    accepted: bool,
    addr: u32,
    /// Data-phase position (array address, SFDP offset, ID byte index, ...).
    cursor: u32,
    /// 66h was the previous instruction, so a 99h in this transaction resets.
    reset_armed: bool,
    /// Data bytes of a status write (first two only; more makes the write invalid anyway).
    wdata: [u8; 2],
    /// Page-program data bytes received (saturating).
    pp_count: u32,
}

/// The W25Q64JV chip model.
pub struct W25q64jv {
    pub faults: Faults,
    mem: Vec<u8>,
    jedec_id: [u8; 3],
    /// Non-volatile status registers (SR1 bits 0-1 always stored as 0).
    sr_nv: [u8; 3],
    /// Volatile working copies; these are what status reads return and protection uses.
    sr_v: [u8; 3],
    wel: bool,
    /// 50h was issued: the next status write targets the volatile copies only.
    vsr_we: bool,
    reset_enabled: bool,
    power_down: bool,
    /// End of the current BUSY period; `u64::MAX` means stuck.
    busy_end: Option<u64>,
    locks: [bool; LOCK_UNITS],
    selected: bool,
    /// When /CS last rose, and the deselect time the datasheet asks from
    /// then (tSHSL1, or tSHSL2 after a frame that started an operation).
    deselected: Option<(u64, u64)>,
    /// A selection that came too early: (deselect time, minimum), ps.
    short_deselect: Option<(u64, u64)>,
    txn: Txn,
    /// Page-program buffer: unsent bytes stay 0xFF so ANDing them leaves the array unchanged.
    page_buf: [u8; PAGE],
    dirty: Option<Range<usize>>,
    counters: Counters,
}

impl W25q64jv {
    /// `contents` is resized/truncated to SIZE (never panic); erased state is 0xFF.
    pub fn new(mut contents: Vec<u8>) -> Self {
        contents.resize(SIZE, 0xFF);
        W25q64jv {
            faults: Faults::default(),
            mem: contents,
            jedec_id: JEDEC_ID_IQ,
            sr_nv: SR_POWER_ON,
            sr_v: SR_POWER_ON,
            wel: false,
            vsr_we: false,
            reset_enabled: false,
            power_down: false,
            busy_end: None,
            locks: [true; LOCK_UNITS],
            selected: false,
            deselected: None,
            short_deselect: None,
            txn: Txn::default(),
            page_buf: [0xFF; PAGE],
            dirty: None,
            counters: Counters::default(),
        }
    }

    /// A fully erased chip.
    pub fn erased() -> Self {
        Self::new(vec![0xFF; SIZE])
    }

    /// Replace the JEDEC ID returned by 9Fh (e.g. [`JEDEC_ID_IM`]). Status registers are
    /// unchanged; use [`Self::set_status_registers`] to model a part with other defaults.
    pub fn with_jedec_id(mut self, id: [u8; 3]) -> Self {
        self.jedec_id = id;
        self
    }

    /// /CS pin level changed: `asserted == true` means /CS driven low (selected).
    /// Per the datasheet, program/erase/write-status execution starts on the /CS rising edge
    /// after a correctly clocked command.
    pub fn chip_select(&mut self, asserted: bool, now: u64) {
        if self.faults.absent {
            return;
        }
        self.settle(now);
        if asserted && !self.selected {
            tracing::trace!(target: "sim::nor", "{now} cs");
            self.selected = true;
            self.txn = Txn::default();
            if let Some((at, min)) = self.deselected {
                let gap = now.saturating_sub(at);
                if gap < min {
                    self.short_deselect = Some((gap, min));
                }
            }
        } else if !asserted && self.selected {
            tracing::trace!(target: "sim::nor", "{now} end {:02x} {} {:x}", self.txn.opcode, self.txn.len, self.txn.addr);
            self.selected = false;
            let busy_before = self.busy_end;
            self.finish(now);
            self.txn = Txn::default();
            let started = self.busy_end != busy_before;
            self.deselected = Some((now, if started { T_SHSL2 } else { T_SHSL1 }));
        }
    }

    /// A selection since the last call that came less than tSHSL1/tSHSL2
    /// after /CS rose (W25Q64JV datasheet, AC electrical characteristics):
    /// (deselect time, minimum) in ps. The model still accepts it.
    pub fn take_short_deselect(&mut self) -> Option<(u64, u64)> {
        self.short_deselect.take()
    }

    /// One full-duplex byte exchange while selected. Returns MISO. Not selected, or
    /// `faults.absent`: returns 0xFF and does nothing.
    pub fn exchange(&mut self, mosi: u8, now: u64) -> u8 {
        if self.faults.absent || !self.selected {
            return 0xFF;
        }
        self.counters.bytes_exchanged = self.counters.bytes_exchanged.wrapping_add(1);
        self.settle(now);
        let i = self.txn.len;
        self.txn.len = i.saturating_add(1);
        if i == 0 {
            self.begin(mosi);
            return 0xFF;
        }
        if !self.txn.accepted {
            return 0xFF;
        }
        match self.txn.opcode {
            op::READ_STATUS1 => self.status_byte(0),
            op::READ_STATUS2 => self.status_byte(1),
            op::READ_STATUS3 => self.status_byte(2),
            op::JEDEC_ID => {
                let b = self.jedec_id[(self.txn.cursor % 3) as usize];
                self.txn.cursor = (self.txn.cursor + 1) % 3;
                b
            }
            op::MANUFACTURER_DEVICE_ID => {
                if i <= 3 {
                    self.addr_byte(mosi, i);
                    if i == 3 {
                        // A0=1 swaps the order to device ID first.
                        self.txn.cursor = self.txn.addr & 1;
                    }
                    return 0xFF;
                }
                let b = if self.txn.cursor & 1 == 0 {
                    MANUFACTURER_ID
                } else {
                    DEVICE_ID
                };
                self.txn.cursor = self.txn.cursor.wrapping_add(1);
                b
            }
            op::RELEASE_POWER_DOWN => {
                if i <= 3 {
                    0xFF
                } else {
                    DEVICE_ID
                }
            }
            op::READ_UNIQUE_ID => {
                if i <= 4 {
                    return 0xFF;
                }
                let b = UNIQUE_ID
                    .get(self.txn.cursor as usize)
                    .copied()
                    .unwrap_or(0xFF);
                self.txn.cursor = self.txn.cursor.saturating_add(1);
                b
            }
            op::READ_SFDP => {
                if i <= 3 {
                    self.addr_byte(mosi, i);
                    return 0xFF;
                }
                if i == 4 {
                    return 0xFF; // dummy byte
                }
                let b = sfdp_byte(self.txn.cursor);
                self.txn.cursor = self.txn.cursor.wrapping_add(1) & 0x00FF_FFFF;
                b
            }
            op::READ | op::FAST_READ => {
                if i <= 3 {
                    self.addr_byte(mosi, i);
                    return 0xFF;
                }
                if self.txn.opcode == op::FAST_READ && i == 4 {
                    return 0xFF; // dummy byte
                }
                let a = (self.txn.cursor & ADDR_MASK) as usize;
                self.txn.cursor = self.txn.cursor.wrapping_add(1) & ADDR_MASK;
                self.mem.get(a).copied().unwrap_or(0xFF)
            }
            op::PAGE_PROGRAM => {
                if i <= 3 {
                    self.addr_byte(mosi, i);
                    return 0xFF;
                }
                // The column wraps within the page; later bytes overwrite earlier ones.
                self.page_buf[(self.txn.cursor & 0xFF) as usize] = mosi;
                self.txn.cursor = self.txn.cursor.wrapping_add(1);
                self.txn.pp_count = self.txn.pp_count.saturating_add(1);
                0xFF
            }
            op::READ_LOCK => {
                if i <= 3 {
                    self.addr_byte(mosi, i);
                    return 0xFF;
                }
                u8::from(self.locks[lock_unit(self.txn.addr)])
            }
            op::WRITE_STATUS1 | op::WRITE_STATUS2 | op::WRITE_STATUS3 => {
                if let Some(slot) = self.txn.wdata.get_mut((i - 1) as usize) {
                    *slot = mosi;
                }
                0xFF
            }
            op::SECTOR_ERASE
            | op::BLOCK_ERASE_32K
            | op::BLOCK_ERASE_64K
            | op::INDIVIDUAL_LOCK
            | op::INDIVIDUAL_UNLOCK => {
                if i <= 3 {
                    self.addr_byte(mosi, i);
                }
                0xFF
            }
            _ => 0xFF,
        }
    }

    /// When the current BUSY period ends (None when idle; Some(u64::MAX) when stuck_busy).
    pub fn busy_until(&self, now: u64) -> Option<u64> {
        match self.busy_end {
            Some(end) if self.faults.stuck_busy || end == u64::MAX => Some(u64::MAX),
            Some(end) if now < end => Some(end),
            _ => None,
        }
    }

    /// The array contents (always SIZE bytes).
    pub fn contents(&self) -> &[u8] {
        &self.mem
    }

    /// Byte range changed since the last call (for persisting to a file), merged into one range.
    pub fn take_dirty(&mut self) -> Option<Range<usize>> {
        self.dirty.take()
    }

    /// Power cycle: volatile state back to power-on (WEL=0, volatile SR copies reloaded from
    /// non-volatile, not in power-down, any BUSY completes). SRL is cleared, as on the real part;
    /// individual block locks return to locked. A transaction in progress is dropped.
    pub fn power_cycle(&mut self) {
        self.sr_nv[1] &= !SR2_SRL;
        self.reset_volatile();
        self.power_down = false;
        self.selected = false;
        self.deselected = None;
        self.txn = Txn::default();
    }

    /// SR1, SR2, SR3 as a status read would return them. BUSY reflects the state as of the
    /// last call that passed a time.
    pub fn status_registers(&self) -> [u8; 3] {
        [self.sr1(), self.sr_v[1], self.sr_v[2]]
    }

    /// Set the non-volatile status registers (and their volatile copies) directly, for test
    /// setup. Read-only bits (BUSY, WEL, SUS, reserved) are ignored.
    pub fn set_status_registers(&mut self, sr: [u8; 3]) {
        for (r, v) in sr.iter().enumerate() {
            self.sr_nv[r] = v & SR_WRITABLE[r];
        }
        self.sr_v = self.sr_nv;
    }

    /// Put `data` into the array at `offset` as if it had been programmed before power-on
    /// (test and benchmark setup). Bytes past the end of the array are dropped; the range is
    /// marked dirty so a file-backed board persists it.
    pub fn load(&mut self, offset: usize, data: &[u8]) {
        let start = offset.min(SIZE);
        let end = offset.saturating_add(data.len()).min(SIZE);
        self.mem[start..end].copy_from_slice(&data[..end - start]);
        if end > start {
            self.mark_dirty(start..end);
        }
    }

    /// True while in deep power-down (after B9h, until ABh).
    pub fn is_powered_down(&self) -> bool {
        self.power_down
    }

    /// Activity counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Zero the activity counters.
    pub fn reset_counters(&mut self) {
        self.counters = Counters::default();
    }

    // ---- internals ----

    fn settle(&mut self, now: u64) {
        if let Some(end) = self.busy_end {
            if !self.faults.stuck_busy && end != u64::MAX && now >= end {
                self.busy_end = None;
                self.wel = false;
            }
        }
    }

    fn busy(&self) -> bool {
        self.busy_end.is_some()
    }

    fn start_busy(&mut self, now: u64, duration: u64) {
        let end = if self.faults.stuck_busy {
            u64::MAX
        } else {
            self.counters.busy_ps = self.counters.busy_ps.saturating_add(duration);
            now.saturating_add(duration)
        };
        tracing::trace!(target: "sim::nor", "{now} busy {duration}");
        self.busy_end = Some(end);
    }

    fn sr1(&self) -> u8 {
        let mut v = self.sr_v[0] & !(SR1_BUSY | SR1_WEL);
        if self.busy() {
            v |= SR1_BUSY;
        }
        if self.wel {
            v |= SR1_WEL;
        }
        v
    }

    fn status_byte(&self, reg: usize) -> u8 {
        if reg == 0 {
            self.sr1()
        } else {
            self.sr_v[reg]
        }
    }

    fn addr_byte(&mut self, mosi: u8, i: u64) {
        self.txn.addr = ((self.txn.addr << 8) | u32::from(mosi)) & 0x00FF_FFFF;
        if i == 3 {
            self.txn.cursor = self.txn.addr;
        }
    }

    fn count(&mut self, op: u8) {
        let c = &mut self.counters.by_opcode[op as usize];
        *c = c.wrapping_add(1);
    }

    /// Decode the opcode byte: decide whether the chip listens to this transaction.
    fn begin(&mut self, op: u8) {
        self.txn.opcode = op;
        // 99h resets only if it immediately follows 66h; any other instruction disarms.
        self.txn.reset_armed = std::mem::replace(&mut self.reset_enabled, false);
        if !matches!(
            op,
            op::READ_STATUS1
                | op::READ_STATUS2
                | op::READ_STATUS3
                | op::WRITE_STATUS1
                | op::WRITE_STATUS2
                | op::WRITE_STATUS3
                | op::VOLATILE_SR_WRITE_ENABLE
        ) {
            self.vsr_we = false;
        }
        let known = matches!(
            op,
            op::READ_STATUS1
                | op::READ_STATUS2
                | op::READ_STATUS3
                | op::JEDEC_ID
                | op::MANUFACTURER_DEVICE_ID
                | op::RELEASE_POWER_DOWN
                | op::READ_UNIQUE_ID
                | op::READ_SFDP
                | op::READ
                | op::FAST_READ
                | op::READ_LOCK
        ) || is_deferred(op);
        self.txn.accepted = if self.power_down {
            op == op::RELEASE_POWER_DOWN
        } else if self.busy() {
            matches!(
                op,
                op::READ_STATUS1
                    | op::READ_STATUS2
                    | op::READ_STATUS3
                    | op::ENABLE_RESET
                    | op::RESET
            )
        } else {
            known
        };
        if op == op::PAGE_PROGRAM && self.txn.accepted {
            self.page_buf = [0xFF; PAGE];
        }
        if self.txn.accepted && !is_deferred(op) {
            self.count(op);
        }
    }

    /// /CS rising: execute instructions that act at the end of the transaction.
    fn finish(&mut self, now: u64) {
        let t = self.txn;
        if !t.accepted {
            return;
        }
        let n = t.len;
        let executed = match t.opcode {
            op::WRITE_ENABLE if n == 1 => {
                if !self.faults.wel_never_sets {
                    self.wel = true;
                }
                true
            }
            op::WRITE_DISABLE if n == 1 => {
                self.wel = false;
                true
            }
            op::VOLATILE_SR_WRITE_ENABLE if n == 1 => {
                self.vsr_we = true;
                true
            }
            op::WRITE_STATUS1 if n == 2 => self.write_status(&[(0, t.wdata[0])], now),
            op::WRITE_STATUS1 if n == 3 => {
                self.write_status(&[(0, t.wdata[0]), (1, t.wdata[1])], now)
            }
            op::WRITE_STATUS2 if n == 2 => self.write_status(&[(1, t.wdata[0])], now),
            op::WRITE_STATUS3 if n == 2 => self.write_status(&[(2, t.wdata[0])], now),
            op::PAGE_PROGRAM if n >= 5 => self.program(t.addr, t.pp_count, now),
            op::SECTOR_ERASE if n == 4 => self.erase(t.addr, SECTOR, T_SE, now),
            op::BLOCK_ERASE_32K if n == 4 => self.erase(t.addr, BLOCK32, T_BE32, now),
            op::BLOCK_ERASE_64K if n == 4 => self.erase(t.addr, BLOCK64, T_BE64, now),
            op::CHIP_ERASE | op::CHIP_ERASE_60 if n == 1 => self.erase(0, SIZE, T_CE, now),
            op::POWER_DOWN if n == 1 => {
                self.power_down = true;
                true
            }
            // Release happens on /CS rising whether or not the ID was clocked out.
            op::RELEASE_POWER_DOWN => {
                self.power_down = false;
                false // already counted when accepted
            }
            op::ENABLE_RESET if n == 1 => {
                self.reset_enabled = true;
                true
            }
            op::RESET if n == 1 && t.reset_armed => {
                self.reset_volatile();
                true
            }
            op::INDIVIDUAL_LOCK | op::INDIVIDUAL_UNLOCK if n == 4 && self.wel => {
                self.locks[lock_unit(t.addr)] = t.opcode == op::INDIVIDUAL_LOCK;
                true
            }
            op::GLOBAL_LOCK | op::GLOBAL_UNLOCK if n == 1 && self.wel => {
                self.locks = [t.opcode == op::GLOBAL_LOCK; LOCK_UNITS];
                true
            }
            _ => false,
        };
        if executed {
            self.count(t.opcode);
        }
    }

    /// Volatile state to its power-on/reset values (shared by 99h and power cycle).
    fn reset_volatile(&mut self) {
        self.sr_v = self.sr_nv;
        self.wel = false;
        self.vsr_we = false;
        self.reset_enabled = false;
        self.busy_end = None;
        self.locks = [true; LOCK_UNITS];
    }

    fn write_status(&mut self, writes: &[(usize, u8)], now: u64) -> bool {
        if self.sr_v[1] & SR2_SRL != 0 {
            return false;
        }
        let volatile = self.vsr_we;
        if !volatile && !self.wel {
            return false;
        }
        let mut regs = if volatile { self.sr_v } else { self.sr_nv };
        for &(r, v) in writes {
            let old = regs[r];
            let mut new = (old & !SR_WRITABLE[r]) | (v & SR_WRITABLE[r]);
            if r == 1 {
                new |= old & SR2_LB; // LB1-3 are one-time programmable: never cleared
            }
            regs[r] = new;
        }
        if volatile {
            self.sr_v = regs;
            self.vsr_we = false;
        } else {
            self.sr_nv = regs;
            self.sr_v = regs;
            self.start_busy(now, T_W);
        }
        true
    }

    fn program(&mut self, addr: u32, data_bytes: u32, now: u64) -> bool {
        let base = (addr & ADDR_MASK) as usize & !(PAGE - 1);
        if !self.wel || self.range_protected(base, PAGE) {
            return false;
        }
        let mut changed: Option<(usize, usize)> = None;
        if let Some(page) = self.mem.get_mut(base..base + PAGE) {
            let worn = self.faults.worn_bit && base == 0;
            for (j, (cell, &d)) in page.iter_mut().zip(self.page_buf.iter()).enumerate() {
                let d = if worn { d | 0x02 } else { d };
                let new = *cell & d;
                if new != *cell {
                    *cell = new;
                    changed = Some(changed.map_or((j, j), |(lo, _)| (lo, j)));
                }
            }
        }
        if let Some((lo, hi)) = changed {
            self.mark_dirty(base + lo..base + hi + 1);
        }
        let applied = u64::from(data_bytes.min(PAGE as u32));
        self.counters.bytes_programmed = self.counters.bytes_programmed.wrapping_add(applied);
        self.start_busy(now, T_PP);
        true
    }

    fn erase(&mut self, addr: u32, len: usize, duration: u64, now: u64) -> bool {
        let base = (addr & ADDR_MASK) as usize & !(len - 1);
        if !self.wel || self.range_protected(base, len) {
            return false;
        }
        if let Some(region) = self.mem.get_mut(base..base + len) {
            let first = region.iter().position(|&b| b != 0xFF);
            let last = region.iter().rposition(|&b| b != 0xFF);
            region.fill(0xFF);
            if let (Some(lo), Some(hi)) = (first, last) {
                self.mark_dirty(base + lo..base + hi + 1);
            }
        }
        self.counters.bytes_erased = self.counters.bytes_erased.wrapping_add(len as u64);
        self.start_busy(now, duration);
        true
    }

    fn mark_dirty(&mut self, r: Range<usize>) {
        self.dirty = Some(match self.dirty.take() {
            Some(d) => d.start.min(r.start)..d.end.max(r.end),
            None => r,
        });
    }

    /// Whether any byte of `[start, start+len)` is write-protected.
    fn range_protected(&self, start: usize, len: usize) -> bool {
        let end = start.saturating_add(len).min(SIZE);
        if self.sr_v[2] & SR3_WPS != 0 {
            // Lock units are at least 4 KB, so probing every 4 KB finds every unit.
            return (start..end)
                .step_by(SECTOR)
                .any(|a| self.locks[lock_unit(a as u32)]);
        }
        let (ps, pe) = bp_range(self.sr_v[0]);
        if self.sr_v[1] & SR2_CMP != 0 {
            start < ps || end > pe
        } else {
            ps < pe && start < pe && end > ps
        }
    }
}

/// Instructions that act on /CS rising rather than while bytes are clocked.
fn is_deferred(op: u8) -> bool {
    matches!(
        op,
        op::WRITE_ENABLE
            | op::WRITE_DISABLE
            | op::VOLATILE_SR_WRITE_ENABLE
            | op::WRITE_STATUS1
            | op::WRITE_STATUS2
            | op::WRITE_STATUS3
            | op::PAGE_PROGRAM
            | op::SECTOR_ERASE
            | op::BLOCK_ERASE_32K
            | op::BLOCK_ERASE_64K
            | op::CHIP_ERASE
            | op::CHIP_ERASE_60
            | op::POWER_DOWN
            | op::ENABLE_RESET
            | op::RESET
            | op::INDIVIDUAL_LOCK
            | op::INDIVIDUAL_UNLOCK
            | op::GLOBAL_LOCK
            | op::GLOBAL_UNLOCK
    )
}

/// Protected byte range `[start, end)` selected by SEC/TB/BP2-0 with CMP=0 (empty when
/// start == end). CMP=1 protects the complement.
fn bp_range(sr1: u8) -> (usize, usize) {
    let bp = (sr1 >> 2) & 0x07;
    let len = match bp {
        0 => return (0, 0),
        7 => return (0, SIZE),
        // 4, 8, 16, 32 KB; the table saturates at 32 KB.
        _ if sr1 & SR1_SEC != 0 => (SECTOR << (bp - 1)).min(BLOCK32),
        // 1/64 .. 1/2 of the array (128 KB .. 4 MB).
        _ => SIZE >> (7 - bp),
    };
    if sr1 & SR1_TB != 0 {
        (0, len)
    } else {
        (SIZE - len, SIZE)
    }
}

/// Index of the individual-lock unit covering `addr`.
fn lock_unit(addr: u32) -> usize {
    let a = (addr & ADDR_MASK) as usize;
    let top = SIZE - BLOCK64;
    if a < BLOCK64 {
        a / SECTOR
    } else if a >= top {
        16 + (SIZE / BLOCK64 - 2) + (a - top) / SECTOR
    } else {
        16 + (a / BLOCK64 - 1)
    }
}

/// One byte of the SFDP space; unused locations read 0xFF.
fn sfdp_byte(addr: u32) -> u8 {
    let a = addr as usize;
    if let Some(&b) = SFDP_HEADER.get(a) {
        return b;
    }
    a.checked_sub(SFDP_BFPT_ADDR)
        .and_then(|o| SFDP_BFPT.get(o))
        .copied()
        .unwrap_or(0xFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One complete transaction at time `now`; returns MISO for every byte.
    fn xfer(chip: &mut W25q64jv, bytes: &[u8], now: u64) -> Vec<u8> {
        chip.chip_select(true, now);
        let out = bytes.iter().map(|&b| chip.exchange(b, now)).collect();
        chip.chip_select(false, now);
        out
    }

    fn sr1(chip: &mut W25q64jv, now: u64) -> u8 {
        xfer(chip, &[0x05, 0], now)[1]
    }

    fn wren(chip: &mut W25q64jv, now: u64) {
        xfer(chip, &[0x06], now);
    }

    fn cmd_addr(op: u8, addr: u32) -> Vec<u8> {
        vec![op, (addr >> 16) as u8, (addr >> 8) as u8, addr as u8]
    }

    fn read(chip: &mut W25q64jv, addr: u32, len: usize, now: u64) -> Vec<u8> {
        let mut bytes = cmd_addr(0x03, addr);
        bytes.resize(4 + len, 0);
        xfer(chip, &bytes, now)[4..].to_vec()
    }

    /// 06h + 02h at `now`; returns the time just after programming completes.
    fn program(chip: &mut W25q64jv, addr: u32, data: &[u8], now: u64) -> u64 {
        wren(chip, now);
        let mut bytes = cmd_addr(0x02, addr);
        bytes.extend_from_slice(data);
        xfer(chip, &bytes, now);
        now + T_PP
    }

    fn erase(chip: &mut W25q64jv, op: u8, addr: u32, now: u64) {
        wren(chip, now);
        xfer(chip, &cmd_addr(op, addr), now);
    }

    fn filled(byte: u8) -> W25q64jv {
        W25q64jv::new(vec![byte; SIZE])
    }

    /// Operation at t=1000 is BUSY one ps before its typical time and idle exactly at it.
    fn assert_busy_for(chip: &mut W25q64jv, t0: u64, dur: u64) {
        assert_eq!(sr1(chip, t0) & SR1_BUSY, SR1_BUSY, "busy right after start");
        assert_eq!(chip.busy_until(t0), Some(t0 + dur));
        assert_eq!(
            sr1(chip, t0 + dur - 1) & SR1_BUSY,
            SR1_BUSY,
            "still busy just before"
        );
        assert_eq!(
            sr1(chip, t0 + dur) & (SR1_BUSY | SR1_WEL),
            0,
            "idle, WEL clear after"
        );
        assert_eq!(chip.busy_until(t0 + dur), None);
    }

    #[test]
    fn busy_lasts_typical_page_program_time() {
        let mut c = W25q64jv::erased();
        program(&mut c, 0, &[0], 1000);
        assert_busy_for(&mut c, 1000, T_PP);
    }

    #[test]
    fn busy_lasts_typical_erase_times() {
        for (op, dur) in [(0x20, T_SE), (0x52, T_BE32), (0xD8, T_BE64)] {
            let mut c = filled(0);
            erase(&mut c, op, 0x10000, 1000);
            assert_busy_for(&mut c, 1000, dur);
        }
        let mut c = filled(0);
        wren(&mut c, 1000);
        xfer(&mut c, &[0xC7], 1000);
        assert_busy_for(&mut c, 1000, T_CE);
        let mut c = filled(0);
        wren(&mut c, 1000);
        xfer(&mut c, &[0x60], 1000);
        assert_busy_for(&mut c, 1000, T_CE);
        assert!(c.contents().iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn busy_lasts_typical_write_status_time() {
        let mut c = W25q64jv::erased();
        wren(&mut c, 1000);
        xfer(&mut c, &[0x01, 0x04], 1000);
        assert_busy_for(&mut c, 1000, T_W);
        assert_eq!(c.status_registers()[0], 0x04);
    }

    #[test]
    fn wel_set_by_06_cleared_by_04_and_after_program() {
        let mut c = W25q64jv::erased();
        assert_eq!(sr1(&mut c, 0) & SR1_WEL, 0, "power-on WEL=0");
        wren(&mut c, 0);
        assert_eq!(sr1(&mut c, 0) & SR1_WEL, SR1_WEL);
        xfer(&mut c, &[0x04], 0);
        assert_eq!(sr1(&mut c, 0) & SR1_WEL, 0);
        let t = program(&mut c, 0, &[0x12], 0);
        assert_eq!(
            sr1(&mut c, 0),
            SR1_BUSY | SR1_WEL,
            "WEL stays set while busy"
        );
        assert_eq!(sr1(&mut c, t) & SR1_WEL, 0);
        // A second program without a new 06h is ignored.
        xfer(&mut c, &[0x02, 0, 0, 1, 0x00], t);
        assert_eq!(sr1(&mut c, t) & SR1_BUSY, 0);
        assert_eq!(read(&mut c, 0, 2, t), vec![0x12, 0xFF]);
    }

    #[test]
    fn program_and_erase_without_wel_are_ignored() {
        let mut c = filled(0x5A);
        xfer(&mut c, &[0x02, 0, 0, 0, 0x00], 0);
        xfer(&mut c, &cmd_addr(0x20, 0), 0);
        xfer(&mut c, &[0xC7], 0);
        assert_eq!(c.busy_until(0), None);
        assert!(c.contents().iter().all(|&b| b == 0x5A));
        assert_eq!(c.take_dirty(), None);
    }

    #[test]
    fn wel_never_sets_fault_blocks_writes() {
        let mut c = W25q64jv::erased();
        c.faults.wel_never_sets = true;
        wren(&mut c, 0);
        assert_eq!(sr1(&mut c, 0) & SR1_WEL, 0);
        xfer(&mut c, &[0x02, 0, 0, 0, 0x00], 0);
        assert_eq!(c.contents()[0], 0xFF);
        assert_eq!(c.busy_until(0), None);
    }

    #[test]
    fn bp_all_protects_every_address_from_program_and_erase() {
        let mut c = filled(0xF0);
        c.set_status_registers([0x1C, 0x02, 0x60]); // BP2..0 = 111
        for addr in [0, 0x3F_F000, SIZE as u32 - 256] {
            program(&mut c, addr, &[0x00], 0);
            erase(&mut c, 0x20, addr, 0);
            erase(&mut c, 0xD8, addr, 0);
        }
        wren(&mut c, 0);
        xfer(&mut c, &[0xC7], 0);
        assert_eq!(c.busy_until(0), None, "nothing started");
        assert!(c.contents().iter().all(|&b| b == 0xF0));
        assert_eq!(
            sr1(&mut c, 0) & SR1_WEL,
            SR1_WEL,
            "refused commands leave WEL set"
        );
    }

    #[test]
    fn top_and_bottom_protection_follow_tb() {
        // BP=001, TB=0: upper 1/64 = 7E0000..7FFFFF protected.
        let mut c = filled(0);
        c.set_status_registers([0x04, 0x02, 0x60]);
        erase(&mut c, 0x20, 0x7E_0000, 0);
        assert_eq!(c.busy_until(0), None);
        erase(&mut c, 0x20, 0x7D_F000, 0);
        assert!(
            c.busy_until(0).is_some(),
            "just below the protected area erases"
        );
        // BP=001, TB=1: lower 1/64 = 000000..01FFFF protected.
        let mut c = filled(0);
        c.set_status_registers([0x24, 0x02, 0x60]);
        erase(&mut c, 0x20, 0x01_F000, 0);
        assert_eq!(c.busy_until(0), None);
        erase(&mut c, 0x20, 0x7E_0000, 0);
        assert!(c.busy_until(0).is_some());
        // BP=110, TB=1: lower half.
        let mut c = filled(0);
        c.set_status_registers([0x38, 0x02, 0x60]);
        erase(&mut c, 0x20, 0x3F_F000, 0);
        assert_eq!(c.busy_until(0), None);
        erase(&mut c, 0x20, 0x40_0000, 0);
        assert!(c.busy_until(0).is_some());
    }

    #[test]
    fn sec_bit_protects_4k_granularity_and_blocks_overlapping_block_erase() {
        // SEC=1, TB=0, BP=001: only the top 4 KB sector.
        let mut c = filled(0);
        c.set_status_registers([0x44, 0x02, 0x60]);
        erase(&mut c, 0x20, 0x7F_F000, 0);
        assert_eq!(c.busy_until(0), None);
        erase(&mut c, 0xD8, 0x7F_0000, 0);
        assert_eq!(
            c.busy_until(0),
            None,
            "64K block containing the sector is refused"
        );
        erase(&mut c, 0x20, 0x7F_E000, 0);
        assert!(c.busy_until(0).is_some(), "neighbour sector is free");
        // SEC=1, TB=1, BP=100: bottom 32 KB.
        let mut c = filled(0);
        c.set_status_registers([0x70, 0x02, 0x60]);
        program(&mut c, 0x7F00, &[0xFF], 0);
        assert_eq!(c.busy_until(0), None);
        program(&mut c, 0x8000, &[0x00], 0);
        assert!(c.busy_until(0).is_some());
    }

    #[test]
    fn cmp_inverts_protection() {
        // BP=001 TB=0 CMP=1: everything except the top 128 KB is protected.
        let mut c = filled(0);
        c.set_status_registers([0x04, 0x42, 0x60]);
        erase(&mut c, 0x20, 0x7D_F000, 0);
        assert_eq!(c.busy_until(0), None);
        erase(&mut c, 0x20, 0x7E_0000, 0);
        assert!(c.busy_until(0).is_some());
        // CMP=1 with BP=000 protects all; with BP=111 protects none.
        let mut c = filled(0);
        c.set_status_registers([0x00, 0x42, 0x60]);
        erase(&mut c, 0x20, 0x7F_F000, 0);
        assert_eq!(c.busy_until(0), None);
        c.set_status_registers([0x1C, 0x42, 0x60]);
        wren(&mut c, 0);
        xfer(&mut c, &[0xC7], 0);
        assert!(
            c.busy_until(0).is_some(),
            "chip erase allowed when nothing protected"
        );
    }

    #[test]
    fn chip_erase_refused_when_any_block_protected() {
        let mut c = filled(0);
        c.set_status_registers([0x44, 0x02, 0x60]); // top 4 KB only
        wren(&mut c, 0);
        xfer(&mut c, &[0xC7], 0);
        assert_eq!(c.busy_until(0), None);
        assert_eq!(c.contents()[0], 0);
    }

    #[test]
    fn volatile_status_write_via_50h_protects_without_busy_and_reverts_on_power_cycle() {
        let mut c = filled(0);
        xfer(&mut c, &[0x50], 0);
        xfer(&mut c, &[0x01, 0x1C], 0);
        assert_eq!(c.busy_until(0), None, "volatile write has no tW");
        assert_eq!(sr1(&mut c, 0), 0x1C, "WEL untouched (still 0)");
        erase(&mut c, 0x20, 0, 0);
        assert_eq!(c.busy_until(0), None, "protected by volatile BP");
        assert_eq!(
            sr1(&mut c, 0),
            0x1C | SR1_WEL,
            "WEL stays set, erase refused"
        );
        c.power_cycle();
        assert_eq!(c.status_registers(), [0x00, 0x02, 0x60]);
        erase(&mut c, 0x20, 0, 0);
        assert!(c.busy_until(0).is_some());
    }

    #[test]
    fn volatile_write_keeps_wel_and_other_commands_disarm_50h() {
        let mut c = W25q64jv::erased();
        wren(&mut c, 0);
        xfer(&mut c, &[0x50], 0);
        xfer(&mut c, &[0x31, 0x42], 0);
        assert_eq!(c.busy_until(0), None);
        assert_eq!(c.status_registers(), [SR1_WEL, 0x42, 0x60]);
        // 50h then a read: the next status write is a normal (non-volatile) one.
        xfer(&mut c, &[0x50], 0);
        read(&mut c, 0, 1, 0);
        xfer(&mut c, &[0x11, 0x00], 0);
        assert_eq!(c.busy_until(0), Some(T_W), "used WEL, non-volatile write");
    }

    #[test]
    fn nonvolatile_status_write_survives_power_cycle_and_01h_writes_sr2() {
        let mut c = W25q64jv::erased();
        wren(&mut c, 0);
        xfer(&mut c, &[0x01, 0x24, 0x40], 0);
        c.power_cycle();
        assert_eq!(c.status_registers(), [0x24, 0x40, 0x60]);
        // 01h with three data bytes is not a valid length: ignored.
        wren(&mut c, 0);
        xfer(&mut c, &[0x01, 0x00, 0x00, 0x00], 0);
        assert_eq!(c.status_registers(), [0x24 | SR1_WEL, 0x40, 0x60]);
    }

    #[test]
    fn srl_refuses_status_writes_until_power_cycle() {
        let mut c = W25q64jv::erased();
        c.set_status_registers([0x00, 0x03, 0x60]);
        wren(&mut c, 0);
        xfer(&mut c, &[0x01, 0x1C], 0);
        xfer(&mut c, &[0x50], 0);
        xfer(&mut c, &[0x01, 0x1C], 0);
        assert_eq!(c.busy_until(0), None);
        assert_eq!(c.status_registers()[0] & 0xFC, 0);
        c.power_cycle();
        assert_eq!(c.status_registers()[1], 0x02, "power cycle clears SRL");
    }

    #[test]
    fn page_program_wraps_within_page() {
        let mut c = W25q64jv::erased();
        let data: Vec<u8> = (0..4).collect();
        program(&mut c, 0x1FE, &data, 0);
        assert_eq!(&c.contents()[0x1FE..0x200], &[0, 1]);
        assert_eq!(&c.contents()[0x100..0x102], &[2, 3]);
        assert_eq!(c.contents()[0x200], 0xFF, "next page untouched");
    }

    #[test]
    fn page_program_more_than_256_bytes_last_256_win() {
        let mut c = W25q64jv::erased();
        let data: Vec<u8> = (0..300u32)
            .map(|i| if i < 44 { 0x00 } else { 0xA5 })
            .collect();
        program(&mut c, 0x300, &data, 0);
        assert!(c.contents()[0x300..0x400].iter().all(|&b| b == 0xA5));
        assert_eq!(c.counters().bytes_programmed, 256);
    }

    #[test]
    fn program_only_clears_bits() {
        let mut c = W25q64jv::erased();
        let t = program(&mut c, 0, &[0xF0], 0);
        program(&mut c, 0, &[0x3C], t);
        assert_eq!(c.contents()[0], 0x30);
    }

    #[test]
    fn sector_erase_does_not_touch_neighbours() {
        let mut c = filled(0);
        erase(&mut c, 0x20, 0x2345, 0);
        assert!(c.contents()[0x2000..0x3000].iter().all(|&b| b == 0xFF));
        assert_eq!(c.contents()[0x1FFF], 0);
        assert_eq!(c.contents()[0x3000], 0);
    }

    #[test]
    fn block_erases_align_down() {
        let mut c = filled(0);
        erase(&mut c, 0xD8, 0x1_ABCD, 0);
        assert!(c.contents()[0x1_0000..0x2_0000].iter().all(|&b| b == 0xFF));
        assert_eq!(c.contents()[0xFFFF], 0);
        assert_eq!(c.contents()[0x2_0000], 0);
        let mut c = filled(0);
        erase(&mut c, 0x52, 0x1_ABCD, 0);
        assert!(c.contents()[0x1_8000..0x2_0000].iter().all(|&b| b == 0xFF));
        assert_eq!(c.contents()[0x1_7FFF], 0);
        assert_eq!(c.contents()[0x2_0000], 0);
    }

    #[test]
    fn erase_needs_exactly_three_address_bytes() {
        let mut c = filled(0);
        wren(&mut c, 0);
        xfer(&mut c, &[0x20, 0, 0], 0);
        xfer(&mut c, &[0x20, 0, 0, 0, 0], 0);
        assert_eq!(c.busy_until(0), None);
        assert_eq!(c.contents()[0], 0);
    }

    #[test]
    fn sfdp_reports_signature_density_erase_types_and_page_size() {
        let mut c = W25q64jv::erased();
        let mut cmd = vec![0x5A, 0, 0, 0, 0];
        cmd.resize(5 + 256, 0);
        let t = xfer(&mut c, &cmd, 0)[5..].to_vec();
        assert_eq!(&t[0..4], b"SFDP");
        assert_eq!((t[5], t[4]), (1, 5), "SFDP revision 1.5");
        assert_eq!(&t[0x0C..0x0F], &[0x80, 0, 0], "BFPT pointer");
        assert_eq!(&t[0x84..0x88], &[0xFF, 0xFF, 0xFF, 0x03], "0x03FFFFFF bits");
        assert_eq!(&t[0x9C..0xA2], &[0x0C, 0x20, 0x0F, 0x52, 0x10, 0xD8]);
        assert_eq!(t[0x81], 0x20, "4 KB erase opcode");
        assert_eq!(t[0xA8] >> 4, 8, "256-byte page");
        assert!(t[0x10..0x80].iter().chain(&t[0xC0..]).all(|&b| b == 0xFF));
        // Starting mid-table works too.
        assert_eq!(xfer(&mut c, &[0x5A, 0, 0, 0x9D, 0, 0], 0)[5], 0x20);
    }

    #[test]
    fn ids_jedec_manufacturer_device_and_unique() {
        let mut c = W25q64jv::erased();
        assert_eq!(&xfer(&mut c, &[0x9F, 0, 0, 0], 0)[1..], &JEDEC_ID_IQ);
        assert_eq!(
            &xfer(&mut c, &[0x90, 0, 0, 0, 0, 0, 0], 0)[4..],
            &[0xEF, 0x16, 0xEF]
        );
        assert_eq!(&xfer(&mut c, &[0x90, 0, 0, 1, 0, 0], 0)[4..], &[0x16, 0xEF]);
        assert_eq!(&xfer(&mut c, &[0xAB, 0, 0, 0, 0, 0], 0)[4..], &[0x16, 0x16]);
        let mut cmd = vec![0x4B, 0, 0, 0, 0];
        cmd.resize(13, 0);
        assert_eq!(&xfer(&mut c, &cmd, 0)[5..], &UNIQUE_ID);
        let mut im = W25q64jv::erased().with_jedec_id(JEDEC_ID_IM);
        assert_eq!(&xfer(&mut im, &[0x9F, 0, 0, 0], 0)[1..], &JEDEC_ID_IM);
    }

    #[test]
    fn power_on_status_registers_match_iq_part() {
        let mut c = W25q64jv::erased();
        assert_eq!(
            xfer(&mut c, &[0x05, 0, 0], 0)[1..],
            [0x00, 0x00],
            "continuous read"
        );
        assert_eq!(xfer(&mut c, &[0x35, 0], 0)[1], 0x02);
        assert_eq!(xfer(&mut c, &[0x15, 0], 0)[1], 0x60);
    }

    #[test]
    fn only_status_reads_answered_while_busy() {
        let mut c = filled(0x11);
        erase(&mut c, 0x20, 0x1000, 0);
        let t = 1000;
        assert_eq!(read(&mut c, 0, 2, t), vec![0xFF, 0xFF]);
        assert_eq!(xfer(&mut c, &[0x9F, 0, 0, 0], t), vec![0xFF; 4]);
        xfer(&mut c, &[0x04], t);
        assert_eq!(sr1(&mut c, t), SR1_BUSY | SR1_WEL, "04h ignored");
        xfer(&mut c, &cmd_addr(0x20, 0), t);
        xfer(&mut c, &[0xB9], t);
        assert!(!c.is_powered_down());
        assert_eq!(xfer(&mut c, &[0x35, 0], t)[1], 0x02);
        assert_eq!(xfer(&mut c, &[0x15, 0], t)[1], 0x60);
        assert_eq!(
            c.busy_until(t),
            Some(T_SE),
            "second erase did not restart timing"
        );
        assert_eq!(read(&mut c, 0, 1, T_SE), vec![0x11], "sector 0 untouched");
    }

    #[test]
    fn status_read_sees_busy_clear_within_one_transaction() {
        let mut c = W25q64jv::erased();
        program(&mut c, 0, &[0], 0);
        c.chip_select(true, 0);
        c.exchange(0x05, 0);
        assert_eq!(c.exchange(0, 1) & SR1_BUSY, SR1_BUSY);
        assert_eq!(c.exchange(0, T_PP) & SR1_BUSY, 0);
        c.chip_select(false, T_PP);
    }

    #[test]
    fn reset_66_99_clears_wel_and_reloads_volatile_status() {
        let mut c = W25q64jv::erased();
        xfer(&mut c, &[0x50], 0);
        xfer(&mut c, &[0x01, 0x1C], 0);
        wren(&mut c, 0);
        xfer(&mut c, &[0x66], 0);
        xfer(&mut c, &[0x99], 0);
        assert_eq!(c.status_registers(), [0x00, 0x02, 0x60]);
        assert_eq!(c.counters().by_opcode[0x99], 1);
    }

    #[test]
    fn reset_99_alone_or_not_immediately_after_66_does_nothing() {
        let mut c = W25q64jv::erased();
        wren(&mut c, 0);
        xfer(&mut c, &[0x99], 0);
        assert_eq!(sr1(&mut c, 0) & SR1_WEL, SR1_WEL);
        xfer(&mut c, &[0x66], 0);
        sr1(&mut c, 0); // any instruction in between disarms
        xfer(&mut c, &[0x99], 0);
        assert_eq!(sr1(&mut c, 0) & SR1_WEL, SR1_WEL);
        assert_eq!(c.counters().by_opcode[0x99], 0);
    }

    #[test]
    fn reset_aborts_busy_operation() {
        let mut c = filled(0);
        erase(&mut c, 0xD8, 0, 0);
        xfer(&mut c, &[0x66], 10);
        xfer(&mut c, &[0x99], 10);
        assert_eq!(c.busy_until(10), None);
        assert_eq!(sr1(&mut c, 10), 0);
    }

    #[test]
    fn power_down_ignores_everything_but_release() {
        let mut c = filled(0x42);
        xfer(&mut c, &[0xB9], 0);
        assert!(c.is_powered_down());
        assert_eq!(xfer(&mut c, &[0x9F, 0, 0, 0], 0), vec![0xFF; 4]);
        assert_eq!(xfer(&mut c, &[0x05, 0], 0), vec![0xFF; 2]);
        assert_eq!(read(&mut c, 0, 1, 0), vec![0xFF]);
        wren(&mut c, 0);
        xfer(&mut c, &[0x66], 0);
        xfer(&mut c, &[0x99], 0);
        assert!(c.is_powered_down(), "reset is not recognised in power-down");
        assert_eq!(xfer(&mut c, &[0xAB, 0, 0, 0, 0], 0)[4], 0x16);
        assert!(!c.is_powered_down());
        assert_eq!(sr1(&mut c, 0) & SR1_WEL, 0, "06h was ignored");
        assert_eq!(read(&mut c, 0, 1, 0), vec![0x42]);
        // Bare ABh also releases; B9h with extra bytes does not enter power-down.
        xfer(&mut c, &[0xB9, 0], 0);
        assert!(!c.is_powered_down());
        xfer(&mut c, &[0xB9], 0);
        xfer(&mut c, &[0xAB], 0);
        assert!(!c.is_powered_down());
    }

    #[test]
    fn read_wraps_at_end_of_array_and_fast_read_uses_dummy() {
        let mut data = vec![0u8; SIZE];
        data[SIZE - 1] = 0xAA;
        data[0] = 0xBB;
        data[1] = 0xCC;
        let mut c = W25q64jv::new(data);
        assert_eq!(read(&mut c, SIZE as u32 - 1, 3, 0), vec![0xAA, 0xBB, 0xCC]);
        let out = xfer(&mut c, &[0x0B, 0x7F, 0xFF, 0xFF, 0x00, 0, 0], 0);
        assert_eq!(&out[5..], &[0xAA, 0xBB]);
    }

    #[test]
    fn absent_chip_reads_ff_and_ignores_commands() {
        let mut c = filled(0);
        c.faults.absent = true;
        assert_eq!(xfer(&mut c, &[0x9F, 0, 0, 0], 0), vec![0xFF; 4]);
        erase(&mut c, 0x20, 0, 0);
        assert_eq!(c.contents()[0], 0);
        assert_eq!(c.counters().bytes_exchanged, 0);
    }

    #[test]
    fn unselected_exchange_returns_ff() {
        let mut c = W25q64jv::erased();
        assert_eq!(c.exchange(0x9F, 0), 0xFF);
        assert_eq!(c.exchange(0x00, 0), 0xFF);
    }

    #[test]
    fn stuck_busy_never_clears_until_power_cycle() {
        let mut c = W25q64jv::erased();
        c.faults.stuck_busy = true;
        program(&mut c, 0, &[0], 0);
        assert_eq!(c.busy_until(0), Some(u64::MAX));
        assert_eq!(sr1(&mut c, u64::MAX - 1) & SR1_BUSY, SR1_BUSY);
        assert_eq!(sr1(&mut c, u64::MAX) & SR1_BUSY, SR1_BUSY);
        c.power_cycle();
        assert_eq!(c.busy_until(0), None);
        assert_eq!(sr1(&mut c, 0), 0);
    }

    #[test]
    fn load_fills_the_array_clips_at_the_end_and_marks_dirty() {
        let mut c = W25q64jv::erased();
        c.load(0x10, &[1, 2, 3]);
        assert_eq!(&c.contents()[0x0F..0x14], &[0xFF, 1, 2, 3, 0xFF]);
        assert_eq!(c.take_dirty(), Some(0x10..0x13));
        c.load(SIZE - 1, &[7, 8]);
        assert_eq!(c.contents()[SIZE - 1], 7);
        assert_eq!(c.take_dirty(), Some(SIZE - 1..SIZE));
        c.load(SIZE + 5, &[9]);
        assert_eq!(c.take_dirty(), None);
    }

    #[test]
    fn take_dirty_merges_changed_ranges() {
        let mut c = W25q64jv::erased();
        assert_eq!(c.take_dirty(), None);
        let t = program(&mut c, 0x1010, &[0xFF, 0x00], 0);
        let t = program(&mut c, 0x3000, &[0x12], t);
        assert_eq!(c.take_dirty(), Some(0x1011..0x3001));
        assert_eq!(c.take_dirty(), None);
        erase(&mut c, 0x20, 0x5000, t);
        assert_eq!(c.take_dirty(), None, "erasing erased flash changes nothing");
        erase(&mut c, 0x20, 0x1000, t + T_SE);
        assert_eq!(c.take_dirty(), Some(0x1011..0x1012));
    }

    #[test]
    fn individual_block_locks_apply_when_wps_set() {
        let mut c = filled(0);
        c.set_status_registers([0x00, 0x02, 0x64]); // WPS=1: all units locked at power-on
        erase(&mut c, 0x20, 0x2_0000, 0);
        assert_eq!(c.busy_until(0), None);
        let mut rdlock = cmd_addr(0x3D, 0x2_0000);
        rdlock.push(0);
        assert_eq!(xfer(&mut c, &rdlock, 0)[4], 1, "locked at power-on");
        wren(&mut c, 0);
        xfer(&mut c, &cmd_addr(0x39, 0x2_1234), 0); // unlock block 2
        xfer(&mut c, &cmd_addr(0x20, 0x2_F000), 0);
        assert!(c.busy_until(0).is_some());
        // Bottom block locks per sector.
        let mut c = filled(0);
        c.set_status_registers([0x00, 0x02, 0x64]);
        wren(&mut c, 0);
        xfer(&mut c, &[0x98], 0); // global unlock
        xfer(&mut c, &cmd_addr(0x36, 0x1000), 0);
        xfer(&mut c, &cmd_addr(0x20, 0x1000), 0);
        assert_eq!(c.busy_until(0), None);
        xfer(&mut c, &cmd_addr(0x20, 0x2000), 0);
        assert!(c.busy_until(0).is_some());
    }

    #[test]
    fn new_resizes_and_truncates_contents() {
        let c = W25q64jv::new(vec![0x00; 10]);
        assert_eq!(c.contents().len(), SIZE);
        assert_eq!(c.contents()[9], 0x00);
        assert_eq!(c.contents()[10], 0xFF);
        let c = W25q64jv::new(vec![0x00; SIZE + 5]);
        assert_eq!(c.contents().len(), SIZE);
    }

    #[test]
    fn counters_track_bytes_and_executed_commands() {
        let mut c = W25q64jv::erased();
        program(&mut c, 0, &[1, 2, 3], 0);
        assert_eq!(c.counters().by_opcode[0x02], 1);
        assert_eq!(c.counters().by_opcode[0x06], 1);
        assert_eq!(c.counters().bytes_exchanged, 1 + 7);
        read(&mut c, 0, 1, 0); // ignored while busy: not counted
        assert_eq!(c.counters().by_opcode[0x03], 0);
        c.reset_counters();
        assert_eq!(c.counters(), &Counters::default());
    }

    #[test]
    fn random_byte_and_cs_sequences_never_panic() {
        let mut c = W25q64jv::erased();
        let mut s: u64 = 0x1234_5678_9ABC_DEF0;
        let mut now: u64 = 0;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            now = now.wrapping_add(s % 5_000_000_000);
            match s >> 56 {
                0..=9 => c.chip_select(s & 1 == 0, now),
                10 => c.power_cycle(),
                11 => c.set_status_registers([(s >> 8) as u8, (s >> 16) as u8, (s >> 24) as u8]),
                12 => c.faults.stuck_busy = !c.faults.stuck_busy,
                _ => {
                    c.exchange((s >> 32) as u8, now);
                }
            }
            let _ = c.busy_until(now);
        }
        assert_eq!(c.contents().len(), SIZE);
    }
}

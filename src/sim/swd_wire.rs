//! The STM32F407's SWJ-DP at the pin level: SWCLK/TCK, SWDIO/TMS, TDI, TDO
//! and nTRST, clocked edge by edge by a bit-banging host
//! ([`super::bitbang`]), in front of the board's transaction-level DP/AP
//! model ([`McuBoard::dp_read`] and friends).
//!
//! This module owns the wire protocols only: the JTAG TAP controllers (the
//! Cortex-M4's JTAG-DP and the boundary-scan TAP in series, RM0090 38.5),
//! SWD's packet framing (request, turnaround, ACK, data, parity, line reset)
//! and the JTAG/SWD switch sequences (ADIv5.0 B4, B5.2). What a register
//! access does is the board's business; every DP/AP access a packet or a
//! scan carries becomes exactly one board transaction, so virtual time and
//! the running core advance as they do for the simulated probe.
//!
//! Timing convention: the target samples its inputs on a rising edge of
//! TCK/SWCLK as they were *before* the host's character that raised the
//! clock (a line that changes with the edge misses it, as a setup time
//! would), and its own output changes on that rising edge; a host reads
//! it any time before the next rising edge. OpenOCD's bitbang drivers
//! (data set while the clock is low, sampled before the rise) and
//! pyocd-bitbang (data set with the rise, sampled after the fall) both
//! work with this.

use super::board::{Ack, McuBoard};

/// IDCODE of the Cortex-M4 r0p1 JTAG-DP (RM0090 38.6.3).
pub const JTAG_DP_IDCODE: u32 = 0x4BA0_0477;
/// IDCODE of the STM32F40x/41x boundary-scan TAP (RM0090 38.6.2).
pub const BOUNDARY_SCAN_IDCODE: u32 = 0x0641_3041;

/// SWJ-DP select sequences, LSB first, each after at least 50 ones on
/// SWDIO/TMS (ADIv5.0 B5.2.2).
pub const JTAG_TO_SWD: u16 = 0xE79E;
pub const SWD_TO_JTAG: u16 = 0xE73C;

/// Ones in a row that make a line reset (ADIv5.0 B4.3.3).
const LINE_RESET_ONES: u32 = 50;

/// CTRL/STAT sticky flags that make the SW-DP answer FAULT (ADIv5.0
/// B4.2.4): STICKYORUN, STICKYERR, WDATAERR.
const STICKY_FAULT: u32 = 1 << 1 | 1 << 5 | 1 << 7;

/// SWD ACKs as sent, first bit in bit 0.
const ACK_OK: u8 = 0b001;
const ACK_FAULT: u8 = 0b100;
/// JTAG-DP ACK for DPACC/APACC captures: OK/FAULT (faults are reported
/// through CTRL/STAT's sticky flags) and WAIT.
const JTAG_ACK_OK_FAULT: u64 = 0b010;

/// Which wire carries SWDIO in SWD mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwdioPin {
    /// The SWJ-DP's own pinout: SWDIO is the TMS pin, driven by the host
    /// after `O` and released by `o` (OpenOCD's SWD characters `O o c d-g`).
    Tms,
    /// pyocd-bitbang's encoding of the JTAG characters: TDI carries SWDIO,
    /// TMS is the host's output enable, `R` samples SWDIO.
    TdiWhenTms,
}

/// Which protocol the SWJ-DP speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// JTAG-DP (the state after power-on reset).
    Jtag,
    Swd(SwdioPin),
}

/// The host's pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Pins {
    tck: bool,
    tms: bool,
    tdi: bool,
    /// SWDIO output enable (`O`/`o`), for [`SwdioPin::Tms`].
    drive: bool,
}

impl Pins {
    /// The value the host drives on SWDIO, if it drives it.
    fn swdio(self, pin: SwdioPin) -> Option<bool> {
        match pin {
            SwdioPin::Tms => self.drive.then_some(self.tms),
            SwdioPin::TdiWhenTms => self.tms.then_some(self.tdi),
        }
    }
}

/// Recognises "at least 50 ones, then a 16-bit code" on one wire.
#[derive(Debug, Clone, Copy, Default)]
struct SeqDetect {
    /// The last 66 bits, newest in bit 65.
    hist: u128,
    n: u32,
}

impl SeqDetect {
    fn push(&mut self, bit: bool) -> Option<u16> {
        self.hist = (self.hist >> 1) | (bit as u128) << 65;
        self.n = (self.n + 1).min(66);
        let ones = (1u128 << LINE_RESET_ONES) - 1;
        (self.n == 66 && self.hist & ones == ones).then_some((self.hist >> 50) as u16)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

// ---- JTAG ------------------------------------------------------------------

/// IEEE 1149.1 TAP controller states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TapState {
    Reset,
    Idle,
    SelectDr,
    CaptureDr,
    ShiftDr,
    Exit1Dr,
    PauseDr,
    Exit2Dr,
    UpdateDr,
    SelectIr,
    CaptureIr,
    ShiftIr,
    Exit1Ir,
    PauseIr,
    Exit2Ir,
    UpdateIr,
}

impl TapState {
    fn next(self, tms: bool) -> Self {
        use TapState::*;
        match (self, tms) {
            (Reset, false) => Idle,
            (Reset, true) => Reset,
            (Idle, false) => Idle,
            (Idle, true) => SelectDr,
            (SelectDr, false) => CaptureDr,
            (SelectDr, true) => SelectIr,
            (CaptureDr, false) | (ShiftDr, false) | (Exit2Dr, false) => ShiftDr,
            (CaptureDr, true) | (ShiftDr, true) => Exit1Dr,
            (Exit1Dr, false) | (PauseDr, false) => PauseDr,
            (Exit1Dr, true) | (Exit2Dr, true) => UpdateDr,
            (PauseDr, true) => Exit2Dr,
            (UpdateDr, false) | (UpdateIr, false) => Idle,
            (UpdateDr, true) | (UpdateIr, true) => SelectDr,
            (SelectIr, false) => CaptureIr,
            (SelectIr, true) => Reset,
            (CaptureIr, false) | (ShiftIr, false) | (Exit2Ir, false) => ShiftIr,
            (CaptureIr, true) | (ShiftIr, true) => Exit1Ir,
            (Exit1Ir, false) | (PauseIr, false) => PauseIr,
            (Exit1Ir, true) | (Exit2Ir, true) => UpdateIr,
            (PauseIr, true) => Exit2Ir,
        }
    }
}

/// One TAP's instruction and shift register.
#[derive(Debug, Clone, Copy)]
struct Tap {
    ir_len: u8,
    idcode_ir: u8,
    ir: u8,
    shift: u64,
    len: u8,
}

impl Tap {
    fn new(ir_len: u8, idcode_ir: u8) -> Self {
        Self {
            ir_len,
            idcode_ir,
            ir: idcode_ir,
            shift: 0,
            len: 1,
        }
    }

    /// Shift one bit in at the top; the bit that falls out at the bottom.
    fn shift_in(&mut self, bit: bool) -> bool {
        let out = self.shift & 1 != 0;
        self.shift = (self.shift >> 1) | (bit as u64) << (self.len - 1);
        out
    }

    fn load(&mut self, value: u64, len: u8) {
        self.shift = value;
        self.len = len;
    }
}

/// JTAG-DP instructions (ADIv5.0 B3.2; IR 4 bits).
mod ir {
    pub const ABORT: u8 = 0x8;
    pub const DPACC: u8 = 0xA;
    pub const APACC: u8 = 0xB;
    pub const IDCODE: u8 = 0xE;
}

// ---- SWD -------------------------------------------------------------------

/// A decoded SWD request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    ap: bool,
    read: bool,
    /// A[3:2] << 2.
    addr: u8,
}

impl Request {
    /// Start, APnDP, RnW, A[2:3], parity, stop, park (first bit in bit 0).
    fn decode(bits: u8) -> Option<Self> {
        let bit = |i: u8| bits >> i & 1;
        let parity = bit(1) ^ bit(2) ^ bit(3) ^ bit(4);
        (bit(0) == 1 && bit(6) == 0 && bit(7) == 1 && bit(5) == parity).then_some(Self {
            ap: bit(1) == 1,
            read: bit(2) == 1,
            addr: (bits >> 1) & 0xC,
        })
    }

    /// Accesses the SW-DP acknowledges even with a sticky error flag set.
    fn always_ok(self) -> bool {
        !self.ap && (self.read && self.addr <= 0x4 || !self.read && self.addr == 0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swd {
    /// Waiting for a start bit.
    Idle,
    /// Collecting a header: `n` bits so far.
    Header { bits: u8, n: u8 },
    /// A packet `k` edges after its park bit was sampled.
    Packet {
        req: Request,
        ack: u8,
        k: u8,
        /// Read data (read) or the data shifted in so far (write).
        data: u32,
    },
    /// At least 50 ones: idle again at the first zero.
    LineReset,
    /// A malformed or refused header: nothing answers until a line reset.
    Lockout,
}

/// Counts of what crossed the wire, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireCounters {
    pub rising_edges: u64,
    pub swd_packets: u64,
    pub swd_faults: u64,
    pub jtag_dp_scans: u64,
    pub line_resets: u64,
    /// Headers the target did not answer (bad parity, stop or park bit, or
    /// not a DPIDR read right after a line reset).
    pub protocol_errors: u64,
}

/// The SWJ-DP's wire state.
#[derive(Debug, Clone)]
pub struct SwjDp {
    pins: Pins,
    port: Port,
    // JTAG
    tap: TapState,
    /// TDI -> boundary scan -> Cortex-M4 (JTAG-DP) -> TDO.
    bs: Tap,
    dp: Tap,
    /// What the next DPACC/APACC capture returns.
    jtag_result: u32,
    // SWD
    swd: Swd,
    /// The previous AP read's value (SWD AP reads are posted).
    posted: u32,
    dpidr_required: bool,
    ones: u32,
    detect_tms: SeqDetect,
    detect_tdi: SeqDetect,
    pub counters: WireCounters,
}

impl Default for SwjDp {
    fn default() -> Self {
        Self::new()
    }
}

impl SwjDp {
    /// After power-on: JTAG selected, TAPs in Test-Logic-Reset.
    pub fn new() -> Self {
        Self {
            pins: Pins {
                drive: true,
                ..Pins::default()
            },
            port: Port::Jtag,
            tap: TapState::Reset,
            bs: Tap::new(5, 0b00001),
            dp: Tap::new(4, ir::IDCODE),
            jtag_result: 0,
            swd: Swd::LineReset,
            posted: 0,
            dpidr_required: true,
            ones: 0,
            detect_tms: SeqDetect::default(),
            detect_tdi: SeqDetect::default(),
            counters: WireCounters::default(),
        }
    }

    pub fn port(&self) -> Port {
        self.port
    }

    /// Set TCK, TMS and TDI (remote_bitbang `0`-`7`).
    pub fn write(&mut self, board: &mut McuBoard, tck: bool, tms: bool, tdi: bool) {
        let new = Pins {
            tck,
            tms,
            tdi,
            ..self.pins
        };
        self.set_pins(board, new);
    }

    /// Set SWCLK and SWDIO, the TMS pin (remote_bitbang `d`-`g`).
    pub fn swd_write(&mut self, board: &mut McuBoard, clk: bool, swdio: bool) {
        let new = Pins {
            tck: clk,
            tms: swdio,
            ..self.pins
        };
        self.set_pins(board, new);
    }

    /// The host drives SWDIO (`O`) or releases it (`o`).
    pub fn swdio_drive(&mut self, on: bool) {
        self.pins.drive = on;
    }

    /// nTRST puts the TAPs in Test-Logic-Reset.
    pub fn trst(&mut self) {
        self.tap_reset();
    }

    /// TDO (JTAG), or SWDIO in SWD (remote_bitbang `R`).
    pub fn read(&self) -> bool {
        match self.port {
            Port::Jtag => self.tdo(),
            Port::Swd(_) => self.swdio(),
        }
    }

    /// SWDIO as the host sees it (remote_bitbang `c`): the target's output
    /// while it drives, else the host's own, else low.
    pub fn swdio(&self) -> bool {
        match self.port {
            Port::Jtag => self.pins.tms,
            Port::Swd(pin) => self.swd_output().or(self.pins.swdio(pin)).unwrap_or(false),
        }
    }

    fn tdo(&self) -> bool {
        matches!(self.tap, TapState::ShiftDr | TapState::ShiftIr) && self.dp.shift & 1 != 0
    }

    fn set_pins(&mut self, board: &mut McuBoard, new: Pins) {
        let old = std::mem::replace(&mut self.pins, new);
        if !old.tck && new.tck {
            self.rising_edge(board, old);
        }
    }

    fn rising_edge(&mut self, board: &mut McuBoard, before: Pins) {
        self.counters.rising_edges += 1;
        match self.port {
            Port::Jtag => {
                if self.detect_tms.push(before.tms) == Some(JTAG_TO_SWD) {
                    return self.select_swd(SwdioPin::Tms);
                }
                if !before.tms {
                    self.detect_tdi.clear();
                } else if self.detect_tdi.push(before.tdi) == Some(JTAG_TO_SWD) {
                    return self.select_swd(SwdioPin::TdiWhenTms);
                }
                self.tap_edge(board, before.tms, before.tdi);
            }
            Port::Swd(pin) => {
                let host = before.swdio(pin);
                match host {
                    Some(bit) => {
                        if self.detect_tms.push(bit) == Some(SWD_TO_JTAG) {
                            tracing::debug!(target: "sim", "SWJ-DP: SWD to JTAG");
                            self.port = Port::Jtag;
                            self.detect_tms.clear();
                            return self.tap_reset();
                        }
                        self.ones = if bit { self.ones + 1 } else { 0 };
                        if self.ones >= LINE_RESET_ONES {
                            if self.swd != Swd::LineReset {
                                self.counters.line_resets += 1;
                            }
                            self.swd = Swd::LineReset;
                            self.dpidr_required = true;
                            return;
                        }
                    }
                    None => {
                        self.ones = 0;
                        self.detect_tms.clear();
                    }
                }
                let bit = host.or(self.swd_output()).unwrap_or(false);
                self.swd_edge(board, bit, host.is_some());
            }
        }
    }

    fn select_swd(&mut self, pin: SwdioPin) {
        tracing::debug!(target: "sim", "SWJ-DP: JTAG to SWD ({pin:?})");
        self.port = Port::Swd(pin);
        self.detect_tms.clear();
        self.detect_tdi.clear();
        // A line reset must follow the select sequence.
        self.swd = Swd::Lockout;
        self.ones = 0;
    }

    // ---- JTAG ---------------------------------------------------------------

    fn tap_reset(&mut self) {
        self.tap = TapState::Reset;
        self.bs.ir = self.bs.idcode_ir;
        self.dp.ir = self.dp.idcode_ir;
    }

    fn tap_edge(&mut self, board: &mut McuBoard, tms: bool, tdi: bool) {
        match self.tap {
            TapState::CaptureIr => {
                // IEEE 1149.1: the two low bits capture 01.
                self.bs.load(0b1, self.bs.ir_len);
                self.dp.load(0b1, self.dp.ir_len);
            }
            TapState::CaptureDr => self.capture_dr(),
            TapState::ShiftIr | TapState::ShiftDr => {
                let out = self.bs.shift_in(tdi);
                self.dp.shift_in(out);
            }
            _ => {}
        }
        self.tap = self.tap.next(tms);
        match self.tap {
            TapState::Reset => self.tap_reset(),
            TapState::UpdateIr => {
                self.bs.ir = (self.bs.shift & ((1 << self.bs.ir_len) - 1)) as u8;
                self.dp.ir = (self.dp.shift & ((1 << self.dp.ir_len) - 1)) as u8;
            }
            TapState::UpdateDr => self.update_dr(board),
            _ => {}
        }
    }

    fn capture_dr(&mut self) {
        // Every other instruction selects BYPASS (one bit, captures 0).
        if self.bs.ir == self.bs.idcode_ir {
            self.bs.load(BOUNDARY_SCAN_IDCODE as u64, 32);
        } else {
            self.bs.load(0, 1);
        }
        match self.dp.ir {
            ir::IDCODE => self.dp.load(JTAG_DP_IDCODE as u64, 32),
            ir::DPACC | ir::APACC => self
                .dp
                .load((self.jtag_result as u64) << 3 | JTAG_ACK_OK_FAULT, 35),
            ir::ABORT => self.dp.load(0, 35),
            _ => self.dp.load(0, 1),
        }
    }

    /// A DPACC/APACC update starts the access the scan carried: data[34:3],
    /// A[3:2] in bits 2:1, RnW in bit 0 (ADIv5.0 B3.3). Its result is
    /// captured by the next DPACC/APACC scan.
    fn update_dr(&mut self, board: &mut McuBoard) {
        let ir = self.dp.ir;
        if !matches!(ir, ir::DPACC | ir::APACC) || self.dp.len != 35 {
            // ABORT's DAPABORT has nothing to abort: accesses finish at once.
            return;
        }
        self.counters.jtag_dp_scans += 1;
        let v = self.dp.shift;
        let read = v & 1 != 0;
        let addr = ((v >> 1) & 3) as u8 * 4;
        let data = (v >> 3) as u32;
        let result = match (ir, read) {
            (ir::DPACC, true) => board.dp_read(addr).map(Some),
            (ir::DPACC, false) => jtag_dp_write(board, addr, data).map(|()| None),
            (_, true) => board.ap_read(addr).map(Some),
            (_, false) => board.ap_write(addr, data).map(|()| None),
        };
        // A fault leaves STICKYERR set, which the debugger reads in CTRL/STAT.
        if let Ok(Some(v)) = result {
            self.jtag_result = v;
        }
    }

    // ---- SWD ----------------------------------------------------------------

    /// What the target drives on SWDIO now, if it drives it.
    fn swd_output(&self) -> Option<bool> {
        let Swd::Packet { req, ack, k, data } = self.swd else {
            return None;
        };
        let ok = ack == ACK_OK;
        match k {
            1..=3 => Some(ack >> (k - 1) & 1 != 0),
            4..=35 if ok && req.read => Some(data >> (k - 4) & 1 != 0),
            36 if ok && req.read => Some(data.count_ones() & 1 != 0),
            _ => None,
        }
    }

    fn swd_edge(&mut self, board: &mut McuBoard, bit: bool, host_drives: bool) {
        self.swd = match self.swd {
            Swd::Idle if host_drives && bit => Swd::Header { bits: 1, n: 1 },
            Swd::Idle => Swd::Idle,
            Swd::Header { bits, n } => {
                let bits = bits | (bit as u8) << n;
                if n + 1 < 8 {
                    Swd::Header { bits, n: n + 1 }
                } else {
                    self.header(board, bits)
                }
            }
            Swd::Packet {
                req,
                ack,
                k,
                mut data,
            } => {
                let k = k + 1;
                // A refused packet has no data phase: release, turnaround.
                let end = if ack == ACK_OK { 38 } else { 5 };
                if ack == ACK_OK && !req.read {
                    match k {
                        6..=37 => data |= (bit as u32) << (k - 6),
                        38 => self.write_data(board, req, data, bit),
                        _ => {}
                    }
                }
                if k >= end {
                    Swd::Idle
                } else {
                    Swd::Packet { req, ack, k, data }
                }
            }
            Swd::LineReset if !bit => Swd::Idle,
            s @ (Swd::LineReset | Swd::Lockout) => s,
        };
    }

    /// The park bit is in: decide the ACK and, for a read, fetch the data.
    fn header(&mut self, board: &mut McuBoard, bits: u8) -> Swd {
        let Some(req) = Request::decode(bits) else {
            tracing::debug!(target: "sim", "SWD: bad request header {bits:#04x}, no answer");
            self.counters.protocol_errors += 1;
            return Swd::Lockout;
        };
        if self.dpidr_required && !(req.read && !req.ap && req.addr == 0) {
            tracing::debug!(target: "sim", "SWD: {req:?} after a line reset, before a DPIDR read");
            self.counters.protocol_errors += 1;
            return Swd::Lockout;
        }
        self.dpidr_required = false;
        self.counters.swd_packets += 1;
        if board.dp_sticky() & STICKY_FAULT != 0 && !req.always_ok() {
            self.counters.swd_faults += 1;
            return Swd::Packet {
                req,
                ack: ACK_FAULT,
                k: 0,
                data: 0,
            };
        }
        let data = match (req.read, req.ap) {
            (false, _) => 0,
            (true, false) => board.dp_read(req.addr).unwrap_or(0),
            (true, true) => {
                // Posted: this read returns the previous one's value; a
                // failed read sets STICKYERR and the next access faults.
                let v = board.ap_read(req.addr);
                match v {
                    Ok(v) => std::mem::replace(&mut self.posted, v),
                    Err(_) => self.posted,
                }
            }
        };
        Swd::Packet {
            req,
            ack: ACK_OK,
            k: 0,
            data,
        }
    }

    fn write_data(&mut self, board: &mut McuBoard, req: Request, data: u32, parity: bool) {
        if (data.count_ones() & 1 != 0) != parity {
            tracing::debug!(target: "sim", "SWD: write data {data:#010x} with bad parity");
            board.set_wdataerr();
            return;
        }
        let _: Result<(), Ack> = if req.ap {
            board.ap_write(req.addr, data)
        } else {
            board.dp_write(req.addr, data)
        };
    }
}

/// A JTAG-DP DPACC write: CTRL/STAT's sticky flags are write-one-to-clear
/// there (ADIv5.0 B2.2.3), where the SW-DP clears them through ABORT;
/// address 0 (ABORT on SWD) is reserved.
fn jtag_dp_write(board: &mut McuBoard, addr: u8, value: u32) -> Result<(), Ack> {
    match addr {
        0x4 => {
            // STICKYORUN, STICKYCMP, STICKYERR -> ABORT's ORUNERRCLR,
            // STKCMPCLR, STKERRCLR.
            let clear = (value >> 1 & 1) << 4 | (value >> 4 & 1) << 1 | (value >> 5 & 1) << 2;
            if clear != 0 {
                board.dp_write(0x0, clear)?;
            }
            board.dp_write(0x4, value)
        }
        0x8 => board.dp_write(0x8, value),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimBoard, SimConfig};

    fn board() -> SimBoard {
        SimBoard::new(SimConfig::default()).unwrap()
    }

    /// A JTAG host as OpenOCD's bitbang driver clocks: pins set with TCK
    /// low, TDO sampled, then TCK high.
    struct JtagHost<'a> {
        w: SwjDp,
        b: &'a mut McuBoard,
    }

    impl JtagHost<'_> {
        fn clock(&mut self, tms: bool, tdi: bool) -> bool {
            self.w.write(self.b, false, tms, tdi);
            let tdo = self.w.read();
            self.w.write(self.b, true, tms, tdi);
            tdo
        }

        fn reset_to_idle(&mut self) {
            for _ in 0..5 {
                self.clock(true, false);
            }
            self.clock(false, false);
        }

        /// From Run-Test/Idle, shift `n` bits of `value` through IR or DR
        /// and back to Run-Test/Idle; the bits shifted out.
        fn scan(&mut self, ir: bool, value: u64, n: u32) -> u64 {
            self.clock(true, false); // Select-DR
            if ir {
                self.clock(true, false); // Select-IR
            }
            self.clock(false, false); // Capture
            self.clock(false, false); // Shift
            let mut out = 0;
            for i in 0..n {
                let last = i == n - 1;
                out |= (self.clock(last, value >> i & 1 != 0) as u64) << i;
            }
            self.clock(true, false); // Update
            self.clock(false, false); // Idle
            out
        }
    }

    #[test]
    fn jtag_idcode_scan_after_reset_gives_the_dp_then_the_boundary_scan_tap() {
        let sb = board();
        let mut b = sb.lock();
        let mut h = JtagHost {
            w: SwjDp::new(),
            b: &mut b,
        };
        h.reset_to_idle();
        let ids = h.scan(false, u64::MAX, 64);
        assert_eq!(ids as u32, JTAG_DP_IDCODE, "TAP nearest TDO first");
        assert_eq!((ids >> 32) as u32, BOUNDARY_SCAN_IDCODE);
        // IR capture: 0001 (DP, 4 bits) then 00001 (boundary scan, 5 bits).
        assert_eq!(h.scan(true, 0x1FF, 9), (0b00001 << 4) | 0b0001);
    }

    #[test]
    fn jtag_dpacc_results_arrive_with_the_next_scan_and_sticky_bits_clear_by_writing_one() {
        let sb = board();
        let mut b = sb.lock();
        let mut h = JtagHost {
            w: SwjDp::new(),
            b: &mut b,
        };
        h.reset_to_idle();
        // IR: boundary scan BYPASS (5 ones, shifted last), DP DPACC.
        h.scan(true, 0b11111 << 4 | ir::DPACC as u64, 9);
        // DR: 35 bits of the DP, then the boundary scan's 1-bit bypass.
        let dpacc = |data: u32, addr: u64, read: bool| (data as u64) << 3 | addr << 1 | read as u64;
        h.scan(false, dpacc(0x5000_0000, 1, false), 36); // CTRL/STAT: power-up requests
        let first = h.scan(false, dpacc(0, 1, true), 36); // read CTRL/STAT
        assert_eq!(first & 7, JTAG_ACK_OK_FAULT);
        let next = h.scan(false, dpacc(0, 3, true), 36); // RDBUFF, captures the read
        assert_eq!(
            (next >> 3) as u32 & 0xF000_0000,
            0xF000_0000,
            "requests and ACKs"
        );

        // An AP read of unmapped memory sets STICKYERR; writing 1 clears it.
        h.scan(true, 0b11111 << 4 | ir::APACC as u64, 9);
        h.scan(false, dpacc(0x6000_0000, 1, false), 36); // TAR
        h.scan(false, dpacc(0, 3, true), 36); // DRW read: bus fault
        assert_ne!(h.b.dp_sticky() & (1 << 5), 0, "STICKYERR");
        h.scan(true, 0b11111 << 4 | ir::DPACC as u64, 9);
        h.scan(false, dpacc(0x5000_0020, 1, false), 36);
        assert_eq!(h.b.dp_sticky() & (1 << 5), 0, "cleared by writing 1");
    }

    /// An SWD host in OpenOCD's SWD encoding (`O o c d-g`): data set with
    /// SWCLK low, sampled before SWCLK rises.
    struct SwdHost<'a> {
        w: SwjDp,
        b: &'a mut McuBoard,
    }

    impl SwdHost<'_> {
        fn bits(&mut self, value: u64, n: u32) {
            self.w.swdio_drive(true);
            for i in 0..n {
                let bit = value >> i & 1 != 0;
                self.w.swd_write(self.b, false, bit);
                self.w.swd_write(self.b, true, bit);
            }
        }

        fn read_bits(&mut self, n: u32) -> u64 {
            self.w.swdio_drive(false);
            let mut v = 0;
            for i in 0..n {
                self.w.swd_write(self.b, false, false);
                v |= (self.w.swdio() as u64) << i;
                self.w.swd_write(self.b, true, false);
            }
            v
        }

        fn select_swd(&mut self) {
            self.bits(u64::MAX, 56);
            self.bits(JTAG_TO_SWD as u64, 16);
            self.bits(u64::MAX, 56);
            self.bits(0, 8);
        }

        fn header(ap: bool, read: bool, addr: u8) -> u64 {
            let a = (addr >> 2) as u64 & 3;
            let body = (ap as u64) | (read as u64) << 1 | a << 2;
            let parity = (body.count_ones() & 1) as u64;
            1 | body << 1 | parity << 5 | 1 << 7
        }

        /// A read: (ACK, data, parity ok).
        fn read(&mut self, ap: bool, addr: u8) -> (u8, u32, bool) {
            self.bits(Self::header(ap, true, addr), 8);
            let v = self.read_bits(1 + 3 + 32 + 1 + 1);
            let ack = (v >> 1 & 7) as u8;
            let data = (v >> 4) as u32;
            let parity = v >> 36 & 1 == (data.count_ones() & 1) as u64;
            self.bits(0, 8);
            (ack, data, parity)
        }

        fn write_with_parity(&mut self, ap: bool, addr: u8, value: u32, parity: bool) -> u8 {
            self.bits(Self::header(ap, false, addr), 8);
            let ack = (self.read_bits(1 + 3 + 1) >> 1 & 7) as u8;
            self.bits(value as u64 | (parity as u64) << 32, 33);
            self.bits(0, 8);
            ack
        }

        fn write(&mut self, ap: bool, addr: u8, value: u32) -> u8 {
            self.write_with_parity(ap, addr, value, value.count_ones() & 1 != 0)
        }
    }

    #[test]
    fn swd_after_the_switch_reads_dpidr_and_posts_ap_reads() {
        let sb = board();
        let mut b = sb.lock();
        let mut h = SwdHost {
            w: SwjDp::new(),
            b: &mut b,
        };
        // Still JTAG: nothing answers an SWD header.
        assert_eq!(h.read(false, 0).0, 0b000);
        h.select_swd();
        assert_eq!(h.w.port(), Port::Swd(SwdioPin::Tms));
        assert_eq!(h.read(false, 0), (ACK_OK, crate::sim::board::DPIDR, true));
        assert_eq!(h.write(false, 0x4, 0x5000_0000), ACK_OK);
        assert_eq!(h.write(true, 0x0, 0x2300_0002), ACK_OK); // CSW: 32-bit
        assert_eq!(h.write(true, 0x4, 0xE004_2000), ACK_OK); // TAR: DBGMCU IDCODE
        let (ack, _stale, _) = h.read(true, 0xC);
        assert_eq!(ack, ACK_OK);
        assert_eq!(
            h.read(false, 0xC),
            (ACK_OK, crate::sim::debug::DBGMCU_IDCODE_F407, true),
            "RDBUFF holds the posted read"
        );
    }

    #[test]
    fn swd_faults_after_a_bus_error_until_abort_and_refuses_a_bad_write_parity() {
        let sb = board();
        let mut b = sb.lock();
        let mut h = SwdHost {
            w: SwjDp::new(),
            b: &mut b,
        };
        h.select_swd();
        h.read(false, 0);
        h.write(false, 0x4, 0x5000_0000);
        h.write(true, 0x4, 0x6000_0000); // unmapped
        assert_eq!(h.read(true, 0xC).0, ACK_OK, "posted: this read is OK");
        assert_eq!(h.read(false, 0xC).0, ACK_FAULT, "the next access faults");
        assert_eq!(h.read(false, 0x4).0, ACK_OK, "CTRL/STAT is always readable");
        assert_eq!(h.write(false, 0x0, 1 << 2), ACK_OK, "ABORT STKERRCLR");
        assert_eq!(h.read(false, 0xC).0, ACK_OK);

        h.write(true, 0x4, 0x2000_0000);
        h.write(true, 0xC, 0x1234_5678);
        assert_eq!(
            h.write_with_parity(true, 0xC, 0xAAAA_AAAA, true),
            ACK_OK,
            "ACK comes before the data"
        );
        assert_ne!(h.b.dp_sticky() & (1 << 7), 0, "WDATAERR");
        assert_eq!(h.b.debugger_read(0x2000_0004, 4), Ok(0), "not written");
    }

    #[test]
    fn swd_header_with_bad_parity_is_not_answered_until_a_line_reset_and_dpidr_read() {
        let sb = board();
        let mut b = sb.lock();
        let mut h = SwdHost {
            w: SwjDp::new(),
            b: &mut b,
        };
        h.select_swd();
        h.read(false, 0);
        let bad = SwdHost::header(false, true, 0) ^ 1 << 5;
        h.bits(bad, 8);
        assert_eq!(h.read_bits(4) >> 1, 0, "no ACK");
        h.bits(0, 8);
        assert_eq!(h.read(false, 0).0, 0, "still locked out");
        h.bits(u64::MAX, 52);
        h.bits(0, 4);
        assert_eq!(h.read(false, 0x4).0, 0, "after a line reset, DPIDR first");
        h.bits(u64::MAX, 52);
        h.bits(0, 4);
        assert_eq!(h.read(false, 0).0, ACK_OK);
        assert_eq!(h.read(false, 0x4).0, ACK_OK);
        assert_eq!(
            h.w.counters.protocol_errors, 2,
            "the bad header and the early CTRL/STAT read"
        );
    }

    #[test]
    fn pyocd_bitbang_encoding_selects_swd_on_tdi_and_reads_dpidr() {
        use crate::sim::bitbang::Session;
        let sb = board();
        let mut b = sb.lock();
        let mut s = Session::new();
        let mut out = Vec::new();
        // pyocd-bitbang: a bit is `62`/`73` (SWCLK high with SWDIO on TDI
        // and TMS as output enable, then low), a read `40R`.
        let bits = |v: u64, n: u32| -> Vec<u8> {
            (0..n)
                .flat_map(|i| if v >> i & 1 != 0 { *b"73" } else { *b"62" })
                .collect()
        };
        let mut input = bits(u64::MAX, 51);
        input.extend(bits(JTAG_TO_SWD as u64, 16));
        input.extend(bits(u64::MAX, 51));
        input.extend(bits(0, 8));
        input.extend(bits(SwdHost::header(false, true, 0), 8));
        input.extend(b"40R".repeat(4 + 34));
        input.extend(bits(0, 5));
        s.feed(&mut b, &input, &mut out).unwrap();
        assert_eq!(s.wire.port(), Port::Swd(SwdioPin::TdiWhenTms));
        let v = out
            .iter()
            .enumerate()
            .fold(0u64, |v, (i, &c)| v | ((c == b'1') as u64) << i);
        assert_eq!(v >> 1 & 7, ACK_OK as u64, "trn then OK");
        assert_eq!((v >> 4) as u32, crate::sim::board::DPIDR);
    }

    #[test]
    fn unknown_request_character_is_named_with_its_offset() {
        use crate::sim::bitbang::{BitbangError, Flow, Session};
        let sb = board();
        let mut b = sb.lock();
        let mut s = Session::new();
        let mut out = Vec::new();
        assert_eq!(s.feed(&mut b, b"B0R", &mut out).unwrap(), Flow::Continue);
        assert_eq!(out, b"0");
        let e = s.feed(&mut b, b"01X", &mut out).unwrap_err();
        assert!(matches!(
            e,
            BitbangError::UnknownRequest {
                byte: b'X',
                offset: 5
            }
        ));
        assert!(e.to_string().contains("'X'"), "{e}");
        assert_eq!(s.feed(&mut b, b"bQ7", &mut out).unwrap(), Flow::Quit);
    }
}

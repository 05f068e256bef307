//! Link profiles: what the USB link between host and probe charges the
//! virtual board's clock.
//!
//! probe-rs drives `SimProbe` through its generic ARM interface, so every
//! call arrives at the `RawDapAccess` layer as DP/AP register accesses
//! (single, or blocks of one register). A [`Link`] sees that stream and
//! decides, as the named probe's driver would, which accesses cost a USB
//! round trip. This module owns only that bookkeeping; the board charges
//! the returned round trips at [`LinkProfile::round_trip_ps`] and each SWD
//! transaction at the SWD clock.
//!
//! Figures and their sources are in `docs/virtual-board.md`.

use std::fmt;
use std::str::FromStr;

use super::clock::PS_PER_S;

/// The probe and USB link the virtual board pretends to sit behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum LinkProfile {
    /// No USB latency: only SWD wire time is charged (CMSIS-DAP batching
    /// rules with unbounded packets, so round trips are still counted).
    Ideal,
    /// ST-Link/V2 (USB full speed) as probe-rs 0.32 drives it: one command
    /// per memory call, each a transfer plus a status read.
    #[default]
    StlinkV2,
    /// CMSIS-DAP v2 on USB full speed (64-byte bulk packets, e.g. the
    /// Raspberry Pi debugprobe) as probe-rs 0.32 batches it.
    CmsisDapV2,
}

/// `--sim-link` named no known profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown link profile `{name}` (expected ideal, stlink-v2 or cmsis-dap-v2)")]
pub struct UnknownLinkProfile {
    pub name: String,
}

/// A requested SWD clock the probe cannot produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{profile} cannot clock SWD at {requested_khz} kHz (lowest setting {lowest_khz} kHz)")]
pub struct UnsupportedSpeed {
    pub profile: LinkProfile,
    pub requested_khz: u32,
    pub lowest_khz: u32,
}

/// ST-Link/V2 SWD clock settings as probe-rs 0.32 maps them
/// (`SwdFrequencyToDelayCount`): a request is rounded down to the next
/// entry; below the last one the probe refuses.
pub const STLINK_V2_SWD_KHZ: [u32; 12] = [
    4600, 1800, 1200, 950, 650, 480, 400, 360, 240, 150, 125, 100,
];

/// USB full-speed bulk packet of a CMSIS-DAP v2 probe.
pub const CMSIS_DAP_PACKET: usize = 64;
/// Writes probe-rs queues in one DAP_Transfer: (packet - 3 header) / (1 + 4).
pub const CMSIS_DAP_MAX_QUEUED_WRITES: usize = (CMSIS_DAP_PACKET - 3) / 5;
/// Words in one DAP_TransferBlock: (packet - 6 header) / 4.
pub const CMSIS_DAP_BLOCK_WORDS: usize = (CMSIS_DAP_PACKET - 6) / 4;

/// ST-Link/V2 payload limits per memory command, as probe-rs 0.32 chunks
/// them (`STLINK_MAX_READ_LEN`, `STLINK_MAX_WRITE_LEN`, and 64/32 bytes
/// for 8-bit reads/writes on hardware before V3).
pub const STLINK_MAX_READ_32: u32 = 6144;
pub const STLINK_MAX_WRITE_32: u32 = 0xFFFC;
pub const STLINK_MAX_READ_8: u32 = 64;
pub const STLINK_MAX_WRITE_8: u32 = 32;
/// USB round trips of one ST-Link memory command: the command with its
/// data, then the status read (`get_last_rw_status`).
pub const STLINK_ROUND_TRIPS_PER_COMMAND: u64 = 2;

impl LinkProfile {
    pub const ALL: [LinkProfile; 3] = [Self::Ideal, Self::StlinkV2, Self::CmsisDapV2];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ideal => "ideal",
            Self::StlinkV2 => "stlink-v2",
            Self::CmsisDapV2 => "cmsis-dap-v2",
        }
    }

    /// SWD clock the probe starts with (probe-rs's driver defaults).
    pub fn default_khz(self) -> u32 {
        match self {
            Self::Ideal => 4000,
            Self::StlinkV2 => 1800,
            Self::CmsisDapV2 => 1000,
        }
    }

    /// The clock the probe actually runs at when asked for `requested_khz`.
    pub fn supported_khz(self, requested_khz: u32) -> Result<u32, UnsupportedSpeed> {
        let lowest = match self {
            Self::StlinkV2 => STLINK_V2_SWD_KHZ[STLINK_V2_SWD_KHZ.len() - 1],
            _ => 1,
        };
        let err = UnsupportedSpeed {
            profile: self,
            requested_khz,
            lowest_khz: lowest,
        };
        match self {
            Self::StlinkV2 => STLINK_V2_SWD_KHZ
                .iter()
                .copied()
                .find(|&k| requested_khz >= k)
                .ok_or(err),
            _ if requested_khz == 0 => Err(err),
            _ => Ok(requested_khz),
        }
    }

    /// Host-to-probe-to-host latency of one USB round trip.
    pub fn round_trip_ps(self) -> u64 {
        match self {
            Self::Ideal => 0,
            // Two per memory call: 0.8 ms per call, inside the 0.5-1 ms
            // measured for a full-speed ST-Link command plus status.
            Self::StlinkV2 => 400 * PS_PER_S / 1_000_000,
            // One bulk OUT + IN pair on full speed.
            Self::CmsisDapV2 => 500 * PS_PER_S / 1_000_000,
        }
    }
}

impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LinkProfile {
    type Err = UnknownLinkProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownLinkProfile {
                name: s.to_string(),
            })
    }
}

/// A debug-port register as the link sees it: DP A[3:2], or the AP
/// register (bank | A[3:2]) that SELECT made current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Dp(u8),
    Ap(u8),
}

const DP_SELECT: u8 = 0x8;
const AP_CSW: u8 = 0x00;
const AP_TAR: u8 = 0x04;
const AP_DRW: u8 = 0x0C;

/// One `RawDapAccess` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DapOp {
    Read(Reg),
    Write(Reg, u32),
    ReadBlock(Reg, usize),
    WriteBlock(Reg, usize),
    /// `raw_flush`: queued writes must reach the target.
    Flush,
    /// `core_status_notification` (CMSIS-DAP sends DAP_HostStatus).
    StatusNotification,
}

/// The ST-Link memory command in progress.
#[derive(Debug, Clone, Copy)]
struct StlinkCommand {
    write: bool,
    size: u32,
    bytes: u32,
    next_addr: u32,
}

/// Round-trip bookkeeping for one probe.
#[derive(Debug, Clone)]
pub struct Link {
    profile: LinkProfile,
    /// CMSIS-DAP: writes waiting in the batch.
    queued_writes: usize,
    /// ST-Link: transfer size from the last CSW write, TAR, open command.
    csw_size: u32,
    tar: u32,
    command: Option<StlinkCommand>,
}

impl Link {
    pub fn new(profile: LinkProfile) -> Self {
        Self {
            profile,
            queued_writes: 0,
            csw_size: 4,
            tar: 0,
            command: None,
        }
    }

    pub fn profile(&self) -> LinkProfile {
        self.profile
    }

    /// Round trips `op` forces, per the profile's driver.
    pub fn charge(&mut self, op: DapOp) -> u64 {
        match self.profile {
            LinkProfile::Ideal => self.cmsis_dap(op, usize::MAX, usize::MAX),
            LinkProfile::CmsisDapV2 => {
                self.cmsis_dap(op, CMSIS_DAP_MAX_QUEUED_WRITES, CMSIS_DAP_BLOCK_WORDS)
            }
            LinkProfile::StlinkV2 => self.stlink(op),
        }
    }

    /// probe-rs's CMSIS-DAP driver: writes are queued until a read (which
    /// goes out with them), a full packet, a block transfer or a flush.
    fn cmsis_dap(&mut self, op: DapOp, max_writes: usize, block_words: usize) -> u64 {
        let pending = |q: &mut usize| std::mem::take(q).min(1) as u64;
        match op {
            DapOp::Read(_) => {
                self.queued_writes = 0;
                1
            }
            DapOp::Write(..) => {
                self.queued_writes += 1;
                if self.queued_writes >= max_writes {
                    self.queued_writes = 0;
                    1
                } else {
                    0
                }
            }
            DapOp::ReadBlock(_, n) | DapOp::WriteBlock(_, n) => {
                pending(&mut self.queued_writes) + n.div_ceil(block_words.max(1)) as u64
            }
            DapOp::Flush => pending(&mut self.queued_writes),
            DapOp::StatusNotification => 1,
        }
    }

    /// probe-rs's ST-Link driver: one command per memory call (CSW and TAR
    /// are parameters of it, SELECT is implicit), chunked at the payload
    /// limits; any other DP/AP register access is one command of its own.
    /// A memory call reaches us as TAR, then DRW accesses; probe-rs's ADI
    /// layer rewrites TAR at every 1 KiB boundary, so a TAR write that
    /// continues the open command exactly at such a boundary belongs to it.
    fn stlink(&mut self, op: DapOp) -> u64 {
        match op {
            DapOp::Flush | DapOp::StatusNotification => 0,
            DapOp::Write(Reg::Dp(DP_SELECT), _) => 0,
            DapOp::Write(Reg::Ap(AP_CSW), v) => {
                self.csw_size = match v & 7 {
                    0 => 1,
                    1 => 2,
                    _ => 4,
                };
                self.command = None;
                0
            }
            DapOp::Write(Reg::Ap(AP_TAR), v) => {
                let continues = self
                    .command
                    .is_some_and(|c| c.next_addr == v && v % 1024 == 0);
                if !continues {
                    self.command = None;
                }
                self.tar = v;
                0
            }
            DapOp::Read(Reg::Ap(AP_DRW)) => self.stlink_data(false, 1),
            DapOp::Write(Reg::Ap(AP_DRW), _) => self.stlink_data(true, 1),
            DapOp::ReadBlock(Reg::Ap(AP_DRW), n) => self.stlink_data(false, n),
            DapOp::WriteBlock(Reg::Ap(AP_DRW), n) => self.stlink_data(true, n),
            // Banked data registers: a one-word memory command each.
            DapOp::Read(Reg::Ap(0x10..=0x1C)) | DapOp::Write(Reg::Ap(0x10..=0x1C), _) => {
                self.command = None;
                STLINK_ROUND_TRIPS_PER_COMMAND
            }
            DapOp::ReadBlock(_, n) | DapOp::WriteBlock(_, n) => {
                self.command = None;
                n as u64
            }
            DapOp::Read(_) | DapOp::Write(..) => {
                self.command = None;
                1
            }
        }
    }

    fn stlink_data(&mut self, write: bool, n: usize) -> u64 {
        let size = self.csw_size;
        let limit = match (size, write) {
            (1, false) => STLINK_MAX_READ_8,
            (1, true) => STLINK_MAX_WRITE_8,
            (_, false) => STLINK_MAX_READ_32,
            (_, true) => STLINK_MAX_WRITE_32,
        };
        let mut trips = 0;
        for _ in 0..n {
            let open = self
                .command
                .filter(|c| c.write == write && c.size == size && c.bytes + size <= limit);
            let mut c = match open {
                Some(c) => c,
                None => {
                    trips += STLINK_ROUND_TRIPS_PER_COMMAND;
                    StlinkCommand {
                        write,
                        size,
                        bytes: 0,
                        next_addr: self.tar,
                    }
                }
            };
            c.bytes += size;
            c.next_addr = c.next_addr.wrapping_add(size);
            self.tar = c.next_addr;
            self.command = Some(c);
        }
        trips
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_round_trip_and_unknown_is_an_error() {
        for p in LinkProfile::ALL {
            assert_eq!(p.name().parse::<LinkProfile>(), Ok(p));
        }
        assert_eq!(
            "stlink".parse::<LinkProfile>(),
            Err(UnknownLinkProfile {
                name: "stlink".into()
            })
        );
        assert_eq!(LinkProfile::default(), LinkProfile::StlinkV2);
    }

    #[test]
    fn stlink_v2_rounds_speed_down_to_its_table() {
        let p = LinkProfile::StlinkV2;
        let cases = [
            (10_000, 4600),
            (4600, 4600),
            (4000, 1800),
            (1800, 1800),
            (1000, 950),
            (500, 480),
            (370, 360),
            (100, 100),
        ];
        for (req, got) in cases {
            assert_eq!(p.supported_khz(req), Ok(got), "{req} kHz");
        }
        assert!(p.supported_khz(99).is_err());
        assert_eq!(LinkProfile::CmsisDapV2.supported_khz(2345), Ok(2345));
        assert!(LinkProfile::CmsisDapV2.supported_khz(0).is_err());
    }

    /// probe-rs's ADI layer for `read_32(0x2000_0000, 2048 words)`: CSW
    /// once, then TAR + a DRW block at each 1 KiB boundary.
    fn adi_read_32(link: &mut Link, addr: u32, words: usize) -> u64 {
        let mut t = link.charge(DapOp::Write(Reg::Ap(AP_CSW), 0x2300_0052));
        let (mut a, mut left) = (addr, words);
        while left > 0 {
            let chunk = left.min(((1024 - (a % 1024)) / 4) as usize);
            t += link.charge(DapOp::Write(Reg::Ap(AP_TAR), a));
            t += link.charge(DapOp::ReadBlock(Reg::Ap(AP_DRW), chunk));
            a += chunk as u32 * 4;
            left -= chunk;
        }
        t
    }

    #[test]
    fn stlink_v2_one_command_per_memory_call_chunked_at_6144_bytes() {
        let mut l = Link::new(LinkProfile::StlinkV2);
        // 8 KiB = two commands (6144 + 2048), two round trips each.
        assert_eq!(adi_read_32(&mut l, 0x2000_0000, 2048), 4);
        // A second call at an unaligned address is a new command.
        assert_eq!(adi_read_32(&mut l, 0x2000_0004, 1), 2);
        // A DP register read is one command with its status in the reply.
        assert_eq!(l.charge(DapOp::Read(Reg::Dp(0x4))), 1);
        assert_eq!(l.charge(DapOp::Write(Reg::Dp(DP_SELECT), 0)), 0);
    }

    #[test]
    fn stlink_v2_byte_writes_carry_at_most_32_bytes() {
        let mut l = Link::new(LinkProfile::StlinkV2);
        l.charge(DapOp::Write(Reg::Ap(AP_CSW), 0x2300_0050));
        l.charge(DapOp::Write(Reg::Ap(AP_TAR), 0x2000_0000));
        // 100 bytes: ceil(100 / 32) = 4 commands.
        assert_eq!(l.charge(DapOp::WriteBlock(Reg::Ap(AP_DRW), 100)), 8);
    }

    #[test]
    fn cmsis_dap_batches_writes_until_a_read() {
        let mut l = Link::new(LinkProfile::CmsisDapV2);
        for _ in 0..CMSIS_DAP_MAX_QUEUED_WRITES - 1 {
            assert_eq!(l.charge(DapOp::Write(Reg::Ap(AP_TAR), 0)), 0);
        }
        assert_eq!(l.charge(DapOp::Write(Reg::Ap(AP_TAR), 0)), 1, "full packet");
        l.charge(DapOp::Write(Reg::Ap(AP_TAR), 0));
        assert_eq!(
            l.charge(DapOp::Read(Reg::Ap(AP_DRW))),
            1,
            "read carries the write"
        );
        l.charge(DapOp::Write(Reg::Ap(AP_TAR), 0));
        // The pending write goes first, then ceil(100 / 14) blocks.
        assert_eq!(l.charge(DapOp::ReadBlock(Reg::Ap(AP_DRW), 100)), 1 + 8);
        assert_eq!(l.charge(DapOp::Flush), 0);
        l.charge(DapOp::Write(Reg::Ap(AP_TAR), 0));
        assert_eq!(l.charge(DapOp::Flush), 1);
    }
}

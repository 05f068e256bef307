//! Virtual time and activity counters of the virtual board.
//!
//! Owns nothing but numbers: the CPU cycle count (168 MHz), the time spent
//! with the core not executing (SWD traffic while halted, BUSY periods the
//! board jumped over), and counters that benchmarks report next to the time.

/// CPU core clock of the STM32F407 at full speed.
pub const CPU_HZ: u64 = 168_000_000;
/// Picoseconds in one second.
pub const PS_PER_S: u64 = 1_000_000_000_000;

/// Board clock in picoseconds: `idle_ps + cycles / CPU_HZ`.
///
/// Computing time from the cycle total (rather than adding a rounded
/// per-cycle period) keeps it free of drift.
#[derive(Debug, Default, Clone)]
pub struct Clock {
    cycles: u64,
    idle_ps: u64,
    /// SWD clock in Hz used to charge every transfer its bits.
    swd_hz: u64,
    pub counters: Counters,
}

/// What happened on the board, for benchmarks and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// DP/AP register transactions on the wire.
    pub swd_transactions: u64,
    /// Bits on the wire (request, turnaround, ack, data, parity).
    pub swd_bits: u64,
    /// Payload bytes moved through AP DRW/BDx.
    pub ap_bytes: u64,
    /// Instructions the CPU executed.
    pub instructions: u64,
    /// Bytes exchanged on the external flash's SPI bus.
    pub spi_bytes: u64,
    /// Time skipped over BUSY periods instead of emulating the poll loop.
    pub skipped_ps: u64,
    /// USB round trips the link profile charged.
    pub round_trips: u64,
    /// Virtual time those round trips took.
    pub link_wait_ps: u64,
}

impl Counters {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            swd_transactions: self.swd_transactions - earlier.swd_transactions,
            swd_bits: self.swd_bits - earlier.swd_bits,
            ap_bytes: self.ap_bytes - earlier.ap_bytes,
            instructions: self.instructions - earlier.instructions,
            spi_bytes: self.spi_bytes - earlier.spi_bytes,
            skipped_ps: self.skipped_ps - earlier.skipped_ps,
            round_trips: self.round_trips - earlier.round_trips,
            link_wait_ps: self.link_wait_ps - earlier.link_wait_ps,
        }
    }
}

/// Bits of one SWD transaction: 8 request + 1 turnaround + 3 ack +
/// (1 turnaround on writes) + 32 data + 1 parity, plus 8 idle cycles that
/// probes insert (ST-Link and CMSIS-DAP both do).
pub const SWD_BITS_PER_TRANSACTION: u64 = 8 + 1 + 3 + 1 + 32 + 1 + 8;

impl Clock {
    pub fn new(swd_hz: u64) -> Self {
        Self {
            swd_hz: swd_hz.max(1),
            ..Self::default()
        }
    }

    /// Current virtual time in picoseconds.
    pub fn now(&self) -> u64 {
        let cpu_ps = (self.cycles as u128 * PS_PER_S as u128 / CPU_HZ as u128) as u64;
        self.idle_ps.saturating_add(cpu_ps)
    }

    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    /// One instruction retired (armagnac charges one cycle per instruction).
    pub fn retire(&mut self) {
        self.cycles += 1;
        self.counters.instructions += 1;
    }

    /// Time passing while the core does not execute.
    pub fn idle(&mut self, ps: u64) {
        self.idle_ps = self.idle_ps.saturating_add(ps);
    }

    /// Jump forward to `t` (a BUSY end) instead of emulating a poll loop.
    pub fn skip_to(&mut self, t: u64) {
        let now = self.now();
        if t > now {
            self.idle(t - now);
            self.counters.skipped_ps += t - now;
        }
    }

    pub fn swd_hz(&self) -> u64 {
        self.swd_hz
    }

    pub fn set_swd_hz(&mut self, hz: u64) {
        self.swd_hz = hz.max(1);
    }

    /// Duration of one SWD transaction at the current SWD clock.
    pub fn swd_transaction_ps(&self) -> u64 {
        SWD_BITS_PER_TRANSACTION * PS_PER_S / self.swd_hz
    }

    /// CPU cycles that fit in `ps`.
    pub fn cycles_in(ps: u64) -> u64 {
        (ps as u128 * CPU_HZ as u128 / PS_PER_S as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_counts_cpu_cycles_without_drift() {
        let mut c = Clock::new(4_000_000);
        for _ in 0..168_000_000u64 / 1000 {
            c.retire();
        }
        assert_eq!(c.now(), PS_PER_S / 1000);
    }

    #[test]
    fn swd_transaction_at_4mhz_takes_its_bits() {
        let c = Clock::new(4_000_000);
        assert_eq!(c.swd_transaction_ps(), SWD_BITS_PER_TRANSACTION * 250_000);
    }

    #[test]
    fn skip_to_never_goes_back() {
        let mut c = Clock::new(1_000_000);
        c.idle(1000);
        c.skip_to(500);
        assert_eq!(c.now(), 1000);
        c.skip_to(5000);
        assert_eq!(c.now(), 5000);
        assert_eq!(c.counters.skipped_ps, 4000);
    }
}

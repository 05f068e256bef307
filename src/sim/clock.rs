//! Virtual time and activity counters of the virtual board.
//!
//! Owns nothing but numbers: CPU cycles at the current core clock (which
//! RCC sets), the time spent with the core not executing (SWD traffic while
//! halted, USB round trips, BUSY periods the board jumped over), and
//! counters that benchmarks report next to the time.

/// Highest core clock of the STM32F407 (PLL from the 8 MHz HSE).
pub const CPU_HZ: u64 = 168_000_000;
/// Core clock after reset: the 16 MHz HSI (RM0090 6.2.2).
pub const HSI_HZ: u64 = 16_000_000;
/// Picoseconds in one second.
pub const PS_PER_S: u64 = 1_000_000_000_000;

/// Board clock in picoseconds.
///
/// Time is kept per segment of constant core clock:
/// `seg_start_ps + seg_idle_ps + seg_cycles / hz`. Computing time from the
/// segment's cycle total (rather than adding a rounded per-cycle period)
/// keeps it free of drift.
#[derive(Debug, Clone)]
pub struct Clock {
    hz: u64,
    /// `PS_PER_S / hz` as a reduced fraction: exact conversions between
    /// cycles and picoseconds without 128-bit arithmetic in the common case.
    ps_num: u64,
    ps_den: u64,
    seg_start_ps: u64,
    seg_cycles: u64,
    /// `seg_cycles` in picoseconds, kept with it (read at every access).
    seg_cpu_ps: u64,
    seg_idle_ps: u64,
    /// Core clock cycles elapsed before the current segment (CYCCNT).
    cycles_before: u64,
    /// Cycles retired by instructions, all segments.
    retired: u64,
    /// SWD clock in Hz used to charge every transfer its bits.
    swd_hz: u64,
    pub counters: Counters,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(4_000_000)
    }
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
    /// Virtual time the CPU spent executing them (at the core clock of the
    /// moment, flash wait states included).
    pub cpu_ps: u64,
    /// Bytes exchanged on the external flash's SPI bus.
    pub spi_bytes: u64,
    /// Time skipped over BUSY periods instead of emulating the poll loop.
    pub skipped_ps: u64,
    /// USB round trips the link profile charged.
    pub round_trips: u64,
    /// Virtual time those round trips took.
    pub link_wait_ps: u64,
    /// Instructions not emulated because the core provably waited (idle
    /// fast-forward): the loop iterations jumped over.
    pub ff_instructions: u64,
    /// AP data transfers (DRW, BD0-3) made while CSW.Size selected 16 bits.
    /// The product never makes them: probe-rs 0.32's ST-Link `read_16` /
    /// `write_16` step their address wrongly on silicon.
    pub halfword_transfers: u64,
}

impl Counters {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            swd_transactions: self.swd_transactions - earlier.swd_transactions,
            swd_bits: self.swd_bits - earlier.swd_bits,
            ap_bytes: self.ap_bytes - earlier.ap_bytes,
            instructions: self.instructions - earlier.instructions,
            cpu_ps: self.cpu_ps - earlier.cpu_ps,
            spi_bytes: self.spi_bytes - earlier.spi_bytes,
            skipped_ps: self.skipped_ps - earlier.skipped_ps,
            round_trips: self.round_trips - earlier.round_trips,
            link_wait_ps: self.link_wait_ps - earlier.link_wait_ps,
            ff_instructions: self.ff_instructions - earlier.ff_instructions,
            halfword_transfers: self.halfword_transfers - earlier.halfword_transfers,
        }
    }
}

/// Bits of one SWD transaction: 8 request + 1 turnaround + 3 ack +
/// (1 turnaround on writes) + 32 data + 1 parity, plus 8 idle cycles that
/// probes insert (ST-Link and CMSIS-DAP both do).
pub const SWD_BITS_PER_TRANSACTION: u64 = 8 + 1 + 3 + 1 + 32 + 1 + 8;

impl Clock {
    pub fn new(swd_hz: u64) -> Self {
        let (ps_num, ps_den) = ps_per_cycle(HSI_HZ);
        Self {
            hz: HSI_HZ,
            ps_num,
            ps_den,
            seg_start_ps: 0,
            seg_cycles: 0,
            seg_cpu_ps: 0,
            seg_idle_ps: 0,
            cycles_before: 0,
            retired: 0,
            swd_hz: swd_hz.max(1),
            counters: Counters::default(),
        }
    }

    /// Current virtual time in picoseconds.
    #[inline]
    pub fn now(&self) -> u64 {
        self.seg_start_ps
            .saturating_add(self.seg_idle_ps)
            .saturating_add(self.seg_cpu_ps)
    }

    /// `seg_cycles` changed: refresh its time (floor(cycles * 10^12 / hz)).
    #[inline]
    fn seg_cycles_changed(&mut self) {
        self.seg_cpu_ps = mul_div(self.seg_cycles, self.ps_num, self.ps_den);
    }

    /// Core clock (HCLK) in Hz.
    pub fn cpu_hz(&self) -> u64 {
        self.hz
    }

    /// Switch the core clock (an RCC change); time so far is kept.
    pub fn set_cpu_hz(&mut self, hz: u64) {
        let hz = hz.max(1);
        if hz == self.hz {
            return;
        }
        let now = self.now();
        self.cycles_before = self.core_cycles();
        self.seg_start_ps = now;
        self.seg_cycles = 0;
        self.seg_cpu_ps = 0;
        self.seg_idle_ps = 0;
        self.hz = hz;
        (self.ps_num, self.ps_den) = ps_per_cycle(hz);
    }

    /// Core clock cycles elapsed in virtual time, idle time included: what
    /// DWT CYCCNT counts.
    pub fn core_cycles(&self) -> u64 {
        let ps = self.now() - self.seg_start_ps;
        self.cycles_before + mul_div(ps, self.ps_den, self.ps_num)
    }

    /// One instruction retired, taking `cycles` core clock cycles (1, plus
    /// flash wait states when fetched without the ART accelerator).
    #[inline]
    pub fn retire(&mut self, cycles: u64) {
        self.spend(cycles);
        self.counters.instructions += 1;
    }

    /// Core cycles the CPU spends without retiring an instruction
    /// (exception entry).
    #[inline]
    pub fn spend(&mut self, cycles: u64) {
        let t0 = self.seg_cpu_ps;
        self.seg_cycles += cycles;
        self.seg_cycles_changed();
        self.retired += cycles;
        self.counters.cpu_ps += self.seg_cpu_ps - t0;
    }

    /// `iterations` repetitions of a provable wait loop of `instructions`
    /// instructions and `cycles` core cycles each, not emulated: the time
    /// is CPU time, exactly as if they had executed.
    pub fn fast_forward(&mut self, iterations: u64, instructions: u64, cycles: u64) {
        let t0 = self.seg_cpu_ps;
        self.seg_cycles += iterations * cycles;
        self.seg_cycles_changed();
        self.retired += iterations * cycles;
        self.counters.ff_instructions += iterations * instructions;
        self.counters.cpu_ps += self.seg_cpu_ps - t0;
    }

    /// Core cycles retired by executed (or fast-forwarded) instructions.
    pub fn retired_cycles(&self) -> u64 {
        self.retired
    }

    /// Whole core cycles that still fit before virtual time `t`.
    pub fn cycles_until(&self, t: u64) -> u64 {
        let now = self.now();
        if t <= now {
            return 0;
        }
        mul_div(t - now, self.ps_den, self.ps_num)
    }

    /// Time passing while the core does not execute.
    pub fn idle(&mut self, ps: u64) {
        self.seg_idle_ps = self.seg_idle_ps.saturating_add(ps);
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

    /// Duration of `cycles` core clock cycles at the current core clock.
    pub fn cycles_ps(&self, cycles: u64) -> u64 {
        mul_div(cycles, self.ps_num, self.ps_den)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Picoseconds per cycle at `hz` as a reduced fraction (numerator,
/// denominator): 16 MHz gives 62500/1, 168 MHz 125000/21.
fn ps_per_cycle(hz: u64) -> (u64, u64) {
    let g = gcd(PS_PER_S, hz);
    (PS_PER_S / g, hz / g)
}

/// floor(a * num / den), exact: 64-bit when the product fits, else 128-bit.
#[inline]
fn mul_div(a: u64, num: u64, den: u64) -> u64 {
    match a.checked_mul(num) {
        Some(p) if den == 1 => p,
        Some(p) => p / den,
        None => (a as u128 * num as u128 / den as u128) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_counts_cpu_cycles_without_drift() {
        let mut c = Clock::new(4_000_000);
        c.set_cpu_hz(CPU_HZ);
        for _ in 0..168_000_000u64 / 1000 {
            c.retire(1);
        }
        assert_eq!(c.now(), PS_PER_S / 1000);
        assert_eq!(c.counters.cpu_ps, PS_PER_S / 1000);
    }

    #[test]
    fn core_clock_starts_on_hsi_and_a_switch_keeps_time_and_cycles() {
        let mut c = Clock::new(4_000_000);
        assert_eq!(c.cpu_hz(), HSI_HZ);
        for _ in 0..16_000 {
            c.retire(1);
        }
        assert_eq!(c.now(), PS_PER_S / 1000, "16,000 cycles at 16 MHz = 1 ms");
        c.set_cpu_hz(CPU_HZ);
        assert_eq!(c.now(), PS_PER_S / 1000);
        assert_eq!(c.core_cycles(), 16_000);
        c.retire(168);
        assert_eq!(c.now(), PS_PER_S / 1000 + PS_PER_S / 1_000_000);
        c.idle(PS_PER_S / 1_000_000);
        assert_eq!(
            c.core_cycles(),
            16_000 + 2 * 168,
            "idle time counts core cycles"
        );
    }

    #[test]
    fn reduced_fraction_conversions_equal_the_128_bit_formulas() {
        for hz in [HSI_HZ, CPU_HZ, 8_000_000, 84_000_000, 100_000_007, 1] {
            let mut c = Clock::new(4_000_000);
            c.set_cpu_hz(hz);
            for (i, n) in [1u64, 7, 20_999, 1 << 40, u64::MAX / 3]
                .into_iter()
                .enumerate()
            {
                let slow = (n as u128 * PS_PER_S as u128 / hz as u128) as u64;
                assert_eq!(c.cycles_ps(n), slow, "cycles_ps({n}) at {hz} Hz");
                c.idle(n % (1 << 50));
                let ps = c.now();
                let slow = (ps as u128 * hz as u128 / PS_PER_S as u128) as u64;
                assert_eq!(c.core_cycles(), slow, "core_cycles at {hz} Hz, step {i}");
            }
            c.retire(12_345);
            let slow = (12_345u128 * PS_PER_S as u128 / hz as u128) as u64;
            assert_eq!(c.counters.cpu_ps, slow, "retire at {hz} Hz");
        }
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

//! The System Control Space as both the CPU and the debugger see it: SCB,
//! NVIC, SysTick, MPU and FPU control registers, and the exception state
//! (pending, active, priorities) they describe (ARMv7-M ARM B3.2-B3.5,
//! Cortex-M4 TRM 4, PM0214 4).
//!
//! This module owns register state and the exception priority rules. It
//! must not know about the core's registers: the board asks it which
//! exception to take ([`Scs::takeable`]) and tells it what the core
//! entered and returned from. The debug registers in the same space
//! (DHCSR, DCRSR, DCRDR, DEMCR, DFSR) and VTOR stay in `debug.rs`.

use super::align::TrapFlag;

/// External interrupts of the STM32F407 (RM0090 table 61: 0..=81).
pub const IRQS: usize = 82;
const WORDS: usize = IRQS.div_ceil(32);

/// Exception numbers (ARMv7-M B1.5.2).
pub mod exc {
    pub const HARDFAULT: u16 = 3;
    pub const SVCALL: u16 = 11;
    pub const PENDSV: u16 = 14;
    pub const SYSTICK: u16 = 15;
    /// First external interrupt.
    pub const IRQ0: u16 = 16;
}

/// Execution priority with nothing active and no mask set.
pub const THREAD_PRIORITY: i16 = 256;

const CPUID: u32 = 0x410F_C241;
/// SYST_CALIB: no external reference, TENMS = 21000 - 1 (1 ms at HCLK/8 =
/// 21 MHz, PM0214 4.5.4), SKEW not set.
const SYST_CALIB: u32 = 20_999;
const CCR_RESET: u32 = 0x200; // STKALIGN
const CCR_NONBASETHRDENA: u32 = 1;
const CCR_UNALIGN_TRP: u32 = 1 << 3;
const FPCCR_RESET: u32 = 0xC000_0000; // ASPEN | LSPEN
const MPU_TYPE: u32 = 8 << 8; // 8 regions

/// SysTick (ARMv7-M B3.3): a 24-bit down-counter at HCLK (CLKSOURCE = 1)
/// or HCLK/8 (the STM32's external reference), kept as a formula of core
/// clock cycles so it costs nothing per instruction.
#[derive(Debug, Clone, Default)]
pub struct SysTick {
    /// ENABLE, TICKINT, CLKSOURCE.
    ctrl: u32,
    rvr: u32,
    /// Counter value at `anchor` (core cycles), while enabled.
    v0: u32,
    anchor: u64,
    /// Value while disabled.
    frozen: u32,
    /// Zero transitions since `anchor` that COUNTFLAG and the exception
    /// have already accounted for; `flag` is COUNTFLAG carried over a
    /// re-anchor.
    flag_seen: u64,
    pend_seen: u64,
    flag: bool,
}

const ST_ENABLE: u32 = 1;
const ST_TICKINT: u32 = 2;
const ST_CLKSOURCE: u32 = 4;
const ST_COUNTFLAG: u32 = 1 << 16;

impl SysTick {
    fn div(&self) -> u64 {
        if self.ctrl & ST_CLKSOURCE != 0 {
            1
        } else {
            8
        }
    }

    fn enabled(&self) -> bool {
        self.ctrl & ST_ENABLE != 0
    }

    /// Ticks since `anchor` at core cycle `now`.
    fn elapsed(&self, now: u64) -> u64 {
        now.saturating_sub(self.anchor) / self.div()
    }

    /// (value, transitions to zero) `e` ticks after the anchor: the counter
    /// goes v0, v0-1, .., 0, then reloads RVR on the next tick.
    fn at(&self, e: u64) -> (u32, u64) {
        let (v0, r) = (self.v0 as u64, self.rvr as u64);
        let first = (v0 > 0) as u64;
        if e <= v0 {
            return ((v0 - e) as u32, (v0 > 0 && e == v0) as u64);
        }
        if r == 0 {
            return (0, first);
        }
        let k = e - v0 - 1;
        let p = r + 1;
        ((r - k % p) as u32, first + (k + 1) / p)
    }

    /// Core cycle of transition number `n` (1-based) after the anchor.
    fn transition_cycle(&self, n: u64) -> Option<u64> {
        let (v0, r) = (self.v0 as u64, self.rvr as u64);
        let first = (v0 > 0) as u64;
        let e = if n <= first {
            v0
        } else if r == 0 {
            return None;
        } else {
            v0 + (n - first) * (r + 1)
        };
        Some(self.anchor + e * self.div())
    }

    pub fn value(&self, now: u64) -> u32 {
        if self.enabled() {
            self.at(self.elapsed(now)).0
        } else {
            self.frozen
        }
    }

    fn transitions(&self, now: u64) -> u64 {
        if self.enabled() {
            self.at(self.elapsed(now)).1
        } else {
            0
        }
    }

    /// Restart the formula at `now` from the current value, keeping
    /// COUNTFLAG and any exception not yet pended.
    fn reanchor(&mut self, now: u64, pend: &mut bool) {
        let e = self.elapsed(now);
        let (v, n) = if self.enabled() {
            self.at(e)
        } else {
            (self.frozen, 0)
        };
        self.flag |= n > self.flag_seen;
        *pend |= n > self.pend_seen && self.ctrl & ST_TICKINT != 0;
        self.v0 = v;
        self.frozen = v;
        self.anchor += e * self.div();
        if !self.enabled() {
            self.anchor = now;
        }
        self.flag_seen = 0;
        self.pend_seen = 0;
    }

    /// When the exception is next due (core cycles), if TICKINT is set.
    pub fn next_exception(&self) -> Option<u64> {
        if !self.enabled() || self.ctrl & ST_TICKINT == 0 {
            return None;
        }
        self.transition_cycle(self.pend_seen + 1)
    }

    /// Whether the exception came due by `now` (and account for it).
    fn take_due(&mut self, now: u64) -> bool {
        let n = self.transitions(now);
        let due = n > self.pend_seen && self.ctrl & ST_TICKINT != 0;
        self.pend_seen = n;
        due
    }
}

/// Whether an access comes from the core (software) or the debugger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Cpu,
    Debugger,
}

/// An exception return the model refuses: the core locks up with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReturnError {
    #[error("return from exception {from}, which is not active (INVPC UsageFault on silicon)")]
    NotActive { from: u16 },
    #[error(
        "return from exception {from} to Thread mode while exception {active} is still active \
         and CCR.NONBASETHRDENA is 0 (INVPC UsageFault on silicon)"
    )]
    ThreadWhileNested { from: u16, active: u16 },
    #[error(
        "return from exception {from} to stacked IPSR {ipsr} while the exception it preempted \
         is {active}: the virtual board models returns to the preempted context only"
    )]
    IpsrMismatch { from: u16, ipsr: u16, active: u16 },
}

/// What a write asks of the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScsEffect {
    None,
    /// AIRCR.SYSRESETREQ with the key.
    SystemReset,
    /// AIRCR.VECTRESET with the key (the core only).
    CoreReset,
}

#[derive(Debug, Clone)]
pub struct Scs {
    pub systick: SysTick,
    actlr: u32,
    enabled: [u32; WORDS],
    pending: [u32; WORDS],
    active: [u32; WORDS],
    /// Interrupt request lines as the modelled peripherals drive them.
    lines: [u32; WORDS],
    ipr: [u8; IRQS],
    /// System exceptions 1..=15: pending and active bits by number.
    sys_pending: u16,
    sys_active: u16,
    /// SHPR1-3: priorities of exceptions 4..=15.
    shpr: [u8; 12],
    prigroup: u32,
    scr: u32,
    ccr: u32,
    shcsr_enables: u32,
    cfsr: u32,
    hfsr: u32,
    mmfar: u32,
    bfar: u32,
    afsr: u32,
    cpacr: u32,
    mpu_ctrl: u32,
    mpu_rnr: u32,
    mpu_rbar: [u32; 8],
    mpu_rasr: [u32; 8],
    fpccr: u32,
    fpcar: u32,
    fpdscr: u32,
    /// Active exceptions in entry order (nesting): the last is the one the
    /// core executes (ICSR.VECTACTIVE, [`Scs::current`]).
    stack: Vec<u16>,
    /// CCR.UNALIGN_TRP as the CPU reads it ([`Scs::share_unalign_trp`]).
    unalign_trp: TrapFlag,
}

impl Default for Scs {
    fn default() -> Self {
        Self::new()
    }
}

impl Scs {
    pub fn new() -> Self {
        Self {
            systick: SysTick::default(),
            actlr: 0,
            enabled: [0; WORDS],
            pending: [0; WORDS],
            active: [0; WORDS],
            lines: [0; WORDS],
            ipr: [0; IRQS],
            sys_pending: 0,
            sys_active: 0,
            shpr: [0; 12],
            prigroup: 0,
            scr: 0,
            ccr: CCR_RESET,
            shcsr_enables: 0,
            cfsr: 0,
            hfsr: 0,
            mmfar: 0,
            bfar: 0,
            afsr: 0,
            cpacr: 0,
            mpu_ctrl: 0,
            mpu_rnr: 0,
            mpu_rbar: [0; 8],
            mpu_rasr: [0; 8],
            fpccr: FPCCR_RESET,
            fpcar: 0,
            fpdscr: 0,
            stack: Vec::new(),
            unalign_trp: TrapFlag::default(),
        }
    }

    /// Keep `flag` equal to CCR.UNALIGN_TRP from now on (the CPU's copy).
    pub fn share_unalign_trp(&mut self, flag: TrapFlag) {
        flag.set(self.unalign_trp());
        self.unalign_trp = flag;
    }

    /// Any reset of the core (the SCS is in the core's reset domain);
    /// request lines stay as the peripherals drive them.
    pub fn reset(&mut self) {
        let lines = self.lines;
        let trap = self.unalign_trp.clone();
        *self = Self::new();
        self.lines = lines;
        self.share_unalign_trp(trap);
        self.repend_lines();
    }

    // ---- exception state ----------------------------------------------------

    /// Priority of exception `n` as configured (fixed ones negative).
    pub fn priority(&self, n: u16) -> i16 {
        match n {
            1 => -3,
            2 => -2,
            3 => -1,
            4..=15 => self.shpr[n as usize - 4] as i16,
            n => self.ipr.get(n as usize - 16).map_or(0, |&p| p as i16),
        }
    }

    /// The group priority (PRIGROUP splits off the subpriority).
    fn group(&self, prio: i16) -> i16 {
        if prio < 0 {
            return prio;
        }
        let sub_bits = self.prigroup + 1;
        prio & !((1i16 << sub_bits) - 1)
    }

    fn is_pending(&self, n: u16) -> bool {
        match n {
            0..=15 => self.sys_pending & (1 << n) != 0,
            n => bit(&self.pending, n as usize - 16),
        }
    }

    fn is_active(&self, n: u16) -> bool {
        match n {
            0..=15 => self.sys_active & (1 << n) != 0,
            n => bit(&self.active, n as usize - 16),
        }
    }

    /// Whether anything is pending at all (checked before every
    /// instruction, so it must be cheap).
    #[inline]
    pub fn any_pending(&self) -> bool {
        self.sys_pending != 0
            || self
                .pending
                .iter()
                .zip(&self.enabled)
                .any(|(p, e)| p & e != 0)
    }

    /// The pending exception that would be taken first: highest priority,
    /// then lowest number (B1.5.4), external ones only if enabled.
    pub fn best_pending(&self) -> Option<(i16, u16)> {
        let mut best: Option<(i16, u16)> = None;
        let mut consider = |n: u16, p: i16| {
            if best.is_none_or(|(bp, _)| p < bp) {
                best = Some((p, n));
            }
        };
        for n in 1..16u16 {
            if self.sys_pending & (1 << n) != 0 {
                consider(n, self.group(self.priority(n)));
            }
        }
        for w in 0..WORDS {
            let mut bits = self.pending[w] & self.enabled[w];
            while bits != 0 {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let n = (16 + 32 * w + i) as u16;
                consider(n, self.group(self.priority(n)));
            }
        }
        best
    }

    /// The execution priority from active exceptions alone.
    fn active_priority(&self) -> i16 {
        self.stack
            .iter()
            .map(|&n| self.group(self.priority(n)))
            .fold(THREAD_PRIORITY, i16::min)
    }

    /// The execution priority (B1.5.4) with the core's masks.
    pub fn execution_priority(&self, primask: bool, faultmask: bool, basepri: u8) -> i16 {
        let mut p = self.active_priority();
        if basepri != 0 {
            p = p.min(self.group(basepri as i16));
        }
        if primask {
            p = p.min(0);
        }
        if faultmask {
            p = p.min(-1);
        }
        p
    }

    /// The exception the core takes now, if one is pending with a group
    /// priority above the execution priority.
    pub fn takeable(&self, primask: bool, faultmask: bool, basepri: u8) -> Option<u16> {
        let (p, n) = self.best_pending()?;
        (p < self.execution_priority(primask, faultmask, basepri)).then_some(n)
    }

    /// Whether a pending exception would wake WFI (it would preempt with
    /// PRIMASK clear, B1.5.19).
    pub fn wakes(&self, faultmask: bool, basepri: u8) -> bool {
        self.takeable(false, faultmask, basepri).is_some()
    }

    /// The core entered exception `n`: pending to active.
    pub fn enter(&mut self, n: u16) {
        self.set_pending(n, false);
        match n {
            0..=15 => self.sys_active |= 1 << n,
            n => set_bit(&mut self.active, n as usize - 16, true),
        }
        self.stack.push(n);
    }

    /// CCR.UNALIGN_TRP: unaligned LDR/STR/LDRH/STRH fault (ARMv7-M B3.2.8).
    pub fn unalign_trp(&self) -> bool {
        self.ccr & CCR_UNALIGN_TRP != 0
    }

    /// The exception the core executes (IPSR; 0 in Thread mode): the last
    /// one entered that has not returned ([`Scs::exit`] refuses a return
    /// to any other).
    pub fn current(&self) -> u16 {
        self.stack.last().copied().unwrap_or(0)
    }

    /// The core returned from exception `n` to the mode and IPSR its frame
    /// holds (`to_ipsr`, 0 for Thread mode), after ExceptionReturn
    /// (ARMv7-M B1.5.8): `n` must be active, and a return to Thread mode
    /// must leave nothing active unless CCR.NONBASETHRDENA is set (INVPC
    /// on silicon otherwise). Any return must resume the context it
    /// preempted ([`Scs::current`] is derived from the nesting), which
    /// is all the board stacks. A level interrupt still asserted pends
    /// again.
    pub fn exit(&mut self, n: u16, to_ipsr: u16) -> Result<(), ReturnError> {
        if !self.is_active(n) {
            return Err(ReturnError::NotActive { from: n });
        }
        let mut rest = self.stack.clone();
        if let Some(i) = rest.iter().rposition(|&a| a == n) {
            rest.remove(i);
        }
        let resumes = rest.last().copied().unwrap_or(0);
        if to_ipsr == 0 && resumes != 0 && self.ccr & CCR_NONBASETHRDENA == 0 {
            return Err(ReturnError::ThreadWhileNested {
                from: n,
                active: resumes,
            });
        }
        // With NONBASETHRDENA, Thread mode under active exceptions is
        // legal but not modelled (IPSR would no longer be the nesting's).
        if to_ipsr != resumes {
            return Err(ReturnError::IpsrMismatch {
                from: n,
                ipsr: to_ipsr,
                active: resumes,
            });
        }
        match n {
            0..=15 => self.sys_active &= !(1 << n),
            n => set_bit(&mut self.active, n as usize - 16, false),
        }
        self.stack = rest;
        self.repend_lines();
        Ok(())
    }

    /// Pend (or unpend) exception `n`.
    pub fn set_pending(&mut self, n: u16, on: bool) {
        match n {
            0..=15 => {
                if on {
                    self.sys_pending |= 1 << n;
                } else {
                    self.sys_pending &= !(1 << n);
                }
            }
            n if (n as usize) < 16 + IRQS => set_bit(&mut self.pending, n as usize - 16, on),
            _ => {}
        }
    }

    /// A peripheral drives interrupt request line `irq` (level-sensitive:
    /// pending while asserted and not active, B3.4.1).
    pub fn set_line(&mut self, irq: usize, level: bool) {
        if irq < IRQS {
            set_bit(&mut self.lines, irq, level);
            if level && !bit(&self.active, irq) {
                set_bit(&mut self.pending, irq, true);
            }
        }
    }

    fn repend_lines(&mut self) {
        for w in 0..WORDS {
            self.pending[w] |= self.lines[w] & !self.active[w];
        }
    }

    /// SysTick's exception came due by core cycle `now`: pend it.
    pub fn service_systick(&mut self, now: u64) {
        if self.systick.take_due(now) {
            self.set_pending(exc::SYSTICK, true);
        }
    }

    /// Stack alignment on exception entry (CCR.STKALIGN).
    pub fn stkalign(&self) -> bool {
        self.ccr & CCR_RESET != 0
    }

    // ---- registers ------------------------------------------------------------

    /// Read the SCS register word at `addr` (0xE000_E000..0xE000_F000),
    /// core cycle `now`. `None`: not an SCS register this model has (the
    /// debug registers and VTOR are `debug.rs`'s).
    pub fn read(&mut self, addr: u32, now: u64, side: Side) -> Option<u32> {
        let off = addr.wrapping_sub(0xE000_E000);
        Some(match off {
            0x004 => (WORDS - 1) as u32, // ICTR.INTLINESNUM
            0x008 => self.actlr,
            0x010 => {
                let st = &mut self.systick;
                let n = st.transitions(now);
                let flag = st.flag || n > st.flag_seen;
                // Software reads clear COUNTFLAG (B3.3.3); debugger reads
                // leave it for the program.
                if side == Side::Cpu {
                    st.flag = false;
                    st.flag_seen = n;
                }
                st.ctrl | if flag { ST_COUNTFLAG } else { 0 }
            }
            0x014 => self.systick.rvr,
            0x018 => self.systick.value(now),
            0x01C => SYST_CALIB,
            o @ 0x100..=0x13C => word(&self.enabled, (o - 0x100) / 4),
            o @ 0x180..=0x1BC => word(&self.enabled, (o - 0x180) / 4),
            o @ 0x200..=0x23C => word(&self.pending, (o - 0x200) / 4),
            o @ 0x280..=0x2BC => word(&self.pending, (o - 0x280) / 4),
            o @ 0x300..=0x33C => word(&self.active, (o - 0x300) / 4),
            o @ 0x400..=0x5EC => {
                let i = (o - 0x400) as usize;
                (0..4).fold(0, |v, k| {
                    v | (*self.ipr.get(i + k).unwrap_or(&0) as u32) << (8 * k)
                })
            }
            0xD00 => CPUID,
            0xD04 => self.icsr(),
            0xD0C => 0xFA05_0000 | self.prigroup << 8,
            0xD10 => self.scr,
            0xD14 => self.ccr,
            o @ 0xD18..=0xD20 => {
                let i = (o - 0xD18) as usize;
                u32::from_le_bytes([
                    self.shpr[i],
                    self.shpr[i + 1],
                    self.shpr[i + 2],
                    self.shpr[i + 3],
                ])
            }
            0xD24 => self.shcsr(),
            0xD28 => self.cfsr,
            0xD2C => self.hfsr,
            0xD34 => self.mmfar,
            0xD38 => self.bfar,
            0xD3C => self.afsr,
            // Cortex-M4 r0p1 feature registers (TRM 4.1, table 4-12).
            0xD40 => 0x0000_0030,
            0xD44 => 0x0000_0200,
            0xD48 => 0x0010_0000,
            0xD4C => 0,
            0xD50 => 0x0010_0030,
            0xD54 => 0,
            0xD58 => 0x0100_0000,
            0xD5C => 0,
            0xD60 => 0x0110_1110,
            0xD64 => 0x0211_1000,
            0xD68 => 0x2111_2231,
            0xD6C => 0x0111_1110,
            0xD70 => 0x0131_0132,
            0xD88 => self.cpacr,
            0xD90 => MPU_TYPE,
            0xD94 => self.mpu_ctrl,
            0xD98 => self.mpu_rnr,
            0xD9C | 0xDA4 | 0xDAC | 0xDB4 => {
                self.mpu_rbar[self.mpu_rnr as usize & 7] | self.mpu_rnr & 7
            }
            0xDA0 | 0xDA8 | 0xDB0 | 0xDB8 => self.mpu_rasr[self.mpu_rnr as usize & 7],
            0xF00 => 0, // STIR is write-only
            0xF34 => self.fpccr,
            0xF38 => self.fpcar,
            0xF3C => self.fpdscr,
            0xF40 => 0x1011_0021, // MVFR0: single precision
            0xF44 => 0x1100_0011, // MVFR1
            _ => return None,
        })
    }

    fn icsr(&self) -> u32 {
        let pending = self.best_pending().map_or(0, |(_, n)| n as u32);
        let isr_pending = self.pending.iter().any(|&p| p != 0);
        let rettobase = self.stack.len() <= 1;
        self.current() as u32
            | (rettobase as u32) << 11
            | pending << 12
            | (isr_pending as u32) << 22
            | (self.is_pending(exc::SYSTICK) as u32) << 26
            | (self.is_pending(exc::PENDSV) as u32) << 28
    }

    fn shcsr(&self) -> u32 {
        let a = |n: u16, b: u32| (self.is_active(n) as u32) << b;
        a(4, 0)
            | a(5, 1)
            | a(6, 3)
            | a(exc::SVCALL, 7)
            | a(12, 8)
            | a(exc::PENDSV, 10)
            | a(exc::SYSTICK, 11)
            | (self.is_pending(exc::SVCALL) as u32) << 15
            | self.shcsr_enables
    }

    /// Write `value` under byte-lane `mask` to the SCS register word at
    /// `addr`; `None` if this model has no register there.
    pub fn write(
        &mut self,
        addr: u32,
        value: u32,
        mask: u32,
        now: u64,
        side: Side,
    ) -> Option<ScsEffect> {
        let off = addr.wrapping_sub(0xE000_E000);
        let v = value & mask;
        let merge = |old: u32, w: u32| old & !(mask & w) | value & mask & w;
        match off {
            0x008 => self.actlr = merge(self.actlr, 0x307),
            0x010 => {
                let mut pend = false;
                self.systick.reanchor(now, &mut pend);
                let was = self.systick.enabled();
                self.systick.ctrl = merge(self.systick.ctrl, 7);
                if !was && self.systick.enabled() {
                    // The counter starts from its current value; a zero
                    // value loads RVR on the first tick.
                    self.systick.anchor = now;
                }
                if pend {
                    self.set_pending(exc::SYSTICK, true);
                }
            }
            0x014 => {
                let mut pend = false;
                self.systick.reanchor(now, &mut pend);
                self.systick.rvr = merge(self.systick.rvr, 0x00FF_FFFF);
                if pend {
                    self.set_pending(exc::SYSTICK, true);
                }
            }
            0x018 => {
                // Any write clears the counter and COUNTFLAG.
                let mut pend = false;
                self.systick.reanchor(now, &mut pend);
                let st = &mut self.systick;
                st.v0 = 0;
                st.frozen = 0;
                st.flag = false;
                if pend {
                    self.set_pending(exc::SYSTICK, true);
                }
            }
            0x01C => {}
            o @ 0x100..=0x13C => or_word(&mut self.enabled, (o - 0x100) / 4, v),
            o @ 0x180..=0x1BC => clear_word(&mut self.enabled, (o - 0x180) / 4, v),
            o @ 0x200..=0x23C => or_word(&mut self.pending, (o - 0x200) / 4, v),
            o @ 0x280..=0x2BC => {
                clear_word(&mut self.pending, (o - 0x280) / 4, v);
                self.repend_lines();
            }
            0x300..=0x33C => {}
            o @ 0x400..=0x5EC => {
                let i = (o - 0x400) as usize;
                for k in 0..4 {
                    if mask >> (8 * k) & 0xFF != 0 {
                        if let Some(p) = self.ipr.get_mut(i + k) {
                            *p = (value >> (8 * k)) as u8 & super::sysreg::PRIO_MASK;
                        }
                    }
                }
            }
            0xD04 => {
                // PENDSVSET/CLR, PENDSTSET/CLR (NMIPENDSET: NMI not modelled).
                if v & 1 << 28 != 0 {
                    self.set_pending(exc::PENDSV, true);
                }
                if v & 1 << 27 != 0 {
                    self.set_pending(exc::PENDSV, false);
                }
                if v & 1 << 26 != 0 {
                    self.set_pending(exc::SYSTICK, true);
                }
                if v & 1 << 25 != 0 {
                    self.set_pending(exc::SYSTICK, false);
                }
            }
            0xD0C => {
                // Only a word write with the key counts (B3.2.6).
                if mask != !0 || value >> 16 != 0x05FA {
                    return Some(ScsEffect::None);
                }
                self.prigroup = (value >> 8) & 7;
                if value & 4 != 0 {
                    return Some(ScsEffect::SystemReset);
                }
                if value & 1 != 0 && side == Side::Debugger {
                    return Some(ScsEffect::CoreReset);
                }
            }
            0xD10 => self.scr = merge(self.scr, 0x16),
            0xD14 => {
                self.ccr = merge(self.ccr, 0x31B);
                self.unalign_trp.set(self.unalign_trp());
            }
            o @ 0xD18..=0xD20 => {
                let i = (o - 0xD18) as usize;
                for k in 0..4 {
                    if mask >> (8 * k) & 0xFF != 0 {
                        self.shpr[i + k] = (value >> (8 * k)) as u8 & super::sysreg::PRIO_MASK;
                    }
                }
            }
            0xD24 => self.shcsr_enables = merge(self.shcsr_enables, 0x7_0000),
            0xD28 => self.cfsr &= !v,
            0xD2C => self.hfsr &= !v,
            0xD34 => self.mmfar = merge(self.mmfar, !0),
            0xD38 => self.bfar = merge(self.bfar, !0),
            0xD3C => self.afsr &= !v,
            0xD40..=0xD7C => {}
            0xD88 => self.cpacr = merge(self.cpacr, 0x00F0_0000),
            0xD90 => {}
            0xD94 => self.mpu_ctrl = merge(self.mpu_ctrl, 7),
            0xD98 => self.mpu_rnr = merge(self.mpu_rnr, 0xFF) & 7,
            0xD9C | 0xDA4 | 0xDAC | 0xDB4 => {
                if v & 0x10 != 0 {
                    self.mpu_rnr = v & 7; // VALID: REGION selects
                }
                let r = self.mpu_rnr as usize & 7;
                self.mpu_rbar[r] = merge(self.mpu_rbar[r], 0xFFFF_FFE0);
            }
            0xDA0 | 0xDA8 | 0xDB0 | 0xDB8 => {
                let r = self.mpu_rnr as usize & 7;
                self.mpu_rasr[r] = merge(self.mpu_rasr[r], 0x173F_FF3F);
            }
            0xF00 => {
                // STIR: software triggers an interrupt (USERSETMPEND aside,
                // privileged software only; debugger writes too).
                let irq = (v & 0x1FF) as usize;
                if irq < IRQS {
                    set_bit(&mut self.pending, irq, true);
                }
            }
            0xF34 => self.fpccr = merge(self.fpccr, 0xC000_01FB),
            0xF38 => self.fpcar = merge(self.fpcar, 0xFFFF_FFF8),
            0xF3C => self.fpdscr = merge(self.fpdscr, 0x07C0_0000),
            0xF40 | 0xF44 => {}
            _ => return None,
        }
        Some(ScsEffect::None)
    }
}

fn bit(words: &[u32], i: usize) -> bool {
    words.get(i / 32).is_some_and(|w| w >> (i % 32) & 1 != 0)
}

fn set_bit(words: &mut [u32], i: usize, on: bool) {
    if let Some(w) = words.get_mut(i / 32) {
        if on {
            *w |= 1 << (i % 32);
        } else {
            *w &= !(1 << (i % 32));
        }
    }
}

/// Word `i` of a bit array, only the implemented interrupts.
fn word(words: &[u32], i: u32) -> u32 {
    let i = i as usize;
    let implemented = if i + 1 < WORDS {
        !0
    } else if i + 1 == WORDS {
        (1u32 << (IRQS % 32)) - 1
    } else {
        0
    };
    words.get(i).copied().unwrap_or(0) & implemented
}

fn or_word(words: &mut [u32], i: u32, v: u32) {
    let mask = word(&[!0; WORDS], i);
    if let Some(w) = words.get_mut(i as usize) {
        *w |= v & mask;
    }
}

fn clear_word(words: &mut [u32], i: u32, v: u32) {
    if let Some(w) = words.get_mut(i as usize) {
        *w &= !v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYST_CSR: u32 = 0xE000_E010;
    const SYST_RVR: u32 = 0xE000_E014;
    const SYST_CVR: u32 = 0xE000_E018;

    #[test]
    fn systick_counts_hclk_reloads_and_countflag_clears_on_software_read() {
        let mut s = Scs::new();
        s.write(SYST_RVR, 99, !0, 0, Side::Cpu);
        s.write(SYST_CVR, 0, !0, 0, Side::Cpu);
        s.write(SYST_CSR, ST_ENABLE | ST_CLKSOURCE, !0, 1000, Side::Cpu);
        // Tick 1 loads RVR, then it counts down.
        assert_eq!(s.read(SYST_CVR, 1001, Side::Cpu), Some(99));
        assert_eq!(s.read(SYST_CVR, 1051, Side::Cpu), Some(49));
        assert_eq!(s.read(SYST_CSR, 1099, Side::Cpu).unwrap() & ST_COUNTFLAG, 0);
        assert_eq!(s.read(SYST_CVR, 1100, Side::Cpu), Some(0));
        assert_eq!(
            s.read(SYST_CSR, 1100, Side::Debugger).unwrap() & ST_COUNTFLAG,
            ST_COUNTFLAG,
            "reached zero"
        );
        assert_eq!(
            s.read(SYST_CSR, 1100, Side::Cpu).unwrap() & ST_COUNTFLAG,
            ST_COUNTFLAG,
            "a debugger read does not clear it"
        );
        assert_eq!(s.read(SYST_CSR, 1150, Side::Cpu).unwrap() & ST_COUNTFLAG, 0);
        assert_eq!(s.read(SYST_CVR, 1101, Side::Cpu), Some(99), "reload");
    }

    #[test]
    fn systick_at_hclk_over_8_and_exception_times() {
        let mut s = Scs::new();
        s.write(SYST_RVR, 9, !0, 0, Side::Cpu);
        s.write(SYST_CSR, ST_ENABLE | ST_TICKINT, !0, 0, Side::Cpu);
        // From 0: reload at tick 1 (cycle 8), zero at tick 10 (cycle 80),
        // then every 10 ticks (80 cycles).
        assert_eq!(s.read(SYST_CVR, 15, Side::Cpu), Some(9));
        assert_eq!(s.systick.next_exception(), Some(80));
        s.service_systick(79);
        assert!(!s.is_pending(exc::SYSTICK));
        s.service_systick(80);
        assert!(s.is_pending(exc::SYSTICK));
        assert_eq!(s.systick.next_exception(), Some(160));
        assert_eq!(s.takeable(false, false, 0), Some(exc::SYSTICK));
        assert_eq!(s.takeable(true, false, 0), None, "PRIMASK masks it");
    }

    #[test]
    fn pendsv_by_icsr_nests_by_priority_and_prigroup_groups_subpriorities() {
        let mut s = Scs::new();
        // SHPR3: PendSV 0xF0 (lowest), SysTick 0x10.
        s.write(0xE000_ED20, 0x10F0_0000, !0, 0, Side::Cpu);
        s.write(0xE000_ED04, 1 << 28, !0, 0, Side::Cpu); // PENDSVSET
        assert_eq!(s.read(0xE000_ED04, 0, Side::Cpu).unwrap() >> 12 & 0x1FF, 14);
        assert_eq!(s.takeable(false, false, 0), Some(exc::PENDSV));
        s.enter(exc::PENDSV);
        s.set_pending(exc::SYSTICK, true);
        assert_eq!(
            s.takeable(false, false, 0),
            Some(exc::SYSTICK),
            "0x10 preempts 0xF0"
        );
        s.enter(exc::SYSTICK);
        assert_eq!(
            s.read(0xE000_ED24, 0, Side::Debugger).unwrap() & 0xC00,
            0xC00
        );
        assert_eq!(
            s.exit(exc::SYSTICK, 0),
            Err(ReturnError::ThreadWhileNested {
                from: exc::SYSTICK,
                active: exc::PENDSV
            }),
            "PendSV is still active"
        );
        assert_eq!(
            s.exit(exc::SYSTICK, exc::SVCALL),
            Err(ReturnError::IpsrMismatch {
                from: exc::SYSTICK,
                ipsr: exc::SVCALL,
                active: exc::PENDSV
            })
        );
        assert_eq!(s.read(0xE000_ED04, 0, Side::Cpu).unwrap() & 0x1FF, 15);
        assert_eq!(s.exit(exc::SYSTICK, exc::PENDSV), Ok(()));
        assert_eq!(s.current(), exc::PENDSV, "back in PendSV");
        assert_eq!(s.exit(exc::PENDSV, 0), Ok(()));
        assert_eq!(s.current(), 0);
        // PRIGROUP 7 (AIRCR needs VECTKEY): no group bits, nothing preempts.
        s.write(0xE000_ED0C, 7 << 8, !0, 0, Side::Cpu);
        assert_eq!(
            s.read(0xE000_ED0C, 0, Side::Cpu),
            Some(0xFA05_0000),
            "no key"
        );
        s.write(0xE000_ED0C, 0x05FA_0000 | 7 << 8, !0, 0, Side::Cpu);
        assert_eq!(s.read(0xE000_ED0C, 0, Side::Cpu), Some(0xFA05_0700));
        s.set_pending(exc::PENDSV, true);
        s.enter(exc::PENDSV);
        s.set_pending(exc::SYSTICK, true);
        assert_eq!(
            s.takeable(false, false, 0),
            None,
            "same group: no preemption"
        );
    }

    #[test]
    fn nvic_enable_pend_priority_and_basepri() {
        let mut s = Scs::new();
        // IRQ 56: ISER1 bit 24, IPR14 byte 0.
        s.write(0xE000_E438, 0x50, 0xFF, 0, Side::Cpu);
        s.set_line(56, true);
        assert_eq!(s.takeable(false, false, 0), None, "not enabled");
        s.write(0xE000_E104, 1 << 24, !0, 0, Side::Cpu);
        assert_eq!(s.takeable(false, false, 0), Some(16 + 56));
        assert_eq!(
            s.takeable(false, false, 0x50),
            None,
            "BASEPRI 0x50 masks 0x50"
        );
        assert_eq!(s.takeable(false, false, 0x60), Some(16 + 56));
        s.enter(16 + 56);
        assert_eq!(s.read(0xE000_ED04, 0, Side::Cpu).unwrap() & 0x1FF, 72);
        assert_eq!(s.takeable(false, false, 0), None, "active, not pending");
        s.set_line(56, false);
        assert_eq!(s.exit(16 + 56, 0), Ok(()));
        assert_eq!(s.takeable(false, false, 0), None, "line low: not re-pended");
        assert_eq!(
            s.exit(16 + 56, 0),
            Err(ReturnError::NotActive { from: 72 }),
            "not active any more"
        );
    }
}

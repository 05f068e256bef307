//! The virtual board: MCU bus, CPU, debug block and debug port, advanced in
//! virtual time by debug-port traffic.
//!
//! This module owns the core's run state (running, halted, sleeping, locked
//! up), reset, and the routing of debugger accesses between the bus and the
//! private peripheral bus. It must not know about probe-rs: the probe layer
//! above calls `dp_*`/`ap_*` with raw register addresses.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use super::clock::{Clock, Counters};
use super::cpu::{ArmagnacCpu, CoreReg, Cpu, StepOutcome};
use super::debug::{self, dfsr, DebugAction, DebugRegs};
use super::link::{DapOp, Link, LinkProfile};
use super::mcu::{BusFault, Master, Mcu, PpbPort, ScsPort, BUS_SIZE};
use super::persist::{BackingFile, PersistError};
use super::scs::{exc, ScsEffect, Side};
use std::cell::RefMut;

/// What reset the chip; decides the RCC_CSR flags (RM0090 6.3.21: the
/// reset pulse of a software or watchdog reset also drives NRST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    PowerOn,
    GpioPin,
    /// SYSRESETREQ.
    Software,
    Watchdog,
    /// The window watchdog (WWDG).
    WindowWatchdog,
    /// VECTRESET: the core only.
    Core,
}

impl ResetKind {
    fn csr_flags(self) -> Option<u32> {
        use super::stm32::rcc::{CSR_IWDGRSTF, CSR_PINRSTF, CSR_SFTRSTF, CSR_WWDGRSTF};
        match self {
            Self::PowerOn | Self::Core => None,
            Self::GpioPin => Some(CSR_PINRSTF),
            Self::Software => Some(CSR_SFTRSTF | CSR_PINRSTF),
            Self::Watchdog => Some(CSR_IWDGRSTF | CSR_PINRSTF),
            Self::WindowWatchdog => Some(CSR_WWDGRSTF | CSR_PINRSTF),
        }
    }
}

/// SWD acknowledge other than OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    Fault,
    NoAck,
}

pub const DPIDR: u32 = 0x2BA0_1477;
pub const AHB_AP_IDR: u32 = 0x2477_0011;

/// CTRL/STAT bits.
mod ctrl {
    pub const ORUNDETECT: u32 = 1 << 0;
    pub const STICKYORUN: u32 = 1 << 1;
    pub const STICKYCMP: u32 = 1 << 4;
    pub const STICKYERR: u32 = 1 << 5;
    pub const WDATAERR: u32 = 1 << 7;
    pub const CDBGPWRUPREQ: u32 = 1 << 28;
    pub const CSYSPWRUPREQ: u32 = 1 << 30;
}

#[derive(Debug, Default, Clone)]
struct DebugPort {
    /// The writable part of CTRL/STAT (requests, ORUNDETECT, mask fields).
    ctrl: u32,
    sticky: u32,
    select: u32,
    rdbuff: u32,
    csw: u32,
    tar: u32,
}

#[derive(Debug, Default, Clone, Copy)]
struct CoreState {
    halted: bool,
    lockup: bool,
    sleeping: bool,
    /// S_RESET_ST and S_RETIRE_ST: sticky until DHCSR is read.
    reset_st: bool,
    retire_st: bool,
    /// One instruction to execute before halting (C_STEP).
    step_pending: bool,
}

/// Host time that catching up may spend in one go while the core runs, and
/// the instruction rate it assumes.
const CATCH_UP_CAP: u64 = 40_000;
const CATCH_UP_PER_MS: u64 = 2_000;

/// Registers that decide what a loop does next: r0-r12, SP, LR, xPSR.
type LoopRegs = [u32; 16];

/// A candidate wait loop: the state when the core was last at `head`.
#[derive(Debug, Clone, Copy)]
struct LoopWatch {
    head: u32,
    regs: LoopRegs,
    writes: u64,
    impure: u64,
    instructions: u64,
    cycles: u64,
}

/// Backward branches longer than this are not taken as loop heads.
const MAX_LOOP_BYTES: u32 = 256;

/// What the board did between two summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub link: LinkProfile,
    pub virtual_ps: u64,
    pub counters: Counters,
    pub chip_busy_ps: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counters;
        let ms = |ps: u64| ps as f64 / 1e9;
        write!(
            f,
            "link {}, virtual time {:.3} ms, {} round trips ({:.3} ms), {} SWD transactions, \
             {} instructions executed, {} skipped by fast-forward, {} SPI bytes, chip busy {:.3} ms, \
             {} 16-bit AP transfers",
            self.link,
            ms(self.virtual_ps),
            c.round_trips,
            ms(c.link_wait_ps),
            c.swd_transactions,
            c.instructions,
            c.ff_instructions,
            c.spi_bytes,
            ms(self.chip_busy_ps),
            c.halfword_transfers
        )
    }
}

/// The virtual STM32F407VE board: the emulated core and its debug port,
/// the MCU's peripherals and the external flash, on one virtual clock.
/// Shared through [`super::SimBoard`].
pub struct McuBoard {
    mcu: Rc<RefCell<Mcu>>,
    cpu: Box<dyn Cpu>,
    core: CoreState,
    dp: DebugPort,
    breakpoints: Vec<u32>,
    /// Why the core locked up, for tracing and tests.
    fault: Option<String>,
    /// Times the core entered the halted state (any reason), for tests.
    halts: u64,
    last_host: Instant,
    files: Option<(BackingFile, BackingFile)>,
    last_flush: Instant,
    nrst: bool,
    link: Link,
    /// Catch up with host time between transactions (interactive use only).
    realtime: bool,
    /// Time, counters and chip BUSY time at the previous summary.
    summary_base: (u64, Counters, u64),
    /// Jump over provable wait loops (idle fast-forward).
    fast_forward: bool,
    /// PC of the instruction executed last, and the loop being watched.
    last_pc: u32,
    watch: Option<LoopWatch>,
    /// Set while `run_for` steps the core: how far a skip may go.
    ff_limit: Option<u64>,
    /// Injected link faults: debugger reads of this word answer FAULT this
    /// many more times ([`McuBoard::inject_read_fault`]).
    read_faults: Option<(u32, u32)>,
}

// SAFETY: the armagnac processor and the bus hold `Rc`s, which are `!Send`
// because clones could be shared across threads. Every clone of those `Rc`s
// lives inside this `McuBoard` (the processor, its SCS and MPU, and `mcu`) and
// none is ever handed out, so moving the whole board to another thread moves
// every clone together. Access is serialised by the `Mutex` in `SimBoard`.
unsafe impl Send for McuBoard {}

impl McuBoard {
    pub fn new(mcu: Mcu, files: Option<(BackingFile, BackingFile)>) -> Self {
        let mcu = Rc::new(RefCell::new(mcu));
        let windows: Vec<super::cpu::Window> =
            [(0xE000_0000u32, 0xE000u32), (0xE004_0000, 0xC_0000)]
                .into_iter()
                .map(|(base, size)| {
                    let port = PpbPort {
                        mcu: mcu.clone(),
                        base,
                        size,
                    };
                    (
                        base,
                        Rc::new(RefCell::new(port))
                            as Rc<RefCell<dyn armagnac::memory::MemoryInterface>>,
                    )
                })
                .collect();
        let scs_port: super::scs_access::Port = Rc::new(RefCell::new(ScsPort { mcu: mcu.clone() }));
        let cpu = Box::new(ArmagnacCpu::new(
            mcu.clone(),
            BUS_SIZE,
            windows,
            Some(scs_port),
        ));
        mcu.borrow_mut()
            .scs
            .share_unalign_trp(cpu.unalign_trp_flag());
        let mut board = Self {
            mcu,
            cpu,
            core: CoreState::default(),
            dp: DebugPort {
                csw: 0x0300_0040,
                ..Default::default()
            },
            breakpoints: Vec::new(),
            fault: None,
            halts: 0,
            last_host: Instant::now(),
            files,
            last_flush: Instant::now(),
            nrst: false,
            link: Link::new(LinkProfile::Ideal),
            realtime: false,
            summary_base: (0, Counters::default(), 0),
            fast_forward: true,
            last_pc: 0,
            watch: None,
            ff_limit: None,
            read_faults: None,
        };
        board.power_on_reset();
        board
    }

    fn dbg(&self) -> RefMut<'_, DebugRegs> {
        RefMut::map(self.mcu.borrow_mut(), |m| &mut m.dbg)
    }

    pub fn mcu(&self) -> std::cell::RefMut<'_, Mcu> {
        self.mcu.borrow_mut()
    }

    pub fn counters(&self) -> Counters {
        self.mcu.borrow().clock.counters
    }

    pub fn now(&self) -> u64 {
        self.mcu.borrow().clock.now()
    }

    pub fn set_swd_hz(&mut self, hz: u64) {
        self.mcu.borrow_mut().clock.set_swd_hz(hz);
    }

    /// Charge the link profile's round trips for one probe call: the host
    /// waits that long, and a running core keeps running meanwhile.
    pub fn set_link(&mut self, profile: LinkProfile, realtime: bool) {
        self.link = Link::new(profile);
        self.realtime = realtime;
    }

    /// Idle fast-forward on (the default) or off.
    pub fn set_fast_forward(&mut self, on: bool) {
        self.fast_forward = on;
        self.watch = None;
    }

    pub fn link_profile(&self) -> LinkProfile {
        self.link.profile()
    }

    /// Account one `RawDapAccess` call before it executes: the round trips
    /// it forces pass as virtual time, during which a running core runs.
    pub fn charge_link(&mut self, op: DapOp) {
        let trips = self.link.charge(op);
        if trips == 0 {
            return;
        }
        let ps = trips * self.link.profile().round_trip_ps();
        {
            let mut m = self.mcu.borrow_mut();
            m.clock.counters.round_trips += trips;
            m.clock.counters.link_wait_ps += ps;
        }
        self.run_for(ps);
    }

    /// What happened since the previous summary, logged as one line
    /// (target `sim`, level info) headed by `what`.
    pub fn summary(&mut self, what: &str) -> Summary {
        let (t, c, busy) = {
            let m = self.mcu.borrow();
            (m.now(), m.clock.counters, m.chip.counters().busy_ps)
        };
        let (t0, c0, busy0) = std::mem::replace(&mut self.summary_base, (t, c, busy));
        let s = Summary {
            link: self.link.profile(),
            virtual_ps: t - t0,
            counters: c.since(&c0),
            chip_busy_ps: busy - busy0,
        };
        tracing::info!(target: "sim", "{what}: {s}");
        s
    }

    /// The AP register (bank | A[3:2]) an AP access at `addr` refers to.
    pub fn ap_reg(&self, addr: u8) -> u8 {
        self.ap_register(addr).1
    }

    pub fn is_halted(&self) -> bool {
        self.core.halted
    }

    /// How often the core has entered the halted state since power-on
    /// (debug request, step, breakpoint, vector catch, watchpoint).
    pub fn halts(&self) -> u64 {
        self.halts
    }

    /// Why the core stopped executing on its own (emulator fault), if it did.
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    fn running(&self) -> bool {
        !(self.core.halted || self.core.lockup || self.core.sleeping || self.nrst)
    }

    /// The nRESET pin: held low, the system stays in reset; released, it
    /// restarts (debug registers survive, as with STM32's NRST).
    pub fn set_nrst(&mut self, asserted: bool) {
        if asserted {
            self.nrst = true;
        } else if self.nrst {
            self.nrst = false;
            self.reset(ResetKind::GpioPin);
        }
    }

    /// A pulse on nRESET.
    pub fn pin_reset(&mut self) {
        self.reset(ResetKind::GpioPin);
    }

    fn power_on_reset(&mut self) {
        *self.dbg() = DebugRegs::default();
        self.reset(ResetKind::PowerOn);
        self.core.reset_st = true;
    }

    /// SYSRESETREQ (`system`) or VECTRESET: the core restarts from the
    /// vector table; a system reset also resets the peripherals.
    fn reset(&mut self, kind: ResetKind) {
        if kind != ResetKind::Core {
            self.mcu.borrow_mut().reset_peripherals(kind.csr_flags());
            self.dbg().system_reset();
        }
        let (sp, pc) = {
            let mut m = self.mcu.borrow_mut();
            (
                m.read(0, 4, Master::Debugger).unwrap_or(0),
                m.read(4, 4, Master::Debugger).unwrap_or(0),
            )
        };
        self.cpu.reset(sp, pc);
        {
            let mut m = self.mcu.borrow_mut();
            m.stall_until = None;
            m.reset_requested = false;
            m.scs.reset();
            m.refresh_timer_due();
        }
        self.watch = None;
        self.core = CoreState {
            reset_st: true,
            ..CoreState::default()
        };
        self.fault = None;
        self.dbg().c_halt = false;
        self.refresh_breakpoints();
        let catch = {
            let d = self.dbg();
            d.c_debugen && d.demcr & debug::demcr::VC_CORERESET != 0
        };
        if catch {
            self.halt(dfsr::VCATCH);
        }
    }

    fn halt(&mut self, reason: u32) {
        self.halts += u64::from(!self.core.halted);
        self.core.halted = true;
        self.core.lockup = false;
        self.core.sleeping = false;
        self.core.step_pending = false;
        // A halted core waits for nothing.
        self.mcu.borrow_mut().stall_until = None;
        self.dbg().c_halt = true;
        self.dbg().dfsr |= reason;
        self.flush_if_due(true);
    }

    /// The core locks up (ARMv7-M B1.5.15). Logged at info: the product
    /// reports a lockup the user meets (at connect, at a stop) with its
    /// hint, and a blank board locks up at every reset.
    fn lockup(&mut self, why: String) {
        tracing::info!(target: "sim", "core locked up: {why}");
        self.fault = Some(why);
        self.core.lockup = true;
    }

    fn refresh_breakpoints(&mut self) {
        let bps: Vec<u32> = self.dbg().fpb_breakpoints().collect();
        self.breakpoints = bps;
        let watches = self.dbg().data_watches();
        let halting = self.dbg().c_debugen;
        let mut m = self.mcu.borrow_mut();
        m.set_watches(if halting { watches } else { [None; 4] });
    }

    /// Execute one instruction if the core runs. Returns whether it still runs.
    fn step_one(&mut self) -> bool {
        if self.core.sleeping && self.wakes() {
            self.core.sleeping = false;
        }
        if !self.running() {
            return false;
        }
        if let Some(n) = self.exception_to_take() {
            return self.take_exception(n);
        }
        let pc = self.cpu.read_reg(CoreReg::Pc);
        if let Some(limit) = self.ff_limit {
            if self.skip_wait_loop(pc, limit) {
                return true;
            }
        }
        if !self.breakpoints.is_empty() && self.breakpoints.contains(&pc) {
            self.halt(dfsr::BKPT);
            return false;
        }
        if !fetchable(pc) {
            // Nothing is fetched: peripheral reads have side effects.
            self.lockup(unfetchable(pc));
            return false;
        }
        self.mark_fetch(pc);
        let (outcome, cycles) = self.cpu.step();
        let (debugen, reset_requested, broken) = {
            let mut m = self.mcu.borrow_mut();
            m.fetch = None;
            let cycles = cycles + m.wait_states(pc);
            m.clock.retire(cycles);
            m.service_timers();
            (
                m.dbg.c_debugen,
                std::mem::take(&mut m.reset_requested),
                m.strict.lockup.take(),
            )
        };
        if let Some(why) = broken {
            self.lockup(why);
            return false;
        }
        self.core.retire_st = true;
        if reset_requested {
            self.reset(ResetKind::Software);
            return self.running();
        }
        match outcome {
            StepOutcome::Retired => {}
            StepOutcome::Svc => self.mcu.borrow_mut().scs.set_pending(exc::SVCALL, true),
            StepOutcome::ExceptionReturn { from } => {
                let ipsr = (self.cpu.read_reg(CoreReg::Xpsr) & 0x1FF) as u16;
                let returned = self.mcu.borrow_mut().scs.exit(from, ipsr);
                self.watch = None;
                if let Err(e) = returned {
                    self.lockup(e.to_string());
                    return false;
                }
            }
            StepOutcome::Breakpoint if debugen => {
                self.halt(dfsr::BKPT);
                return false;
            }
            StepOutcome::Breakpoint => {
                // Without halting debug a BKPT escalates to HardFault; the
                // emulator has no reliable exception path, so lock up.
                self.lockup(format!("BKPT at {pc:#010x} with debug disabled"));
                return false;
            }
            StepOutcome::Sleep => self.core.sleeping = true,
            StepOutcome::ResetRequest => {
                self.reset(ResetKind::Software);
                return self.running();
            }
            StepOutcome::Fault(why) => {
                let why = match self.mcu.borrow_mut().fault_why.take() {
                    Some(rule) => format!("{rule}: {why}"),
                    None => why,
                };
                self.lockup(why);
                // A single step ends in debug state even when it faults;
                // entering debug state leaves lockup (the next run relocks).
                if self.core.step_pending {
                    self.halt(dfsr::HALTED);
                }
                return false;
            }
        }
        let hit = self.mcu.borrow_mut().watch_hit.take();
        if let Some((i, _addr)) = hit {
            self.dbg().dwt_matched(i);
            self.halt(dfsr::DWTTRAP);
            return false;
        }
        if self.core.step_pending {
            self.halt(dfsr::HALTED);
            return false;
        }
        self.running()
    }

    /// The exception the core takes before its next instruction, if any:
    /// the highest-priority pending one above the execution priority
    /// (PRIMASK, FAULTMASK, BASEPRI and active exceptions). Halting debug
    /// with DHCSR.C_MASKINTS masks them all (only SysTick, PendSV, SVCall
    /// and interrupts are ever pending here).
    fn exception_to_take(&self) -> Option<u16> {
        let m = self.mcu.borrow();
        if !m.scs.any_pending() || m.dbg.c_debugen && m.dbg.c_maskints {
            return None;
        }
        let (primask, faultmask, basepri) = self.cpu.masks();
        m.scs.takeable(primask, faultmask, basepri)
    }

    /// Whether a pending exception ends WFI/WFE sleep (it would preempt
    /// were PRIMASK clear, ARMv7-M B1.5.19).
    fn wakes(&self) -> bool {
        let m = self.mcu.borrow();
        if !m.scs.any_pending() {
            return false;
        }
        let (_, faultmask, basepri) = self.cpu.masks();
        m.scs.wakes(faultmask, basepri)
    }

    /// Enter exception `n` through its vector (VTOR + 4n). Entry takes 12
    /// core cycles (Cortex-M4 TRM 3.3.1: interrupt latency) and is a step
    /// of its own: a single step that takes an exception halts on the
    /// handler's first instruction.
    fn take_exception(&mut self, n: u16) -> bool {
        const ENTRY_CYCLES: u64 = 12;
        let (vector, stkalign) = {
            let mut m = self.mcu.borrow_mut();
            let at = m.dbg.vtor.wrapping_add(4 * n as u32);
            (
                m.read(at, 4, Master::Debugger).unwrap_or(0),
                m.scs.stkalign(),
            )
        };
        self.watch = None;
        if let Err(why) = self.cpu.exception_entry(n, vector, stkalign) {
            self.lockup(why);
            return false;
        }
        {
            let mut m = self.mcu.borrow_mut();
            m.scs.enter(n);
            // A skipped poll wait ends here; the loop polls again after the
            // handler returns.
            m.stall_until = None;
            m.clock.spend(ENTRY_CYCLES);
            m.service_timers();
        }
        if self.core.step_pending {
            self.halt(dfsr::HALTED);
            return false;
        }
        true
    }

    /// Tell the bus which bytes the next instruction's fetch reads, so data
    /// watchpoints ignore them. Only while watches are armed (it costs a
    /// read), and only below the peripherals, whose reads have side effects.
    fn mark_fetch(&mut self, pc: u32) {
        let mut m = self.mcu.borrow_mut();
        if pc >= 0x4000_0000 || !m.watches_armed() {
            return;
        }
        let hw = m.read(pc & !1, 2, Master::Debugger).unwrap_or(0);
        // First halfword 0b11101/0b11110/0b11111 starts a 32-bit encoding.
        let len = if hw >> 11 >= 0b11101 { 4 } else { 2 };
        m.fetch = Some(pc..pc.wrapping_add(len));
    }

    /// Let `ps` of virtual time pass (lockstep with SWD traffic and USB
    /// round trips): a running core executes meanwhile; the watchdog counts
    /// and resets the chip when it runs out.
    fn run_for(&mut self, ps: u64) {
        let target = self.now().saturating_add(ps);
        loop {
            let start = self.now();
            self.sync_watchdog();
            self.service_due_dma();
            self.mcu.borrow_mut().service_timers();
            let mut limit = self.horizon(target);
            self.ff_limit = self.fast_forward.then_some(limit);
            let mut epoch = self.mcu.borrow().dma_epoch;
            while self.now() < limit {
                // A skipped poll wait: time passes, nothing executes, and
                // never past `limit` (the next transaction keeps its time).
                // An exception interrupts the poll loop, as on silicon.
                if self.running() && self.exception_to_take().is_none() && self.stalled(limit) {
                    continue;
                }
                if !self.step_one() {
                    break;
                }
                // A write that started DMA or SPI traffic brings the next
                // DMA event closer: serve it on time (no lost RX bytes).
                // So does a SysTick started or reprogrammed meanwhile.
                let (now_epoch, due) = {
                    let m = self.mcu.borrow();
                    (m.dma_epoch, m.timer_due)
                };
                if now_epoch != epoch || due < limit {
                    epoch = now_epoch;
                    limit = limit.min(self.horizon(target));
                    self.ff_limit = self.fast_forward.then_some(limit);
                }
            }
            self.ff_limit = None;
            // A halt may have frozen the watchdog: its deadline moved.
            self.sync_watchdog();
            let now = self.now();
            if !self.running() {
                let limit = self.horizon(target);
                if now < limit {
                    self.mcu.borrow_mut().clock.idle(limit - now);
                }
            }
            let now = self.now();
            if self.mcu.borrow().iwdg.expired(now) {
                tracing::info!(target: "sim", "IWDG expired: chip reset");
                self.reset(ResetKind::Watchdog);
            } else if self.mcu.borrow().wwdg.expired(now) {
                tracing::info!(target: "sim", "WWDG expired: chip reset");
                self.reset(ResetKind::WindowWatchdog);
            } else if now >= target || now == start {
                break;
            }
        }
    }

    /// While the core waits out a skipped poll (`Mcu::stall_until`): let
    /// time pass up to that end or `limit`, whichever is first; true while
    /// the wait is not over.
    fn stalled(&mut self, limit: u64) -> bool {
        let mut m = self.mcu.borrow_mut();
        let Some(until) = m.stall_until else {
            return false;
        };
        let now = m.now();
        if now >= until {
            m.stall_until = None;
            return false;
        }
        m.clock.skip_to(until.min(limit));
        true
    }

    /// Idle fast-forward, checked before the instruction at `pc` executes;
    /// returns whether the skip reached `limit` (then nothing executes).
    ///
    /// A short backward branch makes its target a loop head. When the core
    /// is back at the head with the same registers, no CPU write and no
    /// impure read (a peripheral other than DMA2/CRC, the PPB) in between,
    /// and every value the iteration read (its instruction fetches
    /// included) still reads the same, the iteration was a fixed point:
    /// the next one starts from the same state and reads the same values,
    /// so it is identical, and so is every one after it until something
    /// outside the core changes what it reads. That happens only at a
    /// debug-port transaction or a DMA event (there are no interrupts), so
    /// whole iterations up to `limit` (the next transaction or round trip,
    /// DMA event or watchdog expiry) are charged as CPU time without being
    /// emulated, and emulation resumes from the head for the rest: the same
    /// end state and time as emulating them all. After an event the
    /// iteration that spans it is checked the same way (its reads against
    /// the values now), so a wait that DMA or the debugger does not
    /// disturb is skipped again after one emulated iteration.
    fn skip_wait_loop(&mut self, pc: u32, limit: u64) -> bool {
        let from = std::mem::replace(&mut self.last_pc, pc);
        let at_head = self.watch.is_some_and(|w| w.head == pc);
        // `b .` branches to itself.
        let backward = pc <= from && from - pc <= MAX_LOOP_BYTES;
        if !at_head && !backward {
            return false;
        }
        let here = self.loop_state(pc);
        let previous = self.watch.replace(here);
        let mut m = self.mcu.borrow_mut();
        let Some(w) = previous.filter(|w| w.head == pc) else {
            m.read_log.restart(true);
            return false;
        };
        let (instructions, cycles) = (here.instructions - w.instructions, here.cycles - w.cycles);
        let fixed_point = here.writes == w.writes
            && here.impure == w.impure
            && here.regs == w.regs
            && cycles != 0
            && !self.core.step_pending
            && m.log_still_holds();
        m.read_log.restart(true);
        if !fixed_point {
            return false;
        }
        let n = m.clock.cycles_until(limit) / cycles;
        if n == 0 {
            return false;
        }
        m.clock.fast_forward(n, instructions, cycles);
        // Whole iterations end at or before `limit` (cycles_until rounds
        // down); at `limit` emulation would stop here too.
        let reached = m.now() >= limit;
        drop(m);
        if let Some(w) = self.watch.as_mut() {
            w.cycles += n * cycles;
        }
        reached
    }

    fn loop_state(&self, head: u32) -> LoopWatch {
        let regs = self.cpu.loop_regs();
        let m = self.mcu.borrow();
        LoopWatch {
            head,
            regs,
            writes: m.cpu_writes,
            impure: m.impure_reads,
            instructions: m.clock.counters.instructions,
            cycles: m.clock.retired_cycles(),
        }
    }

    /// The earliest of `target`, the watchdog's expiry and the next DMA
    /// event still ahead.
    fn horizon(&self, target: u64) -> u64 {
        let m = self.mcu.borrow();
        let now = m.now();
        [
            m.iwdg.deadline(),
            m.wwdg.deadline(),
            m.next_dma_event().filter(|&t| t > now),
            Some(m.timer_due).filter(|&t| t > now && t != u64::MAX),
        ]
        .into_iter()
        .flatten()
        .fold(target, u64::min)
    }

    /// Let DMA move what its requests allow once their time has come.
    fn service_due_dma(&mut self) {
        let mut m = self.mcu.borrow_mut();
        let now = m.now();
        if m.next_dma_event().is_some_and(|t| t <= now) {
            m.service_dma();
        }
    }

    /// The IWDG and the WWDG are frozen only while the core is halted in
    /// debug with DBGMCU_APB1_FZ.DBG_IWDG_STOP / DBG_WWDG_STOP set (RM0090
    /// 38.16.4).
    fn sync_watchdog(&mut self) {
        const DBG_WWDG_STOP: u32 = 1 << 11;
        const DBG_IWDG_STOP: u32 = 1 << 12;
        let fz = self.dbg().dbgmcu_apb1_fz;
        let halted = self.core.halted;
        let mut m = self.mcu.borrow_mut();
        let now = m.now();
        m.iwdg.set_frozen(halted && fz & DBG_IWDG_STOP != 0, now);
        m.wwdg_debug_frozen = halted && fz & DBG_WWDG_STOP != 0;
        m.sync_wwdg();
    }

    /// Run up to `n` instructions (free-running catch-up).
    pub fn run_instructions(&mut self, n: u64) {
        for _ in 0..n {
            if !self.step_one() {
                break;
            }
        }
    }

    /// Charge one SWD transaction: the core advances with the wire time, and
    /// (only on a realtime board) with the host time since the last
    /// transaction while it runs freely.
    fn transaction(&mut self) {
        let d = {
            let mut m = self.mcu.borrow_mut();
            m.clock.counters.swd_transactions += 1;
            m.clock.counters.swd_bits += super::clock::SWD_BITS_PER_TRANSACTION;
            m.clock.swd_transaction_ps()
        };
        if self.realtime && self.running() {
            let elapsed_ms = self.last_host.elapsed().as_micros() as u64 / 1000;
            let n = (elapsed_ms * CATCH_UP_PER_MS).min(CATCH_UP_CAP);
            self.run_instructions(n);
        }
        self.run_for(d);
        if self.realtime {
            self.last_host = Instant::now();
        }
        self.flush_if_due(false);
    }

    // ---- debug port -------------------------------------------------------

    fn powered(&self) -> bool {
        self.dp.ctrl & ctrl::CDBGPWRUPREQ != 0
    }

    /// CTRL/STAT's sticky flags (STICKYORUN, STICKYCMP, STICKYERR,
    /// WDATAERR) without a transaction: a wire-level DP decides its ACK from
    /// them before the access (ADIv5 B4.2.4).
    pub fn dp_sticky(&self) -> u32 {
        self.dp.sticky
    }

    /// A write's data phase failed its parity check: WDATAERR (ADIv5
    /// B4.2.3); the write is not carried out.
    pub fn set_wdataerr(&mut self) {
        self.dp.sticky |= ctrl::WDATAERR;
    }

    /// A DP register read (`addr` is A[3:2] << 2).
    pub fn dp_read(&mut self, addr: u8) -> Result<u32, Ack> {
        self.transaction();
        Ok(match addr & 0xC {
            0x0 => DPIDR,
            0x4 => match self.dp.select & 0xF {
                0 => {
                    // ACKs mirror the power-up requests.
                    let req = self.dp.ctrl;
                    req | (req & ctrl::CDBGPWRUPREQ) << 1
                        | (req & ctrl::CSYSPWRUPREQ) << 1
                        | (req & (1 << 26)) << 1
                        | self.dp.sticky
                }
                1 => 0, // DLCR
                _ => 0,
            },
            0x8 => 0, // RESEND: nothing to resend at this layer
            _ => self.dp.rdbuff,
        })
    }

    pub fn dp_write(&mut self, addr: u8, value: u32) -> Result<(), Ack> {
        self.transaction();
        match addr & 0xC {
            0x0 => {
                // ABORT
                if value & (1 << 1) != 0 {
                    self.dp.sticky &= !ctrl::STICKYCMP;
                }
                if value & (1 << 2) != 0 {
                    self.dp.sticky &= !ctrl::STICKYERR;
                }
                if value & (1 << 3) != 0 {
                    self.dp.sticky &= !ctrl::WDATAERR;
                }
                if value & (1 << 4) != 0 {
                    self.dp.sticky &= !ctrl::STICKYORUN;
                }
            }
            // CTRL/STAT lives in DP bank 0; DLCR (bank 1) is not modelled.
            0x4 if self.dp.select & 0xF == 0 => {
                self.dp.ctrl = value & 0x5400_0F0D | (value & ctrl::ORUNDETECT);
            }
            0x8 => self.dp.select = value,
            _ => {}
        }
        Ok(())
    }

    /// The AP register an access refers to: bank from SELECT, A[3:2] from
    /// the request.
    fn ap_register(&self, addr: u8) -> (u8, u8) {
        let apsel = (self.dp.select >> 24) as u8;
        let reg = (self.dp.select & 0xF0) as u8 | (addr & 0xC);
        (apsel, reg)
    }

    fn ap_guard(&mut self) -> Result<(), Ack> {
        if self.dp.sticky & ctrl::STICKYERR != 0 {
            return Err(Ack::Fault);
        }
        if !self.powered() {
            self.dp.sticky |= ctrl::STICKYERR;
            return Err(Ack::Fault);
        }
        Ok(())
    }

    pub fn ap_read(&mut self, addr: u8) -> Result<u32, Ack> {
        self.transaction();
        self.ap_guard()?;
        let (apsel, reg) = self.ap_register(addr);
        if apsel != 0 {
            self.dp.rdbuff = 0;
            return Ok(0);
        }
        self.count_halfword_transfer(reg);
        let v = match reg {
            0x00 => self.dp.csw | 0x40,
            0x04 => self.dp.tar,
            0x0C => {
                let mut word = 0;
                for _ in 0..self.drw_units() {
                    let (tar, size) = (self.dp.tar, self.csw_size());
                    let v = self.debugger_read(tar, size).inspect_err(|_| {
                        self.dp.sticky |= ctrl::STICKYERR;
                    })?;
                    self.mcu.borrow_mut().clock.counters.ap_bytes += size as u64;
                    self.increment_tar(size);
                    word |= v << ((tar & 3) * 8);
                }
                word
            }
            0x10..=0x1C => {
                let a = (self.dp.tar & !0xF) | (reg as u32 & 0xC);
                let v = self.debugger_read(a, 4).inspect_err(|_| {
                    self.dp.sticky |= ctrl::STICKYERR;
                })?;
                self.mcu.borrow_mut().clock.counters.ap_bytes += 4;
                v
            }
            0xF4 => 0, // CFG: little endian
            0xF8 => debug::ROM_TABLE | 0b11,
            0xFC => AHB_AP_IDR,
            _ => 0,
        };
        self.dp.rdbuff = v;
        Ok(v)
    }

    pub fn ap_write(&mut self, addr: u8, value: u32) -> Result<(), Ack> {
        self.transaction();
        self.ap_guard()?;
        let (apsel, reg) = self.ap_register(addr);
        if apsel != 0 {
            return Ok(());
        }
        self.count_halfword_transfer(reg);
        match reg {
            0x00 => self.dp.csw = value & 0xFF00_0F37,
            0x04 => self.dp.tar = value,
            0x0C => {
                for _ in 0..self.drw_units() {
                    let (tar, size) = (self.dp.tar, self.csw_size());
                    let v = value >> ((tar & 3) * 8);
                    self.debugger_write(tar, size, v).inspect_err(|_| {
                        self.dp.sticky |= ctrl::STICKYERR;
                    })?;
                    self.mcu.borrow_mut().clock.counters.ap_bytes += size as u64;
                    self.increment_tar(size);
                }
            }
            0x10..=0x1C => {
                let a = (self.dp.tar & !0xF) | (reg as u32 & 0xC);
                self.debugger_write(a, 4, value).inspect_err(|_| {
                    self.dp.sticky |= ctrl::STICKYERR;
                })?;
                self.mcu.borrow_mut().clock.counters.ap_bytes += 4;
            }
            _ => {}
        }
        Ok(())
    }

    /// A data transfer (DRW or BD0-3) with CSW.Size = halfword.
    fn count_halfword_transfer(&mut self, reg: u8) {
        if matches!(reg, 0x0C..=0x1C) && self.dp.csw & 7 == 1 {
            self.mcu.borrow_mut().clock.counters.halfword_transfers += 1;
        }
    }

    /// Transfers one DRW access makes: with CSW.AddrInc = packed (0b10) and
    /// a byte or halfword size, 32 / size of them, each at TAR in TAR's byte
    /// lane, TAR incrementing after each (ADIv5.0 C2.2.7; the Cortex-M4
    /// AHB-AP supports packed transfers, and OpenOCD uses them for 8- and
    /// 16-bit blocks, unaligned ones included).
    fn drw_units(&self) -> u32 {
        let size = self.csw_size();
        if self.dp.csw & 0x30 == 0x20 {
            4 / size
        } else {
            1
        }
    }

    fn csw_size(&self) -> u32 {
        match self.dp.csw & 7 {
            0 => 1,
            1 => 2,
            _ => 4,
        }
    }

    /// Auto-increment changes TAR[11:0] only: the Cortex-M3/M4 AHB-AP wraps
    /// within 4 KiB (ADIv5 only guarantees 1 KiB; OpenOCD relies on the
    /// Cortex-M4's 4 KiB and rewrites TAR only at 4 KiB boundaries).
    fn increment_tar(&mut self, size: u32) {
        if self.dp.csw & 0x30 != 0 {
            let t = self.dp.tar;
            self.dp.tar = (t & !0xFFF) | (t.wrapping_add(size) & 0xFFF);
        }
    }

    // ---- memory as the debugger sees it ------------------------------------

    /// Make the next `times` debugger reads of the word at `addr` answer
    /// FAULT, as a bus error or a glitch on the probe link would: tests
    /// use it to fail a debugger's sequence at a chosen step. Reads of
    /// other addresses and all writes are unaffected.
    pub fn inject_read_fault(&mut self, addr: u32, times: u32) {
        self.read_faults = (times > 0).then_some((addr & !3, times));
    }

    /// A debugger read of `size` bytes at `addr`, value right-aligned.
    pub fn debugger_read(&mut self, addr: u32, size: u32) -> Result<u32, Ack> {
        if let Some((at, left)) = &mut self.read_faults {
            if *at == addr & !3 {
                *left -= 1;
                if *left == 0 {
                    self.read_faults = None;
                }
                return Err(Ack::Fault);
            }
        }
        if addr < BUS_SIZE {
            return self
                .mcu
                .borrow_mut()
                .read(addr, size, Master::Debugger)
                .map_err(|_: BusFault| Ack::Fault);
        }
        let word = self.ppb_read(addr & !3)?;
        let v = word >> ((addr & 3) * 8);
        Ok(match size {
            1 => v & 0xFF,
            2 => v & 0xFFFF,
            _ => v,
        })
    }

    pub fn debugger_write(&mut self, addr: u32, size: u32, value: u32) -> Result<(), Ack> {
        if addr < BUS_SIZE {
            // A loop that reads what changed sees it in its read log.
            let mut m = self.mcu.borrow_mut();
            let done = m.write(addr, size, value, Master::Debugger);
            if let Some(why) = m.fault_why.take() {
                tracing::warn!(target: "sim", "debugger write faulted: {why}");
            }
            return done.map_err(|_| Ack::Fault);
        }
        // Debug registers (halt, breakpoints, watchpoints, core registers)
        // changed under the core: a loop seen so far proves nothing.
        self.watch = None;
        // Sub-word writes to the PPB are merged into the register word.
        let word = if size == 4 {
            value
        } else {
            let old = self.ppb_read(addr & !3).unwrap_or(0);
            let shift = (addr & 3) * 8;
            let mask = if size == 1 { 0xFF } else { 0xFFFF } << shift;
            (old & !mask) | ((value << shift) & mask)
        };
        self.ppb_write(addr & !3, word)
    }

    fn ppb_read(&mut self, addr: u32) -> Result<u32, Ack> {
        let cycles = self.mcu.borrow().cycle_time();
        if addr == debug::DHCSR {
            let control = self.mcu.borrow().dbg.dhcsr_control();
            let c = &mut self.core;
            let v = control
                | (c.halted as u32) << 1 // C_HALT reads 1 in debug state
                | 1 << 16 // S_REGRDY: transfers complete at once
                | (c.halted as u32) << 17
                | (c.sleeping as u32) << 18
                | (c.lockup as u32) << 19
                | (c.retire_st as u32) << 24
                | (c.reset_st as u32) << 25;
            c.retire_st = false;
            c.reset_st = false;
            return Ok(v);
        }
        let v = self.dbg().read(addr, cycles);
        if let Some(v) = v {
            self.dbg().clear_matched_on_read(addr);
            return Ok(v);
        }
        match addr {
            // The SCS model the CPU sees too; unmodelled words read as zero.
            0xE000_E000..=0xE000_EFFF => Ok(self
                .mcu
                .borrow_mut()
                .scs
                .read(addr, cycles, Side::Debugger)
                .unwrap_or(0)),
            _ => Err(Ack::Fault),
        }
    }

    fn ppb_write(&mut self, addr: u32, value: u32) -> Result<(), Ack> {
        let cycles = self.mcu.borrow().cycle_time();
        let action = self.dbg().write(addr, value, cycles);
        let Some(action) = action else {
            if !(0xE000_E000..=0xE000_EFFF).contains(&addr) {
                return Err(Ack::Fault);
            }
            // The SCS model the CPU writes too (AIRCR's resets among it).
            let effect = {
                let mut m = self.mcu.borrow_mut();
                let effect = m.scs.write(addr, value, !0, cycles, Side::Debugger);
                m.refresh_timer_due();
                effect
            };
            match effect {
                Some(ScsEffect::SystemReset) => self.reset(ResetKind::Software),
                Some(ScsEffect::CoreReset) => self.reset(ResetKind::Core),
                Some(ScsEffect::None) | None => return Ok(()),
            }
            self.refresh_breakpoints();
            return Ok(());
        };
        match action {
            DebugAction::None | DebugAction::ForwardToCore => {}
            DebugAction::Halt => {
                if !self.core.halted {
                    self.halt(dfsr::HALTED);
                }
            }
            DebugAction::Resume => {
                if self.core.halted {
                    self.core.halted = false;
                    let step = self.dbg().c_step;
                    self.core.step_pending = step;
                }
            }
            DebugAction::RegisterTransfer { regsel, write } => {
                if let Some(reg) = super::cpu::CoreReg::from_regsel(regsel) {
                    if write {
                        let v = self.dbg().dcrdr;
                        self.cpu.write_reg(reg, v);
                    } else {
                        let v = self.cpu.read_reg(reg);
                        self.dbg().dcrdr = v;
                    }
                }
            }
            DebugAction::WatchesChanged => {}
        }
        if addr == debug::VTOR {
            self.cpu.set_vtor(value);
        }
        self.refresh_breakpoints();
        Ok(())
    }

    // ---- persistence --------------------------------------------------------

    /// Write changed flash contents to the state files.
    pub fn flush(&mut self) -> Result<(), PersistError> {
        self.last_flush = Instant::now();
        let Some((flash_file, chip_file)) = &self.files else {
            return Ok(());
        };
        let mut m = self.mcu.borrow_mut();
        if let Some(r) = m.flash.take_dirty() {
            flash_file.store(m.flash.array(), r)?;
        }
        if let Some(r) = m.chip.take_dirty() {
            chip_file.store(m.chip.contents(), r)?;
        }
        Ok(())
    }

    fn flush_if_due(&mut self, now: bool) {
        if self.files.is_some() && (now || self.last_flush.elapsed().as_millis() >= 200) {
            if let Err(e) = self.flush() {
                tracing::error!(target: "sim", "{e}");
            }
        }
    }
}

impl Drop for McuBoard {
    fn drop(&mut self) {
        self.summary("virtual board closed");
        if let Err(e) = self.flush() {
            tracing::error!(target: "sim", "{e}");
        }
    }
}

/// Accessor used by tests and benchmarks: the board's clock.
pub fn clock_of(board: &McuBoard) -> Clock {
    board.mcu.borrow().clock.clone()
}

/// Whether the core can fetch an instruction at `pc`: not from an Execute
/// Never region of the default memory map (ARMv7-M B3.1: Peripheral
/// 0x4000_0000-0x5FFF_FFFF, External device and System from 0xA000_0000
/// are XN whatever the MPU says), nor from CCM RAM, which sits on the
/// D-bus only (RM0090 2.3.1). Checked before every instruction.
#[inline]
fn fetchable(pc: u32) -> bool {
    pc < 0x4000_0000 && pc.wrapping_sub(0x1000_0000) >= 0x1_0000
        || (0x6000_0000..0xA000_0000).contains(&pc)
}

/// Why the core cannot fetch at `pc` (see [`fetchable`]).
#[cold]
fn unfetchable(pc: u32) -> String {
    let region = match pc {
        0x1000_0000..=0x1000_FFFF => {
            return format!(
                "instruction fetch from {pc:#010x} in CCM RAM, which is on the core's data bus \
                 only: a bus fault (IBUSERR) on silicon (RM0090 2.3.1)"
            )
        }
        0x4000_0000..=0x5FFF_FFFF => "Peripheral",
        0xA000_0000..=0xDFFF_FFFF => "External device",
        _ => "System (PPB and vendor)",
    };
    format!(
        "instruction fetch from {pc:#010x} in the {region} region, which is Execute Never: a \
         MemManage fault (IACCVIOL) on silicon (ARMv7-M B3.1, default memory map)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::mcu::Wiring;
    use crate::sim::stm32::flash::FLASH_SIZE;
    use crate::sim::w25q64jv::{W25q64jv, SIZE};

    const MAIN: u32 = 0x2000_0200;
    const HANDLER: u32 = 0x2000_0300;
    const STACK: u32 = 0x2000_1000;

    /// A running board executing `main` from SRAM with a vector table at
    /// 0x2000_0000 whose SysTick and DMA2 stream 0 vectors point at
    /// `handler`, and registers r0-r7 preset.
    fn board(main: &[u16], handler: &[u16], regs: &[u32]) -> McuBoard {
        let chip = W25q64jv::new(vec![0xFF; SIZE]);
        let mcu = Mcu::new(vec![0xFF; FLASH_SIZE], chip, Wiring::default(), 4_000_000);
        let mut b = McuBoard::new(mcu, None);
        {
            let mut m = b.mcu();
            for n in [11u32, 15, 16 + 56] {
                m.write(0x2000_0000 + 4 * n, 4, HANDLER | 1, Master::Debugger)
                    .unwrap();
            }
            for (base, code) in [(MAIN, main), (HANDLER, handler)] {
                for (i, hw) in code.iter().enumerate() {
                    m.write(base + 2 * i as u32, 2, *hw as u32, Master::Debugger)
                        .unwrap();
                }
            }
            m.dbg.vtor = 0x2000_0000;
        }
        b.cpu.write_reg(CoreReg::Pc, MAIN);
        b.cpu.write_reg(CoreReg::Xpsr, 1 << 24);
        b.cpu.write_reg(CoreReg::Msp, STACK);
        for (i, v) in regs.iter().enumerate() {
            b.cpu.write_reg(CoreReg::R(i as u8), *v);
        }
        b.core = CoreState::default();
        b
    }

    fn r(b: &McuBoard, n: u8) -> u32 {
        b.cpu.read_reg(CoreReg::R(n))
    }

    #[test]
    fn cpu_reaches_demcr_cpuid_and_nvic_through_the_scs_model() {
        // ldr.w r0,[r2,#0xfc]; orrs r0,r3; str.w r0,[r2,#0xfc];
        // ldr r4,[r2,#0]; strb r3,[r1,#3]; ldr r5,[r1,#0]
        let main = [
            0xF8D2, 0x00FC, 0x4318, 0xF8C2, 0x00FC, 0x6814, 0x70CB, 0x680D, 0xE7FE,
        ];
        let mut b = board(&main, &[], &[0, 0xE000_E400, 0xE000_ED00, 0x0100_00F0]);
        b.run_instructions(7);
        assert_eq!(b.fault(), None);
        assert_eq!(r(&b, 0), 0x0100_00F0);
        assert_eq!(
            b.mcu().dbg.demcr & (1 << 24),
            1 << 24,
            "TRCENA set by the CPU"
        );
        assert_eq!(r(&b, 4), 0x410F_C241, "CPUID");
        assert_eq!(r(&b, 5), 0xF000_0000, "IPR byte write, 4 bits kept");
        assert_eq!(
            b.debugger_read(0xE000_E400, 4).unwrap(),
            0xF000_0000,
            "the debugger sees the same NVIC"
        );
    }

    #[test]
    fn cpu_sysresetreq_needs_the_vectkey_and_resets_the_system() {
        use crate::sim::stm32::rcc::CSR_SFTRSTF;
        // str r1, [r2, #0xc] (AIRCR) without the key, then with it.
        let mut b = board(
            &[0x60D1, 0x60D3, 0xE7FE],
            &[],
            &[0, 4, 0xE000_ED00, 0x05FA_0004],
        );
        b.mcu()
            .write(0x4002_3874, 4, 1 << 24, Master::Debugger)
            .unwrap(); // RMVF
        b.run_instructions(1);
        assert_eq!(
            b.mcu().rcc.read(0x74, 0) & CSR_SFTRSTF,
            0,
            "no VECTKEY: ignored"
        );
        assert_eq!(b.cpu.read_reg(CoreReg::Pc), MAIN + 2);
        b.run_instructions(1);
        assert_ne!(b.mcu().rcc.read(0x74, 0) & CSR_SFTRSTF, 0, "software reset");
        assert_eq!(b.mcu().dbg.vtor, 0, "VTOR back to its reset value");
    }

    /// SysTick at HCLK every 100 cycles with TICKINT: `str r3,[r2,#4]`
    /// (RVR = 99), `str r3,[r2,#8]` (CVR), `str r4,[r2]` (CSR), then `b .`;
    /// the handler counts in r5 (`adds r5,#1; bx lr`).
    const SYSTICK_MAIN: [u16; 4] = [0x6053, 0x6093, 0x6014, 0xE7FE];
    const COUNT_HANDLER: [u16; 2] = [0x3501, 0x4770];

    fn systick_board(csr: u32) -> McuBoard {
        board(
            &SYSTICK_MAIN,
            &COUNT_HANDLER,
            &[0, 0, 0xE000_E010, 99, csr, 0],
        )
    }

    #[test]
    fn systick_exception_enters_the_handler_and_returns_to_thread_mode() {
        let mut b = systick_board(7);
        b.run_for(16_000 * 62_500); // 16,000 cycles at 16 MHz
        assert_eq!(b.fault(), None);
        let ticks = r(&b, 5);
        assert!((158..=160).contains(&ticks), "{ticks} SysTick exceptions");
        let xpsr = b.cpu.read_reg(CoreReg::Xpsr);
        if xpsr & 0x1FF == 0 {
            assert_eq!(b.cpu.read_reg(CoreReg::Msp), STACK, "frames unstacked");
        }
        let mut off = systick_board(7);
        off.set_fast_forward(false);
        off.run_for(16_000 * 62_500);
        assert_eq!(r(&off, 5), ticks, "fast-forward stops at every exception");
    }

    #[test]
    fn primask_and_basepri_hold_off_systick_and_countflag_still_sets() {
        let mut b = systick_board(7);
        b.cpu.write_reg(CoreReg::Special, 1); // PRIMASK
        b.run_for(1_000 * 62_500);
        assert_eq!(r(&b, 5), 0, "PRIMASK masks SysTick");
        let csr = b.debugger_read(0xE000_E010, 4).unwrap();
        assert_eq!(csr & (1 << 16), 1 << 16, "COUNTFLAG");
        // BASEPRI 0x10 masks priority 0x10..; SysTick at 0x20 stays masked,
        // at 0x00 it is taken.
        b.debugger_write(0xE000_ED20, 4, 0x2000_0000).unwrap();
        b.cpu.write_reg(CoreReg::Special, 0x10 << 8);
        b.run_for(1_000 * 62_500);
        assert_eq!(r(&b, 5), 0, "BASEPRI masks SysTick at priority 0x20");
        b.debugger_write(0xE000_ED20, 4, 0).unwrap();
        b.run_for(1_000 * 62_500);
        assert!(r(&b, 5) >= 9, "taken once unmasked: {}", r(&b, 5));
    }

    #[test]
    fn handler_returning_by_ldr_pc_or_pop_pc_from_the_stack_unstacks() {
        // push {lr}; adds r5, #1; ldr.w pc, [sp], #4  /  pop {pc}
        for handler in [
            &[0xB500, 0x3501, 0xF85D, 0xFB04][..],
            &[0xB500, 0x3501, 0xBD00],
        ] {
            let mut b = board(&SYSTICK_MAIN, handler, &[0, 0, 0xE000_E010, 99, 7, 0]);
            b.run_for(1_000 * 62_500);
            assert_eq!(b.fault(), None);
            assert!((8..=10).contains(&r(&b, 5)), "{} exceptions", r(&b, 5));
            if b.cpu.read_reg(CoreReg::Xpsr) & 0x1FF == 0 {
                assert_eq!(b.cpu.read_reg(CoreReg::Msp), STACK, "frames unstacked");
            }
        }
    }

    #[test]
    fn dma2_transfer_complete_interrupt_runs_its_handler_once_per_flag() {
        const S0CR: u32 = 0x4002_6410;
        // main: str r4, [r1] (S0CR, EN); b .
        // handler: str r3, [r2] (LIFCR = CTCIF0); adds r5, #1; bx lr
        let mut b = board(
            &[0x600C, 0xE7FE],
            &[0x6013, 0x3501, 0x4770],
            &[0, S0CR, 0x4002_6408, 1 << 5, 0x691, 0],
        );
        {
            let mut m = b.mcu();
            let w = |m: &mut Mcu, a: u32, v: u32| m.write(a, 4, v, Master::Debugger).unwrap();
            w(&mut m, 0x4002_3830, 1 << 22); // RCC_AHB1ENR.DMA2EN
            w(&mut m, S0CR + 4, 4); // NDTR
            w(&mut m, S0CR + 8, 0x2000_0800); // PAR: the source
            w(&mut m, S0CR + 12, 0x2000_0900);
            w(&mut m, 0x2000_0800, 0xDDCC_BBAA);
        }
        b.run_for(200 * 62_500);
        assert_eq!(r(&b, 5), 0, "NVIC line 56 not enabled: pending only");
        assert_eq!(
            b.debugger_read(0xE000_E204, 4).unwrap() >> 24 & 1,
            1,
            "ISPR"
        );
        b.debugger_write(0xE000_E104, 4, 1 << 24).unwrap(); // ISER1: IRQ 56
        b.run_for(200 * 62_500);
        assert_eq!(b.fault(), None);
        assert_eq!(r(&b, 5), 1, "taken once; the handler cleared TCIF0");
        assert_eq!(b.debugger_read(0x2000_0900, 4).unwrap(), 0xDDCC_BBAA);
        assert_eq!(b.debugger_read(0x4002_6400, 4).unwrap() & 1 << 5, 0);
        assert_eq!(
            b.cpu.read_reg(CoreReg::Xpsr) & 0x1FF,
            0,
            "back in Thread mode"
        );
        assert_eq!(b.cpu.read_reg(CoreReg::Msp), STACK);
    }

    #[test]
    fn systick_interrupts_a_skipped_flash_busy_poll_on_time() {
        // SysTick as above, then `1: ldr r0, [r6, #12]; b 1b` polls
        // FLASH_SR while a sector erase keeps BSY set for 250 ms: a poll
        // the board skips (a stall of up to 1 ms) must not hold SysTick off.
        let main = [0x6053, 0x6093, 0x6014, 0x68F0, 0xE7FD];
        let regs = [0, 0, 0xE000_E010, 99, 7, 0, 0x4002_3C00];
        let mut b = board(&main, &COUNT_HANDLER, &regs);
        {
            let mut m = b.mcu();
            let w = |m: &mut Mcu, a: u32, v: u32| m.write(a, 4, v, Master::Debugger).unwrap();
            w(&mut m, 0x4002_3C04, 0x4567_0123); // KEYR
            w(&mut m, 0x4002_3C04, 0xCDEF_89AB);
            w(&mut m, 0x4002_3C10, 2 << 8 | 1 << 3 | 1 << 1); // x32, sector 1, SER
            w(&mut m, 0x4002_3C10, 2 << 8 | 1 << 3 | 1 << 1 | 1 << 16); // STRT
        }
        b.run_for(16_000 * 62_500); // 1 ms
        assert_eq!(b.fault(), None);
        let ticks = r(&b, 5);
        assert!(
            (150..=160).contains(&ticks),
            "{ticks} SysTick exceptions in 1 ms"
        );
        assert!(
            b.counters().skipped_ps > 0,
            "the poll was skipped meanwhile"
        );
    }

    #[test]
    fn svc_enters_svcall_and_returns_after_the_svc() {
        // svc #0; b .
        let mut b = board(&[0xDF00, 0xE7FE], &COUNT_HANDLER, &[]);
        b.run_instructions(5);
        assert_eq!(b.fault(), None);
        assert_eq!(r(&b, 5), 1);
        assert_eq!(b.cpu.read_reg(CoreReg::Pc), MAIN + 2, "back after the svc");
        assert_eq!(b.cpu.read_reg(CoreReg::Xpsr) & 0x1FF, 0);
    }

    #[test]
    fn systick_without_tickint_only_counts() {
        let mut b = systick_board(5);
        b.run_for(1_000 * 62_500);
        assert_eq!(r(&b, 5), 0);
        assert_eq!(b.fault(), None);
    }
}

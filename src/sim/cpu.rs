//! The CPU of the virtual board behind a small trait of our own, with the
//! armagnac emulator as its one implementation.
//!
//! This module owns instruction execution and the core register file. It
//! must not know about debug registers or peripherals: the board decides
//! when to step and what a BKPT or a fault means.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use std::cell::Cell;

use armagnac::core::{Config, Emulator, Event, ItState, Processor};
use armagnac::decoder::{
    InstructionDecode, InstructionDecodeError, Lut16AndGrouped32InstructionDecoder,
};
use armagnac::instructions::{Instruction, InstructionSize};
use armagnac::memory::MemoryInterface;
use armagnac::registers::{Mode, RegisterIndex};

use super::align;
use super::patch;
use super::scs_access;
use super::sysreg::{self, SpecialRegs};
use super::timing::{self, Class};

/// Core register `n` (r0-r15) of armagnac's register file, for the
/// instructions our wrapper executes itself.
pub(super) fn reg(proc: &Processor, n: u8) -> u32 {
    proc[RegisterIndex::new_main(n as u32)]
}

/// Write core register `n` (r0-r15); see [`reg`].
pub(super) fn set_reg(proc: &mut Processor, n: u8, v: u32) {
    proc.set(RegisterIndex::new_main(n as u32), v);
}

/// Core registers as numbered by DCRSR.REGSEL (ARMv7-M ARM C1.6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreReg {
    /// r0..r12
    R(u8),
    /// The current stack pointer (MSP or PSP).
    Sp,
    Lr,
    /// DebugReturnAddress: the address of the next instruction.
    Pc,
    Xpsr,
    Msp,
    Psp,
    /// CONTROL[31:24], FAULTMASK[23:16], BASEPRI[15:8], PRIMASK[7:0].
    Special,
    Fpscr,
    /// s0..s31
    S(u8),
}

impl CoreReg {
    /// Decode DCRSR.REGSEL; `None` for reserved selectors.
    pub fn from_regsel(sel: u32) -> Option<Self> {
        Some(match sel {
            0..=12 => CoreReg::R(sel as u8),
            13 => CoreReg::Sp,
            14 => CoreReg::Lr,
            15 => CoreReg::Pc,
            16 => CoreReg::Xpsr,
            17 => CoreReg::Msp,
            18 => CoreReg::Psp,
            20 => CoreReg::Special,
            33 => CoreReg::Fpscr,
            64..=95 => CoreReg::S((sel - 64) as u8),
            _ => return None,
        })
    }
}

/// What one step of the core did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// One instruction retired.
    Retired,
    /// A BKPT instruction; the PC still points at it (as on silicon).
    Breakpoint,
    /// WFI/WFE: the core sleeps until an event (none are modelled); the PC
    /// points past the instruction.
    Sleep,
    /// The program requested a system reset (AIRCR.SYSRESETREQ).
    ResetRequest,
    /// The emulator could not execute: unknown instruction, a bus error, an
    /// unimplemented feature, or a contained emulator panic.
    Fault(String),
    /// The instruction loaded EXC_RETURN into the PC in Handler mode: the
    /// core left exception `from` and unstacked its frame (it now runs at
    /// the stacked IPSR).
    ExceptionReturn { from: u16 },
    /// An SVC retired: SVCall is to be pended (the board takes it).
    Svc,
}

/// The core as the board sees it.
pub trait Cpu {
    /// Execute one instruction; returns what it did and the core cycles it
    /// took by the instruction-timing model (`timing.rs`), flash wait
    /// states not included.
    fn step(&mut self) -> (StepOutcome, u64);
    fn read_reg(&self, reg: CoreReg) -> u32;
    /// r0-r12, SP, LR, xPSR: the registers that decide what a loop does.
    fn loop_regs(&self) -> [u32; 16] {
        let mut regs = [0u32; 16];
        for (i, r) in regs.iter_mut().enumerate().take(13) {
            *r = self.read_reg(CoreReg::R(i as u8));
        }
        regs[13] = self.read_reg(CoreReg::Sp);
        regs[14] = self.read_reg(CoreReg::Lr);
        regs[15] = self.read_reg(CoreReg::Xpsr);
        regs
    }
    fn write_reg(&mut self, reg: CoreReg, value: u32);
    /// Core reset: fresh register file, then SP and PC from the vector table.
    fn reset(&mut self, sp: u32, reset_vector: u32);
    /// VTOR as last written through the debugger or at reset.
    fn set_vtor(&mut self, value: u32);
    /// PRIMASK, FAULTMASK and BASEPRI: what masks exceptions.
    fn masks(&self) -> (bool, bool, u8);
    /// Exception entry (ARMv7-M B1.5.6, PushStack and ExceptionTaken):
    /// stack r0-r3, r12, LR, the return address and xPSR on the current
    /// stack (8-byte aligned when `stkalign`), LR = EXC_RETURN, Handler
    /// mode, IPSR = `number`, PC = `handler`.
    fn exception_entry(&mut self, number: u16, handler: u32, stkalign: bool) -> Result<(), String>;
    /// The flag through which the SCS model tells the CPU CCR.UNALIGN_TRP
    /// (unaligned single loads and stores fault while it is set).
    fn unalign_trp_flag(&self) -> align::TrapFlag;
}

/// armagnac as a Cortex-M4 without FPU execution: FP registers are storage.
/// A memory interface and the address armagnac maps it at.
pub type Window = (u32, Rc<RefCell<dyn MemoryInterface>>);

pub struct ArmagnacCpu {
    proc: Processor,
    bus: Rc<RefCell<dyn MemoryInterface>>,
    bus_size: u32,
    windows: Vec<Window>,
    /// PRIMASK, BASEPRI, FAULTMASK, CONTROL.FPCA/nPRIV, Handler mode.
    regs: sysreg::Shared,
    /// Where CPU accesses to the SCS go instead of armagnac's model.
    scs: Option<scs_access::Port>,
    last: Rc<Cell<(Class, u32)>>,
    div: patch::DivCycles,
    /// Cycles of the last step (timing model).
    cycles: u64,
    s: [u32; 32],
    fpscr: u32,
    /// Set after a contained panic: the processor state is suspect until reset.
    poisoned: Option<String>,
    /// Raised by [`SleepAwareDecoder`] when the step decoded WFI/WFE.
    slept: Rc<Cell<bool>>,
    decode: Rc<DecodeCache>,
    /// Alignment rules the wrapped loads and stores keep.
    rules: align::Shared,
}

/// armagnac's decoder, with WFI and WFE decoded as NOPs that raise a flag:
/// in armagnac's wait states `next_event` never returns, so the board
/// handles sleep itself. (A WFI in a failing IT condition still raises the
/// flag; compilers do not emit that.)
///
/// Decoded instructions are cached: armagnac decodes (and allocates) anew
/// for every executed instruction, and a decoded instruction is a pure
/// function of its encoding, size and IT state (armagnac executes it
/// through `&self`), so one decode per encoding serves every execution.
struct SleepAwareDecoder {
    inner: Rc<DecodeCache>,
    slept: Rc<Cell<bool>>,
    regs: sysreg::Shared,
    scs: Option<scs_access::Port>,
    /// Timing class and size (bytes) of the instruction decoded last: the
    /// one the step executes.
    last: Rc<Cell<(Class, u32)>>,
    div: patch::DivCycles,
    rules: align::Shared,
}

/// armagnac's table decoder (slow to build) and the decoded instructions,
/// kept across core resets.
struct DecodeCache {
    decoder: Lut16AndGrouped32InstructionDecoder,
    slots: RefCell<Vec<Option<CachedInstruction>>>,
}

/// A cache slot: the key (encoding, size, IT state), what it decoded to
/// and its timing class.
type CachedInstruction = (u64, Rc<dyn Instruction>, Class);

/// Entries of the direct-mapped decode cache (a power of two).
const DECODE_CACHE_SLOTS: usize = 1 << DECODE_CACHE_BITS;
const DECODE_CACHE_BITS: u32 = 11;

impl DecodeCache {
    fn new() -> Self {
        Self {
            decoder: Lut16AndGrouped32InstructionDecoder::new(armagnac::core::ArmVersion::V7EM),
            slots: RefCell::new(vec![None; DECODE_CACHE_SLOTS]),
        }
    }
}

impl SleepAwareDecoder {
    /// The cache key: encoding, size and IT state, all that decoding reads.
    fn key(ins: u32, size: InstructionSize, state: ItState) -> u64 {
        let wide = matches!(size, InstructionSize::Ins32) as u64;
        ins as u64 | wide << 32 | (state.0 as u64) << 40
    }

    fn slot(key: u64) -> usize {
        // Fibonacci hashing: the top bits of key * 2^64/phi.
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - DECODE_CACHE_BITS)) as usize
    }
}

impl InstructionDecode for SleepAwareDecoder {
    fn try_decode(
        &self,
        ins: u32,
        size: InstructionSize,
        state: ItState,
    ) -> Result<Rc<dyn Instruction>, InstructionDecodeError> {
        let nop = match size {
            InstructionSize::Ins16 if ins == 0xBF20 || ins == 0xBF30 => Some(0xBF00),
            InstructionSize::Ins32 if ins == 0xF3AF_8002 || ins == 0xF3AF_8003 => Some(0xF3AF_8000),
            _ => None,
        };
        let wide = matches!(size, InstructionSize::Ins32);
        let bytes = if wide { 4 } else { 2 };
        if let Some(nop) = nop {
            self.slept.set(true);
            self.last.set((Class::Alu, bytes));
            return self.inner.decoder.try_decode(nop, size, state);
        }
        let key = Self::key(ins, size, state);
        let slot = Self::slot(key);
        if let Some((k, decoded, class)) = &self.inner.slots.borrow()[slot] {
            if *k == key {
                self.last.set((*class, bytes));
                return Ok(decoded.clone());
            }
        }
        let class = timing::classify(ins, wide);
        self.last.set((class, bytes));
        let ours = sysreg::decode(ins, wide, &self.regs)
            .or_else(|| patch::decode(ins, wide, &self.div))
            .or_else(|| super::dsp::decode(ins, wide));
        let decoded = match ours {
            Some(ours) => ours,
            None => {
                let theirs = self.inner.decoder.try_decode(ins, size, state)?;
                let theirs = align::wrap(ins, wide, theirs, &self.rules);
                match &self.scs {
                    Some(port) => scs_access::wrap(ins, wide, theirs, port, &self.rules),
                    None => theirs,
                }
            }
        };
        self.inner.slots.borrow_mut()[slot] = Some((key, decoded.clone(), class));
        Ok(decoded)
    }
}

impl ArmagnacCpu {
    /// `bus` is mapped at address 0 and covers `[0, bus_size)`; CPU loads
    /// and stores to the SCS (0xE000E000..0xE000F000) go to `scs` (without
    /// one, to armagnac's own partial model).
    pub fn new(
        bus: Rc<RefCell<dyn MemoryInterface>>,
        bus_size: u32,
        windows: Vec<Window>,
        scs: Option<scs_access::Port>,
    ) -> Self {
        let slept = Rc::new(Cell::new(false));
        let decode = Rc::new(DecodeCache::new());
        let regs = sysreg::Shared::default();
        let last = Rc::new(Cell::new((Class::Alu, 2)));
        let div = patch::DivCycles::default();
        let rules = align::Shared::default();
        let proc = Self::build(
            bus.clone(),
            bus_size,
            &windows,
            (&slept, &decode, &regs, &scs, &last, &div, &rules),
        );
        Self {
            rules,
            scs,
            last,
            div,
            cycles: 1,
            slept,
            decode,
            proc,
            bus,
            bus_size,
            windows,
            regs,
            s: [0; 32],
            fpscr: 0,
            poisoned: None,
        }
    }

    fn build(
        bus: Rc<RefCell<dyn MemoryInterface>>,
        bus_size: u32,
        windows: &[Window],
        shared: DecoderShared<'_>,
    ) -> Processor {
        let (slept, decode, regs, scs, last, div, rules) = shared;
        let mut proc = Processor::new(Config::v7em());
        proc.instruction_decoder = Box::new(SleepAwareDecoder {
            inner: decode.clone(),
            slept: slept.clone(),
            regs: regs.clone(),
            scs: scs.clone(),
            last: last.clone(),
            div: div.clone(),
            rules: rules.clone(),
        });
        // The bus reports `bus_size` itself; mapping at 0 cannot conflict
        // with armagnac's SCS at 0xE000E000 as long as it stays below it.
        debug_assert!(bus_size <= 0xE000_0000);
        if proc.map_iface(0, bus).is_err() {
            tracing::error!("armagnac refused the board bus mapping");
        }
        for (base, iface) in windows {
            if proc.map_iface(*base, iface.clone()).is_err() {
                tracing::error!("armagnac refused the window at {base:#010x}");
            }
        }
        proc
    }
}

/// What the decoder shares with the wrapper: sleep flag, decode cache,
/// special registers, SCS port, last timing class, divide cycles,
/// alignment rules.
type DecoderShared<'a> = (
    &'a Rc<Cell<bool>>,
    &'a Rc<DecodeCache>,
    &'a sysreg::Shared,
    &'a Option<scs_access::Port>,
    &'a Rc<Cell<(Class, u32)>>,
    &'a patch::DivCycles,
    &'a align::Shared,
);

/// Cycles an exception return adds to its instruction (unstacking; the
/// Cortex-M4 TRM 3.3.1 gives 10-12 for a return).
const UNSTACK_CYCLES: u64 = 10;

/// PC values from this one up, loaded in Handler mode, are EXC_RETURN.
const EXC_RETURN_MIN: u32 = 0xF000_0000;
/// The basic stack frame: r0-r3, r12, LR, return address, xPSR.
const FRAME: u32 = 0x20;

impl ArmagnacCpu {
    fn read_word(&mut self, addr: u32) -> Result<u32, String> {
        self.proc
            .read_u32le_iface(addr)
            .map_err(|e| format!("{e:?} unstacking at {addr:#010x}"))
    }

    /// ExceptionReturn (B1.5.8): armagnac loaded EXC_RETURN into the PC as
    /// a plain branch (it runs handlers in Thread mode); unstack the frame
    /// EXC_RETURN names and go back to the mode it names.
    fn exception_return(&mut self) -> StepOutcome {
        let exc_return = self.proc.registers.pc | 1;
        let from = (self.proc.registers.psr.get() & 0x1FF) as u16;
        let (to_handler, psp) = match exc_return {
            0xFFFF_FFF1 => (true, false),
            0xFFFF_FFF9 => (false, false),
            0xFFFF_FFFD => (false, true),
            other => {
                return StepOutcome::Fault(format!(
                    "exception return with EXC_RETURN {other:#010x} (an FP frame or reserved \
                     value) from exception {from}: not modelled (INVPC UsageFault on silicon)"
                ))
            }
        };
        let sp = if psp {
            self.proc.registers.psp
        } else {
            self.proc.registers.msp
        };
        let mut frame = [0u32; 8];
        for (i, w) in frame.iter_mut().enumerate() {
            match self.read_word(sp.wrapping_add(4 * i as u32)) {
                Ok(v) => *w = v,
                Err(e) => return StepOutcome::Fault(e),
            }
        }
        let psr = frame[7];
        let ipsr = psr & 0x1FF;
        if to_handler == (ipsr == 0) {
            return StepOutcome::Fault(format!(
                "exception return from {from} to {} mode with stacked IPSR {ipsr} \
                 (INVPC UsageFault on silicon)",
                if to_handler { "Handler" } else { "Thread" }
            ));
        }
        let realign = if psr & (1 << 9) != 0 { 4 } else { 0 };
        let new_sp = sp.wrapping_add(FRAME) | realign;
        let r = &mut self.proc.registers;
        (r.r0, r.r1, r.r2, r.r3, r.r12, r.lr) =
            (frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]);
        r.pc = frame[6] & !1;
        r.psr.set(psr & !(1 << 9));
        if psp {
            r.psp = new_sp;
        } else {
            r.msp = new_sp;
        }
        let mut s = self.regs.get();
        s.handler = to_handler;
        r.control.set_spsel(psp);
        r.control.set_privileged_bit(s.npriv && !to_handler);
        self.regs.set(s);
        StepOutcome::ExceptionReturn { from }
    }
}

impl ArmagnacCpu {
    /// One instruction; sets `self.cycles`.
    fn run_one(&mut self) -> StepOutcome {
        if let Some(why) = &self.poisoned {
            return StepOutcome::Fault(why.clone());
        }
        self.slept.set(false);
        let pc = self.proc.registers.pc;
        let it = self.proc.registers.psr.it_state();
        // An instruction in an IT block whose condition fails is not
        // executed and takes 1 cycle (Cortex-M4 TRM 3.3.1). The flags it
        // is tested against are those before it (A7.3.1). A B<cond> that
        // is not taken writes no PC and costs its class's 1 anyway.
        // (ITSTATE[3:0] != 0: inside a block; tested inline, this runs
        // before every instruction.)
        let condition_failed = it.0 & 0xF != 0
            && it
                .current_condition()
                .is_some_and(|c| !self.proc.registers.psr.test(c));
        let proc = &mut self.proc;
        // armagnac pushes the retired instruction first and the BKPT/reset
        // event after it, and pops the last one first: drain to the
        // instruction so every call retires exactly one instruction.
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut outcome = StepOutcome::Retired;
            loop {
                match proc.next_event() {
                    Ok(Event::Instruction { .. }) => return Ok(outcome),
                    Ok(Event::Break(_)) => outcome = StepOutcome::Breakpoint,
                    Ok(Event::Reset) => outcome = StepOutcome::ResetRequest,
                    Ok(Event::Hook { .. }) | Ok(Event::DebugHint(_)) => {}
                    Err(e) => return Err(format!("{e:?}")),
                }
            }
        }));
        let (class, bytes) = self.last.get();
        let pc_written = self.proc.registers.pc != pc.wrapping_add(bytes);
        self.cycles = class.cycles(pc_written, condition_failed, self.div.get());
        match result {
            Ok(Ok(StepOutcome::Breakpoint)) => {
                // armagnac leaves the PC past the BKPT and the IT state
                // advanced; silicon halts on it with both unchanged (a
                // debugger's software breakpoint inside an IT block).
                self.proc.registers.pc = pc;
                self.proc.registers.psr.set_it_state(it);
                StepOutcome::Breakpoint
            }
            Ok(Ok(StepOutcome::Retired)) if self.slept.get() => StepOutcome::Sleep,
            Ok(Ok(StepOutcome::Retired)) => {
                let mut s = self.regs.get();
                if s.handler && self.proc.registers.pc >= EXC_RETURN_MIN {
                    self.cycles += UNSTACK_CYCLES;
                    self.exception_return()
                } else if s.svc {
                    s.svc = false;
                    self.regs.set(s);
                    StepOutcome::Svc
                } else {
                    StepOutcome::Retired
                }
            }
            Ok(Ok(o)) => o,
            Ok(Err(_)) if class == Class::Coproc => StepOutcome::Fault(format!(
                "FP/coprocessor instruction at pc {pc:#010x}: the virtual CPU executes no \
                 FP instructions (build for thumbv7em-none-eabi)"
            )),
            Ok(Err(e)) => {
                let why = self.rules.why.borrow_mut().take().unwrap_or(e);
                StepOutcome::Fault(format!("{why} at pc {pc:#010x}"))
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let why = format!("emulator panic at pc {pc:#010x}: {msg}");
                self.poisoned = Some(why.clone());
                StepOutcome::Fault(why)
            }
        }
    }
}

impl Cpu for ArmagnacCpu {
    fn step(&mut self) -> (StepOutcome, u64) {
        let outcome = self.run_one();
        (outcome, self.cycles)
    }

    fn read_reg(&self, reg: CoreReg) -> u32 {
        let r = &self.proc.registers;
        match reg {
            CoreReg::R(n) => match n {
                0 => r.r0,
                1 => r.r1,
                2 => r.r2,
                3 => r.r3,
                4 => r.r4,
                5 => r.r5,
                6 => r.r6,
                7 => r.r7,
                8 => r.r8,
                9 => r.r9,
                10 => r.r10,
                11 => r.r11,
                _ => r.r12,
            },
            CoreReg::Sp => r.sp(),
            CoreReg::Lr => r.lr,
            CoreReg::Pc => r.pc,
            CoreReg::Xpsr => r.psr.get(),
            CoreReg::Msp => r.msp,
            CoreReg::Psp => r.psp,
            CoreReg::Special => {
                let s = self.regs.get();
                (sysreg::control(&self.proc, &s) << 24)
                    | (s.faultmask as u32) << 16
                    | (s.basepri as u32) << 8
                    | s.primask as u32
            }
            CoreReg::Fpscr => self.fpscr,
            CoreReg::S(n) => self.s[(n & 31) as usize],
        }
    }

    fn loop_regs(&self) -> [u32; 16] {
        let r = &self.proc.registers;
        [
            r.r0,
            r.r1,
            r.r2,
            r.r3,
            r.r4,
            r.r5,
            r.r6,
            r.r7,
            r.r8,
            r.r9,
            r.r10,
            r.r11,
            r.r12,
            r.sp(),
            r.lr,
            r.psr.get(),
        ]
    }

    fn write_reg(&mut self, reg: CoreReg, value: u32) {
        let r = &mut self.proc.registers;
        match reg {
            CoreReg::R(n) => match n {
                0 => r.r0 = value,
                1 => r.r1 = value,
                2 => r.r2 = value,
                3 => r.r3 = value,
                4 => r.r4 = value,
                5 => r.r5 = value,
                6 => r.r6 = value,
                7 => r.r7 = value,
                8 => r.r8 = value,
                9 => r.r9 = value,
                10 => r.r10 = value,
                11 => r.r11 = value,
                _ => r.r12 = value,
            },
            CoreReg::Sp => *r.sp_mut() = value & !3,
            CoreReg::Lr => r.lr = value,
            CoreReg::Pc => r.pc = value & !1,
            CoreReg::Xpsr => {
                r.psr.set(value);
                // IPSR != 0 means Handler mode, as on silicon (armagnac
                // itself stays in privileged Thread mode, see SpecialRegs).
                let mut s = self.regs.get();
                s.handler = value & 0x1FF != 0;
                r.mode = Mode::Thread;
                r.control.set_privileged_bit(s.npriv && !s.handler);
                if s.handler {
                    r.control.set_spsel(false);
                }
                self.regs.set(s);
            }
            CoreReg::Msp => r.msp = value & !3,
            CoreReg::Psp => r.psp = value & !3,
            CoreReg::Special => {
                let control = value >> 24;
                let mut s = self.regs.get();
                s.npriv = control & 1 != 0;
                s.fpca = control & 4 != 0;
                s.faultmask = value & (1 << 16) != 0;
                s.basepri = (value >> 8) as u8 & sysreg::PRIO_MASK;
                s.primask = value & 1 != 0;
                if !s.handler {
                    r.control.set_privileged_bit(s.npriv);
                    r.control.set_spsel(control & 2 != 0);
                }
                self.regs.set(s);
            }
            CoreReg::Fpscr => self.fpscr = value & 0xF7C0_009F,
            CoreReg::S(n) => self.s[(n & 31) as usize] = value,
        }
    }

    fn reset(&mut self, sp: u32, reset_vector: u32) {
        self.proc = Self::build(
            self.bus.clone(),
            self.bus_size,
            &self.windows,
            (
                &self.slept,
                &self.decode,
                &self.regs,
                &self.scs,
                &self.last,
                &self.div,
                &self.rules,
            ),
        );
        self.poisoned = None;
        self.regs.set(SpecialRegs::default());
        self.s = [0; 32];
        self.fpscr = 0;
        let r = &mut self.proc.registers;
        r.msp = sp & !3;
        r.pc = reset_vector & !1;
        r.lr = 0xFFFF_FFFF;
        r.psr.set(if reset_vector & 1 != 0 { 1 << 24 } else { 0 });
    }

    fn masks(&self) -> (bool, bool, u8) {
        let s = self.regs.get();
        (s.primask, s.faultmask, s.basepri)
    }

    fn exception_entry(&mut self, number: u16, handler: u32, stkalign: bool) -> Result<(), String> {
        if let Some(why) = &self.poisoned {
            return Err(why.clone());
        }
        let mut s = self.regs.get();
        let r = &self.proc.registers;
        let sp = r.sp();
        let align = stkalign && sp & 4 != 0;
        let frame_ptr = sp.wrapping_sub(FRAME) & if stkalign { !4 } else { !0 };
        let xpsr = r.psr.get() & !(1 << 9) | (align as u32) << 9;
        let frame = [r.r0, r.r1, r.r2, r.r3, r.r12, r.lr, r.pc, xpsr];
        let exc_return = if s.handler {
            0xFFFF_FFF1
        } else if r.control.spsel() {
            0xFFFF_FFFD
        } else {
            0xFFFF_FFF9
        };
        for (i, w) in frame.iter().enumerate() {
            let a = frame_ptr.wrapping_add(4 * i as u32);
            self.proc
                .write_u32le_iface(a, *w)
                .map_err(|e| format!("{e:?} stacking exception {number} at {a:#010x}"))?;
        }
        if handler & 1 == 0 {
            return Err(format!(
                "vector of exception {number} is {handler:#010x} without the Thumb bit \
                 (INVSTATE UsageFault on silicon)"
            ));
        }
        *self.proc.registers.sp_mut() = frame_ptr;
        let r = &mut self.proc.registers;
        r.lr = exc_return;
        r.pc = handler & !1;
        let psr = r.psr.get() & 0xF80F_0000 | 1 << 24 | number as u32 & 0x1FF;
        r.psr.set(psr);
        r.control.set_spsel(false);
        r.control.set_privileged_bit(false);
        s.handler = true;
        self.regs.set(s);
        Ok(())
    }

    fn unalign_trp_flag(&self) -> align::TrapFlag {
        self.rules.unalign_trp.clone()
    }

    fn set_vtor(&mut self, value: u32) {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let _ = self
                .proc
                .write_u32le_iface(0xE000_ED08, value & 0xFFFF_FF80);
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use armagnac::memory::RamMemory;

    const CODE: u32 = 0x100;

    /// A core on 4 KiB of RAM at 0 running `code` (halfwords) from 0x100,
    /// with `r1` preset.
    fn core(code: &[u16], r1: u32) -> ArmagnacCpu {
        let ram = Rc::new(RefCell::new(RamMemory::new_zero(0x1000)));
        let mut cpu = ArmagnacCpu::new(ram.clone(), 0x1000, Vec::new(), None);
        cpu.reset(0x800, CODE | 1);
        let mut env = armagnac::memory::Env::new(0, true);
        for (i, hw) in code.iter().enumerate() {
            ram.borrow_mut()
                .write_u16le(CODE + 2 * i as u32, *hw, &mut env)
                .unwrap();
        }
        cpu.write_reg(CoreReg::R(1), r1);
        cpu
    }

    fn run(cpu: &mut ArmagnacCpu, n: usize) {
        for _ in 0..n {
            assert_eq!(cpu.step().0, StepOutcome::Retired);
        }
    }

    fn special(cpu: &ArmagnacCpu) -> u32 {
        cpu.read_reg(CoreReg::Special)
    }

    #[test]
    fn msr_mrs_primask_round_trip_and_cps_sets_and_clears_it() {
        // msr primask, r1; mrs r0, primask; cpsie i; mrs r2, primask; cpsid i
        let mut cpu = core(
            &[
                0xF381, 0x8810, 0xF3EF, 0x8010, 0xB662, 0xF3EF, 0x8210, 0xB672,
            ],
            1,
        );
        run(&mut cpu, 2);
        assert_eq!(special(&cpu) & 1, 1, "MSR PRIMASK set PM");
        assert_eq!(cpu.read_reg(CoreReg::R(0)), 1, "MRS reads PM back");
        run(&mut cpu, 2);
        assert_eq!(special(&cpu) & 1, 0, "CPSIE i cleared PM");
        assert_eq!(cpu.read_reg(CoreReg::R(2)), 0);
        run(&mut cpu, 1);
        assert_eq!(special(&cpu) & 1, 1, "CPSID i set PM");
    }

    #[test]
    fn basepri_keeps_four_bits_and_basepri_max_only_raises_priority() {
        // msr basepri, r1; mrs r0, basepri; movs r1, #0x20;
        // msr basepri_max, r1; mrs r2, basepri; movs r1, #0x80;
        // msr basepri_max, r1; mrs r3, basepri
        let mut cpu = core(
            &[
                0xF381, 0x8811, 0xF3EF, 0x8011, 0x2120, 0xF381, 0x8812, 0xF3EF, 0x8211, 0x2180,
                0xF381, 0x8812, 0xF3EF, 0x8311,
            ],
            0x4F,
        );
        run(&mut cpu, 8);
        assert_eq!(
            cpu.read_reg(CoreReg::R(0)),
            0x40,
            "low 4 bits not implemented"
        );
        assert_eq!(
            cpu.read_reg(CoreReg::R(2)),
            0x20,
            "0x20 is a higher priority"
        );
        assert_eq!(cpu.read_reg(CoreReg::R(3)), 0x20, "0x80 is lower: ignored");
        assert_eq!((special(&cpu) >> 8) & 0xFF, 0x20);
    }

    #[test]
    fn faultmask_by_msr_and_cps_f() {
        // msr faultmask, r1; mrs r2, faultmask; cpsie f; mrs r3, faultmask
        let mut cpu = core(&[0xF381, 0x8813, 0xF3EF, 0x8213, 0xB661, 0xF3EF, 0x8313], 1);
        run(&mut cpu, 4);
        assert_eq!(cpu.read_reg(CoreReg::R(2)), 1);
        assert_eq!(cpu.read_reg(CoreReg::R(3)), 0);
        assert_eq!((special(&cpu) >> 16) & 1, 0);
    }

    #[test]
    fn msr_apsr_writes_flags_and_mrs_xpsr_reads_them() {
        // msr apsr_nzcvq, r1; mrs r0, apsr
        let mut cpu = core(&[0xF381, 0x8800, 0xF3EF, 0x8000], 0xF800_0000);
        run(&mut cpu, 2);
        assert_eq!(cpu.read_reg(CoreReg::R(0)), 0xF800_0000);
        assert_eq!(cpu.read_reg(CoreReg::Xpsr) >> 27, 0x1F);
    }

    #[test]
    fn unprivileged_thread_cannot_set_primask_or_return_to_privileged() {
        // msr control, r1 (nPRIV=1); cpsid i; msr primask, r1; movs r1, #0;
        // msr control, r1; mrs r0, control
        let mut cpu = core(
            &[
                0xF381, 0x8814, 0xB672, 0xF381, 0x8810, 0x2100, 0xF381, 0x8814, 0xF3EF, 0x8014,
            ],
            1,
        );
        run(&mut cpu, 6);
        assert_eq!(special(&cpu) & 1, 0, "PRIMASK unchanged without privilege");
        assert_eq!(cpu.read_reg(CoreReg::R(0)), 1, "nPRIV stays set");
    }
}

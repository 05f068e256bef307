//! The STM32F407VE system bus below the Cortex-M private peripheral bus:
//! memories, peripherals, and the W25Q64JV wired to an SPI port.
//!
//! This module owns address decoding, the board clock, and the wiring of the
//! external flash (SPI instance, pins, chip select). It is shared between
//! the CPU (as armagnac's memory interface) and the AHB-AP (debugger
//! accesses); it must not know about debug registers beyond the DWT data
//! comparators it has to match.

use std::ops::Range;

use armagnac::memory::{
    Env, MemoryAccessError, MemoryInterface, MemoryReadResult, MemoryWriteResult,
};

use super::clock::{Clock, HSI_HZ};
use super::debug::DebugRegs;
use super::scs::{Scs, ScsEffect, Side};
use super::stm32::crc::Crc;
use super::stm32::dma::{Dir, Dma};
use super::stm32::flash::{FlashCtrl, FLASH_SIZE};
use super::stm32::gpio::{GpioPort, PinMode};
use super::stm32::iwdg::Iwdg;
use super::stm32::rcc::Rcc;
use super::stm32::spi::{Spi, SpiLink};
use super::stm32::wwdg::Wwdg;
use super::strict::{Rule, Strict};
use super::w25q64jv::W25q64jv;

pub const FLASH_BASE: u32 = 0x0800_0000;
pub const SRAM_BASE: u32 = 0x2000_0000;
pub const SRAM_SIZE: u32 = 128 * 1024;
pub const CCM_BASE: u32 = 0x1000_0000;
pub const CCM_SIZE: u32 = 64 * 1024;
/// The bus covers everything below the private peripheral bus.
pub const BUS_SIZE: u32 = 0xE000_0000;

const SYSMEM: Range<u32> = 0x1FFF_0000..0x1FFF_7A10;
const OPTION_BYTES: Range<u32> = 0x1FFF_C000..0x1FFF_C010;
/// Device electronic signature (RM0090 39.1-39.2): the 96-bit unique ID,
/// then the flash size in KiB as a halfword at 0x1FFF_7A22.
const SIGNATURE: Range<u32> = 0x1FFF_7A10..0x1FFF_7A24;

/// The signature's bytes: a fixed unique ID and this board's 512 KiB.
fn signature() -> [u8; 20] {
    let mut s = [0u8; 20];
    s[..12].copy_from_slice(b"XFLASHGDBSIM");
    let kib = (FLASH_SIZE / 1024) as u16;
    s[18..20].copy_from_slice(&kib.to_le_bytes());
    s
}
const IWDG_BASE: u32 = 0x4000_3000;
const WWDG_BASE: u32 = 0x4000_2C00;
const CRC_BASE: u32 = 0x4002_3000;
const DMA2_BASE: u32 = 0x4002_6400;
/// NVIC lines of DMA2 streams 0-7 (RM0090 table 61).
const DMA2_IRQS: [usize; 8] = [56, 57, 58, 59, 60, 68, 69, 70];
/// DMA2 channel 3 serves SPI1: RX on streams 0 and 2, TX on 3 and 5.
const SPI1_DMA_CHANNEL: u32 = 3;
/// Items one service pass may move (a bound, not a limit of silicon).
const MAX_DMA_ITEMS: usize = 1 << 20;
const PWR_BASE: u32 = 0x4000_7000;
const SPI_BASES: [u32; 3] = [0x4001_3000, 0x4000_3800, 0x4000_3C00];
const GPIO_BASE: u32 = 0x4002_0000;
const RCC_BASE: u32 = 0x4002_3800;
const FLASH_IF_BASE: u32 = 0x4002_3C00;
const PERIPH_BLOCK: u32 = 0x400;

/// The longest a single status poll may advance the clock while the
/// external flash or the FLASH controller is busy.
pub const MAX_SKIP_PS: u64 = 1_000_000_000; // 1 ms

/// A GPIO pin: port 0 = A .. 4 = E.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpioPin {
    pub port: u8,
    pub pin: u8,
}

impl GpioPin {
    pub const fn new(port: u8, pin: u8) -> Self {
        Self { port, pin }
    }
}

/// A board file's pin (`PB3`) on the virtual board.
impl From<crate::board::Pin> for GpioPin {
    fn from(p: crate::board::Pin) -> Self {
        GpioPin::new(p.port as u8 - b'A', p.number)
    }
}

/// A board file's external-flash wiring on the virtual board.
impl From<&crate::board::ExtFlashWiring> for Wiring {
    fn from(e: &crate::board::ExtFlashWiring) -> Self {
        Wiring {
            spi: e.spi,
            sck: e.sck.into(),
            miso: e.miso.into(),
            mosi: e.mosi.into(),
            af: e.af,
            cs: e.cs.into(),
        }
    }
}

impl std::fmt::Display for GpioPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P{}{}", (b'A' + self.port) as char, self.pin)
    }
}

/// How the W25Q64JV is wired to the MCU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wiring {
    /// SPI instance, 1..=3.
    pub spi: u8,
    pub sck: GpioPin,
    pub miso: GpioPin,
    pub mosi: GpioPin,
    /// Alternate function number of the three SPI pins.
    pub af: u8,
    /// Chip select, a GPIO output, active low.
    pub cs: GpioPin,
}

impl Default for Wiring {
    /// The STM32F407VET6 "black" board: SPI1 on PB3/PB4/PB5 (AF5), CS PB0.
    fn default() -> Self {
        Self {
            spi: 1,
            sck: GpioPin::new(1, 3),
            miso: GpioPin::new(1, 4),
            mosi: GpioPin::new(1, 5),
            af: 5,
            cs: GpioPin::new(1, 0),
        }
    }
}

/// Access size in bytes.
pub type Size = u32;

/// Which side of the bus an access comes from (only CPU accesses trigger
/// watchpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Master {
    Cpu,
    Debugger,
}

/// A DWT data comparator as the bus matches it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataWatch {
    pub address: u32,
    /// Address bits ignored (DWT_MASK).
    pub mask_bits: u32,
    pub on_read: bool,
    pub on_write: bool,
}

impl DataWatch {
    fn hits(&self, addr: u32, size: Size, write: bool) -> bool {
        if !(write && self.on_write || !write && self.on_read) {
            return false;
        }
        let mask = if self.mask_bits >= 32 {
            0
        } else {
            !((1u32 << self.mask_bits) - 1)
        };
        let lo = self.address & mask;
        let hi = lo.wrapping_add(!mask);
        let end = addr.wrapping_add(size.saturating_sub(1));
        addr <= hi && end >= lo
    }
}

/// The bus fault a debugger sees as an AP error and the CPU as a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bus fault at {address:#010x} ({size}-byte {})", if *.write { "write" } else { "read" })]
pub struct BusFault {
    pub address: u32,
    pub size: Size,
    pub write: bool,
}

pub struct Mcu {
    pub clock: Clock,
    /// The debug block's registers: shared here so the CPU can read DWT
    /// (CYCCNT) through [`PpbPort`] while the debugger owns the rest.
    pub dbg: DebugRegs,
    /// SCB, NVIC, SysTick, MPU and FPU registers and the exception state.
    pub scs: Scs,
    /// RM0090 rules software or the debugger broke (strict mode).
    pub strict: Strict,
    /// DMA2 stream interrupt lines as last driven (bit per stream).
    dma_irq_levels: u8,
    /// When SysTick's exception next comes due (virtual time; `u64::MAX`
    /// if it does not): the board pends it then and never runs past it
    /// unserved ([`Mcu::service_timers`]).
    pub timer_due: u64,
    pub flash: FlashCtrl,
    pub sram: Vec<u8>,
    pub ccm: Vec<u8>,
    pub rcc: Rcc,
    pub gpio: [GpioPort; 5],
    pub spi: [Spi; 3],
    pub iwdg: Iwdg,
    pub wwdg: Wwdg,
    pub crc: Crc,
    pub dma2: Dma,
    /// Set while DMA moves data (its own bus accesses must not re-enter).
    in_dma: bool,
    /// The core is halted with DBGMCU_APB1_FZ.DBG_WWDG_STOP (the board
    /// decides): the WWDG does not count.
    pub wwdg_debug_frozen: bool,
    /// Bumped by every CPU or debugger write to DMA2 or an SPI: the next
    /// DMA event may have moved closer (see `SimBoard::run_for`).
    pub dma_epoch: u64,
    /// The core waits (executes nothing) until then: a poll loop whose
    /// wait the board skips ([`Mcu::skip_toward`]).
    pub stall_until: Option<u64>,
    pwr: [u32; 2],
    pub chip: W25q64jv,
    pub wiring: Wiring,
    /// Last chip-select level seen by the chip (true = high = idle).
    cs_high: bool,
    /// End of the chip's BUSY period in which a selection was already
    /// emulated without a clock jump (see [`Mcu::update_cs`]).
    busy_polled: Option<u64>,
    /// Data comparators armed by the DWT (set with [`Mcu::set_watches`]).
    watches: [Option<DataWatch>; 4],
    /// Whether any of `watches` is armed (checked on every CPU access).
    watches_armed: bool,
    /// First watchpoint hit since the last check: (comparator, address).
    pub watch_hit: Option<(usize, u32)>,
    /// Bytes of the instruction the CPU is executing, set by the board while
    /// data watches are armed: CPU reads there are its fetch, which DWT data
    /// comparators never match (they watch data accesses only).
    pub fetch: Option<Range<u32>>,
    /// CPU writes so far, and CPU reads whose value may depend on time or
    /// have side effects (peripherals, the PPB): a loop that changes
    /// neither count nor any register is a provable wait.
    pub cpu_writes: u64,
    pub impure_reads: u64,
    /// CPU reads (fetches included) since the loop head was last passed,
    /// while the board watches a loop: (address, size, value). A loop
    /// iteration that wrote nothing is repeated exactly as long as these
    /// still read the same, whatever else DMA or the debugger changed.
    pub read_log: ReadLog,
    /// AIRCR.SYSRESETREQ written by the CPU: the board resets the chip
    /// after the instruction (the debugger's write resets at once).
    pub reset_requested: bool,
    /// Why the last bus fault happened, when a peripheral rule says more
    /// than its address (a wrong FLASH key): for the lockup message.
    pub fault_why: Option<String>,
}

impl Mcu {
    pub fn new(flash: Vec<u8>, chip: W25q64jv, wiring: Wiring, swd_hz: u64) -> Self {
        let mut mcu = Self {
            clock: Clock::new(swd_hz),
            dbg: DebugRegs::default(),
            scs: Scs::new(),
            strict: Strict::default(),
            dma_irq_levels: 0,
            timer_due: u64::MAX,
            flash: FlashCtrl::new(flash),
            sram: vec![0; SRAM_SIZE as usize],
            ccm: vec![0; CCM_SIZE as usize],
            rcc: Rcc::new(),
            gpio: [0, 1, 2, 3, 4].map(GpioPort::new),
            spi: [
                Spi::new(1, HSI_HZ),
                Spi::new(2, HSI_HZ),
                Spi::new(3, HSI_HZ),
            ],
            iwdg: Iwdg::new(),
            wwdg: Wwdg::new(),
            crc: Crc::new(),
            dma2: Dma::new(),
            in_dma: false,
            wwdg_debug_frozen: false,
            dma_epoch: 0,
            stall_until: None,
            pwr: [0; 2],
            chip,
            wiring,
            cs_high: true,
            busy_polled: None,
            watches: [None; 4],
            watches_armed: false,
            watch_hit: None,
            fetch: None,
            cpu_writes: 0,
            impure_reads: 0,
            read_log: ReadLog::default(),
            reset_requested: false,
            fault_why: None,
        };
        mcu.update_cs();
        mcu.apply_clocks();
        mcu
    }

    /// Make the core clock and the APB clocks follow RCC (after a write to
    /// RCC or a reset).
    /// The WWDG counts while clocked (APB1ENR.WWDGEN, at PCLK1) and not
    /// frozen by the debugger.
    pub fn sync_wwdg(&mut self) {
        let running = self.rcc.wwdg_clock_enabled() && !self.wwdg_debug_frozen;
        let now = self.clock.now();
        self.wwdg.set_clocking(running, self.rcc.pclk1_hz(), now);
    }

    fn apply_clocks(&mut self) {
        self.sync_wwdg();
        self.clock.set_cpu_hz(self.rcc.hclk_hz());
        let (p1, p2) = (self.rcc.pclk1_hz(), self.rcc.pclk2_hz());
        self.spi[0].set_pclk(p2);
        self.spi[1].set_pclk(p1);
        self.spi[2].set_pclk(p1);
        self.refresh_timer_due();
    }

    /// Recompute [`Mcu::timer_due`] (after a SysTick write, a clock change
    /// or a reset). One picosecond past the cycle's start, so the core
    /// cycle count has reached it by then.
    pub fn refresh_timer_due(&mut self) {
        self.timer_due = match self.scs.systick.next_exception() {
            Some(c) => {
                let cc = self.clock.core_cycles();
                self.now()
                    .saturating_add(self.clock.cycles_ps(c.saturating_sub(cc)))
                    .saturating_add(1)
            }
            None => u64::MAX,
        };
    }

    /// Pend SysTick's exception if it came due ([`Mcu::timer_due`] passed).
    /// Called after every instruction: the test is inlined, the work not.
    #[inline(always)]
    pub fn service_timers(&mut self) {
        if self.now() >= self.timer_due {
            self.pend_due_timers();
        }
    }

    #[inline(never)]
    fn pend_due_timers(&mut self) {
        let cc = self.clock.core_cycles();
        self.scs.service_systick(cc);
        self.refresh_timer_due();
    }

    /// Drive the NVIC lines of DMA2's streams from their flags and enables
    /// (only a change touches the NVIC: a line pends once per rise).
    fn update_dma_irqs(&mut self) {
        let clocked = self.rcc.dma2_clock_enabled();
        let levels = (0..8).fold(0u8, |l, x| {
            l | ((clocked && self.dma2.irq_line(x)) as u8) << x
        });
        let changed = levels ^ self.dma_irq_levels;
        if changed == 0 {
            return;
        }
        self.dma_irq_levels = levels;
        for (x, &irq) in DMA2_IRQS.iter().enumerate() {
            if changed >> x & 1 != 0 {
                self.scs.set_line(irq, levels >> x & 1 != 0);
            }
        }
    }

    /// The core's view of the SCS word at `addr`: the debug registers and
    /// VTOR are the debug block's (one model with the debugger's view),
    /// the rest the SCS model's; unmodelled addresses read as zero.
    fn cpu_scs_read(&mut self, addr: u32) -> u32 {
        use super::debug::{DCRDR, DCRSR, DEMCR, DFSR, DHCSR, VTOR};
        self.impure_reads += 1;
        let cycles = self.cycle_time();
        match addr {
            DHCSR => self.dbg.dhcsr_control(),
            DCRSR | DCRDR | DEMCR | DFSR | VTOR => self.dbg.read(addr, cycles).unwrap_or(0),
            _ => self.scs.read(addr, cycles, Side::Cpu).unwrap_or(0),
        }
    }

    /// A core write to the SCS word at `addr` under byte-lane `mask`.
    /// Software cannot write DHCSR, DCRSR or DCRDR (ARMv7-M C1.6); an
    /// AIRCR.SYSRESETREQ sets [`Mcu::reset_requested`].
    fn cpu_scs_write(&mut self, addr: u32, value: u32, mask: u32) {
        use super::debug::{DCRDR, DCRSR, DEMCR, DFSR, DHCSR, VTOR};
        self.cpu_writes += 1;
        let cycles = self.cycle_time();
        match addr {
            DHCSR | DCRSR | DCRDR => {}
            DEMCR | DFSR | VTOR => {
                let old = if addr == DFSR {
                    0
                } else {
                    self.dbg.read(addr, cycles).unwrap_or(0)
                };
                self.dbg.write(addr, old & !mask | value & mask, cycles);
            }
            _ => {
                if self.scs.write(addr, value, mask, cycles, Side::Cpu)
                    == Some(ScsEffect::SystemReset)
                {
                    self.reset_requested = true;
                }
            }
        }
        self.refresh_timer_due();
    }

    /// Wait states the fetch of the instruction at `pc` adds: FLASH_ACR
    /// LATENCY when it is fetched from flash with neither the prefetch
    /// buffer nor the instruction cache on (with either, the ART
    /// accelerator is taken to hide them), else none.
    pub fn wait_states(&self, pc: u32) -> u64 {
        let from_flash = pc < 0x0010_0000 || (FLASH_BASE..FLASH_BASE + 0x0010_0000).contains(&pc);
        let acr = self.flash.acr();
        if from_flash && acr & (3 << 8) == 0 {
            (acr & 7) as u64
        } else {
            0
        }
    }

    /// System reset: peripherals to their reset values; memories, the
    /// external chip and the clock are untouched. `csr_flags` are the
    /// RCC_CSR reset flags it adds; `None` is a power-on reset.
    pub fn reset_peripherals(&mut self, csr_flags: Option<u32>) {
        match csr_flags {
            Some(flags) => self.rcc.system_reset(flags),
            None => self.rcc.reset(),
        }
        for g in &mut self.gpio {
            g.reset();
        }
        for s in &mut self.spi {
            s.reset();
        }
        self.flash.reset();
        self.iwdg.reset();
        self.wwdg.reset();
        self.crc.reset();
        self.dma2.reset();
        self.update_dma_irqs();
        self.pwr = [0; 2];
        self.update_cs();
        self.apply_clocks();
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// CPU cycles elapsed in virtual time, skipped BUSY periods included:
    /// what DWT CYCCNT counts.
    pub fn cycle_time(&self) -> u64 {
        self.clock.core_cycles()
    }

    /// Read `size` bytes (1, 2 or 4, naturally aligned) as a little-endian value.
    #[inline]
    pub fn read(&mut self, addr: u32, size: Size, master: Master) -> Result<u32, BusFault> {
        let v = self.read_unlogged(addr, size, master);
        if master == Master::Cpu && self.read_log.on {
            self.read_log.push(addr, size, v.unwrap_or(0));
        }
        v
    }

    /// Whether every logged read still gives the value it gave (each is
    /// pure: a log with impure reads never gets here).
    pub fn log_still_holds(&mut self) -> bool {
        if self.read_log.overflow {
            return false;
        }
        let log = std::mem::take(&mut self.read_log.reads);
        let holds = log.iter().all(|&(addr, size, value)| {
            self.read_unlogged(addr, size as Size, Master::Debugger)
                .unwrap_or(0)
                == value
        });
        self.read_log.reads = log;
        holds
    }

    fn read_unlogged(&mut self, addr: u32, size: Size, master: Master) -> Result<u32, BusFault> {
        let fault = BusFault {
            address: addr,
            size,
            write: false,
        };
        if master == Master::Cpu {
            self.check_watch(addr, size, false);
        }
        let now = self.now();
        match addr {
            0..=0x0007_FFFF | FLASH_BASE..=0x0807_FFFF => {
                Ok(self.flash.read_array(addr & (FLASH_SIZE as u32 - 1), size))
            }
            CCM_BASE..=0x1000_FFFF => Ok(mem_read(&self.ccm, addr - CCM_BASE, size)),
            SRAM_BASE..=0x2001_FFFF => Ok(mem_read(&self.sram, addr - SRAM_BASE, size)),
            a if SYSMEM.contains(&a) => Ok(0),
            a if SIGNATURE.contains(&a) => Ok(mem_read(&signature(), a - SIGNATURE.start, size)),
            a if OPTION_BYTES.contains(&a) => {
                // RDP level 0, WDG_SW, no write protection (RM0090 3.6).
                let word = match (a - OPTION_BYTES.start) & !7 {
                    0 => 0xAAEC_5513,
                    _ => 0x0FFF_F000,
                };
                Ok(lane_read(word, a, size))
            }
            a if bitband_target(a).is_some() => self.bitband_read(a, size, master),
            _ => {
                if master == Master::Cpu && !self.read_is_pure(addr) {
                    self.impure_reads += 1;
                }
                let rule = self
                    .width_rule(addr, size)
                    .or_else(|| self.read_rule(addr & !3, now));
                if let Some(rule) = rule {
                    if self.strict.broke(rule, master) {
                        return Err(fault);
                    }
                }
                let (base, word) = self.read_periph(addr & !3, now).ok_or(fault)?;
                let _ = base;
                Ok(lane_read(word, addr, size))
            }
        }
    }

    pub fn write(
        &mut self,
        addr: u32,
        size: Size,
        value: u32,
        master: Master,
    ) -> Result<(), BusFault> {
        let fault = BusFault {
            address: addr,
            size,
            write: true,
        };
        if master == Master::Cpu {
            self.check_watch(addr, size, true);
            self.cpu_writes += 1;
        }
        let now = self.now();
        match addr {
            0..=0x0007_FFFF | FLASH_BASE..=0x0807_FFFF => {
                if self.flash.programming() {
                    let psize_bytes = 1 << self.flash.psize();
                    let rule = match psize_bytes {
                        8 => Some(Rule::FlashPsizeForVoltage),
                        p if p != size => Some(Rule::FlashPsizeMismatch {
                            psize_bytes: p,
                            size,
                        }),
                        _ => None,
                    };
                    if let Some(rule) = rule {
                        if self.strict.broke(rule, master) {
                            return Err(fault);
                        }
                    }
                }
                self.flash
                    .write_array(addr & (FLASH_SIZE as u32 - 1), value, size, now)
                    .map_err(|_| fault)
            }
            CCM_BASE..=0x1000_FFFF => {
                mem_write(&mut self.ccm, addr - CCM_BASE, size, value);
                Ok(())
            }
            SRAM_BASE..=0x2001_FFFF => {
                mem_write(&mut self.sram, addr - SRAM_BASE, size, value);
                Ok(())
            }
            a if SYSMEM.contains(&a) || SIGNATURE.contains(&a) || OPTION_BYTES.contains(&a) => {
                Ok(())
            }
            a if bitband_target(a).is_some() => self.bitband_write(a, size, value, master),
            _ => {
                let shift = (addr & 3) * 8;
                let lanes = match size {
                    1 => 0xFF,
                    2 => 0xFFFF,
                    _ => 0xFFFF_FFFF,
                } << shift;
                let value = value.wrapping_shl(shift);
                let rule = self
                    .width_rule(addr, size)
                    .or_else(|| self.write_rule(addr & !3, value, lanes, now));
                if let Some(rule) = rule {
                    if self.strict.broke(rule, master) {
                        return Err(fault);
                    }
                }
                let done = self.write_periph(addr & !3, value, lanes, now);
                // A GPIO write that selected the chip too soon (it has
                // taken effect: the rule can only be reported).
                if let Some((gap_ps, min_ps)) = self.chip.take_short_deselect() {
                    let rule = Rule::FlashCsDeselectTooShort { gap_ps, min_ps };
                    if self.strict.broke(rule, master) {
                        return Err(fault);
                    }
                }
                done.then_some(()).ok_or(fault)
            }
        }
    }

    /// A read of a bit-band alias: the bit, as 0 or 1, read with an access
    /// of the alias access's size (RM0090 2.3.3, Cortex-M4 TRM 3.7).
    fn bitband_read(&mut self, alias: u32, size: Size, master: Master) -> Result<u32, BusFault> {
        let (target, bit) = bitband_access(alias, size);
        Ok(self.read_unlogged(target, size, master)? >> bit & 1)
    }

    /// A write to a bit-band alias: read-modify-write of one bit of the
    /// target (bit 0 of `value` is the bit's new value).
    fn bitband_write(
        &mut self,
        alias: u32,
        size: Size,
        value: u32,
        master: Master,
    ) -> Result<(), BusFault> {
        let (target, bit) = bitband_access(alias, size);
        let old = self.read_unlogged(target, size, master)?;
        let new = old & !(1 << bit) | (value & 1) << bit;
        self.write(target, size, new, master)
    }

    /// The RM0090 rule an access of `size` bytes at `addr` breaks by its
    /// width: DMA2's programming interface and the CRC unit take 32-bit
    /// accesses only (a bit-band alias access has its alias's size).
    fn width_rule(&self, addr: u32, size: Size) -> Option<Rule> {
        if size == 4 {
            return None;
        }
        let (block, section) = match addr & !(PERIPH_BLOCK - 1) {
            DMA2_BASE if self.rcc.dma2_clock_enabled() => ("DMA2", "10.2"),
            CRC_BASE if self.rcc.crc_clock_enabled() => ("CRC", "4.4"),
            _ => return None,
        };
        Some(Rule::WordOnly {
            block,
            section,
            addr,
            size,
        })
    }

    /// The RM0090 rule a read of the register word at `addr` breaks.
    fn read_rule(&mut self, addr: u32, now: u64) -> Option<Rule> {
        if addr & (PERIPH_BLOCK - 1) != super::stm32::spi::DR {
            return None;
        }
        let idx = SPI_BASES
            .iter()
            .position(|&b| b == addr & !(PERIPH_BLOCK - 1))?;
        if !self.rcc.spi_clock_enabled(idx as u8 + 1) {
            return None;
        }
        let (spi, mut link) = self.spi_and_link(idx);
        spi.advance(now, &mut link);
        // With OVR set, a DR read is the first step of its clear sequence
        // (RM0090 28.4.8).
        let sr = spi.status();
        let pending = super::stm32::spi::SR_RXNE | super::stm32::spi::SR_OVR;
        (sr & pending == 0).then_some(Rule::SpiDrWithoutRxne { spi: idx as u8 + 1 })
    }

    /// The RM0090 rule writing `value` under `mask` to the register word
    /// at `addr` breaks.
    fn write_rule(&mut self, addr: u32, value: u32, mask: u32, now: u64) -> Option<Rule> {
        use super::stm32::{dma, spi};
        let base = addr & !(PERIPH_BLOCK - 1);
        let off = addr & (PERIPH_BLOCK - 1);
        let merge = |old: u32| old & !mask | value & mask;
        match base {
            DMA2_BASE if self.rcc.dma2_clock_enabled() => {
                let range = dma::STREAM0..dma::STREAM0 + 8 * dma::STREAM_STRIDE;
                if !range.contains(&off) {
                    return None;
                }
                let x = (off - dma::STREAM0) / dma::STREAM_STRIDE;
                let reg = (off - dma::STREAM0) % dma::STREAM_STRIDE;
                let cr = self.dma2.read(dma::STREAM0 + x * dma::STREAM_STRIDE);
                let new = merge(cr);
                let stream = x as u8;
                if cr & dma::CR_EN != 0 {
                    // Clearing EN (with whatever else) is how a stream stops.
                    let reconfigures = reg != 0 || (new & dma::CR_EN != 0 && new != cr);
                    reconfigures.then_some(Rule::DmaConfigWhileEnabled {
                        stream,
                        offset: reg,
                    })
                } else if reg == 0 && new & dma::CR_EN != 0 {
                    let isr = self.dma2.read(if x < 4 { dma::LISR } else { dma::HISR });
                    let flags = (isr >> dma::flag_shift(x as usize)) & 0x3D;
                    (flags != 0).then_some(Rule::DmaEnableWithFlags { stream, flags })
                } else {
                    None
                }
            }
            FLASH_IF_BASE => {
                const CR: u32 = 0x10;
                let lock = super::stm32::flash::CR_LOCK;
                (off == CR && self.flash.is_locked() && value & mask & !lock != 0)
                    .then_some(Rule::FlashCrWhileLocked)
            }
            b => {
                let idx = SPI_BASES.iter().position(|&s| s == b)?;
                let n = idx as u8 + 1;
                // DMA writes DR only when TXE requests it: no rule to check
                // (and no SPI to advance per byte moved).
                let dma_dr = self.in_dma && off == spi::DR;
                if !matches!(off, spi::CR1 | spi::DR) || dma_dr || !self.rcc.spi_clock_enabled(n) {
                    return None;
                }
                let (port, mut link) = self.spi_and_link(idx);
                port.advance(now, &mut link);
                let sr = port.status();
                if off == spi::DR {
                    let writes = mask & 0xFFFF != 0;
                    return (writes && sr & spi::SR_TXE == 0)
                        .then_some(Rule::SpiDrWithoutTxe { spi: n });
                }
                const FIXED: u32 = 0x3F | spi::CR1_LSBFIRST | spi::CR1_DFF; // CPHA..BR
                let old = port.cr1();
                let new = merge(old);
                let changed = (old ^ new) & FIXED & !spi::CR1_SPE;
                let busy = sr & spi::SR_TXE == 0 || sr & spi::SR_BSY != 0;
                if old & spi::CR1_SPE != 0 && new & spi::CR1_SPE == 0 && busy {
                    return Some(Rule::SpiDisabledWhileBusy { spi: n, sr });
                }
                (old & new & spi::CR1_SPE != 0 && changed != 0)
                    .then_some(Rule::SpiCr1WhileEnabled { spi: n, changed })
            }
        }
    }

    /// Whether a CPU read of the peripheral register at `addr` has no side
    /// effect and returns a value that only a write or a DMA event can
    /// change: DMA2's registers (streams move data only in
    /// [`Mcu::service_dma`], at the board's DMA events or after a bus
    /// write) and the CRC unit's (its result changes only on a DR write).
    /// A loop polling them is still a provable wait up to the next event.
    fn read_is_pure(&self, addr: u32) -> bool {
        matches!(addr & !(PERIPH_BLOCK - 1), DMA2_BASE | CRC_BASE)
    }

    /// Arm the DWT data comparators the bus matches CPU accesses against.
    pub fn set_watches(&mut self, watches: [Option<DataWatch>; 4]) {
        self.watches = watches;
        self.watches_armed = watches.iter().any(Option::is_some);
    }

    pub fn watches_armed(&self) -> bool {
        self.watches_armed
    }

    #[inline]
    fn check_watch(&mut self, addr: u32, size: Size, write: bool) {
        if !self.watches_armed || self.watch_hit.is_some() {
            return;
        }
        if !write && self.fetch.as_ref().is_some_and(|f| f.contains(&addr)) {
            return;
        }
        for (i, w) in self.watches.iter().enumerate() {
            if let Some(w) = w {
                if w.hits(addr, size, write) {
                    self.watch_hit = Some((i, addr));
                    return;
                }
            }
        }
    }

    /// Returns (peripheral base, register word) for a mapped peripheral.
    fn read_periph(&mut self, addr: u32, now: u64) -> Option<(u32, u32)> {
        let base = addr & !(PERIPH_BLOCK - 1);
        let off = addr & (PERIPH_BLOCK - 1);
        let word = match base {
            IWDG_BASE => self.iwdg.read(off, now),
            // Registers read as zero with the clock off, as for SPI.
            WWDG_BASE if self.rcc.wwdg_clock_enabled() => self.wwdg.read(off, now),
            WWDG_BASE => 0,
            CRC_BASE if self.rcc.crc_clock_enabled() => self.crc.read(off),
            DMA2_BASE if self.rcc.dma2_clock_enabled() => self.dma2.read(off),
            DMA2_BASE => 0,
            CRC_BASE => 0,
            PWR_BASE => *self.pwr.get((off / 4) as usize).unwrap_or(&0),
            // A started IWDG forces the LSI on (RM0090 21.3.1), so
            // RCC_CSR.LSIRDY reads 1 whatever LSION says.
            RCC_BASE if off == super::stm32::rcc::CSR && self.iwdg.started() => {
                self.rcc.read(off, now) | 1 << 1
            }
            RCC_BASE => self.rcc.read(off, now),
            FLASH_IF_BASE => {
                let v = self.flash.read(off, now);
                // A poll of SR while BSY: jump to the end of the operation.
                if off == 0x0C && v & (1 << 16) != 0 {
                    if let Some(end) = self.flash.busy_until() {
                        self.skip_toward(end);
                    }
                }
                v
            }
            b if (GPIO_BASE..GPIO_BASE + 5 * PERIPH_BLOCK).contains(&b) => {
                let port = ((b - GPIO_BASE) / PERIPH_BLOCK) as usize;
                if !self.rcc.gpio_clock_enabled(port as u8) {
                    0
                } else {
                    self.gpio[port].read(off, now)
                }
            }
            b => {
                let idx = SPI_BASES.iter().position(|&s| s == b)?;
                if !self.rcc.spi_clock_enabled(idx as u8 + 1) {
                    0
                } else {
                    let (spi, mut link) = self.spi_and_link(idx);
                    let v = spi.read(off, now, &mut link);
                    // A poll of SR waiting for a frame in flight (RXNE=0,
                    // BSY=1): jump to the frame's end instead of emulating
                    // the poll loop. The reply still says "not yet", as the
                    // first poll of a real loop would.
                    const RXNE: u32 = 1 << 0;
                    const BSY: u32 = 1 << 7;
                    if off == 0x08 && v & RXNE == 0 && v & BSY != 0 {
                        if let Some(end) = spi.busy_until() {
                            self.skip_toward(end);
                        }
                    }
                    v
                }
            }
        };
        Some((base, word))
    }

    fn write_periph(&mut self, addr: u32, value: u32, mask: u32, now: u64) -> bool {
        let base = addr & !(PERIPH_BLOCK - 1);
        let off = addr & (PERIPH_BLOCK - 1);
        match base {
            IWDG_BASE => self.iwdg.write(off, value, mask, now),
            WWDG_BASE => {
                if self.rcc.wwdg_clock_enabled() {
                    self.wwdg.write(off, value, mask, now);
                }
            }
            CRC_BASE => {
                if self.rcc.crc_clock_enabled() {
                    self.crc.write(off, value, mask);
                }
            }
            DMA2_BASE => {
                if self.rcc.dma2_clock_enabled() {
                    self.dma2.write(off, value, mask);
                    self.service_dma();
                    self.dma_epoch = self.dma_epoch.wrapping_add(1);
                }
                self.update_dma_irqs();
            }
            PWR_BASE => {
                if let Some(r) = self.pwr.get_mut((off / 4) as usize) {
                    *r = (*r & !mask) | (value & mask);
                }
            }
            RCC_BASE => {
                self.rcc.write(off, value, mask, now);
                self.apply_peripheral_resets();
                self.update_cs();
                self.apply_clocks();
            }
            FLASH_IF_BASE => {
                let ok = self.flash.write(off, value, mask, now);
                if !ok {
                    self.fault_why = Some(format!(
                        "FLASH {} written with a wrong key, or after one before a reset: a bus \
                         error, and the register stays locked (RM0090 3.5.1)",
                        if off == 0x04 { "KEYR" } else { "OPTKEYR" }
                    ));
                }
                return ok;
            }
            b if (GPIO_BASE..GPIO_BASE + 5 * PERIPH_BLOCK).contains(&b) => {
                let port = ((b - GPIO_BASE) / PERIPH_BLOCK) as usize;
                // Writes to an unclocked peripheral are ignored, as on silicon.
                if self.rcc.gpio_clock_enabled(port as u8) {
                    self.gpio[port].write(off, value, mask, now);
                    self.update_cs();
                }
            }
            b => {
                let Some(idx) = SPI_BASES.iter().position(|&s| s == b) else {
                    return false;
                };
                if self.rcc.spi_clock_enabled(idx as u8 + 1) {
                    let (spi, mut link) = self.spi_and_link(idx);
                    spi.write(off, value, mask, now, &mut link);
                    self.service_dma();
                    self.dma_epoch = self.dma_epoch.wrapping_add(1);
                }
            }
        }
        true
    }

    fn apply_peripheral_resets(&mut self) {
        if self.rcc.dma2_in_reset() {
            self.dma2.reset();
        }
        self.update_dma_irqs();
        if self.rcc.crc_in_reset() {
            self.crc.reset();
        }
        for port in 0..5u8 {
            if self.rcc.gpio_in_reset(port) {
                self.gpio[port as usize].reset();
            }
        }
        for spi in 1..=3u8 {
            if self.rcc.spi_in_reset(spi) {
                self.spi[spi as usize - 1].reset();
            }
        }
    }

    /// Let the core wait for `end` (a poll loop's wait ending then, at
    /// most [`MAX_SKIP_PS`] ahead) without emulating the loop: the board
    /// stops executing until then but keeps serving the debug port at its
    /// own times, so the chip's BUSY time overlaps link time as on silicon
    /// instead of adding to it (see `SimBoard::run_for`).
    fn skip_toward(&mut self, end: u64) {
        let now = self.now();
        let to = end.min(now.saturating_add(MAX_SKIP_PS));
        if to > now {
            self.stall_until = Some(to);
        }
    }

    /// Tell the chip about a chip-select edge. While the chip is busy, a new
    /// selection is a status poll: jump the clock towards the end of BUSY
    /// rather than emulating every poll. The first poll of each BUSY period
    /// is emulated as is, so it still reads BUSY, as the first poll of a
    /// real loop would: what the loop does between polls (a deadline
    /// check, a watchdog refresh) happens at least once.
    fn update_cs(&mut self) {
        let cs = self.wiring.cs;
        let port = &self.gpio[cs.port as usize % 5];
        let high = match port.pin_mode(cs.pin) {
            PinMode::Output => port.output_level(cs.pin),
            // Not driven: the board's pull-up keeps the chip deselected.
            _ => true,
        };
        if high == self.cs_high {
            return;
        }
        self.cs_high = high;
        let now = self.now();
        if !high {
            if let Some(end) = self.chip.busy_until(now) {
                if end > now && self.busy_polled.replace(end) == Some(end) {
                    self.skip_toward(end);
                }
            }
        }
        let now = self.now();
        self.chip.chip_select(!high, now);
    }

    /// The SPI instance `idx` and a link that reaches the chip only if that
    /// instance is the wired one and the pins are configured as wired.
    fn spi_and_link(&mut self, idx: usize) -> (&mut Spi, ChipLink<'_>) {
        let w = self.wiring;
        let wired = w.spi as usize == idx + 1;
        let af = |p: GpioPin| {
            self.rcc.gpio_clock_enabled(p.port)
                && self.gpio[p.port as usize % 5].pin_mode(p.pin) == PinMode::Alternate(w.af)
        };
        let (sck, mosi, miso) = (wired && af(w.sck), wired && af(w.mosi), wired && af(w.miso));
        let link = ChipLink {
            chip: &mut self.chip,
            counters: &mut self.clock.counters,
            sck,
            mosi,
            miso,
        };
        (&mut self.spi[idx], link)
    }

    /// Move every DMA2 item whose request is up at `now`: memory-to-memory
    /// streams at once, SPI1 streams (channel 3) on TXE/RXNE with
    /// CR2.TXDMAEN/RXDMAEN. A bus fault ends the stream (EN cleared).
    pub fn service_dma(&mut self) {
        if self.in_dma || !self.rcc.dma2_clock_enabled() {
            return;
        }
        self.in_dma = true;
        for _ in 0..MAX_DMA_ITEMS {
            let mut moved = false;
            for x in 0..8 {
                let Some(item) = self.dma2.next_item(x) else {
                    continue;
                };
                let dir = self.dma2.dir(x);
                if dir != Dir::MemToMem && !self.spi1_dma_request(x, dir) {
                    continue;
                }
                // CCM RAM is on the core's D-bus only: DMA cannot reach it
                // (RM0090 2.3.1, figure 1), so it is a bus error as any
                // unmapped address is.
                let ccm = |a: u32| (CCM_BASE..CCM_BASE + 0x1_0000).contains(&a);
                let moved_ok = if ccm(item.src) || ccm(item.dst) {
                    Err(BusFault {
                        address: if ccm(item.src) { item.src } else { item.dst },
                        size: item.size,
                        write: !ccm(item.src),
                    })
                } else {
                    self.read(item.src, item.size, Master::Debugger)
                        .and_then(|v| self.write(item.dst, item.size, v, Master::Debugger))
                };
                match moved_ok {
                    Ok(()) => {
                        self.dma2.item_done(x);
                        moved = true;
                    }
                    Err(_) => self.dma2.transfer_error(x),
                }
            }
            if !moved {
                break;
            }
        }
        self.in_dma = false;
        self.update_dma_irqs();
    }

    fn spi1_dma_request(&mut self, x: usize, dir: Dir) -> bool {
        if self.dma2.channel(x) != SPI1_DMA_CHANNEL || !self.rcc.spi_clock_enabled(1) {
            return false;
        }
        let now = self.now();
        let (spi, mut link) = self.spi_and_link(0);
        spi.advance(now, &mut link);
        match (x, dir) {
            (0 | 2, Dir::PeriphToMem) => spi.rx_dma_request(),
            (3 | 5, Dir::MemToPeriph) => spi.tx_dma_request(),
            _ => false,
        }
    }

    /// When DMA2 may next have work: the end of SPI1's frame on the wire,
    /// while a stream waits on SPI1.
    pub fn next_dma_event(&self) -> Option<u64> {
        let waiting =
            (0..8).any(|x| self.dma2.waiting(x) && self.dma2.channel(x) == SPI1_DMA_CHANNEL);
        if waiting && self.rcc.dma2_clock_enabled() {
            self.spi[0].next_event()
        } else {
            None
        }
    }

    /// Bring time-driven peripherals up to `now` (SPI frames in flight).
    pub fn advance(&mut self) {
        let now = self.now();
        for idx in 0..3 {
            let (spi, mut link) = self.spi_and_link(idx);
            spi.advance(now, &mut link);
        }
    }
}

/// The byte and bit a bit-band alias address stands for: 32 alias bytes
/// (8 words) per target byte, SRAM 0x2000_0000 from 0x2200_0000 and
/// peripherals 0x4000_0000 from 0x4200_0000, 1 MiB each (RM0090 2.3.3).
fn bitband_target(alias: u32) -> Option<(u32, u32)> {
    let base = match alias {
        0x2200_0000..=0x23FF_FFFF => 0x2000_0000,
        0x4200_0000..=0x43FF_FFFF => 0x4000_0000,
        _ => return None,
    };
    let off = alias & 0x01FF_FFFF;
    Some((base + off / 32, (off / 4) & 7))
}

/// The naturally aligned `size`-byte access that contains the alias's
/// bit, and the bit's position in it.
fn bitband_access(alias: u32, size: Size) -> (u32, u32) {
    let (byte, bit) = bitband_target(alias).unwrap_or((alias, 0));
    let target = byte & !(size - 1);
    (target, (byte - target) * 8 + bit)
}

/// Reads logged per loop iteration, at most [`ReadLog::CAPACITY`].
#[derive(Debug, Default)]
pub struct ReadLog {
    pub on: bool,
    pub overflow: bool,
    pub reads: Vec<(u32, u8, u32)>,
}

impl ReadLog {
    pub const CAPACITY: usize = 128;

    /// Start a fresh iteration's log (`on`: log at all).
    pub fn restart(&mut self, on: bool) {
        self.on = on;
        self.overflow = false;
        self.reads.clear();
    }

    #[inline]
    fn push(&mut self, addr: u32, size: Size, value: u32) {
        if self.reads.len() < Self::CAPACITY {
            self.reads.push((addr, size as u8, value));
        } else {
            self.overflow = true;
        }
    }
}

/// The SPI bus as the chip sees it: bytes only arrive when SCK is routed to
/// the SPI, MOSI carries data only when routed, MISO is read only when routed
/// (otherwise the pull-up gives 0xFF).
struct ChipLink<'a> {
    chip: &'a mut W25q64jv,
    counters: &'a mut super::clock::Counters,
    sck: bool,
    mosi: bool,
    miso: bool,
}

impl SpiLink for ChipLink<'_> {
    fn exchange(&mut self, mosi: u16, bits: u8, now: u64) -> u16 {
        if !self.sck {
            return if bits == 16 { 0xFFFF } else { 0xFF };
        }
        let out = |v: u8| if self.mosi { v } else { 0xFF };
        let mut miso: u16 = 0;
        let bytes: &[u8] = if bits == 16 {
            &[(mosi >> 8) as u8, mosi as u8]
        } else {
            &[mosi as u8]
        };
        for &b in bytes {
            let r = self.chip.exchange(out(b), now);
            self.counters.spi_bytes += 1;
            miso = (miso << 8) | if self.miso { r as u16 } else { 0xFF };
        }
        miso
    }
}

fn mem_read(mem: &[u8], off: u32, size: Size) -> u32 {
    let off = off as usize;
    // Whole accesses inside the memory (every CPU fetch): one load.
    match size {
        4 => {
            if let Some(b) = mem.get(off..off + 4) {
                return u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        2 => {
            if let Some(b) = mem.get(off..off + 2) {
                return u16::from_le_bytes([b[0], b[1]]) as u32;
            }
        }
        _ => {}
    }
    let mut v = 0u32;
    for i in (0..size as usize).rev() {
        v = (v << 8) | *mem.get(off + i).unwrap_or(&0) as u32;
    }
    v
}

fn mem_write(mem: &mut [u8], off: u32, size: Size, value: u32) {
    let off = off as usize;
    if size == 4 {
        if let Some(b) = mem.get_mut(off..off + 4) {
            b.copy_from_slice(&value.to_le_bytes());
            return;
        }
    }
    for i in 0..size as usize {
        if let Some(b) = mem.get_mut(off + i) {
            *b = (value >> (8 * i)) as u8;
        }
    }
}

/// Extract the `size`-byte lane at `addr` from a 32-bit register word.
fn lane_read(word: u32, addr: u32, size: Size) -> u32 {
    let v = word >> ((addr & 3) * 8);
    match size {
        1 => v & 0xFF,
        2 => v & 0xFFFF,
        _ => v,
    }
}

/// The CPU's view of the bus. Misaligned word/halfword accesses are split
/// into bytes, as the Cortex-M4 does for normal memory.
impl MemoryInterface for Mcu {
    fn read_u8(&mut self, address: u32, _env: &mut Env) -> MemoryReadResult<u8> {
        self.read(address, 1, Master::Cpu)
            .map(|v| v as u8)
            .map_err(|_| MemoryAccessError::InvalidAddress)
    }
    fn write_u8(&mut self, address: u32, value: u8, _env: &mut Env) -> MemoryWriteResult {
        self.write(address, 1, value as u32, Master::Cpu)
            .map_err(|_| MemoryAccessError::InvalidAddress)
    }
    fn read_u16le(&mut self, address: u32, env: &mut Env) -> MemoryReadResult<u16> {
        if address & 1 != 0 {
            let lo = self.read_u8(address, env)? as u16;
            let hi = self.read_u8(address.wrapping_add(1), env)? as u16;
            return Ok(lo | hi << 8);
        }
        self.read(address, 2, Master::Cpu)
            .map(|v| v as u16)
            .map_err(|_| MemoryAccessError::InvalidAddress)
    }
    fn write_u16le(&mut self, address: u32, value: u16, env: &mut Env) -> MemoryWriteResult {
        if address & 1 != 0 {
            self.write_u8(address, value as u8, env)?;
            return self.write_u8(address.wrapping_add(1), (value >> 8) as u8, env);
        }
        self.write(address, 2, value as u32, Master::Cpu)
            .map_err(|_| MemoryAccessError::InvalidAddress)
    }
    fn read_u32le(&mut self, address: u32, env: &mut Env) -> MemoryReadResult<u32> {
        if address & 3 != 0 {
            let mut v = 0u32;
            for i in (0..4).rev() {
                v = v << 8 | self.read_u8(address.wrapping_add(i), env)? as u32;
            }
            return Ok(v);
        }
        self.read(address, 4, Master::Cpu)
            .map_err(|_| MemoryAccessError::InvalidAddress)
    }
    fn write_u32le(&mut self, address: u32, value: u32, env: &mut Env) -> MemoryWriteResult {
        if address & 3 != 0 {
            for i in 0..4 {
                self.write_u8(address.wrapping_add(i), (value >> (8 * i)) as u8, env)?;
            }
            return Ok(());
        }
        self.write(address, 4, value, Master::Cpu)
            .map_err(|_| MemoryAccessError::InvalidAddress)
    }
    fn size(&self) -> u32 {
        BUS_SIZE
    }
}

/// The DWT/FPB/ITM and external PPB (DBGMCU, ROM table) as the CPU sees
/// them. armagnac serves the SCS itself; this window covers `base..base+size`.
pub struct PpbPort {
    pub mcu: std::rc::Rc<std::cell::RefCell<Mcu>>,
    pub base: u32,
    pub size: u32,
}

impl PpbPort {
    fn word(&mut self, offset: u32) -> MemoryReadResult<u32> {
        let addr = self.base.wrapping_add(offset & !3);
        self.mcu.borrow_mut().impure_reads += 1;
        let m = self.mcu.borrow();
        let v = m
            .dbg
            .read(addr, m.cycle_time())
            .ok_or(MemoryAccessError::InvalidAddress)?;
        Ok(v >> ((offset & 3) * 8))
    }
}

impl MemoryInterface for PpbPort {
    fn read_u8(&mut self, address: u32, _env: &mut Env) -> MemoryReadResult<u8> {
        self.word(address).map(|v| v as u8)
    }
    fn read_u16le(&mut self, address: u32, _env: &mut Env) -> MemoryReadResult<u16> {
        self.word(address).map(|v| v as u16)
    }
    fn read_u32le(&mut self, address: u32, _env: &mut Env) -> MemoryReadResult<u32> {
        self.word(address)
    }
    fn write_u32le(&mut self, address: u32, value: u32, _env: &mut Env) -> MemoryWriteResult {
        let addr = self.base.wrapping_add(address);
        let mut m = self.mcu.borrow_mut();
        m.cpu_writes += 1;
        let t = m.cycle_time();
        m.dbg
            .write(addr, value, t)
            .map(|_| ())
            .ok_or(MemoryAccessError::InvalidAddress)
    }
    fn size(&self) -> u32 {
        self.size
    }
}

/// The System Control Space as the CPU sees it (0xE000_E000..0xE000_F000):
/// the CPU wrapper routes its loads and stores here (see `scs_access.rs`).
pub struct ScsPort {
    pub mcu: std::rc::Rc<std::cell::RefCell<Mcu>>,
}

impl ScsPort {
    const BASE: u32 = super::scs_access::SCS_BASE;

    fn read(&mut self, offset: u32) -> u32 {
        let w = self
            .mcu
            .borrow_mut()
            .cpu_scs_read(Self::BASE + (offset & !3));
        w >> ((offset & 3) * 8)
    }

    fn write(&mut self, offset: u32, value: u32, lanes: u32) {
        let shift = (offset & 3) * 8;
        self.mcu.borrow_mut().cpu_scs_write(
            Self::BASE + (offset & !3),
            value << shift,
            lanes << shift,
        );
    }
}

impl MemoryInterface for ScsPort {
    fn read_u8(&mut self, address: u32, _env: &mut Env) -> MemoryReadResult<u8> {
        Ok(self.read(address) as u8)
    }
    fn read_u16le(&mut self, address: u32, _env: &mut Env) -> MemoryReadResult<u16> {
        Ok(self.read(address) as u16)
    }
    fn read_u32le(&mut self, address: u32, _env: &mut Env) -> MemoryReadResult<u32> {
        Ok(self.read(address))
    }
    fn write_u8(&mut self, address: u32, value: u8, _env: &mut Env) -> MemoryWriteResult {
        self.write(address, value as u32, 0xFF);
        Ok(())
    }
    fn write_u16le(&mut self, address: u32, value: u16, _env: &mut Env) -> MemoryWriteResult {
        self.write(address, value as u32, 0xFFFF);
        Ok(())
    }
    fn write_u32le(&mut self, address: u32, value: u32, _env: &mut Env) -> MemoryWriteResult {
        self.write(address, value, !0);
        Ok(())
    }
    fn size(&self) -> u32 {
        super::scs_access::SCS_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mcu() -> Mcu {
        let chip = W25q64jv::new(vec![0xFF; super::super::w25q64jv::SIZE]);
        Mcu::new(vec![0xFF; FLASH_SIZE], chip, Wiring::default(), 4_000_000)
    }

    #[test]
    fn bit_band_aliases_read_and_write_single_bits_of_sram_and_peripherals() {
        let mut m = mcu();
        // SRAM: bit 3 of byte 0x2000_0001 is at 0x2200_0000 + 1*32 + 3*4.
        let alias = 0x2200_0000 + 32 + 3 * 4;
        m.write(SRAM_BASE, 4, 0xFFFF_00FF, Master::Cpu).unwrap();
        m.write(alias, 4, 1, Master::Cpu).unwrap();
        assert_eq!(m.read(SRAM_BASE, 4, Master::Cpu).unwrap(), 0xFFFF_08FF);
        assert_eq!(m.read(alias, 4, Master::Cpu).unwrap(), 1);
        assert_eq!(m.read(alias + 4, 4, Master::Cpu).unwrap(), 0, "bit 4");
        m.write(0x2200_0000, 1, 0xFE, Master::Cpu).unwrap(); // byte 0 bit 0 <- 0
        assert_eq!(m.read(SRAM_BASE, 4, Master::Cpu).unwrap(), 0xFFFF_08FE);
        // RCC_AHB1ENR (0x4002_3830) bit 1, GPIOBEN, as a HAL enables it.
        let gpioben = 0x4200_0000 + (RCC_BASE + 0x30 - 0x4000_0000) * 32 + 4;
        m.write(gpioben, 4, 1, Master::Cpu).unwrap();
        assert_eq!(m.read(RCC_BASE + 0x30, 4, Master::Cpu).unwrap() & 2, 2);
        assert!(m.rcc.gpio_clock_enabled(1));
        assert_eq!(m.read(gpioben, 4, Master::Debugger).unwrap(), 1);
        m.write(gpioben, 4, 0, Master::Cpu).unwrap();
        assert!(!m.rcc.gpio_clock_enabled(1));
    }

    #[test]
    fn strict_mode_counts_each_broken_rm0090_rule_and_enforces_it() {
        const SPI1_CR1: u32 = 0x4001_3000;
        const S0CR: u32 = DMA2_BASE + 0x10;
        let mut m = mcu();
        let w = |m: &mut Mcu, a: u32, v: u32| m.write(a, 4, v, Master::Cpu).unwrap();
        w(&mut m, RCC_BASE + 0x44, 1 << 12); // SPI1EN
        w(&mut m, RCC_BASE + 0x30, 1 << 22); // DMA2EN
        w(&mut m, SPI1_CR1, 0x44); // MSTR, SPE
        assert_eq!(m.strict.count, 0);
        w(&mut m, SPI1_CR1, 0x44 | 3 << 3); // BR while SPE=1
        assert_eq!(m.strict.count, 1, "{:?}", m.strict.first);
        w(&mut m, SPI1_CR1, 0x04 | 3 << 3); // BR with SPE cleared: fine
        m.read(SPI1_CR1 + 0x0C, 4, Master::Cpu).unwrap(); // DR, RXNE=0
        assert_eq!(m.strict.count, 2);
        w(&mut m, S0CR + 4, 4);
        w(&mut m, S0CR + 8, SRAM_BASE);
        w(&mut m, S0CR + 12, SRAM_BASE + 0x100);
        w(&mut m, S0CR, 0x81); // memory-to-memory, EN: done at once, TCIF
        assert_eq!(m.strict.count, 2);
        w(&mut m, S0CR + 4, 4);
        w(&mut m, S0CR, 0x81); // TCIF0 still pending
        assert_eq!(m.strict.count, 3);
        w(&mut m, DMA2_BASE + 0x08, 0x3D); // LIFCR
        w(&mut m, S0CR + 4, 4);
        w(&mut m, S0CR, 0x81);
        assert_eq!(m.strict.count, 3, "flags cleared first");
        w(&mut m, FLASH_IF_BASE + 0x10, 1); // CR.PG while locked
        assert_eq!(m.strict.count, 4);
        w(&mut m, FLASH_IF_BASE + 0x04, 0x4567_0123); // KEYR
        w(&mut m, FLASH_IF_BASE + 0x04, 0xCDEF_89AB);
        w(&mut m, FLASH_IF_BASE + 0x10, 3 << 8 | 1); // PSIZE x64, PG
        w(&mut m, FLASH_BASE, 0);
        assert_eq!(m.strict.count, 5, "x64 needs VPP");
        w(&mut m, FLASH_IF_BASE + 0x10, 2 << 8 | 1); // PSIZE x32, PG
        m.write(FLASH_BASE + 4, 1, 0, Master::Cpu).unwrap();
        assert_eq!(m.strict.count, 6, "a byte under x32");
        assert!(
            m.strict.lockup.is_none(),
            "only counted without enforcement"
        );
        m.strict.enforce = true;
        m.write(SPI1_CR1 + 0x0C, 4, 0, Master::Debugger).unwrap();
        m.write(SPI1_CR1, 4, 0x44, Master::Debugger).unwrap();
        assert!(
            m.write(SPI1_CR1, 4, 0x44 | 1 << 3, Master::Debugger)
                .is_err(),
            "enforced: the debugger's access faults"
        );
        w(&mut m, SPI1_CR1, 0x44 | 2 << 3);
        assert!(m
            .strict
            .lockup
            .as_deref()
            .is_some_and(|s| s.contains("28.5.1")));
    }

    #[test]
    fn flash_wait_states_cost_cycles_only_without_prefetch_or_cache() {
        let mut m = mcu();
        const ACR: u32 = FLASH_IF_BASE;
        assert_eq!(m.wait_states(FLASH_BASE), 0, "0 wait states after reset");
        m.write(ACR, 4, 5, Master::Cpu).unwrap();
        assert_eq!(m.wait_states(FLASH_BASE + 0x100), 5);
        assert_eq!(m.wait_states(0x100), 5, "the boot alias is flash too");
        assert_eq!(m.wait_states(SRAM_BASE), 0, "RAM has no wait states");
        m.write(ACR, 4, 5 | 1 << 9, Master::Cpu).unwrap();
        assert_eq!(m.wait_states(FLASH_BASE), 0, "ICEN: the ART hides them");
    }

    #[test]
    fn rcc_writes_retune_core_and_spi_clocks_and_reset_returns_to_hsi() {
        let mut m = mcu();
        assert_eq!(m.clock.cpu_hz(), 16_000_000);
        // HSE + PLL 168 MHz, APB1 /4, APB2 /2, SW = PLL.
        m.write(RCC_BASE, 4, 0x0001_0081, Master::Cpu).unwrap();
        m.write(RCC_BASE + 4, 4, 0x0740_5408, Master::Cpu).unwrap();
        m.write(RCC_BASE, 4, 0x0101_0081, Master::Cpu).unwrap();
        m.write(RCC_BASE + 8, 4, 0x9402, Master::Cpu).unwrap();
        assert_eq!(m.clock.cpu_hz(), 168_000_000);
        m.spi[0].write(0, 1 << 3 | 1 << 2 | 1 << 6, !0, 0, &mut NoLink);
        m.spi[1].write(0, 1 << 3 | 1 << 2 | 1 << 6, !0, 0, &mut NoLink);
        assert_eq!(m.spi[0].frame_ps(), 8 * 4 * 1_000_000_000_000 / 84_000_000);
        assert_eq!(m.spi[1].frame_ps(), 8 * 4 * 1_000_000_000_000 / 42_000_000);
        m.reset_peripherals(None);
        assert_eq!(m.clock.cpu_hz(), 16_000_000);
    }

    struct NoLink;
    impl SpiLink for NoLink {
        fn exchange(&mut self, _mosi: u16, bits: u8, _now: u64) -> u16 {
            if bits == 16 {
                0xFFFF
            } else {
                0xFF
            }
        }
    }
}

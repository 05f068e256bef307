//! Conformance firmware: what a new user of the STM32F407VE + W25Q64JV board
//! writes with crates.io crates, run on the virtual board to check that it
//! behaves as silicon does.
//!
//! Crates: `stm32f4xx-hal` (clocks, GPIO, SPI1 blocking and with DMA2, CRC,
//! SysTick delay, IWDG), `cortex-m` / `critical-section` (critical sections,
//! SYST, DWT, DCB, NVIC), `cortex-m-rt` (reset, exception and interrupt
//! handlers), `embedded-hal-bus` (a critical-section shared SPI device) and
//! `w25q32jv` (feature `megabits64`: a W25Q64JV driver for erase, program
//! with read-back check, read, unique ID).
//!
//! Every step records `{status, value}` in [`CONFORMANCE`] (see
//! README.md for the codes); the last two are an IWDG reset and then a
//! WWDG reset, after each of which the firmware boots again and records
//! it; then it sets `done` and calls [`conformance_done`], which halts the
//! core on a BKPT. The struct lives
//! in `.uninit` so the watchdog reset keeps it; a cold boot clears it.
//!
//! Every wait of ours is bounded by an iteration count, so a board that
//! never sets a flag fails the step instead of hanging; the w25q32jv
//! driver's own BUSY polls are not (a chip stuck busy hangs it there, and
//! the test's GDB run hits its time limit).

#![no_std]
#![no_main]

use core::cell::{Cell, RefCell};
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{DWT, NVIC, SCB};
use cortex_m_rt::{entry, exception};
use embedded_hal::spi::{SpiBus, MODE_0};
use embedded_hal_bus::spi::CriticalSectionDevice;
use stm32f4xx_hal::crc32::Crc32;
use stm32f4xx_hal::dma::config::DmaConfig;
use stm32f4xx_hal::dma::{StreamsTuple, Transfer};
use stm32f4xx_hal::pac::{self, interrupt};
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::Config;
use stm32f4xx_hal::spi::Spi;
use stm32f4xx_hal::watchdog::IndependentWatchdog;
use w25q32jv::W25q32jv;

/// A step's result: `status` is one of the codes below, `value` what it
/// measured (a frequency, an ID, a CRC, a count).
#[repr(C)]
pub struct Step {
    pub status: u32,
    pub value: u32,
}

/// Not run (yet).
pub const NOT_RUN: u32 = 0;
/// Passed.
pub const PASS: u32 = 0x600D;
/// The IWDG reset step is waiting for the watchdog to bite.
pub const ARMED: u32 = 0xA53D;
/// Failed: `FAIL | n`, n saying which check of the step failed.
pub const FAIL: u32 = 0xF000_0000;
/// The step was running when the firmware panicked.
pub const PANICKED: u32 = 0xDEAD;
/// `CONFORMANCE.magic` once a cold boot has initialised the struct.
pub const MAGIC: u32 = 0xC0F0_2026;
/// `CONFORMANCE.done` once every step has run.
pub const DONE: u32 = 0xD0E5_D0E5;
/// `CONFORMANCE.done` after a panic.
pub const DONE_PANIC: u32 = 0xDEAD_D0E5;

/// Every step's result, in the order they run.
#[repr(C)]
pub struct Conformance {
    pub magic: u32,
    /// Index (from 1) of the step running now; 0 before the first.
    pub running: u32,
    /// `cortex_m::Peripherals::take()` and `pac::Peripherals::take()`.
    pub take: Step,
    /// HSE 8 MHz -> PLL -> 168 MHz SYSCLK/HCLK, 42/84 MHz PCLK1/2, 5 WS.
    pub clocks: Step,
    /// `critical_section::with` / `interrupt::free` mask and restore PRIMASK.
    pub critical_section: Step,
    /// DCB trace enable + DWT CYCCNT counts.
    pub dwt_cycles: Step,
    /// HAL SysTick delay of 1 ms takes 168 000 core cycles (CYCCNT).
    pub systick_delay: Step,
    /// SysTick exception at 1 kHz runs its handler 5 times, in handler mode.
    pub systick_irq: Step,
    /// CRC unit result equals CRC-32/MPEG-2 computed in software.
    pub crc: Step,
    /// JEDEC ID over blocking SPI1 (HAL SpiBus): EF 40 17.
    pub jedec_id: Step,
    /// w25q32jv `device_id()` (4Bh) through a critical-section SPI device.
    pub unique_id: Step,
    /// w25q32jv `erase_sector()` with its read-back check.
    pub erase: Step,
    /// w25q32jv `write_blocking()` across page boundaries, read-back check.
    pub program: Step,
    /// w25q32jv `read()` of the programmed range and its erased margins.
    pub read: Step,
    /// 03h read through SPI1 with DMA2 streams 0 (RX) and 3 (TX), channel 3.
    pub spi_dma_read: Step,
    /// DMA2 stream 0 transfer-complete interrupt ran once.
    pub dma_irq: Step,
    /// IWDG (HAL) at 10 ms, fed through 25 ms of delays: no reset.
    pub iwdg: Step,
    /// WWDG (PAC: the HAL has no driver) counts at PCLK1/4096/8 and a
    /// refresh reloads it; DBG_WWDG_STOP set.
    pub wwdg: Step,
    /// IWDG not fed: the board resets with RCC_CSR.IWDGRSTF.
    pub iwdg_reset: Step,
    /// After that reset: WWDG enabled and not refreshed, the board resets
    /// with RCC_CSR.WWDGRSTF.
    pub wwdg_reset: Step,
    /// [`DONE`] once every step ran, [`DONE_PANIC`] after a panic.
    pub done: u32,
}

/// The results the tests read. In `.uninit` so an IWDG reset keeps them.
#[no_mangle]
#[link_section = ".uninit.CONFORMANCE"]
pub static mut CONFORMANCE: Conformance = Conformance {
    magic: 0,
    running: 0,
    take: Step::new(),
    clocks: Step::new(),
    critical_section: Step::new(),
    dwt_cycles: Step::new(),
    systick_delay: Step::new(),
    systick_irq: Step::new(),
    crc: Step::new(),
    jedec_id: Step::new(),
    unique_id: Step::new(),
    erase: Step::new(),
    program: Step::new(),
    read: Step::new(),
    spi_dma_read: Step::new(),
    dma_irq: Step::new(),
    iwdg: Step::new(),
    wwdg: Step::new(),
    iwdg_reset: Step::new(),
    wwdg_reset: Step::new(),
    done: 0,
};

impl Step {
    const fn new() -> Step {
        Step {
            status: NOT_RUN,
            value: 0,
        }
    }
}

/// Where the tests stop: called once `CONFORMANCE.done` is set. A BKPT,
/// not a debugger breakpoint: the FPB does not survive the IWDG reset on
/// the way here (a debugger halts; without one, this is a HardFault).
#[no_mangle]
#[inline(never)]
pub extern "C" fn conformance_done() {
    cortex_m::asm::bkpt();
}

/// The chip range the flash steps use (sector 256).
const TEST_SECTOR: u32 = 256;
const TEST_BASE: u32 = TEST_SECTOR * w25q32jv::SECTOR_SIZE;
/// Programmed at TEST_BASE + PROG_OFFSET: not page aligned, crosses pages.
const PROG_OFFSET: u32 = 0x80;
const PROG_LEN: usize = 600;
const DMA_LEN: usize = 4 + PROG_LEN;

/// Bound of every wait loop: far above what any wait here needs.
const SPIN_LIMIT: u32 = 2_000_000;

static SYSTICK_TICKS: AtomicU32 = AtomicU32::new(0);
static SYSTICK_IPSR: AtomicU32 = AtomicU32::new(0);
static DMA_IRQS: AtomicU32 = AtomicU32::new(0);
static CS_COUNT: critical_section::Mutex<Cell<u32>> = critical_section::Mutex::new(Cell::new(0));

fn results() -> *mut Conformance {
    addr_of_mut!(CONFORMANCE)
}

/// Runs step `index` (its field `step`): records PASS or FAIL | code and
/// the value the closure returns.
fn run(index: u32, step: fn(&mut Conformance) -> &mut Step, f: impl FnOnce() -> Result<u32, (u32, u32)>) {
    // SAFETY: single-threaded; the interrupt handlers never touch CONFORMANCE.
    let r = unsafe { &mut *results() };
    r.running = index;
    let (status, value) = match f() {
        Ok(v) => (PASS, v),
        Err((code, v)) => (FAIL | code, v),
    };
    let s = step(r);
    s.value = value;
    s.status = status;
}

fn fail_if(cond: bool, code: u32, value: u32) -> Result<(), (u32, u32)> {
    if cond {
        Err((code, value))
    } else {
        Ok(())
    }
}

/// Pattern byte `i` of the programmed range.
fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(31) ^ 0x5A ^ (i >> 8) as u8
}

/// CRC-32/MPEG-2 (poly 0x04C11DB7, init all ones, MSB first, no final xor)
/// of 32-bit words, as the STM32 CRC unit computes it.
fn crc32_mpeg2(words: &[u32]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &w in words {
        crc ^= w;
        for _ in 0..32 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The words fed to the CRC unit (the tests compute their CRC themselves).
const CRC_INPUT: [u32; 4] = [0x3132_3334, 0x3536_3738, 0xDEAD_BEEF, 0x0000_0001];

#[entry]
fn main() -> ! {
    // SAFETY: RCC_CSR is read before anything else owns the RCC.
    let csr = unsafe { (*pac::RCC::ptr()).csr().read().bits() };
    let iwdg_rst = csr & (1 << 29) != 0;
    let wwdg_rst = csr & (1 << 30) != 0;
    let r = results();
    // SAFETY: single-threaded, no interrupt enabled yet.
    unsafe {
        let resumed = (*r).magic == MAGIC;
        if resumed && (*r).iwdg_reset.status == ARMED {
            (*r).iwdg_reset = Step {
                status: if iwdg_rst { PASS } else { FAIL | 1 },
                value: csr,
            };
            (*pac::RCC::ptr()).csr().modify(|_, w| w.rmvf().set_bit());
            wwdg_reset();
        }
        if resumed && (*r).wwdg_reset.status == ARMED {
            (*r).wwdg_reset = Step {
                status: if wwdg_rst { PASS } else { FAIL | 1 },
                value: csr,
            };
            (*pac::RCC::ptr()).csr().modify(|_, w| w.rmvf().set_bit());
            finish();
        }
        r.write_bytes(0, 1);
        (*r).magic = MAGIC;
        (*pac::RCC::ptr()).csr().modify(|_, w| w.rmvf().set_bit());
    }

    let mut peripherals = None;
    run(1, |c| &mut c.take, || {
        let cp = cortex_m::Peripherals::take().ok_or((1, 0))?;
        let dp = pac::Peripherals::take().ok_or((2, 0))?;
        // A second take must fail.
        fail_if(pac::Peripherals::take().is_some(), 3, 0)?;
        peripherals = Some((cp, dp));
        Ok(1)
    });
    let Some((mut cp, dp)) = peripherals else {
        finish()
    };

    let mut rcc = dp.RCC.freeze(
        Config::hse(8.MHz())
            .sysclk(168.MHz())
            .hclk(168.MHz())
            .pclk1(42.MHz())
            .pclk2(84.MHz()),
    );
    run(2, |c| &mut c.clocks, || {
        let c = &rcc.clocks;
        let sysclk = c.sysclk().raw();
        fail_if(sysclk != 168_000_000, 1, sysclk)?;
        fail_if(c.hclk().raw() != 168_000_000, 2, c.hclk().raw())?;
        fail_if(c.pclk1().raw() != 42_000_000, 3, c.pclk1().raw())?;
        fail_if(c.pclk2().raw() != 84_000_000, 4, c.pclk2().raw())?;
        // SAFETY: reads only.
        let (cr, cfgr, pllcfgr, acr) = unsafe {
            let rcc = &*pac::RCC::ptr();
            let flash = &*pac::FLASH::ptr();
            (
                rcc.cr().read().bits(),
                rcc.cfgr().read().bits(),
                rcc.pllcfgr().read().bits(),
                flash.acr().read().bits(),
            )
        };
        fail_if(cr & (1 << 17) == 0, 5, cr)?; // HSERDY
        fail_if(cr & (1 << 25) == 0, 6, cr)?; // PLLRDY
        fail_if((cfgr >> 2) & 3 != 2, 7, cfgr)?; // SWS = PLL
        fail_if(pllcfgr & (1 << 22) == 0, 8, pllcfgr)?; // PLLSRC = HSE
        fail_if(acr & 7 != 5, 9, acr)?; // 5 wait states at 168 MHz, 3.3 V
        Ok(sysclk)
    });

    run(3, |c| &mut c.critical_section, || {
        use cortex_m::register::primask;
        fail_if(primask::read().is_inactive(), 1, 0)?;
        let mut inside = 0;
        for _ in 0..3 {
            critical_section::with(|cs| {
                let c = CS_COUNT.borrow(cs);
                c.set(c.get() + 1);
                if primask::read().is_inactive() {
                    inside += 1;
                }
                // Nested: cortex-m's own critical section inside one.
                cortex_m::interrupt::free(|_| {
                    if primask::read().is_inactive() {
                        inside += 1;
                    }
                });
                if primask::read().is_inactive() {
                    inside += 1;
                }
            });
        }
        fail_if(primask::read().is_inactive(), 2, inside)?;
        fail_if(inside != 9, 3, inside)?;
        let count = critical_section::with(|cs| CS_COUNT.borrow(cs).get());
        fail_if(count != 3, 4, count)?;
        Ok(count)
    });

    run(4, |c| &mut c.dwt_cycles, || {
        cp.DCB.enable_trace();
        cp.DWT.enable_cycle_counter();
        fail_if(!DWT::cycle_counter_enabled(), 1, 0)?;
        let a = DWT::cycle_count();
        let mut x = 0u32;
        for i in 0..100u32 {
            x = x.wrapping_add(core::hint::black_box(i));
        }
        core::hint::black_box(x);
        let b = DWT::cycle_count();
        let d = b.wrapping_sub(a);
        // 100 iterations of at least an add and a branch.
        fail_if(d < 200, 2, d)?;
        fail_if(d > 100_000, 3, d)?;
        Ok(d)
    });

    // The HAL's SysTick delay: SYST from HCLK/8, polls COUNTFLAG.
    let mut delay = cp.SYST.delay(&rcc.clocks);
    run(5, |c| &mut c.systick_delay, || {
        let a = DWT::cycle_count();
        delay.delay_us(1000);
        let d = DWT::cycle_count().wrapping_sub(a);
        // 1 ms at 168 MHz, plus the HAL's set-up and loop exit.
        fail_if(d < 168_000, 1, d)?;
        fail_if(d > 180_000, 2, d)?;
        Ok(d)
    });
    let mut syst = delay.release().release();

    run(6, |c| &mut c.systick_irq, || {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(168_000 - 1);
        syst.clear_current();
        SYSTICK_TICKS.store(0, Ordering::Relaxed);
        syst.enable_interrupt();
        syst.enable_counter();
        let mut n = 0;
        while SYSTICK_TICKS.load(Ordering::Relaxed) < 5 && n < SPIN_LIMIT {
            n += 1;
        }
        syst.disable_interrupt();
        syst.disable_counter();
        let ticks = SYSTICK_TICKS.load(Ordering::Relaxed);
        fail_if(ticks < 5, 1, ticks)?;
        let ipsr = SYSTICK_IPSR.load(Ordering::Relaxed);
        fail_if(ipsr != 15, 2, ipsr)?;
        Ok(ticks)
    });

    run(7, |c| &mut c.crc, || {
        let mut crc = Crc32::new(dp.CRC, &mut rcc);
        crc.init();
        let hw = crc.update(&CRC_INPUT);
        let sw = crc32_mpeg2(&CRC_INPUT);
        fail_if(hw != sw, 1, hw)?;
        Ok(hw)
    });

    // SPI1: SCK PB3, MISO PB4, MOSI PB5 (AF5), CS PB0, 21 MHz mode 0.
    let gpiob = dp.GPIOB.split(&mut rcc);
    let gpioe = dp.GPIOE.split(&mut rcc);
    let mut cs = gpiob.pb0.into_push_pull_output();
    cs.set_high();
    // The driver wants /HOLD and /WP pins; the board ties them high, so
    // two spare pins stand in for them.
    let mut hold = gpioe.pe0.into_push_pull_output();
    let mut wp = gpioe.pe1.into_push_pull_output();
    let mut spi = Spi::new(
        dp.SPI1,
        (
            Some(gpiob.pb3.into_alternate::<5>()),
            Some(gpiob.pb4.into_alternate::<5>()),
            Some(gpiob.pb5),
        ),
        MODE_0,
        21.MHz(),
        &mut rcc,
    );

    run(8, |c| &mut c.jedec_id, || {
        let mut id = [0x9F, 0, 0, 0];
        cs.set_low();
        let r = SpiBus::transfer_in_place(&mut spi, &mut id).and_then(|_| SpiBus::flush(&mut spi));
        cs.set_high();
        r.map_err(|_| (1, 0))?;
        let v = u32::from_be_bytes(id) & 0x00FF_FFFF;
        fail_if(v != 0x00EF_4017, 2, v)?;
        Ok(v)
    });

    let bus = critical_section::Mutex::new(RefCell::new(spi));
    {
        let dev = match CriticalSectionDevice::new_no_delay(&bus, &mut cs) {
            Ok(d) => d,
            Err(e) => match e {},
        };
        let mut flash = match W25q32jv::new(dev, &mut hold, &mut wp) {
            Ok(f) => f,
            Err(_) => finish(),
        };

        run(9, |c| &mut c.unique_id, || {
            let id = flash.device_id().map_err(|_| (1, 0))?;
            let lo = u32::from_be_bytes([id[4], id[5], id[6], id[7]]);
            fail_if(id == [0xFF; 8] || id == [0; 8], 2, lo)?;
            Ok(lo)
        });

        run(10, |c| &mut c.erase, || {
            flash.erase_sector(TEST_SECTOR).map_err(|e| (code_of(&e), 0))?;
            Ok(TEST_BASE)
        });

        run(11, |c| &mut c.program, || {
            let mut buf = [0u8; PROG_LEN];
            for (i, b) in buf.iter_mut().enumerate() {
                *b = pattern(i);
            }
            flash
                .write_blocking(TEST_BASE + PROG_OFFSET, &buf)
                .map_err(|e| (code_of(&e), 0))?;
            Ok(PROG_LEN as u32)
        });

        run(12, |c| &mut c.read, || {
            let mut buf = [0u8; 1024];
            flash.read(TEST_BASE, &mut buf).map_err(|e| (code_of(&e), 0))?;
            for (i, &b) in buf.iter().enumerate() {
                let off = i as u32;
                let want = if (PROG_OFFSET..PROG_OFFSET + PROG_LEN as u32).contains(&off) {
                    pattern((off - PROG_OFFSET) as usize)
                } else {
                    0xFF
                };
                fail_if(b != want, 0x10, off)?;
            }
            Ok(buf.len() as u32)
        });
    }
    let spi = bus.into_inner().into_inner();

    // DMA2: SPI1_RX on stream 0, SPI1_TX on stream 3, channel 3.
    let streams = StreamsTuple::new(dp.DMA2, &mut rcc);
    let (tx, rx) = spi.use_dma().txrx();
    run(13, |c| &mut c.spi_dma_read, || {
        let tx_buf = cortex_m::singleton!(: [u8; DMA_LEN] = [0xFF; DMA_LEN]).ok_or((1, 0))?;
        let rx_buf = cortex_m::singleton!(: [u8; DMA_LEN] = [0; DMA_LEN]).ok_or((2, 0))?;
        let addr = TEST_BASE + PROG_OFFSET;
        tx_buf[..4].copy_from_slice(&[0x03, (addr >> 16) as u8, (addr >> 8) as u8, addr as u8]);
        let mut rx_t = Transfer::init_peripheral_to_memory(
            streams.0,
            rx,
            rx_buf,
            None,
            DmaConfig::default()
                .memory_increment(true)
                .transfer_complete_interrupt(true),
        );
        let mut tx_t = Transfer::init_memory_to_peripheral(
            streams.3,
            tx,
            tx_buf,
            None,
            DmaConfig::default().memory_increment(true),
        );
        DMA_IRQS.store(0, Ordering::Relaxed);
        // SAFETY: the handler only touches DMA2's flags and DMA_IRQS.
        unsafe { NVIC::unmask(pac::Interrupt::DMA2_STREAM0) };
        cs.set_low();
        rx_t.start(|_| {});
        tx_t.start(|_| {});
        let mut n = 0;
        while rx_t.number_of_transfers() != 0 && n < SPIN_LIMIT {
            n += 1;
        }
        // The last frame is in once RX is done; the IRQ follows at once.
        let mut m = 0;
        while DMA_IRQS.load(Ordering::Relaxed) == 0 && m < 10_000 {
            m += 1;
        }
        cs.set_high();
        NVIC::mask(pac::Interrupt::DMA2_STREAM0);
        let left = rx_t.number_of_transfers() as u32;
        let (_, _, rx_buf, _) = rx_t.release();
        let _ = tx_t.release();
        fail_if(left != 0, 3, left)?;
        for (i, &b) in rx_buf[4..].iter().enumerate() {
            fail_if(b != pattern(i), 0x10, i as u32)?;
        }
        Ok(PROG_LEN as u32)
    });
    run(14, |c| &mut c.dma_irq, || {
        let n = DMA_IRQS.load(Ordering::Relaxed);
        fail_if(n != 1, 1, n)?;
        Ok(n)
    });

    let mut delay = syst.delay(&rcc.clocks);
    let mut dog = IndependentWatchdog::new(dp.IWDG);
    run(15, |c| &mut c.iwdg, || {
        dog.stop_on_debug(&dp.DBGMCU, true);
        dog.start(10.millis());
        let ms = dog.interval().ticks();
        fail_if(!(9..=11).contains(&ms), 1, ms)?;
        for _ in 0..5 {
            delay.delay_ms(5);
            dog.feed();
        }
        // Still here: the watchdog was fed in time.
        Ok(ms)
    });

    run(16, |c| &mut c.wwdg, || {
        // SAFETY: the WWDG's and RCC's registers, not owned by the HAL here.
        let (rcc, wwdg) = unsafe { (&*pac::RCC::ptr(), &*pac::WWDG::ptr()) };
        rcc.apb1enr().modify(|_, w| w.wwdgen().set_bit());
        dp.DBGMCU.apb1_fz().modify(|_, w| w.dbg_wwdg_stop().set_bit());
        // WDGTB = 3: one count per 4096 * 8 PCLK1 cycles (780 us at 42 MHz);
        // window fully open (W = 0x7F), counter 0x7F: 49 ms to a reset.
        wwdg.cfr().write(|w| unsafe { w.bits((3 << 7) | 0x7F) });
        wwdg.cr().write(|w| unsafe { w.bits(0x80 | 0x7F) });
        let t0 = u32::from(wwdg.cr().read().bits()) & 0x7F;
        delay.delay_ms(2);
        dog.feed();
        let t1 = u32::from(wwdg.cr().read().bits()) & 0x7F;
        let dropped = t0.wrapping_sub(t1);
        // 2 ms / 780 us: 2 counts, 3 if a count boundary falls early.
        fail_if(!(2..=3).contains(&dropped), 1, (t0 << 8) | t1)?;
        wwdg.cr().write(|w| unsafe { w.bits(0x80 | 0x7F) });
        let t2 = u32::from(wwdg.cr().read().bits()) & 0x7F;
        fail_if(t2 < 0x7E, 2, t2)?;
        Ok(dropped)
    });

    // Stop feeding; the IWDG (10 ms) bites before the WWDG (49 ms), the
    // board resets and `main` resumes above with RCC_CSR.IWDGRSTF set.
    // SAFETY: single-threaded.
    unsafe {
        (*r).iwdg_reset.status = ARMED;
        (*r).running = 17;
    }
    loop {
        cortex_m::asm::nop();
    }
}

/// The last step, after the IWDG reset (clocks at reset values: PCLK1 =
/// HSI 16 MHz): the WWDG started and not refreshed resets the board after
/// 64 counts of 4096 PCLK1 cycles (16 ms); `main` resumes with WWDGRSTF.
fn wwdg_reset() -> ! {
    let r = results();
    // SAFETY: single-threaded; nothing else owns the RCC or WWDG yet.
    unsafe {
        (*r).running = 18;
        (*r).wwdg_reset.status = ARMED;
        let (rcc, wwdg) = (&*pac::RCC::ptr(), &*pac::WWDG::ptr());
        rcc.apb1enr().modify(|_, w| w.wwdgen().set_bit());
        wwdg.cfr().write(|w| w.bits(0x7F));
        wwdg.cr().write(|w| w.bits(0x80 | 0x7F));
    }
    loop {
        cortex_m::asm::nop();
    }
}

/// A w25q32jv error as a failure code.
fn code_of<S: core::fmt::Debug, P: core::fmt::Debug>(e: &w25q32jv::Error<S, P>) -> u32 {
    match e {
        w25q32jv::Error::SpiError(_) => 1,
        w25q32jv::Error::PinError(_) => 2,
        w25q32jv::Error::NotAligned => 3,
        w25q32jv::Error::OutOfBounds => 4,
        w25q32jv::Error::WriteEnableFail => 5,
        w25q32jv::Error::ReadbackFail => 6,
        _ => 7,
    }
}

/// Sets `done` (unless a panic did) and stops at [`conformance_done`].
fn finish() -> ! {
    let r = results();
    // SAFETY: single-threaded.
    unsafe {
        if (*r).done != DONE_PANIC {
            (*r).done = DONE;
        }
    }
    conformance_done();
    loop {
        cortex_m::asm::nop();
    }
}

#[exception]
fn SysTick() {
    // ICSR.VECTACTIVE, read by the CPU from the SCS: 15 in SysTick's handler.
    // SAFETY: a read-only register access.
    let active = unsafe { (*SCB::PTR).icsr.read() } & 0x1FF;
    SYSTICK_IPSR.store(active, Ordering::Relaxed);
    SYSTICK_TICKS.store(SYSTICK_TICKS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

#[interrupt]
fn DMA2_STREAM0() {
    // SAFETY: flag register accesses only.
    let dma = unsafe { &*pac::DMA2::ptr() };
    if dma.lisr().read().tcif0().bit_is_set() {
        dma.lifcr().write(|w| w.ctcif0().set_bit());
        DMA_IRQS.store(DMA_IRQS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    let r = results();
    // SAFETY: single-threaded; nothing runs after this.
    unsafe {
        let i = (*r).running;
        if (1..=18).contains(&i) {
            let steps = addr_of_mut!((*r).take) as *mut Step;
            (*steps.add(i as usize - 1)).status = PANICKED;
        }
        (*r).done = DONE_PANIC;
    }
    finish()
}

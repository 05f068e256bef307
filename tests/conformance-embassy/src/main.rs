//! Conformance firmware from a second, unrelated crate family: embassy-stm32
//! (clock tree, async SPI1 with DMA2 streams 3/0 and their interrupt
//! handlers), embassy-embedded-hal's shared async SPI device on an
//! embassy-sync mutex, and the w25q32jv driver's async API (feature
//! `megabits64`), polled by `embassy_futures::block_on`.
//!
//! Every step records `{status, value}` in [`CONFORMANCE_EMBASSY`] (codes
//! as in tests/conformance: 0x600D passed, 0xF000_0000 | n failed check
//! n); then `done` is set and [`conformance_done`] halts on a BKPT.

#![no_std]
#![no_main]

use core::ptr::addr_of_mut;

use embassy_embedded_hal::shared_bus::asynch::spi::SpiDevice;
use embassy_futures::block_on;
use embassy_stm32::gpio::{Level, Output, Speed};
use embassy_stm32::rcc::{
    AHBPrescaler, APBPrescaler, Hse, HseMode, Pll, PllMul, PllPDiv, PllPreDiv, PllQDiv,
    PllSource, Sysclk,
};
use embassy_stm32::spi::{self, Spi};
use embassy_stm32::time::Hertz;
use embassy_stm32::{bind_interrupts, dma, peripherals};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::mutex::Mutex;
use w25q32jv::W25q32jv;

bind_interrupts!(struct Irqs {
    DMA2_STREAM3 => dma::InterruptHandler<peripherals::DMA2_CH3>;
    DMA2_STREAM0 => dma::InterruptHandler<peripherals::DMA2_CH0>;
});

/// A step's result.
#[repr(C)]
pub struct Step {
    pub status: u32,
    pub value: u32,
}

pub const PASS: u32 = 0x600D;
pub const FAIL: u32 = 0xF000_0000;
pub const PANICKED: u32 = 0xDEAD;
pub const MAGIC: u32 = 0xE0BA_2026;
pub const DONE: u32 = 0xD0E5_D0E5;
pub const DONE_PANIC: u32 = 0xDEAD_D0E5;

/// Every step's result, in the order they run.
#[repr(C)]
pub struct ConformanceEmbassy {
    pub magic: u32,
    /// Index (from 1) of the step running now.
    pub running: u32,
    /// `embassy_stm32::init`: HSE 8 MHz -> PLL -> 168 MHz, PLL as SYSCLK.
    pub clocks: Step,
    /// JEDEC ID EF 40 17 through async SPI1 with DMA2.
    pub jedec_id: Step,
    /// w25q32jv `device_id_async` through the shared async SPI device.
    pub unique_id: Step,
    /// w25q32jv `erase_sector_async` with its read-back check.
    pub erase: Step,
    /// w25q32jv `write_async` across pages with its read-back check.
    pub program: Step,
    /// w25q32jv `read_async` of the programmed range and its margins.
    pub read: Step,
    /// The same range read by one async DMA `transfer` of 03h.
    pub dma_read: Step,
    pub done: u32,
}

#[no_mangle]
pub static mut CONFORMANCE_EMBASSY: ConformanceEmbassy = ConformanceEmbassy {
    magic: 0,
    running: 0,
    clocks: Step::new(),
    jedec_id: Step::new(),
    unique_id: Step::new(),
    erase: Step::new(),
    program: Step::new(),
    read: Step::new(),
    dma_read: Step::new(),
    done: 0,
};

impl Step {
    const fn new() -> Step {
        Step {
            status: 0,
            value: 0,
        }
    }
}

/// Where the tests stop (a BKPT: a debugger halts here).
#[no_mangle]
#[inline(never)]
pub extern "C" fn conformance_done() {
    cortex_m::asm::bkpt();
}

/// Sector 257 (chip offset 0x101000): not the one tests/conformance uses.
const TEST_SECTOR: u32 = 257;
const TEST_BASE: u32 = TEST_SECTOR * w25q32jv::SECTOR_SIZE;
const PROG_OFFSET: u32 = 0x40;
const PROG_LEN: usize = 700;

fn results() -> *mut ConformanceEmbassy {
    addr_of_mut!(CONFORMANCE_EMBASSY)
}

fn run(
    index: u32,
    step: fn(&mut ConformanceEmbassy) -> &mut Step,
    f: impl FnOnce() -> Result<u32, (u32, u32)>,
) {
    // SAFETY: single-threaded; the DMA handlers never touch the record.
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

fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(13) ^ 0xA5 ^ (i >> 8) as u8
}

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

/// The board ties /HOLD and /WP high; the driver wants pins for them.
struct TiedHigh;

impl embedded_hal::digital::ErrorType for TiedHigh {
    type Error = core::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for TiedHigh {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    // SAFETY: single-threaded, before anything else runs.
    unsafe {
        results().write_bytes(0, 1);
        (*results()).magic = MAGIC;
    }

    let mut config = embassy_stm32::Config::default();
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Oscillator,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL168,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV7),
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    let p = embassy_stm32::init(config);

    run(1, |c| &mut c.clocks, || {
        let rcc = embassy_stm32::pac::RCC;
        let cfgr = rcc.cfgr().read().0;
        fail_if((cfgr >> 2) & 3 != 2, 1, cfgr)?; // SWS = PLL
        let acr = embassy_stm32::pac::FLASH.acr().read().0;
        fail_if(acr & 7 != 5, 2, acr)?; // 5 wait states at 168 MHz
        let pllcfgr = rcc.pllcfgr().read().0;
        let hz = 8_000_000 / (pllcfgr & 0x3F) * ((pllcfgr >> 6) & 0x1FF) / 2;
        fail_if(hz != 168_000_000, 3, hz)?;
        Ok(hz)
    });

    let mut spi_config = spi::Config::default();
    spi_config.frequency = Hertz(21_000_000);
    let mut spi = Spi::new(
        p.SPI1, p.PB3, p.PB5, p.PB4, p.DMA2_CH3, p.DMA2_CH0, Irqs, spi_config,
    );
    let mut cs = Output::new(p.PB0, Level::High, Speed::VeryHigh);

    run(2, |c| &mut c.jedec_id, || {
        let mut id = [0x9F, 0, 0, 0];
        cs.set_low();
        let r = block_on(spi.transfer_in_place(&mut id));
        cs.set_high();
        r.map_err(|_| (1, 0))?;
        let v = u32::from_be_bytes(id) & 0x00FF_FFFF;
        fail_if(v != 0x00EF_4017, 2, v)?;
        Ok(v)
    });

    let bus: Mutex<NoopRawMutex, _> = Mutex::new(spi);
    {
        let dev = SpiDevice::new(&bus, &mut cs);
        let mut flash = match W25q32jv::new(dev, TiedHigh, TiedHigh) {
            Ok(f) => f,
            Err(_) => finish(),
        };

        run(3, |c| &mut c.unique_id, || {
            let id = block_on(flash.device_id_async()).map_err(|e| (code_of(&e), 0))?;
            let lo = u32::from_be_bytes([id[4], id[5], id[6], id[7]]);
            fail_if(id == [0xFF; 8] || id == [0; 8], 0x10, lo)?;
            Ok(lo)
        });

        run(4, |c| &mut c.erase, || {
            block_on(flash.erase_sector_async(TEST_SECTOR)).map_err(|e| (code_of(&e), 0))?;
            Ok(TEST_BASE)
        });

        run(5, |c| &mut c.program, || {
            let mut buf = [0u8; PROG_LEN];
            for (i, b) in buf.iter_mut().enumerate() {
                *b = pattern(i);
            }
            block_on(flash.write_async(TEST_BASE + PROG_OFFSET, &buf))
                .map_err(|e| (code_of(&e), 0))?;
            Ok(PROG_LEN as u32)
        });

        run(6, |c| &mut c.read, || {
            let mut buf = [0u8; 1024];
            block_on(flash.read_async(TEST_BASE, &mut buf)).map_err(|e| (code_of(&e), 0))?;
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
    let mut spi = bus.into_inner();

    run(7, |c| &mut c.dma_read, || {
        let addr = TEST_BASE + PROG_OFFSET;
        let mut tx = [0xFFu8; 4 + PROG_LEN];
        tx[..4].copy_from_slice(&[0x03, (addr >> 16) as u8, (addr >> 8) as u8, addr as u8]);
        let mut rx = [0u8; 4 + PROG_LEN];
        cs.set_low();
        let r = block_on(spi.transfer(&mut rx, &tx));
        cs.set_high();
        r.map_err(|_| (1, 0))?;
        for (i, &b) in rx[4..].iter().enumerate() {
            fail_if(b != pattern(i), 0x10, i as u32)?;
        }
        Ok(PROG_LEN as u32)
    });

    finish()
}

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

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    let r = results();
    // SAFETY: single-threaded; nothing runs after this.
    unsafe {
        let i = (*r).running;
        if (1..=7).contains(&i) {
            let steps = addr_of_mut!((*r).clocks) as *mut Step;
            (*steps.add(i as usize - 1)).status = PANICKED;
        }
        (*r).done = DONE_PANIC;
    }
    finish()
}

//! The stub runner (`extflash::runner`) and `ExtFlash` on the virtual board,
//! through probe-rs: a stub run leaves work-area RAM, every core register
//! (FPU and special registers included), DEMCR/DWT_CTRL and the RCC/GPIO/SPI
//! registers bit-identical, also when the application had SPI1 configured
//! and running; reads/CRCs/identification give what the chip holds; and the
//! application-in-a-transaction guard never touches the chip.

use crate::support::elf::{firmware_elf, symbol};
use crate::support::sim::*;
use extflash_gdb::board::Board;
use extflash_gdb::extflash::{chip::StatusRegs, wiring, ExtFlash, ExtFlashError};
use extflash_gdb::sim::{Faults, SimConfig};
use extflash_gdb::stm32f4;
use extflash_stub_abi::{crc32_update, CRC32_INIT};
use probe_rs::{Core, MemoryInterface, RegisterId};

/// Everything a stub run must leave as it found it.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    regs: Vec<(u16, u32)>,
    sp: u32,
    ram: Vec<u32>,
    periph: Vec<(u32, u32)>,
    demcr: u32,
    dwt_ctrl: u32,
}

fn snapshot(core: &mut Core<'_>, board: &Board) -> Snapshot {
    let ext = board.external_flash.as_ref().unwrap();
    // Every register GDB can see: r0-r12, lr, pc, xPSR, MSP, PSP,
    // CONTROL/FAULTMASK/BASEPRI/PRIMASK, FPSCR, s0-s31.
    let regs = (0..13u16)
        .chain([14, 15, 16, 17, 18, 20, 33])
        .chain(64..96)
        .map(|r| (r, core.read_core_reg::<u32>(RegisterId(r)).unwrap()))
        .collect();
    let sp = core.read_core_reg::<u32>(RegisterId(13)).unwrap();
    let wa = &ext.work_area;
    let mut ram = vec![0u32; ((wa.end - wa.start) / 4) as usize];
    core.read_32(wa.start.into(), &mut ram).unwrap();
    // Every GPIO register of the wiring's ports but IDR/BSRR/LCKR, the
    // SPI's but SR/DR (reading DR pops a frame) and the RCC enables.
    let (spi, _, _) = wiring::spi_regs(ext.spi);
    let ports = wiring::ports(ext).into_iter().map(wiring::gpio_base);
    let periph = ports
        .flat_map(|b| [0x00, 0x04, 0x08, 0x0C, 0x14, 0x20, 0x24].map(|o| b + o))
        .chain([0x00, 0x04, 0x10, 0x1C].map(|o| spi + o))
        .chain([
            stm32f4::RCC_AHB1ENR,
            stm32f4::RCC_APB1ENR,
            stm32f4::RCC_APB2ENR,
        ])
        .map(|a| (a, core.read_word_32(a.into()).unwrap()))
        .collect();
    Snapshot {
        regs,
        sp,
        ram,
        periph,
        demcr: core
            .read_word_32(extflash_gdb::cortex_m::DEMCR.into())
            .unwrap(),
        dwt_ctrl: core
            .read_word_32(extflash_gdb::cortex_m::dwt::CTRL.into())
            .unwrap(),
    }
}

/// Firmware running its SPI1 loop, halted at `tick`, with unusual values in
/// the FPU, special registers and the work area.
fn app_state(
    config: SimConfig,
    chip: &[(usize, &[u8])],
) -> (extflash_gdb::sim::SimBoard, probe_rs::Session) {
    let elf = firmware_elf();
    let b = board(config);
    for (off, data) in chip {
        b.lock().mcu().chip.load(*off, data);
    }
    let mut session = attach(&b);
    flash_elf(&mut session, &elf);
    let mut core = session.core(0).unwrap();
    core.reset_and_halt(std::time::Duration::from_millis(500))
        .unwrap();
    let tick = symbol(&elf, "tick");
    core.set_hw_breakpoint(tick.into()).unwrap();
    core.run().unwrap();
    wait_halted(&mut core);
    core.clear_hw_breakpoint(tick.into()).unwrap();
    for n in 0..32u16 {
        core.write_core_reg(RegisterId(64 + n), 0x3F80_0000u32 + u32::from(n))
            .unwrap();
    }
    core.write_core_reg(RegisterId(33), 0x0300_0000u32).unwrap(); // FPSCR
    core.write_core_reg(RegisterId(18), 0x2001_0000u32).unwrap(); // PSP
    core.write_core_reg(RegisterId(20), 0x0000_4000u32).unwrap(); // BASEPRI
    for r in 0..13u16 {
        core.write_core_reg(RegisterId(r), 0xA5A5_0000u32 | u32::from(r))
            .unwrap();
    }
    let pattern: Vec<u32> = (0..0x1000u32)
        .map(|i| i.wrapping_mul(0x9E37_79B9))
        .collect();
    core.write_32(0x2001_C000, &pattern).unwrap();
    drop(core);
    (b, session)
}

#[test]
fn stub_runs_leave_ram_registers_and_peripherals_bit_identical() {
    let board = Board::builtin();
    let (_b, mut session) = app_state(SimConfig::default(), &[]);
    let mut core = session.core(0).unwrap();
    let before = snapshot(&mut core, &board);
    // The firmware configured SPI1: the snapshot is not all reset values.
    let cr1 = before
        .periph
        .iter()
        .find(|(a, _)| *a == 0x4001_3000)
        .unwrap()
        .1;
    assert_ne!(cr1 & stm32f4::SPI_CR1_SPE, 0, "app left SPI1 enabled");

    let mut ext = ExtFlash::new(board.external_flash.clone().unwrap());
    let id = ext.identify(&mut core).map(|c| c.jedec_id);
    let status = ext.status(&mut core);
    let mut buf = [0u8; 64];
    let read = ext.read(&mut core, 0x9000_0000, &mut buf);
    assert!(ext.is_resident(), "the stub stays loaded between calls");
    ext.end_session(&mut core).unwrap();
    assert!(!ext.is_resident());
    let after = snapshot(&mut core, &board);
    assert_eq!(before, after, "identify/status/read changed the target");
    assert_eq!(id.unwrap(), [0xEF, 0x40, 0x17]);
    assert!(!status.unwrap().protects_something());
    read.unwrap();
    assert_eq!(buf, [0xFF; 64], "erased chip");
}

/// A read of a few bytes with no session running drives the SPI from the
/// host: the right bytes, no stub session, every register and the work
/// area as found, and about a hundred round trips on an ST-Link V2 (a stub
/// session costs more than twice that). A longer read uses the stub.
#[test]
fn small_cold_read_drives_the_spi_from_the_host_and_leaves_everything_as_found() {
    let board = Board::builtin();
    let data = pattern(0x0BAD_F00D, 0x100);
    let (b, mut session) = app_state(SimConfig::default(), &[(0x4_0000, &data)]);
    let mut core = session.core(0).unwrap();
    let mut ext = ExtFlash::new(board.external_flash.clone().unwrap());
    ext.identify(&mut core).unwrap();
    ext.end_session(&mut core).unwrap();
    let before = snapshot(&mut core, &board);
    let trips = b.lock().counters().round_trips;
    let mut buf = [0u8; 4];
    ext.read(&mut core, 0x9004_0011, &mut buf).unwrap();
    assert_eq!(buf, data[0x11..0x15]);
    assert!(!ext.is_resident(), "no stub session for a few bytes");
    let cost = b.lock().counters().round_trips - trips;
    assert!(cost <= 110, "{cost} round trips for a cold 4-byte read");
    // Served again from the cache: no round trip at all.
    let trips = b.lock().counters().round_trips;
    let mut again = [0u8; 2];
    ext.read(&mut core, 0x9004_0012, &mut again).unwrap();
    assert_eq!(again, data[0x12..0x14]);
    assert_eq!(b.lock().counters().round_trips, trips);
    assert_eq!(
        before,
        snapshot(&mut core, &board),
        "the read changed the target"
    );
    // Beyond `direct::MAX_LEN` the stub reads.
    let mut long = [0u8; 64];
    ext.read(&mut core, 0x9004_0040, &mut long).unwrap();
    assert_eq!(long[..], data[0x40..0x80]);
    assert!(ext.is_resident());
}

/// The stub moves bytes with DMA2 only on streams the application left
/// free: a configured stream with a transfer-complete flag pending is
/// skipped (flags cannot be set back), the other candidate is used, and
/// both streams' registers and the pending flag read as found afterwards.
#[test]
fn stub_dma_leaves_the_applications_streams_and_flags_as_found() {
    const DMA2: u64 = 0x4002_6400;
    const DMA2EN: u32 = 1 << 22;
    let stream = |x: u64| DMA2 + 0x10 + 0x18 * x;
    let data = pattern(0x5EED, 0x3000);
    let (_b, mut session) = app_state(SimConfig::default(), &[(0x2_0000, &data)]);
    let mut core = session.core(0).unwrap();
    let ahb1 = core.read_word_32(reg::RCC_AHB1ENR).unwrap();
    core.write_word_32(reg::RCC_AHB1ENR, ahb1 | DMA2EN).unwrap();
    // Stream 2 (the first RX candidate): a finished memory-to-memory
    // transfer leaves TCIF2 (LISR bit 21) set, then the application sets
    // it up again without enabling it.
    core.write_word_32(stream(2) + 8, 0x2000_0000).unwrap(); // PAR: source
    core.write_word_32(stream(2) + 12, 0x2000_0100).unwrap(); // M0AR
    core.write_word_32(stream(2) + 4, 4).unwrap(); // NDTR
    core.write_word_32(stream(2), 2 << 6 | 1 << 9 | 1 << 10 | 1)
        .unwrap();
    assert_ne!(core.read_word_32(DMA2).unwrap() & 1 << 21, 0, "TCIF2 set");
    core.write_word_32(stream(2) + 4, 0x40).unwrap();
    core.write_word_32(stream(2), 2 << 25 | 1 << 10).unwrap();
    let regs = |core: &mut Core<'_>| {
        let mut v = vec![0u32; 2 + 6 * 6];
        core.read_32(DMA2, &mut v[..2]).unwrap();
        core.read_32(stream(0), &mut v[2..]).unwrap();
        v
    };
    let before = regs(&mut core);
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    let mut got = vec![0u8; 0x3000];
    ext.read(&mut core, 0x9002_0000, &mut got).unwrap();
    assert_eq!(got, data);
    let crc = ext.crc(&mut core, 0x9002_0000, 0x3000, CRC32_INIT).unwrap();
    assert_eq!(crc, crc32_update(CRC32_INIT, &data));
    // While the session is resident: stream 2 untouched (stream 0 served).
    let during = regs(&mut core);
    assert_eq!(
        during[2 + 12..2 + 14],
        [2 << 25 | 1 << 10, 0x40],
        "stream 2"
    );
    assert_eq!(during[2] >> 25 & 7, 3, "stream 0 on SPI1's channel");
    ext.end_session(&mut core).unwrap();
    assert_eq!(regs(&mut core), before, "DMA2 flags and streams 0-5");
    assert_eq!(core.read_word_32(reg::RCC_AHB1ENR).unwrap(), ahb1 | DMA2EN);
}

#[test]
fn reads_and_crcs_return_what_the_chip_holds() {
    let data = pattern(0x1234_5678, 0x12345);
    let (_b, mut session) = app_state(SimConfig::default(), &[(0x3, &data)]);
    let mut core = session.core(0).unwrap();
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    let mut got = vec![0u8; 0x10000];
    ext.read(&mut core, 0x9000_0003, &mut got).unwrap();
    assert_eq!(got, data[..0x10000]);
    // A second read of the same bytes comes from the cache (no stub run):
    // still identical.
    let mut again = vec![0u8; 100];
    ext.read(&mut core, 0x9000_1003, &mut again).unwrap();
    assert_eq!(again, data[0x1000..0x1064]);
    ext.invalidate();
    let crc = ext
        .crc(&mut core, 0x9000_0003, data.len() as u32, CRC32_INIT)
        .unwrap();
    assert_eq!(crc, crc32_update(CRC32_INIT, &data));
}

/// A `load` on a core left on the 16 MHz HSI (after reset) runs the stub
/// at 168 MHz from the PLL, and the session's end puts RCC_CR,
/// RCC_PLLCFGR, RCC_CFGR and FLASH_ACR back as found: the HSI again.
#[test]
fn a_long_operation_raises_the_clock_and_the_session_end_restores_rcc_and_flash_acr() {
    const RCC_CR: u64 = 0x4002_3800;
    const FLASH_ACR: u64 = 0x4002_3C00;
    let b = board(SimConfig::default());
    let mut session = attach(&b);
    let mut core = session.core(0).unwrap();
    core.reset_and_halt(std::time::Duration::from_millis(500))
        .unwrap();
    let clocks = |core: &mut Core<'_>| {
        let mut rcc = [0u32; 3];
        core.read_32(RCC_CR, &mut rcc).unwrap();
        (rcc, core.read_word_32(FLASH_ACR).unwrap())
    };
    let before = clocks(&mut core);
    assert_eq!(before.0[2] & 0xC, 0, "SYSCLK is the HSI after reset");
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    let data = pattern(11, 0x1_0000);
    ext.flash_erase(&mut core, 0x9000_0000, 0x1_0000).unwrap();
    ext.flash_write(0x9000_0000, &data).unwrap();
    ext.commit(&mut core, &mut |_| {}).unwrap();
    assert!(ext.is_resident());
    let during = clocks(&mut core);
    assert_eq!(
        during.0[2] & 0xC,
        0x8,
        "SYSCLK from the PLL during the session"
    );
    assert_eq!(during.1 & 7, 5, "5 wait states at 168 MHz");
    ext.end_session(&mut core).unwrap();
    assert_eq!(clocks(&mut core), before, "RCC and FLASH_ACR as found");
    assert_eq!(b.lock().mcu().chip.contents()[..0x1_0000], data[..]);
}

#[test]
fn commit_erases_and_programs_with_the_largest_blocks() {
    let (b, mut session) = app_state(SimConfig::default(), &[(0, &[0u8; 0x30000])]);
    let mut core = session.core(0).unwrap();
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    let data = pattern(7, 0x11171);
    ext.flash_erase(&mut core, 0x9000_F000, 0x12000).unwrap();
    ext.flash_write(0x9000_F123, &data).unwrap();
    let mut events = Vec::new();
    ext.commit(&mut core, &mut |e| events.push(e)).unwrap();
    let chip = b.lock().mcu().chip.contents()[..0x30000].to_vec();
    assert_eq!(&chip[0xF123..0xF123 + data.len()], &data[..]);
    assert!(
        chip[0xF000..0xF123].iter().all(|&x| x == 0xFF),
        "erased around the data"
    );
    assert!(chip[0xF123 + data.len()..0x21000]
        .iter()
        .all(|&x| x == 0xFF));
    assert_eq!(chip[0xEFFF], 0, "outside the erase untouched");
    assert_eq!(chip[0x21000], 0, "outside the erase untouched");
    use extflash_gdb::flash::FlashEvent;
    // 72 KiB, more than the 64 KiB read first: the erases go as
    // ERASE_UNLESS_BLANK, announced only by `Done` (none of them is blank).
    let erased = events.iter().find_map(|e| match e {
        FlashEvent::Done { erased, .. } => Some(*erased),
        _ => None,
    });
    assert_eq!(erased, Some(0x12000), "4K + 64K + 4K: {events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, FlashEvent::Erasing { .. })),
        "no erase claimed before the stub said it ran"
    );
    assert_eq!(
        b.lock().mcu().chip.counters().bytes_erased,
        0x12000,
        "the erases cover 0xF000..0x21000 exactly"
    );
    let programmed: u32 = events
        .iter()
        .filter_map(|e| match e {
            FlashEvent::Programmed { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .sum();
    assert_eq!(
        programmed as usize,
        data.len(),
        "progress adds up to the image"
    );
    assert!(
        matches!(events.last(), Some(FlashEvent::Done { programmed, .. }) if *programmed == data.len() as u64)
    );
}

#[test]
fn protected_chip_is_refused_before_anything_is_erased_then_unprotect_works() {
    let (b, mut session) = app_state(SimConfig::default(), &[(0, &[0x11; 0x1000])]);
    // BP2..BP0 = 111: whole array protected (volatile and non-volatile).
    b.lock().mcu().chip.set_status_registers([0x1C, 0x02, 0x60]);
    let mut core = session.core(0).unwrap();
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    ext.flash_erase(&mut core, 0x9000_0000, 0x1000).unwrap();
    ext.flash_write(0x9000_0000, &[1, 2, 3, 4]).unwrap();
    let err = ext.commit(&mut core, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("0x90000000"), "{err}");
    let chain = extflash_gdb::error::DisplayChain(&err).to_string();
    assert!(chain.contains("monitor flash unprotect"), "{chain}");
    assert_eq!(b.lock().mcu().chip.contents()[0], 0x11, "nothing erased");

    let (before, after) = ext.unprotect(&mut core).unwrap();
    assert!(before.protects_something());
    assert!(!after.protects_something());
    assert_eq!(after, StatusRegs([0x00, 0x02, 0x60]));
    ext.flash_erase(&mut core, 0x9000_0000, 0x1000).unwrap();
    ext.flash_write(0x9000_0000, &[1, 2, 3, 4]).unwrap();
    ext.commit(&mut core, &mut |_| {}).unwrap();
    assert_eq!(&b.lock().mcu().chip.contents()[..5], &[1, 2, 3, 4, 0xFF]);
}

#[test]
fn absent_chip_error_names_the_spi_instance_and_pins() {
    let config = SimConfig {
        strict: true,
        faults: Faults {
            absent: true,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let (_b, mut session) = app_state(config, &[]);
    let mut core = session.core(0).unwrap();
    let board = Board::builtin();
    let before = snapshot(&mut core, &board);
    let mut ext = ExtFlash::new(board.external_flash.clone().unwrap());
    let err = ext.identify(&mut core).unwrap_err();
    assert!(matches!(err, ExtFlashError::NoChip { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "no SPI flash answers on SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0): check wiring and power"
    );
    assert_eq!(
        before,
        snapshot(&mut core, &board),
        "restored after the failure"
    );
}

#[test]
fn chip_is_not_touched_while_the_application_holds_chip_select() {
    let data = pattern(99, 0x2000);
    let (b, mut session) = app_state(SimConfig::default(), &[(0, &data)]);
    let mut core = session.core(0).unwrap();
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    let mut first = [0u8; 16];
    ext.read(&mut core, 0x9000_0010, &mut first).unwrap();
    ext.end_session(&mut core).unwrap();
    // The application drives CS (PB0) low, as in the middle of its own
    // transaction.
    core.write_word_32(0x4002_0418, 1 << 16).unwrap();
    let opcodes_before = b.lock().mcu().chip.counters().by_opcode;
    let mut cached = [0u8; 16];
    ext.read(&mut core, 0x9000_0010, &mut cached).unwrap();
    assert_eq!(cached, first, "served from the cache");
    let mut other = [0u8; 16];
    let err = ext.read(&mut core, 0x9000_1800, &mut other).unwrap_err();
    assert!(
        matches!(err, ExtFlashError::AppInTransaction { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("CS PB0 is low"), "{err}");
    assert_eq!(
        b.lock().mcu().chip.counters().by_opcode,
        opcodes_before,
        "no command reached the chip"
    );
    core.write_word_32(0x4002_0418, 1).unwrap();
    ext.read(&mut core, 0x9000_1800, &mut other).unwrap();
    assert_eq!(other, data[0x1800..0x1810]);
}

/// The application's IWDG keeps counting while the stub runs (it is only
/// frozen while the core is halted with DBG_IWDG_STOP): the resident stub
/// must reload it, or a long read resets the chip in the middle.
#[test]
fn stub_reloads_a_running_watchdog_so_a_long_read_does_not_reset_the_chip() {
    const IWDG_KR: u64 = 0x4000_3000;
    const IWDG_PR: u64 = 0x4000_3004;
    const IWDG_RLR: u64 = 0x4000_3008;
    const RCC_CSR: u64 = 0x4002_3874;
    const DBGMCU_APB1_FZ: u64 = 0xE004_2008;
    const IWDGRSTF: u32 = 1 << 29;
    let data = pattern(5, 0x10000);
    let (b, mut session) = app_state(SimConfig::default(), &[(0, &data)]);
    let mut core = session.core(0).unwrap();
    // Frozen while halted (as a debugger sets it), then started: /4 and a
    // reload of 80 is 10 ms at 32 kHz, far shorter than reading 64 KiB.
    let fz = core.read_word_32(DBGMCU_APB1_FZ).unwrap();
    core.write_word_32(DBGMCU_APB1_FZ, fz | 1 << 12).unwrap();
    core.write_word_32(RCC_CSR, 1 << 24).unwrap(); // RMVF: clear reset flags
    core.write_word_32(IWDG_KR, 0xCCCC).unwrap();
    core.write_word_32(IWDG_KR, 0x5555).unwrap();
    core.write_word_32(IWDG_PR, 0).unwrap();
    core.write_word_32(IWDG_RLR, 80).unwrap();
    core.write_word_32(IWDG_KR, 0xAAAA).unwrap();
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    let mut got = vec![0u8; data.len()];
    ext.read(&mut core, 0x9000_0000, &mut got).unwrap();
    assert!(
        b.lock().mcu().iwdg.reloads() > 0,
        "the stub reloaded the watchdog"
    );
    ext.end_session(&mut core).unwrap();
    assert!(got == data, "read back what the chip holds");
    let csr = core.read_word_32(RCC_CSR).unwrap();
    assert_eq!(csr & IWDGRSTF, 0, "no watchdog reset (RCC_CSR {csr:#010x})");
    assert_eq!(
        core.read_word_32(DBGMCU_APB1_FZ).unwrap(),
        fz | 1 << 12,
        "DBGMCU_APB1_FZ restored"
    );
}

/// The application halted while its SPI DMA transfer runs (RXDMAEN and a
/// DMA2 channel-3 stream enabled): the stub must not reconfigure SPI1 under
/// it, so an uncached read is refused with the reason, and works once the
/// stream is off.
#[test]
fn chip_is_not_touched_while_the_application_spi_dma_is_enabled() {
    const SPI1_CR2: u64 = 0x4001_3004;
    const DMA2_S0CR: u64 = 0x4002_6410;
    let data = pattern(17, 0x2000);
    let (b, mut session) = app_state(SimConfig::default(), &[(0, &data)]);
    let mut core = session.core(0).unwrap();
    let cr2 = core.read_word_32(SPI1_CR2).unwrap();
    core.write_word_32(SPI1_CR2, cr2 | 1).unwrap(); // RXDMAEN
                                                    // Stream 0, channel 3, enabled (the transfer itself is the app's).
    let ahb1 = core.read_word_32(0x4002_3830).unwrap();
    core.write_word_32(0x4002_3830, ahb1 | 1 << 22).unwrap(); // DMA2EN
    let s0cr = core.read_word_32(DMA2_S0CR).unwrap();
    core.write_word_32(DMA2_S0CR + 4, 0x100).unwrap(); // NDTR
    core.write_word_32(DMA2_S0CR + 8, 0x4001_300C).unwrap(); // PAR: SPI1 DR
    core.write_word_32(DMA2_S0CR + 12, 0x2000_8000).unwrap(); // M0AR
    core.write_word_32(DMA2_S0CR, 3 << 25 | 1 << 10 | 1)
        .unwrap(); // CH3, MINC, EN
    assert_ne!(
        core.read_word_32(DMA2_S0CR).unwrap() & 1,
        0,
        "stream enabled"
    );
    let opcodes_before = b.lock().mcu().chip.counters().by_opcode;
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    let mut buf = [0u8; 16];
    let err = ext.read(&mut core, 0x9000_0100, &mut buf).unwrap_err();
    assert!(
        matches!(err, ExtFlashError::AppSpiBusy { spi: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("DMA2 stream 0"), "{err}");
    assert_eq!(
        b.lock().mcu().chip.counters().by_opcode,
        opcodes_before,
        "no command reached the chip"
    );
    core.write_word_32(DMA2_S0CR, s0cr & !1).unwrap();
    core.write_word_32(SPI1_CR2, cr2).unwrap();
    ext.read(&mut core, 0x9000_0100, &mut buf).unwrap();
    ext.end_session(&mut core).unwrap();
    assert_eq!(buf[..], data[0x100..0x110]);
}

/// A board file that pins a window larger than the chip would make loads
/// wrap around to the chip's start: identification refuses it, naming both
/// sizes.
#[test]
fn pinned_size_larger_than_the_chip_is_refused_at_identification() {
    let text = format!(
        "{}size = 0x1000000\n",
        extflash_gdb::board::DEFAULT_BOARD_TOML
    );
    let board = Board::from_toml_str(&text, "pinned.toml").expect("16 MiB is a valid pin");
    let (_b, mut session) = app_state(SimConfig::default(), &[]);
    let mut core = session.core(0).unwrap();
    let mut ext = ExtFlash::new(board.external_flash.unwrap());
    let err = ext.identify(&mut core).unwrap_err();
    assert!(
        matches!(
            err,
            ExtFlashError::PinnedSizeTooLarge {
                pinned: 0x100_0000,
                chip: 0x80_0000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("fix `size`"), "{err}");
    ext.end_session(&mut core).unwrap();
}

/// A user watchpoint on memory the stub writes (here the top of the work
/// area, where its mailbox and stack are) is disarmed while the stub runs —
/// else the first write would halt the stub — and armed again afterwards.
#[test]
fn user_watchpoints_are_disarmed_during_a_stub_session_and_restored() {
    const DEMCR: u64 = 0xE000_EDFC;
    const COMP0: u64 = 0xE000_1020;
    const MASK0: u64 = 0xE000_1024;
    const FUNCTION0: u64 = 0xE000_1028;
    let data = pattern(23, 0x1000);
    let (_b, mut session) = app_state(SimConfig::default(), &[(0, &data)]);
    let mut core = session.core(0).unwrap();
    let demcr = core.read_word_32(DEMCR).unwrap();
    core.write_word_32(DEMCR, demcr | 1 << 24).unwrap();
    core.write_word_32(COMP0, 0x2001_FF00).unwrap();
    core.write_word_32(MASK0, 8).unwrap(); // 256 bytes
    core.write_word_32(FUNCTION0, 6).unwrap(); // write watchpoint
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    let mut got = [0u8; 64];
    ext.read(&mut core, 0x9000_0000, &mut got).unwrap();
    ext.end_session(&mut core).unwrap();
    assert_eq!(got[..], data[..64]);
    assert_eq!(
        core.read_word_32(FUNCTION0).unwrap() & 0xF,
        6,
        "the watchpoint is armed again"
    );
    assert_eq!(core.read_word_32(COMP0).unwrap(), 0x2001_FF00);
}

/// What the session's save changes before it has saved everything: the
/// debug block (DEMCR's TRCENA and vector catch, DWT, DFSR, DBGMCU) and the
/// peripheral clocks of the wiring.
fn debug_state(core: &mut Core<'_>) -> Vec<(u32, u32)> {
    use extflash_gdb::cortex_m::{dwt, DEMCR, DFSR};
    let mut regs = vec![
        DEMCR,
        dwt::CTRL,
        DFSR,
        0xE004_2008, // DBGMCU_APB1_FZ
        stm32f4::RCC_AHB1ENR,
        0x4002_3844, // RCC_APB2ENR (SPI1EN)
    ];
    regs.extend((0..dwt::COMPARATORS).map(dwt::function));
    regs.into_iter()
        .map(|a| (a, core.read_word_32(a.into()).unwrap()))
        .collect()
}

/// A probe read that fails partway through the session's save (one FAULT,
/// as a glitch on the link gives, at each step in turn: a core register,
/// the work area, DEMCR, the DWT, DFSR, DBGMCU, an RCC enable, a GPIO and
/// an SPI register). Each time the read fails with an error naming what was
/// being read, and DEMCR (TRCENA, vector catch), the DWT, DFSR,
/// DBGMCU_APB1_FZ, the peripheral clocks, RAM and every register are as
/// the application left them — also the debug registers the save had not
/// reached yet.
#[test]
fn save_failing_midway_leaves_trcena_clocks_and_debug_registers_as_found() {
    use extflash_gdb::cortex_m::{demcr, dwt, DEMCR};
    let data = pattern(29, 0x400);
    let (b, mut session) = app_state(SimConfig::default(), &[(0, &data)]);
    let board = Board::builtin();
    let mut core = session.core(0).unwrap();
    // Trace off, the GPIOB and SPI1 clocks off, the cycle counter on at an
    // odd count, one watchpoint armed, TIM2 frozen in debug but not the
    // IWDG: every value the save changes differs from what it writes.
    let d = core.read_word_32(DEMCR.into()).unwrap();
    core.write_word_32(DEMCR.into(), d & !(demcr::TRCENA | demcr::VC_FAULTS))
        .unwrap();
    let ahb1 = core.read_word_32(reg::RCC_AHB1ENR).unwrap();
    core.write_word_32(reg::RCC_AHB1ENR, ahb1 & !reg::GPIOBEN)
        .unwrap();
    let apb2 = core.read_word_32(reg::RCC_APB2ENR).unwrap();
    core.write_word_32(reg::RCC_APB2ENR, apb2 & !reg::SPI1EN)
        .unwrap();
    core.write_word_32(dwt::CTRL.into(), dwt::CTRL_CYCCNTENA)
        .unwrap();
    core.write_word_32(dwt::CYCCNT.into(), 0x1234_5678).unwrap();
    core.write_word_32(dwt::comp(0).into(), 0x2000_0100)
        .unwrap();
    core.write_word_32(dwt::function(0).into(), 6).unwrap();
    core.write_word_32(0xE004_2008, 1).unwrap(); // DBG_TIM2_STOP
    let before = (snapshot(&mut core, &board), debug_state(&mut core));
    assert_ne!(
        before.1[0].1 & demcr::TRCENA,
        demcr::TRCENA,
        "TRCENA starts off"
    );

    let steps: [(u32, &str); 10] = [
        (0xE000_EDF8, "core register"), // DCRDR: the first register read
        (0x2001_8000, "saving the work area 0x20018000"),
        (0x2001_FF00, "saving the work area"),
        (DEMCR, "0xe000edfc"),
        (dwt::CYCCNT, "0xe0001000"),      // read with CTRL as one block
        (dwt::function(2), "0xe0001000"), // CTRL..FUNCTION3 in one block
        (0xE000_ED30, "0xe000ed30"),      // DFSR
        (0xE004_2008, "0xe0042008"),      // DBGMCU_APB1_FZ
        (0x4002_3844, "0x40023844"),      // RCC_APB2ENR
        (0x4002_0420, "0x40020400"),      // GPIOB_AFRL, in the GPIOB block read
    ];
    for (addr, says) in steps {
        let mut ext = ExtFlash::new(board.external_flash.clone().unwrap());
        b.lock().inject_read_fault(addr, 1);
        // Longer than a direct read: the stub session's save runs.
        let mut buf = [0u8; 64];
        let err = ext.read(&mut core, 0x9000_0000, &mut buf).unwrap_err();
        let text = extflash_gdb::error::DisplayChain(&err).to_string();
        assert!(text.contains(says), "fault at {addr:#010x}: {text}");
        assert!(!ext.is_resident(), "fault at {addr:#010x}: no session");
        let after = (snapshot(&mut core, &board), debug_state(&mut core));
        let changed = differences(&before, &after);
        assert!(
            changed.is_empty(),
            "fault at {addr:#010x} ({text}) changed {changed:x?}"
        );
    }
    // Without a fault the same read works, and leaves the same state.
    let mut ext = ExtFlash::new(board.external_flash.clone().unwrap());
    let mut buf = [0u8; 16];
    ext.read(&mut core, 0x9000_0000, &mut buf).unwrap();
    ext.end_session(&mut core).unwrap();
    assert_eq!(buf[..], data[..16]);
    let after = (snapshot(&mut core, &board), debug_state(&mut core));
    assert_eq!(differences(&before, &after), vec![]);
}

/// What differs between two states: (register or address, before, after).
fn differences(
    a: &(Snapshot, Vec<(u32, u32)>),
    b: &(Snapshot, Vec<(u32, u32)>),
) -> Vec<(String, u32, u32)> {
    let pairs = |x: &Vec<(u32, u32)>, y: &Vec<(u32, u32)>, what: &str| {
        x.iter()
            .zip(y)
            .filter(|(p, q)| p != q)
            .map(|(p, q)| (format!("{what} {:#010x}", p.0), p.1, q.1))
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    for (p, q) in a.0.regs.iter().zip(&b.0.regs) {
        if p != q {
            out.push((format!("register {}", p.0), p.1, q.1));
        }
    }
    if a.0.sp != b.0.sp {
        out.push(("sp".into(), a.0.sp, b.0.sp));
    }
    let wa = Board::builtin().external_flash.unwrap().work_area;
    for (i, (p, q)) in a.0.ram.iter().zip(&b.0.ram).enumerate() {
        if p != q {
            out.push((format!("RAM {:#010x}", wa.start + 4 * i as u32), *p, *q));
        }
    }
    out.extend(pairs(&a.0.periph, &b.0.periph, "peripheral"));
    out.extend(pairs(&a.1, &b.1, "debug"));
    out
}

/// The same watchdog (100 ms, counting while halted: DBGMCU_APB1_FZ has
/// only DBG_TIM2_STOP) through a 70 KB program, whose pages each take a
/// short tPP: the stub refreshes it between pages (the chip's BUSY poll),
/// so ~0.4 s of programming ends without a reset.
#[test]
fn stub_reloads_a_running_watchdog_between_page_programs() {
    const IWDG_KR: u64 = 0x4000_3000;
    const RCC_CSR: u64 = 0x4002_3874;
    const DBGMCU_APB1_FZ: u64 = 0xE004_2008;
    let (b, mut session) = app_state(SimConfig::default(), &[]);
    let mut core = session.core(0).unwrap();
    core.write_word_32(DBGMCU_APB1_FZ, 1).unwrap();
    core.write_word_32(RCC_CSR, 1 << 24).unwrap(); // RMVF
                                                   // Start, /8, reload 399: 400 x 8 / 32 kHz = 100 ms.
    for (reg, v) in [(0, 0xCCCC), (0, 0x5555), (4, 1), (8, 399), (0, 0xAAAA)] {
        core.write_word_32(IWDG_KR + reg, v).unwrap();
    }
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    let data = pattern(7, 0x11171);
    ext.flash_erase(&mut core, 0x9000_F000, 0x12000).unwrap();
    ext.flash_write(0x9000_F123, &data).unwrap();
    let t0 = b.lock().now();
    ext.commit(&mut core, &mut |_| {}).unwrap();
    let took_ps = b.lock().now() - t0;
    ext.end_session(&mut core).unwrap();
    assert!(
        took_ps > 300_000_000_000,
        "longer than the watchdog: {took_ps} ps"
    );
    let csr = core.read_word_32(RCC_CSR).unwrap();
    assert_eq!(csr & 1 << 29, 0, "no watchdog reset (RCC_CSR {csr:#010x})");
    assert!(b.lock().mcu().iwdg.reloads() > 0);
    assert_eq!(core.read_word_32(DBGMCU_APB1_FZ).unwrap(), 1);
    let chip = b.lock().mcu().chip.contents()[0xF123..0xF123 + data.len()].to_vec();
    assert!(chip == data, "programmed");
}

/// A probe fault in the middle of a streamed load: the error names the
/// window range that may not hold the image, everything below it does, and
/// the next load puts the rest right.
#[test]
fn a_fault_in_the_middle_of_a_stream_names_the_range_and_the_next_load_fixes_it() {
    use extflash_gdb::extflash::stub::StubImage;
    use extflash_gdb::flash::FlashEvent;
    use extflash_stub_abi::layout::layout;
    const WINDOW: u32 = 0x9000_0000;
    let old = vec![0x11u8; 0x4_0000];
    let (b, mut session) = app_state(SimConfig::default(), &[(0, &old)]);
    let mut core = session.core(0).unwrap();
    let cfg = Board::builtin().external_flash.unwrap();
    let stub_len = StubImage::builtin().unwrap().bytes.len() as u32;
    let l = layout(&cfg.work_area, stub_len).unwrap();
    // The poll of the mailbox's `done` (with `rp`) starts failing once
    // 64 KiB are in.
    let poll = l.mailbox + extflash_stub_abi::mailbox_offset::DONE;
    let image = pattern(31, 0x3_0000);
    let mut ext = ExtFlash::new(cfg);
    ext.flash_erase(&mut core, WINDOW, 0x3_0000).unwrap();
    ext.flash_write(WINDOW, &image).unwrap();
    let mut seen = 0u32;
    let err = ext
        .commit(&mut core, &mut |e| {
            if let FlashEvent::Programmed { bytes, .. } = e {
                seen += bytes;
                if seen >= 0x1_0000 && seen - bytes < 0x1_0000 {
                    b.lock().inject_read_fault(poll, 3);
                }
            }
        })
        .unwrap_err();
    let text = extflash_gdb::error::DisplayChain(&err).to_string();
    let ExtFlashError::LoadIncomplete { from, to, .. } = err else {
        panic!("{text}")
    };
    assert!(
        from > WINDOW && from < WINDOW + 0x2_0000 && to == WINDOW + 0x3_0000,
        "{from:#x}..{to:#x}: {text}"
    );
    assert!(text.contains("may not hold the image"), "{text}");
    let chip = b.lock().mcu().chip.contents()[..0x3_0000].to_vec();
    let below = (from - WINDOW) as usize;
    assert!(
        chip[..below] == image[..below],
        "below the range: the image"
    );
    assert!(chip != image, "the stream stopped before the end");
    b.lock().inject_read_fault(0, 0);
    ext.flash_erase(&mut core, WINDOW, 0x3_0000).unwrap();
    ext.flash_write(WINDOW, &image).unwrap();
    ext.commit(&mut core, &mut |_| {}).unwrap();
    ext.end_session(&mut core).unwrap();
    let chip = b.lock().mcu().chip.contents()[..0x4_0000].to_vec();
    assert!(chip[..0x3_0000] == image[..], "the next load fixed it");
    assert!(
        chip[0x3_0000..] == old[0x3_0000..],
        "beyond the load: as before"
    );
}

/// The host checks the stub's stack canary after every call (after a
/// session's first non-empty `Read`, later `Read`s skip it): a stack too
/// small for the stub (64 bytes; it needs about 450) gives
/// `StackOverflow` naming the canary's address, the session ends, and the
/// application's registers and peripherals are as found. With the normal
/// stack the same read works.
#[test]
fn a_stack_too_small_for_the_stub_is_caught_by_the_canary_and_nothing_is_left_changed() {
    let board = Board::builtin();
    let data = pattern(0x5eed_0017, 0x400);
    let (_b, mut session) = app_state(SimConfig::default(), &[(0, &data)]);
    let mut core = session.core(0).unwrap();
    let before = snapshot(&mut core, &board);
    let mut ext = ExtFlash::new(board.external_flash.clone().unwrap());
    ext.set_stub_stack(64);
    let mut buf = vec![0u8; 0x100];
    let err = ext.read(&mut core, 0x9000_0000, &mut buf).unwrap_err();
    let text = extflash_gdb::error::DisplayChain(&err).to_string();
    assert!(matches!(err, ExtFlashError::StackOverflow { .. }), "{text}");
    assert!(text.contains("overflowed its stack"), "{text}");
    assert!(!ext.is_resident(), "the session ended");
    // Registers and peripherals as found; the stack ran into the data
    // buffer below it (the error says so), so the work area's RAM is not
    // compared.
    let after = snapshot(&mut core, &board);
    assert_eq!(
        (
            &before.regs,
            before.sp,
            &before.periph,
            before.demcr,
            before.dwt_ctrl
        ),
        (
            &after.regs,
            after.sp,
            &after.periph,
            after.demcr,
            after.dwt_ctrl
        ),
        "target changed"
    );
    ext.set_stub_stack(extflash_stub_abi::layout::STACK_SIZE);
    ext.read(&mut core, 0x9000_0000, &mut buf).unwrap();
    ext.end_session(&mut core).unwrap();
    assert_eq!(buf, data[..0x100]);
}

/// A sequential reader (GDB's `dump`, 8 KiB per `m` packet) gets what the
/// chip holds, and on an ST-Link/V2 each 12 KiB unit costs the link one
/// post, one poll (the stub has read the unit ahead while the host moved
/// the one before) and its two full 6144-byte reads: nothing waits for the
/// SPI. A commit, and a chip that changed behind the session's back
/// (`invalidate`), both make the next read see the chip, not the bytes the
/// stub had read ahead.
#[test]
fn sequential_reads_are_read_ahead_and_a_changed_chip_drops_what_was_read_ahead() {
    use extflash_gdb::sim::board::clock_of;
    use extflash_gdb::sim::link::STLINK_MAX_READ_32;
    use extflash_gdb::sim::LinkProfile;
    const UNIT: u32 = 0x3000;
    let data = pattern(0x5EED_0001, 0x40000);
    let config = SimConfig {
        link: LinkProfile::StlinkV2,
        ..SimConfig::default()
    };
    let (b, mut session) = app_state(config, &[(0, &data)]);
    let mut core = session.core(0).unwrap();
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    let read = |ext: &mut ExtFlash, core: &mut Core<'_>, off: u32, want: &[u8]| {
        let mut got = vec![0u8; want.len()];
        ext.read(core, 0x9000_0000 + off, &mut got).unwrap();
        assert!(got == want, "{:#x} bytes at chip {off:#x}", want.len());
    };
    // The session starts, the first read is not sequential, the second
    // is: from then on a unit is always read ahead.
    for off in [0, 0x2000] {
        read(
            &mut ext,
            &mut core,
            off,
            &data[off as usize..off as usize + 0x2000],
        );
    }
    let trips = || clock_of(&b.lock()).counters.round_trips;
    let before = trips();
    let (from, to) = (0x4000u32, 0x1C000u32);
    for off in (from..to).step_by(0x2000) {
        read(
            &mut ext,
            &mut core,
            off,
            &data[off as usize..off as usize + 0x2000],
        );
    }
    let spent = trips() - before;
    // 0x6000..0x1E000 crossed the link: whole units, two per miss.
    let units = u64::from((0x1E000 - 0x6000) / UNIT);
    let commands = 2 + u64::from(UNIT.div_ceil(STLINK_MAX_READ_32));
    assert_eq!(units, 8);
    assert!(
        spent <= units * commands * 2,
        "{spent} round trips for {units} units: more than a post, a poll and the data each"
    );

    // The stub has read 0x1E000..0x21000 ahead. A commit there...
    let new = pattern(0x5EED_0002, 0x1000);
    ext.flash_erase(&mut core, 0x9001_E000, 0x1000).unwrap();
    ext.flash_write(0x9001_E000, &new).unwrap();
    ext.commit(&mut core, &mut |_| {}).unwrap();
    read(&mut ext, &mut core, 0x1C000, &data[0x1C000..0x1E000]);
    read(&mut ext, &mut core, 0x1E000, &new);
    read(&mut ext, &mut core, 0x1F000, &data[0x1F000..0x21000]);
    // ...and a change the session did not make, once invalidated.
    for off in (0x21000u32..0x27000).step_by(0x2000) {
        read(
            &mut ext,
            &mut core,
            off,
            &data[off as usize..off as usize + 0x2000],
        );
    }
    let other = pattern(0x5EED_0003, 0x3000);
    b.lock().mcu().chip.load(0x27000, &other);
    ext.invalidate();
    read(&mut ext, &mut core, 0x27000, &other);
    ext.end_session(&mut core).unwrap();
}

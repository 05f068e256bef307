//! Rules of the ARMv7-M ARM, the Cortex-M4 TRM and RM0090 where silicon
//! faults or loses data and a kind emulator would carry on: unaligned
//! multiple/dual/exclusive accesses, CCR.UNALIGN_TRP, unaligned PPB
//! accesses, instruction fetches from Execute Never regions, SPI DR
//! writes with TXE = 0 and SPE cleared mid-frame, a wrong FLASH key, and
//! GPIO configuration locked by LCKR. Faults are not taken by the virtual
//! core: it locks up naming the rule.

use std::time::Duration;

use crate::support::sim::*;
use extflash_gdb::sim::{SimBoard, SimConfig};
use probe_rs::{CoreStatus, MemoryInterface, RegisterId};

const CODE: u32 = 0x2000_0200;
const DATA: u32 = 0x2000_0400;
const CCR: u64 = 0xE000_ED14;
const BKPT: u16 = 0xBE00;
/// probe-rs's `run()` single-steps the first instruction before it lets
/// the core run: every program starts with a NOP so the rule under test
/// meets a free-running core.
const NOP: u16 = 0xBF00;

/// Run `code` from RAM with `regs` (r0, r1, ...) and wait (bounded) for a
/// BKPT halt or a lockup. Returns the lockup's reason (the core is then
/// halted), or None if the program reached its BKPT.
fn run(
    board: &SimBoard,
    core: &mut probe_rs::Core<'_>,
    code: &[u16],
    regs: &[u32],
) -> Option<String> {
    core.halt(Duration::from_millis(100)).unwrap();
    for (i, hw) in code.iter().enumerate() {
        core.write_word_16(CODE as u64 + 2 * i as u64, *hw).unwrap();
    }
    for (i, v) in regs.iter().enumerate() {
        core.write_core_reg(RegisterId(i as u16), *v).unwrap();
    }
    core.write_core_reg(core.program_counter().id(), CODE)
        .unwrap();
    core.write_core_reg(core.registers().psr().unwrap().id(), 0x0100_0000u32)
        .unwrap();
    core.run().unwrap();
    for _ in 0..200 {
        match core.status().unwrap() {
            CoreStatus::LockedUp => {
                let fault = board.lock().fault().map(str::to_string);
                // Halting leaves lockup, so registers can be read.
                core.halt(Duration::from_millis(100)).unwrap();
                return fault;
            }
            CoreStatus::Halted(_) => return None,
            _ => {}
        }
    }
    panic!("the program neither halted nor locked up");
}

fn session(board: &SimBoard) -> probe_rs::Session {
    let mut session = attach(board);
    session
        .core(0)
        .unwrap()
        .halt(Duration::from_millis(100))
        .unwrap();
    session
}

#[track_caller]
fn expect_fault(fault: Option<String>, words: &[&str]) {
    let fault = fault.expect("the core locks up");
    for w in words {
        assert!(fault.contains(w), "{w:?} missing from: {fault}");
    }
}

#[test]
fn unaligned_ldm_stm_ldrd_and_strex_lock_up_while_an_unaligned_ldr_reads() {
    let board = board(SimConfig::default());
    let mut session = session(&board);
    let mut core = session.core(0).unwrap();
    core.write_word_32(DATA as u64, 0x4433_2211).unwrap();
    core.write_word_32(DATA as u64 + 4, 0x8877_6655).unwrap();
    let odd = DATA + 1;

    // ldr r1, [r0] at an odd address: allowed (CCR.UNALIGN_TRP = 0).
    assert_eq!(run(&board, &mut core, &[NOP, 0x6801, BKPT], &[odd]), None);
    let r1: u32 = core.read_core_reg(RegisterId(1)).unwrap();
    assert_eq!(r1, 0x5544_3322, "bytes 1-4 of DATA");

    // ldmia r0!, {r1, r2}
    let fault = run(&board, &mut core, &[NOP, 0xC806, BKPT], &[odd, 0]);
    expect_fault(fault, &["LDM", &format!("{odd:#010x}"), "UNALIGNED"]);
    let r1: u32 = core.read_core_reg(RegisterId(1)).unwrap();
    assert_eq!(r1, 0, "nothing was loaded");

    // ldrd r2, r3, [r0] with r0 = DATA + 2: word alignment is what counts.
    let fault = run(&board, &mut core, &[NOP, 0xE9D0, 0x2300, BKPT], &[DATA + 2]);
    expect_fault(fault, &["LDRD", "4-byte aligned"]);
    // ...and an 8-byte misaligned but word-aligned LDRD is fine.
    assert_eq!(
        run(&board, &mut core, &[NOP, 0xE9D0, 0x2300, BKPT], &[DATA]),
        None
    );

    // strex r1, r2, [r0]
    let fault = run(&board, &mut core, &[NOP, 0xE840, 0x2100, BKPT], &[DATA + 2]);
    expect_fault(fault, &["STREX"]);

    // stmia r0!, {r1} at DATA + 0x101 (SP cannot be unaligned: its bits
    // [1:0] read as zero, so PUSH/POP always meet an aligned address).
    let fault = run(&board, &mut core, &[NOP, 0xC002, BKPT], &[DATA + 0x101, !0]);
    expect_fault(fault, &["STM"]);
    for at in [0x100, 0x104] {
        let word: u32 = core.read_word_32(DATA as u64 + at).unwrap();
        assert_eq!(word, 0, "nothing was stored at +{at:#x}");
    }
}

#[test]
fn ccr_unalign_trp_makes_an_unaligned_ldr_fault() {
    let board = board(SimConfig::default());
    let mut session = session(&board);
    let mut core = session.core(0).unwrap();
    let ccr = core.read_word_32(CCR).unwrap();
    core.write_word_32(CCR, ccr | 1 << 3).unwrap();
    // ldrh r1, [r0] at DATA + 2 is aligned: fine.
    assert_eq!(
        run(&board, &mut core, &[NOP, 0x8801, BKPT], &[DATA + 2]),
        None
    );
    // ldr r1, [r0] at DATA + 2 is not.
    let fault = run(&board, &mut core, &[NOP, 0x6801, BKPT], &[DATA + 2]);
    expect_fault(fault, &["UNALIGN_TRP", "0x20000402"]);
    // Without the trap the same load runs.
    core.write_word_32(CCR, ccr).unwrap();
    assert_eq!(
        run(&board, &mut core, &[NOP, 0x6801, BKPT], &[DATA + 2]),
        None
    );
}

#[test]
fn unaligned_load_from_the_ppb_locks_up() {
    let board = board(SimConfig::default());
    let mut session = session(&board);
    let mut core = session.core(0).unwrap();
    // ldr r1, [r0] at DWT_CYCCNT + 1; aligned it reads.
    assert_eq!(
        run(&board, &mut core, &[NOP, 0x6801, BKPT], &[0xE000_1004]),
        None
    );
    let fault = run(&board, &mut core, &[NOP, 0x6801, BKPT], &[0xE000_1005]);
    expect_fault(fault, &["Private Peripheral Bus", "0xe0001005"]);
}

#[test]
fn instruction_fetch_from_an_execute_never_region_locks_up_without_reading_it() {
    let board = board(SimConfig::default());
    let mut session = session(&board);
    let mut core = session.core(0).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    // One frame received and left in DR: RXNE = 1.
    core.write_word_32(reg::SPI1_DR, 0x9F).unwrap();
    let rxne = |core: &mut probe_rs::Core<'_>| core.read_word_32(reg::SPI1_SR).unwrap() & 1;
    assert_eq!(rxne(&mut core), 1);
    // bx r0 to SPI1_DR (Thumb bit set).
    let fault = run(&board, &mut core, &[NOP, 0x4700, BKPT], &[0x4001_300D]);
    expect_fault(fault, &["0x4001300c", "Execute Never", "Peripheral"]);
    assert_eq!(rxne(&mut core), 1, "DR was not read as an instruction");
    let fault = run(&board, &mut core, &[NOP, 0x4700, BKPT], &[0xE000_1001]);
    expect_fault(fault, &["0xe0001000", "Execute Never"]);
}

/// SPI1 set up as master by the debugger; r0 = SPI1, r1 = a byte, r2 = CR1
/// without SPE.
fn spi_regs() -> [u32; 3] {
    [0x4001_3000, 0xA5, reg::CR1_MASTER_DIV4 & !(1 << 6)]
}

#[test]
fn spi_dr_write_with_txe_clear_breaks_rm0090_and_locks_up_under_strict() {
    let board = board(SimConfig::default());
    let mut session = session(&board);
    let mut core = session.core(0).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    // str r1, [r0, #12] three times: the first frame starts at once, the
    // second byte waits in the TX buffer (TXE = 0), the third overwrites it.
    let fault = run(
        &board,
        &mut core,
        &[NOP, 0x60C1, 0x60C1, 0x60C1, BKPT],
        &spi_regs(),
    );
    expect_fault(fault, &["SPI1_DR written with TXE=0", "28.3.7"]);
}

#[test]
fn spi_disabled_mid_frame_breaks_rm0090_but_waiting_for_bsy_is_fine() {
    let board = board(SimConfig::default());
    let mut session = session(&board);
    let mut core = session.core(0).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    // str r1, [r0, #12]; str r2, [r0]: SPE cleared while the frame runs.
    let fault = run(&board, &mut core, &[NOP, 0x60C1, 0x6002, BKPT], &spi_regs());
    expect_fault(fault, &["SPE cleared", "BSY=1", "28.3.8"]);

    core.reset_and_halt(Duration::from_millis(500)).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    // str r1, [r0, #12]; 1: ldr r3, [r0, #8]; lsls r3, #24 (BSY -> N);
    // bmi 1b; str r2, [r0]: the RM0090 28.3.8 order.
    let code = [NOP, 0x60C1, 0x6883, 0x061B, 0xD4FC, 0x6002, BKPT];
    assert_eq!(run(&board, &mut core, &code, &spi_regs()), None);
    let cr1 = core.read_word_32(reg::SPI1_CR1).unwrap();
    assert_eq!(cr1 & 1 << 6, 0, "disabled");
}

#[test]
fn wrong_flash_key_bus_faults_and_locks_flash_cr_until_reset() {
    const KEYR: u64 = 0x4002_3C04;
    const CR: u64 = 0x4002_3C10;
    let board = board(SimConfig::default());
    let mut session = session(&board);
    let mut core = session.core(0).unwrap();
    assert!(
        core.write_word_32(KEYR, 0x1234_5678).is_err(),
        "a wrong key answers with a bus error"
    );
    assert!(core.write_word_32(KEYR, 0x4567_0123).is_err(), "locked");
    assert!(core.write_word_32(KEYR, 0xCDEF_89AB).is_err());
    assert_ne!(core.read_word_32(CR).unwrap() & 1 << 31, 0, "LOCK");
    core.reset_and_halt(Duration::from_millis(500)).unwrap();
    core.write_word_32(KEYR, 0x4567_0123).unwrap();
    core.write_word_32(KEYR, 0xCDEF_89AB).unwrap();
    assert_eq!(core.read_word_32(CR).unwrap() & 1 << 31, 0, "unlocked");
    // Software that writes a wrong key: its store bus-faults.
    core.reset_and_halt(Duration::from_millis(500)).unwrap();
    let fault = run(
        &board,
        &mut core,
        &[NOP, 0x6001, BKPT],
        &[KEYR as u32, 0x1234_5678],
    );
    expect_fault(fault, &["KEYR written with a wrong key", "RM0090 3.5.1"]);
}

#[test]
fn gpio_lock_key_sequence_keeps_spi_pins_off_the_chip_until_reset() {
    const GPIOB_LCKR: u64 = 0x4002_041C;
    let board = board(SimConfig::default());
    let mut session = session(&board);
    let mut core = session.core(0).unwrap();
    let en = core.read_word_32(reg::RCC_AHB1ENR).unwrap();
    core.write_word_32(reg::RCC_AHB1ENR, en | reg::GPIOBEN)
        .unwrap();
    // An application locks PB3-PB5 as they are after reset (RM0090 8.4.8).
    let pins = 0b111 << 3;
    for w in [1 << 16 | pins, pins, 1 << 16 | pins] {
        core.write_word_32(GPIOB_LCKR, w).unwrap();
    }
    assert_eq!(core.read_word_32(GPIOB_LCKR).unwrap(), 1 << 16 | pins);
    // Routing them to SPI1 (AF5) no longer takes: the chip sees nothing.
    setup_spi1(&mut core, Pins::ALL, true);
    let afrl = core.read_word_32(reg::GPIOB_AFRL).unwrap();
    assert_eq!(afrl & 0x00FF_F000, 0, "AF of PB3-PB5 frozen at 0");
    assert_eq!(read_jedec_id(&mut core), [0xFF; 3], "MISO floats");
    // A reset releases the lock.
    core.reset_and_halt(Duration::from_millis(500)).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    assert_eq!(read_jedec_id(&mut core), [0xEF, 0x40, 0x17]);
}

#[test]
fn dma2_and_crc_registers_take_word_accesses_only_under_strict() {
    const DMA2_S0PAR: u32 = 0x4002_6418;
    const CRC_IDR: u64 = 0x4002_3004;
    let board = board(SimConfig::default());
    let mut session = session(&board);
    let mut core = session.core(0).unwrap();
    let en = core.read_word_32(reg::RCC_AHB1ENR).unwrap();
    core.write_word_32(reg::RCC_AHB1ENR, en | 1 << 22 | 1 << 12) // DMA2EN, CRCEN
        .unwrap();
    // str r1, [r0]: a word, fine; strb r1, [r0]: RM0090 10.2.
    assert_eq!(
        run(&board, &mut core, &[NOP, 0x6001, BKPT], &[DMA2_S0PAR, 0x55]),
        None
    );
    let fault = run(&board, &mut core, &[NOP, 0x7001, BKPT], &[DMA2_S0PAR, 0x55]);
    expect_fault(fault, &["DMA2 register at 0x40026418", "1-byte", "10.2"]);
    // A bit-band alias access has its alias's size: a word alias is fine.
    let alias = 0x4200_0000 + (DMA2_S0PAR - 0x4000_0000) * 32 + 4 * 8;
    assert_eq!(
        run(&board, &mut core, &[NOP, 0x6001, BKPT], &[alias, 1]),
        None
    );
    assert_eq!(core.read_word_32(DMA2_S0PAR as u64).unwrap(), 0x155);
    // The debugger is held to it too: its byte read answers FAULT.
    let mut byte = [0u8; 1];
    assert!(core.read_8(CRC_IDR, &mut byte).is_err(), "RM0090 4.4");
    assert!(core.read_word_32(CRC_IDR).is_ok());
}

/// HSE 8 MHz and the PLL at 168 MHz (APB1 /4, APB2 /2), set by the debugger.
fn clock_168_mhz(core: &mut probe_rs::Core<'_>) {
    const RCC_CR: u64 = 0x4002_3800;
    core.write_word_32(RCC_CR, 0x0001_0081).unwrap(); // HSEON
    core.write_word_32(RCC_CR + 4, 0x0740_5408).unwrap(); // PLLCFGR 8/336/2
    core.write_word_32(RCC_CR, 0x0101_0081).unwrap(); // PLLON
    core.write_word_32(RCC_CR + 8, 0x9402).unwrap(); // SW = PLL
}

/// Write enable, then a one-byte page program left selected: the next /CS
/// rise starts the program, after which the chip needs tSHSL2 (50 ns).
fn program_one_byte_left_selected(core: &mut probe_rs::Core<'_>) {
    // The previous program must be over, or 06h is ignored (bounded).
    for _ in 0..100 {
        if spi_transaction(core, &[0x05, 0])[1] & 1 == 0 {
            break;
        }
    }
    spi_transaction(core, &[0x06]);
    core.write_word_32(reg::GPIOB_BSRR, 1 << 16).unwrap();
    for b in [0x02, 0x00, 0x10, 0x00, 0x5A] {
        spi_xfer(core, b);
    }
}

#[test]
fn chip_selected_again_within_tshsl2_after_a_program_breaks_the_datasheet() {
    let board = board(SimConfig::default());
    let mut session = session(&board);
    let mut core = session.core(0).unwrap();
    clock_168_mhz(&mut core);
    setup_spi1(&mut core, Pins::ALL, true);
    let regs = [reg::GPIOB_BSRR as u32, 1 << 16, 1];
    // str r2, [r0] (deselect: the program starts); seven NOPs; str r1, [r0]
    // (select): 2 + 7 cycles at 168 MHz = 53.6 ns >= 50 ns.
    program_one_byte_left_selected(&mut core);
    let mut code = vec![NOP, 0x6002];
    code.extend([NOP; 7]);
    code.extend([0x6001, BKPT]);
    assert_eq!(run(&board, &mut core, &code, &regs), None);
    core.write_word_32(reg::GPIOB_BSRR, 1).unwrap();
    // The same without the NOPs: selected again 11.9 ns after the rise.
    program_one_byte_left_selected(&mut core);
    let fault = run(&board, &mut core, &[NOP, 0x6002, 0x6001, BKPT], &regs);
    expect_fault(
        fault,
        &["W25Q64JV /CS selected 11 ns after it rose", "tSHSL2 50 ns"],
    );
}

#[test]
fn ccm_ram_holds_data_but_no_code_and_dma2_cannot_reach_it() {
    const CCM: u32 = 0x1000_0000;
    const DMA2: u64 = 0x4002_6400;
    const S0CR: u64 = DMA2 + 0x10;
    let board = board(SimConfig::default());
    let mut session = session(&board);
    let mut core = session.core(0).unwrap();
    // Data: ldr r1, [r0] from CCM reads.
    core.write_word_32(CCM as u64, 0x1234_5678).unwrap();
    assert_eq!(run(&board, &mut core, &[NOP, 0x6801, BKPT], &[CCM]), None);
    let r1: u32 = core.read_core_reg(RegisterId(1)).unwrap();
    assert_eq!(r1, 0x1234_5678);
    // Code: bx r0 to a NOP in CCM locks up (the I-bus does not reach it).
    core.write_word_16(CCM as u64 + 0x100, NOP).unwrap();
    let fault = run(&board, &mut core, &[NOP, 0x4700, BKPT], &[CCM + 0x101]);
    expect_fault(fault, &["0x10000100", "CCM RAM", "RM0090 2.3.1"]);

    // DMA2 memory-to-memory, 4 words SRAM -> SRAM: done, TCIF0.
    let en = core.read_word_32(reg::RCC_AHB1ENR).unwrap();
    core.write_word_32(reg::RCC_AHB1ENR, en | 1 << 22).unwrap();
    let m2m = |core: &mut probe_rs::Core<'_>, src: u32, dst: u32| {
        core.write_word_32(DMA2 + 0x08, 0x3D).unwrap(); // LIFCR: stream 0
        core.write_word_32(S0CR + 4, 4).unwrap(); // NDTR
        core.write_word_32(S0CR + 8, src).unwrap(); // PAR: the source
        core.write_word_32(S0CR + 12, dst).unwrap(); // M0AR
                                                     // DIR = memory-to-memory, PINC, MINC, 32-bit, EN.
        core.write_word_32(S0CR, 2 << 6 | 1 << 9 | 1 << 10 | 2 << 11 | 2 << 13 | 1)
            .unwrap();
        core.read_word_32(DMA2).unwrap() & (1 << 5 | 1 << 3) // LISR: TCIF0, TEIF0
    };
    assert_eq!(m2m(&mut core, DATA, DATA + 0x40), 1 << 5, "TCIF");
    // From CCM: a transfer error, the stream disabled, nothing moved.
    core.write_word_32(DATA as u64 + 0x80, 0).unwrap();
    assert_eq!(m2m(&mut core, CCM, DATA + 0x80), 1 << 3, "TEIF");
    assert_eq!(core.read_word_32(S0CR).unwrap() & 1, 0, "EN cleared");
    assert_eq!(core.read_word_32(DATA as u64 + 0x80).unwrap(), 0);
}

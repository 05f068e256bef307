//! SPI1 reaches the W25Q64JV only through correctly configured pins and a
//! clocked peripheral. The debugger drives RCC, GPIOB and SPI1 with memory
//! writes while the core is halted: they go to the same peripherals the
//! firmware would use.

use std::time::Duration;

use crate::support::sim::*;
use extflash_gdb::sim::w25q64jv::JEDEC_ID_IQ;
use extflash_gdb::sim::{SimBoard, SimConfig};
use probe_rs::MemoryInterface;

fn halted() -> (SimBoard, probe_rs::Session) {
    let board = board(SimConfig::default());
    let mut session = attach(&board);
    session
        .core(0)
        .unwrap()
        .halt(Duration::from_millis(100))
        .unwrap();
    (board, session)
}

/// (bytes the chip clocked while selected, 9Fh commands it accepted)
fn chip_activity(board: &SimBoard) -> (u64, u64) {
    let b = board.lock();
    let m = b.mcu();
    let c = m.chip.counters();
    (c.bytes_exchanged, c.by_opcode[0x9F])
}

#[test]
fn correct_pins_read_jedec_id_through_debugger_register_writes() {
    let (board, mut session) = halted();
    let mut core = session.core(0).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    assert_eq!(read_jedec_id(&mut core), JEDEC_ID_IQ);
    assert_eq!(chip_activity(&board), (4, 1));
}

#[test]
fn sck_left_as_input_chip_sees_no_command_and_miso_reads_ff() {
    let (board, mut session) = halted();
    let mut core = session.core(0).unwrap();
    let pins = Pins {
        sck: false,
        ..Pins::ALL
    };
    setup_spi1(&mut core, pins, true);
    // The SPI still runs its frames (RXNE comes up), but nothing clocks the chip.
    core.write_word_32(reg::GPIOB_BSRR, 1 << 16).unwrap();
    let (first, rxne) = spi_xfer(&mut core, 0x9F);
    core.write_word_32(reg::GPIOB_BSRR, 1).unwrap();
    assert!(rxne, "the master finishes the frame");
    assert_eq!(first, 0xFF);
    assert_eq!(read_jedec_id(&mut core), [0xFF; 3]);
    assert_eq!(chip_activity(&board), (0, 0), "no byte reached the chip");

    // Fix PB3 (AF5): the same sequence now reads the ID.
    setup_spi1(&mut core, Pins::ALL, true);
    assert_eq!(read_jedec_id(&mut core), JEDEC_ID_IQ);
    assert_eq!(chip_activity(&board), (4, 1));
}

#[test]
fn miso_left_as_input_reads_ff_though_the_chip_answers() {
    let (board, mut session) = halted();
    let mut core = session.core(0).unwrap();
    let pins = Pins {
        miso: false,
        ..Pins::ALL
    };
    setup_spi1(&mut core, pins, true);
    assert_eq!(read_jedec_id(&mut core), [0xFF; 3]);
    assert_eq!(chip_activity(&board), (4, 1), "the chip got 9Fh");
}

#[test]
fn mosi_left_as_input_chip_receives_ff_not_the_command() {
    let (board, mut session) = halted();
    let mut core = session.core(0).unwrap();
    let pins = Pins {
        mosi: false,
        ..Pins::ALL
    };
    setup_spi1(&mut core, pins, true);
    assert_eq!(read_jedec_id(&mut core), [0xFF; 3]);
    let (bytes, jedec) = chip_activity(&board);
    assert_eq!(bytes, 4, "clocked, but MOSI floats high");
    assert_eq!(jedec, 0);
}

#[test]
fn pb3_on_reset_alternate_function_0_is_not_spi1() {
    // GPIOB resets with PB3/PB4 in AF mode (AF0, JTDO/NJTRST): routing MOSI
    // and CS alone is not enough.
    let (board, mut session) = halted();
    let mut core = session.core(0).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    let afrl = core.read_word_32(reg::GPIOB_AFRL).unwrap();
    core.write_word_32(reg::GPIOB_AFRL, afrl & !0xF000).unwrap(); // PB3 -> AF0
    assert_eq!(read_jedec_id(&mut core), [0xFF; 3]);
    assert_eq!(chip_activity(&board), (0, 0));
}

#[test]
fn spi1_clock_not_enabled_register_writes_are_ignored() {
    let (board, mut session) = halted();
    let mut core = session.core(0).unwrap();
    setup_spi1(&mut core, Pins::ALL, false);
    assert_eq!(
        core.read_word_32(reg::SPI1_CR1).unwrap(),
        0,
        "CR1 write without SPI1EN did not stick"
    );
    core.write_word_32(reg::GPIOB_BSRR, 1 << 16).unwrap();
    let (rx, rxne) = spi_xfer(&mut core, 0x9F);
    core.write_word_32(reg::GPIOB_BSRR, 1).unwrap();
    assert!(!rxne, "no frame ran");
    assert_eq!(rx, 0, "an unclocked peripheral reads as zero");
    assert_eq!(chip_activity(&board), (0, 0));

    setup_spi1(&mut core, Pins::ALL, true);
    assert_eq!(read_jedec_id(&mut core), JEDEC_ID_IQ);
}

#[test]
fn cs_not_driven_chip_stays_deselected() {
    let (board, mut session) = halted();
    let mut core = session.core(0).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    let moder = core.read_word_32(reg::GPIOB_MODER).unwrap();
    core.write_word_32(reg::GPIOB_MODER, moder & !0b11).unwrap(); // PB0 input
    assert_eq!(read_jedec_id(&mut core), [0xFF; 3]);
    assert_eq!(chip_activity(&board), (0, 0), "pull-up keeps /CS high");
}

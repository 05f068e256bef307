//! The real test firmware (`tests/firmware/firmware.elf`), programmed with
//! probe-rs's FlashLoader, drives SPI1 itself on the virtual board: it reads
//! the W25Q64JV's JEDEC ID and data and CRCs the first 4 KiB of the chip.

use crate::support::elf::{firmware_elf, load_segments, symbol};
use crate::support::sim::*;
use extflash_gdb::sim::w25q64jv::{JEDEC_ID_IM, JEDEC_ID_IQ};
use extflash_gdb::sim::SimConfig;
use extflash_stub_abi::crc32_update;
use probe_rs::{HaltReason, MemoryInterface, RegisterId};

/// What the firmware left in RAM when it reached `assets_checked(crc)`.
struct Boot {
    crc_arg: u32,
    jedec_id: [u8; 3],
    flash_head: [u8; 16],
    boot_marker: u32,
    data_check: u32,
    stage: u32,
    spi_errors: u32,
}

/// Flash the firmware, reset, and run to the breakpoint on `assets_checked`.
fn halt_at_assets_checked(
    config: SimConfig,
    chip_head: &[u8],
) -> (extflash_gdb::sim::SimBoard, probe_rs::Session) {
    let elf = firmware_elf();
    let board = board(config);
    board.lock().mcu().chip.load(0, chip_head);
    let mut session = attach(&board);
    flash_elf(&mut session, &elf);
    {
        let b = board.lock();
        let m = b.mcu();
        for (addr, data) in load_segments(&elf) {
            let off = (addr - 0x0800_0000) as usize;
            assert_eq!(
                &m.flash.array()[off..off + data.len()],
                &data[..],
                "{addr:#x}"
            );
        }
    }
    let mut core = session.core(0).unwrap();
    core.reset_and_halt(std::time::Duration::from_millis(500))
        .unwrap();
    let target = symbol(&elf, "assets_checked");
    core.set_hw_breakpoint(target as u64).unwrap();
    core.run().unwrap();
    let reason = wait_halted(&mut core);
    assert!(matches!(reason, HaltReason::Breakpoint(_)), "{reason:?}");
    let pc: u32 = core.read_core_reg(core.program_counter().id()).unwrap();
    assert_eq!(pc, target, "halted on assets_checked");
    core.clear_hw_breakpoint(target as u64).unwrap();
    drop(core);
    (board, session)
}

fn word(core: &mut probe_rs::Core<'_>, name: &str) -> u32 {
    core.read_word_32(symbol(&firmware_elf(), name) as u64)
        .unwrap()
}

fn boot_to_assets_checked(config: SimConfig, chip_head: &[u8]) -> Boot {
    let elf = firmware_elf();
    let (_board, mut session) = halt_at_assets_checked(config, chip_head);
    let mut core = session.core(0).unwrap();
    let mut jedec_id = [0; 3];
    core.read_8(symbol(&elf, "JEDEC_ID") as u64, &mut jedec_id)
        .unwrap();
    let mut flash_head = [0; 16];
    core.read_8(symbol(&elf, "FLASH_HEAD") as u64, &mut flash_head)
        .unwrap();
    Boot {
        crc_arg: core.read_core_reg(RegisterId(0)).unwrap(),
        jedec_id,
        flash_head,
        boot_marker: word(&mut core, "BOOT_MARKER"),
        data_check: word(&mut core, "DATA_CHECK"),
        stage: word(&mut core, "STAGE"),
        spi_errors: word(&mut core, "SPI_ERRORS"),
    }
}

#[test]
fn firmware_reads_jedec_id_head_and_crc_of_the_chip_through_spi1() {
    let chip = pattern(0xC0FF_EE11, 8192);
    let boot = boot_to_assets_checked(SimConfig::default(), &chip);
    assert_eq!(boot.jedec_id, JEDEC_ID_IQ);
    assert_eq!(
        &boot.flash_head[..],
        &chip[..16],
        "0x03 read of bytes 0..16"
    );
    assert_eq!(boot.boot_marker, 0xB007_C0DE);
    assert_eq!(
        boot.data_check, 0x1234_5678,
        ".data was programmed at its LMA and copied by Reset"
    );
    assert_eq!(boot.stage, 3);
    assert_eq!(boot.spi_errors, 0);
    assert_eq!(
        boot.crc_arg,
        crc32_update(0xFFFF_FFFF, &chip[..4096]),
        "assets_checked(crc) got the qCRC of chip bytes 0..4096 (0x0B fast read)"
    );
}

#[test]
fn firmware_on_an_erased_chip_passes_the_documented_crc() {
    let boot = boot_to_assets_checked(SimConfig::default(), &[]);
    assert_eq!(boot.flash_head, [0xFF; 16]);
    assert_eq!(boot.crc_arg, 0xAF19_D570, "README: 4096 bytes of 0xFF");
}

#[test]
fn firmware_reads_the_im_variant_jedec_id() {
    let config = SimConfig {
        jedec_id: JEDEC_ID_IM,
        ..SimConfig::default()
    };
    let chip = pattern(0x1357_9BDF, 4096);
    let boot = boot_to_assets_checked(config, &chip);
    assert_eq!(boot.jedec_id, [0xEF, 0x70, 0x17]);
    assert_eq!(&boot.flash_head[..], &chip[..16]);
    assert_eq!(boot.crc_arg, crc32_update(0xFFFF_FFFF, &chip));
}

#[test]
fn firmware_keeps_reading_the_id_in_its_tick_loop() {
    let elf = firmware_elf();
    let (board, mut session) = halt_at_assets_checked(SimConfig::default(), &[]);
    let mut core = session.core(0).unwrap();
    // A transaction every 10 ticks instead of 1000, so few instructions do.
    core.write_word_32(symbol(&elf, "SPI_PERIOD") as u64, 10)
        .unwrap();
    let rounds = symbol(&elf, "SPI_ROUNDS") as u64;
    core.run().unwrap();
    for _ in 0..100_000 {
        if core.read_word_32(rounds).unwrap() >= 3 {
            break;
        }
    }
    core.halt(std::time::Duration::from_millis(100)).unwrap();
    assert!(core.read_word_32(rounds).unwrap() >= 3, "transactions ran");
    let mut last = [0; 3];
    core.read_8(symbol(&elf, "LAST_ID") as u64, &mut last)
        .unwrap();
    assert_eq!(last, JEDEC_ID_IQ);
    assert_eq!(word(&mut core, "ID_MISMATCHES"), 0);
    assert_eq!(word(&mut core, "SPI_ERRORS"), 0);
    let b = board.lock();
    let m = b.mcu();
    assert!(m.chip.counters().by_opcode[0x9F] >= 4, "boot + 3 rounds");
}

//! `TargetSelector::Auto` on the virtual board behaves as on a real
//! STM32F407: probe-rs 0.32 reads the class-1 ROM table (ST's JEP106, part
//! 0x413), finds no vendor-specific detection for ST, and looks the part up
//! in its registry, where no STM32F4 chip carries a part number. Auto-detect
//! therefore fails with `ChipAutodetectFailed`; with a registry that knows
//! the part, it finds the F407, which proves the sim's IDs are the ones the
//! lookup needs.

use crate::support::sim::*;
use extflash_gdb::sim::SimConfig;
use probe_rs::config::{Registry, RegistryError, TargetSelector};
use probe_rs::{Error, MemoryInterface, Permissions};

#[test]
fn builtin_registry_has_no_part_number_for_any_stm32f4() {
    // The precondition of the failure below: if a later probe-rs adds part
    // numbers, auto-detect would succeed on silicon and this test says so.
    let registry = Registry::from_builtin_families();
    let f4 = registry
        .families()
        .iter()
        .find(|f| f.name == "STM32F4 Series")
        .expect("STM32F4 family");
    assert!(f4.variants.iter().all(|c| c.part.is_none()));
}

#[test]
fn auto_detect_fails_as_on_a_real_f407_with_chip_autodetect_failed() {
    let board = board(SimConfig::default());
    let err = board
        .probe()
        .attach(TargetSelector::Auto, Permissions::default())
        .expect_err("probe-rs 0.32 cannot auto-detect an STM32F407");
    assert!(
        matches!(
            err,
            Error::ChipNotFound(RegistryError::ChipAutodetectFailed)
        ),
        "{err:?}"
    );
    assert!(
        board.lock().counters().swd_transactions > 20,
        "detection talked to the board (ROM table walk)"
    );
}

#[test]
fn auto_detect_finds_the_f407_when_the_registry_knows_st_part_0x413() {
    let mut registry = Registry::from_builtin_families();
    // "STM32F407VETx" matches the registry variant "STM32F407VE" by prefix.
    let variant = "STM32F407VE";
    let mut f4 = registry
        .families()
        .iter()
        .find(|f| f.name == "STM32F4 Series")
        .unwrap()
        .clone();
    for chip in &mut f4.variants {
        if chip.name == variant {
            chip.part = Some(0x413);
        }
    }
    registry.add_target_family(f4).unwrap();
    let board = board(SimConfig::default());
    let session = board
        .probe()
        .attach_with_registry(TargetSelector::Auto, Permissions::default(), &registry)
        .expect("ST JEP106 + part 0x413 from the ROM table select the F407");
    assert_eq!(session.target().name, variant);
}

#[test]
fn identification_registers_match_stm32f407_silicon() {
    let board = board(SimConfig::default());
    let mut session = attach(&board);
    let mut core = session.core(0).unwrap();
    let mut r = |a: u64| core.read_word_32(a).unwrap();
    assert_eq!(r(0xE000_ED00), 0x410F_C241, "CPUID: Cortex-M4 r0p1");
    assert_eq!(r(0xE004_2000), 0x1007_6413, "DBGMCU_IDCODE: F40x/41x");
    // ROM table at 0xE00FF000 (RM0090 38.x, Cortex-M4 TRM table 7-1).
    let entries: Vec<u32> = (0..7).map(|i| r(0xE00F_F000 + 4 * i)).collect();
    assert_eq!(
        entries,
        [
            0xFFF0_F003, // SCS
            0xFFF0_2003, // DWT
            0xFFF0_3003, // FPB
            0xFFF0_1003, // ITM
            0xFFF4_1003, // TPIU
            0xFFF4_2003, // ETM (the F407 has one)
            0,           // end
        ],
        "{entries:#010x?}"
    );
    let pid: Vec<u32> = [0xFD0, 0xFE0, 0xFE4, 0xFE8, 0xFEC]
        .iter()
        .map(|o| r(0xE00F_F000 + o))
        .collect();
    assert_eq!(
        pid,
        [0x00, 0x13, 0x04, 0x0A, 0x00],
        "ST JEP106 0x20, part 0x413"
    );
    let cid: Vec<u32> = (0..4).map(|i| r(0xE00F_FFF0 + 4 * i)).collect();
    assert_eq!(cid, [0x0D, 0x10, 0x05, 0xB1], "class-1 ROM table");
}

#[test]
fn debug_port_and_ahb_ap_ids_match_stm32f4_silicon() {
    // Raw DP/AP accesses, no probe-rs session caching SELECT.
    let board = board(SimConfig::default());
    let mut b = board.lock();
    assert_eq!(b.dp_read(0x0).unwrap(), 0x2BA0_1477, "DPIDR: SW-DP v1");
    b.dp_write(0x4, 0x5000_0000).unwrap(); // CDBGPWRUPREQ | CSYSPWRUPREQ
    b.dp_write(0x8, 0x0000_00F0).unwrap(); // AP 0, bank 0xF
    assert_eq!(b.ap_read(0xC).unwrap(), 0x2477_0011, "AHB-AP IDR");
    assert_eq!(
        b.ap_read(0x8).unwrap(),
        0xE00F_F003,
        "BASE: ROM table, present"
    );
}

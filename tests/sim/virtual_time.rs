//! Runs the `virtual_time` example's jobs, prints their figures, and checks
//! the virtual-time relations: a job never takes less virtual time than its
//! physical limit, and all of its virtual time is accounted for by SWD wire
//! time, skipped BUSY periods and executed instructions. Nothing here
//! depends on how fast the host is.

#[path = "../../examples/virtual_time.rs"]
mod example;

use example::*;
use extflash_gdb::sim::clock::{PS_PER_S, SWD_BITS_PER_TRANSACTION};
use extflash_gdb::sim::w25q64jv::JEDEC_ID_IQ;

/// Virtual time is bounded below by every physical limit and above by the
/// sum of the three ways the board clock advances.
fn check_accounting(f: &Figures) {
    let c = &f.counters;
    for l in &f.limits {
        assert!(
            f.virtual_ps >= l.ps,
            "{}: virtual {} ps below the limit '{}' {} ps",
            f.job,
            f.virtual_ps,
            l.what,
            l.ps
        );
    }
    assert_eq!(c.swd_bits, c.swd_transactions * SWD_BITS_PER_TRANSACTION);
    let wire = (u128::from(c.swd_bits) * u128::from(PS_PER_S) / u128::from(f.swd_hz)) as u64;
    let cpu = c.cpu_ps;
    let slack = 1_000_000; // 1 us of rounding
    assert!(
        f.virtual_ps <= wire + cpu + c.skipped_ps + slack,
        "{}: virtual {} ps not explained by wire {wire} + cpu {cpu} + skipped {}",
        f.job,
        f.virtual_ps,
        c.skipped_ps
    );
    assert!(c.skipped_ps <= f.virtual_ps);
}

#[test]
fn program_64_kib_takes_at_least_the_datasheet_flash_time() {
    let (f, board, data) = program_internal_flash(64 << 10, false);
    println!("{f}");
    check_accounting(&f);
    assert!(board.lock().mcu().flash.array()[..data.len()] == data[..]);
    // The flash's own time is a limit; the link's (the host polls while
    // the flash works) may be the larger one.
    assert!(f.physical_limit().ps >= flash_limit_probe_rs_algorithm_ps(64 << 10));
    assert!(f
        .limits
        .iter()
        .any(|l| l.ps == flash_limit_probe_rs_algorithm_ps(64 << 10)));
    assert!(flash_limit_x32_ps(64 << 10) < f.physical_limit().ps);
    assert!(f.counters.ap_bytes >= 64 << 10, "the image crossed SWD");
    assert!(
        f.counters.skipped_ps > 0,
        "erase/program BUSY is skipped over, not emulated"
    );
    assert!(f.counters.instructions > 0, "the flash algorithm ran");
}

#[test]
fn jedec_id_by_register_pokes_costs_exactly_its_swd_wire_time() {
    let (f, id) = read_jedec_id_by_register_pokes();
    println!("{f}");
    check_accounting(&f);
    assert_eq!(id, JEDEC_ID_IQ);
    let c = &f.counters;
    assert_eq!(c.instructions, 0, "the core stayed halted");
    assert_eq!(c.spi_bytes, 4);
    assert_eq!(
        f.virtual_ps,
        c.swd_transactions * SWD_BITS_PER_TRANSACTION * PS_PER_S / f.swd_hz,
        "halted, the clock advances by wire time only"
    );
}

#[test]
fn firmware_jedec_id_boot_is_bounded_by_cpu_and_spi_time() {
    let (f, id) = firmware_boot_reads_jedec_id();
    println!("{f}");
    check_accounting(&f);
    assert_eq!(id, JEDEC_ID_IQ);
    // 0xAB, 0x9F (4), 0x05 (2), 0x03 (4 + 16), 0x0B (5 + 4096).
    assert!(f.counters.spi_bytes >= 1 + 4 + 2 + 20 + 5 + 4096);
    assert!(
        f.counters.instructions > 4096,
        "the CRC loop ran on the core"
    );
}

#[test]
fn flash_loader_programs_and_verifies_all_512_kib() {
    let (f, board, data) = program_internal_flash(512 << 10, true);
    println!("{f}");
    check_accounting(&f);
    assert!(
        board.lock().mcu().flash.array() == &data[..],
        "all 512 KiB as written"
    );
    eprintln!("host time for 512 KiB program + verify: {:?}", f.host);
}

#[test]
fn dma_wait_fast_forward_on_and_off_end_in_the_same_state_at_the_same_virtual_time() {
    let (f_on, on) = dma_read_while_the_core_polls(2048, true);
    let (f_off, off) = dma_read_while_the_core_polls(2048, false);
    println!("{f_on}\n{f_off}");
    check_accounting(&f_on);
    let strip = |e: &DmaEnd| (e.0, e.1, e.2, e.4.clone());
    assert_eq!(strip(&on), strip(&off), "time, PC, r0-r3 and the data");
    assert_eq!(on.1, 0x2000_0108, "halted on the BKPT after the wait");
    assert!(on.4.iter().all(|&b| b == 0xFF), "an erased chip reads 0xFF");
    let (c_on, c_off) = (&on.3, &off.3);
    assert_eq!(
        c_on.instructions + c_on.ff_instructions,
        c_off.instructions,
        "the same instructions, skipped or emulated"
    );
    assert_eq!(c_on.spi_bytes, 2048 + 4);
    assert!(
        c_on.ff_instructions > 3 * c_on.instructions,
        "the TCIF poll is skipped between DMA events: {c_on:?}"
    );
}

#[test]
fn block_write_into_ram_costs_its_wire_time_whether_the_core_waits_or_not() {
    let halted = block_write_14_kib(false);
    let spinning = block_write_14_kib(true);
    println!("{halted}\n{spinning}");
    assert_eq!(halted.virtual_ps, spinning.virtual_ps);
    assert_eq!(
        halted.counters.swd_transactions,
        spinning.counters.swd_transactions
    );
    let c = &spinning.counters;
    assert!(
        c.ff_instructions > 20 * c.instructions,
        "a wait loop the writes do not touch stays skipped: {c:?}"
    );
}

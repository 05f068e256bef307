//! probe-rs's own flash loader with the exported target description: the
//! test firmware's internal code and its window assets in one download,
//! verified by probe-rs (through the algorithm's `Verify`); then our GDB
//! server sees the same window (`compare-sections`).

use extflash_gdb::sim::{SimBoard, SimConfig};
use probe_rs::config::Registry;
use probe_rs::flashing::DownloadOptions;
use probe_rs::Permissions;

use crate::support::elf::{self, firmware_assets_elf, FIRMWARE_ASSETS};
use crate::support::server::{gdb_batch, GdbLimits, SimServer};
use crate::{board, generate, wiring, TempDir, SPI3_BOARD};

fn download_and_compare(name: &str, board_file: Option<&str>) {
    let dir = TempDir::new(name);
    let yaml = generate("probe-rs", board_file, &dir.0.join("target.yaml"));
    let yaml = String::from_utf8(yaml).unwrap();
    let mut registry = Registry::from_builtin_families();
    registry
        .add_target_family_from_yaml(&yaml)
        .expect("probe-rs accepts the target description");
    let b = board(board_file);
    let state = dir.0.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let sim = SimBoard::new(SimConfig {
        state_dir: Some(state.clone()),
        wiring: wiring(&b),
        ..Default::default()
    })
    .unwrap();
    {
        let mut session = sim
            .probe()
            .attach_with_registry(
                format!("{}-EXTFLASH", b.chip),
                Permissions::default(),
                &registry,
            )
            .expect("attach with the exported target");
        let mut loader = session.target().flash_loader();
        for (addr, data) in elf::load_segments(&firmware_assets_elf()) {
            loader.add_data(u64::from(addr), &data).unwrap();
        }
        let mut opts = DownloadOptions::default();
        opts.verify = true;
        if let Err(e) = loader.commit(&mut session, opts) {
            panic!(
                "probe-rs programs and verifies internal flash and the window: {e:?} (board: {:?})",
                sim.lock().fault()
            );
        }
    }
    // The chip itself holds the assets.
    for s in [".extflash.font", ".extflash.table"] {
        let (addr, data) = elf::section(&firmware_assets_elf(), s);
        let off = (addr - 0x9000_0000) as usize;
        let board = sim.lock();
        let mcu = board.mcu();
        assert_eq!(
            &mcu.chip.contents()[off..off + data.len()],
            &data[..],
            "{s}"
        );
    }
    drop(sim);
    // And our server sees the same board, window included.
    let state_arg = state.display().to_string();
    let mut args = vec!["--sim-state", state_arg.as_str()];
    if let Some(f) = board_file {
        args.extend(["--board", f]);
    }
    let s = SimServer::start(&args);
    let out = gdb_batch(
        &s.addr,
        FIRMWARE_ASSETS,
        &["monitor reset halt", "compare-sections"],
        GdbLimits::STUB_RUNS,
    );
    assert!(!out.contains("MIS-MATCHED"), "{out}");
    assert_eq!(
        out.matches(": matched.").count(),
        elf::loadable_sections(&firmware_assets_elf()),
        "{out}"
    );
}

#[test]
fn probe_rs_download_with_exported_yaml_programs_and_verifies_internal_flash_and_window() {
    download_and_compare("probe-rs-spi1", None);
}

#[test]
fn probe_rs_yaml_for_spi3_board_programs_a_board_wired_to_spi3() {
    download_and_compare("probe-rs-spi3", Some(SPI3_BOARD));
}

/// probe-rs's `keep_unwritten_bytes` (`--restore-unwritten`) reads the rest
/// of each sector through the algorithm's `pc_read` before erasing it, so
/// a small download into the window keeps its neighbours.
#[test]
fn probe_rs_restore_unwritten_reads_the_window_through_pc_read() {
    let dir = TempDir::new("probe-rs-restore");
    let yaml = generate("probe-rs", None, &dir.0.join("target.yaml"));
    let mut registry = Registry::from_builtin_families();
    registry
        .add_target_family_from_yaml(std::str::from_utf8(&yaml).unwrap())
        .unwrap();
    let b = board(None);
    let sim = SimBoard::new(SimConfig::default()).unwrap();
    let mut session = sim
        .probe()
        .attach_with_registry(
            format!("{}-EXTFLASH", b.chip),
            Permissions::default(),
            &registry,
        )
        .unwrap();
    let old = crate::pattern(3, 0x2000);
    let new = crate::pattern(4, 16);
    for (data, at, keep) in [(&old, 0x9000_1000u64, false), (&new, 0x9000_1800, true)] {
        let mut loader = session.target().flash_loader();
        loader.add_data(at, data).unwrap();
        let mut opts = DownloadOptions::default();
        opts.verify = true;
        opts.keep_unwritten_bytes = keep;
        loader.commit(&mut session, opts).expect("download");
    }
    let board = sim.lock();
    let chip = &board.mcu().chip;
    let mut want = old.clone();
    want[0x800..0x810].copy_from_slice(&new);
    assert_eq!(&chip.contents()[0x1000..0x3000], &want[..]);
}

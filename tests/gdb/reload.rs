//! Skip unchanged: a reload of what the flashes already hold erases and
//! programs nothing, a one-byte change reprograms exactly one erase block,
//! and erased (0xFF) pages are never programmed. Checked on the window
//! through `ExtFlash` and, for both flashes, through `gdb-multiarch`'s
//! `load` against an in-process server whose progress events are recorded.

use std::sync::{Arc, Mutex};

use crate::support::server::{gdb_batch, in_process, GdbLimits};
use crate::support::sim::*;
use extflash_gdb::board::Board;
use extflash_gdb::extflash::ExtFlash;
use extflash_gdb::flash::{FlashEvent, FlashKind};
use extflash_gdb::sim::{SimBoard, SimConfig};

const WINDOW: u32 = 0x9000_0000;

fn erases(events: &[FlashEvent], kind: FlashKind) -> Vec<(u32, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            FlashEvent::Erasing {
                flash,
                address,
                size,
            } if *flash == kind => Some((*address, *size)),
            _ => None,
        })
        .collect()
}

fn programmed(events: &[FlashEvent], kind: FlashKind) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            FlashEvent::Programmed { flash, bytes, .. } if *flash == kind => {
                Some(u64::from(*bytes))
            }
            _ => None,
        })
        .sum()
}

fn skipped(events: &[FlashEvent], kind: FlashKind) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            FlashEvent::Skipped { flash, bytes } if *flash == kind => Some(*bytes),
            _ => None,
        })
        .sum()
}

/// One `load` of `data` at `addr` in the window (erasing the 4 KiB blocks
/// around it, as GDB would); returns the events.
fn load(
    ext: &mut ExtFlash,
    core: &mut probe_rs::Core<'_>,
    addr: u32,
    data: &[u8],
) -> Vec<FlashEvent> {
    let start = addr & !0xFFF;
    let end = (addr + data.len() as u32 + 0xFFF) & !0xFFF;
    ext.flash_erase(core, start, end - start).unwrap();
    ext.flash_write(addr, data).unwrap();
    let mut events = Vec::new();
    ext.commit(core, &mut |e| events.push(e)).unwrap();
    events
}

#[test]
fn window_reload_skips_unchanged_blocks_and_reprograms_only_the_changed_one() {
    let b = board(SimConfig::default());
    let mut session = attach(&b);
    let mut core = session.core(0).unwrap();
    core.reset_and_halt(std::time::Duration::from_millis(500))
        .unwrap();
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    let mut image = pattern(3, 0x5000);
    let addr = WINDOW + 0x1000;

    // A fresh chip is erased: its blocks are programmed without erasing.
    let first = load(&mut ext, &mut core, addr, &image);
    assert!(erases(&first, FlashKind::External).is_empty(), "{first:?}");
    assert_eq!(programmed(&first, FlashKind::External), image.len() as u64);
    // Another image over it needs every block erased.
    let other = pattern(4, 0x5000);
    let over = load(&mut ext, &mut core, addr, &other);
    assert_eq!(erases(&over, FlashKind::External).len(), 5, "{over:?}");
    let first = load(&mut ext, &mut core, addr, &image);
    assert_eq!(erases(&first, FlashKind::External).len(), 5, "{first:?}");

    let again = load(&mut ext, &mut core, addr, &image);
    assert!(erases(&again, FlashKind::External).is_empty(), "{again:?}");
    assert_eq!(programmed(&again, FlashKind::External), 0);
    assert_eq!(skipped(&again, FlashKind::External), 0x5000);
    assert!(
        matches!(
            again.last(),
            Some(FlashEvent::Done {
                erased: 0,
                programmed: 0,
                skipped: 0x5000,
                ..
            })
        ),
        "{again:?}"
    );

    image[0x2345] ^= 0x5A;
    let one = load(&mut ext, &mut core, addr, &image);
    assert_eq!(
        erases(&one, FlashKind::External),
        [(WINDOW + 0x3000, 0x1000)],
        "only the 4 KiB block holding offset 0x2345"
    );
    assert_eq!(skipped(&one, FlashKind::External), 0x4000);
    let chip = b.lock().mcu().chip.contents()[0x1000..0x6000].to_vec();
    assert!(chip == image, "the chip holds the changed image");
}

#[test]
fn erased_pages_are_neither_sent_nor_programmed() {
    let b = board(SimConfig::default());
    let mut session = attach(&b);
    let mut core = session.core(0).unwrap();
    core.reset_and_halt(std::time::Duration::from_millis(500))
        .unwrap();
    let mut ext = ExtFlash::new(Board::builtin().external_flash.unwrap());
    // Old contents everywhere, so the erase is real; then an image whose
    // middle pages are all 0xFF.
    b.lock().mcu().chip.load(0, &[0x11; 0x2000]);
    let mut image = pattern(9, 0x2000);
    image[0x400..0x1C00].fill(0xFF);
    let events = load(&mut ext, &mut core, WINDOW, &image);
    assert_eq!(
        programmed(&events, FlashKind::External),
        0x800,
        "{events:?}"
    );
    let chip = b.lock().mcu().chip.contents()[..0x2000].to_vec();
    assert!(chip == image);
}

/// A server in this process on `sim`, recording every progress event.
fn in_process_recording(sim: SimBoard) -> (String, Arc<Mutex<Vec<FlashEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let addr = in_process(
        sim,
        Board::builtin(),
        Arc::new(move |e: &FlashEvent| sink.lock().unwrap().push(e.clone())),
    );
    (addr, events)
}

#[test]
fn gdb_reload_of_the_same_elf_skips_internal_and_external_flash() {
    let (addr, events) = in_process_recording(board(SimConfig::default()));
    let elf = crate::support::elf::FIRMWARE_ASSETS;
    let out = gdb_batch(
        &addr,
        elf,
        &["monitor reset halt", "load", "load", "compare-sections"],
        GdbLimits::STUB_RUNS,
    );
    assert!(!out.contains("MIS-MATCHED"), "{out}");
    let events = events.lock().unwrap().clone();
    let split = events
        .iter()
        .rposition(|e| matches!(e, FlashEvent::Done { flash: FlashKind::Internal, programmed, .. } if *programmed > 0))
        .expect("the first load programmed internal flash");
    let (first, second) = events.split_at(split + 1);
    // The fresh virtual chip is erased: programmed, nothing erased.
    assert!(erases(first, FlashKind::External).is_empty(), "{first:?}");
    assert!(
        programmed(first, FlashKind::External) > 0x10000,
        "{first:?}"
    );
    assert!(erases(second, FlashKind::External).is_empty(), "{second:?}");
    assert!(erases(second, FlashKind::Internal).is_empty(), "{second:?}");
    assert_eq!(programmed(second, FlashKind::External), 0);
    assert_eq!(programmed(second, FlashKind::Internal), 0);
    assert!(skipped(second, FlashKind::External) > 0x10000, "{second:?}");
    assert!(skipped(second, FlashKind::Internal) >= 0x4000, "{second:?}");
}

fn compressed(events: &[FlashEvent]) -> Option<(u64, u64)> {
    events.iter().find_map(|e| match e {
        FlashEvent::Compressed { bytes, sent, .. } => Some((*bytes, *sent)),
        _ => None,
    })
}

/// Compressible assets cross the link as `lz` blocks: `load` of an ELF
/// whose window sections hold tables, text, random bytes and a 0xFF gap,
/// over old contents, erases, programs what `compare-sections` then
/// matches, and sends fewer bytes than it programs; the random bytes go
/// raw, so the compressed count stays below the compressible part.
#[test]
fn gdb_load_sends_compressible_assets_compressed_and_they_verify() {
    let sim = board(SimConfig::default());
    sim.lock().mcu().chip.load(0, &[0x11; 0x4_0000]);
    let table: Vec<u8> = (0..0x800u32)
        .flat_map(|i| {
            [
                i.to_le_bytes(),
                (i * 3).to_le_bytes(),
                0x3F80_0000u32.to_le_bytes(),
                [0; 4],
            ]
        })
        .flatten()
        .collect();
    let text: Vec<u8> = (0..700)
        .flat_map(|i| {
            format!(
                "glyph {i:04}: advance 7, bearing 1, row 0x{:02x};\n",
                i % 11
            )
            .into_bytes()
        })
        .collect();
    let random = pattern(21, 0x8000);
    let mut assets = table.clone();
    assets.extend([0xFF; 0x1000]);
    assets.extend(&random);
    assets.extend(&text);
    let tail = text[..5001].to_vec();
    let elf = crate::support::elf::data_elf(&[(WINDOW, &assets), (WINDOW + 0x3_0007, &tail)]);
    let path = std::env::temp_dir().join(format!("extflash-lz-{}.elf", std::process::id()));
    std::fs::write(&path, &elf).unwrap();
    let (addr, events) = in_process_recording(sim.clone());
    let out = gdb_batch(
        &addr,
        path.to_str().unwrap(),
        &["monitor reset halt", "load", "compare-sections"],
        GdbLimits::STUB_RUNS,
    );
    let _ = std::fs::remove_file(&path);
    assert!(!out.contains("MIS-MATCHED"), "{out}");
    assert_eq!(out.matches("matched.").count(), 2, "{out}");
    let events = events.lock().unwrap().clone();
    let programmed = programmed(&events, FlashKind::External);
    let (packed, sent) = compressed(&events).expect("some pages went compressed");
    let compressible = (table.len() + text.len() + tail.len()) as u64;
    assert!(
        packed >= compressible * 9 / 10 && packed <= compressible,
        "{packed} of {compressible}"
    );
    assert!(
        sent < programmed * 3 / 4,
        "sent {sent} for {programmed} programmed"
    );
    // Erases the stub may skip as blank are counted only in `Done`.
    let erased: u64 = events
        .iter()
        .map(|e| match e {
            FlashEvent::Done {
                flash: FlashKind::External,
                erased,
                ..
            } => *erased,
            _ => 0,
        })
        .sum();
    assert!(erased > 0, "old contents were erased: {events:?}");
    let chip = sim.lock().mcu().chip.contents()[..0x3_0007 + tail.len()].to_vec();
    assert!(chip[..assets.len()] == assets[..]);
    assert!(chip[0x3_0007..] == tail[..]);
}

/// `monitor flash compress off` makes `load` send every page raw, `on`
/// compressed again; `monitor flash compress` says which is in force.
#[test]
fn gdb_monitor_flash_compress_switches_compression_off_and_on() {
    let sim = board(SimConfig::default());
    let text = |seed: u32| -> Vec<u8> {
        (0..900)
            .flat_map(|i| format!("label {seed}-{i:04}: x 12, y 40, w 64;\n").into_bytes())
            .take(0x8000)
            .collect()
    };
    let (a, b) = (text(1), text(2));
    let dir = std::env::temp_dir();
    let path_a = dir.join(format!("extflash-lz-a-{}.elf", std::process::id()));
    let path_b = dir.join(format!("extflash-lz-b-{}.elf", std::process::id()));
    std::fs::write(&path_a, crate::support::elf::data_elf(&[(WINDOW, &a)])).unwrap();
    std::fs::write(
        &path_b,
        crate::support::elf::data_elf(&[(WINDOW + 0x1_0000, &b)]),
    )
    .unwrap();
    let (addr, events) = in_process_recording(sim.clone());
    let load_b = format!("load {}", path_b.display());
    let out = gdb_batch(
        &addr,
        path_a.to_str().unwrap(),
        &[
            "monitor reset halt",
            "monitor flash compress off",
            "load",
            "monitor flash compress",
            "monitor flash compress on",
            &load_b,
        ],
        GdbLimits::STUB_RUNS,
    );
    let _ = std::fs::remove_file(&path_a);
    let _ = std::fs::remove_file(&path_b);
    assert!(
        out.contains("external flash: load compression off"),
        "{out}"
    );
    assert!(out.contains("external flash: load compression on"), "{out}");
    let events = events.lock().unwrap().clone();
    let split = events
        .iter()
        .position(|e| {
            matches!(
                e,
                FlashEvent::Done {
                    flash: FlashKind::External,
                    ..
                }
            )
        })
        .expect("the first load finished");
    let (first, second) = events.split_at(split + 1);
    assert_eq!(compressed(first), None, "off: every page raw");
    let (packed, sent) = compressed(second).expect("on: compressed again");
    assert_eq!(packed, b.len() as u64);
    assert!(sent < packed / 2, "{sent} of {packed}");
    let chip = sim.lock().mcu().chip.contents()[..0x1_0000 + b.len()].to_vec();
    assert!(chip[..a.len()] == a[..]);
    assert!(chip[0x1_0000..] == b[..]);
}

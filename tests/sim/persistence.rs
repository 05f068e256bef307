//! `SimConfig::state_dir` keeps internal flash and the W25Q64JV across
//! boards: what one board programmed, the next one on the same folder has;
//! without a folder every board starts erased.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::sim::*;
use extflash_gdb::sim::{SimConfig, EXTERNAL_FLASH_FILE, INTERNAL_FLASH_FILE};
use probe_rs::flashing::DownloadOptions;
use probe_rs::MemoryInterface;

/// A fresh folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("extflash-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: Option<&Path>) -> SimConfig {
    SimConfig {
        state_dir: dir.map(Path::to_path_buf),
        ..SimConfig::default()
    }
}

const FLASH_AT: u64 = 0x0802_0000; // sector 5
/// Inside one 256-byte page with the 200 test bytes (02h wraps in the page).
const CHIP_AT: u32 = 0x01_2310;

/// Program internal flash with FlashLoader and one chip page with
/// debugger-driven SPI (WREN, 02h, poll 05h until not BUSY).
fn program_both(session: &mut probe_rs::Session, flash: &[u8], chip: &[u8]) {
    let mut loader = session.target().flash_loader();
    loader.add_data(FLASH_AT, flash).unwrap();
    loader.commit(session, DownloadOptions::default()).unwrap();
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_millis(100)).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    spi_transaction(&mut core, &[0x06]);
    let mut cmd = vec![
        0x02,
        (CHIP_AT >> 16) as u8,
        (CHIP_AT >> 8) as u8,
        CHIP_AT as u8,
    ];
    cmd.extend_from_slice(chip);
    spi_transaction(&mut core, &cmd);
    let mut busy = true;
    for _ in 0..1000 {
        busy = spi_transaction(&mut core, &[0x05, 0])[1] & 1 != 0;
        if !busy {
            break;
        }
    }
    assert!(!busy, "page program finished");
}

fn read_back(
    session: &mut probe_rs::Session,
    flash_len: usize,
    chip_len: usize,
) -> (Vec<u8>, Vec<u8>) {
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_millis(100)).unwrap();
    let mut flash = vec![0; flash_len];
    core.read_8(FLASH_AT, &mut flash).unwrap();
    setup_spi1(&mut core, Pins::ALL, true);
    let mut cmd = vec![
        0x03,
        (CHIP_AT >> 16) as u8,
        (CHIP_AT >> 8) as u8,
        CHIP_AT as u8,
    ];
    cmd.resize(4 + chip_len, 0);
    let chip = spi_transaction(&mut core, &cmd)[4..].to_vec();
    (flash, chip)
}

#[test]
fn flash_and_chip_contents_survive_into_a_new_board_on_the_same_state_dir() {
    let dir = TempDir::new("persist");
    let flash = pattern(0xF1A5_0001, 3000);
    let chip = pattern(0xC41B_0002, 200);
    {
        let board = board(config(Some(&dir.0)));
        let mut session = attach(&board);
        program_both(&mut session, &flash, &chip);
        let (f, c) = read_back(&mut session, flash.len(), chip.len());
        assert!(
            f == flash && c == chip,
            "first board reads back what it wrote"
        );
    }
    let board = board(config(Some(&dir.0)));
    {
        let b = board.lock();
        let m = b.mcu();
        let off = (FLASH_AT - 0x0800_0000) as usize;
        assert!(m.flash.array()[off..off + flash.len()] == flash[..]);
        assert!(m.flash.array()[..off].iter().all(|&x| x == 0xFF));
        let c = CHIP_AT as usize;
        assert!(m.chip.contents()[c..c + chip.len()] == chip[..]);
        assert!(m.chip.contents()[..c].iter().all(|&x| x == 0xFF));
    }
    let mut session = attach(&board);
    let (f, c) = read_back(&mut session, flash.len(), chip.len());
    assert!(f == flash, "internal flash read through probe-rs");
    assert!(c == chip, "chip read through SPI1");
}

#[test]
fn without_state_dir_every_board_starts_erased() {
    {
        let board = board(config(None));
        let mut session = attach(&board);
        program_both(&mut session, &pattern(1, 512), &pattern(2, 64));
    }
    let board = board(config(None));
    let b = board.lock();
    let m = b.mcu();
    assert!(m.flash.array().iter().all(|&x| x == 0xFF));
    assert!(m.chip.contents().iter().all(|&x| x == 0xFF));
}

#[test]
fn state_files_are_written_when_the_board_is_dropped() {
    let dir = TempDir::new("drop");
    let data = pattern(0xD209_0003, 100);
    let board = board(config(Some(&dir.0)));
    let chip_file = dir.0.join(EXTERNAL_FLASH_FILE);
    let flash_file = dir.0.join(INTERNAL_FLASH_FILE);
    assert_eq!(std::fs::metadata(&chip_file).unwrap().len(), 8 << 20);
    assert_eq!(std::fs::metadata(&flash_file).unwrap().len(), 512 << 10);
    // Changed in memory only: no SWD traffic, so no periodic flush yet.
    board.lock().mcu().chip.load(0x40_0000, &data);
    let on_disk = std::fs::read(&chip_file).unwrap();
    assert!(on_disk[0x40_0000..0x40_0064].iter().all(|&x| x == 0xFF));
    drop(board);
    let on_disk = std::fs::read(&chip_file).unwrap();
    assert!(on_disk[0x40_0000..0x40_0064] == data[..]);
}

#[test]
fn session_end_flushes_without_dropping_the_board() {
    // A GDB server keeps its board; detaching must not lose programmed flash.
    let dir = TempDir::new("detach");
    let flash = pattern(0xDE7A_0004, 1024);
    let board = board(config(Some(&dir.0)));
    {
        let mut session = attach(&board);
        let mut loader = session.target().flash_loader();
        loader.add_data(FLASH_AT, &flash).unwrap();
        loader
            .commit(&mut session, DownloadOptions::default())
            .unwrap();
    }
    let on_disk = std::fs::read(dir.0.join(INTERNAL_FLASH_FILE)).unwrap();
    let off = (FLASH_AT - 0x0800_0000) as usize;
    assert!(on_disk[off..off + flash.len()] == flash[..]);
    drop(board);
}

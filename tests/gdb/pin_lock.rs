//! An application that locked the SPI pins with GPIOx_LCKR (RM0090 8.4.8)
//! before the user reads the window: the error names the locked pin and its
//! LCKR instead of only "no SPI flash answers", and `monitor reset halt`
//! (which unlocks the port) makes the window work again.

use std::process::Stdio;

use crate::support::elf::{FIRMWARE, FIRMWARE_ASSETS};
use crate::support::server::{gdb_batch, GdbLimits, SimServer};

/// GPIOB_LCKR; RCC_AHB1ENR (GPIOBEN is bit 1).
const GPIOB_LCKR: &str = "0x4002041C";
const RCC_AHB1ENR: &str = "0x40023830";

/// GDB commands that run the lock key sequence on PB3 alone, as an
/// application would: write LCKK+pins, pins, LCKK+pins, then read twice.
fn lock_pb3() -> Vec<String> {
    vec![
        "monitor reset halt".into(),
        format!("set *(int*){RCC_AHB1ENR} = *(int*){RCC_AHB1ENR} | 2"),
        format!("set *(int*){GPIOB_LCKR} = 0x10008"),
        format!("set *(int*){GPIOB_LCKR} = 0x8"),
        format!("set *(int*){GPIOB_LCKR} = 0x10008"),
        format!("p/x *(int*){GPIOB_LCKR}"),
        format!("p/x *(int*){GPIOB_LCKR}"),
    ]
}

/// A server logging at `serve`'s default filter to a file in a fresh
/// directory named after `name`; the server and the log's path.
fn logged_server(name: &str) -> (SimServer, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("extflash-gdb-lckr-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("server.log");
    let s = SimServer::start_with_log(
        &["--sim-strict"],
        "warn,extflash_gdb=info",
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    (s, log)
}

#[test]
fn gdb_window_read_with_pb3_locked_names_the_pin_until_reset_halt() {
    let (s, log) = logged_server("read");
    let mut cmds = lock_pb3();
    cmds.extend(
        [
            "x/4xb 0x90000000",
            "monitor flash info",
            "monitor reset halt",
            "x/4xb 0x90000000",
            "monitor flash info",
        ]
        .map(String::from),
    );
    let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let out = gdb_batch(&s.addr, FIRMWARE, &cmds, GdbLimits::STUB_RUNS);
    drop(s);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.contains("$2 = 0x10008"),
        "LCKK reads 1 after the sequence:\n{out}"
    );
    // The read and `monitor flash info` both name the pin, its LCKR, the
    // mode it is stuck in, the one the wiring needs and the way out.
    let named = "no SPI flash answers on SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0): PB3 is \
                 locked by the application (GPIOB_LCKR = 0x0001_0008) as AF0: its mode cannot \
                 be set to AF5 until reset; `monitor reset halt` (the reset unlocks it) and retry";
    assert!(
        out.contains("Cannot access memory at address 0x90000000"),
        "{out}"
    );
    assert!(
        out.contains(&format!("error: external flash: {named}")),
        "{out}"
    );
    assert!(
        log.contains(&format!(
            "reading 1 bytes of external flash at 0x90000000 failed: {named}"
        )),
        "the window read's error names the lock:\n{log}"
    );
    // After the reset the same read and the chip's identification work.
    assert!(
        out.contains("0x90000000:\t0xff\t0xff\t0xff\t0xff"),
        "read after reset:\n{out}"
    );
    assert!(
        out.contains("external flash: Winbond W25Q64JV"),
        "flash info after reset:\n{out}"
    );
}

#[test]
fn gdb_load_into_the_window_with_pb3_locked_fails_naming_the_pin() {
    let (s, log) = logged_server("load");
    let mut cmds = lock_pb3();
    cmds.push("load".into());
    let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let out = gdb_batch(&s.addr, FIRMWARE_ASSETS, &cmds, GdbLimits::STUB_RUNS);
    drop(s);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(out.contains("Error finishing flash operation"), "{out}");
    assert!(
        log.contains("PB3 is locked by the application (GPIOB_LCKR = 0x0001_0008) as AF0"),
        "{out}\n---\n{log}"
    );
}

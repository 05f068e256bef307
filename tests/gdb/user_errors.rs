//! Plausible user mistakes through `gdb-multiarch`: GDB 13 prints only
//! `Load failed`, so the server's log must name what was wrong.

use std::process::Stdio;

use crate::support::elf::data_elf;
use crate::support::server::SimServer;

/// `load` of an ELF holding `data` at `addr` through gdb-multiarch against
/// `serve --sim --sim-strict`: (GDB's output, the server's warn log).
fn load_with_log(name: &str, addr: u32, data: &[u8]) -> (String, String) {
    let dir = std::env::temp_dir().join(format!("extflash-gdb-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let elf = dir.join("image.elf");
    std::fs::write(&elf, data_elf(&[(addr, data)])).unwrap();
    let log = dir.join("server.log");
    let file = std::fs::File::create(&log).unwrap();
    let s = SimServer::start_with_log(
        &["--sim-strict"],
        "warn,extflash_gdb=warn",
        Stdio::from(file),
    );
    let out = s.gdb(elf.to_str().unwrap(), &["monitor reset halt", "load"]);
    drop(s);
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    (out, text)
}

/// An ELF whose asset section runs 4 KiB past the end of the 8 MiB chip:
/// the load fails, and the log names the window and the chip's size
/// instead of a probe FAULT.
#[test]
fn load_of_a_section_past_the_chip_end_is_named_in_the_log() {
    let data: Vec<u8> = (0..0x2000u32).map(|i| (i * 7 + 3) as u8).collect();
    let (out, text) = load_with_log("beyond", 0x907F_F000, &data);
    assert!(out.contains("Load failed"), "{out}");
    assert!(
        text.contains(
            "0x90800000 is past the end of the external-flash window 0x90000000..0x90800000 \
             (8192 KiB chip)"
        ),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("0x90800000") && l.contains("FAULT")),
        "{text}"
    );
}

/// An ELF with a section just past the F407VE's 512 KiB of internal flash:
/// the load fails, and the log names internal flash and its bounds once, at
/// warn, with no probe FAULT chain.
#[test]
fn load_of_a_section_past_internal_flash_is_named_in_the_log() {
    let data: Vec<u8> = (0..0x400u32).map(|i| (i * 5 + 1) as u8).collect();
    let (out, text) = load_with_log("past-flash", 0x0808_0000, &data);
    assert!(
        out.contains("Load failed") || out.contains("Cannot access memory"),
        "{out}"
    );
    let named: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("past the end of internal flash 0x08000000..0x08080000 (512 KiB)"))
        .collect();
    assert_eq!(named.len(), 1, "{text}");
    assert!(named[0].contains("WARN"), "{text}");
    assert!(named[0].contains("at 0x08080000"), "{text}");
    assert!(!text.contains("FAULT"), "{text}");
}

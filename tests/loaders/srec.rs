//! `extflash-gdb flash` takes Motorola S-records: the test firmware's
//! internal code and window assets as an `.s19` of S3 records, programmed
//! and verified (on-target CRC per section) on the virtual board; a
//! damaged record is refused with its line before anything is sent.

use std::process::Command;

use crate::support::elf::{self, firmware_assets_elf};
use crate::TempDir;

/// S3 records of 32 data bytes, an S0 header and an S7 end.
fn to_srec(segments: &[(u32, Vec<u8>)]) -> String {
    let mut out = String::new();
    let mut rec = |kind: char, bytes: Vec<u8>| {
        let mut b = vec![(bytes.len() + 1) as u8];
        b.extend(bytes);
        let sum = b.iter().fold(0u8, |a, x| a.wrapping_add(*x));
        b.push(!sum);
        out.push('S');
        out.push(kind);
        for x in b {
            out.push_str(&format!("{x:02X}"));
        }
        out.push('\n');
    };
    rec('0', b"\0\0extflash".to_vec());
    for (addr, data) in segments {
        for (i, chunk) in data.chunks(32).enumerate() {
            let mut b = (addr + 32 * i as u32).to_be_bytes().to_vec();
            b.extend_from_slice(chunk);
            rec('3', b);
        }
    }
    rec('7', vec![0; 4]);
    out
}

fn run(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
        .args(args)
        .output()
        .expect("run extflash-gdb");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn flash_s19_with_internal_code_and_window_assets_verifies() {
    let dir = TempDir::new("srec");
    let segments = elf::load_segments(&firmware_assets_elf());
    assert!(segments.iter().any(|(a, _)| *a >= 0x9000_0000));
    let file = dir.0.join("app.s19");
    std::fs::write(&file, to_srec(&segments)).unwrap();
    let state = dir.0.join("board");
    std::fs::create_dir_all(&state).unwrap();
    let (ok, out, err) = run(&[
        "flash",
        file.to_str().unwrap(),
        "--verify",
        "--sim",
        "--sim-state",
        state.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("flashed "), "{out}");
    assert!(!out.contains("MISMATCHED"), "{out}");
    // Verify reports each contiguous range once.
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for (a, d) in &segments {
        match runs.last_mut() {
            Some((start, len)) if *start + *len as u32 == *a => *len += d.len(),
            _ => runs.push((*a, d.len())),
        }
    }
    assert_eq!(out.matches(": matched").count(), runs.len(), "{out}");
    for (a, len) in runs {
        assert!(
            out.contains(&format!("{a:#010x}..{:#010x}", a + len as u32)),
            "{out}"
        );
    }
}

#[test]
fn flash_s19_with_a_bad_checksum_names_the_line() {
    let dir = TempDir::new("srec-bad");
    let mut text = to_srec(&[(0x0800_0000, vec![1, 2, 3, 4])]);
    // The data record is line 2: change its last data byte.
    text = text.replacen("S30908000000010203", "S30908000000010205", 1);
    let file = dir.0.join("bad.srec");
    std::fs::write(&file, text).unwrap();
    let (ok, _, err) = run(&["flash", file.to_str().unwrap(), "--sim"]);
    assert!(!ok);
    assert!(
        err.contains("bad.srec:2: bad checksum"),
        "the error names the file, line and problem: {err}"
    );
}

//! A GDB that reconnects at once gets control, not an observer session:
//! `disconnect` then `target extended-remote` in one batch run, and a GDB
//! killed with SIGKILL followed at once by a new one. Both connect within
//! milliseconds of the old socket closing, usually before the server has
//! read that EOF; each then does what only a controller may
//! (`monitor reset halt`, a memory write) and reads it back.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::elf::FIRMWARE;
use crate::support::server::SimServer;

/// SRAM the firmware does not touch while halted after a reset.
const SCRATCH: u32 = 0x2001_0000;

/// What a controller does, then the readback of its write of `value`.
fn control_cmds(value: u32) -> Vec<String> {
    vec![
        "set language c".into(),
        "monitor reset halt".into(),
        format!("set {{unsigned int}}{SCRATCH:#x} = {value:#x}"),
        format!("printf \"WROTE %#x\\n\", *(unsigned int *){SCRATCH:#x}"),
    ]
}

/// No sign of an observer session in GDB's output.
fn assert_controlled(out: &str, what: &str) {
    for refusal in ["E0d", "E.0d", "read-only", "observer", "Cannot access memory"] {
        assert!(!out.contains(refusal), "{what}: `{refusal}`:\n{out}");
    }
}

#[test]
fn gdb_disconnect_then_target_extended_remote_at_once_controls() {
    let s = SimServer::start(&[]);
    // The firmware in flash: `monitor reset halt` starts it cleanly.
    let mut cmds = vec!["load".to_string()];
    let cycles = 8u32;
    for cycle in 0..cycles {
        cmds.extend(control_cmds(0x5eed_0000 + cycle));
        cmds.push("disconnect".into());
        cmds.push(format!("target extended-remote {}", s.addr));
    }
    cmds.extend(control_cmds(0x5eed_ffff));
    let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let out = s.gdb(FIRMWARE, &cmds);
    assert_controlled(&out, "after `disconnect` + `target extended-remote`");
    for cycle in 0..cycles {
        let want = format!("WROTE {:#x}", 0x5eed_0000 + cycle);
        assert!(out.contains(&want), "no `{want}`:\n{out}");
    }
    assert!(out.contains("WROTE 0x5eedffff"), "{out}");
}

/// A `gdb-multiarch` connected as the controller (having run `cmds`) and
/// waiting for commands on stdin: killed with SIGKILL (the kernel closes
/// its socket).
fn gdb_killed_while_connected(addr: &str, cmds: &[&str]) {
    let mut child = Command::new("gdb-multiarch")
        .args(["-nx", "-q", "-ex", "set architecture arm", "-ex"])
        .arg(format!("target extended-remote {addr}"))
        .args(cmds.iter().flat_map(|c| ["-ex", c]))
        .args(["-ex", "echo CONNECTED\\n", FIRMWARE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run gdb-multiarch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let connected = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains("CONNECTED") => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    child.kill().expect("SIGKILL gdb");
    child.wait().expect("reap gdb");
    assert!(connected, "the first gdb did not connect within 60 s");
}

#[test]
fn gdb_killed_then_a_new_gdb_at_once_controls() {
    let s = SimServer::start(&[]);
    for cycle in 0..4u32 {
        // The first one loads the firmware: `monitor reset halt` starts it.
        let first: &[&str] = if cycle == 0 { &["load"] } else { &[] };
        gdb_killed_while_connected(&s.addr, first);
        let value = 0x0dead_000 + cycle;
        let cmds = control_cmds(value);
        let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
        let out = s.gdb(FIRMWARE, &cmds);
        assert_controlled(&out, &format!("cycle {cycle}: the gdb started after a SIGKILL"));
        let want = format!("WROTE {value:#x}");
        assert!(out.contains(&want), "cycle {cycle}: no `{want}`:\n{out}");
    }
}

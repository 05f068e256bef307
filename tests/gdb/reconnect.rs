//! A GDB that reconnects at once gets control, not an observer session:
//! `disconnect` then `target extended-remote` in one batch run, and a GDB
//! killed with SIGKILL followed at once by a new one. Both connect within
//! milliseconds of the old socket closing, usually before the server has
//! read that EOF; each then does what only a controller may
//! (`monitor reset halt`, a memory write) and reads it back.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

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
    for refusal in [
        "E0d",
        "E.0d",
        "read-only",
        "observer",
        "Cannot access memory",
    ] {
        assert!(!out.contains(refusal), "{what}: `{refusal}`:\n{out}");
    }
}

#[test]
fn gdb_disconnect_then_target_extended_remote_at_once_controls() {
    let s = SimServer::start(&[]);
    // The firmware in flash: `monitor reset halt` starts it cleanly.
    let mut cmds = vec!["load".to_string()];
    let cycles = 20u32;
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

/// An interactive `gdb-multiarch` reading commands from a pipe, its
/// stdout and stderr lines on a channel; killed (SIGKILL) on drop.
struct Gdb {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Gdb {
    fn start(cmds: &[&str]) -> Gdb {
        let mut child = Command::new("gdb-multiarch")
            .args(["-nx", "-q"])
            .args(
                [
                    "set architecture arm",
                    "set confirm off",
                    "set pagination off",
                ]
                .iter()
                .chain(cmds)
                .flat_map(|c| ["-ex", c]),
            )
            .arg(FIRMWARE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gdb-multiarch");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || forward(out, tx));
        std::thread::spawn(move || forward(err, tx2));
        let stdin = child.stdin.take().expect("stdin");
        Gdb {
            child,
            stdin,
            lines,
        }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("write to gdb");
        self.stdin.flush().expect("flush to gdb");
    }

    /// Every line until one containing `marker` (bounded: fails the test
    /// with what came).
    fn until(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut got = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    got.push_str(&line);
                    got.push('\n');
                    if line.contains(marker) {
                        return got;
                    }
                }
                Err(_) => panic!("no `{marker}` from gdb within 120 s:\n{got}"),
            }
        }
    }

    /// SIGKILL: the kernel closes its socket; no `D`, no goodbye.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL gdb");
        self.child.wait().expect("reap gdb");
    }
}

impl Drop for Gdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(from: impl std::io::Read, to: mpsc::Sender<String>) {
    for line in BufReader::new(from).lines().map_while(Result::ok) {
        if to.send(line).is_err() {
            break;
        }
    }
}

#[test]
fn gdb_killed_then_a_new_gdb_at_once_controls() {
    let s = SimServer::start(&[]);
    let target = format!("target extended-remote {}", s.addr);
    for cycle in 0..6u32 {
        // The first one loads the firmware: `monitor reset halt` starts it.
        let load: &[&str] = if cycle == 0 { &["load"] } else { &[] };
        let mut old = Gdb::start(&[&[target.as_str()], load, &["echo CONNECTED\\n"]].concat());
        old.until("CONNECTED");
        // The next GDB is up before the old one dies, so it connects
        // within milliseconds of the kill.
        let mut new = Gdb::start(&["echo READY\\n"]);
        new.until("READY");
        old.kill();
        new.send(&target);
        let value = 0x0dea_d000 + cycle;
        for cmd in control_cmds(value) {
            new.send(&cmd);
        }
        new.send("echo DONE\\n");
        let out = new.until("DONE");
        assert_controlled(
            &out,
            &format!("cycle {cycle}: the gdb connected after a SIGKILL"),
        );
        let want = format!("WROTE {value:#x}");
        assert!(out.contains(&want), "cycle {cycle}: no `{want}`:\n{out}");
    }
}

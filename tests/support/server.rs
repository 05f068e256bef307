//! `extflash-gdb serve --sim --port 0` as a child process for tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::rsp::RspClient;

/// A running server; killed on drop.
pub struct SimServer {
    child: Child,
    pub addr: String,
}

impl SimServer {
    pub fn start(extra: &[&str]) -> SimServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
            .args(["serve", "--sim", "--port", "0"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn extflash-gdb");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("expected `listening on HOST:PORT`, got {line:?}"))
            .to_string();
        SimServer { child, addr }
    }

    pub fn client(&self) -> RspClient {
        RspClient::connect(&self.addr).expect("connect")
    }

    /// Connect, retrying while the previous connection is being torn down
    /// (the server refuses a second controller until then).
    pub fn client_after_close(&self) -> RspClient {
        for _ in 0..50 {
            let mut c = self.client();
            if c.ask("?").is_ok() {
                return c;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("server stopped accepting connections");
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long one batch GDB run may take before the test fails instead of
/// hanging.
pub const GDB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl SimServer {
    /// Run `gdb-multiarch -batch` on `elf`, connected to this server, with
    /// `cmds`; returns stdout and stderr together.
    pub fn gdb(&self, elf: &str, cmds: &[&str]) -> String {
        gdb_at(&self.addr, elf, cmds)
    }
}

/// Run `gdb-multiarch -batch` on `elf`, connected to the server at `addr`
/// (a child `serve --sim` or one in this process), with `cmds`; returns
/// stdout and stderr together.
pub fn gdb_at(addr: &str, elf: &str, cmds: &[&str]) -> String {
    let target = format!("target extended-remote {addr}");
    let mut args: Vec<String> = vec!["-batch".into(), "-nx".into()];
    for c in [
        "set architecture arm",
        "set pagination off",
        "set confirm off",
        &target,
    ]
    .into_iter()
    .chain(cmds.iter().copied())
    {
        args.push("-ex".into());
        args.push(c.into());
    }
    args.push(elf.into());
    let mut child = Command::new("gdb-multiarch")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run gdb-multiarch: {e}"));
    let deadline = std::time::Instant::now() + GDB_TIMEOUT;
    // Waiting on a child process (not a socket): bounded polling.
    while child.try_wait().expect("wait for gdb").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let timed_out = std::time::Instant::now() > deadline;
    let out = child.wait_with_output().expect("gdb output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!timed_out, "gdb {cmds:?} timed out:\n{text}");
    eprintln!("---- gdb {cmds:?}\n{text}");
    text
}

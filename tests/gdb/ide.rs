//! The README's VS Code recipe, proved: what cortex-debug sends to a
//! `servertype: "external"` server, replayed through `gdb-multiarch`'s MI
//! interpreter against `serve --sim` — connect, `monitor reset halt`,
//! `-target-download`, `monitor reset halt`, run to `main` on a temporary
//! hardware breakpoint, memory views of the window and of a peripheral, the
//! register list, pause, reset, disconnect.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::support::elf::{self, firmware_assets_elf, FIRMWARE_ASSETS};
use crate::support::server::SimServer;

/// One `gdb-multiarch --interpreter=mi2` with its output lines on a channel.
pub(crate) struct Mi {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Mi {
    pub(crate) fn start() -> Mi {
        let mut child = Command::new("gdb-multiarch")
            .args(["--interpreter=mi2", "-nx", "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run gdb-multiarch");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Mi {
            child,
            stdin,
            lines,
            log: Vec::new(),
        }
    }

    /// Send `cmd`, then wait (bounded) for a line starting with `want`;
    /// returns that line. Fails the test on `^error` or a timeout.
    pub(crate) fn expect(&mut self, cmd: &str, want: &str, within: Duration) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.log.push(format!(">> {cmd}"));
        self.wait(want, within)
    }

    pub(crate) fn wait(&mut self, want: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => panic!("no `{want}` within {within:?}:\n{}", self.log.join("\n")),
            };
            self.log.push(line.clone());
            if line.starts_with("^error") && !want.starts_with("^error") {
                panic!("MI error waiting for `{want}`:\n{}", self.log.join("\n"));
            }
            if line.starts_with(want) {
                return line;
            }
        }
    }
}

impl Mi {
    /// Every line that arrives within `within` (for checking that one did
    /// not).
    pub(crate) fn drain(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.log.push(line.clone());
            got.push(line);
        }
        got
    }

    pub(crate) fn log(&self) -> String {
        self.log.join("\n")
    }
}

impl Drop for Mi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn cortex_debug_external_server_flow_replayed_through_gdb_mi() {
    let s = SimServer::start(&[]);
    let mut mi = Mi::start();
    let short = Duration::from_secs(30);
    let long = Duration::from_secs(240);
    mi.wait("(gdb)", short);
    mi.expect("-gdb-set mi-async on", "^done", short);
    mi.expect("-gdb-set remotetimeout 60", "^done", short);
    mi.expect(
        &format!("-file-exec-and-symbols {FIRMWARE_ASSETS}"),
        "^done",
        short,
    );
    mi.expect(
        &format!("-target-select extended-remote {}", s.addr),
        "^connected",
        short,
    );
    mi.expect(
        "-interpreter-exec console \"monitor reset halt\"",
        "^done",
        short,
    );
    mi.expect("-target-download", "^done", long);
    mi.expect(
        "-interpreter-exec console \"monitor reset halt\"",
        "^done",
        short,
    );
    let bp = mi.expect("-break-insert -t -h main", "^done,bkpt=", short);
    assert!(bp.contains("func=\"firmware::main\""), "{bp}");
    mi.expect("-exec-continue", "^running", short);
    let stop = mi.wait("*stopped", long);
    assert!(stop.contains("reason=\"breakpoint-hit\""), "{stop}");
    assert!(stop.contains("func=\"firmware::main\""), "{stop}");

    // Memory views: the window (served by the stub) and SPI1's CR1.
    let (_, font) = elf::section(&firmware_assets_elf(), ".extflash.font");
    let want: String = font[..4].iter().map(|b| format!("{b:02x}")).collect();
    let window = mi.expect(
        "-data-read-memory-bytes 0x90000003 4",
        "^done,memory=",
        long,
    );
    assert!(window.contains(&format!("contents=\"{want}\"")), "{window}");
    let periph = mi.expect(
        "-data-read-memory-bytes 0x40013000 4",
        "^done,memory=",
        short,
    );
    assert!(periph.contains("contents=\""), "{periph}");
    let regs = mi.expect(
        "-data-list-register-values x",
        "^done,register-values=",
        short,
    );
    assert!(
        regs.contains("{number=\"15\",value=\"0x"),
        "pc listed: {regs}"
    );

    // Pause a running target.
    mi.expect("-exec-continue", "^running", short);
    std::thread::sleep(Duration::from_millis(300));
    mi.expect("-exec-interrupt", "^done", short);
    let paused = mi.wait("*stopped", short);
    assert!(paused.contains("signal-name=\"SIGINT\""), "{paused}");

    // Reset and disconnect.
    mi.expect(
        "-interpreter-exec console \"monitor reset halt\"",
        "^done",
        short,
    );
    mi.expect("-target-disconnect", "^done", short);
    mi.expect("-gdb-exit", "^exit", short);
}

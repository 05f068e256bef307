//! A tool run to completion within a time limit: `gdb-multiarch`, `lldb`,
//! OpenOCD, pyOCD, the `extflash-gdb` binary.
//!
//! Its stdout and stderr are read by threads while it runs, so a tool that
//! prints more than a pipe holds (64 KiB) never blocks on a full pipe.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the output of a tool that has ended may still take to arrive
/// (a child of the tool may hold its pipes open).
const DRAIN: Duration = Duration::from_secs(5);

/// How a run ended and what it printed.
#[derive(Debug)]
pub struct Finished {
    /// `None`: still running at the limit, so killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Exited with status 0 within the limit.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Killed at the limit.
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    /// Stdout, then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run `cmd` (stdin empty, stdout and stderr captured) until it exits or
/// `limit` has passed, then kill it. The output is also printed under
/// `---- {what}`, for a failing test's log.
pub fn run_with_timeout(mut cmd: Command, what: &str, limit: Duration) -> Finished {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {what}: {e} (scripts/test-all.sh installs the tools)"));
    let (done_tx, done) = mpsc::channel();
    let stdout = drain(child.stdout.take().expect("piped"), done_tx.clone());
    let stderr = drain(child.stderr.take().expect("piped"), done_tx);
    let status = wait_until(&mut child, Instant::now() + limit);
    // Both pipes report their end (or a child of the tool holds them).
    let drained_by = Instant::now() + DRAIN;
    for _ in 0..2 {
        let left = drained_by.saturating_duration_since(Instant::now());
        if done.recv_timeout(left).is_err() {
            break;
        }
    }
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    let finished = Finished {
        status,
        stdout: text(&stdout),
        stderr: text(&stderr),
    };
    eprintln!("---- {what}\n{}{}", finished.stdout, finished.stderr);
    finished
}

/// A thread appending everything `pipe` yields to the returned buffer,
/// sending on `done` at its end.
fn drain(mut pipe: impl Read + Send + 'static, done: mpsc::Sender<()>) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let to = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            to.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
        let _ = done.send(());
    });
    buf
}

/// The child's exit status, or `None` once it was killed at `deadline`.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    // A child process, not a socket: std has no wait with a timeout, so
    // bounded polling.
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

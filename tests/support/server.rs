//! `extflash-gdb serve --sim --port 0` as a child process, and batch runs
//! of the real GDB (`gdb-multiarch`) against a server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::run_with_timeout;
use super::rsp::RspClient;

/// A running server; killed on drop.
pub struct SimServer {
    child: Child,
    pub addr: String,
}

impl SimServer {
    /// A server whose virtual board enforces RM0090's rules
    /// (`--sim-strict`): our stub, our firmware and the host keep them.
    pub fn start(extra: &[&str]) -> SimServer {
        let mut args = vec!["--sim-strict"];
        args.extend_from_slice(extra);
        Self::start_lenient(&args)
    }

    /// A server that only logs broken RM0090 rules (for firmware built
    /// from third-party crates that may break some).
    pub fn start_lenient(extra: &[&str]) -> SimServer {
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        Self::start_with_log(extra, &log, Stdio::inherit())
    }

    /// Like [`start_lenient`](Self::start_lenient) with the log filter
    /// `rust_log`, the log going to `stderr`.
    pub fn start_with_log(extra: &[&str], rust_log: &str, stderr: Stdio) -> SimServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
            .args(["serve", "--sim", "--port", "0"])
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(stderr)
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

    /// Connect as the controller, retrying while the previous controller
    /// is being torn down (a connection made until then observes); gives
    /// up after a minute (a loaded host is slow).
    pub fn client_after_close(&self) -> RspClient {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut c = self.client();
            if c.ask("?").is_ok() && super::rsp::is_controller(&mut c) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "no controller connection within a minute: the previous one was never torn down"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Limits of one batch GDB run.
#[derive(Debug, Clone, Copy)]
pub struct GdbLimits {
    /// The whole run; past it GDB is killed and the test fails.
    pub run: Duration,
    /// GDB's `remotetimeout` (seconds) for one reply, when not its default.
    pub reply: Option<u32>,
}

impl GdbLimits {
    /// Sessions without stub runs.
    pub const DEFAULT: GdbLimits = GdbLimits {
        run: Duration::from_secs(60),
        reply: None,
    };
    /// Sessions that program or read the window: emulated stub runs over
    /// 70 KB take seconds (real boards don't).
    pub const STUB_RUNS: GdbLimits = GdbLimits {
        run: Duration::from_secs(240),
        reply: Some(120),
    };
}

/// The text of GDB's output between the first `from` and the next `to`
/// (panics naming the missing marker and showing the output).
pub fn block<'a>(out: &'a str, from: &str, to: &str) -> &'a str {
    let a = out
        .find(from)
        .unwrap_or_else(|| panic!("no {from}:\n{out}"))
        + from.len();
    let b = a + out[a..]
        .find(to)
        .unwrap_or_else(|| panic!("no {to}:\n{out}"));
    &out[a..b]
}

/// Run `gdb-multiarch -batch` on `elf`, connected to the server at `addr`,
/// with `cmds`; returns stdout and stderr together (also printed, for a
/// failing test's log).
pub fn gdb_batch(addr: &str, elf: &str, cmds: &[&str], limits: GdbLimits) -> String {
    let mut setup = vec![
        "set architecture arm".to_string(),
        "set pagination off".into(),
        "set confirm off".into(),
    ];
    if let Some(s) = limits.reply {
        setup.push(format!("set remotetimeout {s}"));
    }
    setup.push(format!("target extended-remote {addr}"));
    let mut args: Vec<String> = vec!["-batch".into(), "-nx".into()];
    for c in setup.iter().map(String::as_str).chain(cmds.iter().copied()) {
        args.push("-ex".into());
        args.push(c.into());
    }
    args.push(elf.into());
    let mut gdb = Command::new("gdb-multiarch");
    gdb.args(&args);
    let out = run_with_timeout(gdb, &format!("gdb {cmds:?}"), limits.run);
    let text = out.text();
    assert!(
        !out.timed_out(),
        "gdb {cmds:?} timed out after {:?}:\n{text}",
        limits.run
    );
    text
}

/// [`gdb_batch`] on `firmware-assets.elf` with time for stub runs.
pub fn gdb_assets(addr: &str, cmds: &[&str]) -> String {
    gdb_batch(
        addr,
        super::elf::FIRMWARE_ASSETS,
        cmds,
        GdbLimits::STUB_RUNS,
    )
}

impl SimServer {
    /// [`gdb_batch`] against this server with the default limits.
    pub fn gdb(&self, elf: &str, cmds: &[&str]) -> String {
        gdb_batch(&self.addr, elf, cmds, GdbLimits::DEFAULT)
    }
}

/// A server in this process on a prepared virtual board (for chip states
/// the command line cannot set up), sending flash progress to `events`;
/// returns its address. It serves until the test process ends.
pub fn in_process(
    sim: extflash_gdb::sim::SimBoard,
    board: extflash_gdb::board::Board,
    events: extflash_gdb::flash::EventSink,
) -> String {
    use extflash_gdb::server::{self, OpenedSession, ProbeWorker, SessionSource};
    let source = SessionSource::new(move || {
        let session = sim
            .probe()
            .attach(super::sim::CHIP, probe_rs::Permissions::default())?;
        Ok(OpenedSession {
            session,
            keep_alive: Some(Box::new(sim)),
        })
    });
    let worker =
        ProbeWorker::start_with_events(source, std::sync::Arc::new(board), events).expect("worker");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().to_string()).unwrap();
            let _ = server::run(listener, worker, std::future::pending::<()>()).await;
        });
    });
    rx.recv().expect("server address")
}

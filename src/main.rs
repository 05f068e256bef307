//! `extflash-gdb` command line.

mod cli;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use extflash_gdb::board::Board;
use extflash_gdb::server::{self, OpenedSession, ProbeWorker, SessionSource};
use probe_rs::probe::list::Lister;
use probe_rs::probe::DebugProbeSelector;
use probe_rs::Permissions;

#[derive(Parser)]
#[command(
    version,
    about = "GDB server for STM32F407 boards with external SPI NOR flash"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the GDB remote protocol (use `target extended-remote HOST:PORT`).
    ///
    /// One GDB controls the board at a time: while one is connected, further
    /// connections are logged and closed at once.
    Serve(ServeArgs),
    /// Program an ELF, Intel HEX or raw binary (internal flash, RAM and the
    /// external window in one go), as GDB's `load` would.
    Flash(cli::flash::FlashArgs),
    /// Read memory at any address (the window included): hex dump or file.
    Read(cli::read::ReadArgs),
    /// Erase a flash range, or the whole external chip (--chip).
    Erase(cli::erase::EraseArgs),
    /// Compare a file with the target by on-target CRC, per section.
    Verify(cli::verify::VerifyArgs),
    /// Show the probe, the target and the external flash chip.
    Info(cli::info::InfoArgs),
    /// List the connected debug probes.
    List,
    /// Check a board: attach, SPI flash ID, and (with --yes) erase/program.
    Selftest(cli::selftest::SelftestArgs),
    /// Time load, reload, CRC and reads of the window against the physical
    /// limit (virtual time with --sim; wall time on a board, which it erases).
    Bench(cli::bench::BenchArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    target: cli::options::TargetArgs,
    /// Address to listen on. The protocol has no authentication: keep it local.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// TCP port; 0 picks a free one.
    #[arg(long, default_value_t = 3333)]
    port: u16,
    /// Load the test firmware and its external-flash assets through the
    /// GDB path at start, ready to `break main` (needs --sim).
    #[arg(long, requires = "sim")]
    demo: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Other crates (probe-rs) stay at warn unless RUST_LOG opens them; the
    // subcommands print their own progress, so only warnings are logged.
    let default_filter = match cli.command {
        Command::Serve(_) => "warn,extflash_gdb=info",
        // The virtual board's own warnings (a blank chip locking up) are
        // noise for a one-shot command.
        _ => "warn,sim=error",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Flash(args) => cli::flash::run(args),
        Command::Read(args) => cli::read::run(args),
        Command::Erase(args) => cli::erase::run(args),
        Command::Verify(args) => cli::verify::run(args),
        Command::Info(args) => cli::info::run(args),
        Command::List => cli::list::run(),
        Command::Selftest(args) => cli::selftest::run(args),
        Command::Bench(args) => cli::bench::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let board = args.target.load_board()?;
    let source = args.target.source(&board)?;
    let board = Arc::new(board);
    // A progress bar on a terminal, log lines otherwise.
    let events: extflash_gdb::flash::EventSink =
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            cli::progress::Progress::new().sink()
        } else {
            Arc::new(cli::progress::log_event)
        };
    let worker = ProbeWorker::start_with_events(source, board.clone(), events)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.bind.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
        let addr = listener.local_addr()?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
        drop(stdout);
        first_run_help(&args, addr, board);
        server::run(listener, worker, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })
}

/// What a new user needs after `listening on`: what the virtual board
/// holds and how to connect GDB; with `--demo`, the demo firmware is loaded
/// (through the server, as GDB would) before the connect line is printed.
fn first_run_help(args: &ServeArgs, addr: std::net::SocketAddr, board: Arc<Board>) {
    if args.target.sim {
        say(&cli::demo::board_line(args.target.sim_state.as_deref()));
    }
    if !args.demo {
        say(&cli::demo::connect_line(addr, None));
        return;
    }
    let mut local = addr;
    if local.ip().is_unspecified() {
        local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    std::thread::spawn(move || match cli::demo::load(local, board) {
        Ok(elf) => {
            say(
                "demo: test firmware and its assets (0x90000003, 0x9000f123) loaded through \
                 GDB's load path; core halted at the reset vector",
            );
            say(&cli::demo::connect_line(addr, Some(&elf)));
        }
        Err(e) => eprintln!("error: loading the demo firmware: {e:#}"),
    });
}

/// A line on stdout for people; a reader that went away (a script that only
/// wanted `listening on`) must not stop the server.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

// ---- The one place that knows about the virtual board (`--sim`). ----
/// The `--sim-*` options.
struct SimOptions {
    state_dir: Option<PathBuf>,
    link: extflash_gdb::sim::LinkProfile,
    realtime: bool,
    fast_forward: bool,
    strict: bool,
    faults: extflash_gdb::sim::Faults,
}

/// What `bench` reads from the virtual board: its clock, counters and clock
/// tree. Empty until the worker has built the board (at the first session).
#[derive(Clone, Default)]
pub struct SimHandle(Arc<std::sync::Mutex<Option<extflash_gdb::sim::SimBoard>>>);

/// One reading of the virtual board.
#[derive(Debug, Clone, Copy)]
pub struct SimReading {
    pub link: extflash_gdb::sim::LinkProfile,
    /// Virtual time, picoseconds.
    pub now_ps: u64,
    pub counters: extflash_gdb::sim::clock::Counters,
    /// W25Q64JV BUSY time so far, picoseconds.
    pub chip_busy_ps: u64,
    pub swd_hz: u64,
    /// APB1 (SPI2/3) and APB2 (SPI1) clocks as RCC has them now.
    pub pclk1_hz: u64,
    pub pclk2_hz: u64,
}

impl SimHandle {
    pub fn read(&self) -> Option<SimReading> {
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let board = slot.as_ref()?.lock();
        let clock = extflash_gdb::sim::board::clock_of(&board);
        let mcu = board.mcu();
        Some(SimReading {
            link: board.link_profile(),
            now_ps: clock.now(),
            counters: clock.counters,
            chip_busy_ps: mcu.chip.counters().busy_ps,
            swd_hz: clock.swd_hz(),
            pclk1_hz: mcu.rcc.pclk1_hz(),
            pclk2_hz: mcu.rcc.pclk2_hz(),
        })
    }
}

/// The virtual board, wired as `wired` says (the sim supports any SPI1..3
/// and pins): the `--sim-board` file, or else the `--board` file, so
/// `--board FILE` exercises that wiring end to end. The handle reaches the
/// board once the worker has built it.
fn sim_source(sim: SimOptions, wired: &Board, attach: AttachOptions) -> (SessionSource, SimHandle) {
    use extflash_gdb::sim::{Pin, Wiring};
    let pin = |p: extflash_gdb::board::Pin| Pin::new(p.port as u8 - b'A', p.number);
    let wiring = wired
        .external_flash
        .as_ref()
        .map(|e| Wiring {
            spi: e.spi,
            sck: pin(e.sck),
            miso: pin(e.miso),
            mosi: pin(e.mosi),
            af: e.af,
            cs: pin(e.cs),
        })
        .unwrap_or_default();
    // The board is built on the worker thread with the session; the
    // per-connection summary reaches it through this slot.
    let handle = SimHandle::default();
    let slot = handle.0.clone();
    let summary_slot = slot.clone();
    let source = SessionSource::new(move || {
        let board = extflash_gdb::sim::SimBoard::new(extflash_gdb::sim::SimConfig {
            state_dir: sim.state_dir.clone(),
            wiring,
            link: sim.link,
            realtime: sim.realtime,
            fast_forward: sim.fast_forward,
            strict: sim.strict,
            faults: sim.faults,
            ..Default::default()
        })?;
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(board.clone());
        let session = attach.attach(board.probe()).context("virtual board")?;
        Ok(OpenedSession {
            session,
            keep_alive: Some(Box::new(board)),
        })
    })
    .on_connection_end(move || {
        if let Some(board) = summary_slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            board.log_summary("GDB connection ended");
        }
    });
    (source, handle)
}
// ---- end of the virtual-board part ----

/// How to attach once a probe is open (shared by real probes and `--sim`).
struct AttachOptions {
    speed: Option<u32>,
    under_reset: bool,
    chip: String,
}

impl AttachOptions {
    fn attach(&self, mut probe: probe_rs::probe::Probe) -> anyhow::Result<probe_rs::Session> {
        if let Some(khz) = self.speed {
            let actual = probe
                .set_speed(khz)
                .with_context(|| format!("cannot set SWD speed {khz} kHz"))?;
            tracing::info!("SWD speed {actual} kHz");
        }
        let chip = self.chip.as_str();
        let session = if self.under_reset {
            probe.attach_under_reset(chip, Permissions::default())
        } else {
            probe.attach(chip, Permissions::default())
        }
        .with_context(|| format!("cannot attach to {chip}"))?;
        Ok(session)
    }
}

fn probe_source(selector: Option<String>, attach: AttachOptions) -> SessionSource {
    SessionSource::new(move || {
        let lister = Lister::new();
        let probes = lister.list_all();
        let describe = || {
            if probes.is_empty() {
                "no debug probes found".to_string()
            } else {
                let list: Vec<String> = probes
                    .iter()
                    .map(|p| {
                        format!(
                            "  {:04x}:{:04x}{} {}",
                            p.vendor_id,
                            p.product_id,
                            p.serial_number
                                .as_deref()
                                .map(|s| format!(":{s}"))
                                .unwrap_or_default(),
                            p.identifier
                        )
                    })
                    .collect();
                format!("probes found:\n{}", list.join("\n"))
            }
        };
        let selector: DebugProbeSelector = match &selector {
            Some(s) => s
                .parse()
                .with_context(|| format!("--probe {s}: expected VID:PID[:SERIAL] in hex"))?,
            None => match probes.as_slice() {
                [one] => one.into(),
                [] => anyhow::bail!(
                    "{}; connect one (check USB permissions/udev rules) and select it with \
                     --probe VID:PID[:SERIAL] if there are several, or use --sim for the \
                     virtual board",
                    describe()
                ),
                _ => anyhow::bail!(
                    "several probes connected; pick one with --probe VID:PID[:SERIAL]\n{}",
                    describe()
                ),
            },
        };
        let probe = lister
            .open(selector.clone())
            .with_context(|| format!("cannot open probe {selector}\n{}", describe()))?;
        let session = attach
            .attach(probe)
            .with_context(|| format!("through probe {selector}"))?;
        Ok(OpenedSession::from(session))
    })
}

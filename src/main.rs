//! `extflash-gdb` command line.

mod cli;

use std::io::Write as _;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use extflash_gdb::board::Board;
use extflash_gdb::server::{self, ProbeWorker};

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
    /// One GDB controls the board at a time; up to four further connections
    /// are read-only observers (memory, registers, qCRC, the memory map:
    /// cortex-debug Live Watch, dump scripts). Roles are given at a
    /// connection's first packet. With --sim, each connection's end logs one
    /// line on the virtual board (virtual time, round trips, instructions,
    /// SPI bytes, chip busy time).
    Serve(ServeArgs),
    /// Program an ELF, Intel HEX, S-record or raw binary (internal flash, RAM and the
    /// external window in one go), as GDB's `load` would.
    Flash(cli::flash::FlashArgs),
    /// Read memory at any address (the window included): hex dump or file.
    Read(cli::read::ReadArgs),
    /// Erase a flash range, or the whole external chip (--chip-erase).
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
    /// Write a flash loader for another tool from the board file:
    /// STM32CubeProgrammer (.stldr), CMSIS-Pack (.FLM: Keil, pyOCD) or a
    /// probe-rs target description.
    Loader(cli::loader::LoaderArgs),
    /// Offer the virtual board to other debuggers on an OpenOCD
    /// remote_bitbang socket (OpenOCD over JTAG, pyOCD's pyocd-bitbang
    /// over SWD).
    Bitbang(cli::bitbang::BitbangArgs),
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
        // `sim` is the virtual board's target (nothing logs there on
        // silicon): its one summary line per connection is shown.
        Command::Serve(_) => "warn,extflash_gdb=info,sim=info",
        Command::Bitbang(_) => "warn,sim=info",
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
        Command::Loader(args) => cli::loader::run(args),
        Command::Bitbang(args) => cli::bitbang::run(args),
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
            .map_err(|e| cli::listen_error(&args.bind, args.port, e))?;
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

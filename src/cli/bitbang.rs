//! `bitbang`: the virtual board on a remote_bitbang socket for debuggers
//! other than this server (OpenOCD's `remote_bitbang` adapter over JTAG,
//! pyOCD's `pyocd-bitbang` probe over SWD).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use extflash_gdb::sim::{bitbang, Faults, SimBoard, SimConfig, SimFault};

#[derive(clap::Args, Debug)]
pub struct BitbangArgs {
    /// Address to listen on. The protocol has no authentication: keep it local.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// TCP port; 0 picks a free one.
    #[arg(long, default_value_t = bitbang::DEFAULT_PORT)]
    pub port: u16,
    /// Bit clock in kHz that virtual time charges each transaction at. A
    /// host bit-banging over TCP is slow; its own pace is not measured, so
    /// virtual time depends only on the requests it sends.
    #[arg(long, value_name = "KHZ", default_value_t = bitbang::DEFAULT_KHZ,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub speed: u32,
    /// Back the virtual board's flash with files in DIR (shared with
    /// `serve --sim --sim-state DIR`, one at a time).
    #[arg(long, value_name = "DIR")]
    pub sim_state: Option<PathBuf>,
    /// Let the running core keep up with host time between transactions.
    #[arg(long)]
    pub sim_realtime: bool,
    /// Emulate every iteration of the core's wait loops.
    #[arg(long)]
    pub sim_no_fast_forward: bool,
    /// Faults of the virtual board, comma-separated: stuck-busy,
    /// wel-never-set, no-chip, protected, locked, worn-bit.
    #[arg(long, value_name = "LIST", value_parser = SimFault::parse_list)]
    pub sim_fault: Option<Faults>,
}

pub fn run(args: BitbangArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.sim_state {
        super::options::check_state_dir(dir)?;
    }
    let board = SimBoard::new(SimConfig {
        state_dir: args.sim_state.clone(),
        speed_khz: Some(args.speed),
        realtime: args.sim_realtime,
        fast_forward: !args.sim_no_fast_forward,
        faults: args.sim_fault.unwrap_or_default(),
        ..Default::default()
    })?;
    let listener = std::net::TcpListener::bind((args.bind.as_str(), args.port))
        .map_err(|e| super::listen_error(&args.bind, args.port, e))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
        // Help for people; a reader that only wanted the first line (and
        // went away) must not stop the server.
        let help = [
            super::demo::board_line(args.sim_state.as_deref()),
            format!(
                "OpenOCD (JTAG): openocd -c 'adapter driver remote_bitbang; remote_bitbang host {}; \
                 remote_bitbang port {}; transport select jtag' -f target/stm32f4x.cfg -c \
                 'stm32f4x.cpu configure -event reset-start {{}}; stm32f4x.cpu configure \
                 -event reset-init {{}}'",
                addr.ip(),
                addr.port()
            ),
            format!(
                "pyOCD (SWD, pip install pyocd-bitbang): pyocd commander -t stm32f412xe -u \
                 remote_bitbang:{addr}"
            ),
        ];
        for line in help {
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    }
    // Ctrl-C saves the flash state files before leaving.
    let on_stop = board.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            rt.block_on(async {
                let _ = tokio::signal::ctrl_c().await;
            });
            if let Err(e) = on_stop.lock().flush() {
                eprintln!("error: saving the virtual board's flash: {e}");
            }
            std::process::exit(130);
        }
    });
    bitbang::serve(listener, board).context("remote_bitbang socket")?;
    Ok(())
}

//! What a command opens: a debug probe through probe-rs, or the virtual
//! board (`--sim`). The only place outside `src/sim/` that builds the
//! virtual board; everything above gets a [`SessionSource`] and never asks
//! which one it is.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use extflash_gdb::board::Board;
use extflash_gdb::server::{OpenedSession, SessionSource};
use probe_rs::probe::list::Lister;
use probe_rs::probe::DebugProbeSelector;
use probe_rs::Permissions;

/// The `--sim-*` options.
pub struct SimOptions {
    pub state_dir: Option<PathBuf>,
    pub link: extflash_gdb::sim::LinkProfile,
    pub realtime: bool,
    pub fast_forward: bool,
    /// Enforce RM0090's rules (`--sim-strict`).
    pub strict: bool,
    pub faults: extflash_gdb::sim::Faults,
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
pub fn sim_source(
    sim: SimOptions,
    wired: &Board,
    attach: AttachOptions,
) -> (SessionSource, SimHandle) {
    use extflash_gdb::sim::Wiring;
    let wiring = wired
        .external_flash
        .as_ref()
        .map(Wiring::from)
        .unwrap_or_default();
    // The board is built on the worker thread with the session; the
    // per-connection summary reaches it through this slot.
    let handle = SimHandle::default();
    let slot = handle.0.clone();
    let summary_slot = slot.clone();
    let clock_slot = slot.clone();
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
    .with_board_clock({
        // Virtual time: what the same job takes on a desk.
        Arc::new(move || {
            clock_slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|b| std::time::Duration::from_nanos(b.lock().now() / 1000))
                .unwrap_or_default()
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

/// How to attach once a probe is open (shared by real probes and `--sim`).
pub struct AttachOptions {
    pub speed: Option<u32>,
    pub under_reset: bool,
    pub chip: String,
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

pub fn probe_source(selector: Option<String>, attach: AttachOptions) -> SessionSource {
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

//! The subcommands' rendering of progress: an `indicatif` bar (bytes, KB/s,
//! ETA) on stderr when it is a terminal, plain lines otherwise. Flash work
//! arrives as [`FlashEvent`]s from the probe worker thread (the same events
//! the server logs); the CLI's own reads use [`Progress::begin`].

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use extflash_gdb::flash::{EventSink, FlashEvent, FlashKind};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Plain mode prints a line each time another tenth is done.
const PLAIN_STEPS: u64 = 10;

/// Totals of the flash work seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub erased: u64,
    pub programmed: u64,
    /// Bytes that already held the image (neither erased nor programmed).
    pub skipped: u64,
    /// Time spent inside flash operations (sum of their `Done` events).
    pub busy: Duration,
    /// The same on the board's own clock, when the session has one.
    pub board_busy: Option<Duration>,
}

struct Task {
    label: String,
    total: u64,
    done: u64,
    /// Plain mode: the last tenth printed.
    step: u64,
    bar: Option<ProgressBar>,
}

struct State {
    task: Option<Task>,
    totals: Totals,
}

/// Shared by the command and the worker thread's event sink.
pub struct Progress {
    tty: bool,
    state: Mutex<State>,
}

fn kind(f: &FlashKind) -> &'static str {
    match f {
        FlashKind::Internal => "internal flash",
        FlashKind::External => "external flash",
    }
}

/// KB/s (1 KB = 1024 bytes) with a floor on the time.
pub fn rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1024.0 / elapsed.as_secs_f64().max(1e-3)
}

/// The sentence people read for an event: what `serve` logs and what the
/// plain progress output prints. `None` for the per-block events a bar
/// shows instead.
pub fn event_line(e: &FlashEvent) -> Option<String> {
    Some(match e {
        FlashEvent::Identified {
            jedec_id,
            name,
            size,
        } => format!(
            "external flash: {name} (JEDEC ID {:02X} {:02X} {:02X}), {} KiB",
            jedec_id[0],
            jedec_id[1],
            jedec_id[2],
            size / 1024
        ),
        FlashEvent::Started {
            flash,
            erase_bytes,
            program_bytes,
        } => format!(
            "{}: erasing {erase_bytes} bytes, programming {program_bytes} bytes",
            kind(flash)
        ),
        FlashEvent::Waiting {
            flash,
            what,
            elapsed,
        } => format!(
            "{}: {what} still running after {} s",
            kind(flash),
            elapsed.as_secs()
        ),
        FlashEvent::Skipped { flash, bytes } => format!(
            "{}: {bytes} bytes already hold the image (skipped)",
            kind(flash)
        ),
        FlashEvent::Compressed { flash, bytes, sent } => format!(
            "{}: {bytes} bytes compressed, {sent} bytes sent in all",
            kind(flash)
        ),
        FlashEvent::Done {
            flash,
            erased,
            programmed,
            skipped,
            elapsed,
            board,
        } => {
            let skip = if *skipped > 0 {
                format!(", skipped {skipped} unchanged bytes")
            } else {
                String::new()
            };
            // The board's own time, when the session has a clock of its own
            // (the virtual board): what the same job takes on the desk.
            let on_board = |with_rate: bool| match board {
                Some(b) if with_rate => format!(
                    "; board time {:.2} s ({:.1} KB/s)",
                    b.as_secs_f64(),
                    rate(*programmed, *b)
                ),
                Some(b) => format!("; board time {:.2} s", b.as_secs_f64()),
                None => String::new(),
            };
            if *programmed == 0 {
                format!(
                    "{}: erased {erased} bytes{skip} in {:.2} s{}",
                    kind(flash),
                    elapsed.as_secs_f64(),
                    on_board(false)
                )
            } else {
                format!(
                    "{}: erased {erased} bytes, programmed {programmed} bytes{skip} in {:.2} s \
                     ({:.1} KB/s){}",
                    kind(flash),
                    elapsed.as_secs_f64(),
                    rate(*programmed, *elapsed),
                    on_board(true)
                )
            }
        }
        FlashEvent::Erasing { .. } | FlashEvent::Programmed { .. } => return None,
    })
}

/// `serve`'s rendering when stderr is not a terminal: the sentences as log
/// lines, per-block events at debug level.
pub fn log_event(e: &FlashEvent) {
    match event_line(e) {
        Some(line) => tracing::info!("{line}"),
        None => tracing::debug!(?e, "flash progress"),
    }
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Arc<Progress> {
        Self::with_mode(std::io::stderr().is_terminal())
    }

    pub fn with_mode(tty: bool) -> Arc<Progress> {
        Arc::new(Progress {
            tty,
            state: Mutex::new(State {
                task: None,
                totals: Totals::default(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sink to hand to `ProbeWorker::start_with_events`.
    pub fn sink(self: &Arc<Self>) -> EventSink {
        let me = self.clone();
        Arc::new(move |e| me.on_event(e))
    }

    pub fn totals(&self) -> Totals {
        self.lock().totals
    }

    /// Print a line without tearing the bar.
    pub fn line(&self, text: &str) {
        let state = self.lock();
        match state.task.as_ref().and_then(|t| t.bar.as_ref()) {
            Some(bar) => bar.println(text),
            None => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
        }
    }

    /// Start a byte-counting task (ends the previous one).
    pub fn begin(&self, label: &str, total: u64) {
        let mut state = self.lock();
        if let Some(old) = state.task.take() {
            if let Some(bar) = old.bar {
                bar.finish_and_clear();
            }
        }
        let bar = self.tty.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>16} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if !self.tty {
            let _ = writeln!(std::io::stderr(), "{label}: 0 of {total} bytes");
        }
        state.task = Some(Task {
            label: label.to_string(),
            total,
            done: 0,
            step: 0,
            bar,
        });
    }

    pub fn advance(&self, bytes: u64) {
        let mut state = self.lock();
        let Some(t) = state.task.as_mut() else {
            return;
        };
        t.done = (t.done + bytes).min(t.total);
        match &t.bar {
            Some(bar) => bar.set_position(t.done),
            None if t.total > 0 => {
                let step = t.done * PLAIN_STEPS / t.total;
                if step > t.step {
                    t.step = step;
                    let _ = writeln!(
                        std::io::stderr(),
                        "{}: {} of {} bytes ({}%)",
                        t.label,
                        t.done,
                        t.total,
                        t.done * 100 / t.total
                    );
                }
            }
            None => {}
        }
    }

    /// End the current task.
    pub fn finish(&self) {
        if let Some(t) = self.lock().task.take() {
            if let Some(bar) = t.bar {
                bar.finish_and_clear();
            }
        }
    }

    fn on_event(&self, e: &FlashEvent) {
        match e {
            FlashEvent::Started {
                flash,
                program_bytes,
                ..
            } if *program_bytes > 0 => {
                self.line(&event_line(e).unwrap_or_default());
                self.begin(&format!("{} program", short(flash)), *program_bytes);
            }
            FlashEvent::Programmed { bytes, .. } => self.advance(u64::from(*bytes)),
            FlashEvent::Done {
                erased,
                programmed,
                skipped,
                elapsed,
                board,
                ..
            } => {
                self.finish();
                {
                    let mut state = self.lock();
                    state.totals.erased += erased;
                    state.totals.programmed += programmed;
                    state.totals.skipped += skipped;
                    state.totals.busy += *elapsed;
                    if let Some(b) = board {
                        *state.totals.board_busy.get_or_insert_default() += *b;
                    }
                }
                self.line(&event_line(e).unwrap_or_default());
            }
            // Identification and skips are in the summary lines.
            FlashEvent::Identified { .. } | FlashEvent::Skipped { .. } => {}
            other => {
                if let Some(line) = event_line(other) {
                    self.line(&line);
                }
            }
        }
    }
}

fn short(f: &FlashKind) -> &'static str {
    match f {
        FlashKind::Internal => "internal",
        FlashKind::External => "external",
    }
}

/// Wall time of a whole command step, for summaries.
pub struct Stopwatch(Instant);

impl Stopwatch {
    pub fn start() -> Stopwatch {
        Stopwatch(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_events_add_up_into_totals() {
        let p = Progress::with_mode(false);
        let sink = p.sink();
        for (flash, erased, programmed) in [
            (FlashKind::External, 0x2000, 0x1800),
            (FlashKind::Internal, 0x4000, 0x100),
        ] {
            sink(&FlashEvent::Started {
                flash,
                erase_bytes: erased,
                program_bytes: programmed,
            });
            sink(&FlashEvent::Programmed {
                flash,
                address: 0,
                bytes: programmed as u32,
            });
            sink(&FlashEvent::Done {
                flash,
                erased,
                programmed,
                skipped: 0x1000,
                elapsed: Duration::from_millis(500),
                board: None,
            });
        }
        assert_eq!(
            p.totals(),
            Totals {
                erased: 0x6000,
                programmed: 0x1900,
                skipped: 0x2000,
                busy: Duration::from_secs(1),
                board_busy: None,
            }
        );
        assert!((rate(2048, Duration::from_secs(2)) - 1.0).abs() < 1e-9);
    }
}

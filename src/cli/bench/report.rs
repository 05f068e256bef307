//! What `bench` prints: the table, the `--speeds` table, the goals each
//! job is held to, and the JSON report (serde).

use super::*;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

pub(super) fn row(j: &JobResult) -> String {
    format!(
        "{:<10} {:>9} {:>10} {:>9} {:>10} {:>7} {:>11}",
        j.name,
        j.bytes,
        opt(j.virtual_s, 3),
        format!("{:.3}", j.host_s),
        opt(j.limit_s, 3),
        opt(j.ratio(), 2),
        j.round_trips.map_or("-".into(), |r| r.to_string())
    )
}

pub fn table(r: &Report) -> String {
    let mhz = |hz: u64| hz as f64 / 1e6;
    let mut out = format!(
        "bench: {} bytes at {:#010x}, link {}{}\nlimits: chip at datasheet typical times, \
         link for the bytes that must cross it, SPI at {:.1} MHz (the board file's prescaler \
         at the highest APB clock){}\n",
        r.size,
        r.address,
        r.link,
        r.swd_hz
            .map_or(String::new(), |s| format!(" (SWD {} kHz)", s / 1000)),
        mhz(r.spi_hz),
        r.spi_hz_at_reset.map_or(String::new(), |s| format!(
            "; the stub runs the SPI at {:.1} MHz on the board's clock at the start",
            mhz(s)
        )),
    );
    out.push_str(&format!(
        "{:<10} {:>9} {:>10} {:>9} {:>10} {:>7} {:>11}\n",
        "job", "bytes", "virtual s", "host s", "limit s", "ratio", "round trips"
    ));
    for j in &r.jobs {
        out.push_str(&row(j));
        out.push('\n');
    }
    if let Some((bytes, sent)) = r.assets_compression {
        out.push_str(&format!(
            "assets: {bytes} bytes went as lz blocks; {sent} bytes of records crossed the link\n"
        ));
    }
    let goals = goals(r);
    if !goals.is_empty() {
        out.push_str("goals of issue 22 (stated for 8 MiB):\n");
        for g in goals {
            out.push_str(&format!("  {g}\n"));
        }
    }
    out.pop();
    out
}

/// `--speeds` without `--json`: each job's ratio to its limit (reads:
/// virtual milliseconds) per SWD clock, then the goals not met.
pub fn speeds_table(reports: &[Report]) -> String {
    let Some(first) = reports.first() else {
        return String::new();
    };
    let clock = |r: &Report| r.swd_hz.map_or("-".into(), |h| format!("{} kHz", h / 1000));
    let mut out = format!(
        "bench: {} bytes at {:#010x}, link {}: ratio to the limit per SWD clock (reads: \
         virtual ms)\n{:<10}",
        first.size, first.address, first.link, "job"
    );
    for r in reports {
        out.push_str(&format!(" {:>10}", clock(r)));
    }
    for j in &first.jobs {
        out.push_str(&format!("\n{:<10}", j.name));
        for r in reports {
            let job = r.jobs.iter().find(|k| k.name == j.name);
            let cell = match job {
                Some(k) if k.limit_s.is_some() => opt(k.ratio(), 2),
                Some(k) => opt(k.virtual_s.map(|v| v * 1e3), 1),
                None => "-".into(),
            };
            out.push_str(&format!(" {cell:>10}"));
        }
    }
    for r in reports {
        let goals = goals(r);
        let missed: Vec<_> = goals.iter().filter(|g| !g.met).collect();
        out.push_str(&format!(
            "\ngoals at {}: {} of {} met",
            clock(r),
            goals.len() - missed.len(),
            goals.len()
        ));
        for g in missed {
            out.push_str(&format!("\n  {g}"));
        }
    }
    out
}

/// One goal of issue 22 (stated for 8 MiB, virtual time), checked against
/// a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Goal {
    pub job: &'static str,
    /// The measured figure and the most the goal allows, in `unit`.
    pub value: f64,
    pub max: f64,
    pub unit: &'static str,
    pub met: bool,
    /// What the goal compares against, for people.
    pub against: String,
    /// When a physical limit, not this program, decides the figure: that
    /// bound and why.
    pub bound: Option<String>,
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (v, max, against) = (self.value, self.max, &self.against);
        let verdict = if self.met { "met" } else { "not met" };
        let unit = self.unit;
        match unit {
            "x" => write!(
                f,
                "{}: {v:.2} x {against} (goal <= {max:.2}): {verdict}",
                self.job
            )?,
            _ => {
                let d = match unit {
                    "round trips" => 0,
                    "ms" => 1,
                    _ => 3,
                };
                write!(
                    f,
                    "{}: {v:.d$} {unit} (goal <= {max:.d$} {unit}, {against}): {verdict}",
                    self.job
                )?
            }
        }
        if let Some(b) = &self.bound {
            write!(f, "; {b}")?;
        }
        Ok(())
    }
}

/// Issue 22's goals, each with the measured figure and whether it is met
/// (virtual board only: a job without virtual time has none).
pub fn goals(r: &Report) -> Vec<Goal> {
    let get = |name: &str| r.jobs.iter().find(|j| j.name == name);
    let mut out = Vec::new();
    let goal = |job: &'static str, value: f64, max: f64, unit, against: String| Goal {
        job,
        value,
        max,
        unit,
        met: value <= max,
        against,
        bound: None,
    };
    // Where this design's floor lies above the goal: why.
    let floor_bound = |j: &JobResult, basis: f64, max: f64| {
        let f = j.floor_s?;
        let q = f / basis;
        (q > max).then(|| {
            let read = r.size as f64 * 8.0 / r.spi_hz.max(1) as f64;
            let ahead = r.slot_bytes.map_or(String::new(), |b| {
                format!(
                    ", and the link runs only the slots' {} KiB ahead of each 64 KiB block \
                     erase (150 ms; a larger work_area in the board file raises this)",
                    b / 1024
                )
            });
            let mhz = r.spi_hz as f64 / 1e6;
            let page_us = page_spi_ps(r.spi_hz) as f64 / 1e6;
            format!(
                "bound: {f:.3} s = {q:.3} x: the first 64 KiB are read over SPI before \
                 anything is sent, and each blank block before its erase is skipped (at \
                 most {read:.3} s for the range at the SPI's top clock; the chip cannot \
                 read while it erases or programs), and each page programmed crosses the \
                 SPI twice while the chip waits, its 256 bytes to program it and again to \
                 read it back for the verification ({page_us:.0} us a page with the \
                 instruction bytes at {mhz:.1} MHz, the SPI's top clock), as is each \
                 page that becomes 0xFF once its block is erased{ahead}"
            )
        })
    };
    let ratio = |name: &'static str, max: f64| {
        let j = get(name)?;
        let q = j.ratio()?;
        let mut g = goal(name, q, max, "x", "its limit".into());
        g.bound = floor_bound(j, j.limit_s?, max);
        Some(g)
    };
    out.extend(ratio("load", 1.10));
    out.extend(ratio("overwrite", 1.10));
    out.extend(ratio("dump", 1.10));
    if let Some(j) = get("assets") {
        if let (Some(v), Some(chip)) = (j.virtual_s, j.chip_s) {
            // Compression beats the link's share, never the chip's.
            let (bound, what) = match j.sent_s.or(j.limit_s) {
                Some(link) if link > chip => (link, "compressed link time"),
                _ => (chip, "chip busy time"),
            };
            if bound > 0.0 {
                let mut g = goal(
                    "assets",
                    v / bound,
                    1.05,
                    "x",
                    format!("the {what}, {bound:.3} s"),
                );
                g.bound = floor_bound(j, bound, 1.05);
                if what == "chip busy time" {
                    let why = format!(
                        "the chip's busy time ({chip:.3} s) is the bound on this link: \
                         compression cannot shorten it"
                    );
                    g.bound = Some(match g.bound {
                        Some(b) => format!("{why}; {b}"),
                        None => why,
                    });
                }
                out.push(g);
            }
        }
    }
    if let (Some(load), Some(j)) = (get("load").and_then(|j| j.virtual_s), get("reload")) {
        if let (Some(v), Some(spi)) = (j.virtual_s, j.limit_s) {
            let (five, read) = (0.05 * load, 1.10 * spi);
            let against = if five >= read {
                format!("5 % of load; 1.10 x reading the image over SPI is {read:.3} s")
            } else {
                format!("1.10 x reading the image over SPI; 5 % of load is {five:.3} s")
            };
            let mut g = goal("reload", v, five.max(read), "s", against);
            if read > five {
                g.bound = Some(format!(
                    "reading the image back at the SPI's top clock takes {spi:.3} s, more \
                     than 5 % of load"
                ));
            }
            out.push(g);
        }
    }
    out.extend(ratio("crc", 1.05));
    if let Some(v) = get("read-cold").and_then(|j| j.virtual_s) {
        out.push(goal("read-cold", v * 1e3, 50.0, "ms", "issue 9".into()));
    }
    if let Some(t) = get("read-warm").and_then(|j| j.round_trips) {
        out.push(goal(
            "read-warm",
            t as f64,
            3.0,
            "round trips",
            "issue 9".into(),
        ));
    }
    out
}

/// A run as it appears in the JSON.
#[derive(Serialize)]
struct ReportJson<'a> {
    link: &'a str,
    address: u32,
    size: u32,
    swd_hz: Option<u64>,
    spi_hz: u64,
    spi_hz_at_reset: Option<u64>,
    jobs: Vec<JobJson<'a>>,
    assets_compression: Option<CompressionJson>,
    goals: Vec<Goal>,
}

#[derive(Serialize)]
struct CompressionJson {
    lz_bytes: u64,
    sent_bytes: u64,
}

fn report_json(r: &Report) -> ReportJson<'_> {
    let jobs = r
        .jobs
        .iter()
        .map(|j| JobJson {
            name: j.name,
            bytes: j.bytes,
            virtual_s: j.virtual_s,
            host_s: j.host_s,
            limit_s: j.limit_s,
            ratio: j.ratio(),
            chip_s: j.chip_s,
            sent_s: j.sent_s,
            floor_s: j.floor_s,
            round_trips: j.round_trips,
        })
        .collect();
    ReportJson {
        link: &r.link,
        address: r.address,
        size: r.size,
        swd_hz: r.swd_hz,
        spi_hz: r.spi_hz,
        spi_hz_at_reset: r.spi_hz_at_reset,
        jobs,
        assets_compression: r
            .assets_compression
            .map(|(lz_bytes, sent_bytes)| CompressionJson {
                lz_bytes,
                sent_bytes,
            }),
        goals: goals(r),
    }
}

/// One run as one JSON object (`--json`): the report's fields, every job
/// with its ratio, the assets compression and the goals.
pub fn json(r: &Report) -> String {
    serde_json::to_string(&report_json(r)).expect("numbers and strings serialize")
}

/// `--speeds --json`: one object, `{"runs": [...]}`, a run per SWD clock.
pub fn json_runs(reports: &[Report]) -> String {
    #[derive(Serialize)]
    struct Runs<'a> {
        runs: Vec<ReportJson<'a>>,
    }
    let runs = reports.iter().map(report_json).collect();
    serde_json::to_string(&Runs { runs }).expect("numbers and strings serialize")
}

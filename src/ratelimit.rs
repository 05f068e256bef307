//! Rate limits for warnings a client can trigger at will (refused observer
//! packets, busy replies, connections that never speak): per connection
//! and kind, the first [`FIRST`] of an interval are logged, the rest are
//! counted and reported in one line when the interval is over (at the next
//! warning of that kind, or when the connection ends). A client flooding
//! the server so costs a few lines per second, never the disk.
//!
//! Pure: the caller passes the time, so the tests need no clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Warnings of one kind logged per interval before they are only counted.
pub const FIRST: u32 = 3;
/// Length of one interval.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Whether to log one warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it. `suppressed` warnings of this kind were only counted in the
    /// interval of `over` that just ended: say so first.
    Log { suppressed: u64, over: Duration },
    /// Only counted.
    Suppress,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

/// One connection's (or the accept loop's) warning counters by kind.
#[derive(Debug, Default)]
pub struct RateLimit {
    kinds: HashMap<&'static str, Window>,
}

impl RateLimit {
    pub fn new() -> RateLimit {
        RateLimit::default()
    }

    /// Count one warning of `kind` at `now` and say whether to log it.
    pub fn check(&mut self, kind: &'static str, now: Instant) -> Verdict {
        let w = self.kinds.entry(kind).or_insert(Window {
            start: now,
            logged: 0,
            suppressed: 0,
        });
        let over = now.saturating_duration_since(w.start);
        if over >= INTERVAL {
            let suppressed = std::mem::take(&mut w.suppressed);
            w.start = now;
            w.logged = 1;
            return Verdict::Log { suppressed, over };
        }
        if w.logged < FIRST {
            w.logged += 1;
            Verdict::Log {
                suppressed: 0,
                over,
            }
        } else {
            w.suppressed += 1;
            Verdict::Suppress
        }
    }

    /// Warnings counted but not yet reported, by kind (the connection
    /// ends); the counters start again.
    pub fn take_suppressed(&mut self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<_> = self
            .kinds
            .iter_mut()
            .filter(|(_, w)| w.suppressed > 0)
            .map(|(k, w)| (*k, std::mem::take(&mut w.suppressed)))
            .collect();
        out.sort();
        out
    }

    /// Log `warn` unless rate-limited, preceded by the count of those
    /// suppressed in the interval that ended. `kind` names the kind in
    /// the count line ("refused packets"), `from` the source ("connection
    /// 4"): called only for a count line, so a dropped warning costs no
    /// formatting.
    pub fn warn(&mut self, kind: &'static str, from: impl FnOnce() -> String, warn: impl FnOnce()) {
        self.warn_at(kind, Instant::now(), from, warn);
    }

    /// [`RateLimit::warn`] at `now`.
    fn warn_at(
        &mut self,
        kind: &'static str,
        now: Instant,
        from: impl FnOnce() -> String,
        warn: impl FnOnce(),
    ) {
        if let Verdict::Log { suppressed, over } = self.check(kind, now) {
            if suppressed > 0 {
                report(kind, &from(), suppressed, over);
            }
            warn();
        }
    }

    /// Report what is still counted (call when the source goes away).
    pub fn flush(&mut self, from: &str) {
        for (kind, n) in self.take_suppressed() {
            report(kind, from, n, Duration::ZERO);
        }
    }
}

/// The count line: "… 9812 more refused packets from connection 4 in the
/// last 1.0s".
fn report(kind: &str, from: &str, suppressed: u64, over: Duration) {
    if suppressed == 0 {
        return;
    }
    if over.is_zero() {
        tracing::warn!("… {suppressed} more {kind} from {from} (not logged one by one)");
    } else {
        tracing::warn!(
            "… {suppressed} more {kind} from {from} in the last {:.1}s",
            over.as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_three_per_interval_are_logged_then_counted_and_reported_once() {
        let mut rl = RateLimit::new();
        let t0 = Instant::now();
        let mut logged = 0;
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i) * 10); // 0.1 s
            if let Verdict::Log { suppressed, .. } = rl.check("refused packets", now) {
                assert_eq!(suppressed, 0);
                logged += 1;
            }
        }
        assert_eq!(logged, FIRST);
        // Another kind has its own counter.
        assert!(matches!(rl.check("busy replies", t0), Verdict::Log { .. }));
        // The next interval: one line says how many were not logged.
        let later = t0 + INTERVAL + Duration::from_millis(5);
        assert_eq!(
            rl.check("refused packets", later),
            Verdict::Log {
                suppressed: 10_000 - u64::from(FIRST),
                over: later - t0
            }
        );
        assert_eq!(
            rl.check("refused packets", later),
            Verdict::Log {
                suppressed: 0,
                over: Duration::ZERO
            }
        );
    }

    #[test]
    fn counts_left_at_the_end_are_handed_out_once() {
        let mut rl = RateLimit::new();
        let t0 = Instant::now();
        for _ in 0..(FIRST + 7) {
            rl.check("refused packets", t0);
        }
        assert_eq!(rl.take_suppressed(), [("refused packets", 7)]);
        assert_eq!(rl.take_suppressed(), []);
    }

    #[test]
    fn the_source_is_named_only_for_a_count_line() {
        let mut rl = RateLimit::new();
        let t0 = Instant::now();
        let (mut named, mut logged) = (0, 0);
        let mut warn_at = |now: Instant| {
            let from = || {
                named += 1;
                "connection 4".to_string()
            };
            rl.warn_at("refused packets", now, from, || logged += 1);
        };
        for _ in 0..(FIRST + 5) {
            warn_at(t0);
        }
        warn_at(t0 + INTERVAL);
        // Dropped lines format nothing; the count line names its source.
        assert_eq!((named, logged), (1, FIRST + 1));
    }
}

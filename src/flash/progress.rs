//! Progress of flash work as events: the library emits them, the binary
//! renders them (log lines, a progress bar, a KB/s summary). Nothing here
//! formats for people.

use std::sync::Arc;
use std::time::Duration;

/// Which flash an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    /// The MCU's own flash, programmed by probe-rs's flash algorithm.
    Internal,
    /// The SPI NOR behind the window, programmed by the stub.
    External,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashEvent {
    /// The external chip answered and was identified.
    Identified {
        jedec_id: [u8; 3],
        name: String,
        size: u32,
    },
    /// A flash operation starts: `erase_bytes` will be erased and
    /// `program_bytes` programmed (the latter sizes progress bars).
    Started {
        flash: FlashKind,
        erase_bytes: u64,
        program_bytes: u64,
    },
    /// Erasing `size` bytes at `address` (window or internal address).
    Erasing {
        flash: FlashKind,
        address: u32,
        size: u32,
    },
    /// `bytes` more bytes programmed, ending before `address + bytes`.
    Programmed {
        flash: FlashKind,
        address: u32,
        bytes: u32,
    },
    /// A long operation (chip erase) is still running.
    Waiting {
        flash: FlashKind,
        what: &'static str,
        elapsed: Duration,
    },
    /// `bytes` of the request already held the image (checked on the
    /// target) and are neither erased nor programmed.
    Skipped { flash: FlashKind, bytes: u64 },
    /// `bytes` of the programmed bytes crossed the link compressed; `sent`
    /// is what the whole operation sent (records and payloads).
    Compressed {
        flash: FlashKind,
        bytes: u64,
        sent: u64,
    },
    /// The operation finished.
    Done {
        flash: FlashKind,
        erased: u64,
        programmed: u64,
        /// Bytes left alone because they already held the image.
        skipped: u64,
        elapsed: Duration,
        /// The same span on the board's own clock, when the session has one
        /// (the virtual board's time: what the user's desk will show);
        /// `None` where host time is the board's (silicon).
        board: Option<Duration>,
    },
}

/// The board's own clock, from the session source: time since some fixed
/// start. Only differences are used.
pub type BoardClock = std::sync::Arc<dyn Fn() -> Duration + Send + Sync>;

/// Where a server or command sends its events; shared with the probe
/// worker thread.
pub type EventSink = Arc<dyn Fn(&FlashEvent) + Send + Sync>;

/// A sink that drops every event.
pub fn no_events() -> EventSink {
    Arc::new(|_| {})
}

//! What both flashes share: the pure planner that turns GDB's `load`
//! requests into erase and program operations ([`plan`]), and the progress
//! events flash work emits ([`progress`]). The I/O lives with each flash:
//! `gdb/flash.rs` (internal flash through probe-rs) and `extflash/` (the
//! window through the SPI stub).

pub mod plan;
pub mod progress;

pub use plan::{Boundaries, EraseGeometry, FlashRequest, PlanError, ERASED};
pub use progress::{EventSink, FlashEvent, FlashKind};

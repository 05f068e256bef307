//! A connection's lifecycle on the target: what happens when GDB connects,
//! and the undoing of everything the connection put into the target when it
//! ends (breakpoints, watchpoints, a half-received `load`), whatever the
//! reason.

use probe_rs::Session;

use super::error::{fatal_only, GdbError, SessionFault};
use super::stop::ExecState;
use super::{base, GdbTarget};
use crate::cortex_m::HALT_TIMEOUT;

impl GdbTarget {
    /// Halt the core for a new connection (GDB expects a stopped target),
    /// then identify the external flash so the memory map GDB asks for next
    /// has the chip's size and erase size. An identification failure (the
    /// application inside its own SPI transaction, say) is logged and the
    /// window advertised with the size known otherwise (board file, an
    /// earlier probe), or left out: the session goes on, and the next
    /// window access probes again. The stub
    /// session identification needed ends at once: a connection that never
    /// touches the window finds the core exactly as it was.
    pub fn on_connect(&mut self) -> Result<(), SessionFault> {
        self.exec = ExecState::Halted;
        let result = self.core().and_then(|mut core| {
            if !core
                .core_halted()
                .map_err(|source| GdbError::Status { source })?
            {
                core.halt(HALT_TIMEOUT)
                    .map_err(|source| GdbError::Halt { source })?;
            }
            Ok(())
        });
        result.or_else(fatal_only)?;
        if let Err(e) = self.identify_ext_flash() {
            if e.is_probe_lost() {
                return fatal_only(e);
            }
            // Nothing is replied here: a warning saying so would be false,
            // and the next window access probes again (or fails by name).
            tracing::info!(
                error = %crate::error::DisplayChain(&e),
                "external flash not identified at connect; the next window access probes again"
            );
            if self.ext.as_ref().is_some_and(|x| x.known_size().is_none()) {
                tracing::warn!(
                    "external flash not identified and its size is unknown (no `size` or \
                     `jedec_id` in the board file, no earlier probe): the memory map leaves \
                     the window out until a window access identifies the chip"
                );
            }
        }
        if let Err(e) = self.end_stub_session() {
            fatal_only(e)?;
        }
        Ok(())
    }

    /// Undo everything this connection put into the target: restore
    /// instructions under software breakpoints, free FPB and DWT
    /// comparators, drop a half-received flash plan. Called when a
    /// connection ends for any reason, so a stale `BKPT` never stays behind.
    pub fn cleanup(&mut self) -> Result<(), SessionFault> {
        self.forget_load();
        if let Err(e) = self.end_stub_session() {
            fatal_only(e)?;
        }
        let sw: Vec<(u32, u16)> = std::mem::take(&mut self.sw_breakpoints)
            .into_iter()
            .collect();
        for (addr, orig) in sw {
            if let Err(e) = base::write_memory(self, addr, &orig.to_le_bytes()) {
                fatal_only(e)?;
            }
        }
        let hw = std::mem::take(&mut self.hw_breakpoints);
        if !hw.is_empty() {
            let result = self.core().and_then(|mut core| {
                for addr in hw.into_keys() {
                    core.clear_hw_breakpoint(addr.into()).map_err(|source| {
                        GdbError::HwBreakpoint {
                            address: addr,
                            source,
                        }
                    })?;
                }
                Ok(())
            });
            result.or_else(fatal_only)?;
        }
        for slot in 0..self.watch_slots.len() {
            if self.watch_slots[slot].is_some() {
                if let Err(e) = self.clear_watch_slot(slot) {
                    fatal_only(e)?;
                }
            }
        }
        Ok(())
    }

    /// Let the core run on (after a detach).
    pub fn resume_free(&mut self) -> Result<(), SessionFault> {
        if let Err(e) = self.end_stub_session() {
            fatal_only(e)?;
        }
        let result = self.core().and_then(|mut core| {
            if core
                .core_halted()
                .map_err(|source| GdbError::Status { source })?
            {
                core.run().map_err(|source| GdbError::Resume { source })?;
            }
            Ok(())
        });
        self.exec = ExecState::Running;
        result.or_else(fatal_only)
    }

    /// Give the session back to the worker.
    pub fn into_session(self) -> Session {
        self.session
    }
}

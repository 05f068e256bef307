//! `monitor` on an observer: `help` here, `control` in `server::observer`
//! (it changes the connection's role, not the target). Every other command
//! is refused before gdbstub (`server::readonly`) with an `E` reply; one
//! that got here would only print the refusal.

use gdbstub::outputln;
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};

use super::{ObserverFault, ObserverTarget};

pub const OBSERVER_HELP: &str = "\
this connection is an observer: another GDB controls the board
  reads: memory (the external-flash window only from the read cache while the core runs),
         registers (unavailable while the core runs), memory map, target description
  refused: continue, step, Ctrl-C, breakpoints, watchpoints, memory and register writes,
           load, monitor commands other than help and control
  control  take control of the board once no other GDB controls it
           (this connection then acts as a controlling GDB)
  help     this text
";

impl MonitorCmd for ObserverTarget {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> Result<(), ObserverFault> {
        let text = String::from_utf8_lossy(cmd);
        if matches!(text.trim(), "help" | "?" | "") {
            outputln!(out, "{}", OBSERVER_HELP.trim_end());
        } else {
            self.warn("refused packets", || {
                tracing::warn!(
                    id = self.id,
                    command = %text.trim(),
                    "observer: monitor command refused"
                )
            });
            outputln!(
                out,
                "monitor {}: refused, this connection only observes",
                text.trim()
            );
        }
        Ok(())
    }
}

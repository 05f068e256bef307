//! `monitor` commands (`qRcmd`): reset, halt, resume, help. Output goes to
//! GDB's console as `O` packets; gdbstub sends the final `OK`.
//!
//! Parsing is pure ([`MonitorCommand::parse`]); execution is in the
//! `MonitorCmd` impl.

use gdbstub::outputln;
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};

use super::{fatal_only, ExecState, GdbError, GdbTarget, SessionFault, RESET_TIMEOUT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorCommand {
    /// Reset the chip and stop at the reset vector (`reset`, `reset halt`).
    ResetHalt,
    /// Reset the chip and let it run (`reset run`).
    ResetRun,
    Halt,
    Resume,
    Help,
}

pub const HELP: &str = "\
extflash-gdb monitor commands:
  reset | reset halt   reset the chip and halt at the reset vector
  reset run            reset the chip and let it run (GDB still thinks it is stopped)
  halt                 halt the core (e.g. after `reset run` or `resume`)
  resume               let the core run without GDB waiting for it
  help                 this text
";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitorParseError {
    #[error("unknown monitor command `{0}`; try `monitor help`")]
    Unknown(String),
    #[error("empty monitor command; try `monitor help`")]
    Empty,
}

impl MonitorCommand {
    pub fn parse(text: &str) -> Result<MonitorCommand, MonitorParseError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        Ok(match words.as_slice() {
            [] => return Err(MonitorParseError::Empty),
            ["reset"] | ["reset", "halt"] => MonitorCommand::ResetHalt,
            ["reset", "run"] => MonitorCommand::ResetRun,
            ["halt"] => MonitorCommand::Halt,
            ["resume"] | ["go"] => MonitorCommand::Resume,
            ["help"] | ["?"] => MonitorCommand::Help,
            _ => return Err(MonitorParseError::Unknown(text.trim().to_string())),
        })
    }
}

impl GdbTarget {
    fn run_monitor(&mut self, cmd: MonitorCommand) -> Result<String, GdbError> {
        let halts = matches!(cmd, MonitorCommand::ResetHalt | MonitorCommand::Halt);
        let mut core = self.core()?;
        let text = match cmd {
            MonitorCommand::ResetHalt => {
                let info = core
                    .reset_and_halt(RESET_TIMEOUT)
                    .map_err(|source| GdbError::Reset { source })?;
                format!("reset; halted at pc {:#010x}", info.pc)
            }
            MonitorCommand::ResetRun => {
                core.reset().map_err(|source| GdbError::Reset { source })?;
                "reset; core running (use `monitor halt` before inspecting it)".to_string()
            }
            MonitorCommand::Halt => {
                let info = core
                    .halt(super::HALT_TIMEOUT)
                    .map_err(|source| GdbError::Halt { source })?;
                format!("halted at pc {:#010x}", info.pc)
            }
            MonitorCommand::Resume => {
                if core
                    .core_halted()
                    .map_err(|source| GdbError::Status { source })?
                {
                    core.run().map_err(|source| GdbError::Resume { source })?;
                }
                "core running (use `monitor halt` or Ctrl-C with `continue`)".to_string()
            }
            MonitorCommand::Help => HELP.trim_end().to_string(),
        };
        drop(core);
        if halts {
            self.exec = ExecState::Halted;
        }
        Ok(text)
    }
}

impl MonitorCmd for GdbTarget {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> Result<(), SessionFault> {
        let text = String::from_utf8_lossy(cmd);
        let parsed = match MonitorCommand::parse(&text) {
            Ok(c) => c,
            Err(e) => {
                outputln!(out, "{e}");
                outputln!(out, "{}", HELP.trim_end());
                return Ok(());
            }
        };
        match self.run_monitor(parsed) {
            Ok(reply) => outputln!(out, "{reply}"),
            Err(e) => {
                outputln!(out, "error: {}", super::DisplayChain(&e));
                fatal_only(e)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_documented_commands() {
        use MonitorCommand::*;
        for (text, want) in [
            ("reset", ResetHalt),
            ("reset halt", ResetHalt),
            ("  reset   halt ", ResetHalt),
            ("reset run", ResetRun),
            ("halt", Halt),
            ("resume", Resume),
            ("help", Help),
        ] {
            assert_eq!(MonitorCommand::parse(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn invalid_commands_explain_what_exists() {
        assert_eq!(
            MonitorCommand::parse("reset now"),
            Err(MonitorParseError::Unknown("reset now".into()))
        );
        assert_eq!(MonitorCommand::parse("   "), Err(MonitorParseError::Empty));
        let msg = MonitorCommand::parse("flash erase")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("monitor help"), "{msg}");
        for cmd in ["reset halt", "reset run", "halt", "resume", "help"] {
            assert!(HELP.contains(cmd), "help lacks {cmd}");
        }
    }
}

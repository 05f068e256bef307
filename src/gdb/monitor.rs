//! `monitor` commands (`qRcmd`): reset, halt, resume, help, and the
//! external flash (`flash info`, `flash erase-all`, `flash unprotect`,
//! `flash compress`).
//! Output goes to
//! GDB's console as `O` packets; gdbstub sends the final `OK`.
//!
//! Parsing is pure ([`MonitorCommand::parse`]); execution is in the
//! `MonitorCmd` impl.

use gdbstub::outputln;
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};

use super::{fatal_only, ExecState, GdbError, GdbTarget, SessionFault};
use crate::cortex_m::{HALT_TIMEOUT, RESET_TIMEOUT};
use crate::error::DisplayChain;
use crate::flash::FlashEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorCommand {
    /// Reset the chip and stop at the reset vector (`reset`, `reset halt`).
    ResetHalt,
    /// Reset the chip and let it run (`reset run`).
    ResetRun,
    Halt,
    Resume,
    Help,
    /// JEDEC ID, SFDP geometry, status registers, protection.
    FlashInfo,
    /// The same as one [`crate::extflash::info::FlashInfo`] record line,
    /// for the command line and scripts (`flash info --record`).
    FlashInfoRecord,
    /// Chip erase of the external flash.
    FlashEraseAll,
    /// Clear the block protection in the volatile status registers.
    FlashUnprotect,
    /// Show (`None`) or set whether a `load` sends compressible pages
    /// compressed.
    FlashCompress(Option<bool>),
    /// `control` (an observer's request to take control): this connection
    /// already has it.
    Control,
}

pub const HELP: &str = "\
extflash-gdb monitor commands:
  reset | reset halt   reset the chip and halt at the reset vector
  reset run            reset the chip and let it run (GDB still thinks it is stopped)
  halt                 halt the core (e.g. after `reset run` or `resume`)
  resume               let the core run without GDB waiting for it
  flash info           external flash: JEDEC ID, geometry, status registers, protection
  flash info --record  the same as one line of key=value fields, for scripts
  flash erase-all      erase the whole external flash (chip erase)
  flash unprotect      clear BP/TB/SEC/CMP in the volatile status registers (until power-off)
  flash compress [on|off]  whether `load` sends compressible pages compressed (default on)
  control              on an observer connection: take control once no GDB controls the board
  help                 this text
";

/// How a failed command's output line starts (after any progress lines):
/// the marker the command line checks, since `qRcmd` always ends in `OK`.
pub const ERROR_LINE: &str = "error: ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitorParseError {
    #[error("unknown monitor command `{0}`; try `monitor help`")]
    Unknown(String),
    #[error("empty monitor command; try `monitor help`")]
    Empty,
    #[error("`flash compress` takes `on` or `off` (or nothing, to show the setting), not `{0}`")]
    CompressArgument(String),
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
            ["flash", "info"] => MonitorCommand::FlashInfo,
            ["flash", "info", "--record"] => MonitorCommand::FlashInfoRecord,
            ["flash", "erase-all"] | ["flash", "mass-erase"] => MonitorCommand::FlashEraseAll,
            ["flash", "unprotect"] => MonitorCommand::FlashUnprotect,
            ["flash", "compress"] => MonitorCommand::FlashCompress(None),
            ["flash", "compress", "on"] => MonitorCommand::FlashCompress(Some(true)),
            ["flash", "compress", "off"] => MonitorCommand::FlashCompress(Some(false)),
            ["flash", "compress", rest @ ..] => {
                return Err(MonitorParseError::CompressArgument(rest.join(" ")))
            }
            ["control"] => MonitorCommand::Control,
            _ => return Err(MonitorParseError::Unknown(text.trim().to_string())),
        })
    }
}

impl GdbTarget {
    /// `flash erase-all`, with each progress line sent to GDB's console as
    /// it happens (an `O` packet flushed per line; gdbstub's final `OK`
    /// follows when the erase is done), so a long chip erase shows signs
    /// of life.
    fn erase_all_to_console(&mut self, out: &mut ConsoleOutput<'_>) -> Result<(), GdbError> {
        self.forget_target_state();
        let events = self.timed_events();
        self.with_ext(|ext, core| {
            ext.erase_all(core, &mut |e| {
                events(&e);
                if let Some(line) = console_line(&e) {
                    outputln!(out, "{line}");
                    out.flush();
                }
            })
        })
    }

    /// The external-flash commands; returns the lines to print.
    fn run_flash_monitor(&mut self, cmd: MonitorCommand) -> Result<Vec<String>, GdbError> {
        let mut lines = Vec::new();
        match cmd {
            MonitorCommand::FlashInfo | MonitorCommand::FlashInfoRecord => {
                self.identify_ext_flash()?;
                let info = self.with_ext(|ext, core| ext.info(core))?;
                lines.push(if cmd == MonitorCommand::FlashInfo {
                    info.to_string()
                } else {
                    info.to_record()
                });
            }
            MonitorCommand::FlashUnprotect => {
                let (before, after) = self.with_ext(|ext, core| ext.unprotect(core))?;
                lines.push(format!(
                    "status before: SR1={:02X} SR2={:02X}; after: SR1={:02X} SR2={:02X} (volatile: \
                     protection returns at power-off)",
                    before.0[0], before.0[1], after.0[0], after.0[1]
                ));
                lines.push(if after.protects_something() {
                    "still protected: the status registers are locked (SRL) or WPS is set".into()
                } else {
                    "external flash unprotected".into()
                });
            }
            MonitorCommand::FlashCompress(set) => {
                let ext = self.ext.as_mut().ok_or(GdbError::ExtFlash(
                    crate::extflash::ExtFlashError::NotConfigured,
                ))?;
                if let Some(on) = set {
                    ext.set_compress(on);
                }
                lines.push(format!(
                    "external flash: load compression {}",
                    if ext.compress() { "on" } else { "off" }
                ));
            }
            _ => unreachable!("not a flash command"),
        }
        Ok(lines)
    }

    fn run_monitor(&mut self, cmd: MonitorCommand) -> Result<String, GdbError> {
        if matches!(
            cmd,
            MonitorCommand::ResetHalt
                | MonitorCommand::ResetRun
                | MonitorCommand::Resume
                | MonitorCommand::Halt
        ) {
            self.forget_target_state();
        }
        if matches!(
            cmd,
            MonitorCommand::FlashInfo
                | MonitorCommand::FlashInfoRecord
                | MonitorCommand::FlashUnprotect
                | MonitorCommand::FlashCompress(_)
        ) {
            return self.run_flash_monitor(cmd).map(|l| l.join("\n"));
        }
        if cmd == MonitorCommand::Control {
            return Ok(
                "this connection already controls the board (`monitor control` is for \
                       an observer connection)"
                    .to_string(),
            );
        }
        if cmd != MonitorCommand::Help {
            self.end_stub_session()?;
            self.run_state_chosen = true;
        }
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
                    .halt(HALT_TIMEOUT)
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
            MonitorCommand::FlashInfo
            | MonitorCommand::FlashInfoRecord
            | MonitorCommand::FlashEraseAll
            | MonitorCommand::FlashUnprotect
            | MonitorCommand::FlashCompress(_)
            | MonitorCommand::Control => unreachable!("handled before"),
        };
        drop(core);
        if halts {
            self.exec = ExecState::Halted;
            if let Some(hint) = self.lockup_hint() {
                return Ok(format!("{text}\n{hint}"));
            }
        }
        Ok(text)
    }
}

/// What GDB's console shows of a progress event.
fn console_line(e: &FlashEvent) -> Option<String> {
    Some(match e {
        FlashEvent::Erasing { address, size, .. } => {
            format!("erasing {} KiB at {address:#010x}...", size / 1024)
        }
        FlashEvent::Waiting { what, elapsed, .. } => {
            format!("{what}: still running after {} s", elapsed.as_secs())
        }
        FlashEvent::Done {
            erased, elapsed, ..
        } => format!(
            "erased {} KiB in {:.1} s",
            erased / 1024,
            elapsed.as_secs_f64()
        ),
        _ => return None,
    })
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
                super::note_error_text(e.to_string());
                return Ok(());
            }
        };
        let result = if parsed == MonitorCommand::FlashEraseAll {
            self.erase_all_to_console(&mut out).map(|()| None)
        } else {
            self.run_monitor(parsed).map(Some)
        };
        match result {
            Ok(Some(reply)) => outputln!(out, "{reply}"),
            Ok(None) => {}
            Err(e) => {
                outputln!(out, "{ERROR_LINE}{}", DisplayChain(&e));
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
            ("flash info", FlashInfo),
            ("flash info --record", FlashInfoRecord),
            ("flash  erase-all", FlashEraseAll),
            ("flash unprotect", FlashUnprotect),
            ("flash compress", FlashCompress(None)),
            ("flash compress off", FlashCompress(Some(false))),
            ("flash compress  on", FlashCompress(Some(true))),
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
        assert_eq!(
            MonitorCommand::parse("flash compress maybe"),
            Err(MonitorParseError::CompressArgument("maybe".into()))
        );
        assert_eq!(
            MonitorCommand::parse("control"),
            Ok(MonitorCommand::Control)
        );
        let msg = MonitorCommand::parse("flash erase 0")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("monitor help"), "{msg}");
        for cmd in [
            "reset halt",
            "reset run",
            "halt",
            "resume",
            "help",
            "flash info",
            "flash erase-all",
            "flash unprotect",
            "flash compress",
            "control",
        ] {
            assert!(HELP.contains(cmd), "help lacks {cmd}");
        }
    }
}

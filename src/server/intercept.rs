//! Packets the server answers itself before gdbstub sees them (`k`,
//! `qCRC`), for the controlling connection.

use crate::gdb::{GdbTarget, SessionFault};
use crate::ratelimit::RateLimit;

/// Packets the server answers itself, before gdbstub.
///
/// `qCRC:addr,len`: gdbstub has no handler and would parse it as `qC` with
/// trailing junk (a protocol error that drops the connection). We compute
/// the CRC ([`GdbTarget::qcrc`]: the window on the target through the stub,
/// the rest from memory read through the probe) and reply `C<crc32>`, or
/// `E xx` with the reason in the log.
///
/// `k`: gdbstub answers `OK` in extended mode, but the reply to `k` is a
/// stop reply saying the process ended (GDB manual, `k`; LLDB's `process
/// kill` and its quit wait for `X`/`W`). The core is halted (the board
/// cannot be killed) and the reply is `X09` (killed by SIGKILL). GDB uses
/// `vKill` in extended mode, which keeps its `OK`.
pub(super) fn intercept(
    target: &mut GdbTarget,
    payload: &[u8],
    log: &mut RateLimit,
    id: u64,
) -> Result<Option<Vec<u8>>, SessionFault> {
    if payload == b"k" {
        return Ok(Some(match target.kill_halt() {
            Ok(()) => {
                tracing::info!("killed by the client (`k`): core halted");
                b"X09".to_vec()
            }
            Err(e) => {
                let errno = e.errno();
                match crate::gdb::to_target_error(e) {
                    gdbstub::target::TargetError::Fatal(f) => return Err(f),
                    _ => format!("E{errno:02x}").into_bytes(),
                }
            }
        }));
    }
    let Some(args) = payload.strip_prefix(b"qCRC:") else {
        return Ok(None);
    };
    let from = format!("connection {id}");
    let Some((addr, len)) = crate::gdb::crc::parse_qcrc(args) else {
        log.warn(
            "failed qCRCs",
            &from,
            || tracing::warn!(id, packet = %String::from_utf8_lossy(payload), "malformed qCRC"),
        );
        crate::gdb::note_error_text(format!(
            "malformed qCRC: {}",
            String::from_utf8_lossy(payload)
        ));
        return Ok(Some(b"E01".to_vec()));
    };
    Ok(Some(match target.qcrc(addr, len) {
        Ok(crc) => format!("C{crc:08x}").into_bytes(),
        Err(e) => {
            let text = format!(
                "qCRC of {len:#x} bytes at {addr:#010x} failed: {}",
                crate::error::DisplayChain(&e)
            );
            log.warn("failed qCRCs", &from, || tracing::warn!(id, "{text}"));
            crate::gdb::note_error_text(text);
            format!("E{:02x}", e.errno()).into_bytes()
        }
    }))
}

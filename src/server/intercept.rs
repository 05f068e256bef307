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
    // Every idle packet passes here: the source's name is made only for a
    // failure's count line.
    Ok(qcrc(
        payload,
        id,
        |addr, len| target.qcrc(addr, len),
        |e| e.errno(),
        &mut |warn| log.warn("failed qCRCs", || format!("connection {id}"), warn),
    ))
}

/// `qCRC:addr,len`, for the controller and observers alike: `None` when
/// `payload` is another packet, else `C<crc32>` from `crc`, or `E xx` with
/// the reason logged (through `warn`, the caller's rate limit) and kept as
/// the packet's error text. The CRC is GDB's (`crc::parse_qcrc` for the
/// arguments).
pub(super) fn qcrc<E: std::error::Error + 'static>(
    payload: &[u8],
    id: u64,
    crc: impl FnOnce(u32, u32) -> Result<u32, E>,
    errno: impl FnOnce(&E) -> u8,
    warn: &mut dyn FnMut(&mut dyn FnMut()),
) -> Option<Vec<u8>> {
    let args = payload.strip_prefix(b"qCRC:")?;
    let Some((addr, len)) = crate::gdb::crc::parse_qcrc(args) else {
        warn(
            &mut || tracing::warn!(id, packet = %String::from_utf8_lossy(payload), "malformed qCRC"),
        );
        crate::gdb::note_error_text(format!(
            "malformed qCRC: {}",
            String::from_utf8_lossy(payload)
        ));
        return Some(b"E01".to_vec());
    };
    Some(match crc(addr, len) {
        Ok(crc) => format!("C{crc:08x}").into_bytes(),
        Err(e) => {
            let text = format!(
                "qCRC of {len:#x} bytes at {addr:#010x} failed: {}",
                crate::error::DisplayChain(&e)
            );
            warn(&mut || tracing::warn!(id, "{text}"));
            crate::gdb::note_error_text(text);
            format!("E{:02x}", errno(&e)).into_bytes()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("window read failed")]
    struct Failed;

    fn run(payload: &[u8], crc: Result<u32, Failed>) -> (Option<Vec<u8>>, u32, Option<String>) {
        crate::gdb::take_error_text();
        let mut warnings = 0;
        let reply = qcrc(payload, 1, |_, _| crc, |_| 0x05, &mut |_| warnings += 1);
        (reply, warnings, crate::gdb::take_error_text())
    }

    #[test]
    fn qcrc_answers_logs_and_explains_failures() {
        let (reply, warnings, text) = run(b"qC", Ok(0));
        assert_eq!((reply, warnings, text), (None, 0, None));
        let (reply, warnings, _) = run(b"qCRC:90000000,4", Ok(0xDEAD_BEEF));
        assert_eq!((reply.as_deref(), warnings), (Some(&b"Cdeadbeef"[..]), 0));
        let (reply, warnings, text) = run(b"qCRC:zz", Ok(0));
        assert_eq!((reply.as_deref(), warnings), (Some(&b"E01"[..]), 1));
        assert!(text.unwrap().contains("malformed qCRC"));
        let (reply, warnings, text) = run(b"qCRC:90000000,4", Err(Failed));
        assert_eq!((reply.as_deref(), warnings), (Some(&b"E05"[..]), 1));
        let text = text.unwrap();
        assert!(
            text.contains("0x90000000") && text.contains("window read failed"),
            "{text}"
        );
    }
}

//! Which packets an observer connection may send: pure, so the table is
//! tested on its own.
//!
//! Anything that would change the target or its run state is refused with
//! an `E` reply before gdbstub sees it: resume and step (`c`, `C`, `s`,
//! `S`, `i`, `I`, `vCont;…`), breakpoints and watchpoints (`Z`, `z`),
//! memory and register writes (`M`, `X`, `G`, `P`), flash programming
//! (`vFlash…`), run, attach, kill and restart (`vRun`, `vAttach`, `vKill`,
//! `k`, `R`, `r`, `A`), reverse execution and the obsolete `B`, and every
//! `monitor` command but `help` (and `control`, which the observer loop
//! handles before this table: it changes the connection's role, not the
//! target). `0x03` (Ctrl-C) is not a packet: the
//! observer loop drops it. Queries (`q…`, `vCont?`, `vMustReplyEmpty`),
//! reads (`g`, `p`, `m`, `x`), thread selection, `?` and `D` (an
//! observer's detach ends only its own connection) pass.

/// What the refused packet would have done, for the log and the console.
pub fn refusal(payload: &[u8]) -> Option<&'static str> {
    const V_PACKETS: [(&[u8], &str); 5] = [
        (b"vCont?", ""),
        (b"vCont", "resume or step the core"),
        (b"vFlash", "program flash"),
        (b"vRun", "start the program"),
        (b"vAttach", "attach (which halts the core)"),
    ];
    if let Some((_, what)) = V_PACKETS.iter().find(|(p, _)| payload.starts_with(p)) {
        return (!what.is_empty()).then_some(*what);
    }
    if payload.starts_with(b"vKill") {
        return Some("kill the program");
    }
    if let Some(hex) = payload.strip_prefix(b"qRcmd,") {
        return (!monitor_is_read_only(hex)).then_some("run a monitor command");
    }
    match payload.first()? {
        b'c' | b'C' => Some("resume the core"),
        b's' | b'S' | b'i' | b'I' => Some("step the core"),
        b'Z' => Some("insert a breakpoint or watchpoint"),
        b'z' => Some("remove a breakpoint or watchpoint"),
        b'M' | b'X' => Some("write memory"),
        b'G' | b'P' => Some("write registers"),
        b'k' => Some("kill the program"),
        b'R' | b'r' | b'A' => Some("restart the program"),
        b'b' | b'B' => Some("run backwards or set an obsolete breakpoint"),
        _ => None,
    }
}

/// Whether the hex-encoded `monitor` command only reads (`help`).
pub fn monitor_is_read_only(hex: &[u8]) -> bool {
    let Some(text) = unhex(hex) else {
        return false;
    };
    matches!(String::from_utf8_lossy(&text).trim(), "help" | "?" | "")
}

/// The monitor command in a `qRcmd` payload, for messages.
pub fn monitor_text(payload: &[u8]) -> Option<String> {
    let text = unhex(payload.strip_prefix(b"qRcmd,")?)?;
    Some(String::from_utf8_lossy(&text).trim().to_string())
}

fn unhex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcmd(text: &str) -> Vec<u8> {
        let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
        format!("qRcmd,{hex}").into_bytes()
    }

    #[test]
    fn invalid_for_observers_every_packet_that_acts_is_refused() {
        let acting: &[&[u8]] = &[
            b"c",
            b"c08000140",
            b"C05",
            b"s",
            b"S05",
            b"vCont;c",
            b"vCont;s:1",
            b"vCont;t",
            b"Z0,8000140,2",
            b"Z1,8000140,2",
            b"Z2,20000000,4",
            b"z0,8000140,2",
            b"M20000000,4:00000000",
            b"X20000000,0:",
            b"G00",
            b"Pf=00000000",
            b"vFlashErase:08000000,4000",
            b"vFlashWrite:08000000:\x01",
            b"vFlashDone",
            b"vRun;",
            b"vAttach;1",
            b"vKill;1",
            b"k",
            b"R00",
            b"r",
            b"bc",
            b"bs",
        ];
        for p in acting {
            assert!(
                refusal(p).is_some(),
                "{:?} must be refused",
                String::from_utf8_lossy(p)
            );
        }
        for cmd in [
            "reset halt",
            "halt",
            "resume",
            "reset run",
            "flash erase-all",
            "flash unprotect",
            "flash info",
        ] {
            assert_eq!(refusal(&rcmd(cmd)), Some("run a monitor command"), "{cmd}");
        }
        assert!(
            refusal(b"qRcmd,zz").is_some(),
            "undecodable monitor command"
        );
    }

    #[test]
    fn valid_for_observers_queries_and_reads_pass() {
        let reading: &[&[u8]] = &[
            b"?",
            b"g",
            b"pf",
            b"m20000000,4",
            b"x20000000,4",
            b"qSupported:multiprocess+;swbreak+",
            b"QStartNoAckMode",
            b"qXfer:features:read:target.xml:0,ffb",
            b"qXfer:memory-map:read::0,ffb",
            b"qCRC:8000000,100",
            b"qAttached",
            b"qfThreadInfo",
            b"qC",
            b"Hg0",
            b"Hc-1",
            b"T1",
            b"vCont?",
            b"vMustReplyEmpty",
            b"D",
            b"!",
        ];
        for p in reading {
            assert_eq!(refusal(p), None, "{:?}", String::from_utf8_lossy(p));
        }
        assert_eq!(refusal(&rcmd("help")), None);
        assert_eq!(refusal(&rcmd("  help ")), None);
        assert_eq!(
            monitor_text(&rcmd(" reset halt ")),
            Some("reset halt".into())
        );
    }
}

//! "Nothing lies, nothing is disturbed" (issue 17) through the real
//! `gdb-multiarch`: window reads while the core runs never take the SPI
//! from the application nor halt it, and `load` leaves every core register
//! as it was.

use crate::support::elf::{self, firmware_assets_elf, FIRMWARE, FIRMWARE_ASSETS};
use crate::support::server::{block, gdb_assets, SimServer};

/// The `= N` values GDB printed after each `echo TAG\n`, in order.
fn values_after(out: &str, tag: &str) -> Vec<u32> {
    let mut v = Vec::new();
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        if l.trim() == tag {
            let next = lines.next().unwrap_or_default();
            let (_, value) = next
                .split_once(" = ")
                .unwrap_or_else(|| panic!("no value after {tag}: {next:?}\n{out}"));
            v.push(value.trim().parse().expect("decimal value"));
        }
    }
    v
}

/// After `monitor resume`, with the application running an SPI transaction
/// every tick (SPI_PERIOD = 1): short window reads (the host-driven path),
/// long ones (the stub path) and a `compare-sections` (qCRC) either give
/// the ELF's bytes or an error; the application sees no SPI error and no
/// wrong JEDEC ID, and the core keeps running throughout (TICKS advances
/// across the reads, which a halt would stop).
#[test]
fn window_reads_while_the_core_runs_never_take_the_spi_or_halt_the_core() {
    let s = SimServer::start(&[]);
    let (font_addr, font) = elf::section(&firmware_assets_elf(), ".extflash.font");
    let (table_addr, table) = elf::section(&firmware_assets_elf(), ".extflash.table");
    let short: Vec<u32> = (0..40).map(|i| font_addr + 16 + 24 * i).collect();
    let long: Vec<u32> = (0..4).map(|i| table_addr + 0x100 + 0x200 * i).collect();
    let mut c: Vec<String> = [
        "set language c",
        "monitor reset halt",
        "load",
        "monitor reset halt",
        "break assets_checked",
        "continue",
        "delete",
        // Read while halted: from the chip, and cached until the resume.
        "x/8xb 0x90000003",
        "set var *(unsigned int *)0x20000004 = 1",
        "echo \\nERRORS\\n",
        "print *(unsigned int *)0x2000005c",
        "echo \\nMISMATCHES\\n",
        "print *(unsigned int *)0x20000050",
        "monitor resume",
        "echo \\nTICKS\\n",
        "print *(unsigned int *)0x20000068",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for a in &short {
        c.push(format!("x/8xb {a:#x}"));
    }
    for a in &long {
        c.push(format!("x/64xb {a:#x}"));
    }
    c.push("compare-sections .extflash.font".into());
    for tail in [
        "echo \\nTICKS\\n",
        "print *(unsigned int *)0x20000068",
        "x/8xb 0x90000003",
        "echo \\nTICKS\\n",
        "print *(unsigned int *)0x20000068",
        "monitor halt",
        "echo \\nERRORS\\n",
        "print *(unsigned int *)0x2000005c",
        "echo \\nMISMATCHES\\n",
        "print *(unsigned int *)0x20000050",
        "echo \\nROUNDS\\n",
        "print *(unsigned int *)0x20000060",
        // Halted again, outside a transaction: the window reads as usual.
        "set var *(unsigned int *)0x20000004 = 0",
        "break tick",
        "continue",
        "x/8xb 0x90000803",
    ] {
        c.push(tail.into());
    }
    let cmds: Vec<&str> = c.iter().map(String::as_str).collect();
    let out = gdb_assets(&s.addr, &cmds);

    let expect = |addr: u32, n: usize, base: u32, bytes: &[u8]| {
        let off = (addr - base) as usize;
        bytes[off..off + n]
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect::<Vec<_>>()
    };
    // Every byte GDB printed for a window address is the ELF's.
    let mut refused = 0;
    for (addrs, n, base, bytes) in [
        (&short, 8, font_addr, &font),
        (&long, 64, table_addr, &table),
    ] {
        for &a in addrs.iter() {
            let want = expect(a, n, base, bytes);
            let printed: Vec<String> = out
                .lines()
                .filter_map(|l| {
                    let (head, rest) = l.split_once(':')?;
                    let at = u32::from_str_radix(
                        head.split_whitespace().next()?.strip_prefix("0x")?,
                        16,
                    )
                    .ok()?;
                    (a..a + n as u32).contains(&at).then(|| {
                        rest.split_whitespace()
                            .filter(|w| w.len() == 4 && w.starts_with("0x"))
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                })
                .flatten()
                .collect();
            if printed.is_empty() {
                assert!(
                    out.contains(&format!("Cannot access memory at address {a:#x}")),
                    "{a:#x}: neither bytes nor an error:\n{out}"
                );
                refused += 1;
            } else {
                assert_eq!(
                    printed,
                    want[..printed.len()],
                    "wrong bytes at {a:#x}:\n{out}"
                );
            }
        }
    }
    // Nothing was cached while the core ran: every read was refused.
    assert_eq!(refused, short.len() + long.len(), "{out}");
    assert!(!out.contains(": matched."), "qCRC while running:\n{out}");

    let ticks = values_after(&out, "TICKS");
    assert_eq!(ticks.len(), 3, "{out}");
    assert!(
        ticks[0] < ticks[1] && ticks[1] < ticks[2],
        "the core stopped during the window reads: TICKS {ticks:?}\n{out}"
    );
    let errors = values_after(&out, "ERRORS");
    let mismatches = values_after(&out, "MISMATCHES");
    assert_eq!(errors, [0, 0], "application SPI errors:\n{out}");
    assert_eq!(mismatches, [0, 0], "application ID mismatches:\n{out}");
    assert!(values_after(&out, "ROUNDS")[0] > 0, "{out}");
    let (_, font) = elf::section(&firmware_assets_elf(), ".extflash.font");
    let want: Vec<String> = font[0x800..0x808]
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect();
    assert!(
        out.lines()
            .any(|l| l.starts_with("0x90000803") && l.trim_end().ends_with(&want.join("\t"))),
        "window after `monitor halt`:\n{out}"
    );
}

const REGS: &str = "info all-registers";

/// `info all-registers` without the PC (which GDB sets after `load`).
fn regs_but_pc(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with("pc ") && !l.trim().is_empty())
        .collect()
}

/// Internal-only, window-only and mixed `load`s, each changing what it
/// programs: with GDB's register cache flushed after each, every register
/// (core, FPU, MSP/PSP, the special registers) reads as before the first,
/// except the PC GDB sets to the entry point.
#[test]
fn load_leaves_every_core_register_as_it_was() {
    let s = SimServer::start(&[]);
    let window_elf = std::env::temp_dir().join(format!("i17-window-{}.elf", std::process::id()));
    let data: Vec<u8> = (0..0x1800u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&window_elf, elf::data_elf(&[(0x9003_0000, &data)])).unwrap();
    let load_window = format!("load {}", window_elf.display());
    let load_internal = format!("load {FIRMWARE}");
    let load_mixed = format!("load {FIRMWARE_ASSETS}");
    let mut c: Vec<&str> = vec![
        "monitor reset halt",
        "load",
        "break assets_checked",
        "continue",
        "delete",
    ];
    // Values no reset and no flash algorithm would leave behind.
    let sets = [
        "set $r0 = 0x10101010",
        "set $r1 = 0x11111111",
        "set $r2 = 0x12121212",
        "set $r3 = 0x13131313",
        "set $r4 = 0x14141414",
        "set $r5 = 0x15151515",
        "set $r6 = 0x16161616",
        "set $r7 = 0x17171717",
        "set $r8 = 0x18181818",
        "set $r9 = 0x19191919",
        "set $r10 = 0x1a1a1a1a",
        "set $r11 = 0x1b1b1b1b",
        "set $r12 = 0x1c1c1c1c",
        "set $lr = 0x0800abcd",
        "set $psp = 0x2000a5a0",
        "set $basepri = 0x40",
        "set $d3 = 1.25",
        "set $d15 = -3.5",
        "set $fpscr = 0x03000000",
        "set $xpsr = 0x21000000",
    ];
    c.extend(sets);
    c.extend([
        "maintenance flush register-cache",
        "echo BEFORE\\n",
        REGS,
        "echo BEFORE-END\\n",
    ]);
    for (tag, load) in [
        ("INTERNAL", load_internal.as_str()),
        ("WINDOW", load_window.as_str()),
        ("MIXED", load_mixed.as_str()),
    ] {
        c.push(load);
        c.push("maintenance flush register-cache");
        c.push(match tag {
            "INTERNAL" => "echo INTERNAL\\n",
            "WINDOW" => "echo WINDOW\\n",
            _ => "echo MIXED\\n",
        });
        c.push(REGS);
        c.push(match tag {
            "INTERNAL" => "echo INTERNAL-END\\n",
            "WINDOW" => "echo WINDOW-END\\n",
            _ => "echo MIXED-END\\n",
        });
    }
    let out = gdb_assets(&s.addr, &c);
    std::fs::remove_file(&window_elf).ok();
    for section in ["Loading section .s0", "Loading section .extflash.table"] {
        assert!(out.contains(section), "{section}:\n{out}");
    }
    let before = regs_but_pc(block(&out, "BEFORE\n", "BEFORE-END"));
    assert!(
        before
            .iter()
            .any(|l| l.starts_with("r9 ") && l.contains("0x19191919")),
        "{out}"
    );
    assert!(before.iter().any(|l| l.starts_with("psp ")), "{out}");
    assert!(before.iter().any(|l| l.starts_with("d15 ")), "{out}");
    for tag in ["INTERNAL", "WINDOW", "MIXED"] {
        let after = regs_but_pc(block(&out, &format!("{tag}\n"), &format!("{tag}-END")));
        assert_eq!(before, after, "registers after the {tag} load:\n{out}");
    }
}

/// A board file that names neither the chip's size nor its JEDEC ID: only
/// a probe can tell the window's size.
fn anonymous_board() -> std::path::PathBuf {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/memory-maps/stm32f407ve-w25q64jv.toml"
    ))
    .unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("jedec_id"))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = std::env::temp_dir().join(format!("i17-anonymous-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// A connection made while the application is inside its own SPI
/// transaction cannot probe the chip: its memory map still shows the
/// 8 MiB an earlier connection probed (the board file says nothing), not
/// an invented 16 MiB, and once the transaction is over a window read
/// probes again and works up to the chip's last byte.
#[test]
fn memory_map_keeps_the_probed_size_when_the_app_holds_the_chip_at_connect() {
    let board = anonymous_board();
    let s = SimServer::start(&["--board", board.to_str().unwrap()]);
    let first = gdb_assets(
        &s.addr,
        &[
            "set language c",
            "monitor reset halt",
            "load",
            "monitor reset halt",
            "info mem",
            "break spi_xfer if *(unsigned int *)0x20000054 == 1",
            "continue",
            "echo \\nIN\\n",
            "print *(unsigned int *)0x20000054",
            "disconnect",
        ],
    );
    assert_eq!(values_after(&first, "IN"), [1], "{first}");
    let second = gdb_assets(
        &s.addr,
        &[
            "set language c",
            "echo \\nIN\\n",
            "print *(unsigned int *)0x20000054",
            "info mem",
            "delete",
            "break tick",
            "continue",
            "echo \\nIN\\n",
            "print *(unsigned int *)0x20000054",
            "x/4xb 0x907ffffc",
        ],
    );
    std::fs::remove_file(&board).ok();
    assert_eq!(values_after(&second, "IN"), [1, 0], "{second}");
    let window_line = |out: &str| {
        out.lines()
            .find(|l| l.contains("0x90000000") && l.contains("flash"))
            .map(str::to_string)
    };
    for (which, out) in [("first", &first), ("second", &second)] {
        let line =
            window_line(out).unwrap_or_else(|| panic!("{which}: no window in the map:\n{out}"));
        assert!(
            line.contains("0x90800000") && !line.contains("0x91000000"),
            "{which}: window {line:?}\n{out}"
        );
    }
    assert!(
        second.lines().any(
            |l| l.starts_with("0x907ffffc") && l.trim_end().ends_with("0xff\t0xff\t0xff\t0xff")
        ),
        "the window's last bytes after the transaction:\n{second}"
    );
}

/// `serve --help` says what further connections get (observers), and the
/// top-level help names `erase --chip-erase`, the flag that exists.
#[test]
fn help_texts_name_observers_and_the_chip_erase_flag() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
            .args(args)
            .output()
            .expect("run extflash-gdb");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let serve = help(&["serve", "--help"]);
    assert!(serve.contains("observers"), "{serve}");
    assert!(!serve.contains("closed at once"), "{serve}");
    let top = help(&["--help"]);
    let erase = top
        .lines()
        .find(|l| l.trim_start().starts_with("erase"))
        .unwrap_or_else(|| panic!("{top}"));
    assert!(erase.contains("--chip-erase"), "{erase}");
    let erase_help = help(&["erase", "--help"]);
    assert!(erase_help.contains("--chip-erase"), "{erase_help}");
}

/// With no `RUST_LOG`, `serve --sim` logs one summary line of the virtual
/// board per connection when it ends (virtual time, round trips, SPI
/// bytes, chip busy time).
#[test]
fn serve_sim_shows_one_board_summary_line_per_connection_by_default() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::Duration;
    let mut child = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
        .args(["serve", "--sim", "--port", "0"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn extflash-gdb");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut summaries = Vec::new();
    for n in 0..2 {
        let mut c = crate::support::rsp::RspClient::connect(&addr).unwrap();
        assert!(c.ask("?").unwrap().starts_with('T'));
        assert_eq!(c.ask("m20000000,4").unwrap().len(), 8);
        drop(c);
        // Each connection's end: its line (bounded wait, no sleeps).
        loop {
            let l = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no summary for connection {n}: {summaries:?}"));
            if l.contains("GDB connection ended") {
                summaries.push(l);
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    for s in &summaries {
        for part in ["virtual time", "round trips", "SPI bytes", "chip busy"] {
            assert!(s.contains(part), "{part}: {s}");
        }
    }
}

/// `flash --sim` gives the board's own time next to host time: the virtual
/// board's clock, so the same job on two fresh boards gives the same
/// figure (host time would not), and each flash's summary line has it.
#[test]
fn flash_summary_gives_the_boards_own_time() {
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
            .args(["flash", FIRMWARE_ASSETS, "--sim"])
            .env("RUST_LOG", "off")
            .output()
            .expect("run extflash-gdb flash");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    };
    let board_time = |text: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.starts_with("board time of the flash work: "))
            .unwrap_or_else(|| panic!("no board time:\n{text}"));
        line.to_string()
    };
    let (a, b) = (run(), run());
    assert_eq!(board_time(&a), board_time(&b), "{a}\n{b}");
    let secs: f64 = board_time(&a)
        .trim_start_matches("board time of the flash work: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(secs > 0.0, "{a}");
    for flash in ["internal flash", "external flash"] {
        assert!(
            a.lines().any(|l| l.contains(flash)
                && l.contains("programmed")
                && l.contains("; board time ")),
            "{flash}:\n{a}"
        );
    }
}

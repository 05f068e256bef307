//! The subcommands end to end on the virtual board, through the binary:
//! `flash` (ELF, Intel HEX, binary + --base), `verify`, `read`, `erase`,
//! `info`, `selftest`, `list`, and bad inputs. Consecutive commands share a
//! `--sim-state` directory, so they see the same flash as a real board would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::process::run_with_timeout;
use crate::support::sim::pattern;

const ELF: &str = crate::support::elf::FIRMWARE_ASSETS;
/// One command may take this long (a debug build programming ~90 KB).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// A per-test state directory, removed on drop.
struct State(PathBuf);

impl State {
    fn new(name: &str) -> State {
        let dir = std::env::temp_dir().join(format!("extflash-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        State(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Run `extflash-gdb ARGS --sim --sim-state DIR`.
    fn run(&self, args: &[&str]) -> Out {
        let state = self.path("board");
        std::fs::create_dir_all(&state).unwrap();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--sim", "--sim-state", state.to_str().unwrap()]);
        run(&all)
    }

    /// Snapshot of the virtual board's flash files.
    fn flash_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(self.path("board"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"));
    cmd.args(args).env("RUST_LOG", "warn,sim=error");
    run_command(cmd, &args.join(" "))
}

/// Run `cmd` to completion within [`COMMAND_TIMEOUT`].
fn run_command(cmd: Command, what: &str) -> Out {
    let out = run_with_timeout(cmd, what, COMMAND_TIMEOUT);
    assert!(!out.timed_out(), "{what} timed out");
    Out {
        ok: out.success(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// The PT_LOAD segments with file bytes: (physical address, bytes).
fn elf_segments(path: &str) -> Vec<(u32, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let elf = xmas_elf::ElfFile::new(&bytes).unwrap();
    elf.program_iter()
        .filter(|ph| {
            matches!(ph.get_type(), Ok(xmas_elf::program::Type::Load)) && ph.file_size() > 0
        })
        .map(|ph| {
            let o = ph.offset() as usize;
            (
                ph.physical_addr() as u32,
                bytes[o..o + ph.file_size() as usize].to_vec(),
            )
        })
        .collect()
}

/// Intel HEX of `segments`, written independently of the parser under test.
fn to_ihex(segments: &[(u32, Vec<u8>)]) -> String {
    let mut out = String::new();
    let mut rec = |kind: u8, offset: u16, data: &[u8]| {
        let mut b = vec![data.len() as u8, (offset >> 8) as u8, offset as u8, kind];
        b.extend_from_slice(data);
        let sum = b.iter().fold(0u8, |a, x| a.wrapping_add(*x));
        b.push(sum.wrapping_neg());
        out.push(':');
        for x in b {
            out.push_str(&format!("{x:02X}"));
        }
        out.push('\n');
    };
    for (addr, data) in segments {
        let mut at = *addr;
        let mut upper = None;
        for byte_chunk in data.chunks(16) {
            // 16-byte records never cross a 64 KiB page here only if aligned;
            // split at the page edge to be safe.
            let room = (0x1_0000 - (at & 0xFFFF)) as usize;
            let (a, b) = byte_chunk.split_at(room.min(byte_chunk.len()));
            for part in [a, b] {
                if part.is_empty() {
                    continue;
                }
                if upper != Some(at >> 16) {
                    upper = Some(at >> 16);
                    rec(4, 0, &((at >> 16) as u16).to_be_bytes());
                }
                rec(0, at as u16, part);
                at += part.len() as u32;
            }
        }
    }
    rec(1, 0, &[]);
    out
}

fn read_to_file(state: &State, addr: u32, len: usize) -> Vec<u8> {
    let file = state.path(&format!("read-{addr:x}.bin"));
    let out = state.run(&[
        "read",
        &format!("{addr:#x}"),
        &format!("{len:#x}"),
        "-o",
        file.to_str().unwrap(),
        "--reset-halt",
    ]);
    assert!(out.ok, "read failed: {}", out.stderr);
    std::fs::read(&file).unwrap()
}

#[test]
fn flash_elf_with_window_assets_then_verify_then_read_window_equals_image() {
    let state = State::new("elf");
    let out = state.run(&["flash", ELF, "--verify"]);
    assert!(out.ok, "{}", out.stderr);
    // The summary line with bytes and rate, and verify per section.
    assert!(
        out.stdout.contains("flashed ") && out.stdout.contains("KB/s"),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.matches(": matched").count(), 3, "{}", out.stdout);
    // stderr is not a terminal here: plain progress lines, ending at 100%.
    assert!(
        out.stderr
            .contains("external program: 73500 of 73500 bytes (100%)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("internal flash: erased"),
        "{}",
        out.stderr
    );

    let verify = state.run(&["verify", ELF, "--reset-halt"]);
    assert!(verify.ok, "{}", verify.stderr);
    assert!(
        verify.stdout.contains("all 3 section(s) match"),
        "{}",
        verify.stdout
    );

    for (addr, data) in elf_segments(ELF) {
        assert_eq!(
            read_to_file(&state, addr, data.len()),
            data,
            "segment at {addr:#x}"
        );
    }
}

#[test]
fn flash_intel_hex_with_internal_and_window_data_reads_back() {
    let state = State::new("hex");
    let segments: Vec<(u32, Vec<u8>)> = elf_segments(ELF)
        .into_iter()
        .filter(|(a, d)| *a < 0x9000_0000 || d.len() < 0x2000)
        .collect();
    assert!(segments.iter().any(|(a, _)| *a >= 0x9000_0000));
    let hex = state.path("image.hex");
    std::fs::write(&hex, to_ihex(&segments)).unwrap();
    let out = state.run(&["flash", hex.to_str().unwrap(), "--verify"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(!out.stdout.contains("MISMATCHED"), "{}", out.stdout);
    for (addr, data) in &segments {
        assert_eq!(
            &read_to_file(&state, *addr, data.len()),
            data,
            "at {addr:#x}"
        );
    }
}

#[test]
fn flash_binary_with_base_then_erase_range_reads_ff_and_keeps_the_rest() {
    let state = State::new("bin");
    let data = pattern(7, 0x1800);
    let bin = state.path("image.bin");
    std::fs::write(&bin, &data).unwrap();

    let no_base = state.run(&["flash", bin.to_str().unwrap()]);
    assert!(!no_base.ok);
    assert!(no_base.stderr.contains("--base"), "{}", no_base.stderr);

    let out = state.run(&[
        "flash",
        bin.to_str().unwrap(),
        "--base",
        "0x90010000",
        "--verify",
    ]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(read_to_file(&state, 0x9001_0000, data.len()), data);

    // 0x100 bytes at 0x90010000 round out to the 4 KiB block, no further.
    let erase = state.run(&["erase", "0x90010000", "0x100"]);
    assert!(erase.ok, "{}", erase.stderr);
    assert!(
        erase.stdout.contains("0x90010000..0x90011000"),
        "{}",
        erase.stdout
    );
    let back = read_to_file(&state, 0x9001_0000, data.len());
    assert!(
        back[..0x1000].iter().all(|&b| b == 0xFF),
        "erased block not blank"
    );
    assert_eq!(
        &back[0x1000..],
        &data[0x1000..],
        "erase went past its block"
    );
}

#[test]
fn erase_chip_erase_blanks_the_whole_window() {
    let state = State::new("chip-erase");
    let bin = state.path("x.bin");
    std::fs::write(&bin, pattern(9, 0x100)).unwrap();
    assert!(
        state
            .run(&["flash", bin.to_str().unwrap(), "--base", "0x907fff00"])
            .ok
    );
    let out = state.run(&["erase", "--chip-erase"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("erased 8388608 bytes"),
        "{}",
        out.stdout
    );
    let back = read_to_file(&state, 0x907f_ff00, 0x100);
    assert!(
        back.iter().all(|&b| b == 0xFF),
        "window not blank after chip erase"
    );
}

#[test]
fn flash_with_reset_lets_the_core_run_and_detaches() {
    let state = State::new("reset");
    let bin = state.path("x.bin");
    std::fs::write(&bin, pattern(5, 0x100)).unwrap();
    let out = state.run(&[
        "flash",
        bin.to_str().unwrap(),
        "--base",
        "0x90000000",
        "--reset",
    ]);
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("reset; core running"), "{}", out.stdout);
}

#[test]
fn info_shows_jedec_id_geometry_and_target() {
    let state = State::new("info");
    let out = state.run(&["info"]);
    assert!(out.ok, "{}", out.stderr);
    for want in [
        "JEDEC ID EF 40 17",
        "W25Q64JV",
        "geometry (SFDP): 8192 KiB, 256-byte pages, erase 4 KiB (20h), 32 KiB (52h), 64 KiB (D8h)",
        "window: 0x90000000..0x90800000",
        "SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0)",
        "Cortex-M4",
        "DEV_ID 413",
        "flash size:  512 KiB",
        "protection:",
        "board file:",
    ] {
        assert!(
            out.stdout.contains(want),
            "missing {want:?}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn selftest_with_yes_programs_and_restores_the_scratch_range() {
    let state = State::new("selftest");
    // Something to restore in the scratch block.
    let data = pattern(3, 0x1000);
    let bin = state.path("old.bin");
    std::fs::write(&bin, &data).unwrap();
    assert!(
        state
            .run(&["flash", bin.to_str().unwrap(), "--base", "0x907ff000"])
            .ok
    );

    let dry = state.run(&["selftest"]);
    assert!(dry.ok, "{}", dry.stderr);
    assert!(dry.stdout.contains("pass --yes"), "{}", dry.stdout);

    let out = state.run(&["selftest", "--yes", "--range", "0x907ff000", "4K"]);
    assert!(out.ok, "{}", out.stderr);
    for want in [
        "[ ok ] JEDEC ID: EF 40 17: Winbond W25Q64JV-IQ/JQ on SPI1 (SCK PB3",
        "[ ok ] geometry: 8192 KiB, 256-byte pages (SFDP)",
        "[ ok ] program",
        "[ ok ] restore",
        "[ ok ] application state",
        "speed: program",
        "selftest passed",
    ] {
        assert!(
            out.stdout.contains(want),
            "missing {want:?}:\n{}",
            out.stdout
        );
    }
    assert_eq!(
        read_to_file(&state, 0x907f_f000, data.len()),
        data,
        "not restored"
    );
}

/// The protection comes from the server's `FlashInfo`, not from reading
/// the console text of `monitor flash info`.
#[test]
fn selftest_notes_a_write_protected_chip_from_its_status_registers() {
    let state = State::new("selftest-protected");
    let out = state.run(&["selftest", "--sim-fault", "protected"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("[note] the chip is write-protected"),
        "{}",
        out.stdout
    );
    let clean = State::new("selftest-clean").run(&["selftest"]);
    assert!(clean.ok, "{}", clean.stderr);
    assert!(!clean.stdout.contains("[note]"), "{}", clean.stdout);
}

#[test]
fn selftest_names_the_pins_when_the_chip_is_not_the_expected_one() {
    let state = State::new("selftest-id");
    let board = state.path("board.toml");
    let text = extflash_gdb::board::DEFAULT_BOARD_TOML.replace(
        "jedec_id = [0xEF, 0x40, 0x17]",
        "jedec_id = [0xC2, 0x20, 0x17]",
    );
    assert_ne!(text, extflash_gdb::board::DEFAULT_BOARD_TOML);
    std::fs::write(&board, text).unwrap();
    let out = state.run(&["selftest", "--yes", "--board", board.to_str().unwrap()]);
    assert!(!out.ok, "{}", out.stdout);
    assert!(out.stderr.contains("external flash:"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("hint: no answer on SPI1: check PB3/PB4/PB5/PB0"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("[ ok ] erase"), "{}", out.stdout);
}

#[test]
fn invalid_truncated_elf_fails_clearly_and_changes_nothing() {
    let state = State::new("bad-elf");
    let bytes = std::fs::read(ELF).unwrap();
    let cut = state.path("cut.elf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let before = state.flash_files();
    let out = state.run(&["flash", cut.to_str().unwrap()]);
    assert!(!out.ok);
    assert!(out.stderr.contains("truncated"), "{}", out.stderr);
    assert_eq!(state.flash_files(), before);
}

#[test]
fn invalid_hex_checksum_names_the_line_and_changes_nothing() {
    let state = State::new("bad-hex");
    let mut text = to_ihex(&[(0x9000_0000, vec![1, 2, 3, 4])]);
    // Break the data record's checksum (line 2).
    let line2 = text.lines().nth(1).unwrap().to_string();
    let mut broken = line2.clone();
    let last = broken.pop().unwrap();
    broken.push(if last == '0' { '1' } else { '0' });
    text = text.replace(&line2, &broken);
    let hex = state.path("bad.hex");
    std::fs::write(&hex, text).unwrap();
    let before = state.flash_files();
    let out = state.run(&["flash", hex.to_str().unwrap()]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("bad.hex:2: bad checksum"),
        "{}",
        out.stderr
    );
    assert_eq!(state.flash_files(), before);
}

#[test]
fn invalid_address_outside_every_region_is_refused_before_writing() {
    let state = State::new("bad-addr");
    // Make the board's flash files exist first, so "unchanged" means something.
    let seed = state.path("seed.bin");
    std::fs::write(&seed, [0x55u8; 16]).unwrap();
    assert!(
        state
            .run(&["flash", seed.to_str().unwrap(), "--base", "0x90000000"])
            .ok
    );
    let bin = state.path("x.bin");
    std::fs::write(&bin, [0xAAu8; 64]).unwrap();
    let before = state.flash_files();
    assert!(!before.is_empty());
    let out = state.run(&["flash", bin.to_str().unwrap(), "--base", "0x30000000"]);
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("0x30000000 fall outside every memory region"),
        "{}",
        out.stderr
    );
    assert_eq!(state.flash_files(), before);
}

#[test]
fn list_says_clearly_whether_probes_were_found() {
    let out = run(&["list"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("no probes found") || out.stdout.contains("debug probes were found"),
        "{}",
        out.stdout
    );
}

#[test]
fn raw_binary_must_not_take_base_for_elf() {
    let out = run(&["flash", ELF, "--base", "0x8000000", "--sim"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("--base is only for raw binaries"),
        "{}",
        out.stderr
    );
    let _ = Path::new(ELF);
}

/// `serve` with RUST_LOG unset, as a new user runs it: the lines printed on
/// stdout up to (and including) the one starting with `until`, and the
/// process (killed on drop).
struct Serve {
    child: std::process::Child,
    lines: Vec<String>,
}

impl Serve {
    fn start(state: &State, args: &[&str], until: &str) -> Serve {
        use std::io::BufRead as _;
        let stderr = state.path("serve.err");
        let mut child = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
            .args(["serve", "--sim", "--port", "0"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn serve");
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        // Each read_line returns when the server prints; the demo load is
        // bounded by the command timeout of the load it runs.
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let done = line.starts_with(until);
            lines.push(line.trim_end().to_string());
            if done {
                break;
            }
        }
        Serve { child, lines }
    }

    fn addr(&self) -> &str {
        self.lines[0]
            .strip_prefix("listening on ")
            .expect("first line")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_first_run_says_what_the_board_holds_and_how_to_connect() {
    let state = State::new("serve");
    let serve = Serve::start(&state, &[], "connect GDB with");
    assert!(
        serve.lines[0].starts_with("listening on "),
        "{:?}",
        serve.lines
    );
    assert!(
        serve.lines[1].contains("internal flash blank")
            && serve.lines[1].contains("external flash erased"),
        "{:?}",
        serve.lines
    );
    assert_eq!(
        serve.lines[2],
        format!(
            "connect GDB with: gdb-multiarch -ex 'set remotetimeout 30' -ex 'target extended-remote {}' -ex 'load' your-app.elf",
            serve.addr()
        )
    );
    // Let a connection happen so probe-rs would have logged its chatter.
    let mut c = std::net::TcpStream::connect(serve.addr()).unwrap();
    std::io::Write::write_all(&mut c, b"$?#3f").unwrap();
    let mut b = [0u8; 16];
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = std::io::Read::read(&mut c, &mut b);
    drop(c);
    drop(serve);
    let log = std::fs::read_to_string(state.path("serve.err")).unwrap();
    assert!(
        !log.contains("probe_rs"),
        "probe-rs logs below warn leaked:\n{log}"
    );
}

#[test]
fn serve_demo_loads_firmware_and_assets_so_gdb_breaks_in_main_with_them() {
    let state = State::new("demo");
    let serve = Serve::start(&state, &["--demo"], "connect GDB with");
    let connect = serve.lines.last().unwrap().clone();
    assert!(connect.contains("-ex 'break main'"), "{:?}", serve.lines);
    let elf = connect.rsplit(' ').next().unwrap().to_string();
    let target = format!("target extended-remote {}", serve.addr());
    let mut gdb = Command::new("gdb-multiarch");
    gdb.args([
        "-batch",
        "-nx",
        "-ex",
        "set architecture arm",
        "-ex",
        &target,
    ])
    .args([
        "-ex",
        "break main",
        "-ex",
        "continue",
        "-ex",
        "x/4xb 0x90000003",
        "-ex",
        "detach",
    ])
    .arg(&elf);
    let out = run_command(gdb, "gdb-multiarch");
    let text = out.stdout + &out.stderr;
    assert!(text.contains("Breakpoint 1, firmware::main"), "{text}");
    let (_, font) = elf_segments(ELF)
        .into_iter()
        .find(|(a, _)| *a == 0x9000_0003)
        .unwrap();
    let want = format!(
        "0x{:02x}\t0x{:02x}\t0x{:02x}\t0x{:02x}",
        font[0], font[1], font[2], font[3]
    );
    assert!(text.contains(&want), "asset bytes {want} not in:\n{text}");
    let _ = std::fs::remove_dir_all(Path::new(&elf).parent().unwrap());
}

#[test]
fn monitor_chip_erase_progress_reaches_the_console_before_the_final_ok() {
    // In-process, so the test can look at the virtual chip when the first
    // console line arrives. No host time is measured: the proof is order.
    let sim = extflash_gdb::sim::SimBoard::new(extflash_gdb::sim::SimConfig {
        link: extflash_gdb::sim::LinkProfile::StlinkV2,
        ..extflash_gdb::sim::SimConfig::default()
    })
    .unwrap();
    let data = vec![0x5au8; 0x1000];
    sim.lock().mcu().chip.load(0, &data);
    let handle = sim.clone();
    let addr = crate::support::server::in_process(
        sim,
        extflash_gdb::board::Board::builtin(),
        extflash_gdb::flash::progress::no_events(),
    );
    let mut c = crate::support::rsp::RspClient::connect(&addr).unwrap();
    c.start_no_ack_mode().unwrap();
    let cmd: String = b"flash erase-all"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    c.send_packet(format!("qRcmd,{cmd}").as_bytes()).unwrap();
    let mut console = Vec::new();
    // (chip still holding the data, chip busy) when the first line came.
    let mut at_first: Option<(bool, bool)> = None;
    loop {
        let reply = c.recv_packet().unwrap();
        match reply.strip_prefix(b"O") {
            Some(hex) if reply != b"OK" => {
                if at_first.is_none() {
                    let b = handle.lock();
                    let now = b.now();
                    let chip = &b.mcu().chip;
                    at_first = Some((
                        chip.contents()[..0x1000] == data[..],
                        chip.busy_until(now).is_some(),
                    ));
                }
                let text = crate::support::rsp::unhex(hex);
                console.push(String::from_utf8_lossy(&text).into_owned());
            }
            _ => {
                assert_eq!(reply, b"OK");
                break;
            }
        }
    }
    eprintln!("{console:?}");
    let first = console.first().expect("console output");
    assert!(first.contains("erasing 8192 KiB at 0x90000000"), "{first}");
    // Streamed, not batched: when the first line reached the client the
    // erase had not finished (the chip still held its data, or was busy
    // erasing: 20 s of virtual time, thousands of polls away).
    let (held, busy) = at_first.unwrap();
    assert!(
        held || busy,
        "the first line came after the erase ended: output was held back"
    );
    {
        let b = handle.lock();
        let now = b.now();
        let chip = &b.mcu().chip;
        assert!(chip.busy_until(now).is_none(), "OK before the erase ended");
        assert!(chip.contents()[..0x1000].iter().all(|&x| x == 0xFF));
    }
    assert!(
        console.last().unwrap().contains("erased 8192 KiB"),
        "{console:?}"
    );
}

#[test]
fn selftest_fails_with_the_pin_hint_on_a_board_wired_differently_or_a_missing_chip() {
    let spi3 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/memory-maps/stm32f407ve-w25q64jv-spi3.toml"
    );
    for (name, extra) in [
        ("selftest-wiring", ["--sim-board", spi3]),
        ("selftest-nochip", ["--sim-fault", "no-chip"]),
    ] {
        let state = State::new(name);
        let mut args = vec!["selftest", "--yes"];
        args.extend(extra);
        let out = state.run(&args);
        assert!(!out.ok, "{name}: {}", out.stdout);
        assert!(
            out.stderr
                .contains("hint: no answer on SPI1: check PB3/PB4/PB5/PB0"),
            "{name}: {}",
            out.stderr
        );
        assert!(
            !out.stdout.contains("[ ok ] erase"),
            "{name}: {}",
            out.stdout
        );
    }
}

/// A compressible image goes over the link compressed: `flash` says how
/// many bytes went compressed and how many crossed the link, and the
/// window then holds the image (`--verify` and a read back).
#[test]
fn flash_of_compressible_data_reports_the_compression_and_verifies() {
    let state = State::new("lz");
    let data: Vec<u8> = (0..0x3000u32)
        .flat_map(|i| format!("entry {i:05}, scale 1.0\n").into_bytes())
        .take(0x6000)
        .collect();
    let bin = state.path("table.bin");
    std::fs::write(&bin, &data).unwrap();
    let out = state.run(&[
        "flash",
        bin.to_str().unwrap(),
        "--base",
        "0x90020000",
        "--verify",
    ]);
    assert!(out.ok, "{}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("bytes compressed"))
        .unwrap_or_else(|| panic!("no compression line: {}", out.stderr));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{line}");
    assert_eq!(
        numbers[0],
        data.len() as u64,
        "every page compressed: {line}"
    );
    assert!(numbers[1] < data.len() as u64 / 2, "{line}");
    assert_eq!(read_to_file(&state, 0x9002_0000, data.len()), data);
}

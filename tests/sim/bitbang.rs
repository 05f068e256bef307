//! Debuggers nobody here wrote drive the virtual board through its
//! remote_bitbang socket (`extflash_gdb::sim::bitbang`): OpenOCD's
//! `remote_bitbang` adapter over JTAG (Debian's OpenOCD 0.12 speaks only
//! JTAG on it) and pyOCD's `pyocd-bitbang` probe over SWD. Each reads the
//! debug port's ID, halts, reads memory and programs internal flash with
//! its own flash driver; the board's flash must then hold the ELF. pyOCD
//! also programs the external window with the `.FLM` `extflash-gdb loader`
//! writes, through the user script of `docs/loaders.md`.
//! Both tools are installed by `scripts/test-all.sh`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use extflash_gdb::sim::{bitbang, SimBoard, SimConfig};

use crate::support::elf;
use crate::support::process::run_with_timeout;

/// A board behind a remote_bitbang socket served by a thread of this test
/// process (for the whole process), as `extflash-gdb bitbang` serves it.
fn serve_board() -> (SimBoard, String) {
    let board = SimBoard::new(SimConfig {
        speed_khz: Some(bitbang::DEFAULT_KHZ),
        ..Default::default()
    })
    .expect("virtual board");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    let served = board.clone();
    std::thread::spawn(move || bitbang::serve(listener, served));
    (board, addr)
}

/// Run a tool to completion within `limit`; its stdout and stderr.
fn run(program: &str, args: &[String], limit: Duration) -> String {
    run_in(None, program, args, limit)
}

/// [`run`] in the working directory `dir` (the project folder of pyOCD).
fn run_in(dir: Option<&Path>, program: &str, args: &[String], limit: Duration) -> String {
    let mut cmd = Command::new(program);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.args(args);
    let what = format!("{program} {args:?}");
    let out = run_with_timeout(cmd, &what, limit);
    let text = out.text();
    assert!(
        !out.timed_out(),
        "{program} timed out after {limit:?}:\n{text}"
    );
    text
}

/// Every byte the ELF's loadable segments put in internal flash is there.
fn assert_flash_holds(board: &SimBoard, image: &[u8]) {
    let mut b = board.lock();
    for (addr, data) in elf::load_segments(image) {
        for (i, &want) in data.iter().enumerate() {
            let at = addr + i as u32;
            let got = b.debugger_read(at, 1).expect("flash readable") as u8;
            assert_eq!(got, want, "internal flash at {at:#010x}");
        }
    }
}

#[test]
fn openocd_over_jtag_finds_both_taps_halts_reads_and_programs_internal_flash() {
    let (board, addr) = serve_board();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let c = |s: &str| ["-c".to_string(), s.to_string()];
    let mut args: Vec<String> = Vec::new();
    args.extend(c(&format!(
        "adapter driver remote_bitbang; remote_bitbang host {host}; remote_bitbang port {port}; \
         transport select jtag"
    )));
    args.extend(["-f".into(), "target/stm32f4x.cfg".into()]);
    // The config's reset events set an adapter speed, which remote_bitbang
    // has none of.
    args.extend(c("stm32f4x.cpu configure -event reset-start {}; \
         stm32f4x.cpu configure -event reset-init {}"));
    args.extend(c(&format!(
        "init; halt; echo \"DBGMCU_IDCODE [read_memory 0xE0042000 32 1]\"; \
         echo \"FLASH_SIZE [read_memory 0x1FFF7A22 16 1]\"; \
         program {} verify; reset halt; echo \"RESET_PC [reg pc]\"; \
         echo \"VECTORS [read_memory 0x08000000 32 2]\"; shutdown",
        elf::FIRMWARE
    )));
    let out = run("openocd", &args, Duration::from_secs(240));

    assert!(
        out.contains("tap/device found: 0x4ba00477"),
        "JTAG-DP IDCODE"
    );
    assert!(
        out.contains("tap/device found: 0x06413041"),
        "boundary-scan IDCODE"
    );
    assert!(out.contains("Cortex-M4 r0p1 processor detected"));
    assert!(out.contains("DBGMCU_IDCODE 0x10076413"));
    assert!(out.contains("FLASH_SIZE 0x200"));
    assert!(out.contains("** Verified OK **"), "program + verify");
    let image = elf::firmware_elf();
    let (sp, pc) = {
        let (_, v) = &elf::load_segments(&image)[0];
        let w = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().unwrap());
        (w(0), w(4))
    };
    assert!(out.contains(&format!("VECTORS {sp:#x} {pc:#x}")));
    assert!(
        out.contains(&format!("RESET_PC pc (/32): {:#010x}", pc & !1)),
        "reset halt stops at the reset vector"
    );
    assert!(board.lock().is_halted());
    assert_flash_holds(&board, &image);
}

#[test]
fn pyocd_over_swd_reads_dpidr_halts_reads_and_programs_internal_flash() {
    let (board, addr) = serve_board();
    // pyOCD has no built-in STM32F407 target (its pack is a download); the
    // STM32F412xE has the same flash controller, sector layout (4 x 16 KiB,
    // 64 KiB, 3 x 128 KiB for 512 KiB) and SRAM base.
    let probe = format!("remote_bitbang:{addr}");
    let common = |cmd: &str| -> Vec<String> {
        vec![
            cmd.into(),
            "-t".into(),
            "stm32f412xe".into(),
            "-u".into(),
            probe.clone(),
            "-v".into(),
        ]
    };
    let mut args = common("commander");
    for cmd in ["halt", "read32 0xE0042000", "reg pc"] {
        args.extend(["-c".into(), cmd.into()]);
    }
    let out = run("pyocd", &args, Duration::from_secs(120));
    assert!(out.contains("DP IDR = 0x2ba01477"), "SW-DP DPIDR");
    assert!(out.contains("Successfully halted device"));
    assert!(out.contains("e0042000:  10076413"), "DBGMCU IDCODE");

    let mut args = common("load");
    args.push(elf::FIRMWARE.into());
    let out = run("pyocd", &args, Duration::from_secs(240));
    assert!(
        out.contains("Erased 16384 bytes (1 sector)"),
        "its own erase"
    );
    let image = elf::firmware_elf();
    assert_flash_holds(&board, &image);

    // pyOCD reads back what it programmed.
    let mut args = common("commander");
    for cmd in ["halt", "read32 0x08000000 8", "reset halt", "reg pc"] {
        args.extend(["-c".into(), cmd.into()]);
    }
    let out = run("pyocd", &args, Duration::from_secs(120));
    let (_, v) = &elf::load_segments(&image)[0];
    let w = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().unwrap());
    assert!(
        out.contains(&format!("08000000:  {:08x} {:08x}", w(0), w(4))),
        "vector table read back"
    );
    assert!(
        out.contains(&format!("pc = {:#010x}", w(4) & !1)),
        "reset halt stops at the reset vector (a core register read)"
    );
}

// ---- What these debuggers found in the model, each checked on its own ----

/// A powered-up AHB-AP with CSW = `csw` (through the board's DP/AP model).
fn ap_with_csw(csw: u32) -> SimBoard {
    let board = SimBoard::new(SimConfig::default()).expect("virtual board");
    {
        let mut b = board.lock();
        b.dp_write(0x4, 0x5000_0000).unwrap();
        b.ap_write(0x0, csw).unwrap();
    }
    board
}

#[test]
fn ahb_ap_packed_byte_writes_and_reads_move_four_lanes_per_drw_access() {
    // CSW: byte size, AddrInc = packed (ADIv5 C2.2.7).
    let board = ap_with_csw(0x2300_0020);
    let mut b = board.lock();
    assert_eq!(b.ap_read(0x0).unwrap() & 0x37, 0x20, "packed reads back");
    b.ap_write(0x4, 0x2000_0101).unwrap(); // unaligned start
                                           // Lanes 1, 2, 3 then lane 0 of the next word, as OpenOCD packs them.
    b.ap_write(0xC, 0x4433_2211).unwrap();
    assert_eq!(b.ap_read(0x4).unwrap(), 0x2000_0105, "TAR moved by 4");
    assert_eq!(b.debugger_read(0x2000_0101, 1), Ok(0x22));
    assert_eq!(b.debugger_read(0x2000_0102, 1), Ok(0x33));
    assert_eq!(b.debugger_read(0x2000_0103, 1), Ok(0x44));
    assert_eq!(b.debugger_read(0x2000_0104, 1), Ok(0x11));
    b.ap_write(0x4, 0x2000_0101).unwrap();
    assert_eq!(b.ap_read(0xC).unwrap(), 0x4433_2211);
    // Halfwords: two per access.
    b.ap_write(0x0, 0x2300_0021).unwrap();
    b.ap_write(0x4, 0x2000_0200).unwrap();
    b.ap_write(0xC, 0xBBBB_AAAA).unwrap();
    assert_eq!(b.debugger_read(0x2000_0200, 4), Ok(0xBBBB_AAAA));
}

#[test]
fn ahb_ap_auto_increment_crosses_1k_and_wraps_at_4k_as_a_cortex_m4() {
    // CSW: word size, AddrInc = single.
    let board = ap_with_csw(0x2300_0012);
    let mut b = board.lock();
    b.ap_write(0x4, 0x2000_03FC).unwrap();
    b.ap_write(0xC, 0x1111_1111).unwrap();
    b.ap_write(0xC, 0x2222_2222).unwrap();
    assert_eq!(
        b.debugger_read(0x2000_0400, 4),
        Ok(0x2222_2222),
        "past 1 KiB"
    );
    b.ap_write(0x4, 0x2000_0FFC).unwrap();
    b.ap_write(0xC, 0x3333_3333).unwrap();
    assert_eq!(b.ap_read(0x4).unwrap(), 0x2000_0000, "TAR[11:0] wraps");
}

#[test]
fn reserved_dwt_fpb_and_itm_registers_read_as_zero() {
    let board = SimBoard::new(SimConfig::default()).expect("virtual board");
    let mut b = board.lock();
    // DWT DEVARCH (ARMv8-M only; OpenOCD reads it on every examine).
    assert_eq!(b.debugger_read(0xE000_1FBC, 4), Ok(0));
    assert_eq!(b.debugger_read(0xE000_2F00, 4), Ok(0));
    assert_eq!(b.debugger_read(0xE000_0F00, 4), Ok(0));
    // The component IDs are still there.
    assert_eq!(b.debugger_read(0xE000_1FF0, 4), Ok(0x0D));
}

/// `extflash-gdb bitbang` as a user starts it; killed on drop.
struct BitbangCommand {
    child: std::process::Child,
    addr: String,
}

impl BitbangCommand {
    fn start(extra: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
            .args(["bitbang", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn extflash-gdb bitbang");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("expected `listening on HOST:PORT`, got {line:?}"))
            .to_string();
        Self { child, addr }
    }
}

impl Drop for BitbangCommand {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn bitbang_subcommand_serves_pyocd_and_keeps_its_flash_in_the_state_dir() {
    let dir = std::env::temp_dir().join(format!("extflash-bitbang-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = BitbangCommand::start(&["--sim-state", dir.to_str().unwrap()]);
    let args: Vec<String> = [
        "load",
        "-t",
        "stm32f412xe",
        "-u",
        &format!("remote_bitbang:{}", server.addr),
        elf::FIRMWARE,
    ]
    .map(String::from)
    .to_vec();
    let out = run("pyocd", &args, Duration::from_secs(240));
    assert!(out.contains("programmed"), "pyocd load");
    // The state files are written when a connection ends; a second host
    // connecting is served after the first one's flush.
    let out = run(
        "pyocd",
        &[
            "commander",
            "-t",
            "stm32f412xe",
            "-u",
            &format!("remote_bitbang:{}", server.addr),
            "-c",
            "read32 0x08000000 4",
        ]
        .map(String::from),
        Duration::from_secs(120),
    );
    assert!(out.contains("08000000:"), "second connection served");
    let flash = std::fs::read(dir.join(extflash_gdb::sim::INTERNAL_FLASH_FILE)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    for (addr, data) in elf::load_segments(&elf::firmware_elf()) {
        let at = (addr - 0x0800_0000) as usize;
        assert_eq!(
            &flash[at..at + data.len()],
            &data[..],
            "state file at {addr:#x}"
        );
    }
}

#[test]
fn bkpt_inside_an_it_block_halts_with_the_it_state_kept() {
    use probe_rs::{MemoryInterface, RegisterId};
    // OpenOCD steps over RAM code with a software breakpoint at the next
    // instruction: here the one inside `it cs`, whose condition is false.
    let board = SimBoard::new(SimConfig::default()).expect("virtual board");
    let mut session = crate::support::sim::attach(&board);
    let mut core = session.core(0).unwrap();
    core.halt(Duration::from_secs(1)).unwrap();
    // cmp r7, r1; it cs; BKPT over the first half of addcs.w r7, r0, #8; bkpt
    let code = [0x8f, 0x42, 0x28, 0xbf, 0x00, 0xbe, 0x08, 0x07, 0x00, 0xbe];
    core.write_8(0x2000_0000, &code).unwrap();
    core.write_core_reg(RegisterId(0), 0x1000u32).unwrap();
    core.write_core_reg(RegisterId(1), 0x2000u32).unwrap();
    core.write_core_reg(RegisterId(7), 0x1500u32).unwrap();
    let pc_id = core.program_counter().id;
    core.write_core_reg(pc_id, 0x2000_0000u32).unwrap();
    core.run().unwrap();
    crate::support::sim::wait_halted(&mut core);
    let pc: u32 = core.read_core_reg(pc_id).unwrap();
    let xpsr: u32 = core.read_core_reg(RegisterId(16)).unwrap();
    assert_eq!(pc, 0x2000_0004, "halted on the BKPT");
    assert_ne!(xpsr & 0x0600_FC00, 0, "IT state kept: {xpsr:#010x}");
    // The debugger puts the instruction back and steps it.
    core.write_8(0x2000_0004, &[0x00, 0xf1]).unwrap();
    core.step().unwrap();
    let r7: u32 = core.read_core_reg(RegisterId(7)).unwrap();
    assert_eq!(r7, 0x1500, "addcs skipped: carry clear");
    assert_eq!(core.read_core_reg::<u32>(pc_id).unwrap(), 0x2000_0008);
}

#[test]
fn socket_answers_each_read_closes_on_q_and_on_an_unknown_character_then_serves_the_next_host() {
    use std::io::{Read as _, Write as _};
    let (_board, addr) = serve_board();
    let exchange = |input: &[u8]| -> Vec<u8> {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(input).unwrap();
        let mut out = Vec::new();
        // The server closes the connection: read to EOF (bounded).
        s.read_to_end(&mut out)
            .expect("server closes the connection");
        out
    };
    // JTAG: Test-Logic-Reset, Shift-DR, then 32 bits of the JTAG-DP IDCODE
    // (TDO read with TCK low, before each rising edge).
    let mut input = b"B".to_vec();
    for tms in [1, 1, 1, 1, 1, 0, 1, 0, 0] {
        input.extend(if tms == 1 { b"26" } else { b"04" });
    }
    for _ in 0..32 {
        input.extend(b"0R4");
    }
    input.extend(b"bQ0000R");
    let out = exchange(&input);
    assert_eq!(out.len(), 32, "one answer per read, none after Q");
    let id = out
        .iter()
        .enumerate()
        .fold(0u32, |v, (i, &c)| v | ((c == b'1') as u32) << i);
    assert_eq!(id, extflash_gdb::sim::swd_wire::JTAG_DP_IDCODE);

    // An unknown character ends the connection after the answers before it.
    assert_eq!(exchange(b"RRxR"), b"00");
    // And the socket still serves the next host.
    assert_eq!(exchange(b"RQ"), b"0");
}

// ---- pyOCD programs the window with the FLM `extflash-gdb loader` writes ----

/// The pyOCD user script of `docs/loaders.md` (its first `python` block
/// after "**pyOCD**"), so the test runs what the document tells users.
fn documented_pyocd_script() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/loaders.md"))
        .expect("docs/loaders.md");
    let recipe = &doc[doc
        .find("**pyOCD**")
        .expect("a pyOCD recipe in docs/loaders.md")..];
    let start = recipe.find("```python\n").expect("its python block") + "```python\n".len();
    let len = recipe[start..].find("```").expect("the block's end");
    recipe[start..start + len].to_string()
}

/// Intel HEX (I8HEX data records, I32HEX extended linear address records)
/// of `chunks`.
fn intel_hex(chunks: &[(u32, &[u8])]) -> String {
    fn record(kind: u8, offset: u16, data: &[u8]) -> String {
        let mut bytes = vec![data.len() as u8, (offset >> 8) as u8, offset as u8, kind];
        bytes.extend_from_slice(data);
        let sum = bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        bytes.push(sum.wrapping_neg());
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        format!(":{hex}\n")
    }
    let mut out = String::new();
    for &(base, data) in chunks {
        let mut upper = None;
        for (i, line) in data.chunks(16).enumerate() {
            let at = base + 16 * i as u32;
            if upper != Some(at >> 16) {
                upper = Some(at >> 16);
                out += &record(4, 0, &((at >> 16) as u16).to_be_bytes());
            }
            out += &record(0, at as u16, line);
        }
    }
    out + &record(1, 0, &[])
}

#[test]
fn bitbang_pyocd_programs_the_window_with_the_flm_and_the_documented_user_script() {
    // A project folder as a user has it: the FLM `extflash-gdb loader`
    // writes for the built-in board, the user script of docs/loaders.md and
    // an image with internal code and window data.
    let dir = std::env::temp_dir().join(format!("extflash-pyocd-flm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
        .args(["loader", "--format", "flm", "-o"])
        .arg(dir.join("W25Q64JV-extflash.FLM"))
        .output()
        .expect("run extflash-gdb loader");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = documented_pyocd_script();
    assert!(script.contains("flm=\"W25Q64JV-extflash.FLM\""), "{script}");
    std::fs::write(dir.join("pyocd_user.py"), &script).unwrap();

    // The chip's first 16 KiB hold old data: what the window image does not
    // touch must keep it.
    let old = extflash_gdb::prng::Prng::new(11).bytes(0x4000);
    std::fs::write(state.join(extflash_gdb::sim::EXTERNAL_FLASH_FILE), &old).unwrap();
    // 6000 bytes from 0x90001100: inside two 4 KiB sectors, neither whole.
    const AT: u32 = 0x1100;
    let window = extflash_gdb::prng::Prng::new(12).bytes(6000);
    let firmware = elf::firmware_elf();
    let segments = elf::load_segments(&firmware);
    let mut chunks: Vec<(u32, &[u8])> = segments.iter().map(|(a, d)| (*a, &d[..])).collect();
    chunks.push((0x9000_0000 + AT, &window));
    std::fs::write(dir.join("app.hex"), intel_hex(&chunks)).unwrap();
    std::fs::write(dir.join("window.bin"), &window).unwrap();
    // Internal flash from the first segment to the last (erased between).
    let flash_at = segments[0].0;
    let mut flash_data = Vec::new();
    for (addr, data) in segments.iter().filter(|(a, _)| a >> 24 == 0x08) {
        let off = (addr - flash_at) as usize;
        flash_data.resize(flash_data.len().max(off), 0xFF);
        flash_data.splice(
            off..(off + data.len()).min(flash_data.len()),
            data.iter().copied(),
        );
    }
    std::fs::write(dir.join("internal.bin"), &flash_data).unwrap();

    let server = BitbangCommand::start(&["--sim-state", state.to_str().unwrap()]);
    let probe = format!("remote_bitbang:{}", server.addr);
    // pyOCD has no built-in STM32F407 target (see the recipe).
    let pyocd = |args: &[&str]| -> String {
        let mut all: Vec<String> = vec![args[0].into(), "-t".into(), "stm32f412xe".into()];
        all.extend(["-u".into(), probe.clone()]);
        all.extend(args[1..].iter().map(|s| s.to_string()));
        run_in(Some(&dir), "pyocd", &all, Duration::from_secs(120))
    };
    let out = pyocd(&["flash", "-v", "app.hex"]);
    assert!(
        out.contains("Creating flash algo for region extflash from:"),
        "pyOCD took the window's algorithm from the FLM"
    );
    // One 16 KiB internal sector and the window's two 4 KiB sectors.
    assert!(
        out.contains("Erased 24576 bytes (3 sectors)"),
        "erased the FLM's 4 KiB sectors"
    );

    // pyOCD's own check: internal flash compares; the window is not
    // memory-mapped (SPI), and pyOCD reads it over the AHB only.
    let out = pyocd(&[
        "commander",
        "-c",
        &format!("compare {flash_at:#x} internal.bin"),
        "-c",
        &format!("compare {:#x} window.bin", 0x9000_0000 + AT),
    ]);
    assert!(
        out.contains(&format!("All {} bytes match.", flash_data.len())),
        "pyOCD compares internal flash"
    );
    assert!(
        out.contains("memory transfer failed"),
        "pyOCD cannot read the window over the AHB"
    );
    assert_eq!(
        out.matches("bytes match").count(),
        1,
        "the window never compares as read"
    );

    // The state files are written when a connection ends; the next host is
    // served after that. Then the board is free for `read --sim`.
    {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"Q").unwrap();
        let _ = s.read_to_end(&mut Vec::new());
    }
    drop(server);
    let read = dir.join("read.bin");
    let out = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
        .args(["read", "--sim", "--sim-state"])
        .arg(&state)
        .args(["0x90000000", "0x4000", "-o"])
        .arg(&read)
        .output()
        .expect("run extflash-gdb read");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chip = std::fs::read(&read).unwrap();
    let internal = std::fs::read(state.join(extflash_gdb::sim::INTERNAL_FLASH_FILE)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let at = AT as usize;
    assert_eq!(&chip[at..at + window.len()], &window[..], "the image");
    assert_eq!(&chip[..0x1000], &old[..0x1000], "sector 0 untouched");
    assert_eq!(&chip[0x3000..], &old[0x3000..], "sector 3 untouched");
    // pyOCD programs whole sectors and cannot read the window to keep the
    // rest of them (docs/loaders.md).
    assert!(
        chip[0x1000..at].iter().all(|&b| b == 0xFF),
        "erased before the image"
    );
    assert!(
        chip[at + window.len()..0x3000].iter().all(|&b| b == 0xFF),
        "erased after the image"
    );
    for (addr, data) in &segments {
        let off = (addr - 0x0800_0000) as usize;
        assert_eq!(
            &internal[off..off + data.len()],
            &data[..],
            "internal flash at {addr:#x}"
        );
    }
}

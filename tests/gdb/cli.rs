//! The `extflash-gdb serve` command line: the `listening on` line, and the
//! errors for bad arguments and board files, reported before anything
//! listens.

use std::process::Command;

use crate::support::server::SimServer;

fn serve(args: &[&str]) -> (bool, String, String) {
    run(&["serve"], args, Some("off"))
}

/// Run `extflash-gdb FIRST... ARGS...` with `RUST_LOG` set, or unset (the
/// default filter a user gets).
fn run(first: &[&str], args: &[&str], rust_log: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"));
    cmd.args(first).args(args);
    match rust_log {
        Some(v) => cmd.env("RUST_LOG", v),
        None => cmd.env_remove("RUST_LOG"),
    };
    let out = cmd.output().expect("run extflash-gdb");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_board_file_names_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("extflash-gdb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    let text = extflash_gdb::board::DEFAULT_BOARD_TOML.replace("cs = \"PB0\"", "cs = \"PB99\"");
    std::fs::write(&path, &text).unwrap();
    let line = text[..text.find("cs = \"PB99\"").unwrap()]
        .matches('\n')
        .count()
        + 1;
    let (ok, stdout, stderr) = serve(&["--board", path.to_str().unwrap(), "--port", "0"]);
    assert!(!ok);
    assert!(
        stdout.is_empty(),
        "nothing listens on a bad board: {stdout}"
    );
    let want = format!("bad.toml:{line}: `external_flash.cs`: unknown pin `PB99`");
    assert!(stderr.contains(&want), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_board_file_is_reported() {
    let (ok, _, stderr) = serve(&["--board", "/nonexistent/board.toml"]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot read board file /nonexistent/board.toml"),
        "{stderr}"
    );
}

#[test]
fn malformed_probe_selector_is_rejected_before_listening() {
    let (ok, stdout, stderr) = serve(&["--probe", "not-a-selector", "--port", "0"]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("--probe not-a-selector"), "{stderr}");
}

#[test]
fn sim_state_without_sim_is_rejected() {
    let (ok, _, stderr) = serve(&["--sim-state", "/tmp/x"]);
    assert!(!ok);
    assert!(stderr.contains("--sim"), "{stderr}");
}

#[test]
fn listening_line_names_a_real_loopback_port() {
    let s = SimServer::start(&[]);
    let port: u16 = s.addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
    assert!(s.addr.starts_with("127.0.0.1:"), "default bind is loopback");
}

/// After `flash --reset` the test firmware reads the chip in a loop, so the
/// next command's first halt lands inside one of its SPI transactions: the
/// chip cannot be identified at connect. That is retried at the first
/// window access and must not show up as an error reply nobody sent.
#[test]
fn valid_read_after_flash_reset_shows_no_false_error_reply() {
    let dir = std::env::temp_dir().join(format!("extflash-gdb-cli-read-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.to_str().unwrap();
    let sim = ["--sim", "--sim-state", state];
    let elf = crate::support::elf::FIRMWARE_ASSETS;
    let (ok, _, stderr) = run(&["flash", elf, "--reset"], &sim, None);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = run(&["read", "0x90000003", "4"], &sim, None);
    assert!(ok, "{stderr}");
    let asset = crate::support::elf::section(
        &crate::support::elf::firmware_assets_elf(),
        ".extflash.font",
    )
    .1;
    let want: Vec<String> = asset[..4].iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        stdout.starts_with(&format!("90000003: {}", want.join(" "))),
        "{stdout}"
    );
    assert!(!stderr.contains("replying with an error"), "{stderr}");
    // The same with the server's log opened: the retry is noted, not a reply.
    let (ok, _, stderr) = run(
        &["read", "0x90000003", "4"],
        &sim,
        Some("extflash_gdb=info"),
    );
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("replying with an error"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn invalid_length_suffix_names_the_suffixes_accepted() {
    let (ok, _, stderr) = run(&["read", "0x90000000", "1G", "--sim"], &[], Some("off"));
    assert!(!ok);
    assert!(
        stderr.contains("`1G`") && stderr.contains("may end in K or M"),
        "{stderr}"
    );
}

#[test]
fn port_in_use_is_named_with_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (ok, stdout, stderr) = serve(&["--sim", "--port", &port]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && stderr.contains("--port 0 picks a free one"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["bitbang", "--port", &port], &[], Some("off"));
    assert!(!ok);
    assert!(stderr.contains("--port 0 picks a free one"), "{stderr}");
}

#[test]
fn invalid_speed_for_the_virtual_link_names_its_lowest_clock() {
    let (ok, stdout, stderr) = serve(&["--sim", "--speed", "50", "--port", "0"]);
    assert!(!ok);
    assert!(stdout.is_empty(), "nothing listens: {stdout}");
    assert!(
        stderr
            .contains("--speed 50: stlink-v2 cannot clock SWD at 50 kHz (lowest setting 100 kHz)"),
        "{stderr}"
    );
}

#[test]
fn sim_state_naming_a_file_is_refused_by_name() {
    let file = std::env::temp_dir().join(format!("extflash-gdb-cli-state-{}", std::process::id()));
    std::fs::write(&file, b"not a folder").unwrap();
    let path = file.to_str().unwrap();
    let (ok, stdout, stderr) = serve(&["--sim", "--sim-state", path, "--port", "0"]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "--sim-state {path}: that is a file; give a folder"
        )),
        "{stderr}"
    );
    let (ok, _, stderr) = run(
        &["bitbang", "--port", "0", "--sim-state", path],
        &[],
        Some("off"),
    );
    assert!(!ok);
    assert!(stderr.contains("that is a file"), "{stderr}");
    std::fs::remove_file(&file).ok();
}

#[test]
fn bitbang_speed_zero_is_refused_as_an_argument() {
    let (ok, stdout, stderr) = run(
        &["bitbang", "--speed", "0", "--port", "0"],
        &[],
        Some("off"),
    );
    assert!(!ok);
    assert!(stdout.is_empty(), "nothing listens: {stdout}");
    assert!(
        stderr.contains("invalid value '0' for '--speed <KHZ>'"),
        "{stderr}"
    );
}

#[test]
fn base_for_an_elf_names_the_file_kind() {
    let elf = crate::support::elf::FIRMWARE;
    let (ok, _, stderr) = run(
        &["flash", elf, "--base", "0x08000000", "--sim"],
        &[],
        Some("off"),
    );
    assert!(!ok);
    assert!(
        stderr.contains("is an ELF file and carries its own addresses: --base is only for raw"),
        "{stderr}"
    );
}

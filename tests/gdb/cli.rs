//! The `extflash-gdb serve` command line: the `listening on` line, and the
//! errors for bad arguments and board files, reported before anything
//! listens.

use std::process::Command;

use crate::support::server::SimServer;

fn serve(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run extflash-gdb");
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

//! `extflash-gdb loader` on bad input: clear errors, no file written.

use std::process::Command;

use crate::TempDir;

fn loader(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
        .arg("loader")
        .args(args)
        .output()
        .expect("run extflash-gdb");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn loader_for_a_board_without_external_flash_says_so_and_writes_nothing() {
    let dir = TempDir::new("cli-noext");
    let text = extflash_gdb::board::DEFAULT_BOARD_TOML;
    let cut = text.find("[external_flash]").unwrap();
    let board = dir.0.join("no-ext.toml");
    std::fs::write(&board, &text[..cut]).unwrap();
    let out = dir.0.join("x.FLM");
    let (ok, err) = loader(&[
        "--format",
        "flm",
        "--board",
        board.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("no [external_flash] section"), "{err}");
    assert!(err.contains("no-ext.toml"), "names the board file: {err}");
    assert!(!out.exists());
}

#[test]
fn loader_with_an_unknown_format_lists_the_formats() {
    let dir = TempDir::new("cli-format");
    let out = dir.0.join("x");
    let (ok, err) = loader(&["--format", "hex", "-o", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("stldr") && err.contains("flm") && err.contains("probe-rs"),
        "{err}"
    );
}

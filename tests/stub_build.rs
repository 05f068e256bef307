//! The committed stub (`target-stub/extflash-stub.elf`) is exactly what its
//! source builds to: `target-stub/build.sh` rebuilds it into a temporary
//! folder and the bytes must match. Needs the `thumbv7m-none-eabi` Rust
//! target; without it the test fails (it is never skipped).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "thumbv7m-none-eabi";

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

fn installed_targets_dir() -> PathBuf {
    let out = Command::new(rustc())
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc runs");
    assert!(out.status.success(), "rustc --print sysroot failed");
    let sysroot = String::from_utf8(out.stdout).unwrap();
    Path::new(sysroot.trim()).join("lib/rustlib")
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("extflash-stub-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn committed_stub_elf_matches_a_fresh_build_of_target_stub() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rustlib = installed_targets_dir();
    assert!(
        rustlib.join(TARGET).is_dir(),
        "the {TARGET} Rust target is not installed ({} is missing), so the stub \
         cannot be rebuilt and checked. Install it with `rustup target add {TARGET}` \
         (`bash scripts/test-all.sh` does that for you).",
        rustlib.join(TARGET).display()
    );

    let out = TempDir::new();
    let run = Command::new("bash")
        .arg(root.join("target-stub/build.sh"))
        .arg(&out.0)
        // The outer cargo's settings must not leak into the stub build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("bash runs target-stub/build.sh");
    assert!(
        run.status.success(),
        "target-stub/build.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    let fresh = std::fs::read(out.0.join("extflash-stub.elf")).unwrap();
    let committed_path = root.join("target-stub/extflash-stub.elf");
    let committed = std::fs::read(&committed_path)
        .unwrap_or_else(|e| panic!("{}: {e}", committed_path.display()));
    if fresh != committed {
        let info = |p: &Path| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("rustc "))
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "?".into())
        };
        let (then, now) = (
            info(&root.join("target-stub/BUILD-INFO.txt")),
            info(&out.0.join("BUILD-INFO.txt")),
        );
        let toolchain = if then == now {
            String::new()
        } else {
            format!(" (committed with {then}, this toolchain is {now}: another compiler gives other bytes)")
        };
        panic!(
            "target-stub/extflash-stub.elf is stale ({} bytes committed, {} built){toolchain}: \
             run target-stub/build.sh and commit the ELF and BUILD-INFO.txt",
            committed.len(),
            fresh.len(),
        );
    }
}

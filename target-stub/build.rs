//! Links with stub.x: .text + .rodata in one PT_LOAD segment from address 0.
use std::env;

fn main() {
    let dir = env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-search={dir}");
    println!("cargo:rustc-link-arg-bins=--nmagic");
    // The loader templates (features `stldr`, `flm`) have linker scripts
    // of their own.
    let script = if env::var_os("CARGO_FEATURE_STLDR").is_some() {
        "stldr.x"
    } else if env::var_os("CARGO_FEATURE_FLM").is_some() {
        "flm.x"
    } else {
        "stub.x"
    };
    println!("cargo:rustc-link-arg-bins=-T{script}");
    // build.sh links a second copy at another address to prove the code is
    // position independent (identical bytes at both addresses).
    if let Ok(base) = env::var("EXTFLASH_STUB_LINK_BASE") {
        println!("cargo:rustc-link-arg-bins=--defsym=STUB_LINK_BASE={base}");
    }
    println!("cargo:rerun-if-env-changed=EXTFLASH_STUB_LINK_BASE");
    for f in ["build.rs", "stub.x", "stldr.x", "flm.x"] {
        println!("cargo:rerun-if-changed={f}");
    }
}

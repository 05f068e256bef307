//! Links with stub.x: .text + .rodata in one PT_LOAD segment from address 0.
use std::env;

fn main() {
    let dir = env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-search={dir}");
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tstub.x");
    // build.sh links a second copy at another address to prove the code is
    // position independent (identical bytes at both addresses).
    if let Ok(base) = env::var("EXTFLASH_STUB_LINK_BASE") {
        println!("cargo:rustc-link-arg-bins=--defsym=STUB_LINK_BASE={base}");
    }
    println!("cargo:rerun-if-env-changed=EXTFLASH_STUB_LINK_BASE");
    for f in ["build.rs", "stub.x"] {
        println!("cargo:rerun-if-changed={f}");
    }
}

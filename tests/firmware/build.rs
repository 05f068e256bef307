//! Selects the linker scripts: link.x always, extflash.x with feature `assets`.
use std::env;

fn main() {
    let dir = env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-search={dir}");
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    if env::var_os("CARGO_FEATURE_ASSETS").is_some() {
        println!("cargo:rustc-link-arg-bins=-Textflash.x");
    }
    for f in ["build.rs", "memory.x", "link.x", "extflash.x"] {
        println!("cargo:rerun-if-changed={f}");
    }
}

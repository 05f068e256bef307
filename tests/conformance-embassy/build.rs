//! Links with cortex-m-rt's link.x (embassy-stm32's `memory-x` feature
//! provides memory.x).
fn main() {
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rerun-if-changed=build.rs");
}

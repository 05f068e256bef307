#!/usr/bin/env bash
# Rebuilds the conformance firmware and refreshes the committed ELF:
#   conformance.elf   the firmware (not stripped: the tests read CONFORMANCE by name)
#   BUILD-INFO.txt    toolchain, flags and sha256 of the ELF
#
# Usage: tests/conformance/build.sh [OUT_DIR]
#   OUT_DIR (or $EXTFLASH_CONFORMANCE_OUT) receives the two files instead of
#   tests/conformance/ itself; tests/stub/committed_builds.rs uses that to
#   check that the committed ELF is what the source builds to.
#
# How it is built: `cargo build --release --locked --target thumbv7em-none-eabi`
# (soft float: the virtual board's core does not execute FPU instructions) of
# this stand-alone package (own [workspace], Cargo.lock committed; its crates
# come from crates.io), opt-level "s", panic=abort, lto, codegen-units=1,
# full debug info, with --remap-path-prefix for this folder (/conformance)
# and for cargo's registry sources (/crates), so the ELF is byte-identical
# from any checkout path and any CARGO_HOME. Linking uses rust-lld with
# cortex-m-rt's link.x and memory.x. The target dir is tests/conformance/target
# (git-ignored).
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../scripts/lib/build-elf.sh
source "$DIR/../../scripts/lib/build-elf.sh"
cd "$DIR"
set_out_dir "${1:-}" "${EXTFLASH_CONFORMANCE_OUT:-$DIR}"

TARGET=thumbv7em-none-eabi
add_rust_target "$TARGET"

export CARGO_TARGET_DIR="$DIR/target"
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET || true
# Fetch first so the registry source folders exist for the remapping below.
cargo fetch --locked --target "$TARGET" >/dev/null
RUSTFLAGS="--remap-path-prefix=$DIR=/conformance$(registry_remaps)"
export RUSTFLAGS

cargo build --release --locked --target "$TARGET"
cp "$CARGO_TARGET_DIR/$TARGET/release/conformance" "$OUT_DIR/conformance.elf"

# Sanity checks: no FPU instructions (soft float), the vector table at
# 0x08000000, CONFORMANCE in .uninit and the symbols the tests use.
OBJDUMP="$(first_tool arm-none-eabi-objdump llvm-objdump rust-objdump)"
if [ -n "$OBJDUMP" ]; then
    elf="$OUT_DIR/conformance.elf"
    forbid_insns "$OBJDUMP" "$elf" "$elf uses FPU instructions" 'v[a-z]+'
    "$OBJDUMP" -h "$elf" | grep -Eq '\.vector_table +[0-9a-f]+ +08000000' \
        || { echo "error: $elf: no .vector_table at 0x08000000" >&2; exit 1; }
    grep -Eq '\.uninit[[:space:]].*[[:space:]]CONFORMANCE$' <<<"$("$OBJDUMP" -t "$elf")" \
        || { echo "error: $elf: CONFORMANCE is not in .uninit" >&2; exit 1; }
    require_symbols "$OBJDUMP" "$elf" "$elf" Reset main conformance_done CONFORMANCE SysTick \
        DMA2_STREAM0
    echo "instruction check ($OBJDUMP): ok"
else
    echo "warning: no objdump found, instruction check skipped" >&2
fi

{
    echo "# Written by tests/conformance/build.sh; do not edit."
    toolchain_info
    echo "## flags"
    echo "cargo build --release --locked --target $TARGET"
    echo "RUSTFLAGS=--remap-path-prefix=<tests/conformance>=/conformance --remap-path-prefix=<registry src>=/crates"
    echo "## sha256"
    (cd "$OUT_DIR" && sha256sum conformance.elf)
} > "$OUT_DIR/BUILD-INFO.txt"

cat "$OUT_DIR/BUILD-INFO.txt"

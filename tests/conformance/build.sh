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
cd "$DIR"
OUT_DIR="${1:-${EXTFLASH_CONFORMANCE_OUT:-$DIR}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

TARGET=thumbv7em-none-eabi
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi

export CARGO_TARGET_DIR="$DIR/target"
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET || true
# Fetch first so the registry source folders exist for the remapping below.
cargo fetch --locked --target "$TARGET" >/dev/null
REGISTRY="${CARGO_HOME:-$HOME/.cargo}/registry/src"
RUSTFLAGS="--remap-path-prefix=$DIR=/conformance"
for d in "$REGISTRY"/*/; do
    RUSTFLAGS="$RUSTFLAGS --remap-path-prefix=${d%/}=/crates"
done
export RUSTFLAGS

cargo build --release --locked --target "$TARGET"
cp "$CARGO_TARGET_DIR/$TARGET/release/conformance" "$OUT_DIR/conformance.elf"

# Sanity checks: no FPU instructions (soft float), the vector table at
# 0x08000000, CONFORMANCE in .uninit and the symbols the tests use.
OBJDUMP=""
for t in arm-none-eabi-objdump llvm-objdump rust-objdump; do
    if command -v "$t" >/dev/null 2>&1; then OBJDUMP="$t"; break; fi
done
if [ -n "$OBJDUMP" ]; then
    elf="$OUT_DIR/conformance.elf"
    bad="$("$OBJDUMP" -d "$elf" | grep -E $'^ +[0-9a-f]+:\t' \
        | grep -Ei $'\t(v[a-z]+)(\.[a-z0-9.]+)?(\t| |$)' || true)"
    if [ -n "$bad" ]; then
        echo "error: $elf uses FPU instructions:" >&2
        echo "$bad" >&2
        exit 1
    fi
    "$OBJDUMP" -h "$elf" | grep -Eq '\.vector_table +[0-9a-f]+ +08000000' \
        || { echo "error: $elf: no .vector_table at 0x08000000" >&2; exit 1; }
    syms="$("$OBJDUMP" -t "$elf")"
    grep -Eq '\.uninit[[:space:]].*[[:space:]]CONFORMANCE$' <<<"$syms" \
        || { echo "error: $elf: CONFORMANCE is not in .uninit" >&2; exit 1; }
    for s in Reset main conformance_done CONFORMANCE SysTick DMA2_STREAM0; do
        grep -Eq "[[:space:]]$s\$" <<<"$syms" || { echo "error: $elf: no symbol $s" >&2; exit 1; }
    done
    echo "instruction check ($OBJDUMP): ok"
else
    echo "warning: no objdump found, instruction check skipped" >&2
fi

{
    echo "# Written by tests/conformance/build.sh; do not edit."
    echo "## rustc -vV"
    rustc -vV
    echo "## cargo -V"
    cargo -V
    echo "## flags"
    echo "cargo build --release --locked --target $TARGET"
    echo "RUSTFLAGS=--remap-path-prefix=<tests/conformance>=/conformance --remap-path-prefix=<registry src>=/crates"
    echo "## sha256"
    (cd "$OUT_DIR" && sha256sum conformance.elf)
} > "$OUT_DIR/BUILD-INFO.txt"

cat "$OUT_DIR/BUILD-INFO.txt"

#!/usr/bin/env bash
# Rebuilds the extflash-gdb SPI stub and refreshes the committed ELF:
#   extflash-stub.elf   the stub (one PT_LOAD segment linked at 0, symbols kept)
#   BUILD-INFO.txt      toolchain, command and sha256 of the ELF
#
# Usage: target-stub/build.sh [OUT_DIR]
#   OUT_DIR (or $EXTFLASH_STUB_OUT) receives both files instead of
#   target-stub/ itself; tests/stub/committed_builds.rs uses that to check
#   that the committed ELF is what the source builds to, without overwriting
#   it (see "Staleness check" in README.md).
#
# How it is built: `cargo build --release --target thumbv7m-none-eabi` of this
# stand-alone package (own [workspace]; only dependency: ./abi), opt-level "z",
# lto, codegen-units=1, panic=abort, no debug info, -C relocation-model=ropi,
# and --remap-path-prefix <this dir>=/stub so the ELF is byte-identical from
# any checkout path. Linked by rust-lld with stub.x (selected by build.rs).
# The target dir is target-stub/target (git-ignored).
#
# Checks after the build:
#   - position independence: a second copy linked at 0x2001C104 must have the
#     same bytes as the one linked at 0 (no absolute address into the stub);
#   - no relocation sections, exactly one PT_LOAD, all entry symbols present;
#   - no instruction the virtual board's armagnac core cannot run (FPU,
#     SVC/UDF, MSR/MRS/CPS, WFI/WFE, exclusive access, coprocessor).
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/lib/build-elf.sh
source "$DIR/../scripts/lib/build-elf.sh"
cd "$DIR"
set_out_dir "${1:-}" "${EXTFLASH_STUB_OUT:-$DIR}"

TARGET=thumbv7m-none-eabi
add_rust_target "$TARGET"

# RUSTFLAGS replaces .cargo/config.toml's target rustflags: keep them in sync.
FLAGS="-C relocation-model=ropi"
export RUSTFLAGS="$FLAGS --remap-path-prefix=$DIR=/stub"
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET EXTFLASH_STUB_LINK_BASE || true

export CARGO_TARGET_DIR="$DIR/target"
ELF="$CARGO_TARGET_DIR/$TARGET/release/extflash-stub"
cargo build --release --locked --target "$TARGET"

# The same code linked at another (4-byte aligned, not 8) address, in its own
# target dir so the two builds do not invalidate each other.
PIC_BASE=0x2001C104
CARGO_TARGET_DIR="$DIR/target/pic-check" EXTFLASH_STUB_LINK_BASE=$PIC_BASE \
    cargo build --release --locked --target "$TARGET"
ELF_AT="$DIR/target/pic-check/$TARGET/release/extflash-stub"

OBJCOPY="$(first_tool llvm-objcopy arm-none-eabi-objcopy rust-objcopy \
    "$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/rust-objcopy")"
[ -n "$OBJCOPY" ] || { echo "error: no objcopy found (llvm-objcopy or rust-objcopy)" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$OBJCOPY" -O binary "$ELF" "$TMP/at0.bin"
"$OBJCOPY" -O binary "$ELF_AT" "$TMP/atx.bin"
if ! cmp -s "$TMP/at0.bin" "$TMP/atx.bin"; then
    echo "error: the stub is not position independent: linked at 0 and at $PIC_BASE it differs:" >&2
    cmp -l "$TMP/at0.bin" "$TMP/atx.bin" | head >&2 || true
    exit 1
fi
SIZE=$(stat -c %s "$TMP/at0.bin")
echo "position independence: ok ($SIZE bytes identical at 0 and $PIC_BASE)"

OBJDUMP="$(first_tool llvm-objdump arm-none-eabi-objdump rust-objdump)"
if [ -n "$OBJDUMP" ]; then
    forbid_insns "$OBJDUMP" "$ELF" "the stub uses instructions the virtual board cannot run" \
        "$UNRUNNABLE_INSNS"
    if "$OBJDUMP" -h "$ELF" | grep -Eq ' \.rel(a)?\.'; then
        echo "error: the stub ELF has relocation sections" >&2
        exit 1
    fi
    loads="$("$OBJDUMP" -p "$ELF" | grep -c '^ *LOAD ' || true)"
    [ "$loads" = 1 ] || { echo "error: $loads PT_LOAD segments, want 1" >&2; exit 1; }
    require_symbols "$OBJDUMP" "$ELF" "the stub" stub_init stub_read stub_crc32 stub_erase \
        stub_stream stub_read_sfdp stub_read_status stub_write_status stub_crc_blocks stub_serve \
        stub_park stub_bkpt
    echo "instruction, relocation and symbol checks ($OBJDUMP): ok"
else
    echo "warning: no objdump found, instruction/relocation checks skipped" >&2
fi

cp "$ELF" "$OUT_DIR/extflash-stub.elf"
{
    echo "# Written by target-stub/build.sh; do not edit."
    toolchain_info
    echo "## command"
    echo "cargo build --release --locked --target $TARGET"
    echo "RUSTFLAGS=$FLAGS --remap-path-prefix=<target-stub>=/stub"
    echo "## size (PT_LOAD bytes)"
    echo "$SIZE"
    echo "## sha256"
    (cd "$OUT_DIR" && sha256sum extflash-stub.elf)
} > "$OUT_DIR/BUILD-INFO.txt"

cat "$OUT_DIR/BUILD-INFO.txt"

# The flash loader templates are built from the same driver code.
bash "$DIR/build-loaders.sh" "$OUT_DIR"

#!/usr/bin/env bash
# Rebuilds the extflash-gdb test firmware and refreshes the committed ELFs:
#   firmware.elf         default features: code + data only
#   firmware-assets.elf  feature `assets`: plus .extflash.font / .extflash.table
#   BUILD-INFO.txt       toolchain, flags and sha256 of both ELFs
#
# Usage: tests/firmware/build.sh [OUT_DIR]
#   OUT_DIR (or $EXTFLASH_FIRMWARE_OUT) receives the three files instead of
#   tests/firmware/ itself; tests/stub/committed_builds.rs uses that to
#   check that the committed ELFs are what the source builds to, without
#   overwriting them (see "Staleness check" in README.md).
#
# How it is built: `cargo build --release --target thumbv7m-none-eabi` of this
# stand-alone package (no dependencies; own [workspace]), opt-level "s",
# panic=abort, lto, codegen-units=1, full debug info, frame pointers, and
# --remap-path-prefix <this dir>=/firmware so the ELFs are byte-identical
# from any checkout path (GDB: `set substitute-path /firmware <checkout>/tests/firmware`).
# Linking uses rust-lld with memory.x + link.x (+ extflash.x for `assets`),
# selected by build.rs. The target dir is tests/firmware/target (git-ignored).
# The exact toolchain used is recorded in BUILD-INFO.txt with the ELF hashes.
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../scripts/lib/build-elf.sh
source "$DIR/../../scripts/lib/build-elf.sh"
cd "$DIR"
set_out_dir "${1:-}" "${EXTFLASH_FIRMWARE_OUT:-$DIR}"

TARGET=thumbv7m-none-eabi
add_rust_target "$TARGET"

export CARGO_TARGET_DIR="$DIR/target"
# RUSTFLAGS replaces .cargo/config.toml's target rustflags: keep them in sync.
export RUSTFLAGS="-C force-frame-pointers=yes --remap-path-prefix=$DIR=/firmware"
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET || true

OUT="$CARGO_TARGET_DIR/$TARGET/release/firmware"

cargo build --release --target "$TARGET"
cp "$OUT" "$OUT_DIR/firmware.elf"

cargo build --release --target "$TARGET" --features assets
cp "$OUT" "$OUT_DIR/firmware-assets.elf"

# Sanity check of the code (the virtual board's armagnac core has no FPU, no
# usable exception return, and panics on some system-register instructions):
# no FPU/SVC/UDF/MSR/MRS/CPS/WFI/WFE, and the vector table at 0x08000000.
OBJDUMP="$(first_tool arm-none-eabi-objdump llvm-objdump rust-objdump)"
if [ -n "$OBJDUMP" ]; then
    for elf in "$OUT_DIR/firmware.elf" "$OUT_DIR/firmware-assets.elf"; do
        forbid_insns "$OBJDUMP" "$elf" "$elf uses instructions the virtual board cannot run" \
            "$UNRUNNABLE_INSNS"
        "$OBJDUMP" -h "$elf" | grep -Eq '\.vector_table +00000040 +08000000 +08000000' \
            || { echo "error: $elf: .vector_table is not 64 bytes at 0x08000000" >&2; exit 1; }
        "$OBJDUMP" -h "$elf" | grep -Eq '\.data +[0-9a-f]+ +20000000 +080[0-7][0-9a-f]{4}' \
            || { echo "error: $elf: .data is not in RAM with its LMA in flash" >&2; exit 1; }
        require_symbols "$OBJDUMP" "$elf" "$elf" Reset DefaultHandler main tick compute \
            spi_transaction spi_xfer read_jedec_id flash_select flash_deselect assets_checked \
            BOOT_MARKER DATA_WORD DATA_CHECK STAGE JEDEC_ID FLASH_SR1 FLASH_HEAD ASSET_RANGES \
            ASSET_RANGE_CRCS ASSET_CRC TICKS COMPUTE_LAST SPI_PERIOD IN_TRANSACTION LAST_ID \
            SPI_ROUNDS ID_MISMATCHES SPI_ERRORS LAST_SPI_TICK
    done
    echo "instruction check ($OBJDUMP): ok"
else
    echo "warning: no objdump found, instruction check skipped" >&2
fi

{
    echo "# Written by tests/firmware/build.sh; do not edit."
    toolchain_info
    echo "## flags"
    echo "cargo build --release --target $TARGET [--features assets]"
    echo "RUSTFLAGS=-C force-frame-pointers=yes --remap-path-prefix=<tests/firmware>=/firmware"
    echo "## sha256"
    (cd "$OUT_DIR" && sha256sum firmware.elf firmware-assets.elf)
} > "$OUT_DIR/BUILD-INFO.txt"

cat "$OUT_DIR/BUILD-INFO.txt"

#!/usr/bin/env bash
# Rebuilds the flash loader templates `extflash-gdb loader` patches, from the
# stub's own driver code (src/loader.rs, cargo features `stldr` and `flm`):
#   loader-stldr.elf        STM32CubeProgrammer external loader, linked at
#                           0x20000004 (stldr.x)
#   loader-flm.elf          CMSIS-Pack flash algorithm: PrgCode at 0,
#                           PrgData, DevDscr (flm.x)
#   BUILD-INFO-loaders.txt  toolchain, command and sha256 of both
#
# Usage: target-stub/build-loaders.sh [OUT_DIR]   (build.sh runs it too)
#
# Same settings as the stub (see build.sh): release, opt-level "z", lto,
# -C relocation-model=ropi, --remap-path-prefix. Checks: each template
# linked at a second address has the same bytes (position independent), no
# relocation sections, the entry symbols and the board block present, no
# instruction the virtual board cannot run.
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/lib/build-elf.sh
source "$DIR/../scripts/lib/build-elf.sh"
cd "$DIR"
set_out_dir "${1:-}" "${EXTFLASH_STUB_OUT:-$DIR}"

TARGET=thumbv7m-none-eabi
add_rust_target "$TARGET"
FLAGS="-C relocation-model=ropi"
export RUSTFLAGS="$FLAGS --remap-path-prefix=$DIR=/stub"
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET EXTFLASH_STUB_LINK_BASE || true

OBJCOPY="$(first_tool llvm-objcopy arm-none-eabi-objcopy rust-objcopy \
    "$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/rust-objcopy")"
[ -n "$OBJCOPY" ] || { echo "error: no objcopy found (llvm-objcopy or rust-objcopy)" >&2; exit 1; }
OBJDUMP="$(first_tool llvm-objdump arm-none-eabi-objdump rust-objdump)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

declare -A SIZES
for kind in stldr flm; do
    case $kind in
        stldr) PIC_BASE=0x2000A004; CODE=.text
               SYMS="Init Write Read SectorErase MassErase Verify CheckSum StorageInfo EXTFLASH_BOARD" ;;
        flm)   PIC_BASE=0x00000104; CODE=PrgCode
               SYMS="Init UnInit EraseSector ProgramPage EraseChip Verify BlankCheck ReadFlash FlashDevice EXTFLASH_BOARD" ;;
    esac
    CARGO_TARGET_DIR="$DIR/target/loader-$kind" \
        cargo build --release --locked --target "$TARGET" --features "$kind"
    ELF="$DIR/target/loader-$kind/$TARGET/release/extflash-stub"
    CARGO_TARGET_DIR="$DIR/target/loader-$kind-pic" EXTFLASH_STUB_LINK_BASE=$PIC_BASE \
        cargo build --release --locked --target "$TARGET" --features "$kind"
    ELF_AT="$DIR/target/loader-$kind-pic/$TARGET/release/extflash-stub"
    "$OBJCOPY" -O binary --only-section="$CODE" "$ELF" "$TMP/a.bin"
    "$OBJCOPY" -O binary --only-section="$CODE" "$ELF_AT" "$TMP/b.bin"
    if ! cmp -s "$TMP/a.bin" "$TMP/b.bin"; then
        echo "error: the $kind loader is not position independent (differs at $PIC_BASE):" >&2
        cmp -l "$TMP/a.bin" "$TMP/b.bin" | head >&2 || true
        exit 1
    fi
    SIZES[$kind]=$(stat -c %s "$TMP/a.bin")
    echo "$kind: position independence ok (${SIZES[$kind]} bytes of $CODE identical at $PIC_BASE)"
    if [ -n "$OBJDUMP" ]; then
        forbid_insns "$OBJDUMP" "$ELF" \
            "the $kind loader uses instructions the virtual board cannot run" "$UNRUNNABLE_INSNS"
        if "$OBJDUMP" -h "$ELF" | grep -Eq ' \.rel(a)?\.'; then
            echo "error: the $kind loader ELF has relocation sections" >&2
            exit 1
        fi
        # shellcheck disable=SC2086 # a list of names
        require_symbols "$OBJDUMP" "$ELF" "$kind" $SYMS
        echo "$kind: instruction, relocation and symbol checks ($OBJDUMP): ok"
    else
        echo "warning: no objdump found, instruction/relocation checks skipped" >&2
    fi
    cp "$ELF" "$OUT_DIR/loader-$kind.elf"
done

{
    echo "# Written by target-stub/build-loaders.sh; do not edit."
    toolchain_info
    echo "## command"
    echo "cargo build --release --locked --target $TARGET --features stldr|flm"
    echo "RUSTFLAGS=$FLAGS --remap-path-prefix=<target-stub>=/stub"
    echo "## code size (bytes)"
    echo "stldr ${SIZES[stldr]}"
    echo "flm ${SIZES[flm]}"
    echo "## sha256"
    (cd "$OUT_DIR" && sha256sum loader-stldr.elf loader-flm.elf)
} > "$OUT_DIR/BUILD-INFO-loaders.txt"

cat "$OUT_DIR/BUILD-INFO-loaders.txt"

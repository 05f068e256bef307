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
cd "$DIR"
OUT_DIR="${1:-${EXTFLASH_STUB_OUT:-$DIR}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

TARGET=thumbv7m-none-eabi
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
FLAGS="-C relocation-model=ropi"
export RUSTFLAGS="$FLAGS --remap-path-prefix=$DIR=/stub"
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET EXTFLASH_STUB_LINK_BASE || true

OBJCOPY=""
for t in llvm-objcopy arm-none-eabi-objcopy rust-objcopy \
    "$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/rust-objcopy"; do
    if command -v "$t" >/dev/null 2>&1; then OBJCOPY="$t"; break; fi
done
[ -n "$OBJCOPY" ] || { echo "error: no objcopy found (llvm-objcopy or rust-objcopy)" >&2; exit 1; }
OBJDUMP=""
for t in llvm-objdump arm-none-eabi-objdump rust-objdump; do
    if command -v "$t" >/dev/null 2>&1; then OBJDUMP="$t"; break; fi
done
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
        bad="$("$OBJDUMP" -d "$ELF" | grep -E $'^ +[0-9a-f]+:\t' \
            | grep -Ei $'\t(v[a-z]+|svc|udf|msr|mrs|cps[a-z]*|wfi|wfe|ldrex[a-z]*|strex[a-z]*|mcr2?|mrc2?|ldc|stc|cdp)(\\.[a-z0-9.]+)?(\t| |$)' || true)"
        if [ -n "$bad" ]; then
            echo "error: the $kind loader uses instructions the virtual board cannot run:" >&2
            echo "$bad" >&2
            exit 1
        fi
        if "$OBJDUMP" -h "$ELF" | grep -Eq ' \.rel(a)?\.'; then
            echo "error: the $kind loader ELF has relocation sections" >&2
            exit 1
        fi
        syms="$("$OBJDUMP" -t "$ELF")"
        for s in $SYMS; do
            grep -Eq "[[:space:]]$s\$" <<<"$syms" || { echo "error: $kind: no symbol $s" >&2; exit 1; }
        done
        echo "$kind: instruction, relocation and symbol checks ($OBJDUMP): ok"
    else
        echo "warning: no objdump found, instruction/relocation checks skipped" >&2
    fi
    cp "$ELF" "$OUT_DIR/loader-$kind.elf"
done

{
    echo "# Written by target-stub/build-loaders.sh; do not edit."
    echo "## rustc -vV"
    rustc -vV
    echo "## cargo -V"
    cargo -V
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

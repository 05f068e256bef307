# Shared steps of the scripts that rebuild the committed target ELFs
# (target-stub/build.sh and build-loaders.sh, tests/firmware/build.sh,
# tests/conformance*/build.sh). Sourced, not run: it only defines functions.
# What each script builds, and how, stays in that script.

# Mnemonics the virtual board's armagnac core cannot run (FPU, SVC/UDF,
# MSR/MRS/CPS, WFI/WFE, exclusive access, coprocessor), for forbid_insns.
UNRUNNABLE_INSNS='v[a-z]+|svc|udf|msr|mrs|cps[a-z]*|wfi|wfe|ldrex[a-z]*|strex[a-z]*|mcr2?|mrc2?|ldc|stc|cdp'

# set_out_dir ARG DEFAULT: OUT_DIR is ARG (or DEFAULT when empty), created,
# as an absolute path.
set_out_dir() {
    OUT_DIR="${1:-$2}"
    mkdir -p "$OUT_DIR"
    OUT_DIR="$(cd "$OUT_DIR" && pwd)"
}

# add_rust_target TARGET: install the rustup target when rustup is there
# and the target is not.
add_rust_target() {
    if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$1"; then
        rustup target add "$1"
    fi
}

# first_tool CANDIDATE...: print the first candidate found (on PATH or as
# a path); nothing when none is.
first_tool() {
    local t
    for t in "$@"; do
        if command -v "$t" >/dev/null 2>&1; then
            echo "$t"
            return
        fi
    done
}

# registry_remaps: ` --remap-path-prefix=<dir>=/crates` for each of cargo's
# registry source folders, so paths into crates.io sources do not depend on
# CARGO_HOME (run `cargo fetch` first so they exist).
registry_remaps() {
    local d
    for d in "${CARGO_HOME:-$HOME/.cargo}/registry/src"/*/; do
        printf ' --remap-path-prefix=%s=/crates' "${d%/}"
    done
}

# forbid_insns OBJDUMP ELF MESSAGE MNEMONICS: fail with MESSAGE and the
# offending lines when `OBJDUMP -d ELF` has an instruction whose mnemonic
# matches the extended regex MNEMONICS (any `.w`-style suffix allowed).
# GNU objdump puts a tab after an instruction's address, llvm-objdump a
# space: both are matched.
forbid_insns() {
    local bad
    bad="$("$1" -d "$2" | grep -E '^ +[0-9a-f]+:[[:space:]]' \
        | grep -Ei $'\t('"$4"$')(\\.[a-z0-9.]+)?(\t| |$)' || true)"
    if [ -n "$bad" ]; then
        echo "error: $3:" >&2
        echo "$bad" >&2
        exit 1
    fi
}

# require_symbols OBJDUMP ELF WHAT SYMBOL...: fail naming the first SYMBOL
# that `OBJDUMP -t ELF` does not list.
require_symbols() {
    local objdump=$1 elf=$2 what=$3 syms s
    shift 3
    syms="$("$objdump" -t "$elf")"
    for s in "$@"; do
        grep -Eq "[[:space:]]$s\$" <<<"$syms" || { echo "error: $what: no symbol $s" >&2; exit 1; }
    done
}

# toolchain_info: the `## rustc -vV` and `## cargo -V` blocks of a
# BUILD-INFO file (tests/stub/committed_builds.rs compares the first).
toolchain_info() {
    echo "## rustc -vV"
    rustc -vV
    echo "## cargo -V"
    cargo -V
}

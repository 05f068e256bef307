#!/usr/bin/env bash
# Runs every test of extflash-gdb on a fresh Debian/Ubuntu machine.
#
# Installs what the tests need first:
#   - gdb-multiarch (end-to-end tests drive the real GDB), from the
#     distribution's packages;
#   - the thumbv7m-none-eabi Rust target (the committed SPI stub is rebuilt
#     and compared, so a stale build fails the run);
#   - pyOCD from PyPI (tests/loaders parse and run the generated .FLM with
#     pyOCD's own CMSIS-Pack parser).
# Then: formatting, clippy with warnings as errors, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v gdb-multiarch >/dev/null 2>&1; then
  echo "== installing gdb-multiarch"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gdb-multiarch >/dev/null
fi

if ! python3 -c "import pyocd" >/dev/null 2>&1; then
  echo "== installing pyocd (PyPI)"
  if ! command -v pip3 >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
  fi
  python3 -m pip install -q pyocd || python3 -m pip install -q --break-system-packages pyocd
fi

if ! rustup target list --installed | grep -qx thumbv7m-none-eabi; then
  echo "== installing the thumbv7m-none-eabi Rust target"
  rustup target add thumbv7m-none-eabi
fi
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^clippy' || rustup component add clippy

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace

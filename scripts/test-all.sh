#!/usr/bin/env bash
# Runs every test of extflash-gdb on a fresh Debian/Ubuntu machine.
#
# Installs what the tests need first:
#   - gdb-multiarch (end-to-end tests drive the real GDB), from the
#     distribution's packages;
#   - the thumbv7m-none-eabi Rust target (the committed SPI stub is rebuilt
#     and compared, so a stale build fails the run), and thumbv7em-none-eabi
#     for the conformance firmware (tests/conformance/, rebuilt the same way).
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

if ! rustup target list --installed | grep -qx thumbv7m-none-eabi; then
  echo "== installing the thumbv7m-none-eabi Rust target"
  rustup target add thumbv7m-none-eabi
fi
# The conformance firmware (tests/conformance/) is built for the soft-float
# Cortex-M4 target; its crates come from crates.io.
if ! rustup target list --installed | grep -qx thumbv7em-none-eabi; then
  echo "== installing the thumbv7em-none-eabi Rust target"
  rustup target add thumbv7em-none-eabi
fi
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^clippy' || rustup component add clippy

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace

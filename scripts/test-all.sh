#!/usr/bin/env bash
# Runs every test of extflash-gdb on a fresh Debian/Ubuntu machine.
#
# Installs what the tests need first:
#   - gdb-multiarch and lldb (end-to-end tests drive the real GDB and
#     LLDB), from the distribution's packages;
#   - the thumbv7m-none-eabi Rust target (the committed SPI stub is rebuilt
#     and compared, so a stale build fails the run), and thumbv7em-none-eabi
#     for the conformance firmware (tests/conformance/, rebuilt the same way);
#   - OpenOCD (distribution package) and pyOCD with its pyocd-bitbang probe
#     plugin (PyPI): the remote_bitbang tests run them against the virtual
#     board, and tests/loaders parse and run the generated .FLM with
#     pyOCD's own CMSIS-Pack parser.
# Then: formatting, clippy with warnings as errors, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: the real clients and debuggers the tests drive.
apt_missing=()
for tool in gdb-multiarch lldb openocd; do
  command -v "$tool" >/dev/null 2>&1 || apt_missing+=("$tool")
done
if ! python3 -m pip --version >/dev/null 2>&1; then apt_missing+=(python3-pip); fi
if [ "${#apt_missing[@]}" -gt 0 ]; then
  echo "== installing ${apt_missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

if ! command -v pyocd >/dev/null 2>&1 || ! python3 -m pip show -q pyocd-bitbang >/dev/null 2>&1; then
  echo "== installing pyocd and pyocd-bitbang (PyPI)"
  # Debian's Python refuses system-wide pip installs (PEP 668) unless told.
  python3 -m pip install -q pyocd pyocd-bitbang 2>/dev/null ||
    python3 -m pip install -q --break-system-packages pyocd pyocd-bitbang
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

#!/usr/bin/env bash
# Host-speed benchmark of issue 8: a full external-flash `load` (and
# `compare-sections`) by gdb-multiarch against `serve --sim`, timed on the
# wall clock, with the server's CPU time and peak RSS.
#
# Usage: scripts/bench-gdb-load.sh [SIZE_MIB] [SIM_LINK]   (defaults: 8, stlink-v2)
# Needs: gdb-multiarch, python3, /usr/bin/time; builds the release binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE_MIB="${1:-8}"
LINK="${2:-stlink-v2}"
PORT=3397
WORK="$(mktemp -d)"
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release --quiet
# An ELF32 ARM file with one loadable section of random bytes at the
# window (0x90000000).
python3 - "$WORK/image.elf" "$SIZE_MIB" <<'EOF'
import os, struct, sys
path, mib = sys.argv[1], int(sys.argv[2])
data = os.urandom(mib << 20)
names = b"\0.extflash\0.shstrtab\0"
base, eh, ph, sh = 0x90000000, 52, 32, 40
data_off = eh + ph
names_off = data_off + len(data)
sh_off = (names_off + len(names) + 3) & ~3
out = bytearray(b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8))
out += struct.pack("<HHIIIIIHHHHHH", 2, 40, 1, base, eh, sh_off, 0x05000000, eh, ph, 1, sh, 3, 2)
out += struct.pack("<8I", 1, data_off, base, base, len(data), len(data), 5, 4)
out += data + names
out += bytes(sh_off - len(out))
out += struct.pack("<10I", *([0] * 10))
out += struct.pack("<10I", 1, 1, 2 | 4, base, data_off, len(data), 0, 0, 4, 0)
out += struct.pack("<10I", 11, 3, 0, 0, names_off, len(names), 0, 0, 1, 0)
open(path, "wb").write(out)
EOF

/usr/bin/time -v -o "$WORK/server.time" \
  target/release/extflash-gdb serve --sim --sim-link "$LINK" --port "$PORT" \
  >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
  grep -q "listening\|Listening\|3397" "$WORK/server.log" 2>/dev/null && break
  sleep 0.1
done

START=$(date +%s.%N)
gdb-multiarch -q -batch -nx "$WORK/image.elf" \
  -ex "set remotetimeout 60" \
  -ex "target extended-remote :$PORT" \
  -ex "monitor reset halt" -ex "load" -ex "compare-sections" 2>&1 | grep -v "^Loading\|^Start" || true
END=$(date +%s.%N)
# SIGINT to the server itself (time's child): it shuts down and time reports.
pkill -INT -P "$SERVER" || true
for _ in $(seq 100); do
  kill -0 "$SERVER" 2>/dev/null || break
  sleep 0.1
done
wait "$SERVER" 2>/dev/null || true
echo "bench-gdb-load: ${SIZE_MIB} MiB on ${LINK}: wall $(awk -v a="$START" -v b="$END" 'BEGIN { printf "%.1f", b - a }') s"
grep -E "User time|Maximum resident" "$WORK/server.time" | sed 's/^\s*/server: /'

#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each on the stable toolchain, seeding
# the corpora from ltx-codec's test vectors. Exits non-zero if any target finds a crash.
#
#   fuzz/run.sh SECONDS [TARGET...]
set -euo pipefail

secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")"
vectors=../ltx-codec/tests/vectors
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(ltx_decode wal_parse lz4_roundtrip)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

seed() {
    mkdir -p corpus/ltx_decode corpus/wal_parse corpus/lz4_roundtrip
    for f in "$vectors"/*.ltx; do
        install -m 644 "$f" corpus/ltx_decode/
    done
    # wal_parse reads a mode byte first: bit 0 asks it to repair checksums.
    for mode in 0 1; do
        { printf "\\x0$mode"; cat "$vectors"/v6_wal_run2.wal; } >"corpus/wal_parse/v6_wal_mode$mode"
    done
    # Real SQLite pages are the inputs the compressor sees in production.
    split -b 4096 -a 3 "$vectors"/v7_restored_run1_latest.db corpus/lz4_roundtrip/v7_page_
}

max_len() {
    case $1 in
        wal_parse) echo 262144 ;;
        *) echo 65536 ;;
    esac
}

seed
failed=()
for t in "${targets[@]}"; do
    log=$(mktemp)
    echo "== $t: ${secs}s"
    # A sanitizer needs nightly; without one, libFuzzer still catches panics, aborts and hangs.
    if cargo fuzz run --sanitizer none "$t" -- \
        -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 >"$log" 2>&1; then
        grep -E '^Done [0-9]+ runs' "$log" || tail -n 5 "$log"
    else
        tail -n 60 "$log"
        failed+=("$t")
    fi
    rm -f "$log"
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi

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
    targets=(ltx_decode wal_parse lz4_roundtrip restore_plan)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

seed() {
    mkdir -p corpus/ltx_decode corpus/wal_parse corpus/lz4_roundtrip corpus/restore_plan
    for f in "$vectors"/*.ltx; do
        install -m 644 "$f" corpus/ltx_decode/
    done
    # wal_parse reads a mode byte first: bit 0 asks it to repair checksums.
    for mode in 0 1; do
        { printf "\\x0$mode"; cat "$vectors"/v6_wal_run2.wal; } >"corpus/wal_parse/v6_wal_mode$mode"
    done
    # Real SQLite pages are the inputs the compressor sees in production.
    split -b 4096 -a 3 "$vectors"/v7_restored_run1_latest.db corpus/lz4_roundtrip/v7_page_
    # restore_plan builds its replica from the input: a snapshot and two files that continue
    # it, unchanged, restore; libFuzzer mutates from there.
    printf '\x02\x03\x01\x00\x00\x02\x02\x11\x12\x13\x00\x01\x00\x00\x02\x02\x00\x01\x22\x00\x00\x01\x00\x00\x02\x01\x01\x31\x00' \
        >corpus/restore_plan/three_files
}

max_len() {
    case $1 in
        wal_parse) echo 262144 ;;
        restore_plan) echo 8192 ;;
        *) echo 65536 ;;
    esac
}

# The memory cap (MB): restore_plan must never size an allocation by an unchecked replica
# value, so a crafted Commit or index length that makes it hold much shows up as a crash.
rss_limit() {
    case $1 in
        restore_plan) echo 512 ;;
        *) echo 2048 ;;
    esac
}

seed
failed=()
for t in "${targets[@]}"; do
    log=$(mktemp)
    echo "== $t: ${secs}s"
    # A sanitizer needs nightly; without one, libFuzzer still catches panics, aborts and hangs.
    if cargo fuzz run --sanitizer none "$t" -- \
        -max_total_time="$secs" -max_len="$(max_len "$t")" -rss_limit_mb="$(rss_limit "$t")" \
        -timeout=10 >"$log" 2>&1; then
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

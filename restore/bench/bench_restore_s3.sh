#!/usr/bin/env bash
# Restore-from-S3 benchmark (not a test): a 1 GiB incompressible database replicated by the real
# `litestream replicate` to s3s-fs on 127.0.0.1, then restored by `litestream restore` and by
# `ls-restore` in the same run, A/B alternating, against what this server can deliver: `curl`
# fetching the planned objects to /dev/null with one GET each, and with 8 parallel ranged GETs
# (the fetch floor), and writing the database's bytes with direct I/O and one fsync (dd).
#
#   restore/bench/bench_restore_s3.sh [WORKDIR]   (needs: litestream, s3s-fs, curl, python3, cargo)
#
# The S3 server gets its own state directory (LS_S3_STATE_DIR, default /tmp/ls-s3-restore-bench)
# and is left running so the replica can be reused; `LS_S3_STATE_DIR=... tests/s3/stop.sh`
# stops it. Set LSR_ARGS for extra ls-restore flags, and LSR_BASE=/path/to/ls-restore to time
# another build (say, the previous commit's) in the same rounds. Outputs are kept until every
# round is done (writes right after a large delete are slow on a disk mounted with online
# discard), so WORKDIR needs about 4 x database size x ROUNDS free.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-/tmp/ls-restore-s3-bench}
SIZE_MIB=${SIZE_MIB:-1024}
ROUNDS=${ROUNDS:-3}
LIT=${LITESTREAM_BIN:-$(command -v litestream)}
export LS_S3_STATE_DIR=${LS_S3_STATE_DIR:-/tmp/ls-s3-restore-bench}
mkdir -p "$WORK"
cd "$WORK"

cargo build --release -q -p restore --manifest-path "$ROOT/Cargo.toml"
LSR="$ROOT/target/release/ls-restore"

if [ -f "$LS_S3_STATE_DIR/pid" ] && kill -0 "$(cat "$LS_S3_STATE_DIR/pid")" 2>/dev/null; then
  # shellcheck disable=SC1091
  source "$LS_S3_STATE_DIR/env"
else
  rm -f replica.done
  # shellcheck disable=SC1091
  source "$ROOT/tests/s3/start.sh"
fi
PREFIX=bench-restore-$SIZE_MIB
URL="s3://$LS_S3_BUCKET/$PREFIX?endpoint=$LS_S3_ENDPOINT&region=us-east-1&forcePathStyle=true"
export AWS_ACCESS_KEY_ID=$LS_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$LS_S3_SECRET_KEY

if [ ! -f db.sqlite ]; then
  python3 "$ROOT/restore/bench/make_db.py" db.sqlite "$SIZE_MIB"
fi

if [ ! -f replica.done ]; then
  # Litestream keeps per-database state beside the database: start from none.
  rm -rf .db.sqlite-litestream db.sqlite-litestream "$LS_S3_DATA_DIR/$LS_S3_BUCKET/$PREFIX"
  cat > litestream.yml <<YML
dbs:
  - path: $WORK/db.sqlite
    monitor-interval: 200ms
    replica:
      type: s3
      bucket: $LS_S3_BUCKET
      path: $PREFIX
      endpoint: $LS_S3_ENDPOINT
      region: us-east-1
      force-path-style: true
      access-key-id: $LS_S3_ACCESS_KEY
      secret-access-key: $LS_S3_SECRET_KEY
      sync-interval: 200ms
YML
  env -u AWS_CA_BUNDLE "$LIT" replicate -config litestream.yml > replicate.log 2>&1 &
  PID=$!
  FIRST="$LS_S3_DATA_DIR/$LS_S3_BUCKET/$PREFIX/0000/0000000000000001-0000000000000001.ltx"
  for _ in $(seq 1 1200); do
    [ -f "$FIRST" ] && break
    sleep 0.5
  done
  sleep 2
  kill -TERM "$PID"
  wait "$PID" || true
  [ -f "$FIRST" ] || { echo "litestream did not snapshot to S3" >&2; tail replicate.log >&2; exit 1; }
  touch replica.done
fi

# The planned objects, as keys and as files in the s3s-fs data directory.
PLAN=$(env -u AWS_CA_BUNDLE "$LSR" -dry-run -json -o x "$URL" | python3 -c '
import json, sys
p = json.load(sys.stdin)
print(" ".join("%04x/%s" % (f["level"], f["name"]) for f in p["files"]))')
FILES=""
for k in $PLAN; do FILES="$FILES $LS_S3_DATA_DIR/$LS_S3_BUCKET/$PREFIX/$k"; done
REPLICA_BYTES=$(cat $FILES | wc -c)
DB_BYTES=$(stat -c %s db.sqlite)

# curl GETs of the planned objects, SigV4-signed by curl itself.
curl_get() {
  curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$LS_S3_ACCESS_KEY:$LS_S3_SECRET_KEY" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" "$@"
}
curl_full() {
  local k
  for k in $PLAN; do curl_get -o /dev/null "$LS_S3_ENDPOINT/$LS_S3_BUCKET/$PREFIX/$k"; done
}
# N parallel ranged GETs covering each object (one range per connection).
curl_ranged() {
  local n=$1 k size part i pids=()
  for k in $PLAN; do
    size=$(stat -c %s "$LS_S3_DATA_DIR/$LS_S3_BUCKET/$PREFIX/$k")
    part=$(( (size + n - 1) / n ))
    for i in $(seq 0 $((n - 1))); do
      [ $((i * part)) -lt "$size" ] || continue
      curl_get -o /dev/null -H "Range: bytes=$((i * part))-$(( (i + 1) * part - 1 ))" \
        "$LS_S3_ENDPOINT/$LS_S3_BUCKET/$PREFIX/$k" &
      pids+=($!)
    done
    wait "${pids[@]}"
  done
}

# shellcheck source=restore/bench/common.sh
source "$ROOT/restore/bench/common.sh"

rm -rf out; mkdir out; sync; sleep 2
: > times.txt
for round in $(seq 1 "$ROUNDS"); do
  cat $FILES > /dev/null
  T_LIT=$(t env -u AWS_CA_BUNDLE "$LIT" restore -o "out/lit$round.db" "$URL")
  cat $FILES > /dev/null
  # shellcheck disable=SC2086
  T_LS=$(t /usr/bin/time -f '%M' -o rss.txt env -u AWS_CA_BUNDLE "$LSR" ${LSR_ARGS:-} -o "out/ls$round.db" "$URL")
  RSS_KB=$(tail -1 rss.txt)
  cmp "out/lit$round.db" "out/ls$round.db"
  T_BASE=0
  if [ -n "${LSR_BASE:-}" ]; then
    cat $FILES > /dev/null
    T_BASE=$(t env -u AWS_CA_BUNDLE "$LSR_BASE" -o "out/base$round.db" "$URL")
    cmp "out/lit$round.db" "out/base$round.db"
  fi
  cat $FILES > /dev/null
  T_CURL=$(t curl_full)
  T_CURL8=$(t curl_ranged 8)
  T_WRITE=$(t dd if=/dev/zero of="out/dd$round.db" bs=4M count=$((DB_BYTES / 4194304)) oflag=direct conv=fsync status=none)
  echo "$T_LIT $T_LS $T_CURL $T_CURL8 $T_WRITE $RSS_KB $T_BASE" >> times.txt
  printf 'round %d: litestream %.2f s, ls-restore %.2f s (peak RSS %d MB), curl 1 GET %.2f s, curl 8 ranged GETs %.2f s, direct write+fsync %.2f s\n' \
    "$round" "$T_LIT" "$T_LS" $((RSS_KB / 1024)) "$T_CURL" "$T_CURL8" "$T_WRITE"
  [ -z "${LSR_BASE:-}" ] || printf '         %s %.2f s\n' "$LSR_BASE" "$T_BASE"
done
rm -rf out
col() { cut -d' ' -f"$1" times.txt | median; }
T_LIT=$(col 1); T_LS=$(col 2); T_CURL=$(col 3); T_CURL8=$(col 4); T_WRITE=$(col 5); T_BASE=$(col 7)
printf 'medians of %d rounds; database %d bytes, planned objects %d bytes, %d cores\n' \
  "$ROUNDS" "$DB_BYTES" "$REPLICA_BYTES" "$(nproc)"
printf 'litestream restore        %6.2f s\n' "$T_LIT"
printf 'ls-restore                %6.2f s   (%.2fx faster than litestream)\n' "$T_LS" "$(echo "$T_LIT / $T_LS" | bc -l)"
[ -z "${LSR_BASE:-}" ] || printf '%-25s %6.2f s   (%.2fx faster than litestream)\n' "$(basename "$LSR_BASE")" "$T_BASE" "$(echo "$T_LIT / $T_BASE" | bc -l)"
printf 'curl, 1 GET per object    %6.2f s\n' "$T_CURL"
printf 'curl, 8 ranged GETs       %6.2f s   (fetch floor; ls-restore is %.2fx of it)\n' "$T_CURL8" "$(echo "$T_LS / $T_CURL8" | bc -l)"
printf 'direct write + fsync      %6.2f s\n' "$T_WRITE"

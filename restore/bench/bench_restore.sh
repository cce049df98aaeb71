#!/usr/bin/env bash
# Restore benchmark (not a test): a 1 GiB incompressible database replicated by the real
# `litestream replicate` into a file replica, then restored by `litestream restore` and by
# `ls-restore` in the same run, against a floor of reading the replica bytes plus writing the
# database bytes (with fsync) on this machine.
#
#   restore/bench/bench_restore.sh [WORKDIR]      (needs: litestream, python3, cargo)
#
# Every timing is with a warm page cache for the replica (it is read once first), the same
# for all three, because dropping caches needs privileges a container may not have.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-$(mktemp -d /tmp/ls-restore-bench.XXXXXX)}
SIZE_MIB=${SIZE_MIB:-1024}
LIT=${LITESTREAM_BIN:-$(command -v litestream)}
mkdir -p "$WORK"
cd "$WORK"

cargo build --release -q -p restore --manifest-path "$ROOT/Cargo.toml"
LSR="$ROOT/target/release/ls-restore"

# shellcheck source=restore/bench/common.sh
source "$ROOT/restore/bench/common.sh"
make_file_replica "$ROOT" "$WORK" "$SIZE_MIB" "$LIT"

# The floor reads exactly the files the restore plan reads.
PLAN=$("$LSR" -dry-run -json -o x "file://$WORK/replica" | python3 -c '
import json, sys
p = json.load(sys.stdin)
print(" ".join("replica/ltx/%d/%s" % (f["level"], f["name"]) for f in p["files"]))')
REPLICA_BYTES=$(cat $PLAN | wc -c)
DB_BYTES=$(stat -c %s db.sqlite)

ROUNDS=${ROUNDS:-3}
# The file system may be mounted with online discard, which makes writes right after a large
# delete slow; so nothing is deleted until every round is done.
rm -rf out; mkdir out; sync; sleep 2
: > times.txt
for round in $(seq 1 "$ROUNDS"); do
  cat $PLAN > /dev/null
  T_LIT=$(t env -u AWS_CA_BUNDLE "$LIT" restore -o "out/lit$round.db" "file://$WORK/replica")
  cat $PLAN > /dev/null
  T_LS=$(t "$LSR" -o "out/ls$round.db" "file://$WORK/replica")
  cmp "out/lit$round.db" "out/ls$round.db"
  T_READ=$(t sh -c "cat $PLAN > /dev/null")
  sync; sleep 1
  T_WRITE=$(python3 "$ROOT/restore/bench/floor_write.py" "out/floor$round.db" "$DB_BYTES")
  T_DD=$(t dd if=/dev/zero of="out/dd$round.db" bs=4M count=$((DB_BYTES / 4194304)) conv=fsync status=none)
  echo "$T_LIT $T_LS $T_READ $T_WRITE $T_DD" >> times.txt
  printf 'round %d: litestream %.2f s, ls-restore %.2f s, read %.2f s, write+fsync %.2f s (dd conv=fsync %.2f s)\n' \
    "$round" "$T_LIT" "$T_LS" "$T_READ" "$T_WRITE" "$T_DD"
done
rm -rf out
T_LIT=$(cut -d' ' -f1 times.txt | median)
T_LS=$(cut -d' ' -f2 times.txt | median)
T_READ=$(cut -d' ' -f3 times.txt | median)
T_WRITE=$(cut -d' ' -f4 times.txt | median)
T_FLOOR=$(echo "$T_READ + $T_WRITE" | bc)

printf 'medians of %d rounds; database %d bytes, planned replica files %d bytes, %d cores\n' \
  "$ROUNDS" "$DB_BYTES" "$REPLICA_BYTES" "$(nproc)"
printf 'litestream restore  %6.2f s\n' "$T_LIT"
printf 'ls-restore          %6.2f s   (%.1fx faster than litestream)\n' "$T_LS" "$(echo "$T_LIT / $T_LS" | bc -l)"
printf 'floor (read+write)  %6.2f s   (read %.2f + write/fsync %.2f); ls-restore is %.2fx the floor\n' \
  "$T_FLOOR" "$T_READ" "$T_WRITE" "$(echo "$T_LS / $T_FLOOR" | bc -l)"

#!/usr/bin/env bash
# Encrypted restore benchmark (not a test): the 1 GiB file replica of bench_restore.sh, and a copy
# of it whose every LTX file is encrypted by hand with the real `age -r` (the layout of an
# encrypted replica: same names, age files whose plaintext is the LTX file). `ls-restore`
# restores both in the same run, alternating, and the outputs are compared; issue 16 asks the
# encrypted restore to stay within 1.3x of the plain one.
#
#   [LS_RESTORE_BIN=PATH] restore/bench/bench_restore_age.sh [WORKDIR]
#       (needs: litestream, age, age-keygen, python3, cargo)
#
# As in bench_restore.sh, every timing starts with the replica's files read once (warm cache).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-$(mktemp -d /tmp/ls-restore-bench.XXXXXX)}
SIZE_MIB=${SIZE_MIB:-1024}
LIT=${LITESTREAM_BIN:-$(command -v litestream)}
mkdir -p "$WORK"

# LS_RESTORE_BIN names a build to use instead (both restores use the same one).
LSR=${LS_RESTORE_BIN:-}
if [ -z "$LSR" ]; then
  cargo build --release -q -p restore --manifest-path "$ROOT/Cargo.toml"
  LSR="$ROOT/target/release/ls-restore"
fi

# shellcheck source=restore/bench/common.sh
source "$ROOT/restore/bench/common.sh"
make_file_replica "$ROOT" "$WORK" "$SIZE_MIB" "$LIT"

if [ ! -f age.key ]; then
  age-keygen -o age.key 2> /dev/null
fi
RECIPIENT=$(age-keygen -y age.key)
if [ ! -d replica-age ]; then
  rm -rf replica-age.tmp
  (cd replica && find . -type f -name '*.ltx') | while read -r f; do
    mkdir -p "replica-age.tmp/$(dirname "$f")"
    age -r "$RECIPIENT" -o "replica-age.tmp/$f" "replica/$f"
  done
  mv replica-age.tmp replica-age
fi
PLAIN=$(find replica -type f -name '*.ltx')
SEALED=$(find replica-age -type f -name '*.ltx')
PLAIN_BYTES=$(cat $PLAIN | wc -c)
SEALED_BYTES=$(cat $SEALED | wc -c)

ROUNDS=${ROUNDS:-3}
rm -rf out; mkdir out; sync; sleep 2
: > times-age.txt
for round in $(seq 1 "$ROUNDS"); do
  cat $PLAIN > /dev/null
  T_PLAIN=$(t "$LSR" -o "out/plain$round.db" "file://$WORK/replica")
  cat $SEALED > /dev/null
  T_AGE=$(t "$LSR" -age-identity age.key -o "out/age$round.db" "file://$WORK/replica-age")
  cmp "out/plain$round.db" "out/age$round.db"
  echo "$T_PLAIN $T_AGE" >> times-age.txt
  printf 'round %d: plain %.2f s, encrypted %.2f s\n' "$round" "$T_PLAIN" "$T_AGE"
done
rm -rf out
T_PLAIN=$(cut -d' ' -f1 times-age.txt | median)
T_AGE=$(cut -d' ' -f2 times-age.txt | median)

printf 'medians of %d rounds; replica files %d bytes plain, %d encrypted; %d cores\n' \
  "$ROUNDS" "$PLAIN_BYTES" "$SEALED_BYTES" "$(nproc)"
printf 'ls-restore, plain replica      %6.2f s\n' "$T_PLAIN"
printf 'ls-restore, encrypted replica  %6.2f s   (%.2fx the plain restore; target <= 1.3x)\n' \
  "$T_AGE" "$(echo "$T_AGE / $T_PLAIN" | bc -l)"

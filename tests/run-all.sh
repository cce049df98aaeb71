#!/usr/bin/env bash
# Runs every test of the project: format and lint checks, unit and end-to-end tests against the
# real Litestream 0.5.17 and real servers on 127.0.0.1, the slow suites, and a short fuzz run.
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install.sh

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

servers=()
cleanup() {
  for s in "${servers[@]}"; do bash "tests/$s/stop.sh" || true; done
}
trap cleanup EXIT
for s in s3 gcs abs sftp webdav nats; do
  if [ -f "tests/$s/start.sh" ]; then
    # shellcheck disable=SC1090
    source "tests/$s/start.sh"
    servers+=("$s")
  fi
done

export LS_INTEROP=1 LS_SLOW=1
echo "== cargo test (release, with interop and slow suites)"
cargo test --release --workspace --no-fail-fast

if [ -x fuzz/run.sh ]; then
  echo "== fuzz (short)"
  fuzz/run.sh "${LS_FUZZ_SECONDS:-20}"
fi
echo "all suites passed"

#!/usr/bin/env bash
# Runs every test of the project: format and lint checks, unit and end-to-end tests against the
# real Litestream 0.5.17 and real servers on 127.0.0.1, the slow suites, the short benches, the
# Debian package, and a short fuzz run. This is the README's test command; .ci/run calls it.
# Prints how long each phase took.
#
# The end-to-end tests spend most of their time waiting (sync intervals, servers, idle windows),
# so while they run, the tools only later phases need are built in the background on one core.
set -euo pipefail
cd "$(dirname "$0")/.."

phases=()
t_all=$SECONDS
phase() { # phase NAME COMMAND... : runs COMMAND and records its duration under NAME
  local name=$1 t=$SECONDS
  shift
  echo "== $name"
  "$@"
  phases+=("$(printf '%-44s %5ds' "$name" $((SECONDS - t)))")
}
report() {
  echo "== phase durations"
  local p
  for p in "${phases[@]}"; do echo "  $p"; done
  printf '  %-44s %5ds\n' total $((SECONDS - t_all))
  echo "== disk: $(df -P -h "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 " free of " $2 }') in ${TMPDIR:-/tmp}"
}

servers=()
background=""
cleanup() {
  local s
  [ -z "$background" ] || kill "$background" 2>/dev/null || true
  for s in "${servers[@]}"; do bash "tests/$s/stop.sh" || true; done
}
trap 'cleanup; report' EXIT

phase "install (Litestream, test servers)" bash tests/install.sh
phase "cargo fmt" cargo fmt --all -- --check
# The ci profile, like the test build below, so both share build-script outputs (the bundled
# SQLite, ring, libssh2 are compiled once).
phase "cargo clippy" cargo clippy --profile ci --workspace --all-targets -- -D warnings

start_servers() {
  local s
  for s in s3 gcs abs sftp webdav nats sts; do
    if [ -f "tests/$s/start.sh" ]; then
      # shellcheck disable=SC1090
      source "tests/$s/start.sh"
      servers+=("$s")
    fi
  done
}
phase "start test servers" start_servers

# The tests build with the `ci` profile (release optimisation, no LTO): see Cargo.toml. Tests
# that need a server, the real Litestream, root or a long run are #[ignore]d with the reason, so
# a plain `cargo test` skips them visibly; here every one of them runs, and one whose server is
# missing fails. LS_SLOW=1 lengthens the loops of the crash and fault suites.
export LS_SLOW=1
have_nextest=0
cargo nextest --version >/dev/null 2>&1 && have_nextest=1
if [ $have_nextest = 1 ]; then
  phase "build tests (profile ci)" cargo nextest run --cargo-profile ci --workspace --no-run
else
  echo "cargo-nextest is not installed; running the suites with cargo test"
  phase "build tests (profile ci)" cargo test --profile ci --workspace --no-run
fi

# In the background at the lowest CPU priority: cargo-deb and cargo-fuzz, then the fuzz targets'
# build. Niced rather than held to one core, so they take what the waiting tests leave and both
# cores once the tests are done (on one core the fuzz build outlasted the tests by minutes).
late_tools() {
  nice -n 19 bash tests/install.sh --late &&
    (cd fuzz && nice -n 19 cargo fuzz build --sanitizer none)
}
late_tools >target/late-tools.log 2>&1 &
background=$!

# The 10 GiB follow test needs about 11 GiB of its own in $TMPDIR, beside one more big-disk test
# (nextest.toml) and the rest. On a smaller disk it is left out and said so: not run, not passed.
tmp_free_gib() { df -P -BG "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 + 0 }'; }
big_test=follow_bounds::issue14_9_follow_applies_a_10_gib_file_in_bounded_memory
only=()
echo "== $(tmp_free_gib) GiB free in ${TMPDIR:-/tmp} before the tests"
if [ "$(tmp_free_gib)" -lt 24 ]; then
  echo "SKIPPED $big_test: only $(tmp_free_gib) GiB free in ${TMPDIR:-/tmp} (needs 24)"
  only=(-E "not test(=$big_test)")
fi
if [ $have_nextest = 1 ]; then
  phase "run tests (nextest, all suites)" \
    cargo nextest run --cargo-profile ci --workspace --profile ci --no-fail-fast --run-ignored all \
    "${only[@]}"
else
  phase "run tests (cargo test, all suites)" \
    cargo test --profile ci --workspace --no-fail-fast -- --include-ignored --skip crash::writer_child
fi

wait_late_tools() {
  local rc=0
  wait "$background" || rc=$?
  background=""
  [ $rc = 0 ] || { tail -n 60 target/late-tools.log; return $rc; }
}
phase "wait for cargo-deb, cargo-fuzz, fuzz build" wait_late_tools

# Every criterion bench in a short mode, compared with the committed baseline
# (benches/README.md). A regression is a warning; a bench that fails to build or panics fails.
bench_short() {
  export CRITERION_HOME="$PWD/target/criterion-short"
  rm -rf "$CRITERION_HOME"
  cargo bench --profile ci -p benches --bench codec -- \
    --warm-up-time 0.5 --measurement-time 1.5 --noplot >target/bench-short.log 2>&1 ||
    { tail -n 40 target/bench-short.log; return 1; }
  cargo run --profile ci -q -p benches --bin bench-report
}
phase "benches (short, vs baseline)" bench_short

# The Debian package: built from the test build's binaries, installed, checked, purged.
phase "package (.deb install, run, purge)" bash tests/package/test.sh ci

if [ -x fuzz/run.sh ]; then
  phase "fuzz (short)" fuzz/run.sh "${LS_FUZZ_SECONDS:-20}"
fi
echo "all suites passed"

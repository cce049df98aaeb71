# Helpers shared by the restore benchmark scripts (sourced).

# Seconds taken by a command, started from a quiet disk: earlier writes and deletions are
# flushed first, so that no step pays for the previous one's writeback.
t() { local s e; sync; sleep 1; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc; }

# The median of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Makes (once) `$work/db.sqlite`, a database of `$size_mib` MiB of incompressible rows, and
# `$work/replica`, its file replica written by the real `litestream replicate` at `$lit`.
make_file_replica() {
  local root=$1 work=$2 size_mib=$3 lit=$4 pid
  cd "$work"
  [ -f replica/ltx/0/0000000000000001-0000000000000001.ltx ] && return 0
  rm -rf db.sqlite* replica
  python3 "$root/restore/bench/make_db.py" db.sqlite "$size_mib"
  printf 'dbs:\n  - path: %s/db.sqlite\n    monitor-interval: 200ms\n    replica:\n      type: file\n      path: %s/replica\n      sync-interval: 200ms\n' \
    "$work" "$work" > litestream.yml
  env -u AWS_CA_BUNDLE "$lit" replicate -config litestream.yml > replicate.log 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    [ -f replica/ltx/0/0000000000000001-0000000000000001.ltx ] && break
    sleep 0.5
  done
  sleep 1
  kill -TERM "$pid"
  wait "$pid" || true
}

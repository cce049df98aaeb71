# Helpers shared by the restore benchmark scripts (sourced).

# Seconds taken by a command, started from a quiet disk: earlier writes and deletions are
# flushed first, so that no step pays for the previous one's writeback.
t() { local s e; sync; sleep 1; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc; }

# The median of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

#!/usr/bin/env bash
# nvmux-perf and nvmux-msgbench against a table of bad (and hostile) inputs (issue 12). Each row
# runs one tool with a time bound and asserts: the exit code, that the message names the flag or
# the path, that it finished within its bound (no hang), and that nothing was left behind (files
# in the scratch directory, the process, DPDK runtime directories). New flags join the table.
#
#   cli_bad_input_test.sh PATH/TO/nvmux-perf PATH/TO/nvmux-msgbench
set -u
perf=$1
msgbench=$2
scratch=$(mktemp -d /tmp/nvmux-cli-bad-input.XXXXXX)
small_fs=""
failures=0
cases=0
# No EXIT trap: background subshells inherit it, and one killed early runs it (removing the
# scratch directory under the remaining cases). The end of the script cleans up.
after() { (sleep "$1"; shift; eval "$@") >/dev/null 2>&1 & }

# run_case EXIT PATTERN BOUND_S [--signal SIG AFTER_S] [--during CMD AFTER_S] [--creates NAME] -- TOOL ARGS...
# --creates: a file the case makes on purpose (its namespace, its JSON); checked, then removed.
run_case() {
  local want_rc=$1 pattern=$2 bound=$3
  shift 3
  local signal="" signal_after=0 during="" during_after=0 creates=".out"
  while [ "$1" != "--" ]; do
    case $1 in
      --creates) creates="$creates|$2"; shift 2 ;;
      --signal) signal=$2 signal_after=$3; shift 3 ;;
      --during) during=$2 during_after=$3; shift 3 ;;
    esac
  done
  shift
  cases=$((cases + 1))
  local before out start pid rc elapsed
  before=$(ls -A "$scratch" | sort)
  out="$scratch/.out"
  start=$(date +%s.%N)
  "$@" >"$out" 2>&1 &
  pid=$!
  after "$bound" kill -9 "$pid"
  local watchdog=$!
  if [ -n "$during" ]; then after "$during_after" "$during"; fi
  if [ -n "$signal" ]; then after "$signal_after" kill "-$signal" "$pid"; fi
  wait "$pid"
  rc=$?
  kill "$watchdog" 2>/dev/null
  wait "$watchdog" 2>/dev/null
  elapsed=$(echo "$(date +%s.%N) - $start" | bc)
  local why=""
  if [ "$rc" = 137 ]; then
    why="did not finish within ${bound} s"
  elif ! echo "$rc" | grep -Eqx -- "$want_rc"; then  # EXIT may be an alternation: 0|1
    why="exit $rc, expected $want_rc"
  elif ! grep -Eq -- "$pattern" "$out"; then
    why="output does not match /$pattern/"
  fi
  local after
  after=$(ls -A "$scratch" | grep -Ev "^($creates)\$" | sort)
  if [ -z "$why" ] && [ "$after" != "$before" ]; then
    why="left behind in the scratch directory: $(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')"
  fi
  if [ -z "$why" ] && [ -e "/var/run/dpdk/nvmux-msgbench-$pid" ]; then
    why="left /var/run/dpdk/nvmux-msgbench-$pid behind"
  fi
  if [ -z "$why" ] && kill -0 "$pid" 2>/dev/null; then why="process $pid still alive"; fi
  if [ -n "$why" ]; then
    failures=$((failures + 1))
    echo "FAIL [$*]: $why ($(printf '%.1f' "$elapsed") s)"
    sed 's/^/    | /' "$out" | tail -8
  else
    echo "ok   [$*] -> $rc ($(printf '%.1f' "$elapsed") s)"
  fi
  rm -f "$out"
}

ram="--ns ram:size=16M"
p() { run_case "$@"; }

# ---- nvmux-perf: usage errors (exit 2, the flag named) ----
p 2 "nvmux-perf: .*--bogus" 10 -- "$perf" --bogus
p 2 "nvmux-perf: .*queue-depth" 10 -- "$perf" -q abc
p 2 "-q 2000.*1\.\.1023" 10 -- "$perf" $ram -q 2000
p 2 "-q 0" 10 -- "$perf" $ram -q 0
p 2 "-t inf" 10 -- "$perf" $ram -t inf
p 2 "-t 1e\+308" 10 -- "$perf" $ram -t 1e308
p 2 "-t 0" 10 -- "$perf" $ram -t 0
p 2 "-t nan" 10 -- "$perf" $ram -t nan
p 2 "--emu-latency-us 4000000000" 10 -- "$perf" $ram --emu-latency-us 4000000000
p 2 "--cores '0-2147483647'" 10 -- "$perf" $ram --cores 0-2147483647
p 2 "--cores '3-1'" 10 -- "$perf" $ram --cores 3-1
p 2 "--cores '1a'" 10 -- "$perf" $ram --cores 1a
p 2 "--cores '0-1-5'" 10 -- "$perf" $ram --cores 0-1-5
p 2 "--cores ''" 10 -- "$perf" $ram --cores ''
p 2 "--emu-engine-core 99" 10 -- "$perf" $ram --emu-engine-core 99
p 2 "rwmixread.*150" 10 -- "$perf" $ram -w randrw -M 150
p 2 "rwmixread.*-5" 10 -- "$perf" $ram -w randread -M -5
p 2 "-M applies" 10 -- "$perf" $ram -w randread -M 50
p 2 "--qpairs 65" 10 -- "$perf" $ram --qpairs 65
p 2 "-o 1048576000" 10 -- "$perf" $ram -o 1048576000
p 2 "--buffered does not apply" 10 -- "$perf" $ram --buffered
p 2 "--sqpoll does not apply" 10 -- "$perf" $ram --sqpoll
p 2 "--socket does not apply" 10 -- "$perf" $ram --socket /nonexistent
p 2 "--emu-latency-us does not apply" 10 -- "$perf" --backend uring --ns "file:$scratch/u.img,size=16M" \
  --emu-latency-us 5
p 2 "--verify: namespace 'null:size=64M'" 10 -- "$perf" --ns null:size=64M -w randrw --verify
p 2 "--ns given 1025 times" 20 -- "$perf" $(for _ in $(seq 1025); do echo --ns ram:size=1M; done) -t 0.1
p 2 "--json $scratch/missing/r.json: directory" 10 -- "$perf" $ram -t 0.2 --json "$scratch/missing/r.json"
p 2 "--json $scratch: a directory" 10 -- "$perf" $ram -t 0.2 --json "$scratch"
p 2 "size 'banana' is not a number" 10 -- "$perf" --ns ram:size=banana
# Namespace files that cannot be used as given: the path named, nothing created or left.
p 2 "/dev/null is a special file" 10 -- "$perf" --ns file:/dev/null -t 0.2
p 2 "$scratch is a directory" 10 -- "$perf" --ns "file:$scratch" -t 0.2
: >"$scratch/empty.img"
p 2 "empty.img is empty" 10 -- "$perf" --ns "file:$scratch/empty.img" -t 0.2
head -c 5000 /dev/zero >"$scratch/odd.img"
p 2 "odd.img holds 5000 bytes, not a multiple" 10 -- "$perf" --ns "file:$scratch/odd.img" -t 0.2
p 2 "odd.img holds 5000 bytes, not a multiple" 10 -- "$perf" --backend uring --ns "file:$scratch/odd.img" -t 0.2
rm -f "$scratch/empty.img" "$scratch/odd.img"
# An argument error found once the device is open: the file this run created is removed again.
p 2 "-o 2097152: above the device" 10 -- "$perf" --ns "file:$scratch/new.img,size=64M" -o 2097152 -t 0.2

# ---- nvmux-perf: runs that must not lie (exit 1, the reason named) ----
p 1 "--json: cannot write /dev/full: No space left" 10 -- "$perf" $ram -t 0.2 --json /dev/full
p 1 "no I/O completed" 10 -- "$perf" $ram -t 0.2 --emu-latency-us 1000000
p 0 "write-only workload reads nothing back" 10 -- "$perf" $ram -t 0.2 -w write --verify
p 0 "blocks read back and checked, 0 mismatching" 15 -- "$perf" $ram -t 0.3 -w randrw --verify
# A file truncated underneath: I/O errors with the first one's LBA and cause, never SIGBUS.
p 1 "first: .*LBA [0-9]+.*Input/output error" 15 --during ": > $scratch/t.img" 1 --creates t.img -- \
  "$perf" --ns "file:$scratch/t.img,size=64M" -w randread -t 2
rm -f "$scratch/t.img"
p 1 "first: .*LBA [0-9]+" 15 --during ": > $scratch/t.img" 1 --creates t.img -- \
  "$perf" --backend uring --ns "file:$scratch/t.img,size=64M" -w randread -t 2
rm -f "$scratch/t.img"
# Two verifying runs on one file: the second refuses, naming the first.
"$perf" --ns "file:$scratch/shared.img,size=64M" -w randrw --verify -t 4 >/dev/null 2>&1 &
first=$!
sleep 1.5
p 1 "locked by another verifying run \(pid $first" 10 -- "$perf" --ns "file:$scratch/shared.img,size=64M" \
  -w randrw --verify -t 1
wait "$first"
rm -f "$scratch/shared.img"
# A small filesystem: refused at start (where a tmpfs can be mounted).
if mkdir -p "$scratch/small" && mount -t tmpfs -o size=1m tmpfs "$scratch/small" 2>/dev/null; then
  small_fs="$scratch/small"
  p 1 "ns.img: no room for the namespace" 10 -- "$perf" --ns "file:$small_fs/ns.img,size=16M" -w randwrite -t 1
  p 1 "ns.img: no room for its" 10 -- "$perf" --backend uring --ns "file:$small_fs/ns.img,size=16M" -t 1
  umount "$small_fs" && small_fs=""
else
  echo "skip the small-filesystem cases: cannot mount a tmpfs here"
fi
rmdir "$scratch/small" 2>/dev/null
# Signals: partial results marked, JSON written, 128 + N.
p 130 "INTERRUPTED by signal 2" 15 --signal INT 1.5 --creates int.json -- "$perf" $ram -t 30 --json "$scratch/int.json"
grep -q '"interrupted": true' "$scratch/int.json" || { echo "FAIL: SIGINT JSON not marked interrupted"; failures=$((failures + 1)); }
rm -f "$scratch/int.json"
p 143 "INTERRUPTED by signal 15" 15 --signal TERM 1.5 -- "$perf" --ns ram:size=256M -w randrw --verify -t 30

# ---- nvmux-msgbench ----
mb=(--modes mutex --producers 1 --consumers 1 --duration 0.2 --quiet)
p 2 "nvmux-msgbench: .*--bogus" 10 -- "$msgbench" --bogus
p 2 "nvmux-msgbench: .*--work-ns" 10 -- "$msgbench" "${mb[@]}" --work-ns -1
p 2 "nvmux-msgbench: .*--work-ns" 10 -- "$msgbench" "${mb[@]}" --work-ns 1000000000000
p 2 "nvmux-msgbench: .*--duration" 10 -- "$msgbench" "${mb[@]}" --duration 0
p 2 "nvmux-msgbench: .*--producers" 10 -- "$msgbench" "${mb[@]}" --producers 0
p 2 "nvmux-msgbench: unknown mode 'nosuch'" 10 -- "$msgbench" --modes nosuch
p 2 "nvmux-msgbench: --json $scratch/missing/r.json" 10 -- "$msgbench" "${mb[@]}" --json "$scratch/missing/r.json"
p 1 "nvmux-msgbench: --json: cannot write /dev/full: No space left" 20 -- "$msgbench" "${mb[@]}" --json /dev/full
if "$msgbench" --list-modes | grep -q '^spdk .*built'; then
  p 2 "nvmux-msgbench: .*consumers.*cores" 10 -- "$msgbench" --modes spdk --producers 1 --consumers 64 --quiet
  p 0 "spdk" 60 -- "$msgbench" --modes spdk --producers 1 --consumers 2 --duration 0.2 --quiet
  # Signals: the current point cut short, the points that ran printed and written (marked
  # interrupted), the EAL shut down (no /var/run/dpdk/nvmux-msgbench-<pid>: run_case checks), 128 + N.
  p 130 "INTERRUPTED by signal 2 after 1 of 4 points" 30 --signal INT 2 --creates int.json -- "$msgbench" \
    --modes spdk,mutex --producers 1,2 --consumers 1 --duration 10 --quiet --json "$scratch/int.json"
  grep -q '"interrupted": true' "$scratch/int.json" || { echo "FAIL: msgbench SIGINT JSON not marked interrupted"; failures=$((failures + 1)); }
  rm -f "$scratch/int.json"
  p 143 "interrupted: a [0-9.]+ s window" 30 --signal TERM 2 --creates term.json -- "$msgbench" \
    --modes spdk --producers 2 --consumers 1 --duration 10 --quiet --json "$scratch/term.json"
  grep -q '"interrupted_by_signal": 15' "$scratch/term.json" || { echo "FAIL: msgbench SIGTERM JSON not written"; failures=$((failures + 1)); }
  rm -f "$scratch/term.json"
  # 1024 producers on spdk: the convoy in DPDK's ring tail wait unwinds one time slice per
  # producer; the point ends within its bound (attach 10 s + warm-up + window + exit limit 10 s +
  # drain 2 s), abandoned (exit 1) when producers are still stuck at the exit limit.
  p "0|1" "1024  spdk .*(ok|STALLED)" 45 -- "$msgbench" --modes spdk --producers 1024 --consumers 1 --duration 0.2 --quiet
fi
# Signals without DPDK too (mutex only), and a signal before the first point's window.
p 130 "INTERRUPTED by signal 2" 20 --signal INT 1 --creates int2.json -- "$msgbench" --modes mutex --producers 1 --consumers 1 --duration 10 --quiet \
  --json "$scratch/int2.json"
grep -q '"interrupted": true' "$scratch/int2.json" || { echo "FAIL: msgbench SIGINT JSON (mutex) not marked"; failures=$((failures + 1)); }
rm -f "$scratch/int2.json"

rm -rf "$scratch"
echo "$cases cases, $failures failed"
[ "$failures" = 0 ]

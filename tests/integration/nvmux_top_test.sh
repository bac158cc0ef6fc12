#!/usr/bin/env bash
# nvmux-top in a real terminal: run it in a detached tmux session beside an nvmuxd serving one
# client, read the screen with capture-pane, switch views with keys, and quit with q.
# Usage: nvmux_top_test.sh NVMUXD NVMUX_TOP NVMUX_VERIFY
set -euo pipefail
nvmuxd=$1 top=$2 verify=$3
if ! command -v tmux >/dev/null; then
  echo "SKIP: tmux is not installed (scripts/setup-deps installs it)"
  exit 77
fi
dir=$(mktemp -d)
sock=$dir/nvmuxd.sock
tmux_sock=nvmux-top-test-$$
cleanup() {
  tmux -L "$tmux_sock" kill-server 2>/dev/null || true
  [ -n "${dpid:-}" ] && kill "$dpid" 2>/dev/null || true
  [ -n "${vpid:-}" ] && kill "$vpid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$nvmuxd" --socket "$sock" --ns ram:size=64M --cores 0 --log-level error > "$dir/nvmuxd.out" &
dpid=$!
for _ in $(seq 100); do grep -q "ready on" "$dir/nvmuxd.out" 2>/dev/null && break; sleep 0.1; done
"$verify" --socket "$sock" -t 20 --quiet > /dev/null &
vpid=$!

screen_has() {  # waits up to 5 s for the pane to show $1
  for _ in $(seq 50); do
    tmux -L "$tmux_sock" capture-pane -p -t top > "$dir/screen" 2>/dev/null || true
    grep -q -- "$1" "$dir/screen" && return 0
    sleep 0.1
  done
  echo "FAIL: the screen never showed '$1'; it shows:"
  cat "$dir/screen"
  exit 1
}

tmux -L "$tmux_sock" new-session -d -s top -x 160 -y 40 "$top --socket $sock --interval-ms 300"
screen_has "nvmux-top: nvmuxd"
screen_has "SESSION"
screen_has "P99us"         # latency since the session opened
screen_has " $vpid "          # the client's row, by its pid
tmux -L "$tmux_sock" send-keys -t top 2
screen_has "QPAIR"
screen_has "owner0"
tmux -L "$tmux_sock" send-keys -t top 3
screen_has "REACTOR"
tmux -L "$tmux_sock" send-keys -t top 4
screen_has "LANE"
tmux -L "$tmux_sock" send-keys -t top q
for _ in $(seq 50); do
  tmux -L "$tmux_sock" has-session -t top 2>/dev/null || { echo "nvmux-top: every view shown, quit with q"; exit 0; }
  sleep 0.1
done
echo "FAIL: nvmux-top did not quit on q"
exit 1

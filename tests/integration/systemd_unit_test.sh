#!/usr/bin/env bash
# packaging/nvmuxd.service passes systemd-analyze verify once ExecStart names a built nvmuxd, and
# that nvmuxd accepts the arguments the unit gives it (--help exits 0 with them parsed).
# Usage: systemd_unit_test.sh SOURCE_DIR NVMUXD_BINARY
set -euo pipefail
src=$1
nvmuxd=$2
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed (package systemd)"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s|/usr/local/bin/nvmuxd|$nvmuxd|" "$src/packaging/nvmuxd.service" > "$dir/nvmuxd.service"
out=$(systemd-analyze verify "$dir/nvmuxd.service" 2>&1 || true)
if [ -n "$out" ]; then
  echo "systemd-analyze verify found problems:"
  echo "$out"
  exit 1
fi
# The unit's own arguments, as systemd would pass them.
args=$(sed -n 's/^Environment="NVMUXD_ARGS=\(.*\)"$/\1/p' "$src/packaging/nvmuxd.service")
"$nvmuxd" --socket /run/nvmux/nvmuxd.sock $args --help >/dev/null
echo "nvmuxd.service verified"

#!/usr/bin/env bash
# scripts/setup-deps against stand-in dpkg-query and apt-get on PATH (no real package manager is
# touched): a fresh machine gets `apt-get update` and `apt-get install` of every package; a machine
# with everything installed runs no apt-get at all; a failing apt-get install exits non-zero and
# its error reaches the user. Runs as "root" with CI=true (a stand-in id answers 0), so the script
# must never reach for sudo; a stand-in sudo records the attempt and the test fails on it.
# Usage: setup_deps_test.sh <path to scripts/setup-deps>
set -euo pipefail

script=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# The package list as the script declares it: the words between "PACKAGES=(" and ")", no comments.
mapfile -t packages < <(sed -n '/^PACKAGES=(/,/^)/p' "$script" | sed '1d;$d;s/#.*//' | tr -s ' ' '\n' | sed '/^$/d')
[ ${#packages[@]} -gt 10 ] || { echo "FAIL: could not read PACKAGES from $script" >&2; exit 1; }

# Stand-ins. Each appends its arguments to $work/calls so the cases can read what ran.
bin=$work/bin
mkdir -p "$bin"
cat >"$bin/dpkg-query" <<'STUB'
#!/usr/bin/env bash
echo "dpkg-query $*" >>"$STUB_CALLS"
case "$STUB_MACHINE" in
  fresh) echo "dpkg-query: no packages found matching ${!#}" >&2; exit 1 ;;
  installed)
    for arg in "$@"; do
      case "$arg" in -*) ;; *) echo "$arg install ok installed" ;; esac
    done ;;
esac
STUB
cat >"$bin/apt-get" <<'STUB'
#!/usr/bin/env bash
echo "apt-get $*" >>"$STUB_CALLS"
if [ "$1" = install ] && [ "${STUB_APT_INSTALL_FAILS:-0}" = 1 ]; then
  echo "E: Unable to locate package stand-in-missing-package" >&2
  exit 100
fi
STUB
cat >"$bin/sudo" <<'STUB'
#!/usr/bin/env bash
echo "sudo $*" >>"$STUB_CALLS"
exit 1
STUB
cat >"$bin/id" <<'STUB'
#!/usr/bin/env bash
[ "${1:-}" = -u ] && { echo 0; exit 0; }
exec /usr/bin/id "$@"
STUB
chmod +x "$bin"/*

# run_case NAME MACHINE APT_FAILS: runs the script, leaves its exit in $rc, stderr in $work/NAME.err
run_case() {
  local name=$1
  : >"$work/$name.calls"
  rc=0
  env PATH="$bin:$PATH" CI=true STUB_CALLS="$work/$name.calls" STUB_MACHINE="$2" \
    STUB_APT_INSTALL_FAILS="$3" "$script" >"$work/$name.out" 2>"$work/$name.err" </dev/null || rc=$?
  if grep -q '^sudo' "$work/$name.calls"; then fail "$name: used sudo while running as root"; fi
}

# 1. Fresh machine: update, then install of every package, exit 0.
run_case fresh fresh 0
[ $rc -eq 0 ] || fail "fresh: exit $rc, want 0; stderr: $(cat "$work/fresh.err")"
grep -qx 'apt-get update -qq' "$work/fresh.calls" || fail "fresh: no apt-get update; calls: $(cat "$work/fresh.calls")"
install_line=$(grep '^apt-get install' "$work/fresh.calls" || true)
[ -n "$install_line" ] || fail "fresh: no apt-get install; calls: $(cat "$work/fresh.calls")"
for p in "${packages[@]}"; do
  grep -qw -- "$p" <<<"${install_line#apt-get install}" || fail "fresh: apt-get install lacks $p"
done
[ "$(grep -n '^apt-get' "$work/fresh.calls" | head -1 | cut -d: -f2-)" = 'apt-get update -qq' ] ||
  fail "fresh: apt-get update did not come first"
grep -q "setup-deps: installing" "$work/fresh.err" || fail "fresh: no line saying what it installs"

# 2. Everything installed: no apt-get at all, silent, exit 0.
run_case installed installed 0
[ $rc -eq 0 ] || fail "installed: exit $rc, want 0; stderr: $(cat "$work/installed.err")"
if grep -q '^apt-get' "$work/installed.calls"; then
  fail "installed: ran apt-get: $(grep '^apt-get' "$work/installed.calls")"
fi
[ ! -s "$work/installed.err" ] && [ ! -s "$work/installed.out" ] || fail "installed: not silent"

# 3. apt-get install fails: non-zero exit, apt-get's error and the script's own line shown.
run_case apt_fails fresh 1
[ $rc -ne 0 ] || fail "apt_fails: exit 0, want non-zero"
grep -q 'E: Unable to locate package stand-in-missing-package' "$work/apt_fails.err" ||
  fail "apt_fails: apt-get's error not shown; stderr: $(cat "$work/apt_fails.err")"
grep -q 'setup-deps: apt-get install .* failed (exit 100)' "$work/apt_fails.err" ||
  fail "apt_fails: no line naming the failed step; stderr: $(cat "$work/apt_fails.err")"

if [ $failures -ne 0 ]; then
  echo "setup_deps_test: $failures failure(s)" >&2
  exit 1
fi
echo "setup_deps_test: 3 cases passed (${#packages[@]} packages)"

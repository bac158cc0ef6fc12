#!/usr/bin/env bash
# scripts/nvmux-setup against a stand-in sysfs tree and mount table (NVMUX_SYSFS, NVMUX_MOUNTS): no
# device is touched. Checks what can be decided without a kernel: the status listing, and every
# refusal (a mounted namespace, a function that is not NVMe, a missing one, a bad address). Moving
# a real controller between drivers is tested inside the test guest (tests/vm/nvmux-setup-test).
# Usage: nvmux_setup_test.sh <path to scripts/nvmux-setup>
set -euo pipefail

script=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

sys=$work/sys
pci=$sys/bus/pci
mkdir -p "$pci/drivers/nvme" "$pci/drivers/vfio-pci" "$sys/kernel/iommu_groups/7" "$sys/kernel/iommu_groups/8"
# function(addr class driver group)
function_dir() {
  local d=$pci/devices/$1
  mkdir -p "$d"
  echo "$2" >"$d/class"
  echo 0x1b36 >"$d/vendor"
  echo 0x0010 >"$d/device"
  [ "$3" = - ] || ln -s "../../drivers/$3" "$d/driver"
  [ "$4" = - ] || ln -s "../../../kernel/iommu_groups/$4" "$d/iommu_group"
  : >"$d/driver_override"
}
function_dir 0000:00:04.0 0x010802 vfio-pci 7
function_dir 0000:00:06.0 0x010802 nvme 8
function_dir 0000:00:01.0 0x020000 - -
mkdir -p "$pci/devices/0000:00:06.0/nvme/nvme0/nvme0n1" "$sys/block/nvme0n1/holders"
echo "/dev/nvme0n1 /data ext4 rw 0 0" >"$work/mounts"
: >"$work/swaps"

run() {  # run NAME ARGS...: exit status in $rc, output in $work/NAME.out
  local name=$1
  shift
  rc=0
  NVMUX_SYSFS=$sys NVMUX_MOUNTS=$work/mounts NVMUX_SWAPS=$work/swaps "$script" "$@" >"$work/$name.out" 2>&1 || rc=$?
}

run status status
[ $rc -eq 0 ] || fail "status exited $rc: $(cat "$work/status.out")"
grep -Eq '^0000:00:04.0 +1b36:0010 +vfio-pci +7 ' "$work/status.out" || fail "status: 00:04.0 line: $(cat "$work/status.out")"
grep -Eq '^0000:00:06.0 +1b36:0010 +nvme +8 +nvme0n1 \(in use: /dev/nvme0n1 is mounted on /data\)' "$work/status.out" ||
  fail "status: 00:06.0 line: $(cat "$work/status.out")"
if grep -q '0000:00:01.0' "$work/status.out"; then fail "status lists a function that is not NVMe"; fi

run mounted bind 00:06.0
[ $rc -eq 1 ] || fail "bind of a mounted controller exited $rc, want 1"
grep -q "refusing to take 0000:00:06.0 from nvme: /dev/nvme0n1 is mounted on /data" "$work/mounted.out" ||
  fail "mounted: $(cat "$work/mounted.out")"
[ ! -s "$pci/devices/0000:00:06.0/driver_override" ] || fail "mounted: driver_override was written"

: >"$work/mounts"
mkdir -p "$sys/block/nvme0n1/holders/dm-0"
run held bind 0000:00:06.0
[ $rc -eq 1 ] && grep -q "/dev/nvme0n1 is held by dm-0" "$work/held.out" || fail "held: exit $rc: $(cat "$work/held.out")"

run same bind 0000:00:04.0
[ $rc -eq 0 ] && grep -q "already bound to vfio-pci" "$work/same.out" || fail "same: exit $rc: $(cat "$work/same.out")"
run not_nvme bind 0000:00:01.0
[ $rc -eq 1 ] && grep -q "is not an NVMe controller" "$work/not_nvme.out" || fail "not_nvme: $(cat "$work/not_nvme.out")"
run missing bind 0000:00:09.0
[ $rc -eq 1 ] && grep -q "no PCI function 0000:00:09.0" "$work/missing.out" || fail "missing: $(cat "$work/missing.out")"
run bad bind banana
[ $rc -eq 2 ] && grep -q "'banana' is not a PCI address" "$work/bad.out" || fail "bad: exit $rc: $(cat "$work/bad.out")"
run usage frobnicate
[ $rc -eq 2 ] || fail "usage: exit $rc, want 2"

if [ $failures -ne 0 ]; then
  echo "nvmux_setup_test: $failures failure(s)" >&2
  exit 1
fi
echo "nvmux_setup_test: 8 cases passed"

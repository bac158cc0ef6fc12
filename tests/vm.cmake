# Tests inside a QEMU guest (label vm; docs/vfio.md, "The guest test rig"). One guest serves the
# whole run: vm_guest_start / vm_guest_stop are the fixture, every vm test requires it and holds
# RESOURCE_LOCK vm_guest so two guests never compete for the machine's two cores. A busy guest
# (TCG, two vCPUs polling) takes both cores, so the vm tests run alone (RUN_SERIAL): the timing
# checks of other tests never share the machine with it. When no guest
# can run here (no QEMU, no kernel, a failed boot) each of them exits 77 with the reason: skipped,
# never passed. Sanitizer builds leave them out: the guest runs at TCG speed, and one run of them
# per CI is what the budget holds.
if(NVMUX_SANITIZER)
  return()
endif()

set(vm_dir ${CMAKE_BINARY_DIR}/vm)
set(vm_guest ${PROJECT_SOURCE_DIR}/tests/vm/guest)

add_test(NAME vm_guest_start COMMAND ${vm_guest} start ${vm_dir})
add_test(NAME vm_guest_stop COMMAND ${vm_guest} stop ${vm_dir})
set_tests_properties(vm_guest_start PROPERTIES FIXTURES_SETUP vm_guest TIMEOUT 900)
set_tests_properties(vm_guest_stop PROPERTIES FIXTURES_CLEANUP vm_guest TIMEOUT 60)
set_tests_properties(vm_guest_start vm_guest_stop PROPERTIES LABELS vm RESOURCE_LOCK vm_guest SKIP_RETURN_CODE 77
                                                          RUN_SERIAL TRUE)

# nvmux_vm_test(NAME COMMAND...): COMMAND runs inside the guest (host paths, as root, in TMPDIR).
function(nvmux_vm_test name)
  add_test(NAME ${name} COMMAND ${vm_guest} run ${vm_dir} -- ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS vm FIXTURES_REQUIRED vm_guest RESOURCE_LOCK vm_guest
                                          SKIP_RETURN_CODE 77 TIMEOUT 900 RUN_SERIAL TRUE)
endfunction()

# The rig itself: a host-built binary runs in the guest, which sees the controllers it was given.
nvmux_vm_test(vm_guest_runs_host_binaries
  ${PROJECT_SOURCE_DIR}/tests/vm/check-output --want "PASSED" --want "0000:00:04.0" --want "0000:00:05.0"
  --want "nvme0n2" -- sh -c "$<TARGET_FILE:nvme_unit_test> --gtest_filter=Spec*:DmaArena* && ls /sys/bus/pci/drivers/vfio-pci/ /dev/vfio/ /sys/block")

set(vm_check ${PROJECT_SOURCE_DIR}/tests/vm/check-output)
set(vfio_a 0000:00:04.0)  # ns1 512 B blocks, ns2 4 KiB blocks
set(vfio_b 0000:00:05.0)  # ns1 4 KiB blocks

# The shared data-integrity and error suite against vfio on QEMU's controllers. Null and file
# namespaces do not exist on a PCIe controller; every other case must run (no skips).
nvmux_vm_test(vm_vfio_data_suite
  ${vm_check} --want "PASSED" --forbid "SKIPPED" --
  env NVMUX_VFIO_PCI=${vfio_a},${vfio_b} $<TARGET_FILE:nvme_data_test>
  "--gtest_filter=Backends/ControllerData.*/vfio:-*NullNamespace*:*FileBacked*:*AFileTruncated*")

# A controller the kernel drives is refused with the driver's name and how to bind it; a function
# that does not exist is named.
nvmux_vm_test(vm_vfio_refuses_a_kernel_bound_controller
  ${vm_check} --exit 1 --want "0000:00:06.0 is bound to nvme, not bound to vfio-pci"
  --want "scripts/nvmux-setup bind 0000:00:06.0" -- $<TARGET_FILE:nvmux-perf> --backend vfio --pci 00:06.0 -t 1)
nvmux_vm_test(vm_vfio_names_a_missing_function
  ${vm_check} --exit 1 --want "no PCI function 0000:00:1e.0" -- $<TARGET_FILE:nvmux-perf> --backend vfio --pci 00:1e.0 -t 1)

# nvmux-perf through the shared backend options, every block read verified.
set(vm_perf $<TARGET_FILE:nvmux-perf> --backend vfio --pci ${vfio_b} -w randrw --verify -t 5 -q 32)
nvmux_vm_test(vm_vfio_perf_randrw_verify ${vm_check} --want " 0 mismatching blocks" -- ${vm_perf})
nvmux_vm_test(vm_vfio_perf_two_qpairs_verify ${vm_check} --want " 0 mismatching blocks" -- ${vm_perf} --qpairs 2)

# nvmuxd owning a vfio controller, two client processes verifying side by side.
nvmux_vm_test(vm_vfio_service_two_clients
  ${PROJECT_SOURCE_DIR}/tests/vm/service-two-clients $<TARGET_FILE:nvmuxd> $<TARGET_FILE:nvmux-perf>
  -- --backend vfio --pci ${vfio_b})

# The kernel's own path to QEMU's controller: the suite and nvmux-perf on uring over /dev/nvme0n1
# (512-byte blocks) and /dev/nvme0n2 (4 KiB blocks), real NVMe block devices.
nvmux_vm_test(vm_uring_nvme_data_suite
  ${vm_check} --want "PASSED" --forbid "SKIPPED" --
  env NVMUX_URING_NVME=/dev/nvme0n1,/dev/nvme0n2 $<TARGET_FILE:nvme_data_test>
  "--gtest_filter=Backends/ControllerData.*/uring_nvme:-*NullNamespace*:*FileBacked*:*AFileTruncated*")
nvmux_vm_test(vm_uring_nvme_perf_randrw_verify ${vm_check} --want " 0 mismatching blocks" --
  $<TARGET_FILE:nvmux-perf> --backend uring --ns bdev:/dev/nvme0n2 -w randrw --verify -t 5 -q 32)

# scripts/nvmux-setup moves a controller to nvme and back, and refuses one with a mounted namespace.
nvmux_vm_test(vm_nvmux_setup_binds_and_refuses
  ${PROJECT_SOURCE_DIR}/tests/vm/nvmux-setup-test ${PROJECT_SOURCE_DIR}/scripts/nvmux-setup)

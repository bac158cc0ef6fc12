# Every benchmark binary runs briefly in `make test` so none of them rots (STYLE.md). These are
# smokes, not measurements: one short repetition each; `make bench` runs them at full length.
add_test(NAME ring_bench_smoke COMMAND ring_bench --benchmark_repetitions=1 --benchmark_min_time=0.01)
add_test(NAME nvme_bench_smoke COMMAND nvme_bench --benchmark_repetitions=1 --benchmark_min_time=0.01)
set_tests_properties(ring_bench_smoke nvme_bench_smoke PROPERTIES LABELS integration TIMEOUT 120)
if(TARGET runtime_bench)
  add_test(NAME runtime_bench_smoke COMMAND runtime_bench --benchmark_repetitions=1 --benchmark_min_time=0.01)
  set_tests_properties(runtime_bench_smoke PROPERTIES LABELS integration TIMEOUT 120)
endif()

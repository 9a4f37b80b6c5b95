#!/usr/bin/env bash
# The one script for the GPU machine: device state, the CUDA tests, the decode-kernel benchmark.
#
# Build on the CPU machine (binaries built there run on the GPU machine; libstdc++ is static):
#   cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-cuda -j2 --target lowbit_cuda_tests lowbit_gemv_bench
#   mkdir -p carry && cp build-cuda/lowbit_cuda_tests build-cuda/lowbit_gemv_bench carry/
# then on the GPU machine:  bash scripts/gpu_check.sh carry [--quick]
# Logs (tests.log, bench.txt, bench_full.txt with every configuration, sass.txt.gz) go to $OUT when
# set, else to the binaries' folder. Exit status: nonzero if the tests or the benchmark failed.
set -uo pipefail
DIR=${1:-carry}
shift || true
LOG=${OUT:-$DIR}
mkdir -p "$LOG"

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu \
  --format=csv || echo "nvidia-smi failed"

# The binaries need glibc, libgomp and cuBLAS/cuBLASLt 13 from the machine; find cuBLAS if the loader does not.
if ldd "$DIR/lowbit_cuda_tests" | grep -q "not found"; then
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    $(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__) + "/lib")' 2>/dev/null); do
    [ -e "$d/libcublas.so.13" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
  done
fi
echo "== libraries"
ldd "$DIR/lowbit_cuda_tests" | grep -E "not found|cublas|cudart|stdc|gomp" || true

echo "== tests"
"$DIR/lowbit_cuda_tests" --gtest_brief=1 >"$LOG/tests.log" 2>&1
test_rc=$?
tail -n 25 "$LOG/tests.log"

if command -v cuobjdump >/dev/null; then
  cuobjdump -sass "$DIR/lowbit_gemv_bench" 2>/dev/null | gzip >"$LOG/sass.txt.gz"
fi

echo "== benchmark"
"$DIR/lowbit_gemv_bench" --full "$LOG/bench_full.txt" "$@" >"$LOG/bench.txt" 2>&1
bench_rc=$?
cat "$LOG/bench.txt"
echo "== tests rc=$test_rc, benchmark rc=$bench_rc"
[ "$test_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]

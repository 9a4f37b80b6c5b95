#!/usr/bin/env bash
# The one script for the GPU machine: device state, the CUDA tests (kernels and the forward pass on
# the real model), `lowbit bench --device cuda` on Llama-3.1-8B shapes (batch 1 and 4), `lowbit
# generate` and `lowbit ppl --device cuda` on the real model, and the decode-kernel sweep.
#
# Build on the CPU machine (binaries built there run on the GPU machine; libstdc++ is static):
#   cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-cuda -j2 --target lowbit lowbit_cuda_tests lowbit_gemv_bench
# and put into one folder (git-ignored carry/): the binaries (optionally xz-compressed, *.xz), the model
# sotu-llama-23m/ (or sotu-llama-23m.tar.xz) and validation.txt; then on the GPU machine:
#   bash scripts/gpu_check.sh carry [--quick]
# --quick: the bench measures bf16 and int4wo-64 at batch 1 only, and the kernel sweep is skipped.
# Logs (tests.log, bench_cuda.txt, bench.txt, bench_full.txt, sass.txt.gz) go to $OUT when set, else to
# the binaries' folder. Exit status: nonzero if any step failed.
set -uo pipefail
DIR=${1:-carry}
shift || true
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
LOG=${OUT:-$DIR}
mkdir -p "$LOG"

# Compressed binaries and model unpack into a scratch folder (the carried one may be read-only); xz,
# or Python's lzma where the machine has no xz.
unxz_to() {
  if command -v xz >/dev/null; then xz -dc "$1" >"$2"; else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
  fi
}
WORK=$(mktemp -d)
BIN=$DIR
for f in "$DIR"/lowbit*.xz; do
  [ -e "$f" ] || continue
  BIN=$WORK
  unxz_to "$f" "$WORK/$(basename "${f%.xz}")" && chmod +x "$WORK/$(basename "${f%.xz}")"
done
for f in lowbit lowbit_cuda_tests lowbit_gemv_bench; do
  [ -e "$BIN/$f" ] || [ ! -e "$DIR/$f" ] || cp "$DIR/$f" "$BIN/$f"
done
MODEL=$DIR/sotu-llama-23m
if [ -e "$DIR/sotu-llama-23m.tar.xz" ]; then
  unxz_to "$DIR/sotu-llama-23m.tar.xz" "$WORK/model.tar" && tar -C "$WORK" -xf "$WORK/model.tar" && rm -f "$WORK/model.tar" &&
    MODEL=$WORK/sotu-llama-23m
fi
export LOWBIT_MODEL_DIR=${LOWBIT_MODEL_DIR:-$MODEL}
export LOWBIT_TEXT=${LOWBIT_TEXT:-$DIR/validation.txt}

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu \
  --format=csv || echo "nvidia-smi failed"

# The binaries need glibc, libgomp and cuBLAS/cuBLASLt 13 from the machine; find cuBLAS if the loader does not.
if ldd "$BIN/lowbit_cuda_tests" | grep -q "not found"; then
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    $(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__) + "/lib")' 2>/dev/null); do
    [ -e "$d/libcublas.so.13" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
  done
fi
echo "== libraries"
ldd "$BIN/lowbit_cuda_tests" | grep -E "not found|cublas|cudart|stdc|gomp" || true

echo "== tests (model: $LOWBIT_MODEL_DIR)"
"$BIN/lowbit_cuda_tests" --gtest_brief=1 >"$LOG/tests.log" 2>&1
test_rc=$?
grep -E "^(prefill|decode|greedy|batched|.*ppl GPU)" "$LOG/tests.log" || true
tail -n 25 "$LOG/tests.log"

echo "== lowbit bench --device cuda"
SCHEMES=bf16,int8wo,int4wo-64,float8wo,float8dq-row,int8dq
[ "$QUICK" = 1 ] && SCHEMES=bf16,int4wo-64
"$BIN/lowbit" bench --device cuda --arch llama-3.1-8b --quant "$SCHEMES" -n 200 --prompt-len 128 \
  >"$LOG/bench_cuda.txt" 2>&1
cuda_bench_rc=$?
cat "$LOG/bench_cuda.txt"

if [ "$QUICK" = 0 ]; then
  echo "== lowbit bench --device cuda --batch 4"
  "$BIN/lowbit" bench --device cuda --arch llama-3.1-8b --quant bf16,int4wo-64,int8dq -n 100 --prompt-len 128 \
    --batch 4 >"$LOG/bench_cuda_b4.txt" 2>&1 || cuda_bench_rc=1
  cat "$LOG/bench_cuda_b4.txt"
fi

echo "== lowbit generate / ppl --device cuda (real model)"
cli_rc=0
"$BIN/lowbit" generate --model "$LOWBIT_MODEL_DIR" --device cuda --temperature 0 -n 40 \
  -p "Mr. Speaker, the state of our union" 2>&1 || cli_rc=1
"$BIN/lowbit" ppl --model "$LOWBIT_MODEL_DIR" --device cuda --quant int4wo-64 --text "$LOWBIT_TEXT" --limit 16 -q \
  2>&1 || cli_rc=1
"$BIN/lowbit" ppl --model "$LOWBIT_MODEL_DIR" --quant int4wo-64 --text "$LOWBIT_TEXT" --limit 16 -q 2>&1 || cli_rc=1

bench_rc=0
if [ "$QUICK" = 0 ] && [ -x "$BIN/lowbit_gemv_bench" ]; then
  if command -v cuobjdump >/dev/null; then
    cuobjdump -sass "$BIN/lowbit_gemv_bench" 2>/dev/null | gzip >"$LOG/sass.txt.gz"
  fi
  echo "== decode-kernel benchmark"
  "$BIN/lowbit_gemv_bench" --full "$LOG/bench_full.txt" "$@" >"$LOG/bench.txt" 2>&1
  bench_rc=$?
  cat "$LOG/bench.txt"
fi
rm -rf "$WORK"
echo "== tests rc=$test_rc, bench --device cuda rc=$cuda_bench_rc, generate/ppl rc=$cli_rc, kernel benchmark rc=$bench_rc"
[ "$test_rc" -eq 0 ] && [ "$cuda_bench_rc" -eq 0 ] && [ "$cli_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]

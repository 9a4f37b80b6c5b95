#!/usr/bin/env bash
# The one script for the GPU machine: device state, the CUDA tests (kernels and the forward pass on
# the real model), `lowbit bench --device cuda` on Llama-3.1-8B shapes (batch 1 with the per-op
# profile, a 2048-token prefill, batch 16), `lowbit generate` and `lowbit ppl --device cuda` on the
# real model, and the decode-kernel sweep.
#
# Build on the CPU machine (binaries built there run on the GPU machine; libstdc++ is static):
#   cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-cuda -j2 --target lowbit lowbit_cuda_tests lowbit_gemv_bench lowbit_prefill_gemm_bench
# and put into one folder (git-ignored carry/): the binaries (optionally xz-compressed, *.xz), the model
# sotu-llama-23m/ (or sotu-llama-23m.tar.xz) and validation.txt; then on the GPU machine:
#   bash scripts/gpu_check.sh carry [--quick]
# --quick: the bench measures bf16 and int4wo-64 at batch 1 only, and the kernel sweep is skipped.
# Logs (tests.log, bench_cuda.txt, bench.txt, bench_full.txt, sass.txt.gz) go to $OUT when set, else to
# the binaries' folder. GPU_CHECK_STEPS picks steps (see below). Exit status: nonzero if any step failed.
set -uo pipefail
DIR=${1:-carry}
shift || true
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
LOG=${OUT:-$DIR}
# Steps to run (comma-separated; default all): tests, bench (batch 1, prompt 128, with the per-op
# profile), prefill (prompt 2048, and lowbit_prefill_gemm_bench where it was built), batch16 (with the profile), cli (generate/ppl on the real model), torch (PyTorch's
# bf16 decode, torch.compile), sweep (kernel sweep).
STEPS=${GPU_CHECK_STEPS:-tests,bench,prefill,batch16,cli,torch,sweep}
[ "$QUICK" = 1 ] && STEPS=${GPU_CHECK_STEPS:-tests,bench,cli}
want() { [[ ",$STEPS," == *",$1,"* ]]; }
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
for f in lowbit lowbit_cuda_tests lowbit_gemv_bench lowbit_prefill_gemm_bench; do
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

test_rc=0
if want tests; then
  echo "== tests (model: $LOWBIT_MODEL_DIR)"
  "$BIN/lowbit_cuda_tests" --gtest_brief=1 >"$LOG/tests.log" 2>&1
  test_rc=$?
  grep -E "^(prefill|decode|greedy|batched|.*ppl GPU|.*prefill \()" "$LOG/tests.log" || true
  tail -n 25 "$LOG/tests.log"
fi

cuda_bench_rc=0
SCHEMES=bf16,int8wo,int4wo-64,float8wo,float8dq-row,int8dq
[ "$QUICK" = 1 ] && SCHEMES=bf16,int4wo-64
if want bench; then
  echo "== lowbit bench --device cuda (batch 1, prompt 128; --profile: GPU time per op)"
  "$BIN/lowbit" bench --device cuda --arch llama-3.1-8b --quant "$SCHEMES" -n 200 --prompt-len 128 --profile \
    >"$LOG/bench_cuda.txt" 2>&1 || cuda_bench_rc=1
  cat "$LOG/bench_cuda.txt"
fi
if want prefill; then
  echo "== lowbit bench --device cuda --prompt-len 2048 (prefill of a 2048-token prompt)"
  "$BIN/lowbit" bench --device cuda --arch llama-3.1-8b --quant "$SCHEMES" -n 16 --prompt-len 2048 \
    >"$LOG/bench_cuda_p2048.txt" 2>&1 || cuda_bench_rc=1
  cat "$LOG/bench_cuda_p2048.txt"
  if [ -x "$BIN/lowbit_prefill_gemm_bench" ]; then
    echo "== int4wo prefill products (lowbit_prefill_gemm_bench, M 2048)"
    "$BIN/lowbit_prefill_gemm_bench" 2>&1 || cuda_bench_rc=1
  fi
fi
if want batch16; then
  echo "== lowbit bench --device cuda --batch 16 (--profile: GPU time per op)"
  "$BIN/lowbit" bench --device cuda --arch llama-3.1-8b --quant bf16,int4wo-64,int8wo -n 100 --prompt-len 128 \
    --batch 16 --profile >"$LOG/bench_cuda_b16.txt" 2>&1 || cuda_bench_rc=1
  cat "$LOG/bench_cuda_b16.txt"
fi

cli_rc=0
if want cli; then
  echo "== lowbit generate / ppl --device cuda (real model)"
  "$BIN/lowbit" generate --model "$LOWBIT_MODEL_DIR" --device cuda --temperature 0 -n 40 \
    -p "Mr. Speaker, the state of our union" 2>&1 || cli_rc=1
  "$BIN/lowbit" ppl --model "$LOWBIT_MODEL_DIR" --device cuda --quant int4wo-64 --text "$LOWBIT_TEXT" --limit 16 -q \
    2>&1 || cli_rc=1
  "$BIN/lowbit" ppl --model "$LOWBIT_MODEL_DIR" --quant int4wo-64 --text "$LOWBIT_TEXT" --limit 16 -q 2>&1 || cli_rc=1
fi

if want torch; then
  # PyTorch's own bf16 decode on the same shapes (gpt-fast's method), compile time bounded.
  echo "== PyTorch bf16 decode (bench/cuda/torch_decode.py)"
  timeout 240 python3 "$(dirname "$0")/../bench/cuda/torch_decode.py" -n 200 --prompt-len 128 2>&1 | tail -n 3 ||
    echo "torch_decode.py failed or timed out"
fi

bench_rc=0
if want sweep && [ -x "$BIN/lowbit_gemv_bench" ]; then
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

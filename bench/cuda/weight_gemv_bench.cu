// Decode weight kernels on Llama-3.1-8B shapes: time per call (CUDA graph of back-to-back calls,
// weights rotated over > 5× the L2 so every call streams from DRAM), weight GB/s (weights +
// qparams) and the share of the read bandwidth measured in the same run by a plain streaming-read
// kernel; cuBLAS bf16 (GemmEx and Lt) beside ours. Every tile configuration is swept; the table
// printed last holds, per format, shape and M, the built-in choice ("auto") and the best
// configuration (tile configuration, ".sN": split-K over N CTAs).
//
//   lowbit_gemv_bench [--quick] [--full FILE] [--only FORMAT,...]
// --quick measures M = 1 and 16 only; --full writes every measurement (all M and configurations);
// --only keeps the named formats (e.g. int4wo-64,bf16).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/weight_gemv.h"
#include "lowbit/core/error.h"

using namespace lowbit::cuda;

#define CK(call)                                                                                 \
  do {                                                                                           \
    cudaError_t e_ = (call);                                                                     \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

namespace {

// ---------------------------------------------------------------- device helpers

__global__ void read_kernel(const uint4* p, size_t n, uint32_t* out) {
  constexpr int kUnroll = 8;
  uint32_t acc = 0;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  for (; i + (kUnroll - 1) * stride < n; i += kUnroll * stride) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                   : "=r"(v[u].x), "=r"(v[u].y), "=r"(v[u].z), "=r"(v[u].w)
                   : "l"(p + i + u * stride));
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n; i += stride) acc ^= p[i].x;
  if (acc == 0x9e3779b9u) *out = acc;  // keeps the loads alive
}

// Random bytes, then shaped per format so that no value is NaN/Inf (never time on zeros).
__global__ void fill_kernel(uint32_t* p, size_t words, uint32_t seed, int kind) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < words;
       i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 0x9e3779b1u ^ seed;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    h *= 0x297a2d39u;
    h ^= h >> 15;
    if (kind == 1) h = (h & 0x807f807fu) | 0x3f003f00u;  // bf16 pairs in ±[0.5, 1)
    if (kind == 2) h &= 0xf7f7f7f7u;                     // e4m3 without NaN codes
    if (kind == 3) h = (h & 0x807f007fu) | 0x3c003c00u;  // int4 (scale, zero): small bf16 values
    p[i] = h;
  }
}

void fill(void* p, size_t bytes, uint32_t seed, int kind) {
  fill_kernel<<<1024, 256>>>(static_cast<uint32_t*>(p), bytes / 4, seed, kind);
  CK(cudaGetLastError());
}

struct Buf {
  void* p = nullptr;
  explicit Buf(size_t bytes) { CK(cudaMalloc(&p, std::max<size_t>(bytes, 256))); }
  ~Buf() { cudaFree(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

// Median time of one call: a graph of `calls` back-to-back launches (call(i) picks copy i),
// replayed.
double time_us(const std::function<void(int, cudaStream_t)>& call, int calls, cudaStream_t s) {
  call(0, s);  // warm-up outside the capture (handles, heuristics, module load)
  CK(cudaStreamSynchronize(s));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < calls; ++i) call(i, s);
  CK(cudaStreamEndCapture(s, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 2; ++i) CK(cudaGraphLaunch(exec, s));
  std::vector<float> ms;
  for (int r = 0; r < 9; ++r) {
    CK(cudaEventRecord(a, s));
    CK(cudaGraphLaunch(exec, s));
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float t;
    CK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  return 1000.0 * ms[ms.size() / 2] / calls;
}

double read_bandwidth(cudaStream_t s) {
  const size_t bytes = size_t(4) << 30;
  Buf buf(bytes), out(4);
  fill(buf.p, bytes, 7, 0);
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  double best = 0;
  for (int blocks : {2, 4, 8})
    for (int threads : {256, 512, 1024}) {
      const double us = time_us(
          [&](int, cudaStream_t st) {
            read_kernel<<<sms * blocks, threads, 0, st>>>(
                static_cast<const uint4*>(buf.p), bytes / 16, static_cast<uint32_t*>(out.p));
          },
          3, s);
      best = std::max(best, bytes / us / 1e3);
    }
  return best;
}

double copy_bandwidth(cudaStream_t s) {
  const size_t bytes = size_t(2) << 30;
  Buf a(bytes), b(bytes);
  fill(a.p, bytes, 9, 0);
  const double us = time_us(
      [&](int, cudaStream_t st) {
        CK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, st));
      },
      3, s);
  return 2.0 * bytes / us / 1e3;  // read + write
}

// ---------------------------------------------------------------- formats

struct Shape {
  const char* name;
  int N, K;
};
const Shape kShapes[] = {{"qkv", 6144, 4096},
                         {"o", 4096, 4096},
                         {"gate_up", 28672, 4096},
                         {"down", 4096, 14336},
                         {"lm_head", 128256, 4096}};

struct Format {
  std::string name;
  int group;       // int4
  bool gemv_kind;  // ours (sweeps configs) or cuBLAS
};

struct Row {
  std::string fmt, shape, cfg;
  int N, K, M;
  double us, gbs, pct;
};

// Weight bytes (incl. qparams) of one copy and the kinds of its buffers.
size_t weight_bytes(const std::string& f, int N, int K, int group) {
  if (f == "bf16" || f.rfind("cublas", 0) == 0) return size_t(N) * K * 2;
  if (f.rfind("int4", 0) == 0) return int4_packed_bytes(N, K) + int4_qparam_bytes(N, K, group);
  return size_t(N) * K + 4 * size_t(N);  // int8 / e4m3 + float scale per row
}

}  // namespace

int main(int argc, char** argv) try {
  bool quick = false;
  const char* full_path = nullptr;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    if (!std::strcmp(argv[i], "--full") && i + 1 < argc) full_path = argv[++i];
    if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = "," + std::string(argv[++i]) + ",";
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const double read_bw = read_bandwidth(s), copy_bw = copy_bandwidth(s);
  std::printf("read bandwidth %.0f GB/s (streaming-read kernel); copy %.0f GB/s (read + write)\n",
              read_bw, copy_bw);

  const std::vector<int> Ms = quick ? std::vector<int>{1, 16} : std::vector<int>{1, 2, 4, 8, 16};
  const std::vector<Format> formats = {{"bf16", 0, true},       {"cublas-gemmex", 0, false},
                                       {"cublas-lt", 0, false}, {"int8wo", 0, true},
                                       {"float8wo", 0, true},   {"int4wo-32", 32, true},
                                       {"int4wo-64", 64, true}, {"int4wo-128", 128, true},
                                       {"int8dq", 0, true},     {"float8dq", 0, true}};
  std::vector<Row> rows;
  std::map<std::string, double> floors;  // format/shape → the read kernel's % at that size
  FILE* full = full_path ? std::fopen(full_path, "w") : nullptr;
  auto log = [&](const Row& r) {
    rows.push_back(r);
    if (full)
      std::fprintf(full, "%-14s %-8s %6d %6d %3d %-11s %9.2f %7.0f %6.1f\n", r.fmt.c_str(),
                   r.shape.c_str(), r.N, r.K, r.M, r.cfg.c_str(), r.us, r.gbs, r.pct);
  };

  for (const auto& sh : kShapes)
    for (const auto& f : formats) {
      if (!only.empty() && only.find("," + f.name + ",") == std::string::npos) continue;
      const int N = sh.N, K = sh.K;
      const size_t wb = weight_bytes(f.name, N, K, f.group);
      const int copies =
          int(std::min<size_t>(16, std::max<size_t>(1, ((size_t(320) << 20) + wb - 1) / wb)));
      const int calls = copies * std::max(1, 24 / copies);
      // Per copy: the weight buffer and, for int4, the qparams (or the float row scales).
      std::vector<std::unique_ptr<Buf>> w, aux;
      const bool int4 = f.name.rfind("int4", 0) == 0;
      const bool bf = f.name == "bf16" || !f.gemv_kind;
      const bool fp8 = f.name.find("float8") != std::string::npos;
      for (int c = 0; c < copies; ++c) {
        const size_t main_bytes = int4 ? int4_packed_bytes(N, K)
                                  : bf ? size_t(N) * K * 2
                                       : size_t(N) * K;
        const size_t aux_bytes = int4 ? int4_qparam_bytes(N, K, f.group) : 4 * size_t(N);
        w.push_back(std::make_unique<Buf>(main_bytes));
        aux.push_back(std::make_unique<Buf>(aux_bytes));
        fill(w.back()->p, main_bytes, 100 + c, bf ? 1 : fp8 ? 2 : 0);
        if (int4) {
          fill(aux.back()->p, aux_bytes, 200 + c, 3);
        } else {
          std::vector<float> sc(N, 0.01f);
          CK(cudaMemcpy(aux.back()->p, sc.data(), 4 * size_t(N), cudaMemcpyHostToDevice));
        }
      }
      Buf x(size_t(16) * K * 2), xq(size_t(16) * K), xs(64), sink(64), y(size_t(16) * N * 2),
          ws(dq_workspace_bytes(16, K));
      fill(x.p, size_t(16) * K * 2, 3, 1);
      quantize_rows_int8(x.p, 16, K, static_cast<int8_t*>(xq.p), static_cast<float*>(xs.p), s);
      if (fp8)
        quantize_rows_float8(x.p, 16, K, static_cast<uint8_t*>(xq.p), static_cast<float*>(xs.p), s);
      CK(cudaStreamSynchronize(s));

      // The floor at this size: the streaming-read kernel over the same rotating weight buffers.
      const size_t main_bytes = int4 ? int4_packed_bytes(N, K)
                                : bf ? size_t(N) * K * 2
                                     : size_t(N) * K;
      const double floor_us = time_us(
          [&](int i, cudaStream_t st) {
            read_kernel<<<prop.multiProcessorCount * 4, 512, 0, st>>>(
                static_cast<const uint4*>(w[i % copies]->p), main_bytes / 16,
                static_cast<uint32_t*>(sink.p));
          },
          calls, s);
      floors[f.name + "/" + sh.name] = 100.0 * main_bytes / floor_us / 1e3 / read_bw;

      for (int M : Ms) {
        auto run = [&](int c, cudaStream_t st, GemvOptions o, bool two_step) {
          o.stream = st;
          void* W = w[c]->p;
          const float* A = static_cast<const float*>(aux[c]->p);
          if (f.name == "bf16")
            gemv_bf16(x.p, W, y.p, M, N, K, o);
          else if (f.name == "cublas-gemmex")
            gemm_bf16_cublas(x.p, W, y.p, M, N, K, CublasPath::GemmEx, st);
          else if (f.name == "cublas-lt")
            gemm_bf16_cublas(x.p, W, y.p, M, N, K, CublasPath::Lt, st);
          else if (f.name == "int8wo")
            gemv_int8wo(x.p, static_cast<int8_t*>(W), A, y.p, M, N, K, o);
          else if (f.name == "float8wo")
            gemv_float8wo(x.p, static_cast<uint8_t*>(W), A, y.p, M, N, K, o);
          else if (int4)
            gemv_int4wo(x.p, W, aux[c]->p, y.p, M, N, K, f.group, o);
          else if (f.name == "int8dq" && two_step)
            gemv_int8dq(x.p, static_cast<int8_t*>(W), A, y.p, M, N, K, ws.p, o);
          else if (f.name == "int8dq")
            gemv_int8dq(static_cast<int8_t*>(xq.p), static_cast<float*>(xs.p),
                        static_cast<int8_t*>(W), A, y.p, M, N, K, o);
          else if (two_step)
            gemv_float8dq(x.p, static_cast<uint8_t*>(W), A, y.p, M, N, K, ws.p, o);
          else
            gemv_float8dq(static_cast<uint8_t*>(xq.p), static_cast<float*>(xs.p),
                          static_cast<uint8_t*>(W), A, y.p, M, N, K, o);
        };
        auto measure = [&](const std::string& fmt, const std::string& cfg, GemvOptions o,
                           bool two_step) {
          const double us =
              time_us([&](int i, cudaStream_t st) { run(i % copies, st, o, two_step); }, calls, s);
          const double gbs = wb / us / 1e3;
          log({fmt, sh.name, cfg, N, K, M, us, gbs, 100.0 * gbs / read_bw});
        };
        if (!f.gemv_kind) {
          measure(f.name, "-", {}, false);
          continue;
        }
        const GemvFormat gf = f.name == "bf16"       ? GemvFormat::Bf16
                              : f.name == "int8wo"   ? GemvFormat::Int8wo
                              : f.name == "float8wo" ? GemvFormat::Float8wo
                              : int4                 ? GemvFormat::Int4wo
                              : f.name == "int8dq"   ? GemvFormat::Int8dq
                                                     : GemvFormat::Float8dq;
        const int def = gemv_default_config(gf, M, N, K);
        const int def_sk = gemv_default_split(gf, M, N, K, def);
        for (int cfg = 0; cfg < kGemvConfigs; ++cfg)
          for (int sk : {1, 2, 4}) {
            GemvOptions o;
            o.config = cfg;
            o.split_k = sk;
            const std::string name =
                gemv_config_name(cfg) + (sk > 1 ? ".s" + std::to_string(sk) : std::string());
            measure(f.name, name + (cfg == def && sk == def_sk ? "*" : ""), o, false);
          }
        GemvOptions o;
        o.pdl = true;
        measure(f.name, "auto+pdl", o, false);
        if (N % 16 == 0 && sh.name == std::string("gate_up")) {
          o.swiglu = true;  // the fused SwiGLU epilogue (half the outputs)
          measure(f.name, "auto+pdl+swiglu", o, false);
        }
        if (f.name == "int8dq" || f.name == "float8dq") measure(f.name + "+q", "auto", {}, true);
      }
    }
  if (full) std::fclose(full);

  // Summary: per (format, shape, M) the built-in choice, the best configuration and PDL.
  std::printf("\n%-14s %-8s %6s %6s %3s | %9s %7s %6s | %-11s %9s %6s | %9s %6s | %6s\n", "kernel",
              "shape", "N", "K", "M", "auto us", "GB/s", "%read", "best", "us", "%read", "pdl us",
              "%read", "floor%");
  for (size_t i = 0; i < rows.size();) {
    size_t j = i;
    const Row *def = nullptr, *best = nullptr, *pdl = nullptr;
    while (j < rows.size() && rows[j].fmt == rows[i].fmt && rows[j].shape == rows[i].shape &&
           rows[j].M == rows[i].M) {
      const Row& r = rows[j];
      if (r.cfg == "auto+pdl")
        pdl = &r;
      else if (r.cfg.find("swiglu") == std::string::npos) {
        if (r.cfg.back() == '*' || r.cfg == "-" || r.cfg == "auto") def = &r;
        if (!best || r.us < best->us) best = &r;
      }
      ++j;
    }
    if (def && (rows[i].M == 1 || rows[i].M == 16)) {
      std::string base = def->fmt.substr(0, def->fmt.find('+'));
      if (base.rfind("cublas", 0) == 0) base = "bf16";
      const auto fl = floors.find(base + "/" + def->shape);
      char pdl_us[16] = "-", pdl_pct[16] = "-", floor_pct[16] = "-";
      if (pdl) std::snprintf(pdl_us, sizeof pdl_us, "%.2f", pdl->us);
      if (pdl) std::snprintf(pdl_pct, sizeof pdl_pct, "%.1f", pdl->pct);
      if (fl != floors.end()) std::snprintf(floor_pct, sizeof floor_pct, "%.1f", fl->second);
      std::printf("%-14s %-8s %6d %6d %3d | %9.2f %7.0f %6.1f | %-11s %9.2f %6.1f | %9s %6s | %6s\n",
                  def->fmt.c_str(), def->shape.c_str(), def->N, def->K, def->M, def->us, def->gbs,
                  def->pct, best && best != def ? best->cfg.c_str() : "=", best ? best->us : 0.0,
                  best ? best->pct : 0.0, pdl_us, pdl_pct, floor_pct);
    }
    i = j;
  }
  std::printf(
      "read bandwidth %.0f GB/s; %%read = weight bytes (incl. qparams) / time / read bandwidth; "
      "floor%% = the\n"
      "streaming-read kernel on the same rotating buffers (launch and ramp costs at that size); "
      "pdl = launched\n"
      "with programmatic dependent launch (overlaps the previous kernel's tail)\n",
      read_bw);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}

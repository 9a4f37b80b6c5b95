#include "runtime/cuda/gpu_linear.h"

#include <algorithm>
#include <cstring>
#include <variant>

#include "kernels/cuda/int4_gemm.h"
#include "kernels/cuda/llama_ops.h"
#include "kernels/cuda/scaled_gemm.h"
#include "kernels/cuda/weight_gemv.h"
#include "lowbit/quant/config.h"
#include "quant/layouts/layouts.h"

namespace lowbit::gpu {
namespace {

bool power_of_two_group(int g) { return g >= 16 && g <= 4096 && (g & (g - 1)) == 0; }

const Tensor& saved(const quant::SavedWeight& s, const char* name) {
  for (const auto& [n, t] : s.tensors)
    if (n == name) return t;
  fail("GPU upload: layout '{}' has no tensor '{}'", s.layout, name);
}

void copy_to(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  LB_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  LB_CUDA(cudaStreamSynchronize(stream));  // the host source may be a temporary
}

std::vector<float> floats_of(const Tensor& t) {
  const Tensor f = t.to(DType::F32).contiguous();
  return std::vector<float>(f.data<float>(), f.data<float>() + f.numel());
}

}  // namespace

std::string format_name(const FormatChoice& f) {
  switch (f.fmt) {
    case WFormat::Bf16: return "bf16";
    case WFormat::Int8wo: return "int8wo";
    case WFormat::Int8dq: return "int8dq";
    case WFormat::Float8wo: return "float8wo";
    case WFormat::Float8dq: return "float8dq-row";
    case WFormat::Float8dqTensor: return "float8dq-tensor";
    case WFormat::Int4wo: return "int4wo-" + std::to_string(f.group);
  }
  return "?";
}

FormatChoice choose_format(const quant::LinearWeight& w) {
  using quant::ActQuant;
  if (w.in_features() % 64 != 0) return {};
  if (const auto* i8 = dynamic_cast<const quant::Int8Weight*>(&w)) {
    if (i8->act_quant() == ActQuant::None) return {WFormat::Int8wo, 0};
    if (i8->act_quant() == ActQuant::Int8Token) return {WFormat::Int8dq, 0};
    return {};
  }
  if (const auto* f8 = dynamic_cast<const quant::Float8Weight*>(&w)) {
    if (f8->act_quant() == ActQuant::None) return {WFormat::Float8wo, 0};
    return {f8->act_quant() == ActQuant::Fp8Tensor ? WFormat::Float8dqTensor : WFormat::Float8dq, 0};
  }
  if (dynamic_cast<const quant::Int4Weight*>(&w)) {
    const int g = std::stoi(w.scheme().substr(std::string("int4wo-").size()));
    if (power_of_two_group(g)) return {WFormat::Int4wo, g};
  }
  return {};
}

FormatChoice format_from_scheme(const std::string& scheme) {
  const quant::Config c = quant::parse_config(scheme);
  if (const auto* n = std::get_if<quant::NoQuant>(&c); n && n->dtype == DType::BF16) return {};
  if (std::holds_alternative<quant::Int8WeightOnly>(c)) return {WFormat::Int8wo, 0};
  if (std::holds_alternative<quant::Int8DynActInt8Weight>(c)) return {WFormat::Int8dq, 0};
  if (std::holds_alternative<quant::Float8WeightOnly>(c)) return {WFormat::Float8wo, 0};
  if (const auto* f8 = std::get_if<quant::Float8DynActFloat8Weight>(&c))
    return {f8->per_row ? WFormat::Float8dq : WFormat::Float8dqTensor, 0};
  if (const auto* i4 = std::get_if<quant::Int4WeightOnly>(&c); i4 && power_of_two_group(i4->group_size))
    return {WFormat::Int4wo, i4->group_size};
  fail("scheme '{}' has no GPU kernels for random weights (GPU schemes: bf16, int8wo, int8dq, float8wo, "
       "float8dq-row, float8dq-tensor, int4wo-32/64/128/256)",
       scheme);
}

int64_t GpuLinear::bytes() const {
  switch (f.fmt) {
    case WFormat::Bf16: return 2 * N * K;
    case WFormat::Int4wo: return N * K / 2 + N * (K / f.group) * 4;
    default: return N * K + 4 * N;
  }
}

GpuLinear allocate_linear(DeviceArena& arena, const FormatChoice& f, int64_t N, int64_t K) {
  LB_CHECK(N > 0 && K > 0, "allocate_linear: bad shape [{}, {}]", N, K);
  GpuLinear L{f, N, K};
  switch (f.fmt) {
    case WFormat::Bf16: L.w = arena.alloc(static_cast<size_t>(2 * N * K)); break;
    case WFormat::Int4wo:
      L.w = arena.alloc(cuda::int4_packed_bytes(N, K));
      L.aux = arena.alloc(cuda::int4_qparam_bytes(N, K, f.group));
      break;
    default:
      L.w = arena.alloc(static_cast<size_t>(N * K));
      L.aux = arena.alloc(static_cast<size_t>(4 * N));
  }
  return L;
}

namespace {

// A weight's rows on the host, one buffer per tensor the GPU format needs, each [n, bytes / n]:
// bf16 [n, K]; int4: CPU codes [n, K / 2], bf16 scale and zero [n, K / G]; int8 / e4m3: bytes [n, K]
// and a float scale per row (a per-tensor scale broadcast).
struct HostRows {
  int64_t n = 0;
  std::vector<std::vector<char>> t;
};

std::vector<char> bytes_of(const Tensor& t) {
  const Tensor c = t.contiguous();
  const char* p = static_cast<const char*>(c.raw());
  return std::vector<char>(p, p + c.nbytes());
}

HostRows host_rows(const GpuLinear& d, const quant::LinearWeight& src) {
  HostRows h;
  h.n = src.out_features();
  const int64_t n = h.n, K = d.K;
  LB_CHECK(src.in_features() == K, "GPU upload: a [{}, {}] weight into a [{}, {}] buffer", n, src.in_features(), d.N,
           K);
  if (d.f.fmt == WFormat::Bf16) {
    const auto* dense = dynamic_cast<const quant::DenseWeight*>(&src);
    h.t.push_back(bytes_of(dense ? dense->weight().to(DType::BF16) : src.dequantize().to(DType::BF16)));
    return h;
  }
  const FormatChoice f = choose_format(src);
  LB_CHECK(f == d.f, "GPU upload: a {} weight into a {} buffer", format_name(f), format_name(d.f));
  const quant::SavedWeight s = src.save();
  if (d.f.fmt == WFormat::Int4wo) {
    for (const char* name : {"qdata", "scale", "zero"}) h.t.push_back(bytes_of(saved(s, name)));
    return h;
  }
  const Tensor& q = saved(s, "qdata");
  LB_CHECK(static_cast<int64_t>(q.nbytes()) == n * K, "GPU upload: qdata {} is not [{}, {}] bytes", q.describe(),
           n, K);
  h.t.push_back(bytes_of(q));
  std::vector<float> scale = floats_of(saved(s, "scale"));
  if (scale.size() == 1) scale.assign(static_cast<size_t>(n), scale[0]);
  LB_CHECK(static_cast<int64_t>(scale.size()) == n, "GPU upload: {} scales for {} rows", scale.size(), n);
  const char* p = reinterpret_cast<const char*>(scale.data());
  h.t.emplace_back(p, p + scale.size() * 4);
  return h;
}

void write_rows(GpuLinear& d, int64_t n0, const HostRows& h, cudaStream_t stream) {
  const int64_t n = h.n, K = d.K;
  LB_CHECK(n0 >= 0 && n0 + n <= d.N, "GPU upload: {} rows at {} into a [{}, {}] buffer", n, n0, d.N, K);
  if (d.f.fmt == WFormat::Bf16) {
    LB_CHECK(static_cast<int64_t>(h.t[0].size()) == n * K * 2, "GPU upload: bf16 rows of {} bytes", h.t[0].size());
    copy_to(static_cast<char*>(d.w) + n0 * K * 2, h.t[0].data(), h.t[0].size(), stream);
    return;
  }
  if (d.f.fmt == WFormat::Int4wo) {
    LB_CHECK(n0 % 16 == 0, "GPU upload: int4 rows must start on a 16-row tile, got {}", n0);
    DeviceBuffer dq(h.t[0].size()), ds(h.t[1].size()), dz(h.t[2].size());
    copy_to(dq.get(), h.t[0].data(), h.t[0].size(), stream);
    copy_to(ds.get(), h.t[1].data(), h.t[1].size(), stream);
    copy_to(dz.get(), h.t[2].data(), h.t[2].size(), stream);
    const int64_t tile0 = n0 / 16;
    char* packed = static_cast<char*>(d.w) + tile0 * (K / 64) * 512;
    char* qp = static_cast<char*>(d.aux) + tile0 * (K / d.f.group) * 64;
    cuda::repack_int4(static_cast<const uint8_t*>(dq.get()), static_cast<const uint16_t*>(ds.get()),
                      static_cast<const uint16_t*>(dz.get()), n, K, d.f.group, packed, qp, stream);
    LB_CUDA(cudaStreamSynchronize(stream));
    return;
  }
  copy_to(static_cast<char*>(d.w) + n0 * K, h.t[0].data(), static_cast<size_t>(n * K), stream);
  copy_to(static_cast<float*>(d.aux) + n0, h.t[1].data(), h.t[1].size(), stream);
}

// Rows of a and b (n each) alternating in blocks of 8.
std::vector<char> interleave8(const std::vector<char>& a, const std::vector<char>& b, int64_t n) {
  LB_CHECK(a.size() == b.size() && n > 0 && n % 8 == 0 && a.size() % static_cast<size_t>(n) == 0,
           "GPU upload: gate and up tensors of {} and {} bytes for {} rows", a.size(), b.size(), n);
  const size_t blk = a.size() / static_cast<size_t>(n) * 8;
  std::vector<char> out(2 * a.size());
  for (int64_t i = 0; i < n / 8; ++i) {
    std::memcpy(out.data() + 2 * i * blk, a.data() + i * blk, blk);
    std::memcpy(out.data() + (2 * i + 1) * blk, b.data() + i * blk, blk);
  }
  return out;
}

}  // namespace

void upload_rows(GpuLinear& d, int64_t n0, const quant::LinearWeight& src, cudaStream_t stream) {
  write_rows(d, n0, host_rows(d, src), stream);
}

void upload_gate_up(GpuLinear& d, const quant::LinearWeight& gate, const quant::LinearWeight& up,
                    cudaStream_t stream) {
  const HostRows a = host_rows(d, gate), b = host_rows(d, up);
  LB_CHECK(a.n == b.n && a.n % 8 == 0 && d.N == 2 * a.n, "GPU upload: gate/up of {} and {} rows into {} rows",
           a.n, b.n, d.N);
  HostRows h;
  h.n = 2 * a.n;
  for (size_t i = 0; i < a.t.size(); ++i) h.t.push_back(interleave8(a.t[i], b.t[i], a.n));
  write_rows(d, 0, h, stream);
}

void randomize(GpuLinear& d, uint64_t seed, float std, cudaStream_t stream) {
  switch (d.f.fmt) {
    case WFormat::Bf16: cuda::random_bf16(d.w, d.N, d.K, seed, std, stream); break;
    case WFormat::Int8wo:
    case WFormat::Int8dq:
      cuda::random_int8(static_cast<int8_t*>(d.w), static_cast<float*>(d.aux), d.N, d.K, seed, std, stream);
      break;
    case WFormat::Float8wo:
    case WFormat::Float8dq:
    case WFormat::Float8dqTensor:
      cuda::random_float8(static_cast<uint8_t*>(d.w), static_cast<float*>(d.aux), d.N, d.K, seed, std, stream);
      break;
    case WFormat::Int4wo: cuda::random_int4(d.w, d.aux, d.N, d.K, d.f.group, seed, std, stream); break;
  }
}

LinearExec::LinearExec(DeviceArena& arena, cudaStream_t stream, int max_rows, int64_t max_k, int64_t max_n,
                       size_t wscratch_bytes, bool pdl, int64_t dequant_chunk_bytes, bool fp8_fast_accum,
                       size_t stage_bytes)
    : stream_(stream), pdl_(pdl), max_rows_(max_rows), max_k_(max_k), wscratch_bytes_(wscratch_bytes),
      dequant_chunk_bytes_(dequant_chunk_bytes), stage_bytes_(stage_bytes) {
  if (stage_bytes_) {
    side_ = create_stream(false);
    LB_CUDA(cudaEventCreateWithFlags(&queued_, cudaEventDisableTiming));
    for (Bank& b : banks_) {
      b.base = static_cast<char*>(arena.alloc(stage_bytes_));
      LB_CUDA(cudaEventCreateWithFlags(&b.ready, cudaEventDisableTiming));
    }
  }
  LB_CUBLAS(cublasCreate(&handle_));
  constexpr size_t kWorkspace = size_t(32) << 20;
  void* workspace = arena.alloc(kWorkspace);  // cuBLAS and cuBLASLt take turns on the one stream
  LB_CUBLAS(cublasSetWorkspace(handle_, workspace, kWorkspace));
  scaled_ = std::make_unique<cuda::ScaledGemm>(workspace, kWorkspace, fp8_fast_accum);
  xs_ = arena.alloc_n<float>(static_cast<size_t>(max_rows));
  LB_CUBLAS(cublasSetStream(handle_, stream_));
  const int gemv_rows = std::min(max_rows, cuda::kGemvMaxM);
  dq_ws_ = arena.alloc(cuda::dq_workspace_bytes(gemv_rows, static_cast<int>(max_k)));
  amax_ = static_cast<unsigned*>(arena.alloc(sizeof(unsigned)));
  yscratch_ = arena.alloc(static_cast<size_t>(gemv_rows) * max_n * 2);
  xscratch_ = arena.alloc(static_cast<size_t>(max_rows) * max_k * 2);
  if (wscratch_bytes_) wscratch_ = arena.alloc(wscratch_bytes_);
}

LinearExec::~LinearExec() {
  if (handle_) cublasDestroy(handle_);
  if (side_) cudaStreamSynchronize(side_);
  for (Bank& b : banks_)
    if (b.ready) cudaEventDestroy(b.ready);
  if (queued_) cudaEventDestroy(queued_);
  if (side_) cudaStreamDestroy(side_);
}

size_t LinearExec::staged_bytes(const GpuLinear& L) {
  if (L.f.fmt == WFormat::Int4wo && cuda::int4_gemm_bf16_ok(static_cast<int>(L.N), static_cast<int>(L.K), L.f.group))
    return 0;  // run() dequantizes it inside lowbit's Hopper product
  const bool weight_only = L.f.fmt == WFormat::Int8wo || L.f.fmt == WFormat::Float8wo || L.f.fmt == WFormat::Int4wo;
  return weight_only ? static_cast<size_t>(2 * L.N * L.K + 255) / 256 * 256 : 0;
}

void LinearExec::stage(const std::vector<const GpuLinear*>& ws) {
  if (!stage_bytes_) return;
  Bank& b = banks_[next_bank_];
  next_bank_ ^= 1;
  b.entries.clear();
  LB_CUDA(cudaEventRecord(queued_, stream_));
  LB_CUDA(cudaStreamWaitEvent(side_, queued_, 0));
  size_t used = 0;
  for (const GpuLinear* L : ws) {
    const size_t bytes = staged_bytes(*L);
    if (bytes == 0 || used + bytes > stage_bytes_) continue;
    void* out = b.base + used;
    used += bytes;
    dequant(*L, 0, L->N, out, side_);
    b.entries.emplace_back(L->w, out);
  }
  LB_CUDA(cudaEventRecord(b.ready, side_));
}

const void* LinearExec::staged(const GpuLinear& L) {
  for (Bank& b : banks_)
    for (const auto& [key, rows] : b.entries)
      if (key == L.w) {
        LB_CUDA(cudaStreamWaitEvent(stream_, b.ready, 0));
        return rows;
      }
  return nullptr;
}

void LinearExec::dequant(const GpuLinear& L, int64_t n0, int64_t n1, void* out, cudaStream_t s) const {
  const int K = static_cast<int>(L.K);
  const auto* scale = static_cast<const float*>(L.aux);
  switch (L.f.fmt) {
    case WFormat::Int8wo:
    case WFormat::Int8dq: cuda::dequant_rows_int8(static_cast<const int8_t*>(L.w), scale, n0, n1, K, out, s); break;
    case WFormat::Float8wo:
    case WFormat::Float8dq:
    case WFormat::Float8dqTensor:
      cuda::dequant_rows_float8(static_cast<const uint8_t*>(L.w), scale, n0, n1, K, out, s);
      break;
    case WFormat::Int4wo: cuda::dequant_rows_int4(L.w, L.aux, n0, n1, K, L.f.group, out, s); break;
    case WFormat::Bf16: fail("linear: a bf16 weight has nothing to dequantize");
  }
}

// Column-major in cuBLAS's terms: Yᵀ (n × M, leading dimension ldy) = op_T(W: K × n) · Xᵀ (K × M).
void LinearExec::gemm(const void* x, const void* w, int M, int64_t n, int64_t K, void* y, int64_t ldy, bool y_f32) {
  const float alpha = 1.0f, beta = 0.0f;
  LB_CUBLAS(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), M, static_cast<int>(K), &alpha, w,
                         CUDA_R_16BF, static_cast<int>(K), x, CUDA_R_16BF, static_cast<int>(K), &beta, y,
                         y_f32 ? CUDA_R_32F : CUDA_R_16BF, static_cast<int>(ldy), CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT));
}

bool LinearExec::run_swiglu(const GpuLinear& L, const void* x, int M, void* h, const cuda::RowCodes& xq) {
  if (M < 1 || M > cuda::kGemvMaxM || M > max_rows_ || L.K % 64 != 0 || L.N % 16 != 0 || L.K > max_k_) return false;
  gemv(L, x, M, h, true, true, xq);
  return true;
}

int64_t LinearExec::int8_chunk(int M, int64_t N) const {
  return std::min<int64_t>(N, static_cast<int64_t>(wscratch_bytes_ / (4 * static_cast<size_t>(M))) / 16 * 16);
}

cuda::RowCodes LinearExec::input_codes(const std::vector<GpuLinear>& parts, int M, int64_t ldy) {
  if (parts.empty() || M < 1 || M > max_rows_) return {};
  const WFormat f = parts[0].f.fmt;
  const int64_t K = parts[0].K;
  if ((f != WFormat::Int8dq && f != WFormat::Float8dq) || !cuda::row_codes_ok(K) || K > max_k_) return {};
  for (const GpuLinear& L : parts) {
    if (L.f.fmt != f || L.K != K) return {};
    if (M <= cuda::kGemvMaxM && K % 64 == 0) continue;  // the GEMV takes codes
    const int N = static_cast<int>(L.N);
    if (f == WFormat::Float8dq && !(fp8_ok_ && scaled_->has_fp8(xs_, static_cast<const float*>(L.aux), M, N,
                                                                  static_cast<int>(K), ldy)))
      return {};
    if (f == WFormat::Int8dq) {
      if (cuda::int8_gemm_bf16_ok(M, N, static_cast<int>(K), ldy)) continue;
      const int64_t chunk = int8_chunk(M, N);
      if (!int8_ok_ || !wscratch_ || chunk < 16) return {};
      if (!scaled_->has_int8(M, static_cast<int>(chunk), static_cast<int>(K))) return {};
      if (N % chunk && !scaled_->has_int8(M, static_cast<int>(N % chunk), static_cast<int>(K))) return {};
    }
  }
  return {f == WFormat::Int8dq ? cuda::RowQuant::Int8 : cuda::RowQuant::Float8, xscratch_, xs_};
}

std::optional<cuda::Int32Rows> LinearExec::run_int32(const GpuLinear& L, const void* x, int M,
                                                     const cuda::RowCodes& xq) {
  const int N = static_cast<int>(L.N), K = static_cast<int>(L.K);
  const bool coded = xq.kind == cuda::RowQuant::Int8;
  // Where lowbit's own product writes bf16 directly, the bf16 path is the cheaper one.
  if (L.f.fmt != WFormat::Int8dq || (!coded && xq.kind != cuda::RowQuant::None) || M <= cuda::kGemvMaxM ||
      cuda::int8_gemm_bf16_ok(M, N, K, N) ||
      M > max_rows_ || L.K > max_k_ || !int8_ok_ || !wscratch_ || int8_chunk(M, N) != N ||
      !scaled_->has_int8(M, N, K) || (!coded && !x))
    return std::nullopt;
  auto* codes = static_cast<int8_t*>(coded ? xq.codes : xscratch_);
  float* xs = coded ? xq.scales : xs_;
  if (!coded) cuda::quantize_rows_int8(x, M, K, codes, xs, stream_);
  auto* acc = static_cast<int32_t*>(wscratch_);
  LB_CHECK(scaled_->int8(codes, static_cast<const int8_t*>(L.w), acc, M, N, K, stream_), "linear: int8 GEMM");
  return cuda::Int32Rows{acc, xs, static_cast<const float*>(L.aux)};
}

void LinearExec::gemv(const GpuLinear& L, const void* x, int M, void* out, bool swiglu, bool pdl,
                      const cuda::RowCodes& xq) {
  const int N = static_cast<int>(L.N), K = static_cast<int>(L.K);
  cuda::GemvOptions o;
  o.stream = stream_;
  o.pdl = pdl_ && pdl;
  o.swiglu = swiglu;
  const auto* scale = static_cast<const float*>(L.aux);
  const bool coded = xq.kind != cuda::RowQuant::None;
  switch (L.f.fmt) {
    case WFormat::Bf16: cuda::gemv_bf16(x, L.w, out, M, N, K, o); break;
    case WFormat::Int8wo: cuda::gemv_int8wo(x, static_cast<const int8_t*>(L.w), scale, out, M, N, K, o); break;
    case WFormat::Float8wo:
      cuda::gemv_float8wo(x, static_cast<const uint8_t*>(L.w), scale, out, M, N, K, o);
      break;
    case WFormat::Int4wo: cuda::gemv_int4wo(x, L.w, L.aux, out, M, N, K, L.f.group, o); break;
    case WFormat::Int8dq:
      if (coded)
        cuda::gemv_int8dq(static_cast<const int8_t*>(xq.codes), xq.scales, static_cast<const int8_t*>(L.w), scale, out,
                          M, N, K, o);
      else
        cuda::gemv_int8dq(x, static_cast<const int8_t*>(L.w), scale, out, M, N, K, dq_ws_, o);
      break;
    case WFormat::Float8dq:
      if (coded)
        cuda::gemv_float8dq(static_cast<const uint8_t*>(xq.codes), xq.scales, static_cast<const uint8_t*>(L.w), scale,
                            out, M, N, K, o);
      else
        cuda::gemv_float8dq(x, static_cast<const uint8_t*>(L.w), scale, out, M, N, K, dq_ws_, o);
      break;
    case WFormat::Float8dqTensor: {
      // The codes and per-row scales where gemv_float8dq's two-step form keeps them.
      auto* q8 = static_cast<uint8_t*>(dq_ws_);
      auto* xs = reinterpret_cast<float*>(static_cast<char*>(dq_ws_) + (static_cast<size_t>(M) * K + 255) / 256 * 256);
      cuda::quantize_tensor_float8(x, M, K, amax_, q8, xs, stream_);
      cuda::gemv_float8dq(q8, xs, static_cast<const uint8_t*>(L.w), scale, out, M, N, K, o);
      break;
    }
  }
}

void LinearExec::run(const GpuLinear& L, const void* x, int M, void* y, int64_t ldy, bool y_f32, bool pdl,
                     const cuda::RowCodes& xq) {
  LB_CHECK(M >= 1 && M <= max_rows_ && L.K <= max_k_ && ldy >= L.N, "linear: M {} (max {}), K {}, ldy {} < N {}", M,
           max_rows_, L.K, ldy, L.N);
  const int N = static_cast<int>(L.N), K = static_cast<int>(L.K);
  const bool coded = xq.kind != cuda::RowQuant::None;
  LB_CHECK(!coded || (xq.kind == cuda::RowQuant::Int8 ? L.f.fmt == WFormat::Int8dq : L.f.fmt == WFormat::Float8dq),
           "linear: row codes for a {} weight", format_name(L.f));
  if (M <= cuda::kGemvMaxM && K % 64 == 0 && !y_f32) {
    // Decode: the GEMV kernels write rows of exactly N outputs.
    void* out = ldy == N || M == 1 ? y : yscratch_;
    gemv(L, x, M, out, false, pdl, xq);
    if (out != y)
      LB_CUDA(cudaMemcpy2DAsync(y, static_cast<size_t>(ldy) * 2, out, static_cast<size_t>(N) * 2,
                                static_cast<size_t>(N) * 2, M, cudaMemcpyDeviceToDevice, stream_));
    return;
  }
  const auto* wscale = static_cast<const float*>(L.aux);
  if (!y_f32 && fp8_ok_ && L.f.fmt == WFormat::Float8dq) {
    // FP8 tensor cores on e4m3 activations quantized per row as the decode path quantizes them.
    // (float8dq-tensor keeps the dequantized path below: its per-tensor codes are coarse enough
    // that the FP8 product's different rounding moved perplexity 0.2% off the CPU reference.)
    auto* codes = static_cast<uint8_t*>(coded ? xq.codes : xscratch_);
    const float* xs = coded ? xq.scales : xs_;
    if (!coded) cuda::quantize_rows_float8(x, M, K, codes, xs_, stream_);
    if (scaled_->fp8(codes, xs, static_cast<const uint8_t*>(L.w), wscale, y, M, N, K, ldy, stream_)) return;
    LB_CHECK(!coded, "linear: no FP8 algorithm for rows input_codes quantized");
    fp8_ok_ = false;  // no FP8 algorithm here: the dequantized path below from now on
  }
  const bool own_int8 = L.f.fmt == WFormat::Int8dq && cuda::int8_gemm_bf16_ok(M, N, K, ldy) &&
                        reinterpret_cast<uintptr_t>(y) % 16 == 0;
  if (!y_f32 && L.f.fmt == WFormat::Int8dq && (own_int8 || (int8_ok_ && wscratch_))) {
    // int8 tensor cores: on Hopper lowbit's own product with the scales applied in its epilogue,
    // elsewhere cuBLASLt's, int32 products in the scratch (row chunks) scaled to bf16.
    auto* codes = static_cast<int8_t*>(coded ? xq.codes : xscratch_);
    const float* xs = coded ? xq.scales : xs_;
    if (!coded) cuda::quantize_rows_int8(x, M, K, codes, xs_, stream_);
    if (own_int8) {
      cuda::int8_gemm_bf16(codes, xs, static_cast<const int8_t*>(L.w), wscale, y, M, N, K, ldy, stream_);
      return;
    }
    auto* acc = static_cast<int32_t*>(wscratch_);
    const int64_t chunk = int8_chunk(M, N);
    if (chunk >= 16) {
      bool ok = true;
      for (int64_t n0 = 0; n0 < N && ok; n0 += chunk) {
        const int n = static_cast<int>(std::min<int64_t>(N, n0 + chunk) - n0);
        ok = scaled_->int8(codes, static_cast<const int8_t*>(L.w) + n0 * K, acc, M, n, K, stream_);
        if (ok) cuda::scale_int32_to_bf16(acc, xs, wscale + n0, M, n, static_cast<char*>(y) + n0 * 2, ldy, stream_);
      }
      if (ok) return;
      LB_CHECK(!coded, "linear: no int8 algorithm for rows input_codes quantized");
      int8_ok_ = false;  // no int8 algorithm here: the dequantized path below (it rewrites all of y)
    }
  }
  LB_CHECK(!coded, "linear: row codes for a product without a quantized kernel");
  if (!y_f32 && L.f.fmt == WFormat::Int4wo && cuda::int4_gemm_bf16_ok(N, K, L.f.group) && ldy % 8 == 0 &&
      reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0) {
    // Hopper: the weights dequantized inside the product, exactly as dequant() would write them.
    cuda::int4_gemm_bf16(x, L.w, L.aux, y, M, N, K, L.f.group, ldy, stream_);
    return;
  }
  // Prefill otherwise: the dynamic schemes' activation math, then bf16 GEMMs over dequantized weight rows.
  const void* xin = x;
  if (L.f.fmt == WFormat::Int8dq || L.f.fmt == WFormat::Float8dq || L.f.fmt == WFormat::Float8dqTensor) {
    if (L.f.fmt == WFormat::Int8dq)
      cuda::fake_quantize_rows_int8(x, M, K, xscratch_, stream_);
    else if (L.f.fmt == WFormat::Float8dq)
      cuda::fake_quantize_rows_float8(x, M, K, xscratch_, stream_);
    else
      cuda::fake_quantize_tensor_float8(x, M, K, amax_, xscratch_, stream_);
    xin = xscratch_;
  }
  const size_t out_size = y_f32 ? 4 : 2;
  if (L.f.fmt == WFormat::Bf16) return gemm(xin, L.w, M, N, K, y, ldy, y_f32);
  if (const void* rows = staged(L)) return gemm(xin, rows, M, N, K, y, ldy, y_f32);
  LB_CHECK(wscratch_, "linear: no dequantization scratch for a {} weight", format_name(L.f));
  int64_t chunk = std::min<int64_t>(N, static_cast<int64_t>(wscratch_bytes_ / (2 * static_cast<size_t>(K))) / 16 * 16);
  if (dequant_chunk_bytes_ > 0) chunk = std::min(chunk, std::max<int64_t>(16, dequant_chunk_bytes_ / (2 * K) / 16 * 16));
  LB_CHECK(chunk >= 16 || chunk == N, "linear: dequantization scratch of {} bytes is too small for K = {}",
           wscratch_bytes_, K);
  for (int64_t n0 = 0; n0 < N; n0 += chunk) {
    const int64_t n1 = std::min<int64_t>(N, n0 + chunk);
    dequant(L, n0, n1, wscratch_, stream_);
    gemm(xin, wscratch_, M, n1 - n0, K, static_cast<char*>(y) + n0 * out_size, ldy, y_f32);
  }
}

}  // namespace lowbit::gpu

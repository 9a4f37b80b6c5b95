// GPTQ: Hessian accumulation, the inverse-Cholesky factor, and the blocked column-by-column
// quantization with error feedback.
//
// Every output row is an independent problem that shares U (upper Cholesky factor of H⁻¹): row w is
// quantized column by column (in processing order), and after column i the error e = (w_i - dq_i) /
// U_ii is spread over the later columns, w_c -= e · U_ic. Within a block of columns the spread is
// immediate; to the columns after the block it is applied once per block (GPTQ's lazy batch
// update), which keeps U's rows in cache. Rows are processed in chunks in parallel; each row's
// arithmetic is the same in any chunk or thread, so results are deterministic.
#include "algorithms/gptq.h"
#include "algorithms/group_quant.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "lowbit/core/float_formats.h"
#include "lowbit/quant/primitives.h"

namespace lowbit::algorithms {
namespace {

// Threads cost more than they save below a few milliseconds of work (and on a busy machine).
bool worth_threads(int64_t flops) {
  return flops >= (int64_t{1} << 26);
}

// ------------------------------------------------------------------ dense linear algebra (double)

// In-place lower Cholesky factor of the K x K row-major matrix a (only the lower triangle is read
// and meaningful afterwards). Right-looking, in panels of 64 columns; false if a pivot is not
// positive.
bool cholesky_lower(double* a, int64_t K) {
  constexpr int64_t P = 64, RB = 8, JC = 512;
  std::vector<double> pt;  // the panel transposed: pt[k * K + j] = L[j][k0 + k]
  const bool par = worth_threads(K * K * K);
  for (int64_t k0 = 0; k0 < K; k0 += P) {
    const int64_t k1 = std::min(k0 + P, K), nb = k1 - k0;
    for (int64_t j = k0; j < k1; ++j) {  // the diagonal block
      double* aj = a + j * K;
      double d = aj[j];
      for (int64_t k = k0; k < j; ++k) d -= aj[k] * aj[k];
      if (!(d > 0) || !std::isfinite(d)) return false;
      aj[j] = std::sqrt(d);
      for (int64_t i = j + 1; i < k1; ++i) {
        double* ai = a + i * K;
        double v = ai[j];
        for (int64_t k = k0; k < j; ++k) v -= ai[k] * aj[k];
        ai[j] = v / aj[j];
      }
    }
    if (k1 == K) break;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = k1; i < K; ++i) {  // the panel below: L[i, k0:k1] = A[i, k0:k1] · L_block⁻ᵀ
      double* ai = a + i * K;
      for (int64_t j = k0; j < k1; ++j) {
        const double* aj = a + j * K;
        double v = ai[j];
        for (int64_t k = k0; k < j; ++k) v -= ai[k] * aj[k];
        ai[j] = v / aj[j];
      }
    }
    pt.assign(static_cast<size_t>(nb * K), 0.0);
    for (int64_t j = k1; j < K; ++j)
      for (int64_t k = 0; k < nb; ++k) pt[k * K + j] = a[j * K + k0 + k];
        // Trailing update A[i][j] -= Σ_k L[i][k] L[j][k] for k1 <= j <= i, tiled RB rows x JC
        // columns.
#pragma omp parallel for schedule(dynamic) if (par)
    for (int64_t i0 = k1; i0 < K; i0 += RB) {
      const int64_t i1 = std::min(i0 + RB, K);
      for (int64_t j0 = k1; j0 < i1; j0 += JC) {
        const int64_t j1 = std::min(j0 + JC, i1);
        for (int64_t k = 0; k < nb; ++k) {
          const double* pk = pt.data() + k * K;
          for (int64_t i = std::max(i0, j0); i < i1; ++i) {
            double* ai = a + i * K;
            const double lik = ai[k0 + k];
            const int64_t je = std::min(j1, i + 1);
            for (int64_t j = j0; j < je; ++j) ai[j] -= lik * pk[j];
          }
        }
      }
    }
  }
  return true;
}

// x = l⁻¹ for a lower triangular l (both K x K row-major), by forward substitution on blocks of 32
// columns at a time (independent, in parallel).
void invert_lower(const double* l, int64_t K, double* x) {
  constexpr int64_t CB = 32;
  std::fill(x, x + K * K, 0.0);
#pragma omp parallel for schedule(dynamic) if (worth_threads(K * K * K))
  for (int64_t j0 = 0; j0 < K; j0 += CB) {
    const int64_t nc = std::min(CB, K - j0);
    std::vector<double> col(static_cast<size_t>((K - j0) * CB),
                            0.0);  // X[i][j0 + c] at (i - j0)*CB + c
    for (int64_t i = j0; i < K; ++i) {
      const double* li = l + i * K;
      double acc[CB] = {};
      for (int64_t k = j0; k < i; ++k) {
        const double lik = li[k];
        const double* xk = col.data() + (k - j0) * CB;
        for (int64_t c = 0; c < CB; ++c) acc[c] += lik * xk[c];
      }
      double* xi = col.data() + (i - j0) * CB;
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t j = j0 + c;
        xi[c] = i < j ? 0.0 : (i == j ? 1.0 / li[i] : -acc[c] / li[i]);
        x[i * K + j] = xi[c];
      }
    }
  }
}

// ------------------------------------------------------------------ the schemes' RTN math

// v H vᵀ for each of the n rows of v (n x K): vᵢ² Hᵢᵢ + 2 Σ_{i<j} vᵢ Hᵢⱼ vⱼ from the upper
// triangle, in tiles of 128 rows x 256 columns so each tile of H is read once per 128 rows.
std::vector<double> quadratic_forms(const std::vector<float>& v, int64_t n,
                                    const std::vector<double>& h, int64_t K) {
  constexpr int64_t RC = 128, JC = 256;
  const int64_t nrc = (n + RC - 1) / RC, njc = (K + JC - 1) / JC;
  std::vector<double> part(static_cast<size_t>(n * njc));
#pragma omp parallel for schedule(dynamic) if (worth_threads(n * K * K))
  for (int64_t task = 0; task < nrc * njc; ++task) {
    const int64_t r0 = (task / njc) * RC, nr = std::min(RC, n - r0);
    const int64_t jc = task % njc, j0 = jc * JC, j1 = std::min(j0 + JC, K), nj = j1 - j0;
    std::vector<double> acc(static_cast<size_t>(nr * JC), 0.0);  // Σ_{i<j} vᵢ Hᵢⱼ for j in the tile
    for (int64_t i = 0; i + 1 < j1; ++i) {
      const int64_t js = std::max(j0, i + 1);
      const double* hi = h.data() + i * K;
      for (int64_t r = 0; r < nr; ++r) {
        const double c = v[(r0 + r) * K + i];
        if (c == 0) continue;
        double* a = acc.data() + r * JC;
        for (int64_t j = js; j < j1; ++j) a[j - j0] += c * hi[j];
      }
    }
    for (int64_t r = 0; r < nr; ++r) {
      double sum = 0;
      for (int64_t j = 0; j < nj; ++j) {
        const double x = v[(r0 + r) * K + j0 + j];
        sum += x * (h[(j0 + j) * K + j0 + j] * x + 2.0 * acc[r * JC + j]);
      }
      part[(r0 + r) * njc + jc] = sum;
    }
  }
  std::vector<double> out(static_cast<size_t>(n), 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t jc = 0; jc < njc; ++jc) out[r] += part[r * njc + jc];
  return out;
}

}  // namespace

namespace detail {

bool upper_cholesky_of_inverse(const std::vector<double>& a, int64_t K, std::vector<double>& u) {
  // With J the reversal of indices and J A J = L Lᵀ: A⁻¹ = (J L⁻¹ J)ᵀ (J L⁻¹ J), and J L⁻¹ J is
  // upper triangular with a positive diagonal, so it is the factor: one Cholesky and one triangular
  // inverse.
  std::vector<double> rev(static_cast<size_t>(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j <= i; ++j) rev[i * K + j] = a[(K - 1 - i) * K + (K - 1 - j)];
  if (!cholesky_lower(rev.data(), K)) return false;
  std::vector<double> x(static_cast<size_t>(K * K));
  invert_lower(rev.data(), K, x.data());
  rev.clear();
  rev.shrink_to_fit();
  u.assign(static_cast<size_t>(K * K), 0.0);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = i; j < K; ++j) {
      const double v = x[(K - 1 - i) * K + (K - 1 - j)];
      if (!std::isfinite(v)) return false;
      u[i * K + j] = v;
    }
  return true;
}

}  // namespace detail

// ------------------------------------------------------------------ HessianAccumulator

HessianAccumulator::HessianAccumulator(int64_t K) : k_(K) {
  LB_CHECK(K > 0, "HessianAccumulator: in_features must be positive, got {}", K);
  h_.assign(static_cast<size_t>(K * K), 0.0);
}

void HessianAccumulator::add(const float* x, int64_t rows) {
  LB_CHECK(rows >= 0 && (rows == 0 || x != nullptr), "HessianAccumulator: bad batch ({} rows)",
           rows);
  if (rows == 0) return;
  const int64_t K = k_;
  for (int64_t i = 0; i < rows * K; ++i)
    LB_CHECK(std::isfinite(x[i]), "HessianAccumulator: activation row {} column {} is {}",
             n_ + i / K, i % K, x[i]);
  // H = H · n/(n+rows) + (2/(n+rows)) XᵀX, upper-triangle tiles of XᵀX in parallel. Products are
  // summed in float over at most 256 rows, then added into the double H: the float partial sums
  // stay ~1e-5 relative (far below the 1% damping) and the error does not grow with the data set.
  const double total = static_cast<double>(n_ + rows);
  const double keep = static_cast<double>(n_) / total, w = 2.0 / total;
  constexpr int64_t T = 64, RC = 256;
  const int64_t nt = (K + T - 1) / T;
#pragma omp parallel for schedule(dynamic) if (worth_threads(rows * K * K))
  for (int64_t p = 0; p < nt * nt; ++p) {
    const int64_t ti = p / nt, tj = p % nt;
    if (tj < ti) continue;
    const int64_t i0 = ti * T, ni = std::min(T, K - i0), j0 = tj * T, nj = std::min(T, K - j0);
    for (int64_t i = 0; i < ni; ++i)
      for (int64_t j = 0; j < nj; ++j) h_[(i0 + i) * K + j0 + j] *= keep;
    float acc[T * T];
    for (int64_t r0 = 0; r0 < rows; r0 += RC) {
      std::fill(acc, acc + T * T, 0.0f);
      for (int64_t r = r0; r < std::min(r0 + RC, rows); ++r) {
        const float* xr = x + r * K;
        for (int64_t i = 0; i < ni; ++i) {
          const float xi = xr[i0 + i];
          float* a = acc + i * T;
          for (int64_t j = 0; j < nj; ++j) a[j] += xi * xr[j0 + j];
        }
      }
      for (int64_t i = 0; i < ni; ++i)
        for (int64_t j = 0; j < nj; ++j) h_[(i0 + i) * K + j0 + j] += w * acc[i * T + j];
    }
  }
#pragma omp parallel for schedule(static) if (worth_threads(K * K * 64))
  for (int64_t i = 1; i < K; ++i)
    for (int64_t j = 0; j < i; ++j) h_[i * K + j] = h_[j * K + i];
  n_ += rows;
}

// ------------------------------------------------------------------ GPTQ

GptqResult gptq_quantize(const Tensor& w_in, const HessianAccumulator& H, const GptqOptions& o) {
  LB_CHECK(w_in.defined() && w_in.dim() == 2 && dtype_is_float(w_in.dtype()),
           "gptq: weight must be a 2-D float tensor [N, K], got {}",
           w_in.defined() ? w_in.describe() : "undefined");
  const int64_t N = w_in.size(0), K = w_in.size(1);
  LB_CHECK(N > 0 && K > 0, "gptq: empty weight {}", w_in.describe());
  LB_CHECK(H.dim() == K, "gptq: the Hessian is {}x{} but the weight has {} input features", H.dim(),
           H.dim(), K);
  LB_CHECK(H.samples() > 0, "gptq: the Hessian has no calibration samples");
  LB_CHECK(o.block_size > 0, "gptq: block_size must be positive, got {}", o.block_size);
  LB_CHECK(o.percdamp >= 0 && std::isfinite(o.percdamp), "gptq: bad percdamp {}", o.percdamp);
  const bool per_row = o.scheme == GptqScheme::Int8PerRow;
  if (o.scheme == GptqScheme::UIntIntZero)
    LB_CHECK(o.bits >= 1 && o.bits <= 8, "gptq: uintx bits {} not in [1, 8]", o.bits);
  const int64_t G = per_row ? K : o.group_size;
  LB_CHECK(G > 0 && K % G == 0, "gptq: in_features {} is not a multiple of the group size {}", K,
           o.group_size);
  quant::check_finite(w_in, "gptq: weight");
  const GroupScheme sc = make_group_scheme(o);
  const int64_t ng = K / G;
  const std::vector<float> w_orig = w_in.to_f32_vector();
  std::vector<double> h = H.h();

  // Dead inputs (never active): H_kk = 1 and the weight column zeroed, so the factorization exists.
  std::vector<float> W = w_orig;
  for (int64_t k = 0; k < K; ++k)
    if (h[k * K + k] == 0) {
      h[k * K + k] = 1;
      for (int64_t n = 0; n < N; ++n) W[n * K + k] = 0;
    }

  // Processing order: perm[p] is the original column processed p-th.
  std::vector<int64_t> perm(static_cast<size_t>(K));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (o.act_order)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return h[a * K + a] > h[b * K + b]; });

  // Static qparams (act_order's groups, and int8's whole rows), from the original weights.
  const bool dynamic = !per_row && !o.act_order;
  std::vector<QParam> qp(static_cast<size_t>(N * ng));
  if (!dynamic)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t g = 0; g < ng; ++g)
        qp[n * ng + g] = sc.choose_clipped(&W[n * K + g * G], G, o.clip_grid, o.clip_max_shrink);

  // Permute, damp by percdamp · mean(diag H), factor; raise the damping tenfold on failure.
  std::vector<double> hp(static_cast<size_t>(K * K));
  double mean_diag = 0;
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) hp[i * K + j] = h[perm[i] * K + perm[j]];
    mean_diag += hp[i * K + i] / static_cast<double>(K);
  }
  h.clear();
  h.shrink_to_fit();
  std::vector<double> u, diag(static_cast<size_t>(K));
  for (int64_t i = 0; i < K; ++i) diag[i] = hp[i * K + i];
  double damp = o.percdamp * mean_diag;
  for (int attempt = 0;; ++attempt) {
    for (int64_t i = 0; i < K; ++i) hp[i * K + i] = diag[i] + damp;
    if (detail::upper_cholesky_of_inverse(hp, K, u)) break;
    LB_CHECK(
        attempt < 6,
        "gptq: the Hessian is not positive definite even with damping {:.3g} (percdamp {}); the "
        "calibration activations are degenerate",
        damp, o.percdamp);
    damp = damp > 0 ? damp * 10 : 1e-6 * mean_diag;
  }
  hp.clear();
  hp.shrink_to_fit();
  const std::vector<float> U(u.begin(), u.end());
  u.clear();
  u.shrink_to_fit();

  // Permuted weights; with dynamic groups the blocks hold whole groups, so a group's qparams are
  // computed from columns that already carry every earlier column's error.
  std::vector<float> Wp(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < K; ++p) Wp[n * K + p] = W[n * K + perm[p]];
  int64_t B = o.block_size;
  if (dynamic) B = G <= B ? B - B % G : G;
  std::vector<int32_t> codes(static_cast<size_t>(N * K));
  std::vector<float> deq(static_cast<size_t>(N * K));  // dequantized, original column order

  constexpr int64_t RC = 16;
#pragma omp parallel for schedule(dynamic) if (worth_threads(N * K * K))
  for (int64_t r0 = 0; r0 < N; r0 += RC) {
    const int64_t nr = std::min(RC, N - r0);
    std::vector<float> err(static_cast<size_t>(nr * B));
    for (int64_t b0 = 0; b0 < K; b0 += B) {
      const int64_t b1 = std::min(b0 + B, K);
      for (int64_t i = b0; i < b1; ++i) {
        const float* ui = U.data() + i * K;
        for (int64_t r = 0; r < nr; ++r) {
          const int64_t n = r0 + r;
          float* wr = Wp.data() + n * K;
          if (dynamic && i % G == 0) qp[n * ng + i / G] = sc.choose_clipped(wr + i, G, o.clip_grid, o.clip_max_shrink);
          const QParam& p = qp[n * ng + (per_row ? 0 : perm[i] / G)];
          const float q = sc.quantize(wr[i], p), dq = sc.dequantize(q, p);
          codes[n * K + perm[i]] = static_cast<int32_t>(q);
          deq[n * K + perm[i]] = dq;
          const float e = (wr[i] - dq) / ui[i];
          err[r * B + (i - b0)] = e;
          for (int64_t c = i + 1; c < b1; ++c) wr[c] -= e * ui[c];
        }
      }
      for (int64_t i = b0; i < b1; ++i) {  // lazy batch update of the columns after the block
        const float* ui = U.data() + i * K;
        for (int64_t r = 0; r < nr; ++r) {
          float* wr = Wp.data() + (r0 + r) * K;
          const float e = err[r * B + (i - b0)];
          for (int64_t c = b1; c < K; ++c) wr[c] -= e * ui[c];
        }
      }
    }
  }

  GptqResult res;
  res.q = Tensor::from_vector(codes, {N, K});
  std::vector<float> s(qp.size()), z(qp.size());
  for (size_t b = 0; b < qp.size(); ++b) {
    s[b] = qp[b].scale;
    z[b] = qp[b].zero;
  }
  switch (o.scheme) {
    case GptqScheme::Int4FloatZero:
      res.scale = Tensor::from_floats(s, {N, ng}, DType::BF16);
      res.zero = Tensor::from_floats(z, {N, ng}, DType::BF16);
      break;
    case GptqScheme::UIntIntZero:
      res.scale = Tensor::from_floats(s, {N, ng}, DType::F32);
      res.zero = Tensor::from_floats(z, {N, ng}, DType::I32);
      break;
    case GptqScheme::Int8PerRow:
      res.scale = Tensor::from_floats(s, {N}, DType::F32);
      break;
  }

  // tr((W - Q) H (W - Q)ᵀ) / tr(W H Wᵀ) with the accumulated H and the weight as given: one pass
  // over H for the rows of W - Q and of W together.
  std::vector<float> rows(2 * w_orig.size());
  for (size_t i = 0; i < w_orig.size(); ++i) {
    rows[i] = w_orig[i] - deq[i];
    rows[w_orig.size() + i] = w_orig[i];
  }
  const auto forms = quadratic_forms(rows, 2 * N, H.h(), K);
  double tn = 0, td = 0;
  for (int64_t n = 0; n < N; ++n) {
    tn += forms[n];
    td += forms[N + n];
  }
  res.rel_output_error = td > 0 ? tn / td : 0.0;
  return res;
}

Tensor gptq_dequantize(const GptqResult& r, const GptqOptions& o) {
  LB_CHECK(r.q.defined() && r.q.dim() == 2 && r.scale.defined(),
           "gptq_dequantize: incomplete result");
  const int64_t N = r.q.size(0), K = r.q.size(1);
  const bool per_row = o.scheme == GptqScheme::Int8PerRow;
  const int64_t G = per_row ? K : o.group_size;
  LB_CHECK(G > 0 && K % G == 0 && r.scale.numel() == N * (K / G) &&
               (per_row || (r.zero.defined() && r.zero.numel() == N * (K / G))),
           "gptq_dequantize: qparams do not fit codes {} with group {}", r.q.describe(), G);
  const GroupScheme sc = make_group_scheme(o);
  const auto s = r.scale.to_f32_vector();
  const auto z = per_row ? std::vector<float>(s.size(), 0.0f) : r.zero.to_f32_vector();
  const auto q = r.q.to_f32_vector();
  Tensor out = Tensor::empty({N, K}, DType::F32);
  float* d = out.data<float>();
  for (int64_t i = 0; i < N * K; ++i) {
    const int64_t b = i / G;
    d[i] = sc.dequantize(q[i], {s[b], z[b], 0.0f});
  }
  return out;
}

}  // namespace lowbit::algorithms

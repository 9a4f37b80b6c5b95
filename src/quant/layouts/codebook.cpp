// Codebook weights: one 2^B-entry codebook per tensor, learned by 1-D k-means over the weights normalized
// by their block's absolute maximum; B-bit codes; one bf16 scale per block along K.
#include <cmath>

#include "layouts.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/core/packing.h"
#include "registry.h"

namespace lowbit::quant {
namespace {

// Lloyd's algorithm on a fine histogram of values in [-1, 1]: deterministic and fast for any tensor size.
std::vector<float> kmeans_1d(const std::vector<float>& v, int k) {
  constexpr int kBins = 8192;
  std::vector<double> count(kBins, 0.0), sum(kBins, 0.0);
  for (float x : v) {
    const int b = std::clamp(static_cast<int>((x + 1.0f) * 0.5f * kBins), 0, kBins - 1);
    count[b] += 1;
    sum[b] += x;
  }
  // Start from quantiles of the distribution.
  std::vector<double> c(static_cast<size_t>(k));
  const double total = static_cast<double>(v.size());
  double acc = 0;
  int next = 0;
  for (int b = 0; b < kBins && next < k; ++b) {
    acc += count[b];
    while (next < k && acc >= (next + 0.5) * total / k) c[next++] = (b + 0.5) / kBins * 2.0 - 1.0;
  }
  for (; next < k; ++next) c[next] = 1.0;
  for (int iter = 0; iter < 50; ++iter) {
    std::vector<double> cs(static_cast<size_t>(k), 0.0), cn(static_cast<size_t>(k), 0.0);
    int j = 0;
    for (int b = 0; b < kBins; ++b) {
      if (count[b] == 0) continue;
      const double center = sum[b] / count[b];
      while (j + 1 < k && std::fabs(c[j + 1] - center) < std::fabs(c[j] - center)) ++j;
      cs[j] += sum[b];
      cn[j] += count[b];
    }
    for (int i = 0; i < k; ++i)
      if (cn[i] > 0) c[i] = cs[i] / cn[i];
    std::sort(c.begin(), c.end());
  }
  return std::vector<float>(c.begin(), c.end());
}

}  // namespace

LinearPtr CodebookWeight::quantize(const Tensor& w_in, int bits, int block) {
  const int64_t N = w_in.size(0), K = w_in.size(1), B = K / block;
  LB_CHECK(K % block == 0, "codebook-{}-{}: in_features {} is not a multiple of the block size", bits, block, K);
  const std::vector<float> w = w_in.to_f32_vector();
  std::vector<float> scale(static_cast<size_t>(N * B)), norm(w.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < B; ++b) {
      float amax = 0;
      for (int64_t k = b * block; k < (b + 1) * block; ++k) amax = std::max(amax, std::fabs(w[n * K + k]));
      const float s = round_to(DType::BF16, amax > 0 ? amax : 1.0f);
      scale[n * B + b] = s;
      for (int64_t k = b * block; k < (b + 1) * block; ++k) norm[n * K + k] = w[n * K + k] / s;
    }
  const std::vector<float> book = kmeans_1d(norm, 1 << bits);
  std::vector<uint8_t> codes(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const auto it = std::lower_bound(book.begin(), book.end(), norm[i]);
    size_t j = static_cast<size_t>(it - book.begin());
    if (j == book.size() || (j > 0 && norm[i] - book[j - 1] <= book[j] - norm[i])) --j;
    codes[i] = static_cast<uint8_t>(j);
  }
  Tensor packed = Tensor::empty({N, packed_bytes(K, bits)}, DType::U8);
  for (int64_t n = 0; n < N; ++n)
    pack_bits(codes.data() + n * K, K, bits, packed.data<uint8_t>() + n * packed.size(1));
  return std::make_shared<CodebookWeight>(packed, Tensor::from_vector(book, {1 << bits}),
                                          Tensor::from_floats(scale, {N, B}, DType::BF16), K, bits, block);
}

CodebookWeight::CodebookWeight(Tensor codes, Tensor codebook, Tensor scale, int64_t k, int bits, int block)
    : codes_(codes.contiguous()), codebook_(codebook.contiguous()), scale_(scale.contiguous()), k_(k), bits_(bits),
      block_(block) {
  LB_CHECK(bits >= 1 && bits <= 8 && block > 0 && k % block == 0, "codebook layout: bits {} block {} K {} do not fit",
           bits, block, k);
  const int64_t N = scale_.size(0);
  LB_CHECK(codebook_.dtype() == DType::F32 && codebook_.numel() == (1 << bits),
           "codebook layout: codebook must be float32 [{}]", 1 << bits);
  LB_CHECK(scale_.shape() == (Shape{N, k / block}) && scale_.dtype() == DType::BF16,
           "codebook layout: scales must be bfloat16 [N, {}]", k / block);
  LB_CHECK(codes_.shape() == (Shape{N, packed_bytes(k, bits)}) && codes_.dtype() == DType::U8,
           "codebook layout: codes must be uint8 [{}, {}]", N, packed_bytes(k, bits));
}

int64_t CodebookWeight::nbytes() const {
  return static_cast<int64_t>(codes_.nbytes() + codebook_.nbytes() + scale_.nbytes());
}

std::string CodebookWeight::scheme() const { return config_name(CodebookWeightOnly{bits_, block_}); }

void CodebookWeight::dequantize_rows(int64_t n0, int64_t n1, float* out) const {
  const float* book = codebook_.data<float>();
  const auto* s = reinterpret_cast<const uint16_t*>(scale_.raw());
  const int64_t B = k_ / block_;
  std::vector<uint8_t> c(static_cast<size_t>(k_));
  for (int64_t n = n0; n < n1; ++n) {
    unpack_bits(codes_.data<uint8_t>() + n * codes_.size(1), k_, bits_, c.data());
    for (int64_t k = 0; k < k_; ++k) out[(n - n0) * k_ + k] = book[c[k]] * bf16_to_f32(s[n * B + k / block_]);
  }
}

SavedWeight CodebookWeight::save() const {
  return {"codebook",
          {{"bits", bits_}, {"block_size", block_}, {"in_features", k_}},
          {{"codes", codes_}, {"codebook", codebook_}, {"scale", scale_}}};
}

LinearPtr load_codebook(const nlohmann::json& p, const std::function<Tensor(const std::string&)>& get) {
  return std::make_shared<CodebookWeight>(get("codes"), get("codebook"), get("scale"), p.at("in_features").get<int64_t>(),
                                          p.at("bits").get<int>(), p.at("block_size").get<int>());
}

}  // namespace lowbit::quant

// Checks lowbit's primitives against torchao's own outputs: every case of every *.safetensors file in
// LOWBIT_GOLDEN_DIR (default ../shared/golden) must match scale, zero_point, q and dq bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "../support/paths.h"
#include "lowbit/core/float_formats.h"
#include "lowbit/core/safetensors.h"
#include "lowbit/quant/primitives.h"

namespace lowbit {
namespace {

using nlohmann::json;
using namespace quant;

std::vector<int64_t> block_of(const json& c) { return c.at("block_size").get<std::vector<int64_t>>(); }

std::optional<DType> opt_dtype(const json& c, const char* key) {
  if (!c.contains(key) || c[key].is_null()) return std::nullopt;
  return dtype_from_name(c[key].get<std::string>());
}

bool is_f8_nan(DType t, uint8_t b) {
  return std::isnan(t == DType::F8E4M3 ? e4m3_to_f32(b) : e5m2_to_f32(b));
}

// Compares dtype, shape and bytes; `allowed` may excuse an element (torchao's NaN in zero-scale blocks).
std::string compare(const std::string& what, const Tensor& got, const Tensor& want,
                    const std::function<bool(int64_t)>& excused = nullptr) {
  if (got.dtype() != want.dtype())
    return fmt::format("{}: dtype {} vs torchao {}", what, dtype_name(got.dtype()), dtype_name(want.dtype()));
  if (got.shape() != want.shape())
    return fmt::format("{}: shape {} vs torchao {}", what, shape_str(got.shape()), shape_str(want.shape()));
  const Tensor g = got.contiguous(), w = want.contiguous();
  const size_t es = dtype_size(g.dtype());
  const auto* gp = static_cast<const uint8_t*>(g.raw());
  const auto* wp = static_cast<const uint8_t*>(w.raw());
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < g.numel(); ++i) {
    if (std::memcmp(gp + i * es, wp + i * es, es) == 0) continue;
    if (excused && excused(i)) continue;
    if (first < 0) first = i;
    ++bad;
  }
  if (bad == 0) return "";
  return fmt::format("{}: {} of {} elements differ; first at {}: lowbit {} vs torchao {}", what, bad, g.numel(),
                     first, g.get_f32(first), w.get_f32(first));
}

std::string run_case(const SafetensorsFile& f, const json& c) {
  const std::string id = std::to_string(c.at("id").get<int>());
  const std::string op = c.at("op");
  const Tensor x = f.tensor(id + ".x");
  const Tensor want_q = f.tensor(id + ".q");
  const Tensor want_dq = f.tensor(id + ".dq");
  std::string err;
  auto add = [&](const std::string& e) {
    if (!e.empty()) err += (err.empty() ? "" : "; ") + e;
  };

  if (op == "fpx") {
    const int eb = c.at("ebits"), mb = c.at("mbits");
    const Tensor q = fpx_encode(x, eb, mb);
    add(compare("q", q, want_q));
    add(compare("dq", fpx_decode(q, eb, mb), want_dq));
    return err;
  }

  const auto block = block_of(c);
  if (op == "float8") {
    const DType f8 = dtype_from_name(c.at("target_dtype").get<std::string>());
    const Tensor scale = choose_scale_float8(x, block, f8);
    add(compare("scale", scale, f.tensor(id + ".scale")));
    const Tensor q = quantize_float8(x, block, scale, f8);
    const Tensor dq = dequantize_float8(q, block, scale, DType::F32);
    // torchao divides by a zero scale in all-zero blocks (NaN); lowbit must give 0 there.
    const BlockGrid g(x.shape(), block);
    std::vector<int64_t> block_of_elem(static_cast<size_t>(x.numel()));
    g.for_each([&](int64_t i, int64_t b) { block_of_elem[i] = b; });
    const std::vector<float> sv = scale.to_f32_vector();
    const auto* wq = static_cast<const uint8_t*>(want_q.contiguous().raw());
    const auto* gq = static_cast<const uint8_t*>(q.raw());
    add(compare("q", q, want_q, [&](int64_t i) {
      return sv[block_of_elem[i]] == 0.0f && is_f8_nan(f8, wq[i]) && (gq[i] & 0x7f) == 0;
    }));
    const std::vector<float> wdq = want_dq.to_f32_vector(), gdq = dq.to_f32_vector();
    add(compare("dq", dq, want_dq, [&](int64_t i) {
      return sv[block_of_elem[i]] == 0.0f && std::isnan(wdq[i]) && gdq[i] == 0.0f;
    }));
    return err;
  }

  const DType target = dtype_from_name(c.at("target_dtype").get<std::string>());
  QRange r = qrange_of(target);
  if (!c.at("quant_min").is_null()) r.qmin = c["quant_min"];
  if (!c.at("quant_max").is_null()) r.qmax = c["quant_max"];
  std::optional<double> eps;
  if (!c.at("eps").is_null()) eps = c["eps"].get<double>();
  const DType out = dtype_from_name(c.at("output_dtype").get<std::string>());

  AffineQParams qp;
  ZeroPointDomain domain;
  if (op == "tinygemm") {
    qp = choose_qparams_affine_float_zero(x, block, r.qmin, r.qmax, eps, opt_dtype(c, "scale_dtype"),
                                          opt_dtype(c, "zero_point_dtype"));
    domain = ZeroPointDomain::Float;
  } else if (op == "affine") {
    ChooseQParamsOptions o;
    o.mapping = mapping_from_name(c.at("mapping").get<std::string>());
    o.block_size = block;
    o.qmin = r.qmin;
    o.qmax = r.qmax;
    o.eps = eps;
    o.scale_dtype = opt_dtype(c, "scale_dtype");
    o.zero_point_dtype = opt_dtype(c, "zero_point_dtype").value_or(DType::I32);
    qp = choose_qparams_affine(x, o);
    domain = ZeroPointDomain::Int;
  } else {
    return "unknown op " + op;
  }
  add(compare("scale", qp.scale, f.tensor(id + ".scale")));
  add(compare("zero_point", qp.zero_point, f.tensor(id + ".zero_point")));
  const Tensor q = quantize_affine(x, block, qp.scale, qp.zero_point, domain, r.qmin, r.qmax, target);
  add(compare("q", q, want_q));
  add(compare("dq", dequantize_affine(q, block, qp.scale, qp.zero_point, domain, r.qmin, r.qmax, out), want_dq));
  return err;
}

TEST(Golden, EveryCaseMatchesTorchao) {
  const auto dir = test::golden_dir();
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << "golden folder not found: " << dir
                                                  << " (set LOWBIT_GOLDEN_DIR)";
  int files = 0, cases = 0, matched = 0;
  std::vector<std::filesystem::path> paths;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) {
    ++files;
    const SafetensorsFile f = SafetensorsFile::open(p);
    ASSERT_TRUE(f.metadata().count("cases")) << p << " has no __metadata__.cases";
    const json list = json::parse(f.metadata().at("cases"));
    std::map<std::string, std::pair<int, int>> per_op;
    for (const auto& c : list) {
      ++cases;
      std::string err;
      try {
        err = run_case(f, c);
      } catch (const std::exception& e) {
        err = std::string("threw: ") + e.what();
      }
      auto& po = per_op[c.at("op").get<std::string>()];
      ++po.second;
      if (err.empty()) {
        ++matched;
        ++po.first;
      } else {
        ADD_FAILURE() << p.filename().string() << " case " << c.at("id") << " " << c.dump() << "\n  " << err;
      }
    }
    for (const auto& [op, mt] : per_op)
      std::cout << "golden " << p.filename().string() << " op " << op << ": " << mt.first << " of " << mt.second
                << "\n";
  }
  std::cout << "golden: " << matched << " of " << cases << " cases match torchao (" << files << " file(s) in "
            << dir.string() << ")\n";
  EXPECT_GT(cases, 0) << "no golden cases found in " << dir;
  EXPECT_EQ(matched, cases);
}

}  // namespace
}  // namespace lowbit

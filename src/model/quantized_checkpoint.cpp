#include "lowbit/model/quantized_checkpoint.h"

#include <unistd.h>

#include "lowbit/core/file_io.h"

namespace lowbit {
namespace fs = std::filesystem;

bool is_quantized_checkpoint(const fs::path& dir) { return fs::exists(dir / "lowbit.json"); }

nlohmann::json read_manifest(const fs::path& dir) {
  const fs::path p = dir / "lowbit.json";
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_text_file(p));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", p.string(), e.what());
  }
  LB_CHECK(m.is_object() && m.value("format", "") == "lowbit" && m.contains("format_version") &&
               m["format_version"].is_number_integer(),
           "{}: not a lowbit manifest (needs \"format\": \"lowbit\" and an integer \"format_version\")", p.string());
  const int v = m["format_version"];
  LB_CHECK(v >= 1 && v <= kQuantizedFormatVersion,
           "{}: format version {} is newer than this lowbit reads (up to {}); upgrade lowbit", p.string(), v,
           kQuantizedFormatVersion);
  LB_CHECK(m.contains("layers") && m["layers"].is_object(), "{}: missing \"layers\"", p.string());
  return m;
}

void save_quantized(const LlamaModel& model, const fs::path& out_in, const SaveOptions& opt) {
  const fs::path out = fs::absolute(out_in).lexically_normal();
  LB_CHECK(!out.filename().empty(), "quantize: invalid output directory '{}'", out_in.string());
  LB_CHECK(opt.overwrite || !fs::exists(out), "{} already exists (pass --force to replace it)", out.string());
  LB_CHECK(fs::absolute(opt.source_dir).lexically_normal() != out, "quantize: output {} is the source directory",
           out.string());
  const fs::path tmp = out.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    // Every tensor, in model order, then split into shards of about shard_bytes.
    NamedTensors all;
    nlohmann::json layers = nlohmann::json::object();
    all.emplace_back("model.embed_tokens.weight", model.embedding);
    auto vec = [](const std::vector<float>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); };
    for (size_t i = 0; i < model.layers.size(); ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      all.emplace_back(p + "input_layernorm.weight", vec(model.layers[i].attn_norm));
      all.emplace_back(p + "post_attention_layernorm.weight", vec(model.layers[i].ffn_norm));
    }
    all.emplace_back("model.norm.weight", vec(model.final_norm));
    for (const auto& [name, w] : model.linears()) {
      const quant::SavedWeight s = (*w)->save();
      nlohmann::json tensors = nlohmann::json::object();
      for (const auto& [field, t] : s.tensors) {
        tensors[field] = name + "." + field;
        all.emplace_back(name + "." + field, t);
      }
      layers[name] = {{"scheme", (*w)->scheme()},
                      {"layout", s.layout},
                      {"params", s.params},
                      {"shape", {(*w)->out_features(), (*w)->in_features()}},
                      {"tensors", tensors}};
    }
    std::vector<NamedTensors> shards(1);
    int64_t in_shard = 0;
    for (auto& nt : all) {
      const auto b = static_cast<int64_t>(nt.second.nbytes());
      if (in_shard > 0 && in_shard + b > opt.shard_bytes) {
        shards.emplace_back();
        in_shard = 0;
      }
      shards.back().push_back(std::move(nt));
      in_shard += b;
    }
    nlohmann::json weight_map = nlohmann::json::object();
    int64_t total = 0;
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string file = fmt::format("model-{:05}-of-{:05}.safetensors", i + 1, shards.size());
      for (const auto& [n, t] : shards[i]) {
        weight_map[n] = file;
        total += static_cast<int64_t>(t.nbytes());
      }
      write_safetensors(tmp / file, shards[i], {{"format", "lowbit"}});
    }
    write_text_file_atomic(tmp / "model.safetensors.index.json",
                           nlohmann::json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}.dump(2));
    const nlohmann::json manifest = {{"format", "lowbit"},
                                     {"format_version", kQuantizedFormatVersion},
                                     {"created_by", "lowbit 0.1.0"},
                                     {"quantization", opt.description},
                                     {"weight_bytes", model.weight_bytes(false)},
                                     {"layers", layers}};
    write_text_file_atomic(tmp / "lowbit.json", manifest.dump(2));
    // The source's config goes along unchanged; lowbit.json marks the directory as quantized.
    for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                          "special_tokens_map.json", "tokenizer.model"})
      if (fs::exists(opt.source_dir / f)) {
        fs::copy_file(opt.source_dir / f, tmp / f);
        fs::permissions(tmp / f, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add);
      }
    if (!fs::exists(tmp / "config.json"))
      write_text_file_atomic(tmp / "config.json", model.config.to_json().dump(2));
    // Swap into place: an existing directory is moved aside first and removed only after the rename.
    const fs::path old = out.string() + ".old-" + std::to_string(::getpid());
    if (fs::exists(out)) fs::rename(out, old);
    fs::rename(tmp, out);
    fs::remove_all(old);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace lowbit

// lowbit's quantized checkpoint: a self-describing directory that loads like a Hugging Face one.
//
//   config.json, tokenizer.json, tokenizer_config.json, generation_config.json   copied from the source
//   lowbit.json                     the manifest: format version, and each Linear layer's scheme, layout,
//                                   layout parameters and tensor names
//   model-0000i-of-0000n.safetensors + model.safetensors.index.json   every tensor: packed codes and
//                                   qparams named "<layer>.<field>", and the unquantized tensors (embedding,
//                                   norms) under their Hugging Face names
// Written to a temporary directory renamed into place at the end. See docs/quantized-format.md.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "lowbit/model/llama.h"

namespace lowbit {

inline constexpr int kQuantizedFormatVersion = 1;

struct SaveOptions {
  std::filesystem::path source_dir;  // where config.json and the tokenizer files are copied from
  std::string description;           // what was applied ("int4wo-64", "recipe.json"), for the manifest
  int64_t shard_bytes = int64_t{2} << 30;
  bool overwrite = false;            // replace an existing directory
};

void save_quantized(const LlamaModel& model, const std::filesystem::path& out, const SaveOptions& opt);

bool is_quantized_checkpoint(const std::filesystem::path& dir);
// Reads the manifest and checks its version; errors name the file.
nlohmann::json read_manifest(const std::filesystem::path& dir);

}  // namespace lowbit

#include "lowbit/model/checkpoint.h"

#include <nlohmann/json.hpp>

#include "lowbit/core/file_io.h"

namespace lowbit {

Checkpoint Checkpoint::open(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  LB_CHECK(fs::is_directory(dir), "{}: not a directory", dir.string());
  Checkpoint c;
  c.dir_ = dir;
  const fs::path index = dir / "model.safetensors.index.json";
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text_file(index));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", index.string(), e.what());
    }
    LB_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), "{}: missing weight_map",
             index.string());
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      LB_CHECK(it.value().is_string(), "{}: weight_map entry '{}' is not a file name", index.string(), it.key());
      const std::string shard = it.value();
      LB_CHECK(shard.find('/') == std::string::npos && shard.find("..") == std::string::npos,
               "{}: shard name '{}' must be a plain file name", index.string(), shard);
      weight_map[it.key()] = shard;
      if (std::find(shard_names.begin(), shard_names.end(), shard) == shard_names.end()) shard_names.push_back(shard);
    }
  } else if (fs::exists(dir / "model.safetensors")) {
    shard_names.push_back("model.safetensors");
  } else {
    fail("{}: no model.safetensors or model.safetensors.index.json", dir.string());
  }
  std::map<std::string, size_t> shard_index;
  for (const auto& s : shard_names) {
    LB_CHECK(fs::exists(dir / s), "{}: shard {} listed in the index is missing", dir.string(), s);
    shard_index[s] = c.files_.size();
    c.files_.push_back(std::make_shared<SafetensorsFile>(SafetensorsFile::open(dir / s)));
  }
  for (size_t i = 0; i < c.files_.size(); ++i)
    for (const auto& name : c.files_[i]->names()) {
      LB_CHECK(!c.where_.count(name), "{}: tensor '{}' appears in more than one shard", dir.string(), name);
      c.where_[name] = i;
    }
  for (const auto& [name, shard] : weight_map) {
    LB_CHECK(c.where_.count(name), "{}: tensor '{}' listed in the index is missing from {}", dir.string(), name,
             shard);
    LB_CHECK(c.where_[name] == shard_index[shard], "{}: tensor '{}' is in a different shard than the index says ({})",
             dir.string(), name, shard);
  }
  return c;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> v;
  for (const auto& [n, i] : where_) v.push_back(n);
  return v;
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  LB_CHECK(it != where_.end(), "{}: missing tensor '{}'", dir_.string(), name);
  return *files_[it->second];
}

Tensor Checkpoint::tensor(const std::string& name, const Shape& expected) const {
  const SafetensorsFile& f = file_of(name);
  Tensor t = f.tensor(name);
  LB_CHECK(expected.empty() || t.shape() == expected, "{}: tensor '{}' has shape {}, expected {}",
           f.path().string(), name, shape_str(t.shape()), shape_str(expected));
  return t;
}

}  // namespace lowbit

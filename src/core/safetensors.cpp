#include "lowbit/core/safetensors.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

namespace lowbit {
namespace {

constexpr size_t kMaxHeaderBytes = size_t{100} << 20;  // the reference implementation's own bound

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile f;
  f.file_ = MappedFile::open(path);
  const std::string file = path.string();
  const size_t size = f.file_->size();
  LB_CHECK(size >= 8, "{}: {} bytes is too short for a safetensors file (truncated?)", file, size);
  const uint64_t n = read_u64_le(f.file_->data());
  LB_CHECK(n <= size - 8, "{}: header length {} runs beyond the end of the file ({} bytes; truncated?)", file,
           n, size);
  LB_CHECK(n <= kMaxHeaderBytes, "{}: header length {} exceeds the {} byte limit", file, n, kMaxHeaderBytes);
  f.data_start_ = 8 + n;
  const size_t data_size = size - f.data_start_;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(f.file_->data() + 8, f.file_->data() + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON header: {}", file, e.what());
  }
  LB_CHECK(header.is_object(), "{}: the header is not a JSON object", file);

  std::vector<std::pair<size_t, std::string>> by_offset;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      LB_CHECK(v.is_object(), "{}: __metadata__ is not an object", file);
      for (auto m = v.begin(); m != v.end(); ++m) {
        LB_CHECK(m.value().is_string(), "{}: __metadata__ value '{}' is not a string", file, m.key());
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    LB_CHECK(v.is_object(), "{}: tensor '{}': entry is not an object", file, name);
    LB_CHECK(v.contains("dtype") && v["dtype"].is_string(), "{}: tensor '{}': missing dtype", file, name);
    LB_CHECK(v.contains("shape") && v["shape"].is_array(), "{}: tensor '{}': missing shape", file, name);
    LB_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2,
             "{}: tensor '{}': missing or malformed data_offsets", file, name);
    TensorInfo info;
    try {
      info.dtype = dtype_from_safetensors_name(v["dtype"].get<std::string>());
    } catch (const Error& e) {
      fail("{}: tensor '{}': {}", file, name, e.what());
    }
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      LB_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
               "{}: tensor '{}': invalid dimension {}", file, name, d.dump());
      const auto dim = d.get<uint64_t>();
      LB_CHECK(dim < (uint64_t{1} << 40) && (dim == 0 || numel <= (uint64_t{1} << 50) / dim),
               "{}: tensor '{}': shape too large", file, name);
      numel *= dim;
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    LB_CHECK(off[0].is_number_unsigned() && off[1].is_number_unsigned(),
             "{}: tensor '{}': data_offsets must be non-negative integers", file, name);
    info.begin = off[0].get<uint64_t>();
    info.end = off[1].get<uint64_t>();
    LB_CHECK(info.begin <= info.end && info.end <= data_size,
             "{}: tensor '{}': data_offsets [{}, {}) out of range of the {} byte data region (truncated?)", file,
             name, info.begin, info.end, data_size);
    LB_CHECK(info.end - info.begin == numel * dtype_size(info.dtype),
             "{}: tensor '{}': {} bytes of data for {}{} ({} bytes expected)", file, name, info.end - info.begin,
             dtype_name(info.dtype), shape_str(info.shape), numel * dtype_size(info.dtype));
    by_offset.emplace_back(info.begin, name);
    f.infos_.emplace(name, std::move(info));
  }
  std::sort(by_offset.begin(), by_offset.end());
  for (size_t i = 0; i < by_offset.size(); ++i) {
    const auto& cur = f.infos_.at(by_offset[i].second);
    if (i + 1 < by_offset.size() && cur.end > cur.begin) {
      const auto& next = f.infos_.at(by_offset[i + 1].second);
      LB_CHECK(cur.end <= next.begin || next.end == next.begin, "{}: tensors '{}' and '{}' overlap", file,
               by_offset[i].second, by_offset[i + 1].second);
    }
    f.names_.push_back(by_offset[i].second);
  }
  return f;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = infos_.find(name);
  LB_CHECK(it != infos_.end(), "{}: no tensor named '{}'", path().string(), name);
  return it->second;
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& i = info(name);
  const size_t abs = data_start_ + i.begin;
  auto* base = const_cast<uint8_t*>(file_->data());
  if (abs % dtype_size(i.dtype) == 0) {
    auto storage = Storage::borrow(base, file_->size(), file_);
    return Tensor::from_storage(storage, i.shape, i.dtype, abs);
  }
  Tensor t = Tensor::empty(i.shape, i.dtype);
  std::memcpy(t.raw(), base + abs, i.end - i.begin);
  return t;
}

void write_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> host;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    LB_CHECK(name != "__metadata__" && !name.empty(), "{}: invalid tensor name '{}'", path.string(), name);
    LB_CHECK(!header.contains(name), "{}: duplicate tensor name '{}'", path.string(), name);
    Tensor c = t.device() == Device::CPU ? t.contiguous() : t.to(Device::CPU).contiguous();
    header[name] = {{"dtype", std::string(dtype_safetensors_name(c.dtype()))},
                    {"shape", c.shape()},
                    {"data_offsets", {offset, offset + c.nbytes()}}};
    offset += c.nbytes();
    host.push_back(std::move(c));
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // keep the data region 8-byte aligned
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
  AtomicFileWriter w(path);
  w.write(len, 8);
  w.write(h);
  for (const auto& t : host) w.write(t.raw(), t.nbytes());
  w.commit();
}

}  // namespace lowbit

#include "algorithms/resume.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "lowbit/core/file_io.h"
#include "lowbit/core/safetensors.h"

namespace lowbit::algorithms {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "lowbit-partial";
constexpr int kVersion = 1;

std::string block_file(int64_t l) { return fmt::format("block-{:05}.safetensors", l); }
std::string hidden_file(int64_t l) { return fmt::format("hidden-{:05}.safetensors", l); }

// Block l's Linears, in model.linears() order (seven per block).
std::vector<std::pair<std::string, quant::LinearPtr*>> block_linears(LlamaModel& m, int64_t l) {
  auto all = m.linears();
  return {all.begin() + 7 * l, all.begin() + 7 * (l + 1)};
}

std::string norm_name(int64_t l, bool ffn) {
  return fmt::format("model.layers.{}.{}", l, ffn ? "post_attention_layernorm.weight" : "input_layernorm.weight");
}

nlohmann::json report_json(const LayerReport& r) {
  return {{"name", r.name},         {"scheme", r.scheme},   {"bytes_before", r.bytes_before},
          {"bytes_after", r.bytes_after}, {"seconds", r.seconds}, {"rel_output_error", r.rel_output_error}};
}

LayerReport report_from(const nlohmann::json& j) {
  return {j.at("name"), j.at("scheme"), j.at("bytes_before"), j.at("bytes_after"), j.at("seconds"),
          j.at("rel_output_error")};
}

// The keys whose values differ between two fingerprints, for the error message.
std::string differences(const nlohmann::json& saved, const nlohmann::json& now) {
  std::string out;
  auto add = [&](const std::string& k, const nlohmann::json& a, const nlohmann::json& b) {
    out += fmt::format("{}{}: {} then, {} now", out.empty() ? "" : "; ", k, a.is_null() ? "unset" : a.dump(),
                       b.is_null() ? "unset" : b.dump());
  };
  for (auto it = saved.begin(); it != saved.end(); ++it)
    if (!now.contains(it.key()) || now[it.key()] != it.value())
      add(it.key(), it.value(), now.contains(it.key()) ? now[it.key()] : nlohmann::json());
  for (auto it = now.begin(); it != now.end(); ++it)
    if (!saved.contains(it.key())) add(it.key(), nlohmann::json(), it.value());
  return out;
}

}  // namespace

BlockCheckpoints::BlockCheckpoints(fs::path dir, nlohmann::json fingerprint)
    : dir_(std::move(dir)), fingerprint_(std::move(fingerprint)) {
  fs::create_directories(dir_);
  const fs::path lock = dir_ / "lock";
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  LB_CHECK(lock_fd_ >= 0, "cannot create {}: {}", lock.string(), std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
    fail("{} is in use by another lowbit quantize", dir_.string());
  }
  // Temporaries of an interrupted write are incomplete by construction.
  for (const auto& e : fs::directory_iterator(dir_))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) fs::remove_all(e.path());
  const fs::path state = dir_ / "state.json";
  if (!fs::exists(state)) return;
  nlohmann::json s;
  try {
    s = nlohmann::json::parse(read_text_file(state));
    LB_CHECK(s.is_object() && s.value("format", "") == kFormat && s.value("version", 0) == kVersion,
             "{}: not a lowbit work directory of version {}", state.string(), kVersion);
    LB_CHECK(s.at("fingerprint") == fingerprint_,
             "{} belongs to a run with other options ({}); rerun with those, or pass --force to start over",
             dir_.string(), differences(s.at("fingerprint"), fingerprint_));
    finished_ = s.at("finished").get<int64_t>();
    reports_ = s.at("reports");
    has_hidden_ = s.at("hidden").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}", state.string(), e.what());
  }
  LB_CHECK(finished_ >= 0 && static_cast<int64_t>(reports_.size()) == finished_, "{}: inconsistent state",
           state.string());
  for (int64_t l = 0; l < finished_; ++l)
    LB_CHECK(fs::exists(dir_ / block_file(l)), "{}: {} is missing", dir_.string(), block_file(l));
  LB_CHECK(!has_hidden_ || finished_ == 0 || fs::exists(dir_ / hidden_file(finished_)), "{}: {} is missing",
           dir_.string(), hidden_file(finished_));
}

BlockCheckpoints::~BlockCheckpoints() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void BlockCheckpoints::save_block(const LlamaModel& cm, int64_t l) const {
  auto& m = const_cast<LlamaModel&>(cm);  // linears() hands out slots; nothing is changed here
  NamedTensors tensors;
  nlohmann::json layers = nlohmann::json::object();
  for (const auto& [name, ptr] : block_linears(m, l)) {
    quant::SavedWeight s = (*ptr)->save();
    for (auto& [field, t] : s.tensors) tensors.emplace_back(name + "." + field, std::move(t));
    layers[name] = {{"layout", s.layout}, {"params", s.params}};
  }
  const LlamaLayer& L = m.layers.at(static_cast<size_t>(l));
  auto vec = [](const std::vector<float>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); };
  tensors.emplace_back(norm_name(l, false), vec(L.attn_norm));
  tensors.emplace_back(norm_name(l, true), vec(L.ffn_norm));
  write_safetensors(dir_ / block_file(l), tensors, {{"format", kFormat}, {"layers", layers.dump()}});
}

void BlockCheckpoints::restore_block(LlamaModel& m, int64_t l) {
  const fs::path path = dir_ / block_file(l);
  const SafetensorsFile f = SafetensorsFile::open(path);
  files_.erase(l);
  files_.emplace(l, f);
  nlohmann::json layers;
  try {
    layers = nlohmann::json::parse(f.metadata().at("layers"));
  } catch (const std::exception& e) {
    fail("{}: no valid \"layers\" metadata ({})", path.string(), e.what());
  }
  for (const auto& [name, ptr] : block_linears(m, l)) {
    LB_CHECK(layers.contains(name), "{}: no layer {}", path.string(), name);
    const auto& e = layers[name];
    quant::LinearPtr w = quant::load_weight(e.at("layout").get<std::string>(), e.at("params"),
                                            [&](const std::string& field) {
                                              const std::string t = name + "." + field;
                                              LB_CHECK(f.contains(t), "{}: missing tensor {}", path.string(), t);
                                              return f.tensor(t);
                                            });
    LB_CHECK(w->out_features() == (*ptr)->out_features() && w->in_features() == (*ptr)->in_features(),
             "{}: layer {} has the wrong shape", path.string(), name);
    *ptr = std::move(w);
  }
  LlamaLayer& L = m.layers.at(static_cast<size_t>(l));
  for (const bool ffn : {false, true}) {
    const std::string n = norm_name(l, ffn);
    LB_CHECK(f.contains(n), "{}: missing tensor {}", path.string(), n);
    std::vector<float> v = f.tensor(n).to_f32_vector();
    LB_CHECK(v.size() == L.attn_norm.size(), "{}: tensor {} has the wrong size", path.string(), n);
    (ffn ? L.ffn_norm : L.attn_norm) = std::move(v);
  }
  // Layouts that repack their codes keep only some of the file's tensors (or none) mapped: the pages
  // read while loading would otherwise stay resident for the rest of the run.
  release_block(l);
}

void BlockCheckpoints::release_block(int64_t l) const {
  const auto it = files_.find(l);
  if (it == files_.end()) return;
  for (const auto& name : it->second.names()) release_mapped_pages(it->second.tensor(name));
}

void BlockCheckpoints::commit(int64_t l, const std::vector<std::vector<float>>* hidden,
                              const std::vector<LayerReport>& reports) {
  LB_CHECK(l == finished_, "work directory: block {} finished out of order (expected {})", l, finished_);
  if (hidden) {
    // Written straight from the runner's buffers: a copy would add the activations' size to the peak.
    const size_t W = hidden->size(), n = W ? hidden->at(0).size() : 0;
    const nlohmann::json header = {{"__metadata__", {{"format", kFormat}}},
                                   {"hidden", {{"dtype", "F32"}, {"shape", {W, n}}, {"data_offsets", {0, W * n * 4}}}}};
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
    AtomicFileWriter w(dir_ / hidden_file(l + 1));
    w.write(len, 8);
    w.write(h);
    for (const auto& x : *hidden) {
      LB_CHECK(x.size() == n, "work directory: hidden states of unequal length");
      w.write(x.data(), n * sizeof(float));
    }
    w.commit();
  }
  nlohmann::json block = nlohmann::json::array();
  for (const auto& r : reports) block.push_back(report_json(r));
  reports_.push_back(block);
  finished_ = l + 1;
  has_hidden_ = hidden != nullptr;
  const nlohmann::json state = {{"format", kFormat},      {"version", kVersion},   {"fingerprint", fingerprint_},
                                {"finished", finished_}, {"hidden", has_hidden_}, {"reports", reports_}};
  write_text_file_atomic(dir_ / "state.json", state.dump(1));
  std::error_code ec;
  fs::remove(dir_ / hidden_file(l), ec);  // the previous block's input is no longer needed
}

std::vector<std::vector<float>> BlockCheckpoints::hidden() const {
  if (!has_hidden_ || finished_ == 0) return {};
  const fs::path path = dir_ / hidden_file(finished_);
  const SafetensorsFile f = SafetensorsFile::open(path);
  LB_CHECK(f.contains("hidden"), "{}: no tensor 'hidden'", path.string());
  const Tensor t = f.tensor("hidden");
  LB_CHECK(t.dtype() == DType::F32 && t.shape().size() == 2, "{}: 'hidden' must be f32 [windows, tokens x hidden]",
           path.string());
  std::vector<std::vector<float>> out(static_cast<size_t>(t.size(0)));
  const auto* p = static_cast<const float*>(t.raw());
  const auto n = static_cast<size_t>(t.size(1));
  for (size_t i = 0; i < out.size(); ++i) out[i].assign(p + i * n, p + (i + 1) * n);
  release_mapped_pages(t);
  return out;
}

std::vector<LayerReport> BlockCheckpoints::reports() const {
  std::vector<LayerReport> out;
  try {
    for (const auto& block : reports_)
      for (const auto& r : block) out.push_back(report_from(r));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}", (dir_ / "state.json").string(), e.what());
  }
  return out;
}

void BlockCheckpoints::remove() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
  lock_fd_ = -1;
  fs::remove_all(dir_);
}

std::string file_digest(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  LB_CHECK(in.good(), "cannot open {}: {}", path.string(), std::strerror(errno));
  uint64_t h = 0xcbf29ce484222325ull;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      h ^= static_cast<uint8_t>(buf[static_cast<size_t>(i)]);
      h *= 0x100000001b3ull;
    }
  }
  return fmt::format("{:016x}", h);
}

void release_mapped_pages(const Tensor& t) {
  if (!t.defined() || t.device() != Device::CPU || t.nbytes() == 0) return;
  const auto begin = reinterpret_cast<uintptr_t>(t.raw());
  const uintptr_t end = begin + t.nbytes();
  // Only a private read-only file mapping: there, dropping pages loses nothing (they are re-read from
  // the file); anywhere else (heap, anonymous or writable memory) it would destroy data.
  std::ifstream maps("/proc/self/maps");
  std::string line;
  bool mapped = false;
  while (std::getline(maps, line)) {
    unsigned long lo = 0, hi = 0, inode = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s %*s %*s %lu", &lo, &hi, perms, &inode) != 4) continue;
    if (begin >= lo && end <= hi) {
      mapped = inode != 0 && std::strcmp(perms, "r--p") == 0;
      break;
    }
  }
  if (!mapped) return;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t a = (begin + page - 1) / page * page, b = end / page * page;
  if (b > a) ::madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
}

void release_mapped_pages(const quant::LinearWeight& w) {
  for (const auto& [field, t] : w.save().tensors) release_mapped_pages(t);
}

}  // namespace lowbit::algorithms

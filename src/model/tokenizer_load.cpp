// Reads tokenizer.json and tokenizer_config.json into the tokenizer's pipeline. Whatever this
// library would not reproduce faithfully is refused, with an error naming the file.
#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "lowbit/core/error.h"
#include "lowbit/core/file_io.h"
#include "tokenizer_impl.h"

namespace lowbit::tokenizer_detail {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// GPT-2's pre-tokenizer regex, used by ByteLevel when it splits by itself (use_regex).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

json parse_json_file(const fs::path& path) {
  const std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path.string(), e.what());
  }
}

bool get_bool(const json& j, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  LB_CHECK(j[key].is_boolean(), "'{}' must be true or false, not {}", key, j[key].dump());
  return j[key].get<bool>();
}

std::string get_string(const json& j, const char* key) {
  LB_CHECK(j.contains(key) && j[key].is_string(), "missing string '{}' in {}", key,
           j.dump().substr(0, 200));
  return j[key].get<std::string>();
}

std::string type_of(const json& j, const char* what) {
  LB_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), "{} without a 'type': {}",
           what, j.dump().substr(0, 200));
  return j["type"].get<std::string>();
}

// A {"String": s} or {"Regex": r} pattern: exactly one of literal / regex is set.
void read_pattern(const json& j, std::string& literal, std::shared_ptr<const Regex>& regex) {
  LB_CHECK(j.is_object(), "pattern must be an object, not {}", j.dump());
  if (j.contains("String")) {
    literal = j["String"].get<std::string>();
  } else if (j.contains("Regex")) {
    regex = std::make_shared<Regex>(j["Regex"].get<std::string>());
  } else {
    fail("pattern must have 'String' or 'Regex': {}", j.dump());
  }
}

PrependScheme read_prepend_scheme(const json& j) {
  if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
    const std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "always") return PrependScheme::Always;
    if (s == "first") return PrependScheme::First;
    if (s == "never") return PrependScheme::Never;
    fail("unknown Metaspace prepend_scheme '{}'", s);
  }
  return get_bool(j, "add_prefix_space", true) ? PrependScheme::Always
                                               : PrependScheme::Never;  // older files
}

void read_normalizer(const json& j, std::vector<NormalizerStep>& out) {
  if (j.is_null()) return;
  const std::string type = type_of(j, "normalizer");
  if (type == "Sequence") {
    for (const auto& n : j.at("normalizers")) read_normalizer(n, out);
  } else if (type == "Prepend") {
    out.push_back({NormalizerStep::Kind::Prepend, get_string(j, "prepend"), nullptr, {}});
  } else if (type == "Replace") {
    NormalizerStep s{NormalizerStep::Kind::Replace, {}, nullptr, get_string(j, "content")};
    read_pattern(j.at("pattern"), s.text, s.regex);
    out.push_back(std::move(s));
  } else {
    fail("unsupported normalizer '{}' (supported: Sequence, Prepend, Replace)", type);
  }
}

SplitBehavior read_behavior(const std::string& s) {
  if (s == "Removed") return SplitBehavior::Removed;
  if (s == "Isolated") return SplitBehavior::Isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (s == "Contiguous") return SplitBehavior::Contiguous;
  fail("unknown split behavior '{}'", s);
}

void read_pre_tokenizer(const json& j, std::vector<PreTokenizerStep>& out) {
  if (j.is_null()) return;
  const std::string type = type_of(j, "pre_tokenizer");
  PreTokenizerStep s;
  if (type == "Sequence") {
    for (const auto& p : j.at("pretokenizers")) read_pre_tokenizer(p, out);
    return;
  } else if (type == "Split") {
    s.kind = PreTokenizerStep::Kind::Split;
    read_pattern(j.at("pattern"), s.literal, s.regex);
    s.behavior = read_behavior(get_string(j, "behavior"));
    s.invert = get_bool(j, "invert", false);
  } else if (type == "ByteLevel") {
    s.kind = PreTokenizerStep::Kind::ByteLevel;
    s.add_prefix_space = get_bool(j, "add_prefix_space", true);
    if (get_bool(j, "use_regex", true)) s.regex = std::make_shared<Regex>(kGpt2Pattern);
  } else if (type == "Metaspace") {
    s.kind = PreTokenizerStep::Kind::Metaspace;
    s.replacement = get_string(j, "replacement");
    s.prepend = read_prepend_scheme(j);
    s.split = get_bool(j, "split", true);
  } else {
    fail("unsupported pre_tokenizer '{}' (supported: Sequence, Split, ByteLevel, Metaspace)", type);
  }
  out.push_back(std::move(s));
}

// Decoders are folded into one per-token transform plus a leading strip, which is what lets
// decoding stream; a chain whose effect is not expressible that way is refused.
void read_decoder(const json& j, DecoderSpec& d, bool& fused) {
  if (j.is_null()) return;
  const std::string type = type_of(j, "decoder");
  if (type == "Sequence") {
    for (const auto& x : j.at("decoders")) read_decoder(x, d, fused);
  } else if (type == "Replace") {
    std::string literal;
    std::shared_ptr<const Regex> regex;
    read_pattern(j.at("pattern"), literal, regex);
    LB_CHECK(!regex, "unsupported decoder: Replace with a regex pattern");
    d.replaces.emplace_back(literal, get_string(j, "content"));
  } else if (type == "ByteFallback") {
    d.byte_fallback = true;
  } else if (type == "Fuse") {
    fused = true;
  } else if (type == "Strip") {
    const auto start = j.value("start", size_t{0});
    const auto stop = j.value("stop", size_t{0});
    LB_CHECK(get_string(j, "content") == " " && stop == 0 && (fused || start == 0),
             "unsupported decoder: Strip other than of leading spaces after Fuse: {}", j.dump());
    d.strip_leading += start;
  } else if (type == "ByteLevel") {
    d.byte_level = true;
  } else if (type == "Metaspace") {
    d.metaspace = get_string(j, "replacement");
    d.metaspace_drop_first = read_prepend_scheme(j) != PrependScheme::Never;
  } else {
    fail(
        "unsupported decoder '{}' (supported: Sequence, Replace, ByteFallback, Fuse, Strip, "
        "ByteLevel, Metaspace)",
        type);
  }
}

// The special token TemplateProcessing puts first in a single sequence ("<s>"), or "".
std::string template_prefix_token(const json& j) {
  if (!j.is_object()) return {};
  const std::string type = j.value("type", "");
  if (type == "Sequence" && j.contains("processors")) {
    for (const auto& p : j["processors"])
      if (auto t = template_prefix_token(p); !t.empty()) return t;
  }
  if (type != "TemplateProcessing" || !j.contains("single") || !j["single"].is_array() ||
      j["single"].empty())
    return {};
  const json& first = j["single"][0];
  if (!first.contains("SpecialToken")) return {};
  const std::string id = first["SpecialToken"].value("id", "");
  // `special_tokens` maps the template's name to the token text(s) actually inserted.
  if (j.contains("special_tokens") && j["special_tokens"].contains(id)) {
    const json& tokens = j["special_tokens"][id].value("tokens", json::array());
    if (tokens.size() == 1 && tokens[0].is_string()) return tokens[0].get<std::string>();
  }
  return id;
}

int32_t read_id(const json& v, const std::string& what) {
  LB_CHECK(v.is_number_integer(), "{}: id must be an integer, not {}", what, v.dump());
  const auto id = v.get<int64_t>();
  LB_CHECK(id >= 0 && id < (int64_t{1} << 30), "{}: id {} out of range", what, id);
  return static_cast<int32_t>(id);
}

void read_model(const json& m, TokenizerData& d) {
  LB_CHECK(m.is_object(), "'model' must be an object");
  const std::string type = m.value("type", m.contains("merges") ? "BPE" : "");
  LB_CHECK(type == "BPE", "unsupported model type '{}' (only BPE is supported)", type);
  LB_CHECK(m.value("dropout", json()).is_null() || m["dropout"].get<double>() == 0.0,
           "unsupported: BPE dropout (encoding would be random)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    LB_CHECK(!m.contains(key) || m[key].is_null() || m[key].get<std::string>().empty(),
             "unsupported: BPE {}", key);
  }
  BpeModel& bpe = d.bpe;
  const json& vocab = m.at("vocab");
  LB_CHECK(vocab.is_object(), "model.vocab must be an object");
  bpe.vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it)
    bpe.vocab[it.key()] = read_id(it.value(), it.key());

  const json& merges = m.at("merges");
  LB_CHECK(merges.is_array(), "model.merges must be an array");
  bpe.merges.reserve(merges.size());
  const auto lookup = [&](const std::string& s, size_t i) {
    const auto it = bpe.vocab.find(s);
    LB_CHECK(it != bpe.vocab.end(), "merge {}: '{}' is not in the vocabulary", i, s);
    return it->second;
  };
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& e = merges[i];
    std::string a, b;
    if (e.is_string()) {  // "a b": tokens never contain the separating space in this older form
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      LB_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
               "merge {}: '{}' is not two tokens separated by one space", i, s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      LB_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(),
               "merge {}: expected \"a b\" or [\"a\", \"b\"], got {}", i, e.dump());
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    }
    const uint64_t key =
        static_cast<uint64_t>(lookup(a, i)) << 32 | static_cast<uint32_t>(lookup(b, i));
    // A repeated pair takes its last rank, as in `tokenizers` (a map built from the list in order).
    bpe.merges.insert_or_assign(key, BpeModel::Merge{static_cast<int32_t>(i), lookup(a + b, i)});
  }

  if (m.contains("unk_token") && !m["unk_token"].is_null()) {
    const std::string unk = m["unk_token"].get<std::string>();
    const auto it = bpe.vocab.find(unk);
    LB_CHECK(it != bpe.vocab.end(), "unk_token '{}' is not in the vocabulary", unk);
    bpe.unk_id = it->second;
  }
  bpe.byte_fallback = get_bool(m, "byte_fallback", false);
  bpe.fuse_unk = get_bool(m, "fuse_unk", false);
  bpe.ignore_merges = get_bool(m, "ignore_merges", false);
  for (int b = 0; b < 256; ++b) {
    const auto it = bpe.vocab.find(fmt::format("<0x{:02X}>", b));
    bpe.byte_ids[b] = it == bpe.vocab.end() ? -1 : it->second;
  }
}

void read_added_tokens(const json& j, TokenizerData& d) {
  if (!j.contains("added_tokens") || j["added_tokens"].is_null()) return;
  for (const auto& t : j["added_tokens"]) {
    AddedToken a;
    a.content = get_string(t, "content");
    a.id = read_id(t.at("id"), "added token '" + a.content + "'");
    LB_CHECK(!a.content.empty(), "added token {} has empty content", a.id);
    a.special = get_bool(t, "special", false);
    a.lstrip = get_bool(t, "lstrip", false);
    a.rstrip = get_bool(t, "rstrip", false);
    a.single_word = get_bool(t, "single_word", false);
    d.added.push_back(std::move(a));
  }
}

void build_tables(TokenizerData& d) {
  int32_t size = 0;
  for (const auto& [text, id] : d.bpe.vocab) size = std::max(size, id + 1);
  for (const auto& a : d.added) size = std::max(size, a.id + 1);
  d.id_to_token.assign(size, {});
  d.is_added.assign(size, 0);
  for (const auto& [text, id] : d.bpe.vocab) d.id_to_token[id] = text;
  for (uint32_t i = 0; i < d.added.size(); ++i) {
    const AddedToken& a = d.added[i];
    d.id_to_token[a.id] = a.content;
    d.is_added[a.id] = 1;
    d.added_ids[a.content] = a.id;
    d.added_by_first_byte[static_cast<unsigned char>(a.content[0])].push_back(i);
  }
  // Longest first, so the first candidate that matches at a position is the leftmost-longest match.
  for (auto& list : d.added_by_first_byte)
    std::stable_sort(list.begin(), list.end(), [&](uint32_t x, uint32_t y) {
      return d.added[x].content.size() > d.added[y].content.size();
    });
}

// bos_token / eos_token in tokenizer_config.json: a string, an {"content": ...} object, or null.
std::string config_token(const json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return {};
  if (cfg[key].is_string()) return cfg[key].get<std::string>();
  LB_CHECK(cfg[key].is_object() && cfg[key].contains("content"),
           "'{}' must be a string or an object with "
           "'content', not {}",
           key, cfg[key].dump());
  return cfg[key]["content"].get<std::string>();
}

int32_t id_of(const TokenizerData& d, const std::string& text) {
  if (auto it = d.added_ids.find(text); it != d.added_ids.end()) return it->second;
  if (auto it = d.bpe.vocab.find(text); it != d.bpe.vocab.end()) return it->second;
  return -1;
}

}  // namespace

std::shared_ptr<TokenizerData> load_tokenizer_data(const fs::path& dir) {
  const fs::path file = dir / "tokenizer.json";
  LB_CHECK(fs::is_regular_file(file),
           "{}: not found (a model directory needs a Hugging Face tokenizer.json)", file.string());
  const json j = parse_json_file(file);
  auto d = std::make_shared<TokenizerData>();
  d->file = file;
  std::string template_bos;
  try {
    LB_CHECK(j.is_object(), "the top level is not a JSON object");
    LB_CHECK(j.contains("model"), "no 'model'");
    read_model(j["model"], *d);
    read_added_tokens(j, *d);
    read_normalizer(j.value("normalizer", json()), d->normalizers);
    read_pre_tokenizer(j.value("pre_tokenizer", json()), d->pre_tokenizers);
    bool fused = false;
    read_decoder(j.value("decoder", json()), d->decoder, fused);
    template_bos = template_prefix_token(j.value("post_processor", json()));
    build_tables(*d);
  } catch (const json::exception& e) {
    fail("{}: {}", file.string(), e.what());
  } catch (const Error& e) {
    fail("{}: {}", file.string(), e.what());
  }

  // Without a config, BOS is what the post-processor prepends; EOS stays unknown (-1).
  std::string bos = template_bos, eos;
  bool add_bos = !template_bos.empty();
  const fs::path config_file = dir / "tokenizer_config.json";
  if (fs::exists(config_file)) {
    const json cfg = parse_json_file(config_file);
    try {
      LB_CHECK(cfg.is_object(), "the top level is not a JSON object");
      if (cfg.contains("bos_token")) bos = config_token(cfg, "bos_token");
      eos = config_token(cfg, "eos_token");
      add_bos = get_bool(cfg, "add_bos_token", add_bos);
      for (const auto& [name, text] : {std::pair{"bos_token", bos}, std::pair{"eos_token", eos}})
        LB_CHECK(text.empty() || id_of(*d, text) >= 0, "{} '{}' is not a token of {}", name, text,
                 file.string());
    } catch (const json::exception& e) {
      fail("{}: {}", config_file.string(), e.what());
    } catch (const Error& e) {
      fail("{}: {}", config_file.string(), e.what());
    }
  }
  d->bos_id = bos.empty() ? -1 : id_of(*d, bos);
  d->eos_id = eos.empty() ? -1 : id_of(*d, eos);
  d->add_bos = add_bos && d->bos_id >= 0;
  return d;
}

}  // namespace lowbit::tokenizer_detail

// The tokenizer's public face: splitting on added tokens, the encode pipeline, streaming decode.
#include "lowbit/model/tokenizer.h"

#include "lowbit/core/error.h"
#include "tokenizer_impl.h"

namespace lowbit {

using namespace tokenizer_detail;

namespace {

// ASCII whitespace only: what lstrip/rstrip added tokens (chat markers) absorb in practice.
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool is_word_byte(char c) {
  const auto b = static_cast<unsigned char>(c);
  return b >= 0x80 || c == '_' || (c >= '0' && c <= '9') ||
         ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

// A stretch of the input: either plain text or one added token.
struct Segment {
  size_t begin, end;
  int32_t added_id;  // -1 for text
};

// Finds added tokens in the raw text, leftmost-longest, before any normalization (as `tokenizers`
// does for the non-normalized added tokens that every supported model uses). lstrip/rstrip swallow
// neighbouring whitespace into the token.
std::vector<Segment> split_on_added(const TokenizerData& d, std::string_view text) {
  std::vector<Segment> out;
  size_t text_begin = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto& candidates = d.added_by_first_byte[static_cast<unsigned char>(text[i])];
    for (const uint32_t k : candidates) {
      const AddedToken& a = d.added[k];
      if (text.compare(i, a.content.size(), a.content) != 0) continue;
      size_t begin = i, end = i + a.content.size();
      if (a.single_word && ((begin > 0 && is_word_byte(text[begin - 1])) ||
                            (end < text.size() && is_word_byte(text[end]))))
        continue;
      if (a.lstrip)
        while (begin > text_begin && is_space(text[begin - 1])) --begin;
      if (a.rstrip)
        while (end < text.size() && is_space(text[end])) ++end;
      if (begin > text_begin) out.push_back({text_begin, begin, -1});
      out.push_back({begin, end, a.id});
      text_begin = end;
      i = end - 1;
      break;
    }
  }
  if (text_begin < text.size()) out.push_back({text_begin, text.size(), -1});
  return out;
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  if (from.empty()) return s;
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
  return s;
}

// A "<0xNN>" byte-fallback token's byte, or -1.
int fallback_byte(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = t[k];
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) return -1;
    v = v * 16 + digit;
  }
  return v;
}

// The bytes one token contributes to the decoded text, before UTF-8 assembly and the leading strip.
std::string token_bytes(const TokenizerData& d, int32_t id, bool first) {
  const std::string& t = d.id_to_token[id];
  if (d.is_added[id]) return t;  // added tokens are their text
  const DecoderSpec& dec = d.decoder;
  if (dec.byte_level) {
    std::string out;
    for (size_t pos = 0; pos < t.size();) {
      const size_t start = pos;
      const int b = byte_level_byte(next_code_point(t, pos));
      if (b >= 0) {
        out += static_cast<char>(b);
      } else {
        out.append(t, start, pos - start);
      }
    }
    return out;
  }
  if (dec.byte_fallback) {
    if (const int b = fallback_byte(t); b >= 0) return std::string(1, static_cast<char>(b));
  }
  std::string s = t;
  for (const auto& [from, to] : dec.replaces) s = replace_all(std::move(s), from, to);
  if (!dec.metaspace.empty())
    s = replace_all(std::move(s), dec.metaspace, first && dec.metaspace_drop_first ? "" : " ");
  return s;
}

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& model_dir) {
  Tokenizer t;
  t.data_ = load_tokenizer_data(model_dir);
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  const TokenizerData& d = *data_;
  const size_t bad = find_invalid_utf8(text);
  LB_CHECK(bad == std::string_view::npos,
           "tokenizer: cannot encode text that is not valid UTF-8 (byte {} of {})", bad,
           text.size());
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_bos && d.bos_id >= 0) ids.push_back(d.bos_id);
  for (const Segment& seg : split_on_added(d, text)) {
    if (seg.added_id >= 0) {
      ids.push_back(seg.added_id);
      continue;
    }
    std::string normalized =
        normalize(d.normalizers, std::string(text.substr(seg.begin, seg.end - seg.begin)));
    for (const Piece& p :
         pre_tokenize(d.pre_tokenizers, Piece{std::move(normalized), seg.begin == 0}))
      d.bpe.encode(p.text, ids);
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  TokenDecoder decoder(*this);
  std::string out;
  for (const int32_t id : ids) out += decoder.next(id);
  out += decoder.finish();
  return out;
}

int32_t Tokenizer::bos_id() const {
  return data_->bos_id;
}
int32_t Tokenizer::eos_id() const {
  return data_->eos_id;
}
bool Tokenizer::add_bos_default() const {
  return data_->add_bos;
}
int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(data_->id_to_token.size());
}

const std::string& Tokenizer::token_text(int32_t id) const {
  LB_CHECK(id >= 0 && id < vocab_size(), "tokenizer: token id {} out of range [0, {})", id,
           vocab_size());
  return data_->id_to_token[id];
}

int32_t Tokenizer::token_id(std::string_view text) const {
  if (auto it = data_->added_ids.find(text); it != data_->added_ids.end()) return it->second;
  if (auto it = data_->bpe.vocab.find(text); it != data_->bpe.vocab.end()) return it->second;
  return -1;
}

TokenDecoder::TokenDecoder(const Tokenizer& tokenizer)
    : data_(tokenizer.data_), strip_left_(tokenizer.data_->decoder.strip_leading) {}

namespace {
// Removes the spaces the decoder still strips from the start of freshly decoded text.
void strip_start(std::string& text, size_t& strip_left) {
  size_t n = 0;
  while (strip_left > 0 && n < text.size()) {
    if (text[n] != ' ') {
      strip_left = 0;
      break;
    }
    ++n;
    --strip_left;
  }
  text.erase(0, n);
}
}  // namespace

std::string TokenDecoder::next(int32_t id) {
  const TokenizerData& d = *data_;
  LB_CHECK(id >= 0 && id < static_cast<int32_t>(d.id_to_token.size()),
           "tokenizer: token id {} out of range [0, {})", id, d.id_to_token.size());
  if (id == d.bos_id || id == d.eos_id) return {};
  std::string out;
  utf8_push(pending_, token_bytes(d, id, first_token_), out);
  first_token_ = false;
  strip_start(out, strip_left_);
  return out;
}

std::string TokenDecoder::finish() {
  std::string out;
  utf8_finish(pending_, out);
  strip_start(out, strip_left_);
  strip_left_ = data_->decoder.strip_leading;
  first_token_ = true;
  return out;
}

}  // namespace lowbit

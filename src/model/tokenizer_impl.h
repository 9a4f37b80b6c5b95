// Internals of the tokenizer shared by src/model/tokenizer*.cpp: UTF-8 helpers, the PCRE2 wrapper,
// the pipeline steps read from tokenizer.json, and the BPE model.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lowbit::tokenizer_detail {

// ---- UTF-8 --------------------------------------------------------------------------------------

// Byte offset of the first ill-formed sequence, or npos when `s` is valid UTF-8.
size_t find_invalid_utf8(std::string_view s);
// Length of the sequence a lead byte starts (1 for ASCII and, defensively, for stray bytes).
size_t utf8_sequence_length(unsigned char lead);
void append_utf8(std::string& out, uint32_t code_point);
// Decodes one code point at s[pos] (s valid UTF-8) and advances pos.
uint32_t next_code_point(std::string_view s, size_t& pos);

// Lossy incremental UTF-8 decoding: appends to `out` every complete character of pending + bytes,
// keeps an unfinished trailing sequence in `pending`, and writes U+FFFD for each maximal ill-formed
// subsequence (Unicode's recommended practice), so any chunking of the bytes gives the same text.
void utf8_push(std::string& pending, std::string_view bytes, std::string& out);
void utf8_finish(std::string& pending, std::string& out);

// ---- GPT-2 byte-level alphabet ------------------------------------------------------------------

// The printable character (as UTF-8) standing for each byte in byte-level vocabularies.
const std::array<std::string, 256>& byte_level_chars();
// The byte a byte-level character stands for, or -1.
int byte_level_byte(uint32_t code_point);

// ---- regex (PCRE2, UTF + Unicode properties) ----------------------------------------------------

struct Span {
  size_t begin = 0, end = 0;
};

class Regex {
 public:
  // Compiles a pattern written for the `tokenizers` library (Oniguruma syntax, which PCRE2 accepts
  // for what tokenizer.json files use); throws lowbit::Error with PCRE2's message.
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Non-empty matches, left to right, of a valid UTF-8 subject.
  std::vector<Span> find_all(std::string_view subject) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8, kept opaque so pcre2.h stays in one file
  bool jit_ = false;
};

// ---- pipeline steps -----------------------------------------------------------------------------

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
enum class PrependScheme { Always, First, Never };

// A piece of text on its way through the pipeline; at_start tells whether it begins at offset 0 of
// the original input (Metaspace's "first" prepend scheme depends on it).
struct Piece {
  std::string text;
  bool at_start = false;
};

struct NormalizerStep {
  enum class Kind { Prepend, Replace };
  Kind kind = Kind::Prepend;
  std::string text;                    // Prepend: the prefix; Replace: a literal pattern
  std::shared_ptr<const Regex> regex;  // Replace: a regex pattern (text unused)
  std::string content;                 // Replace: the replacement
};

struct PreTokenizerStep {
  enum class Kind { Split, ByteLevel, Metaspace };
  Kind kind = Kind::Split;
  std::shared_ptr<const Regex> regex;  // Split with a regex; ByteLevel with use_regex
  std::string literal;                 // Split with a string pattern
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
  std::string replacement;        // Metaspace
  PrependScheme prepend = PrependScheme::Always;
  bool split = true;  // Metaspace
};

std::string normalize(const std::vector<NormalizerStep>& steps, std::string text);
// Runs every step over every piece, as the `tokenizers` library does; empty pieces are dropped.
std::vector<Piece> pre_tokenize(const std::vector<PreTokenizerStep>& steps, Piece input);
// Splits a piece at delimiter spans (sorted, disjoint) the way a `tokenizers` behaviour does.
std::vector<Piece> split_pieces(const Piece& piece, const std::vector<Span>& delimiters,
                                SplitBehavior behavior, bool invert);

// ---- BPE ----------------------------------------------------------------------------------------

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct BpeModel {
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  StringIdMap vocab;
  std::unordered_map<uint64_t, Merge> merges;  // key: left id << 32 | right id
  int32_t unk_id = -1;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;  // a word found whole in the vocabulary is one token (Llama 3)
  std::array<int32_t, 256> byte_ids{};  // <0xNN> tokens for byte fallback, -1 when absent

  const Merge* find_merge(int32_t left, int32_t right) const {
    auto it = merges.find(static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32 |
                          static_cast<uint32_t>(right));
    return it == merges.end() ? nullptr : &it->second;
  }
  // Appends the ids of one pre-token: characters (or their byte-fallback tokens) merged lowest rank
  // first, ties to the left, in O(n log n).
  void encode(std::string_view word, std::vector<int32_t>& out) const;
};

// ---- decoding -----------------------------------------------------------------------------------

struct DecoderSpec {
  bool byte_level = false;     // token characters stand for bytes (GPT-2 alphabet)
  bool byte_fallback = false;  // <0xNN> tokens are raw bytes
  std::vector<std::pair<std::string, std::string>> replaces;  // applied to each token, in order
  std::string metaspace;              // Metaspace decoder: this character becomes a space ...
  bool metaspace_drop_first = false;  // ... except in the first token, where it is dropped
  size_t strip_leading = 0;  // spaces removed from the start of the fused text (Strip after Fuse)
};

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false, rstrip = false, single_word = false;
};

struct TokenizerData {
  std::filesystem::path file;  // tokenizer.json, for error messages
  BpeModel bpe;
  std::vector<NormalizerStep> normalizers;
  std::vector<PreTokenizerStep> pre_tokenizers;
  DecoderSpec decoder;
  std::vector<AddedToken> added;
  std::array<std::vector<uint32_t>, 256> added_by_first_byte;  // indices into added, longest first
  std::vector<std::string> id_to_token;
  std::vector<uint8_t> is_added;  // by id
  StringIdMap added_ids;
  int32_t bos_id = -1, eos_id = -1;
  bool add_bos = false;
};

// Parses tokenizer.json (+ the optional config); errors name the file.
std::shared_ptr<TokenizerData> load_tokenizer_data(const std::filesystem::path& dir);

}  // namespace lowbit::tokenizer_detail

// Tokenizer: BPE models read from a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`).
// Two families: SentencePiece-style BPE over "▁"-marked text with byte fallback (Llama 2, Mistral),
// and byte-level BPE over regex pre-tokens (Llama 3, GPT-2). Encoding follows the `tokenizers`
// library: added tokens are matched in the raw text first, the rest is normalized, pre-tokenized
// and merged by rank.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit {

namespace tokenizer_detail {
struct TokenizerData;
}

class Tokenizer {
 public:
  // Reads dir/tokenizer.json and, if present, dir/tokenizer_config.json; errors name the file.
  static Tokenizer load(const std::filesystem::path& model_dir);

  // Text must be valid UTF-8. add_bos prepends BOS when the tokenizer has one.
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
  // Every token's text joined, BOS and EOS left out; bytes that do not form valid UTF-8 come out
  // as U+FFFD, one per maximal invalid subsequence. The same as streaming through a TokenDecoder.
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t bos_id() const;  // -1 when absent
  int32_t eos_id() const;  // -1 when absent
  // tokenizer_config's add_bos_token, else whether the post-processor prepends BOS.
  bool add_bos_default() const;
  int32_t vocab_size() const;  // one past the largest id, added tokens included
  const std::string& token_text(int32_t id) const;  // the raw vocabulary string
  // The id of a vocabulary or added token's exact text, or -1.
  int32_t token_id(std::string_view text) const;

 private:
  friend class TokenDecoder;
  Tokenizer() = default;  // only load() makes one
  std::shared_ptr<const tokenizer_detail::TokenizerData> data_;
};

// Streaming decode for generation: push one id at a time and print what comes back. Bytes of a
// character split across byte-fallback or byte-level tokens are held until the character is
// complete, and the leading space the decoder strips is stripped once, so the pieces of a sequence
// (plus finish()) concatenate to exactly Tokenizer::decode of that sequence. Keeps the tokenizer's
// data alive; one per sequence.
class TokenDecoder {
 public:
  explicit TokenDecoder(const Tokenizer& tokenizer);
  std::string next(int32_t id);  // text completed by this token; may be empty
  // Text still held (an unfinished character becomes U+FFFD); then resets for a new sequence.
  std::string finish();

 private:
  std::shared_ptr<const tokenizer_detail::TokenizerData> data_;
  std::string pending_;      // bytes of a UTF-8 character not yet complete
  size_t strip_left_ = 0;    // leading spaces the decoder still strips
  bool first_token_ = true;  // no token has been emitted yet (BOS/EOS skipped do not count)
};

}  // namespace lowbit

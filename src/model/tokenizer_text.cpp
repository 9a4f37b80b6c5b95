// Text machinery of the tokenizer: UTF-8, the byte-level alphabet, PCRE2 regexes, normalizers and
// pre-tokenizers with the semantics of the `tokenizers` library.
#include "tokenizer_impl.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <memory>

#include "lowbit/core/error.h"

namespace lowbit::tokenizer_detail {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length of the sequence a lead byte starts; 0 for bytes that start none (C0, C1, F5..FF, 80..BF).
size_t lead_length(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// The second byte's range excludes overlong forms, surrogates and code points past U+10FFFF.
bool continues(std::string_view pending, unsigned char b) {
  unsigned char lo = 0x80, hi = 0xBF;
  if (pending.size() == 1) {
    switch (static_cast<unsigned char>(pending[0])) {
      case 0xE0:
        lo = 0xA0;
        break;
      case 0xED:
        hi = 0x9F;
        break;
      case 0xF0:
        lo = 0x90;
        break;
      case 0xF4:
        hi = 0x8F;
        break;
      default:
        break;
    }
  }
  return b >= lo && b <= hi;
}

std::string replace_all(const std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::vector<Span> find_literal(std::string_view s, std::string_view needle) {
  std::vector<Span> spans;
  if (needle.empty()) return spans;
  for (size_t hit = s.find(needle); hit != std::string_view::npos;
       hit = s.find(needle, hit + needle.size()))
    spans.push_back({hit, hit + needle.size()});
  return spans;
}

std::string to_byte_level(std::string_view s) {
  const auto& chars = byte_level_chars();
  std::string out;
  out.reserve(s.size() * 2);
  for (const char c : s) out += chars[static_cast<unsigned char>(c)];
  return out;
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
struct MatchContextDeleter {
  void operator()(pcre2_match_context* m) const { pcre2_match_context_free(m); }
};
struct JitStackDeleter {
  void operator()(pcre2_jit_stack* s) const { pcre2_jit_stack_free(s); }
};

}  // namespace

// ---- UTF-8 --------------------------------------------------------------------------------------

size_t find_invalid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = lead_length(static_cast<unsigned char>(s[i]));
    if (n == 0 || i + n > s.size()) return i;
    for (size_t k = 1; k < n; ++k)
      if (!continues(s.substr(i, k), static_cast<unsigned char>(s[i + k]))) return i;
    i += n;
  }
  return std::string_view::npos;
}

size_t utf8_sequence_length(unsigned char lead) {
  const size_t n = lead_length(lead);
  return n == 0 ? 1 : n;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

uint32_t next_code_point(std::string_view s, size_t& pos) {
  const auto lead = static_cast<unsigned char>(s[pos]);
  const size_t n = std::min(utf8_sequence_length(lead), s.size() - pos);
  uint32_t cp = n == 1 ? lead : lead & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[pos + k]) & 0x3F);
  pos += n;
  return cp;
}

void utf8_push(std::string& pending, std::string_view bytes, std::string& out) {
  for (const char ch : bytes) {
    const auto b = static_cast<unsigned char>(ch);
    if (!pending.empty()) {
      if (continues(pending, b)) {
        pending += ch;
        if (pending.size() == lead_length(static_cast<unsigned char>(pending[0]))) {
          out += pending;
          pending.clear();
        }
        continue;
      }
      out += kReplacementChar;  // the unfinished sequence ends here; b starts afresh
      pending.clear();
    }
    const size_t n = lead_length(b);
    if (n == 1) {
      out += ch;
    } else if (n == 0) {
      out += kReplacementChar;
    } else {
      pending += ch;
    }
  }
}

void utf8_finish(std::string& pending, std::string& out) {
  if (pending.empty()) return;
  out += kReplacementChar;
  pending.clear();
}

// ---- byte-level alphabet ------------------------------------------------------------------------

// GPT-2's table: printable Latin-1 bytes stand for themselves; the other 68 bytes, in order, take
// the code points from U+0100 up, so every byte has a visible, non-space character.
namespace {
struct ByteLevelTables {
  std::array<std::string, 256> chars;
  std::array<int16_t, 512> bytes;  // by code point; every mapped code point is below 0x144
  ByteLevelTables() {
    bytes.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
      append_utf8(chars[b], cp);
      bytes[cp] = static_cast<int16_t>(b);
    }
  }
};
const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables t;
  return t;
}
}  // namespace

const std::array<std::string, 256>& byte_level_chars() {
  return byte_level_tables().chars;
}

int byte_level_byte(uint32_t cp) {
  return cp < 512 ? byte_level_tables().bytes[cp] : -1;
}

// ---- regex --------------------------------------------------------------------------------------

Regex::Regex(std::string_view pattern) {
  // UCP gives \s, \d and \w their Unicode meaning, as in Oniguruma, the engine `tokenizers` uses
  // (both count U+0085 NEL and U+3000 as \s, for instance).
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("invalid regex /{}/: {} at offset {}", pattern, reinterpret_cast<const char*>(msg),
         err_offset);
  }
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;  // without JIT support, the interpreter
}

Regex::~Regex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

std::vector<Span> Regex::find_all(std::string_view s) const {
  auto* code = static_cast<pcre2_code*>(code_);
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
      pcre2_match_data_create_from_pattern(code, nullptr));
  std::unique_ptr<pcre2_match_context, MatchContextDeleter> mc(pcre2_match_context_create(nullptr));
  std::unique_ptr<pcre2_jit_stack, JitStackDeleter> stack;
  LB_CHECK(md && mc, "regex: out of memory");
  if (jit_) {
    // The default 32 KiB JIT stack can overflow on long whitespace runs; 16 MiB is only a ceiling.
    stack.reset(pcre2_jit_stack_create(32 * 1024, 16 << 20, nullptr));
    LB_CHECK(stack != nullptr, "regex: out of memory");
    pcre2_jit_stack_assign(mc.get(), nullptr, stack.get());
  }
  std::vector<Span> spans;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos <= s.size()) {
    const int rc =
        pcre2_match(code, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), mc.get());
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("regex: matching failed at byte {}: {}", pos, reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    if (ov[1] > ov[0]) {
      spans.push_back({ov[0], ov[1]});
      pos = ov[1];
    } else {  // an empty match splits nothing: step over one character
      if (ov[0] >= s.size()) break;
      pos = ov[0] + utf8_sequence_length(static_cast<unsigned char>(s[ov[0]]));
    }
  }
  return spans;
}

// ---- normalizers and pre-tokenizers -------------------------------------------------------------

std::string normalize(const std::vector<NormalizerStep>& steps, std::string text) {
  for (const auto& step : steps) {
    switch (step.kind) {
      case NormalizerStep::Kind::Prepend:
        if (!text.empty()) text.insert(0, step.text);  // `tokenizers` leaves empty text empty
        break;
      case NormalizerStep::Kind::Replace:
        if (!step.regex) {
          text = replace_all(text, step.text, step.content);
        } else {
          std::string out;
          size_t pos = 0;
          for (const Span& m : step.regex->find_all(text)) {
            out.append(text, pos, m.begin - pos);
            out += step.content;
            pos = m.end;
          }
          out.append(text, pos, std::string::npos);
          text = std::move(out);
        }
        break;
    }
  }
  return text;
}

std::vector<Piece> split_pieces(const Piece& piece, const std::vector<Span>& delimiters,
                                SplitBehavior behavior, bool invert) {
  // The text as alternating runs: gaps and delimiter matches (two matches may touch).
  struct Run {
    size_t begin, end;
    bool match;
  };
  std::vector<Run> runs;
  size_t pos = 0;
  for (const Span& d : delimiters) {
    if (d.begin > pos) runs.push_back({pos, d.begin, invert});
    runs.push_back({d.begin, d.end, !invert});
    pos = d.end;
  }
  if (pos < piece.text.size()) runs.push_back({pos, piece.text.size(), invert});

  std::vector<Span> spans;
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const Run& r : runs)
        if (!r.match) spans.push_back({r.begin, r.end});
      break;
    case SplitBehavior::Isolated:
      for (const Run& r : runs) spans.push_back({r.begin, r.end});
      break;
    case SplitBehavior::MergedWithPrevious: {
      bool previous_match = false;
      for (const Run& r : runs) {
        if (r.match && !previous_match && !spans.empty()) {
          spans.back().end = r.end;
        } else {
          spans.push_back({r.begin, r.end});
        }
        previous_match = r.match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      // A delimiter joins the run after it unless that is a delimiter too: "▁▁a" -> "▁", "▁a".
      bool next_match = false;
      for (auto r = runs.rbegin(); r != runs.rend(); ++r) {
        if (r->match && !next_match && !spans.empty()) {
          spans.back().begin = r->begin;
        } else {
          spans.push_back({r->begin, r->end});
        }
        next_match = r->match;
      }
      std::reverse(spans.begin(), spans.end());
      break;
    }
    case SplitBehavior::Contiguous: {
      bool previous_match = false;
      for (const Run& r : runs) {
        if (r.match && previous_match && !spans.empty()) {
          spans.back().end = r.end;
        } else {
          spans.push_back({r.begin, r.end});
        }
        previous_match = r.match;
      }
      break;
    }
  }
  std::vector<Piece> out;
  out.reserve(spans.size());
  for (const Span& s : spans)
    if (s.end > s.begin)
      out.push_back({piece.text.substr(s.begin, s.end - s.begin), piece.at_start && s.begin == 0});
  return out;
}

std::vector<Piece> pre_tokenize(const std::vector<PreTokenizerStep>& steps, Piece input) {
  std::vector<Piece> pieces;
  if (!input.text.empty()) pieces.push_back(std::move(input));
  for (const auto& step : steps) {
    std::vector<Piece> next;
    for (Piece& p : pieces) {
      switch (step.kind) {
        case PreTokenizerStep::Kind::Split: {
          const auto spans =
              step.regex ? step.regex->find_all(p.text) : find_literal(p.text, step.literal);
          for (Piece& q : split_pieces(p, spans, step.behavior, step.invert))
            next.push_back(std::move(q));
          break;
        }
        case PreTokenizerStep::Kind::ByteLevel: {
          if (step.add_prefix_space && p.text[0] != ' ') p.text.insert(0, 1, ' ');
          if (!step.regex) {
            next.push_back({to_byte_level(p.text), p.at_start});
            break;
          }
          for (Piece& q :
               split_pieces(p, step.regex->find_all(p.text), SplitBehavior::Isolated, false))
            next.push_back({to_byte_level(q.text), q.at_start});
          break;
        }
        case PreTokenizerStep::Kind::Metaspace: {
          p.text = replace_all(p.text, " ", step.replacement);
          const bool prepend = step.prepend == PrependScheme::Always ||
                               (step.prepend == PrependScheme::First && p.at_start);
          if (prepend && !p.text.starts_with(step.replacement)) p.text.insert(0, step.replacement);
          if (!step.split) {
            next.push_back(std::move(p));
            break;
          }
          const auto spans = find_literal(p.text, step.replacement);
          for (Piece& q : split_pieces(p, spans, SplitBehavior::MergedWithNext, false))
            next.push_back(std::move(q));
          break;
        }
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace lowbit::tokenizer_detail

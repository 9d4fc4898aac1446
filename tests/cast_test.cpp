// Casts: round-to-nearest-even on every narrow float format, specials, overflow and NaN
// accounting, integer saturation.
#include <cmath>
#include <cstring>

#include "core/float_bits.h"
#include "core/hash.h"
#include "test_util.h"
#include "ops/cast.h"

namespace ckb {
namespace {

std::uint16_t f32_to_bf16(float f, CastStats* s = nullptr) {
  std::uint16_t out;
  convert_elements(DType::F32, DType::BF16, reinterpret_cast<const std::byte*>(&f), reinterpret_cast<std::byte*>(&out), 1, s);
  return out;
}
std::uint16_t f64_to(DType t, double d) {
  std::uint16_t out = 0;
  convert_elements(DType::F64, t, reinterpret_cast<const std::byte*>(&d), reinterpret_cast<std::byte*>(&out), 1, nullptr);
  return out;
}
float bits_f32(std::uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

TEST(Cast, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3f808000)), 0x3f80);  // tie -> even (down)
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3f818000)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3f808001)), 0x3f81);  // above tie
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7f80);
  EXPECT_EQ(f32_to_bf16(bits_f32(0x00000001)), 0x0000);  // smallest f32 subnormal rounds to 0
  CastStats s;
  EXPECT_EQ(f32_to_bf16(bits_f32(0x7f7fffff), &s), 0x7f80);  // FLT_MAX overflows to inf
  EXPECT_EQ(s.overflow.load(), 1u);
  f32_to_bf16(NAN, &s);
  EXPECT_EQ(s.nan.load(), 1u);
}

TEST(Cast, GenericPathAgreesWithBf16FastPathOnManyValues) {
  // Every 16th f32 bit pattern around 1.0 and in the subnormal range.
  for (std::uint32_t b = 0x3f000000; b < 0x40000000; b += 0x1001) {
    float f = bits_f32(b);
    EXPECT_EQ(f32_to_bf16(f), f64_to(DType::BF16, f)) << std::hex << b;
  }
  for (std::uint32_t b = 1; b < 0x00800000; b += 0x777) EXPECT_EQ(f32_to_bf16(bits_f32(b)), f64_to(DType::BF16, bits_f32(b)));
}

// The uncounted loops (no stats: the merge path) give the same bytes as the counted ones,
// and the counts of f64 -> f32 are exact on specials: NaN, +-inf in and out, f32 subnormals,
// a tie, FLT_MAX and just past it.
TEST(Cast, UncountedWideningAndNarrowingMatchTheCountedPath) {
  const std::vector<double> d = {1.0, -0.0, NAN, INFINITY, -INFINITY, 0x1p-149, 0x1p-150, 0x1.8p-149,
                                 1.0 + 0x1p-24, 1.0 + 0x1.8p-24, 3.4028234663852886e38, 3.5e38, -1e300, 0.1};
  std::vector<float> counted(d.size()), plain(d.size());
  CastStats s;
  auto in = reinterpret_cast<const std::byte*>(d.data());
  convert_elements(DType::F64, DType::F32, in, reinterpret_cast<std::byte*>(counted.data()), d.size(), &s);
  convert_elements(DType::F64, DType::F32, in, reinterpret_cast<std::byte*>(plain.data()), d.size(), nullptr);
  EXPECT_EQ(std::memcmp(counted.data(), plain.data(), 4 * d.size()), 0);
  EXPECT_EQ(s.nan.load(), 1u);
  EXPECT_EQ(s.overflow.load(), 2u);  // 3.5e38 and -1e300
  EXPECT_EQ(s.inexact.load(), 7u);   // 0x1p-150, 0x1.8p-149, the tie, 1+1.5ulp, 3.5e38, -1e300, 0.1
  for (DType from : {DType::BF16, DType::F32}) {
    std::vector<std::uint32_t> bits;
    for (std::uint32_t b = 0; b < 0xffff0000u; b += 0x10101) bits.push_back(b);
    std::vector<std::uint16_t> halves;
    for (auto b : bits) halves.push_back(static_cast<std::uint16_t>(b >> 16));
    const std::byte* src = from == DType::BF16 ? reinterpret_cast<const std::byte*>(halves.data())
                                               : reinterpret_cast<const std::byte*>(bits.data());
    std::vector<double> a(bits.size()), b(bits.size());
    CastStats w;
    convert_elements(from, DType::F64, src, reinterpret_cast<std::byte*>(a.data()), bits.size(), &w);
    convert_elements(from, DType::F64, src, reinterpret_cast<std::byte*>(b.data()), bits.size(), nullptr);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), 8 * a.size()), 0) << dtype_name(from);
    EXPECT_GT(w.nan.load(), 0u);
  }
}

TEST(Cast, F16SpecialsAndSubnormals) {
  EXPECT_EQ(f64_to(DType::F16, 65504.0), 0x7bff);
  EXPECT_EQ(f64_to(DType::F16, 65519.99), 0x7bff);  // below the rounding boundary
  EXPECT_EQ(f64_to(DType::F16, 65520.0), 0x7c00);   // tie at max -> inf
  EXPECT_EQ(f64_to(DType::F16, std::ldexp(1.0, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(f64_to(DType::F16, std::ldexp(1.0, -25)), 0x0000);  // tie -> even (0)
  EXPECT_EQ(f64_to(DType::F16, std::ldexp(3.0, -25)), 0x0002);  // 1.5 ulp -> 2
  EXPECT_EQ(f64_to(DType::F16, std::ldexp(1023.5, -24)), 0x0400);  // rounds up into min normal
  EXPECT_EQ(f64_to(DType::F16, -2.0), 0xc000);
  EXPECT_EQ(f64_to(DType::F16, 1.0 + std::ldexp(1.0, -11)), 0x3c00);  // tie -> even
  EXPECT_EQ(f64_to(DType::F16, 1.0 + 3 * std::ldexp(1.0, -11)), 0x3c02);
}

TEST(Cast, Float8Formats) {
  EXPECT_EQ(f64_to(DType::F8_E4M3, 448.0) & 0xff, 0x7e);
  EXPECT_EQ(f64_to(DType::F8_E4M3, 464.0) & 0xff, 0x7e);  // tie rounds to even (448)
  EXPECT_EQ(f64_to(DType::F8_E4M3, 500.0) & 0xff, 0x7f);  // overflow -> NaN (no inf in e4m3fn)
  EXPECT_EQ(f64_to(DType::F8_E4M3, std::ldexp(1.0, -9)) & 0xff, 0x01);
  EXPECT_EQ(f64_to(DType::F8_E5M2, 57344.0) & 0xff, 0x7b);
  EXPECT_EQ(f64_to(DType::F8_E5M2, 1e6) & 0xff, 0x7c);  // inf
  EXPECT_EQ(f64_to(DType::F8_E5M2, -1.0) & 0xff, 0xbc);
  for (std::uint32_t b = 0; b < 256; ++b) {  // decode/encode are inverse on all non-NaN codes
    double v = decode_float(kF8E4M3, b);
    if (!std::isnan(v)) {
      EXPECT_EQ(encode_float(kF8E4M3, v), b) << b;
    }
    double w = decode_float(kF8E5M2, b);
    if (!std::isnan(w)) {
      EXPECT_EQ(encode_float(kF8E5M2, w), b) << b;
    }
  }
}

TEST(Cast, WideningIsExactAndBf16RoundTrips) {
  // Every bf16 value widened to f32 and narrowed back is unchanged (except NaN payloads).
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    std::uint16_t in = static_cast<std::uint16_t>(b), back;
    float f;
    CastStats s;
    convert_elements(DType::BF16, DType::F32, reinterpret_cast<const std::byte*>(&in), reinterpret_cast<std::byte*>(&f), 1, &s);
    EXPECT_EQ(s.inexact.load(), 0u);
    if (std::isnan(f)) continue;
    convert_elements(DType::F32, DType::BF16, reinterpret_cast<const std::byte*>(&f), reinterpret_cast<std::byte*>(&back), 1, nullptr);
    ASSERT_EQ(back, in) << b;
  }
}

TEST(Cast, F16WideningMatchesExactDecodeForAllCodes) {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    std::uint16_t in = static_cast<std::uint16_t>(b);
    float f;
    double d;
    convert_elements(DType::F16, DType::F32, reinterpret_cast<const std::byte*>(&in), reinterpret_cast<std::byte*>(&f), 1, nullptr);
    convert_elements(DType::F16, DType::F64, reinterpret_cast<const std::byte*>(&in), reinterpret_cast<std::byte*>(&d), 1, nullptr);
    double want = decode_float(kF16, b);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(f) && std::isnan(d)) << b;
    } else {
      ASSERT_EQ(static_cast<double>(f), want) << b;
      ASSERT_EQ(d, want) << b;
      ASSERT_EQ(std::signbit(f), std::signbit(want)) << b;
    }
  }
}

TEST(Cast, IntegerSaturationAndFloatToInt) {
  std::int64_t big = 300, neg = -5;
  std::uint8_t u8;
  CastStats s;
  convert_elements(DType::I64, DType::U8, reinterpret_cast<const std::byte*>(&big), reinterpret_cast<std::byte*>(&u8), 1, &s);
  EXPECT_EQ(u8, 255);
  convert_elements(DType::I64, DType::U8, reinterpret_cast<const std::byte*>(&neg), reinterpret_cast<std::byte*>(&u8), 1, &s);
  EXPECT_EQ(u8, 0);
  EXPECT_EQ(s.overflow.load(), 2u);
  float halves[] = {2.5f, 3.5f, -2.5f, NAN, 1e10f};
  std::int32_t out[5];
  CastStats t;
  convert_elements(DType::F32, DType::I32, reinterpret_cast<const std::byte*>(halves), reinterpret_cast<std::byte*>(out), 5, &t);
  EXPECT_EQ(out[0], 2);
  EXPECT_EQ(out[1], 4);
  EXPECT_EQ(out[2], -2);
  EXPECT_EQ(out[3], 0);
  EXPECT_EQ(out[4], 2147483647);
  EXPECT_EQ(t.nan.load(), 1u);
  EXPECT_EQ(t.overflow.load(), 1u);
}

TEST(Cast, CastSourceReadsInPieces) {
  std::vector<float> v(1000);
  for (int i = 0; i < 1000; ++i) v[i] = 1.0f + static_cast<float>(i) / 3.0f;
  Bytes b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  auto t = make_memory_tensor({DType::F32, {1000}}, std::move(b));
  auto stats = std::make_shared<CastStats>();
  auto c = cast_tensor(t, DType::BF16, stats);
  auto whole = c.read_all();
  std::vector<std::byte> parts(2000);
  c.source->read(0, {parts.data(), 600});
  c.source->read(600, {parts.data() + 600, 1400});
  EXPECT_EQ(std::memcmp(whole.data(), parts.data(), 2000), 0);
  for (int i = 0; i < 1000; ++i) {
    std::uint16_t got;
    std::memcpy(&got, whole.data() + 2 * i, 2);
    EXPECT_EQ(got, f32_to_bf16(v[i]));
  }
  EXPECT_EQ(stats->elements.load(), 2000u);  // read_all + two partial reads
}

}  // namespace
}  // namespace ckb

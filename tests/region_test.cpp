// Region and parallel reads (core/region.h) against references computed here: tensors whose
// element e holds the little-endian bytes of e (its linear index), every box of small 0-d to
// 4-d shapes compared element by element with an odometer walk over the box, the reads the
// source sees (one per maximal contiguous run, nothing else), large regions and ranges that
// take the multi-threaded paths, bound/size/sub-byte errors naming the tensor, and regions of
// the real chunked zarr arrays Orbax wrote (cut from the full read, whose sha256 is the
// manifest's).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <random>
#include <set>

#include "core/errors.h"
#include "core/hash.h"
#include "core/region.h"
#include "formats/format.h"
#include "test_util.h"

namespace ckb {
namespace {

// Byte `o` of a tensor whose elements of `elem` bytes hold their linear index, little-endian.
std::byte index_byte(std::uint64_t o, std::size_t elem) {
  const std::uint64_t e = o / elem, k = o % elem;
  return static_cast<std::byte>(k < 8 ? (e >> (8 * k)) & 0xff : 0);
}

Tensor iota_tensor(DType dt, Shape shape, const std::string& what = "iota") {
  TensorInfo info{dt, std::move(shape)};
  Bytes b(info.nbytes());
  const std::size_t elem = dtype_bits(dt) / 8;
  for (std::size_t o = 0; o < b.size(); ++o) b.data()[o] = index_byte(o, elem);
  return make_memory_tensor(info, std::move(b), what);
}

// Computes the iota bytes on demand (no memory), reads from any thread, records every read.
class IotaSource final : public TensorSource {
 public:
  IotaSource(std::size_t elem, bool parallel) : elem_(elem), parallel_(parallel) {}
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = index_byte(offset + i, elem_);
    std::lock_guard lock(mu_);
    reads_.emplace_back(offset, out.size());
  }
  bool parallel_reads() const override { return parallel_; }
  std::string describe() const override { return "iota"; }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> reads() const {
    std::lock_guard lock(mu_);
    auto r = reads_;
    std::sort(r.begin(), r.end());
    return r;
  }

 private:
  std::size_t elem_;
  bool parallel_;
  mutable std::mutex mu_;
  mutable std::vector<std::pair<std::uint64_t, std::uint64_t>> reads_;
};

// Wraps a source and records the (offset, size) of every read.
class RecordingSource final : public TensorSource {
 public:
  explicit RecordingSource(SourcePtr base) : base_(std::move(base)) {}
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    reads.emplace_back(offset, out.size());
    base_->read(offset, out);
  }
  std::string describe() const override { return "recording"; }
  mutable std::vector<std::pair<std::uint64_t, std::uint64_t>> reads;

 private:
  SourcePtr base_;
};

// The linear (C-order) element indices of the box, in C order: an odometer over its axes.
std::vector<std::uint64_t> box_elements(const Shape& shape, const Shape& start, const Shape& stop) {
  std::vector<std::uint64_t> out;
  for (std::size_t d = 0; d < shape.size(); ++d)
    if (stop[d] <= start[d]) return out;
  Shape i = start;
  for (;;) {
    std::uint64_t lin = 0;
    for (std::size_t d = 0; d < shape.size(); ++d) lin = lin * static_cast<std::uint64_t>(shape[d]) + static_cast<std::uint64_t>(i[d]);
    out.push_back(lin);
    std::size_t d = shape.size();
    while (d > 0) {
      --d;
      if (++i[d] < stop[d]) break;
      i[d] = start[d];
      if (d == 0) return out;
    }
    if (shape.empty()) return out;
  }
}

// The box cut out of `full` (a whole tensor's bytes) element by element.
std::vector<std::byte> cut(std::span<const std::byte> full, std::size_t elem, const Shape& shape, const Shape& start,
                           const Shape& stop) {
  std::vector<std::byte> out;
  for (std::uint64_t e : box_elements(shape, start, stop))
    out.insert(out.end(), full.begin() + static_cast<std::ptrdiff_t>(e * elem),
               full.begin() + static_cast<std::ptrdiff_t>((e + 1) * elem));
  return out;
}

std::vector<std::byte> region(const Tensor& t, const Shape& start, const Shape& stop, unsigned threads = 0) {
  std::uint64_t n = dtype_bits(t.info.dtype) / 8;
  for (std::size_t d = 0; d < start.size(); ++d) n *= static_cast<std::uint64_t>(std::max<std::int64_t>(0, stop[d] - start[d]));
  std::vector<std::byte> out(n, std::byte{0xEE});
  read_region(t, start, stop, out, "t", threads);
  return out;
}

std::string box_str(const Shape& start, const Shape& stop) { return shape_str(start) + " .. " + shape_str(stop); }

// Calls fn(start, stop) for every box of `shape` (every start <= stop on every axis).
void for_every_box(const Shape& shape, const std::function<void(const Shape&, const Shape&)>& fn) {
  Shape start(shape.size()), stop(shape.size());
  std::function<void(std::size_t)> rec = [&](std::size_t d) {
    if (d == shape.size()) return fn(start, stop);
    for (std::int64_t a = 0; a <= shape[d]; ++a)
      for (std::int64_t b = a; b <= shape[d]; ++b) {
        start[d] = a;
        stop[d] = b;
        rec(d + 1);
      }
  };
  rec(0);
}

std::vector<std::byte> iota_bytes(const Shape& shape, const Shape& start, const Shape& stop, std::size_t elem) {
  std::vector<std::byte> out;
  for (std::uint64_t e : box_elements(shape, start, stop))
    for (std::size_t k = 0; k < elem; ++k) out.push_back(index_byte(e * elem + k, elem));
  return out;
}

TEST(Region, EveryBoxOfSmallTensorsOfEveryElementSize) {
  const std::vector<std::pair<DType, Shape>> cases = {
      {DType::F32, {}},          {DType::I32, {7}},           {DType::U8, {6}},       {DType::BF16, {3, 4, 5}},
      {DType::F32, {3, 4, 5}},   {DType::I64, {3, 4, 5}},     {DType::U8, {3, 4, 5}}, {DType::I32, {2, 3, 4, 5}},
      {DType::F16, {1, 3, 1, 4}}, {DType::F32, {0, 4}},       {DType::F64, {4, 0, 2}}};
  for (const auto& [dt, shape] : cases) {
    const Tensor t = iota_tensor(dt, shape);
    const std::size_t elem = dtype_bits(dt) / 8;
    std::size_t boxes = 0, failures = 0;
    for_every_box(shape, [&](const Shape& start, const Shape& stop) {
      ++boxes;
      const auto got = region(t, start, stop);
      if (got != iota_bytes(shape, start, stop, elem) && ++failures <= 5)
        ADD_FAILURE() << dtype_name(dt) << " " << shape_str(shape) << " box " << box_str(start, stop);
    });
    // (n+1)(n+2)/2 (start, stop) pairs per axis of size n
    std::size_t want = 1;
    for (auto n : shape) want *= static_cast<std::size_t>((n + 1) * (n + 2) / 2);
    EXPECT_EQ(boxes, want);
    EXPECT_EQ(failures, 0u) << dtype_name(dt) << " " << shape_str(shape);
  }
}

TEST(Region, ZeroDAndSingleElementsHoldTheirIndex) {
  const Tensor scalar = iota_tensor(DType::I32, {});
  EXPECT_EQ(region(scalar, {}, {}), (std::vector<std::byte>(4, std::byte{0})));
  const Tensor t = iota_tensor(DType::I32, {2, 3, 4, 5});
  // element (1, 2, 3, 4) is the last one: 119
  const auto last = region(t, {1, 2, 3, 4}, {2, 3, 4, 5});
  std::int32_t v = -1;
  std::memcpy(&v, last.data(), 4);
  EXPECT_EQ(v, 119);
  const auto mid = region(t, {0, 1, 2, 3}, {1, 2, 3, 4});  // 0*60 + 1*20 + 2*5 + 3
  std::memcpy(&v, mid.data(), 4);
  EXPECT_EQ(v, 33);
  // a column of the 4-d tensor: (1, 2, 0..4, 1) = 100 + 5j + 1
  const auto col = region(t, {1, 2, 0, 1}, {2, 3, 4, 2});
  ASSERT_EQ(col.size(), 16u);
  for (int j = 0; j < 4; ++j) {
    std::memcpy(&v, col.data() + 4 * j, 4);
    EXPECT_EQ(v, 101 + 5 * j) << j;
  }
}

// Maximal runs of consecutive element indices in the box, as byte (offset, size) pairs.
std::vector<std::pair<std::uint64_t, std::uint64_t>> contiguous_runs(const Shape& shape, const Shape& start,
                                                                      const Shape& stop, std::size_t elem) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> runs;
  for (std::uint64_t e : box_elements(shape, start, stop)) {
    if (!runs.empty() && runs.back().first + runs.back().second == e * elem) runs.back().second += elem;
    else runs.emplace_back(e * elem, elem);
  }
  return runs;
}

TEST(Region, ReadsExactlyTheContiguousRunsOfTheBox) {
  const Shape shape{3, 4, 5};
  const Tensor base = iota_tensor(DType::I16, shape);
  std::size_t failures = 0;
  for_every_box(shape, [&](const Shape& start, const Shape& stop) {
    auto rec = std::make_shared<RecordingSource>(base.source);
    const Tensor t{base.info, rec};
    const auto got = region(t, start, stop);
    auto reads = rec->reads;
    std::sort(reads.begin(), reads.end());
    const auto want = contiguous_runs(shape, start, stop, 2);
    if ((reads != want || got != iota_bytes(shape, start, stop, 2)) && ++failures <= 5)
      ADD_FAILURE() << "box " << box_str(start, stop) << ": " << reads.size() << " reads, " << want.size() << " runs";
  });
  EXPECT_EQ(failures, 0u);
}

TEST(Region, LargeRegionsOnAParallelSourceUseThreadsAndStayExact) {
  // I32 [2048, 2048] = 16 MiB, computed on demand
  const Shape shape{2048, 2048};
  auto src = std::make_shared<IotaSource>(4, true);
  const Tensor t{{DType::I32, shape}, src};
  struct Box {
    Shape start, stop;
  };
  for (const Box& b : {Box{{1, 3}, {2047, 2041}},      // many runs, > 8 MiB: split over workers
                       Box{{100, 0}, {1900, 2048}},    // one contiguous run of ~14 MiB
                       Box{{0, 0}, {2048, 2048}},      // the whole tensor
                       Box{{5, 2047}, {2048, 2048}}}) {  // a column: 2043 runs of one element
    for (unsigned threads : {1u, 4u}) {
      const auto got = region(t, b.start, b.stop, threads);
      EXPECT_TRUE(got == iota_bytes(shape, b.start, b.stop, 4)) << box_str(b.start, b.stop) << " threads " << threads;
    }
  }
  // the reads never go outside the box: every read lies inside one of its runs
  auto rec = std::make_shared<IotaSource>(4, true);
  const Tensor t2{{DType::I32, shape}, rec};
  const Shape start{1, 3}, stop{2047, 2041};
  region(t2, start, stop, 4);
  std::uint64_t total = 0;
  for (const auto& [off, n] : rec->reads()) {
    total += n;
    const std::uint64_t row = off / (2048 * 4), col = off % (2048 * 4) / 4;
    EXPECT_TRUE(row >= 1 && row < 2047 && col >= 3 && col + n / 4 <= 2041) << off << " +" << n;
  }
  EXPECT_EQ(total, 2046ull * 2038 * 4);
}

TEST(Region, BoundsBufferSizeAndSubByteErrorsNameTheTensor) {
  const Tensor t = iota_tensor(DType::F32, {3, 4});
  auto usage = [&](const Tensor& x, Shape start, Shape stop, std::size_t n) -> std::string {
    std::vector<std::byte> out(n);
    try {
      read_region(x, start, stop, out, "model.w");
    } catch (const UsageError& e) {
      return e.what();
    } catch (const std::exception& e) {
      return std::string("WRONG TYPE: ") + e.what();
    }
    return "NO ERROR";
  };
  EXPECT_EQ(usage(t, {0, 4}, {3, 5}, 0), "model.w: region [4, 5) of axis 1 is outside its size 4");
  EXPECT_EQ(usage(t, {-1, 0}, {1, 4}, 16), "model.w: region [-1, 1) of axis 0 is outside its size 3");
  EXPECT_EQ(usage(t, {2, 0}, {1, 4}, 0), "model.w: region [2, 1) of axis 0 is outside its size 3");
  EXPECT_EQ(usage(t, {0, 0}, {4, 4}, 64), "model.w: region [0, 4) of axis 0 is outside its size 3");
  EXPECT_EQ(usage(t, {0}, {3}, 12), "model.w: a region of a 2-d tensor needs 2 start and stop indices, got 1 and 1");
  EXPECT_EQ(usage(t, {0, 0}, {3}, 12), "model.w: a region of a 2-d tensor needs 2 start and stop indices, got 2 and 1");
  // [1, 3) x [1, 2): 2 elements, 8 bytes
  EXPECT_EQ(usage(t, {1, 1}, {3, 2}, 4), "model.w: the region holds 8 bytes, the buffer 4");
  EXPECT_EQ(usage(t, {1, 1}, {3, 2}, 12), "model.w: the region holds 8 bytes, the buffer 12");
  EXPECT_EQ(usage(t, {0, 0}, {3, 4}, 47), "model.w: the region holds 48 bytes, the buffer 47");
  EXPECT_EQ(usage(t, {1, 1}, {3, 2}, 8), "NO ERROR");

  // F4: two elements a byte; only the whole tensor can be read
  TensorInfo f4{DType::F4, {2, 8}};
  Bytes b(f4.nbytes());
  ASSERT_EQ(b.size(), 8u);
  for (std::size_t i = 0; i < 8; ++i) b.data()[i] = static_cast<std::byte>(0x10 * i + 1);
  const Tensor packed = make_memory_tensor(f4, std::move(b));
  EXPECT_EQ(usage(packed, {0, 0}, {1, 8}, 4), "model.w: F4 elements are smaller than a byte; read the tensor whole");
  EXPECT_EQ(usage(packed, {0, 2}, {2, 4}, 2), "model.w: F4 elements are smaller than a byte; read the tensor whole");
  std::vector<std::byte> whole(8);
  read_region(packed, Shape{0, 0}, Shape{2, 8}, whole, "model.w");
  for (std::size_t i = 0; i < 8; ++i) EXPECT_EQ(whole[i], static_cast<std::byte>(0x10 * i + 1)) << i;
  const Tensor f6 = make_memory_tensor({DType::F6_E2M3, {4}}, Bytes(3));
  EXPECT_EQ(usage(f6, {1}, {3}, 1), "model.w: F6_E2M3 elements are smaller than a byte; read the tensor whole");
}

TEST(Region, ChunkedZarrArraysMatchTheFullRead) {
  for (const char* fx : {"orbax_sharded_zarr2", "orbax_sharded_zarr3"}) {
    const Checkpoint ck = read_checkpoint(test::fixture(std::string(fx) + "/ckpt"));
    const auto manifest = test::load_json(test::fixture(std::string(fx) + "/manifest.json"));
    for (const auto& [name, want] : manifest["tensors"].items()) {
      const Node* n = find_path(ck.root, name);
      ASSERT_TRUE(n && n->is_tensor()) << fx << " " << name;
      const Tensor& t = n->tensor();
      const Bytes full = t.read_all();
      ASSERT_EQ(sha256_hex(full.span()), want["sha256"].get<std::string>()) << fx << " " << name;
      const Shape& shape = t.info.shape;
      const std::size_t elem = dtype_bits(t.info.dtype) / 8;
      // Boxes on chunk boundaries (a 2x2 mesh halves the first two axes), inside one chunk,
      // across all four, single elements, whole axes, empty extents; then random boxes.
      std::vector<std::pair<Shape, Shape>> boxes;
      Shape zero(shape.size(), 0), half(shape.size()), one(shape.size(), 1);
      for (std::size_t d = 0; d < shape.size(); ++d) half[d] = shape[d] / 2;
      boxes.push_back({zero, shape});
      boxes.push_back({zero, half});
      boxes.push_back({half, shape});
      Shape a = half, b = half;
      for (std::size_t d = 0; d < shape.size(); ++d) {
        a[d] = std::max<std::int64_t>(0, half[d] - 1);
        b[d] = std::min(shape[d], half[d] + 1);
      }
      boxes.push_back({a, b});  // the 2^n elements around the centre
      boxes.push_back({half, [&] { Shape s = half; for (auto& x : s) ++x; return s; }()});  // one element
      Shape last = shape;
      for (auto& x : last) --x;
      boxes.push_back({last, shape});
      Shape empty_stop = shape;
      empty_stop[0] = 3;
      Shape empty_start = zero;
      empty_start[0] = 3;
      boxes.push_back({empty_start, empty_stop});
      std::mt19937_64 rng(12345);
      for (int k = 0; k < 40; ++k) {
        Shape s(shape.size()), e(shape.size());
        for (std::size_t d = 0; d < shape.size(); ++d) {
          std::int64_t x = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(shape[d] + 1));
          std::int64_t y = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(shape[d] + 1));
          s[d] = std::min(x, y);
          e[d] = std::max(x, y);
        }
        boxes.push_back({s, e});
      }
      for (const auto& [s, e] : boxes) {
        for (unsigned threads : {1u, 3u}) {
          const auto got = region(t, s, e, threads);
          EXPECT_TRUE(got == cut(full.span(), elem, shape, s, e)) << fx << " " << name << " " << box_str(s, e);
        }
      }
    }
  }
}

// A region decodes only the chunks it touches: with one chunk file of an array removed (an
// error in an Orbax item that stores chunks equal to the fill value too), regions beside it,
// up to its first row, read; one that covers a row of it fails naming the chunk.
TEST(Region, TouchesOnlyTheChunksItCovers) {
  test::TempDir tmp;
  const std::string src = test::fixture("safetensors_single/model.safetensors");
  // "big" F32 [256, 384] in chunks of 37 rows (64 KiB / 1536 bytes a row): files 0.0 .. 6.0
  auto r = test::run_cli("convert " + src + " " + tmp / "o" + " --to orbax --no-ocdbt --chunk-size 64KiB -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(test::load_json(tmp / "o/big/.zarray")["chunks"], nlohmann::json({37, 384}));
  ASSERT_EQ(std::remove((tmp / "o/big/3.0").c_str()), 0);  // rows [111, 148)
  const Checkpoint ref = read_checkpoint(src);
  const Bytes full = find_path(ref.root, "big")->tensor().read_all();
  const Shape shape{256, 384};
  const Checkpoint ck = read_checkpoint(tmp / "o");
  const Tensor& t = find_path(ck.root, "big")->tensor();
  for (const auto& [s, e] : std::vector<std::pair<Shape, Shape>>{
           {{0, 0}, {111, 384}}, {{148, 5}, {256, 300}}, {{36, 0}, {38, 1}}, {{110, 383}, {111, 384}}, {{148, 0}, {149, 384}}}) {
    SCOPED_TRACE(box_str(s, e));
    std::vector<std::byte> got;
    EXPECT_NO_THROW(got = region(t, s, e, 2));
    EXPECT_TRUE(got == cut(full.span(), 4, shape, s, e));
  }
  for (const auto& [s, e] : std::vector<std::pair<Shape, Shape>>{{{110, 0}, {112, 384}}, {{147, 10}, {149, 12}}}) {
    const std::string msg = test::error_of([&, s = s, e = e] { region(t, s, e); });
    EXPECT_NE(msg.find("array 'big': chunk 'big/3.0' is missing"), std::string::npos) << box_str(s, e) << ": " << msg;
  }
}

TEST(ReadParallel, LargeRangesSplitOverWorkersEqualAPlainRead) {
  const std::uint64_t offset = 12344, n = (40ull << 20) + 8;  // 40 MiB and a tail: 5 MiB + 1 elements of 8 bytes
  auto par = std::make_shared<IotaSource>(8, true);
  std::vector<std::byte> got(n), want(n);
  read_parallel(*par, offset, got, 4);
  for (std::uint64_t i = 0; i < n; ++i) want[i] = index_byte(offset + i, 8);
  EXPECT_TRUE(got == want);
  // disjoint reads covering the range exactly, more than one
  const auto reads = par->reads();
  EXPECT_GT(reads.size(), 1u);
  std::uint64_t at = offset;
  for (const auto& [off, len] : reads) {
    EXPECT_EQ(off, at);
    EXPECT_EQ((off - offset) % 8, 0u) << "a split inside an element";
    at = off + len;
  }
  EXPECT_EQ(at, offset + n);

  // A source that cannot read in parallel gets one read; so does a small range.
  auto seq = std::make_shared<IotaSource>(8, false);
  std::vector<std::byte> got2(n);
  read_parallel(*seq, offset, got2, 4);
  EXPECT_TRUE(got2 == want);
  EXPECT_EQ(seq->reads(), (std::vector<std::pair<std::uint64_t, std::uint64_t>>{{offset, n}}));
  auto small = std::make_shared<IotaSource>(8, true);
  std::vector<std::byte> got3(1000);
  read_parallel(*small, 8, got3, 4);
  for (std::size_t i = 0; i < got3.size(); ++i) ASSERT_EQ(got3[i], index_byte(8 + i, 8)) << i;
  EXPECT_EQ(small->reads().size(), 1u);

  // A big in-memory tensor: the parallel read of a range equals its plain read.
  const Tensor big = iota_tensor(DType::I32, {5 << 20});  // 20 MiB
  std::vector<std::byte> a(15 << 20), b(15 << 20);
  read_parallel(*big.source, 4 << 20, a, 4);
  big.source->read(4 << 20, b);
  EXPECT_TRUE(a == b);
  EXPECT_EQ(a[0], index_byte(4 << 20, 4));
}

}  // namespace
}  // namespace ckb

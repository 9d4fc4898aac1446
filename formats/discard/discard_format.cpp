// The "discard" output format: every tensor is read, transformed and handed to a writer that
// keeps nothing (like `dd of=/dev/null`). It measures the read and transform side of a
// conversion on its own (`convert SRC - --to discard`) and checks that every byte of the
// source can be produced, without needing disk space for the output. Nothing is written.
// Every byte handed over is read (folded into a checksum): a zero-copy view of a mapped file
// would otherwise never be touched, and the benchmark would measure nothing.
#include <atomic>
#include <cstring>

#include "core/errors.h"
#include "formats/format.h"

namespace ckb {
namespace {

class DiscardWriter final : public Writer {
 public:
  void begin(const Node& layout) override {
    for (const auto& [name, t] : tensor_list(layout)) sizes_.push_back(t->info.nbytes());
  }
  void write(std::size_t slot, std::uint64_t offset, std::span<const std::byte> data) override {
    if (slot >= sizes_.size() || offset > sizes_[slot] || data.size() > sizes_[slot] - offset)
      throw MappingError("discard", "write outside tensor slot " + std::to_string(slot));
    std::uint64_t fold = 0;
    const std::byte* p = data.data();
    std::size_t n = data.size();
    for (; n >= 8; n -= 8, p += 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      fold ^= w;
    }
    for (; n; --n, ++p) fold ^= std::to_integer<std::uint64_t>(*p);
    checksum_.fetch_xor(fold, std::memory_order_relaxed);
  }
  void commit() override {}

 private:
  std::vector<std::uint64_t> sizes_;
  std::atomic<std::uint64_t> checksum_{0};
};

}  // namespace

Format make_discard_format() {
  Format f;
  f.name = "discard";
  f.caps.writes_output = false;
  f.caps.non_tensor_leaves = true;
  f.bytes_only_dtypes = {std::begin(kBytesOnlyDTypes), std::end(kBytesOnlyDTypes)};  // writes nothing: holds every type
  f.description = "read and transform everything, write nothing (for measuring and checking)";
  f.detect = [](const std::string&) { return false; };
  f.read = [](const std::string& path, const ReadOptions&) -> Checkpoint {
    throw UsageError("'discard' is an output format only: " + path);
  };
  f.make_writer = [](const std::string&, const WriteOptions&) -> std::unique_ptr<Writer> {
    return std::make_unique<DiscardWriter>();
  };
  return f;
}

}  // namespace ckb

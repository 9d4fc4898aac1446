// Implementation of formats/msgpack/concat_source.h.
#include "formats/msgpack/concat_source.h"

#include <algorithm>

#include "core/errors.h"

namespace ckb {

ConcatSource::ConcatSource(std::vector<Part> parts, std::string what) : parts_(std::move(parts)), what_(std::move(what)) {
  std::uint64_t total = 0;
  starts_.reserve(parts_.size() + 1);
  for (const auto& p : parts_) {
    starts_.push_back(total);
    if (__builtin_add_overflow(total, p.len, &total)) throw FormatError(what_, "concatenated size overflows 64 bits");
  }
  starts_.push_back(total);
}

void ConcatSource::read(std::uint64_t offset, std::span<std::byte> out) const {
  if (out.empty()) return;
  const std::uint64_t total = size();
  if (offset > total || out.size() > total - offset)
    throw FormatError(what_, "read past the end of a chunked tensor", offset);
  // First part whose end lies beyond offset.
  auto it = std::upper_bound(starts_.begin(), starts_.end() - 1, offset);
  std::size_t i = static_cast<std::size_t>(it - starts_.begin()) - 1;
  std::size_t done = 0;
  while (done < out.size()) {
    const std::uint64_t in_part = offset + done - starts_[i];
    const std::uint64_t n = std::min<std::uint64_t>(parts_[i].len - in_part, out.size() - done);
    if (n > 0) parts_[i].source->read(in_part, out.subspan(done, static_cast<std::size_t>(n)));
    done += static_cast<std::size_t>(n);
    ++i;
  }
}

const std::byte* ConcatSource::contiguous() const {
  return parts_.size() == 1 ? parts_[0].source->contiguous() : nullptr;
}

std::string ConcatSource::describe() const {
  return what_ + " (" + std::to_string(parts_.size()) + " chunks)";
}

}  // namespace ckb

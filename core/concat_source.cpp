// Implementation of core/concat_source.h.
#include "core/concat_source.h"

#include <algorithm>

#include "core/errors.h"

namespace ckb {

ConcatSource::ConcatSource(std::vector<Part> parts, std::uint64_t outer, std::string what)
    : parts_(std::move(parts)), outer_(outer), what_(std::move(what)) {
  std::uint64_t row = 0;
  starts_.reserve(parts_.size() + 1);
  for (const auto& p : parts_) {
    starts_.push_back(row);
    if (__builtin_add_overflow(row, p.row, &row)) throw FormatError(what_, "concatenated size overflows 64 bits");
  }
  starts_.push_back(row);
  if (__builtin_mul_overflow(row, outer_, &size_)) throw FormatError(what_, "concatenated size overflows 64 bits");
}

void ConcatSource::read(std::uint64_t offset, std::span<std::byte> out) const {
  if (out.empty()) return;
  if (offset > size_ || out.size() > size_ - offset)
    throw FormatError(what_, "read past the end of a concatenated tensor", offset);
  const std::uint64_t row = starts_.back();
  std::uint64_t pos = offset;
  std::size_t done = 0;
  while (done < out.size()) {
    const std::uint64_t o = pos / row, in_row = pos % row;
    // The part holding byte in_row of a row: the last one starting at or before it.
    std::size_t k = static_cast<std::size_t>(std::upper_bound(starts_.begin(), starts_.end() - 1, in_row) - starts_.begin()) - 1;
    // Within one row, consecutive parts follow; parts of zero bytes are stepped over.
    while (done < out.size() && k < parts_.size()) {
      const std::uint64_t within = pos - o * row - starts_[k];
      const std::uint64_t n = std::min<std::uint64_t>(parts_[k].row - within, out.size() - done);
      if (n > 0) parts_[k].source->read(o * parts_[k].row + within, out.subspan(done, static_cast<std::size_t>(n)));
      done += static_cast<std::size_t>(n);
      pos += n;
      ++k;
    }
  }
}

const std::byte* ConcatSource::contiguous() const {
  return parts_.size() == 1 ? parts_[0].source->contiguous() : nullptr;
}

std::uint64_t ConcatSource::resident_bytes() const {
  std::uint64_t n = 0;
  for (const auto& p : parts_) n += p.source->resident_bytes();
  return n;
}

void ConcatSource::release() const {
  for (const auto& p : parts_) p.source->release();
}

}  // namespace ckb

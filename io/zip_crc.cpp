// Implementation of io/zip_crc.h: range CRC-32s (codec/crc32.h) joined with crc32_combine.
#include "io/zip_crc.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "codec/crc32.h"
#include "core/errors.h"

namespace ckb {

std::string crc_mismatch_message(const std::string& archive, const std::string& member, std::uint32_t stored,
                                 std::uint32_t computed) {
  char hex[64];
  std::snprintf(hex, sizeof hex, "stored 0x%08x, computed 0x%08x", stored, computed);
  return "CRC-32 mismatch in member '" + member + "' of " + archive + ": " + hex;
}

ZipCrcVerifier::ZipCrcVerifier(MappedFilePtr file, std::string member, std::uint64_t data_offset,
                               std::uint64_t size, std::uint32_t expected)
    : file_(std::move(file)), member_(std::move(member)), data_offset_(data_offset), size_(size), expected_(expected) {
  if (size_ == 0) conclude_locked(0);
}

void ZipCrcVerifier::throw_mismatch() const {
  throw FormatError(file_->path(), crc_mismatch_message(file_->path(), member_, expected_, computed_), data_offset_);
}

void ZipCrcVerifier::conclude_locked(std::uint32_t computed) const {
  computed_ = computed;
  runs_.clear();
  state_.store(computed == expected_ ? kOk : kBad, std::memory_order_release);
}

void ZipCrcVerifier::insert_locked(std::uint64_t off, std::span<const std::byte> data, std::uint32_t crc) const {
  const std::uint64_t end = off + data.size();
  // The first run that could overlap [off, end).
  auto j = runs_.upper_bound(off);
  if (j != runs_.begin() && std::prev(j)->second.end > off) j = std::prev(j);
  if (j == runs_.end() || j->first >= end) {
    runs_.emplace(off, Run{end, crc});
  } else {
    // A re-read: checksum only the parts no earlier read covered.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;
    std::uint64_t cur = off;
    for (; j != runs_.end() && j->first < end; ++j) {
      if (j->first > cur) gaps.emplace_back(cur, j->first);
      cur = std::max(cur, j->second.end);
    }
    if (cur < end) gaps.emplace_back(cur, end);
    for (auto [a, b] : gaps)
      runs_.emplace(a, Run{b, crc32_update(data.subspan(static_cast<std::size_t>(a - off), static_cast<std::size_t>(b - a)))});
  }
  for (auto it = runs_.begin(); it != runs_.end();) {
    auto next = std::next(it);
    if (next != runs_.end() && next->first == it->second.end) {
      it->second.crc = crc32_combine(it->second.crc, next->second.crc, next->second.end - next->first);
      it->second.end = next->second.end;
      runs_.erase(next);
    } else {
      it = next;
    }
  }
}

void ZipCrcVerifier::cover(std::uint64_t off, std::span<const std::byte> data) const {
  int s = state_.load(std::memory_order_acquire);
  if (s == kOk) return;
  if (s == kBad) throw_mismatch();
  if (data.empty()) return;
  if (off > size_ || data.size() > size_ - off)
    throw FormatError(file_->path(), "read outside zip member '" + member_ + "'", data_offset_ + off);
  const std::uint32_t crc = crc32_update(data);
  std::lock_guard lock(mu_);
  s = state_.load(std::memory_order_relaxed);
  if (s == kOk) return;
  if (s == kBad) throw_mismatch();
  insert_locked(off, data, crc);
  if (runs_.size() == 1 && runs_.begin()->first == 0 && runs_.begin()->second.end == size_)
    conclude_locked(runs_.begin()->second.crc);
  else if (runs_.size() > kMaxRuns)
    conclude_locked(crc32_update(file_->range(data_offset_, size_, "zip member")));
  if (state_.load(std::memory_order_relaxed) == kBad) throw_mismatch();
}

void ZipCrcVerifier::cover_mapped(std::uint64_t off, std::uint64_t len) const {
  const int s = state_.load(std::memory_order_acquire);
  if (s == kOk) return;
  if (s == kBad) throw_mismatch();
  if (off > size_ || len > size_ - off)
    throw FormatError(file_->path(), "range outside zip member '" + member_ + "'", data_offset_ + off);
  cover(off, file_->range(data_offset_ + off, len, "zip member"));
}

}  // namespace ckb

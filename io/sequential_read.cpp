// Windowed background reading of a file range, for io/sequential_read.h.
#include "io/sequential_read.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "core/cancel.h"

namespace ckb {

SequentialRead::SequentialRead(MappedFilePtr file, std::uint64_t offset, std::uint64_t length, std::string what,
                               std::size_t piece, std::size_t ahead)
    : file_(std::move(file)), offset_(offset), length_(length), what_(std::move(what)),
      piece_(std::max<std::size_t>(piece, 1)), ahead_(ahead), pieces_((length + piece_ - 1) / piece_) {
  file_->check_range(offset_, length_, what_.c_str());
}

SequentialRead::~SequentialRead() {
  for (auto& p : window_)
    if (!p.ready && p.fetched.valid()) p.fetched.wait();
}

void SequentialRead::start(std::uint64_t index) {
  Piece p;
  p.index = index;
  const std::uint64_t begin = index * piece_;
  p.bytes = Bytes(static_cast<std::size_t>(std::min<std::uint64_t>(piece_, length_ - begin)));
  p.fetched = std::async(std::launch::async, with_current_cancel([file = file_, at = offset_ + begin, dst = p.bytes.span(), this] {
    file->read(at, dst, what_.c_str());
  }));
  window_.push_back(std::move(p));
}

SequentialRead::Piece& SequentialRead::load(std::uint64_t index) {
  if (!window_.empty() && index < window_.front().index)
    throw std::logic_error("SequentialRead: position moved back in " + what_);
  while (!window_.empty() && window_.front().index < index) {
    if (!window_.front().ready) window_.front().fetched.wait();
    window_.pop_front();
  }
  if (window_.empty()) start(index);
  while (window_.size() < ahead_ + 1 && window_.back().index + 1 < pieces_) start(window_.back().index + 1);
  Piece& p = window_.front();
  if (!p.ready) {
    p.ready = true;
    try {
      p.fetched.get();
    } catch (...) {
      // Forget the window (waiting for the fetches still running): a later call starts over.
      for (auto& q : window_)
        if (!q.ready && q.fetched.valid()) q.fetched.wait();
      window_.clear();
      throw;
    }
  }
  return p;
}

std::span<const std::byte> SequentialRead::from(std::uint64_t at) {
  if (at >= length_) throw std::logic_error("SequentialRead: position past the end of " + what_);
  Piece& p = load(at / piece_);
  const std::size_t skip = static_cast<std::size_t>(at - p.index * piece_);
  return std::span<const std::byte>(p.bytes.span()).subspan(skip);
}

void SequentialRead::read(std::uint64_t at, std::span<std::byte> dst) {
  std::size_t done = 0;
  while (done < dst.size()) {
    auto piece = from(at + done);
    const std::size_t n = std::min(piece.size(), dst.size() - done);
    std::memcpy(dst.data() + done, piece.data(), n);
    done += n;
  }
}

}  // namespace ckb

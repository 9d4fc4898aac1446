// Deterministic byte-level mutations of checkpoint files for the mutation test, and the map
// of which bytes of a file a checksum guards.
//
// Mutations: 1-8 flipped bits, a byte overwritten with 0x00/0xff/random, a truncation, an
// insertion or deletion of 1-16 bytes, a duplicated range, and "smart" ones aimed at the
// places parsers trust: a length/offset field near a known signature (zip local/central/end
// records, OCDBT frame headers, the npy magic), the first bytes of the file (safetensors'
// header length, magics), and ASCII digits of a JSON/npy header (shapes, offsets). Positions
// are drawn half from these hot regions and half uniformly.
//
// Guarded bytes (computed here independently of the readers, from the bytes alone):
//  - a zip archive is guarded whole (CRC-32 of every member; names and sizes must agree);
//  - an OCDBT frame (magic 0x0CDB...., u64le length, ..., crc32c u32le over the rest) found by
//    scanning for a magic whose stored length ends in a matching crc32c;
//  - a zarr v3 `sharding_indexed` index (n x (u64 offset, u64 nbytes) + crc32c) found by
//    scanning for plausible entries followed by their crc32c.
// A mutation is "guarded" when every original byte it changes or moves lies in such a
// region; a guarded mutation must never read back successfully with different contents.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cctype>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace ckb::test {

// CRC-32C (Castagnoli, reflected 0x82F63B78), bitwise: a reference independent of io/ocdbt.
inline std::uint32_t crc32c_update(std::uint32_t reg, const unsigned char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    reg ^= p[i];
    for (int k = 0; k < 8; ++k) reg = (reg >> 1) ^ (0x82F63B78u & (0u - (reg & 1u)));
  }
  return reg;
}

struct Interval {
  std::uint64_t begin, end;  // [begin, end)
};

inline std::uint64_t load_le(const std::string& s, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

inline bool is_zip(const std::string& b) { return b.size() >= 4 && b.compare(0, 4, "PK\x03\x04") == 0; }

// OCDBT frames: manifest 0x0CDB3A2A, version node 0x0CDB1234, b+tree node 0x0CDB20DE (big-endian magic).
inline std::vector<Interval> ocdbt_frames(const std::string& b) {
  std::vector<Interval> out;
  const auto* u = reinterpret_cast<const unsigned char*>(b.data());
  for (std::size_t i = 0; i + 16 <= b.size(); ++i) {
    if (u[i] != 0x0C || u[i + 1] != 0xDB) continue;
    const unsigned m = (u[i + 2] << 8) | u[i + 3];
    if (m != 0x3A2A && m != 0x1234 && m != 0x20DE) continue;
    const std::uint64_t len = load_le(b, i + 4, 8);
    if (len < 16 || len > b.size() - i) continue;
    const std::uint32_t crc = ~crc32c_update(~0u, u + i, len - 4);
    if (crc == static_cast<std::uint32_t>(load_le(b, i + len - 4, 4))) out.push_back({i, i + len});
  }
  return out;
}

// zarr v3 shard indexes: entries (offset, nbytes) that are either both all-ones (an absent
// inner chunk) or point before the index, followed by the crc32c of the entries.
inline std::vector<Interval> shard_indexes(const std::string& b, std::size_t max_entries = 64) {
  std::vector<Interval> out;
  const auto* u = reinterpret_cast<const unsigned char*>(b.data());
  auto plausible = [&](std::size_t p, std::size_t at) {
    const std::uint64_t off = load_le(b, at, 8), nb = load_le(b, at + 8, 8);
    if (off == ~0ull && nb == ~0ull) return true;
    return off < (1ull << 40) && nb < (1ull << 40) && nb > 0 && off + nb <= p;
  };
  for (std::size_t p = 0; p + 20 <= b.size(); ++p) {
    if (!plausible(p, p)) continue;
    std::uint32_t reg = ~0u;
    for (std::size_t n = 1; n <= max_entries && p + 16 * n + 4 <= b.size(); ++n) {
      const std::size_t e = p + 16 * (n - 1);
      if (n > 1 && !plausible(p, e)) break;
      reg = crc32c_update(reg, u + e, 16);
      if (~reg == static_cast<std::uint32_t>(load_le(b, e + 16, 4))) {
        out.push_back({p, e + 20});
        break;
      }
    }
  }
  return out;
}

// Bytes a checksum guards.
inline std::vector<Interval> guarded_regions(const std::string& b) {
  if (is_zip(b)) return {{0, b.size()}};
  auto out = ocdbt_frames(b);
  auto s = shard_indexes(b);
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

// Regions where format structure (lengths, offsets, names, shapes) tends to live.
inline std::vector<Interval> hot_regions(const std::string& b) {
  std::vector<Interval> hot;
  const std::uint64_t n = b.size();
  auto add = [&](std::uint64_t a, std::uint64_t len) {
    if (a < n) hot.push_back({a, std::min(n, a + len)});
  };
  add(0, 64);
  if (n > 64) add(n - 64, 64);
  if (n >= 16 && load_le(b, 0, 8) + 8 <= n && b[8] == '{') add(8, load_le(b, 0, 8));  // safetensors header
  static const std::array<std::pair<std::string, std::uint64_t>, 6> sigs = {{{"PK\x03\x04", 30 + 32},
                                                                              {"PK\x01\x02", 46 + 32},
                                                                              {"PK\x05\x06", 22},
                                                                              {"PK\x06\x06", 56},
                                                                              {"PK\x06\x07", 20},
                                                                              {"\x93NUMPY", 128}}};
  for (const auto& [sig, len] : sigs)
    for (auto p = b.find(sig); p != std::string::npos; p = b.find(sig, p + 1)) add(p, len);
  for (const auto& f : ocdbt_frames(b)) add(f.begin, 48);
  for (const auto& s : shard_indexes(b)) add(s.begin, s.end - s.begin);
  // Identifiers (keys, dtype and class names) in binary files: what sits next to them in
  // msgpack and pickle streams are the type tags and lengths.
  auto ident = [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '.' || c == '/'; };
  for (std::size_t i = 0, run = 0; i <= b.size(); ++i) {
    if (i < b.size() && ident(static_cast<unsigned char>(b[i]))) {
      ++run;
      continue;
    }
    if (run >= 6) add(i - run >= 16 ? i - run - 16 : 0, run + 32);
    run = 0;
  }
  // Text files (JSON, npy headers) are hot as a whole.
  std::size_t printable = 0;
  for (unsigned char c : b) printable += (c >= 32 && c < 127) || c == '\n';
  if (n && printable * 10 >= n * 9) add(0, n);
  return hot;
}

// What the mutator needs to know about a file; computed once per file.
struct FileMap {
  explicit FileMap(const std::string& b) : hot(hot_regions(b)), guard(guarded_regions(b)) {}
  std::vector<Interval> hot, guard;
};

struct Mutation {
  std::string bytes;        // the mutated file
  std::string what;         // human-readable description
  bool guarded = false;     // every changed/moved original byte lies in a guarded region
};

class Mutator {
 public:
  Mutator(const std::string& original, const FileMap& map, std::uint64_t seed)
      : orig_(original), rng_(seed), hot_(map.hot), guard_(map.guard) {}

  Mutation next() {
    Mutation m;
    m.bytes = orig_;
    const std::uint64_t n = orig_.size();
    std::string& b = m.bytes;
    if (n == 0) {
      b = random_bytes(1 + below(8));
      m.what = "insert into empty";
      return m;
    }
    bool shifts = false;
    std::vector<std::uint64_t> changed;  // original positions changed in place
    std::uint64_t from = n;              // first original position whose byte moves or vanishes
    const unsigned kind = below(16);
    char buf[160];
    if (kind < 4) {  // flip 1-8 bits within 16 bytes
      const std::uint64_t p = position();
      const unsigned k = 1 + below(8);
      std::string bits;
      for (unsigned i = 0; i < k; ++i) {
        const std::uint64_t q = std::min(n - 1, p + below(16));
        const unsigned bit = below(8);
        b[q] = static_cast<char>(b[q] ^ (1 << bit));
        changed.push_back(q);
        bits += " " + hex(q) + "." + std::to_string(bit);
      }
      m.what = "flip bits" + bits;
    } else if (kind < 6) {  // overwrite one byte
      const std::uint64_t p = position();
      const unsigned how = below(3);
      const unsigned char v = how == 0 ? 0x00 : how == 1 ? 0xff : static_cast<unsigned char>(rng_());
      b[p] = static_cast<char>(v);
      changed.push_back(p);
      std::snprintf(buf, sizeof buf, "overwrite %s with 0x%02x", hex(p).c_str(), v);
      m.what = buf;
    } else if (kind < 8) {  // truncate
      const std::uint64_t p = below(3) == 0 ? below(n) : position();
      b.resize(p);
      from = p;
      shifts = true;
      m.what = "truncate at " + hex(p);
    } else if (kind < 9) {  // insert random bytes
      const std::uint64_t p = position(true);
      const unsigned len = 1 + below(16);
      b.insert(p, random_bytes(len));
      from = p, shifts = true;
      m.what = "insert " + std::to_string(len) + " bytes at " + hex(p);
    } else if (kind < 10) {  // delete bytes
      const std::uint64_t p = position();
      const std::uint64_t len = std::min<std::uint64_t>(n - p, 1 + below(16));
      b.erase(p, len);
      from = p, shifts = true;
      m.what = "delete " + std::to_string(len) + " bytes at " + hex(p);
    } else if (kind < 11) {  // duplicate a range
      const std::uint64_t a = position();
      const std::uint64_t len = std::min<std::uint64_t>(n - a, 1 + below(64));
      const std::uint64_t at = below(2) ? a + len : position(true);
      b.insert(at, orig_.substr(a, len));
      from = at, shifts = true;
      m.what = "duplicate " + std::to_string(len) + " bytes at " + hex(a) + " to " + hex(at);
    } else if (kind < 14) {  // an integer field near a structure
      const unsigned width = 1u << below(4);
      const std::uint64_t p = std::min(hot_position(), n > width ? n - width : 0);
      const unsigned w = static_cast<unsigned>(std::min<std::uint64_t>(width, n - p));
      const std::uint64_t old = load_le(orig_, p, static_cast<int>(w));
      const std::uint64_t vals[] = {0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
                                    0x7fffffffffffffffull, 0x8000000000000000ull, ~0ull, n, n - 1, n + 1,
                                    old + 1, old - 1, old * 2, old + 0x10000, old ^ 0x80};
      const std::uint64_t v = vals[below(sizeof vals / sizeof vals[0])];
      const bool be = below(4) == 0;
      for (unsigned i = 0; i < w; ++i) {
        const unsigned sh = 8 * (be ? w - 1 - i : i);
        b[p + i] = static_cast<char>(sh < 64 ? (v >> sh) & 0xff : 0);
        changed.push_back(p + i);
      }
      std::snprintf(buf, sizeof buf, "field %u bytes %s at %s = 0x%llx", w, be ? "BE" : "LE", hex(p).c_str(),
                    static_cast<unsigned long long>(v));
      m.what = buf;
    } else {  // an ASCII digit (shapes, offsets, lengths in text headers)
      std::vector<std::uint64_t> digits;
      for (int tries = 0; tries < 64 && digits.empty(); ++tries) {
        const std::uint64_t p = hot_position();
        for (std::uint64_t q = p; q < n && q < p + 64; ++q)
          if (orig_[q] >= '0' && orig_[q] <= '9') digits.push_back(q);
      }
      if (digits.empty()) digits.push_back(position());
      const std::uint64_t p = digits[below(digits.size())];
      static const char* repl[] = {"0", "1", "9", "-1", "99999999999", "18446744073709551616", "1e3", "", "00"};
      const std::string r = below(2) ? std::string(1, static_cast<char>('0' + below(10))) : repl[below(9)];
      b.replace(p, 1, r);
      if (r.size() == 1) changed.push_back(p);
      else from = p, shifts = true;
      m.what = "digit at " + hex(p) + " -> \"" + r + "\"";
    }
    if (shifts)
      for (std::uint64_t q = from; q < n; ++q) changed.push_back(q);
    m.guarded = !changed.empty() || shifts;
    for (auto q : changed)
      if (!in_guard(q)) {
        m.guarded = false;
        break;
      }
    if (shifts && from >= n) m.guarded = m.guarded && in_guard(n ? n - 1 : 0);  // appended bytes
    return m;
  }

 private:
  unsigned below(std::uint64_t k) { return k ? static_cast<unsigned>(rng_() % k) : 0; }
  static std::string hex(std::uint64_t v) {
    char b[32];
    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
    return b;
  }
  std::string random_bytes(unsigned len) {
    std::string s(len, '\0');
    for (auto& c : s) c = static_cast<char>(rng_());
    return s;
  }
  std::uint64_t hot_position() {
    if (hot_.empty()) return below(orig_.size());
    const auto& r = hot_[below(hot_.size())];
    return r.begin + below(r.end - r.begin);
  }
  // Half from hot regions, half uniform; `end_ok`: the position just past the end is allowed.
  std::uint64_t position(bool end_ok = false) {
    const std::uint64_t n = orig_.size();
    if (end_ok && below(32) == 0) return n;
    return below(2) ? hot_position() : below(n);
  }
  bool in_guard(std::uint64_t q) const {
    for (const auto& g : guard_)
      if (q >= g.begin && q < g.end) return true;
    return false;
  }

  const std::string& orig_;
  std::mt19937_64 rng_;
  const std::vector<Interval>& hot_;
  const std::vector<Interval>& guard_;
};

}  // namespace ckb::test

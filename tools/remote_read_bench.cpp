// Transport benchmark for io/remote: reads one large object through an ObjectStore with P
// parallel ranged GETs of 8 MiB, against reading the same bytes from a local file with P
// threads (pread), and prints throughput, requests, retries and peak RSS per row. Both passes
// checksum what they read; the checksums must agree.
//
// Usage: ckb_remote_read_bench <local-file> <remote-url> [P ...]   (default P: 1 4 16)
// The remote object is uploaded from the local file first (multipart) when it is missing or
// of another size. Credentials / endpoint come from the environment (object_store.h), e.g.
// for the test server: node --openssl-legacy-provider tools/test-servers/s3-server.js DIR bench
//   AWS_ENDPOINT_URL=http://127.0.0.1:PORT AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/errors.h"
#include "io/remote/object_store.h"

namespace {

using namespace ckb;
constexpr std::uint64_t kChunk = 8ull << 20;

std::uint64_t checksum(const std::byte* p, std::size_t n, std::uint64_t offset) {
  std::uint64_t h = 0;
  for (std::size_t i = 0; i + 8 <= n; i += 4096) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h += (w ^ (offset + i)) * 0x9E3779B97F4A7C15ull;
  }
  return h;
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

// Reads [0, size) in kChunk pieces with `threads` workers calling read_at(offset, dst).
template <class ReadAt>
std::pair<double, std::uint64_t> timed_pass(std::uint64_t size, int threads, ReadAt read_at) {
  std::atomic<std::uint64_t> next{0}, sum{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::vector<std::byte> buf(kChunk);
      for (;;) {
        const std::uint64_t off = next.fetch_add(kChunk);
        if (off >= size) break;
        const std::size_t n = static_cast<std::size_t>(std::min(kChunk, size - off));
        read_at(off, std::span<std::byte>(buf.data(), n));
        sum += checksum(buf.data(), n, off);
      }
    });
  }
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {s, sum.load()};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <local-file> <remote-url> [parallel ...]\n", argv[0]);
    return 1;
  }
  const std::string local = argv[1], url = argv[2];
  std::vector<int> parallel;
  for (int i = 3; i < argc; ++i) parallel.push_back(std::atoi(argv[i]));
  if (parallel.empty()) parallel = {1, 4, 16};
  try {
    const int fd = ::open(local.c_str(), O_RDONLY);
    if (fd < 0) throw_errno(local, "cannot open");
    const std::uint64_t size = static_cast<std::uint64_t>(::lseek(fd, 0, SEEK_END));
    auto pread_at = [&](std::uint64_t off, std::span<std::byte> dst) {
      std::size_t done = 0;
      while (done < dst.size()) {
        const ssize_t n = ::pread(fd, dst.data() + done, dst.size() - done, static_cast<off_t>(off + done));
        if (n <= 0) throw_errno(local, "read failed");
        done += static_cast<std::size_t>(n);
      }
    };
    {
      const auto loc = remote::open_remote(url);
      if (loc.store->stat(loc.key) != size) {
        std::printf("uploading %s (%.1f MiB) to %s ...\n", local.c_str(), static_cast<double>(size) / (1 << 20), url.c_str());
        auto upload = loc.store->begin_upload(loc.key);
        constexpr std::uint64_t kPart = 64ull << 20;
        std::vector<std::byte> part(kPart);
        for (std::uint64_t off = 0, n = 1; off < size; off += kPart, ++n) {
          const std::size_t len = static_cast<std::size_t>(std::min(kPart, size - off));
          pread_at(off, std::span<std::byte>(part.data(), len));
          upload->upload_part(static_cast<int>(n), std::span<const std::byte>(part.data(), len));
        }
        upload->complete();
      }
    }
    std::printf("%-8s %4s %10s %10s %9s %8s %10s\n", "source", "P", "seconds", "MiB/s", "requests", "retries", "peakRSS");
    std::uint64_t disk_sum = 0;
    for (int p : parallel) {
      const auto [s, sum] = timed_pass(size, p, pread_at);
      disk_sum = sum;
      std::printf("%-8s %4d %10.2f %10.1f %9s %8s %9.0fM\n", "disk", p, s, static_cast<double>(size) / (1 << 20) / s, "-",
                  "-", peak_rss_mib());
    }
    for (int p : parallel) {
      remote::RemoteOptions o = remote::default_options();
      o.parallel_requests = p;
      remote::set_default_options(o);
      const auto loc = remote::open_remote(url);
      remote::reset_transfer_stats();
      const auto [s, sum] = timed_pass(size, p, [&](std::uint64_t off, std::span<std::byte> dst) {
        loc.store->read(loc.key, off, dst);
      });
      const auto st = remote::transfer_stats();
      std::printf("%-8s %4d %10.2f %10.1f %9llu %8llu %9.0fM%s\n", "remote", p, s,
                  static_cast<double>(size) / (1 << 20) / s, static_cast<unsigned long long>(st.requests),
                  static_cast<unsigned long long>(st.retries), peak_rss_mib(), sum == disk_sum ? "" : "  CHECKSUM MISMATCH");
      if (sum != disk_sum) return 3;
    }
    ::close(fd);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  }
  return 0;
}

// Retries against real misbehaving servers: tests/remote_flaky_proxy.py in front of the local
// S3 server and nginx answers 500 / 503 / 429, drops connections and cuts bodies short at
// random. The stores must still return exact bytes (ranged reads resume where the cut
// happened), and, when every request fails, give up with a message naming the URL, the
// request and the status.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <thread>

#include "core/cancel.h"
#include "core/errors.h"
#include "core/hash.h"
#include "io/remote/object_store.h"
#include "remote_servers.h"
#include "test_util.h"

namespace ckb::remote {
namespace {

// 40 reads over the object, from 4 threads, each compared byte for byte.
void check_ranged_reads(const ObjectStore& store, const std::string& key, const std::string& data) {
  std::vector<std::thread> threads;
  std::vector<std::string> problems(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        const std::size_t offset = (static_cast<std::size_t>(t * 10 + i) * 7919 * 131) % (data.size() - 1);
        const std::size_t n = std::min<std::size_t>(data.size() - offset, 20000 + static_cast<std::size_t>(i) * 3001);
        if (test::read_range(store, key, offset, n) != data.substr(offset, n))
          problems[static_cast<std::size_t>(t)] += "bytes differ at " + std::to_string(offset) + "+" + std::to_string(n) + "; ";
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& p : problems) EXPECT_EQ(p, "");
}

TEST(RemoteFlaky, S3ThroughAFlakyProxyStillMovesExactBytes) {
  test::s3_credentials_env();
  test::FlakyProxy proxy(test::s3().port, 0.3, 7);
  RemoteOptions o = test::s3_options(proxy.base());
  o.retries = 10;
  o.list_page_size = 3;
  const auto store = open_store("s3://ckb-test", o);
  reset_transfer_stats();
  const std::string data = test::pattern(400000, 1);
  store->put("flaky/whole.bin", test::bytes_of_string(data));
  for (int i = 0; i < 8; ++i) store->put("flaky/small-" + std::to_string(i), test::bytes_of_string(test::pattern(100, i)));
  EXPECT_EQ(store->stat("flaky/whole.bin"), std::optional<std::uint64_t>(400000));
  EXPECT_EQ(test::sha256_of(store->get("flaky/whole.bin").value()), test::sha256_of(data));
  check_ranged_reads(*store, "flaky/whole.bin", data);
  EXPECT_EQ(store->list("flaky/").size(), 9u);
  // a multipart upload through a proxy that fails requests before they reach the server (a
  // completion whose answer is cut is retried, and s3rver then answers 500 where S3 answers
  // 404 NoSuchUpload, which complete() checks against the object)
  test::FlakyProxy early(test::s3().port, 0.3, 8, "500,503,429,drop");
  RemoteOptions early_options = test::s3_options(early.base());
  early_options.retries = 10;
  const auto early_store = open_store("s3://ckb-test", early_options);
  const std::string p1 = test::pattern(5 << 20, 21), p2 = test::pattern(300000, 22);
  auto upload = early_store->begin_upload("flaky/multipart.bin");
  upload->upload_part(2, test::bytes_of_string(p2));
  upload->upload_part(1, test::bytes_of_string(p1));
  upload->complete();
  EXPECT_EQ(test::sha256_of(store->get("flaky/multipart.bin").value()), test::sha256_of(p1 + p2));
  EXPECT_GT(transfer_stats().retries, 0u) << "the proxy failed nothing: the test proves nothing";
}

TEST(RemoteFlaky, HttpsOriginThroughAFlakyProxyStillReadsExactBytes) {
  const std::string data = test::pattern(600000, 2);
  test::write_file(test::web().root + "/flaky.bin", data);
  test::FlakyProxy proxy(test::web().port, 0.35, 11);
  RemoteOptions o;
  o.retries = 10;
  o.retry_base_s = 0.01;
  const auto store = open_store(proxy.base(), o);
  reset_transfer_stats();
  EXPECT_EQ(store->stat("flaky.bin"), std::optional<std::uint64_t>(600000));
  check_ranged_reads(*store, "flaky.bin", data);
  EXPECT_EQ(test::sha256_of(store->get("flaky.bin").value()), test::sha256_of(data));
  EXPECT_GT(transfer_stats().retries, 0u);
}

// Bodies cut at half: each retry asks only for the bytes still missing (nginx's log shows the
// ranges asked for), and the result is exact.
TEST(RemoteFlaky, CutRangedReadsResumeWhereTheyStopped) {
  const std::string data = test::pattern(1 << 20, 5);
  test::write_file(test::web().root + "/resume.bin", data);
  test::FlakyProxy proxy(test::web().port, 0.5, 3, "cut");
  RemoteOptions o;
  o.retries = 30;
  o.retry_base_s = 0.001;
  const auto store = open_store(proxy.base(), o);
  reset_transfer_stats();
  EXPECT_EQ(test::read_range(*store, "resume.bin", 1000, 1000000), data.substr(1000, 1000000));
  const auto stats = transfer_stats();
  ASSERT_GT(stats.retries, 0u);
  // every retry asked for the rest only: the ranges are contiguous from the first one's start
  std::vector<std::uint64_t> starts;
  for (const std::string& line : test::access_log_lines("GET /resume.bin 206 ", stats.requests)) {
    const std::size_t r = line.find("bytes=");
    starts.push_back(std::stoull(line.substr(r + 6)));
    EXPECT_EQ(line.substr(line.find('-', r)), "-1000999") << "every attempt ends at the same last byte";
  }
  ASSERT_EQ(starts.size(), stats.requests);
  EXPECT_EQ(starts.front(), 1000u);
  for (std::size_t i = 1; i < starts.size(); ++i) EXPECT_GT(starts[i], starts[i - 1]);
  // the cuts halve what each answer carries: far fewer bytes than re-reading from the start
  EXPECT_LT(stats.bytes_read, 2u * 1000000u);
}

// Runs `request` as a run whose `token` is cancelled 300 ms in; expects Cancelled and returns
// the seconds from the start until it came.
double seconds_until_cancelled(CancelToken& token, const std::function<void()>& request) {
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    token.cancel(SIGINT);
  });
  const auto t0 = std::chrono::steady_clock::now();
  {
    const CancelScope run(&token);
    EXPECT_THROW(request(), Cancelled);
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  later.join();
  return waited;
}

// A run's cancellation (core/cancel.h: the token of the thread's run) stops a request stuck on a
// server that stopped sending, at libcurl's next progress check (about a second), instead of
// after the per-request timeout; nothing is retried.
TEST(RemoteFlaky, CancelledRunStopsWaitingForAStalledAnswer) {
  const std::string data = test::pattern(200000, 8);
  test::write_file(test::web().root + "/stall-cancel.bin", data);
  test::FlakyProxy proxy(test::web().port, 1.0, 1, "stall");
  RemoteOptions o;
  o.retries = 3;
  o.timeout_s = 50;
  const auto store = open_store(proxy.base(), o);
  reset_transfer_stats();
  CancelToken token;
  const double waited = seconds_until_cancelled(token, [&] { test::read_range(*store, "stall-cancel.bin", 0, 200000); });
  EXPECT_LT(waited, 10.0) << "the request waited for its 50 s timeout";
  EXPECT_EQ(transfer_stats().requests, 1u);
  EXPECT_EQ(transfer_stats().retries, 0u);
  // another run, under its own token, is not affected while this one's stays cancelled
  CancelToken other_run;
  std::string got;
  std::thread other([&] {
    const CancelScope run(&other_run);
    got = test::read_range(*open_store(test::web().http_base, o), "stall-cancel.bin", 5, 10);
  });
  other.join();
  EXPECT_TRUE(token.cancelled());
  EXPECT_EQ(got, data.substr(5, 10));
}

// ... and one waiting in a retry's backoff stops within a 50 ms sleep slice; a run already
// cancelled makes no request at all.
TEST(RemoteFlaky, CancelledRunStopsWaitingInABackoff) {
  test::write_file(test::web().root + "/backoff-cancel.bin", test::pattern(1000, 9));
  test::FlakyProxy proxy(test::web().port, 1.0, 1, "503");
  RemoteOptions o;
  o.retries = 5;
  o.retry_base_s = 40;  // 10-20 s before the first retry (the cap)
  const auto store = open_store(proxy.base(), o);
  reset_transfer_stats();
  CancelToken token;
  const double waited = seconds_until_cancelled(token, [&] { test::read_range(*store, "backoff-cancel.bin", 0, 1000); });
  EXPECT_LT(waited, 5.0) << "the backoff was slept through";
  EXPECT_EQ(transfer_stats().requests, 1u);
  reset_transfer_stats();
  const CancelScope run(&token);
  EXPECT_THROW(store->stat("backoff-cancel.bin"), Cancelled);
  EXPECT_EQ(transfer_stats().requests, 0u);
}

// A server that stops sending mid-body: after RemoteOptions::timeout_s without progress the
// request is abandoned and retried for the rest. (Seed 4 stalls the first answer only.) libcurl
// checks progress about once a second when idle, so each stall costs a second or two.
TEST(RemoteFlaky, StalledAnswerTimesOutAndResumes) {
  const std::string data = test::pattern(200000, 6);
  test::write_file(test::web().root + "/stall.bin", data);
  test::FlakyProxy proxy(test::web().port, 0.5, 4, "stall");
  RemoteOptions o;
  o.retries = 3;
  o.retry_base_s = 0.01;
  o.timeout_s = 1;
  const auto store = open_store(proxy.base(), o);
  reset_transfer_stats();
  EXPECT_EQ(test::read_range(*store, "stall.bin", 10, 199990), data.substr(10));
  EXPECT_EQ(transfer_stats().requests, 2u);
  EXPECT_EQ(transfer_stats().retries, 1u);
  EXPECT_LT(transfer_stats().bytes_read, 2u * 199990u);  // the retry asked only for the rest
  // every answer stalls: the error says so
  test::FlakyProxy always(test::web().port, 1.0, 1, "stall");
  o.retries = 1;
  o.timeout_s = 0.5;
  const auto stalled = open_store(always.base(), o);
  try {
    test::read_range(*stalled, "stall.bin", 0, 1000);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), always.base() + "/stall.bin");
    EXPECT_EQ(e.detail(), "GET bytes=0-999: no progress for 0.5 s (gave up after 1 attempt)");
  }
}

// RemoteOptions::parallel_requests bounds the connections of a store however many threads
// read through it (the proxy holds every request 50 ms and counts them).
TEST(RemoteFlaky, ParallelRequestsBoundTheConnections) {
  const std::string data = test::pattern(1 << 20, 9);
  test::write_file(test::web().root + "/parallel.bin", data);
  for (const int parallel : {3, 16}) {
    test::FlakyProxy proxy(test::web().port, 1.0, 1, "delay");
    RemoteOptions o;
    o.parallel_requests = parallel;
    const auto store = open_store(proxy.base(), o);
    std::vector<std::thread> threads;
    std::vector<int> wrong(8, 0);
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 4; ++i) {
          const std::size_t offset = static_cast<std::size_t>(t * 4 + i) * 32768;
          if (test::read_range(*store, "parallel.bin", offset, 32768) != data.substr(offset, 32768)) ++wrong[static_cast<std::size_t>(t)];
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(wrong, std::vector<int>(8, 0));
    if (parallel == 3) EXPECT_EQ(proxy.max_in_flight(), 3);
    else EXPECT_GT(proxy.max_in_flight(), 3);  // 8 threads, up to 16 connections: more than 3 at once
  }
}

TEST(RemoteFlaky, EveryRequestFailingGivesUpNamingUrlRequestAndStatus) {
  test::s3_credentials_env();
  test::FlakyProxy proxy(test::s3().port, 1.0, 1, "503");
  RemoteOptions o = test::s3_options(proxy.base());
  o.retries = 3;
  const auto store = open_store("s3://ckb-test", o);
  reset_transfer_stats();
  std::string buf(8, '\0');
  try {
    store->read("any/key.bin", 0, std::as_writable_bytes(std::span<char>(buf.data(), buf.size())));
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), "s3://ckb-test/any/key.bin");
    EXPECT_EQ(e.detail(), "GET bytes=0-7: HTTP 503 SlowDown: injected by the flaky proxy (gave up after 3 attempts)");
    EXPECT_EQ(std::string(e.what()).find("ckb-test-secret"), std::string::npos);
  }
  EXPECT_EQ(transfer_stats().requests, 3u);
  EXPECT_EQ(transfer_stats().retries, 2u);
}

TEST(RemoteFlaky, NothingListeningGivesUpNamingUrlAndTheConnectionError) {
  RemoteOptions o;
  o.retries = 2;
  o.retry_base_s = 0.01;
  const auto store = open_store("http://127.0.0.1:1", o);
  try {
    store->stat("model.safetensors");
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), "http://127.0.0.1:1/model.safetensors");
    EXPECT_NE(e.detail().find("HEAD: Couldn't connect to server"), std::string::npos) << e.what();
    EXPECT_NE(e.detail().find("(gave up after 2 attempts)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ckb::remote

// Implementation of engine/shared_run.h (and engine/api.h's process_group).
#include "engine/shared_run.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>

#include "engine/cluster.h"
#include "engine/execute.h"
#include "engine/partition.h"
#include "engine/planned.h"
#include "formats/cooperative.h"
#include "io/file.h"
#include "io/output.h"

namespace ckb::engine {
namespace {

using json = nlohmann::ordered_json;

// ---- agreements ------------------------------------------------------------------------

// This rank stopped because another one failed (PeerWatch): not a failure of its own.
class StoppedForPeer : public std::runtime_error {
 public:
  StoppedForPeer() : std::runtime_error("stopped: another rank failed") {}
};
constexpr int kStoppedForPeer = -2;

json describe_failure(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const StoppedForPeer& s) {
    return {{"kind", kStoppedForPeer}, {"message", s.what()}};
  } catch (const Cancelled& c) {
    return {{"kind", static_cast<int>(ErrorKind::Cancelled)}, {"signal", c.signal()}, {"message", c.what()}};
  } catch (const Error& x) {
    return {{"kind", static_cast<int>(x.kind())}, {"path", x.path()}, {"message", x.detail()}};
  } catch (const std::exception& x) {
    return {{"kind", -1}, {"message", x.what()}};
  } catch (...) {
    return {{"kind", -1}, {"message", "unknown exception"}};
  }
}

// Set when an agreement reported a failure: every rank knows it and unwinds together.
bool g_agreed_failure = false;

// Runs `step` on this rank, then tells every rank how every rank did. When one failed, each
// rank throws: the failing rank its own exception, the others one of the same kind naming
// the (lowest) failing rank. Returns every rank's data, in rank order.
template <class Step>
std::vector<json> agree(Cluster& c, const CancelToken* cancel, Step&& step) {
  Cluster::Section section(c);
  std::exception_ptr failure;
  std::string payload;
  try {
    payload = json{{"ok", true}, {"data", step()}}.dump();
  } catch (...) {
    failure = std::current_exception();
    payload = json{{"ok", false}, {"failure", describe_failure(failure)}}.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  const auto all = c.allgather(payload, cancel);
  section.done();
  // The failure reported: the lowest rank's that failed by itself (not stopped for another).
  std::vector<json> out;
  int failed = -1, stopped = -1;
  for (std::size_t k = 0; k < all.size(); ++k) {
    out.push_back(json::parse(all[k]));
    if (out.back().at("ok").get<bool>()) continue;
    int& first = out.back()["failure"].value("kind", -1) == kStoppedForPeer ? stopped : failed;
    if (first < 0) first = static_cast<int>(k);
  }
  if (failed < 0) failed = stopped;
  if (failed >= 0) g_agreed_failure = true;
  if (failure && failed == c.rank()) std::rethrow_exception(failure);
  if (failed < 0) {
    for (auto& o : out) o = std::move(o["data"]);
    return out;
  }
  const json& f = out[static_cast<std::size_t>(failed)]["failure"];
  const int kind = f.value("kind", -1);
  const std::string who = "rank " + std::to_string(failed) + " of " + std::to_string(c.size()) + " failed: ";
  if (kind == static_cast<int>(ErrorKind::Cancelled)) throw Cancelled(f.value("signal", 0));
  if (kind < 0) throw IoError("mpi", who + "internal error: " + f.value("message", std::string()));
  throw Error(static_cast<ErrorKind>(kind), f.value("path", std::string()), who + f.value("message", std::string()));
}

// ---- test hooks ------------------------------------------------------------------------

int env_rank(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : -1;
}

// Forwards to the real writer; on the rank named by CKB_TEST_FAIL_RANK / CKB_TEST_KILL_RANK,
// fails (or SIGKILLs the process) right after the first piece it wrote.
class FaultInjector final : public Writer {
 public:
  FaultInjector(Writer& inner, int rank, std::string path) : inner_(inner), path_(std::move(path)) {
    fail_ = env_rank("CKB_TEST_FAIL_RANK") == rank;
    kill_ = env_rank("CKB_TEST_KILL_RANK") == rank;
  }
  void begin(const Node&) override {}
  void write(std::size_t slot, std::uint64_t offset, std::span<const std::byte> data) override {
    inner_.write(slot, offset, data);
    if ((fail_ || kill_) && !fired_.exchange(true)) {
      if (kill_) std::raise(SIGKILL);
      throw IoError(path_, "injected failure (CKB_TEST_FAIL_RANK)");
    }
  }
  void commit() override { inner_.commit(); }
  std::optional<std::uint64_t> file_position(std::size_t slot, std::uint64_t offset) const override {
    return inner_.file_position(slot, offset);
  }
  bool streams_in_order() const override { return inner_.streams_in_order(); }

 private:
  Writer& inner_;
  std::string path_;
  bool fail_ = false, kill_ = false;
  std::atomic<bool> fired_{false};
};

// Stops this rank's writing early (through the executor's cancel token) when the caller
// cancels or another rank failed: a failing rank leaves a marker file in the shared folder,
// which every rank polls for while it writes (every 50 ms).
class PeerWatch {
 public:
  PeerWatch(const CancelToken* outer, std::string marker) : outer_(outer), marker_(std::move(marker)) {
    thread_ = std::thread([this] { watch(); });
  }
  ~PeerWatch() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;
  const CancelToken* token() const { return &stop_; }
  // After this rank's run threw: StoppedForPeer when another rank's failure stopped it, else
  // the others are told (the marker), and the exception stands.
  void on_failure(int rank) {
    if (peer_failed_) throw StoppedForPeer();
    if (marker_.empty()) return;
    try {
      write_small_file(marker_, "rank " + std::to_string(rank) + " failed\n");
    } catch (...) {  // best effort: the agreement after the step tells the others anyway
    }
  }

 private:
  void watch() {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return done_; })) {
      std::error_code ec;
      if (outer_ && outer_->cancelled()) {
        stop_.cancel(outer_->signal());
      } else if (!marker_.empty() && std::filesystem::exists(marker_, ec)) {
        peer_failed_ = true;
        stop_.cancel();
      }
    }
  }
  const CancelToken* outer_;
  std::string marker_;
  CancelToken stop_;
  std::atomic<bool> peer_failed_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// ---- per-rank results --------------------------------------------------------------------

json num(double v) { return std::isfinite(v) ? json(v) : json(std::to_string(v)); }
double num(const json& j) { return j.is_number() ? j.get<double>() : std::strtod(j.get<std::string>().c_str(), nullptr); }

// Who accounts for each ledger entry: a target's writer (non-tensor targets: rank 0); a
// source, the rank of the first target made from it (unused or dropped sources: rank 0).
struct LedgerOwners {
  std::map<std::string, int> sources, targets;
};

LedgerOwners ledger_owners(const json& ledger, const std::map<std::string, int>& slot_owner) {
  LedgerOwners o;
  for (const auto& [name, e] : ledger.at("targets").items()) {
    auto it = slot_owner.find(name);
    o.targets[name] = it == slot_owner.end() ? 0 : it->second;
  }
  for (const auto& [name, e] : ledger.at("sources").items()) {
    int owner = 0;
    if (e.contains("targets") && !e["targets"].empty()) {
      auto it = o.targets.find(e["targets"][0].get<std::string>());
      if (it != o.targets.end()) owner = it->second;
    }
    o.sources[name] = owner;
  }
  return o;
}

// This rank's share of the run: its tensors' stats and casts, its roundings, its ledger part.
json rank_results(const Planned& p, const ExecResult& res, const std::vector<bool>& owned, const LedgerOwners& owners,
                  int rank, double seconds) {
  const Report& r = p.report;
  json tensors = json::array();
  std::size_t count = 0;
  for (std::size_t i = 0; i < r.tensors.size() && i < owned.size(); ++i) {
    if (!owned[i]) continue;
    ++count;
    const TensorReport& t = r.tensors[i];
    json e = {{"i", i}, {"missing", t.missing_chunks}};
    if (t.stats)
      e["stats"] = {num(t.stats->min), num(t.stats->max), num(t.stats->mean), t.stats->nan, t.stats->inf};
    if (t.cast)
      e["cast"] = {t.cast->elements, t.cast->inexact, t.cast->overflow, t.cast->nan, num(t.cast->max_abs_error),
                   num(t.cast->max_rel_error)};
    tensors.push_back(e);
  }
  json rounded = json::object();
  for (const auto& x : r.rounded) rounded[x.name] = {std::string(dtype_name(x.to)), num(x.max_abs_error), num(x.max_rel_error)};
  json ledger = {{"sources", json::object()}, {"targets", json::object()}};
  for (const char* part : {"sources", "targets"}) {
    const auto& own = std::string(part) == "sources" ? owners.sources : owners.targets;
    for (const auto& [name, e] : r.ledger.at(part).items())
      if (own.at(name) == rank) ledger[part][name] = e;
  }
  return {{"rank", rank},
          {"host", host_name()},
          {"tensors", count},
          {"bytes", res.bytes},
          {"seconds", num(seconds)},
          {"peak_window_bytes", res.peak_window_bytes},
          {"missing_chunks", r.summary.missing_chunks},
          {"tensor_reports", tensors},
          {"rounded", rounded},
          {"ledger", ledger}};
}

// The per-rank ledgers back into one, in the plan's order; every entry from exactly one rank.
json gather_ledger(const json& plan_ledger, const std::vector<json>& parts) {
  json merged = plan_ledger;
  std::map<std::string, int> counts;
  for (const char* part : {"sources", "targets"}) {
    json out = json::object();
    for (const auto& [name, e] : plan_ledger.at(part).items()) {
      int seen = 0;
      for (const auto& p : parts)
        if (p.at("ledger").at(part).contains(name)) {
          if (!seen++) out[name] = p["ledger"][part][name];
        }
      if (seen != 1)
        throw MappingError("ledger", std::string(part).substr(0, std::string(part).size() - 1) + " '" + name +
                                         "' was accounted for by " + std::to_string(seen) + " ranks (expected exactly 1)");
      counts[std::string(part) + "_" + out[name].at("status").get<std::string>()]++;
    }
    merged[part] = out;
  }
  merged["counts"] = counts;
  return merged;
}

// Rank 0's report completed with the other ranks' shares.
void merge_results(Planned& p, const std::vector<json>& parts, const std::vector<int>& owner, double seconds) {
  Report& r = p.report;
  for (const auto& part : parts) {
    for (const auto& e : part.at("tensor_reports")) {
      const std::size_t i = e.at("i").get<std::size_t>();
      if (i >= r.tensors.size() || owner[i] != part.at("rank").get<int>()) continue;
      TensorReport& t = r.tensors[i];
      t.missing_chunks = e.at("missing").get<std::uint64_t>();
      if (e.contains("stats")) {
        const auto& s = e["stats"];
        t.stats = TensorStatsReport{num(s[0]), num(s[1]), num(s[2]), s[3].get<std::uint64_t>(), s[4].get<std::uint64_t>()};
      }
      if (e.contains("cast") && t.cast) {
        const auto& s = e["cast"];
        t.cast->elements = s[0].get<std::uint64_t>();
        t.cast->inexact = s[1].get<std::uint64_t>();
        t.cast->overflow = s[2].get<std::uint64_t>();
        t.cast->nan = s[3].get<std::uint64_t>();
        t.cast->max_abs_error = num(s[4]);
        t.cast->max_rel_error = num(s[5]);
      }
    }
  }
  // Roundings, in the order a single process lists them (by name), each over every rank.
  std::map<std::string, RoundingReport> rounded;
  for (const auto& part : parts)
    for (const auto& [name, e] : part.at("rounded").items()) {
      auto [it, fresh] = rounded.try_emplace(name, RoundingReport{name, dtype_from_name(e[0].get<std::string>()).value_or(DType::F32), 0, 0});
      it->second.max_abs_error = std::max(it->second.max_abs_error, num(e[1]));
      it->second.max_rel_error = std::max(it->second.max_rel_error, num(e[2]));
    }
  std::vector<RoundingReport> ordered;
  for (const auto* m : {&p.prepared.rounded, &p.plan.rounded})
    for (const auto& [name, s] : *m)
      if (auto it = rounded.find(name); it != rounded.end()) {
        ordered.push_back(it->second);
        rounded.erase(it);
      }
  r.rounded = std::move(ordered);
  // The summary over all ranks, as record_results() computes it for one.
  Summary& sum = r.summary;
  sum.inexact = sum.overflow = sum.nan = 0;
  sum.max_abs_error = sum.max_rel_error = 0;
  sum.worst.clear();
  auto note = [&](const std::string& name, double abs, double rel) {
    sum.max_abs_error = std::max(sum.max_abs_error, abs);
    if (rel > sum.max_rel_error) sum.max_rel_error = rel, sum.worst = name;
  };
  for (const auto& t : r.tensors)
    if (t.cast) {
      sum.inexact += t.cast->inexact;
      sum.overflow += t.cast->overflow;
      sum.nan += t.cast->nan;
      note(t.name, t.cast->max_abs_error, t.cast->max_rel_error);
    }
  for (const auto& x : r.rounded) note(x.name, x.max_abs_error, x.max_rel_error);
  sum.rounded_tensors = r.rounded.size();
  sum.bytes = sum.missing_chunks = sum.peak_window_bytes = 0;
  json per_rank = json::array();
  int slowest = 0;
  double slowest_s = -1;
  for (const auto& part : parts) {
    sum.bytes += part.at("bytes").get<std::uint64_t>();
    sum.missing_chunks += part.at("missing_chunks").get<std::uint64_t>();
    sum.peak_window_bytes = std::max(sum.peak_window_bytes, part.at("peak_window_bytes").get<std::uint64_t>());
    const double s = num(part.at("seconds"));
    if (s > slowest_s) slowest_s = s, slowest = part.at("rank").get<int>();
    const double bytes = static_cast<double>(part.at("bytes").get<std::uint64_t>());
    per_rank.push_back({{"rank", part.at("rank")},
                        {"host", part.at("host")},
                        {"tensors", part.at("tensors")},
                        {"bytes", part.at("bytes")},
                        {"seconds", num(s)},
                        {"bytes_per_second", num(s > 0 ? bytes / s : 0.0)},
                        {"peak_window_bytes", part.at("peak_window_bytes")},
                        {"missing_chunks", part.at("missing_chunks")}});
  }
  sum.seconds = seconds;
  r.ledger = gather_ledger(r.ledger, parts);
  r.ranks = {{"size", parts.size()}, {"slowest", slowest}, {"per_rank", per_rank}};
}

// The executor's threads for a rank when the job leaves it open: the CPUs the launcher bound
// this process to (mpirun binds each rank to a core or a socket by default), else the host's
// CPUs shared between the ranks on it (OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS).
unsigned rank_threads() {
  const unsigned host = std::max(1u, std::thread::hardware_concurrency());
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    const unsigned bound = static_cast<unsigned>(CPU_COUNT(&set));
    if (bound > 0 && bound < host) return bound;
  }
  int local = env_rank("OMPI_COMM_WORLD_LOCAL_SIZE");
  if (local < 1) local = env_rank("MPI_LOCALNRANKS");
  return std::max(1u, host / static_cast<unsigned>(std::max(local, 1)));
}

}  // namespace

ProcessGroup process_group() {
  Cluster& c = cluster();
  return {c.rank(), c.size()};
}

Report run_shared(const Job& job, const RunOptions& opts) {
  Cluster& c = cluster();
  const int rank = c.rank(), ranks = c.size();
  const CancelToken* cancel = opts.cancel;

  // 0. Every rank is here (a build without MPI refuses now, before anything is touched).
  c.barrier(cancel);
  // 1. The same plan everywhere; rank 0 clears dead runs' temporaries before anyone writes.
  std::shared_ptr<Planned> planned;
  std::vector<std::string> stale;
  agree(c, cancel, [&] {
    planned = make_plan(job);
    planned->report.dry_run = false;
    if (!planned->output) throw UsageError("no output path given");
    // Object storage has no shared temporary folder to publish with one rename: each rank's
    // objects would become visible on their own, and rank 0's publish would not know them.
    if (is_remote_path(planned->output->path))
      throw UsageError("writing to object storage (" + planned->output->path + ") from " + std::to_string(ranks) +
                       " processes is not supported: write it from one process, or to a shared filesystem "
                       "(reading from object storage under MPI works)");
    if (opts.on_plan) opts.on_plan(planned->report);
    planned->plan.check();
    if (cancel) cancel->throw_if_cancelled();
    prepare_output_folder(*planned->output);
    if (rank == 0 && planned->output->format->caps.writes_output) stale = remove_stale_temporaries(planned->output->path);
    return json();
  });
  Planned& p = *planned;
  Report& r = p.report;
  const OutputTarget& out = *p.output;
  const Format& fmt = *out.format;
  const Node& target = p.plan.target;
  for (const auto& s : stale)
    r.notes.push_back("removed stale temporary " + s + " (process " + std::to_string(temporary_owner(s)) + " is gone)");

  // 2. The share of every rank.
  const auto tensors = tensor_list(target);
  const CooperativeFormat* coop = fmt.caps.writes_output ? cooperative_format(fmt, p.write_options) : nullptr;
  std::vector<int> owner(tensors.size(), 0);
  if (coop || !fmt.caps.writes_output) {
    std::vector<std::uint64_t> bytes;
    for (const auto& [n, t] : tensors) bytes.push_back(t->info.nbytes());
    std::vector<std::size_t> groups(tensors.size());
    std::iota(groups.begin(), groups.end(), 0);
    if (coop && coop->groups) groups = coop->groups(target, p.write_options);
    owner = partition_slots(bytes, groups, ranks);
  } else {
    r.notes.push_back(fmt.name + " output is one file, written by one process: rank 0 wrote it alone (" +
                      std::to_string(ranks) + " ranks; safetensors and orbax are written by all)");
  }
  std::vector<bool> owned(tensors.size());
  std::map<std::string, int> slot_owner;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    owned[i] = owner[i] == rank;
    slot_owner[tensors[i].first] = owner[i];
  }
  const LedgerOwners ledger_owner = ledger_owners(r.ledger, slot_owner);

  // 3. Writers: rank 0 makes the output's temporary folder, the others join it.
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Writer> writer;
  CooperativeWriter* shared = nullptr;
  auto make_writer = [&](const std::string& folder) {
    check_bytes_only_dtypes(target, fmt);
    if (coop) {
      auto w = coop->make_writer(out.path, p.write_options, Cooperation{rank, ranks, folder, owned});
      shared = w.get();
      writer = std::move(w);
    } else if (!fmt.caps.writes_output || rank == 0) {
      writer = fmt.make_writer(out.path, p.write_options);
    }
    if (writer) writer->begin(target);
  };
  std::vector<json> parts;
  try {
    std::string folder_path;
  const auto folder = agree(c, cancel, [&] {
      if (rank == 0) make_writer("");
      return json(shared ? shared->shared_folder() : "");
    });
    agree(c, cancel, [&] {
      if (rank > 0) make_writer(folder[0].get<std::string>());
      return json();
    });
    folder_path = folder[0].get<std::string>();

    // 4. Every rank writes its share and completes its part (nothing visible yet).
    parts = agree(c, cancel, [&] {
      ExecResult res;
      if (writer) {
        FaultInjector faults(*writer, rank, out.path);
        ExecOptions eo = exec_options(job, opts);
        if (!job.threads) eo.threads = rank_threads();
        std::error_code ec;
        const bool folder = !folder_path.empty() && std::filesystem::is_directory(folder_path, ec);
        PeerWatch watch(cancel, folder ? folder_path + "/.ckb-failed" : "");  // one shared file: no marker
        eo.cancel = watch.token();
        eo.writer = &faults;
        eo.owned = &owned;
        try {
          res = execute(target, fmt, out.path, p.write_options, eo);
        } catch (...) {
          watch.on_failure(rank);
          throw;
        }
      } else {
        for (const auto& [n, t] : tensors) res.names.push_back(n);
      }
      record_results(p, res);
      return rank_results(p, res, owned, ledger_owner, rank, res.seconds);
    });

    // 5. Rank 0 ties the parts together and publishes; then the others may leave.
    agree(c, cancel, [&] {
      if (rank == 0 && shared) shared->publish();
      return json();
    });
  } catch (...) {
    // Everyone failed together: the others remove their files from rank 0's folder first,
    // then rank 0 removes the folder (a tree removed while files vanish from it may stay).
    if (g_agreed_failure) {
      if (rank > 0) writer.reset();
      try {
        c.barrier(cancel);
      } catch (...) {
      }
      writer.reset();
    }
    throw;
  }
  if (rank != 0) return r;
  merge_results(p, parts, owner, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  after_write(p);
  return r;
}

}  // namespace ckb::engine

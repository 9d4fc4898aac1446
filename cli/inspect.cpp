// `ckptbridge inspect PATH [--json] [--hash] [--step N]`: a table of tensors (name, dtype,
// shape, size) and non-tensor leaves with totals, or the same as JSON:
//   {"format", "tensors": {NAME: {"dtype","shape"[,"sha256"]}}, "leaves": {NAME: {"type","value"}},
//    "metadata": {...}}
// sha256 is over the tensor's C-order little-endian bytes (the fixtures' manifest definition).
#include <atomic>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.h"
#include "cli/pipeline.h"
#include "cli/util.h"
#include "core/hash.h"
#include "formats/format.h"
#include "profiles/flax.h"

namespace ckb::cli {
namespace {

using ojson = nlohmann::ordered_json;

struct InspectOptions {
  std::string path;
  bool json = false;
  bool hash = false;
  std::int64_t step = -1;
  unsigned threads = 0;
};

ojson leaf_value(const Node& n) {
  struct V {
    ojson operator()(const Node::Container& c) const {
      return c.kind == ContainerKind::Dict ? ojson::object() : ojson::array();
    }
    ojson operator()(const Tensor&) const { return nullptr; }
    ojson operator()(const NoneValue&) const { return nullptr; }
    ojson operator()(bool b) const { return b; }
    ojson operator()(std::int64_t i) const { return i; }
    ojson operator()(double d) const { return d; }
    ojson operator()(const std::string& s) const { return s; }
    ojson operator()(const RawBytes& b) const { return hex_bytes(b.data, 64); }
  };
  return std::visit(V{}, n.value());
}

std::vector<std::string> hash_all(const std::vector<std::pair<std::string, const Tensor*>>& tensors, unsigned threads) {
  std::vector<std::string> out(tensors.size());
  std::atomic<std::size_t> next{0};
  std::exception_ptr err;
  std::atomic<bool> failed{false};
  auto work = [&] {
    try {
      for (std::size_t i = next++; i < tensors.size() && !failed; i = next++) out[i] = tensor_sha256(*tensors[i].second);
    } catch (...) {
      if (!failed.exchange(true)) err = std::current_exception();
    }
  };
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned k = 1; k < threads && k < tensors.size(); ++k) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (err) std::rethrow_exception(err);
  return out;
}

int run(const InspectOptions& o) {
  Checkpoint ck = read_checkpoint(o.path, source_read_options(o.step));
  auto tensors = tensor_list(ck.root);
  std::vector<std::string> hashes;
  if (o.hash) hashes = hash_all(tensors, o.threads);
  if (o.hash) warn_missing_chunks(missing_chunks(ck));

  if (o.json) {
    ojson j;
    j["format"] = ck.format;
    j["tensors"] = ojson::object();
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = *tensors[i].second;
      ojson e = {{"dtype", std::string(dtype_name(t.info.dtype))}, {"shape", t.info.shape}};
      if (o.hash) e["sha256"] = hashes[i];
      j["tensors"][tensors[i].first] = e;
    }
    j["leaves"] = ojson::object();
    visit_leaves(ck.root, [&](const Path& p, const Node& n) {
      if (n.is_tensor()) return;
      j["leaves"][join_path(p)] = {{"type", std::string(n.type_name())}, {"value", leaf_value(n)}};
    });
    if (!ck.metadata.empty()) j["metadata"] = ck.metadata;
    if (const FlaxLayout fl = detect_flax_layout(ck.root); (ck.format == "orbax" || ck.format == "msgpack") && fl.kind != FlaxKind::Unknown) j["flax_layout"] = fl.to_json();
    std::cout << j.dump(1) << "\n";
    return 0;
  }

  Table table({"name", "dtype", "shape", "size"});
  if (o.hash) table.add_column("sha256");
  std::uint64_t total_bytes = 0, total_params = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = *tensors[i].second;
    total_bytes += t.info.nbytes();
    total_params += t.info.numel();
    std::vector<std::string> row = {tensors[i].first, std::string(dtype_name(t.info.dtype)), shape_str(t.info.shape),
                                    human_bytes(t.info.nbytes())};
    if (o.hash) row.push_back(hashes[i]);
    table.add_row(std::move(row));
  }
  std::cout << ck.path << " (" << ck.format << ")\n";
  table.print(std::cout);
  std::size_t leaves = 0;
  visit_leaves(ck.root, [&](const Path& p, const Node& n) {
    if (n.is_tensor()) return;
    if (leaves++ == 0) std::cout << "\nother leaves:\n";
    std::cout << "  " << join_path(p) << " = " << leaf_value(n).dump() << " (" << n.type_name() << ")\n";
  });
  std::cout << "\n" << tensors.size() << " tensors, " << with_commas(total_params) << " elements, "
            << human_bytes(total_bytes) << "; " << leaves << " other leaves\n";
  if (const FlaxLayout fl = detect_flax_layout(ck.root); (ck.format == "orbax" || ck.format == "msgpack") && fl.kind != FlaxKind::Unknown) {
    std::cout << "flax layout: " << fl.name() << "; weights at " << fl.weights;
    if (!fl.step.empty()) std::cout << "; step " << fl.step << " (" << fl.step_type << ")";
    if (!fl.chain.empty()) std::cout << "; optimizer state at " << fl.opt_state << " (" << fl.chain << ")";
    if (!fl.rng.empty()) std::cout << "; " << fl.rng.size() << " RNG state subtree(s)";
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

Runner add_inspect(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  app.add_option("path", o->path, "checkpoint file or directory (format detected from content)")->required();
  app.add_flag("--json", o->json, "machine-readable output");
  app.add_flag("--hash", o->hash, "add the sha256 of each tensor's C-order little-endian bytes");
  app.add_option("--step", o->step, "Orbax CheckpointManager root: the step to read (default: latest)");
  app.add_option("--threads", o->threads, "worker threads for --hash (default: all cores)");
  return [o] { return run(*o); };
}

}  // namespace ckb::cli

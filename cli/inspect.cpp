// `ckptbridge inspect PATH [--json] [--hash] [--src-step N]`: a table of tensors (name, dtype,
// shape, size) and non-tensor leaves with totals, or the same as JSON:
//   {"format", "tensors": {NAME: {"dtype","shape"[,"sha256"]}}, "leaves": {NAME: {"type","value"}},
//    "metadata": {...}}
// sha256 is over the tensor's C-order little-endian bytes (the fixtures' manifest definition).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/util.h"
#include "engine/api.h"

namespace ckb::cli {
namespace {

using ojson = nlohmann::ordered_json;

struct InspectCmd {
  std::string path;
  bool json = false;
  bool verbose = false;
  engine::SourceOptions src;
  engine::InspectOptions opts;
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

void warn_missing(const std::map<std::string, std::uint64_t>& missing) {
  std::uint64_t total = 0;
  std::string list;
  for (const auto& [name, n] : missing) {
    total += n;
    if (list.size() < 300) list += (list.empty() ? "" : ", ") + name + " (" + std::to_string(n) + ")";
  }
  if (total)
    std::cerr << "warning: " << total << " missing zarr chunk" << (total == 1 ? "" : "s")
              << " read as the fill value: " << list << (list.size() >= 300 ? ", ..." : "")
              << " (--strict-chunks makes this an error)\n";
}

int run(const InspectCmd& o) {
  const engine::Inspection in = engine::inspect(o.path, o.src, o.opts);
  const Checkpoint& ck = *in.checkpoint;
  const auto& tensors = in.tensors;
  const auto& hashes = in.sha256;
  const bool hash = o.opts.hash;
  warn_missing(in.missing_chunks);
  if (o.verbose) {
    const auto t = engine::remote_transfer();
    std::cerr << "remote: " << t.requests << " request" << (t.requests == 1 ? "" : "s") << ", " << t.bytes_read
              << " bytes fetched (at most " << t.largest_response << " in one response), " << t.retries << " retr"
              << (t.retries == 1 ? "y" : "ies") << "\n";
  }

  if (o.json) {
    ojson j;
    j["format"] = ck.format;
    j["tensors"] = ojson::object();
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = *tensors[i].second;
      ojson e = {{"dtype", std::string(dtype_name(t.info.dtype))}, {"shape", t.info.shape}};
      if (hash) e["sha256"] = hashes[i];
      j["tensors"][tensors[i].first] = e;
    }
    j["leaves"] = ojson::object();
    for (const auto& [name, n] : in.leaves)
      j["leaves"][name] = {{"type", std::string(n->type_name())}, {"value", leaf_value(*n)}};
    if (!ck.metadata.empty()) j["metadata"] = ck.metadata;
    if (!in.flax_layout.empty()) j["flax_layout"] = in.flax_layout_json;
    std::cout << j.dump(1) << "\n";
    return 0;
  }

  Table table({"name", "dtype", "shape", "size"});
  if (hash) table.add_column("sha256");
  std::uint64_t total_bytes = 0, total_params = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = *tensors[i].second;
    total_bytes += t.info.nbytes();
    total_params += t.info.numel();
    std::vector<std::string> row = {tensors[i].first, std::string(dtype_name(t.info.dtype)), shape_str(t.info.shape),
                                    human_bytes(t.info.nbytes())};
    if (hash) row.push_back(hashes[i]);
    table.add_row(std::move(row));
  }
  std::cout << ck.path << " (" << ck.format << ")\n";
  table.print(std::cout);
  std::size_t leaves = 0;
  for (const auto& [name, n] : in.leaves) {
    if (leaves++ == 0) std::cout << "\nother leaves:\n";
    std::cout << "  " << name << " = " << leaf_value(*n).dump() << " (" << n->type_name() << ")\n";
  }
  std::cout << "\n" << plural(tensors.size(), "tensor") << ", " << with_commas(total_params) << " elements, "
            << human_bytes(total_bytes) << "; " << leaves << " other leaves\n";
  if (!in.flax_layout.empty()) std::cout << "flax layout: " << in.flax_layout << "\n";
  return 0;
}

}  // namespace

Runner add_inspect(CLI::App& app) {
  auto o = std::make_shared<InspectCmd>();
  app.add_option("path", o->path, "checkpoint file or directory (format detected from content)")->required();
  app.add_flag("--json", o->json, "machine-readable output");
  app.add_flag("-v,--verbose", o->verbose, "also say what was fetched from object storage (requests, bytes) on stderr");
  app.add_flag("--hash", o->opts.hash, "add the sha256 of each tensor's C-order little-endian bytes");
  app.add_option("--threads", o->opts.threads, "worker threads for --hash (default: all cores)");
  add_source_options(app, o->src);
  return [o] { return run(*o); };
}

}  // namespace ckb::cli

// Outputs written by several processes together (an MPI launch, engine/shared_run.h), in the
// formats' own multi-writer forms: sharded safetensors (each process writes whole shards;
// the index last), one safetensors file (each process writes its tensors' byte ranges into
// rank 0's temporary file, whose header rank 0 wrote) and Orbax (each process its own `ocdbt.process_<rank>/` database, or its
// arrays' directories; the metadata and commit marker last).
//
// Protocol, driven by the engine (every step a collective agreement between the ranks):
//  1. every rank computes the same groups() from the same layout and the same ownership;
//  2. rank 0 makes its writer and begin()s it: it creates the one temporary folder (or file)
//     of the output (io/output.h), whose path (shared_folder()) is sent to the others;
//  3. the other ranks make theirs with Cooperation::folder = that path and begin();
//  4. every rank writes the slots it owns (only those) and commit()s: its part is complete
//     and durable inside the shared folder under its final names; nothing is visible yet;
//  5. once every rank's commit() succeeded, rank 0 publish()es: the files that tie the parts
//     together (index, OCDBT root manifest, _METADATA, commit markers), then the rename.
// A writer destroyed before publish() removes what it wrote; rank 0's removes the folder.
// The bytes of every file are those a single process writes for the same layout (an OCDBT
// database is split into one per process, as multi-host Orbax writes it).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "formats/format.h"

namespace ckb {

struct Cooperation {
  int rank = 0, ranks = 1;
  std::string folder;       // ranks > 0: rank 0's shared_folder()
  std::vector<bool> owned;  // per tensor slot: written by this process
};

class CooperativeWriter : public Writer {
 public:
  // Rank 0 after begin(): the temporary folder (or file) the output is built in.
  virtual std::string shared_folder() const = 0;
  // Rank 0, after every rank's commit(): completes and publishes the output.
  virtual void publish() = 0;
};

struct CooperativeFormat {
  // Per tensor slot, the group it belongs to (slots of one group go to one process: one
  // output file); null: every slot alone.
  std::function<std::vector<std::size_t>(const Node& layout, const WriteOptions&)> groups;
  std::function<std::unique_ptr<CooperativeWriter>(const std::string& path, const WriteOptions&, const Cooperation&)>
      make_writer;
};

// The multi-writer form of `fmt` with these options; nullptr when it has none (one process
// writes it: a single file).
const CooperativeFormat* cooperative_format(const Format& fmt, const WriteOptions& wo);

// Each format's (defined beside its writer).
std::vector<std::size_t> safetensors_shard_groups(const Node& layout, const WriteOptions& wo);
std::unique_ptr<CooperativeWriter> make_cooperative_safetensors_writer(const std::string& path, const WriteOptions& wo,
                                                                       const Cooperation& co);
std::unique_ptr<CooperativeWriter> make_cooperative_orbax_writer(const std::string& path, const WriteOptions& wo,
                                                                 const Cooperation& co);

}  // namespace ckb

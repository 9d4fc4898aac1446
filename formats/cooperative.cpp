// Implementation of formats/cooperative.h: which formats have a multi-writer form.
#include "formats/cooperative.h"

namespace ckb {

const CooperativeFormat* cooperative_format(const Format& fmt, const WriteOptions&) {
  static const CooperativeFormat safetensors{safetensors_shard_groups, make_cooperative_safetensors_writer};
  static const CooperativeFormat orbax{nullptr, make_cooperative_orbax_writer};
  if (fmt.name == "safetensors") return &safetensors;
  if (fmt.name == "orbax") return &orbax;
  return nullptr;
}

}  // namespace ckb

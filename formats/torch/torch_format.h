// Internal interface of the torch format (torch.save zip and legacy files): the pieces
// formats/torch/*.cpp share. Other layers use make_torch_format() from formats/format.h.
//
// Tree mapping (read and write):
//   dict / OrderedDict -> Dict container (str keys; int keys become their decimal string),
//                         attrs["torch.type"] = "dict" or "OrderedDict"; a dict whose keys
//                         are all ints gets attrs["torch.keys"] = "int" (optimizer state)
//   list -> List, tuple -> Tuple, tensors -> tensor leaves, int/float/bool/str/None/bytes
//   -> leaves. Tensor leaves may carry attrs["torch.requires_grad"] = "1" and
//   attrs["torch.parameter"] = "1" (saved through _rebuild_parameter).
//   A pickle whose top object is not a container (torch.save(tensor)) becomes a root Dict
//   with the single key "tensor"/"value" and root attrs["torch.root"] = "bare".
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "core/tree.h"
#include "formats/format.h"
#include "formats/torch/pickle.h"

namespace ckb::torch_format {

// The 14-byte prefix of the legacy format's magic-number pickle.
inline constexpr unsigned char kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                                 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

// Resolves a storage reference to (bytes of the storage, byte length). Called once per
// tensor; implementations cache so that tensors of one storage share one source.
using StorageResolver = std::function<std::pair<SourcePtr, std::uint64_t>(const pickle::StorageRef&)>;

// Converts an unpickled object into a tree. `file` names the checkpoint in errors.
// `max_nodes` caps the tree size (containers shared through the memo are copied per use,
// so a small pickle could otherwise describe an exponentially large tree); callers pass a
// small multiple of the number of unpickled values.
Node build_tree(const pickle::Value* root, const std::string& file, const StorageResolver& resolve,
                std::size_t max_nodes);

bool detect(const std::string& path);
Checkpoint read(const std::string& path);
std::unique_ptr<Writer> make_writer(const std::string& path, const WriteOptions& opts);

}  // namespace ckb::torch_format

// Listings and object sizes of remote stores, taken once per engine call. Detecting a format
// and opening a checkpoint ask the same questions many times ("is there a _METADATA?", "what
// is under this prefix?"): each is a HEAD or a LIST, 20-100 ms apart on a real cloud. While a
// RemoteSnapshotScope (io/file.h) lives, the answers are kept and reused: a listing of a prefix
// also answers every question below it (S3 lists recursively). What this process writes to
// object storage clears them (remote_objects_changed), and they are dropped when the last
// scope ends, so separate calls never see stale answers. Internal to io/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/remote/object_store.h"

namespace ckb {

// store->list(prefix), or the answer a listing of this call already holds.
std::vector<remote::ObjectInfo> snapshot_list(const remote::ObjectStore& store, const std::string& prefix);
// store->stat(key) (HEAD), or the answer a listing or HEAD of this call already holds.
std::optional<std::uint64_t> snapshot_stat(const remote::ObjectStore& store, const std::string& key);
// This process created, replaced or deleted objects: forget what was kept.
void remote_objects_changed();

}  // namespace ckb

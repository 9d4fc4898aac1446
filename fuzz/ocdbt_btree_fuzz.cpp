// OCDBT B+tree nodes: framing, then the node body (height, data-file table, keys with
// prefix lengths, inline and out-of-line values, interior entries and their statistics).
// As for manifests, an input that is not a valid frame is also parsed as a raw body.
#include "fuzz/fuzz_common.h"
#include "io/ocdbt/btree.h"
#include "io/ocdbt/framing.h"

CKB_FUZZ_TARGET(ocdbt_btree) {
  auto in = ckb::fuzz::bytes(data, size);
  try {
    auto body = ckb::ocdbt::decode_framed(in, nullptr, ckb::ocdbt::kBtreeNodeMagic, "fuzz/d/node", 0, "b+tree node");
    ckb::ocdbt::parse_btree_node(body.bytes, body.owner, "fuzz/d/node", "", body.file_offset);
    return;
  } catch (const ckb::Error&) {
  }
  ckb::ocdbt::parse_btree_node(in, nullptr, "fuzz/d/node", "d/", 0);
}

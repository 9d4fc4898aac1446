// Implementation of io/ocdbt/ocdbt_merge.h.
#include "io/ocdbt/ocdbt_merge.h"

#include "core/errors.h"
#include "io/ocdbt/ocdbt_kvstore.h"

namespace ckb::ocdbt {

WriterStats merge_databases(const std::string& dir, const std::vector<std::string>& children, WriterConfig config) {
  OcdbtWriter root(dir, config);
  for (const auto& child : children) {
    const std::string child_dir = dir + "/" + child;
    OcdbtKvStore db(child_dir);
    for (const auto& key : db.list()) {
      const auto v = db.get(key);
      if (!v) throw FormatError(child_dir, "OCDBT database lists key '" + key + "' but has no value for it");
      if (v->mapped) {
        const std::string prefix = child_dir + "/";
        if (v->file.compare(0, prefix.size(), prefix) != 0)
          throw FormatError(child_dir, "value of '" + key + "' lives outside the database: " + v->file);
        root.put_reference(key, child + "/", v->file.substr(prefix.size()), v->offset, v->bytes.size());
      } else {
        root.put(key, v->bytes);
      }
    }
  }
  return root.finish();
}

}  // namespace ckb::ocdbt

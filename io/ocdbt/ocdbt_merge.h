// Per-process OCDBT databases merged into one root database, as Orbax finishes a multi-host
// save: every process wrote `<dir>/ocdbt.process_<i>/` (manifest.ocdbt + d/); the root
// `<dir>/manifest.ocdbt` then holds every key of them, its leaves (in `<dir>/d/`) keeping the
// small values inline and pointing at the processes' data files for the others (data-file
// table entries with base path "ocdbt.process_<i>/"), so no value byte is copied. TensorStore
// and Orbax read such a root like any database; so does io/ocdbt/ocdbt_kvstore.h.
#pragma once

#include <string>
#include <vector>

#include "io/ocdbt/ocdbt_writer.h"

namespace ckb::ocdbt {

// `children`: subdirectory names of `dir`, each a complete database. A key present in two of
// them is a MappingError naming it (from finish()). The root is written like any database
// (OcdbtWriter: files fsync'd, nothing renamed).
WriterStats merge_databases(const std::string& dir, const std::vector<std::string>& children, WriterConfig config = {});

}  // namespace ckb::ocdbt

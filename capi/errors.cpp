// ckb_last_error and the status mapping of the C ABI (capi/ckptbridge.h).
#include <cstdlib>
#include <cstring>

#include "capi/handles.h"

namespace ckb::capi {
namespace {
thread_local std::string last_error;
}

void clear_error() { last_error.clear(); }

int fail(const std::exception& e) {
  nlohmann::ordered_json j;
  int status = CKB_INTERNAL_ERROR;
  j["kind"] = "InternalError";
  j["message"] = e.what();
  j["path"] = "";
  j["offset"] = nullptr;
  j["detail"] = e.what();
  j["problems"] = nlohmann::ordered_json::array();
  if (const auto* err = dynamic_cast<const Error*>(&e)) {
    static const std::pair<const char*, int> kinds[] = {{"FormatError", CKB_FORMAT_ERROR},
                                                        {"IoError", CKB_IO_ERROR},
                                                        {"MappingError", CKB_MAPPING_ERROR},
                                                        {"UsageError", CKB_USAGE_ERROR},
                                                        {"Cancelled", CKB_CANCELLED}};
    const auto& k = kinds[static_cast<int>(err->kind())];
    j["kind"] = k.first;
    status = k.second;
    j["path"] = err->path();
    if (err->offset()) j["offset"] = *err->offset();
    j["detail"] = err->detail();
    if (const auto* m = dynamic_cast<const MappingError*>(err)) j["problems"] = m->problems();
  } else if (dynamic_cast<const nlohmann::json::exception*>(&e)) {
    j["kind"] = "UsageError";  // JSON the caller passed in
    status = CKB_USAGE_ERROR;
  } else if (dynamic_cast<const std::bad_alloc*>(&e)) {
    j["kind"] = "MemoryError";
  }
  last_error = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return status;
}

char* dup_string(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

const ckb_tree& tree_ref(const ckb_tree* t) {
  if (!t) throw UsageError("a null ckb_tree handle");
  if (t->dirty.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(t->index_mu);
    if (t->dirty.load(std::memory_order_relaxed)) t->index();
  }
  return *t;
}

}  // namespace ckb::capi

extern "C" {

int ckb_abi_version(void) { return CKB_ABI_VERSION; }
const char* ckb_version(void) { return "0.1.0"; }
const char* ckb_last_error(void) { return ckb::capi::last_error.c_str(); }
void ckb_free(char* s) { std::free(s); }

ckb_cancel* ckb_cancel_new(void) { return new (std::nothrow) ckb_cancel; }
void ckb_cancel_request(ckb_cancel* c) {
  if (c) c->token.cancel();
}
void ckb_cancel_free(ckb_cancel* c) { delete c; }

}  // extern "C"

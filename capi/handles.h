// The C ABI's internal pieces shared by its .cpp files: what a ckb_tree is, and the guard
// that turns C++ exceptions into a status plus the thread's last-error JSON.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "capi/ckptbridge.h"
#include "engine/api.h"

struct ckb_tree {
  // A tree read from disk or built by the caller (`owned`), or a job's target (`keep_alive`).
  std::shared_ptr<ckb::Checkpoint> owned;
  std::shared_ptr<const void> keep_alive;
  const ckb::Node* root = nullptr;
  std::string format, path;
  std::map<std::string, std::string> metadata, layout_options;
  nlohmann::ordered_json report;  // targets: the job's report
  // The tensors in tree order, rebuilt (under `index_mu`) when the caller added leaves.
  mutable std::vector<std::pair<std::string, const ckb::Tensor*>> tensors;
  mutable std::atomic<bool> dirty{false};
  mutable std::mutex index_mu;
  void index() const;
};

struct ckb_cancel {
  ckb::CancelToken token;
};

namespace ckb::capi {

// Records `e` as the thread's last error and returns its status.
int fail(const std::exception& e);
void clear_error();

// Runs fn(), mapping every exception to a status (never lets one cross the C boundary).
template <class Fn>
int guarded(Fn&& fn) {
  clear_error();
  try {
    fn();
    return CKB_OK;
  } catch (const std::exception& e) {
    return fail(e);
  } catch (...) {
    return fail(std::runtime_error("unknown exception"));
  }
}

char* dup_string(const std::string& s);
const ckb_tree& tree_ref(const ckb_tree* t);

}  // namespace ckb::capi

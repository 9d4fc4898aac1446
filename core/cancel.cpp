// The per-thread current run token of core/cancel.h.
#include "core/cancel.h"

namespace ckb {
namespace {
thread_local const CancelToken* t_current = nullptr;
}  // namespace

const CancelToken* current_cancel() noexcept { return t_current; }

void throw_if_current_cancelled() {
  if (t_current) t_current->throw_if_cancelled();
}

CancelScope::CancelScope(const CancelToken* token) noexcept : previous_(t_current) { t_current = token; }

CancelScope::~CancelScope() { t_current = previous_; }

}  // namespace ckb

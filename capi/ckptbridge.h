/* libckptbridge: the engine (engine/api.h) behind a stable C ABI.
 *
 * Why a C ABI: one build serves every Python (ctypes needs no compiled extension per
 * interpreter version: Debian's python3.11 and a 3.12 with JAX load the same .so) and any
 * other language with a C FFI. The Python package `ckptbridge` is a thin layer over it.
 *
 * Conventions:
 *  - Every function that can fail returns a status (CKB_OK = 0, else a CKB_*_ERROR kind);
 *    ckb_last_error() then describes the failure of the calling thread's last call as JSON:
 *    {"kind": "FormatError"|"IoError"|"MappingError"|"UsageError"|"Cancelled"|"InternalError",
 *     "message": full text, "path": file or tensor ("" if none), "offset": byte offset or null,
 *     "detail": message without the path, "problems": [one line per offending tensor]}.
 *  - Strings returned through `char**` are JSON (UTF-8), owned by the caller: ckb_free().
 *  - Trees (ckb_tree) are read from any thread; tensors are addressed by their index in the
 *    tree's "tensors" list (ckb_tree_describe). A tree keeps everything it reads alive.
 *  - Long calls (ckb_run, reads) take no lock the caller holds: Python's ctypes releases the
 *    GIL around them. Progress callbacks come from worker threads.
 *  - Job JSON (ckb_run, ckb_target, ckb_diff): {"source", "src_step", "strict_chunks",
 *    "recipe", "reverse", "profile", "profile_options": {name: text}, "expect",
 *    "sizes": {axis: n}, "dtype", "drop_non_tensors", "threads", "max_memory", "stats",
 *    "output": {"path", "format", "options": {name: text}, "metadata": {k: v}, "overwrite"}}.
 *    Unknown keys are a UsageError. Names in `memory_names` refer to the caller's trees
 *    (source, expect, a profile's path option such as "like").
 */
#ifndef CKPTBRIDGE_H
#define CKPTBRIDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  CKB_OK = 0,
  CKB_FORMAT_ERROR = 1,
  CKB_IO_ERROR = 2,
  CKB_MAPPING_ERROR = 3,
  CKB_USAGE_ERROR = 4,
  CKB_CANCELLED = 5,
  CKB_INTERNAL_ERROR = 6
};

#define CKB_ABI_VERSION 1
int ckb_abi_version(void);
const char* ckb_version(void);
/* The calling thread's last error (JSON, valid until its next failing call); "" if none. */
const char* ckb_last_error(void);
void ckb_free(char* s);

typedef struct ckb_tree ckb_tree;
typedef struct ckb_cancel ckb_cancel;

/* ---- reading ---- */
/* options_json: {"step": n, "strict_chunks": bool} or NULL. */
int ckb_open(const char* path, const char* options_json, ckb_tree** out);
/* {"format", "path", "metadata": {k: v}, "tensors": [{"name", "dtype", "shape", "nbytes",
 *  "zero_copy"}], "tree": node, "report": the job's report (targets only), "layout_options"}
 * node: {"t": "dict"|"list"|"tuple", "c": [[key, node], ...]} | {"t": "tensor", "i": index}
 *     | {"t": "int"|"float"|"bool"|"string"|"none"|"bytes", "v": value}
 *       (a float that is not finite is "nan"/"inf"/"-inf"; bytes are hex). */
int ckb_tree_describe(const ckb_tree* tree, char** json_out);
/* The tensor's bytes when they lie contiguously in memory (a mapped file), else *ptr = NULL. */
int ckb_tensor_pointer(const ckb_tree* tree, size_t index, const void** ptr);
/* Bytes [offset, offset + nbytes) of the tensor's C-order little-endian serialisation (any range). */
int ckb_tensor_read(const ckb_tree* tree, size_t index, uint64_t offset, void* out, uint64_t nbytes, unsigned threads);
/* Elements start[d] <= i < stop[d] of every axis, C order, into out (exactly that many bytes). */
int ckb_tensor_read_region(const ckb_tree* tree, size_t index, size_t ndim, const int64_t* start, const int64_t* stop,
                           void* out, uint64_t nbytes, unsigned threads);
/* Drops what reading the tensor left in memory (decoded chunks kept for the next region read,
 * computed data of a target); a later read decodes or computes again. */
int ckb_tensor_release(const ckb_tree* tree, size_t index);
void ckb_tree_free(ckb_tree* tree);

/* ---- trees built by the caller (state dicts to write, abstract targets) ---- */
int ckb_tree_new(ckb_tree** out);
/* A tensor at a '/'-joined path (containers created as dicts; a numeric key under a list).
 * `data` is borrowed: it must stay valid and unchanged while the tree or a job using it
 * lives. data == NULL: an abstract tensor (metadata only; reading it is a UsageError). */
int ckb_tree_add_tensor(ckb_tree* tree, const char* path, const char* dtype, size_t ndim, const int64_t* shape,
                        const void* data, uint64_t nbytes);
/* A non-tensor leaf from JSON: null, true/false, an integer, a float, a string. */
int ckb_tree_add_value(ckb_tree* tree, const char* path, const char* json_value);
/* Shown by ckb_tree_describe; an output's metadata comes from the job's "output.metadata". */
int ckb_tree_set_metadata(ckb_tree* tree, const char* key, const char* value);

/* ---- jobs ---- */
typedef void (*ckb_progress_fn)(void* user, uint64_t bytes_done, uint64_t bytes_total, uint64_t tensors_done,
                                uint64_t tensors_total);
ckb_cancel* ckb_cancel_new(void);
void ckb_cancel_request(ckb_cancel* c); /* async-signal-safe */
void ckb_cancel_free(ckb_cancel* c);

/* plan (dry_run != 0: metadata only, problems listed in the report) or run; the report JSON. */
int ckb_run(const char* job_json, ckb_tree* const* memory, const char* const* memory_names, size_t n_memory,
            int dry_run, ckb_progress_fn progress, void* user, ckb_cancel* cancel, char** report_json);
/* Runs the job into the caller's memory instead of a file (the job has no output): `into` is
 * called once per target tensor, in tree order, before any byte is read, and returns where
 * its nbytes go (NULL fails the run); the engine then fills every buffer with all cores in
 * bounded memory. Non-tensor leaves must be dropped ("drop_non_tensors"). */
typedef void* (*ckb_into_fn)(void* user, size_t index, const char* name, const char* dtype, size_t ndim,
                             const int64_t* shape, uint64_t nbytes);
int ckb_run_into(const char* job_json, ckb_tree* const* memory, const char* const* memory_names, size_t n_memory,
                 ckb_into_fn into, void* into_user, ckb_progress_fn progress, void* user, ckb_cancel* cancel,
                 char** report_json);
/* The job's target tree, read lazily (tensors are computed when read). allow_problems: the
 * tree of what could be mapped, the rest listed in its report's problems. */
int ckb_target(const char* job_json, ckb_tree* const* memory, const char* const* memory_names, size_t n_memory,
               int allow_problems, ckb_tree** out);
/* options_json: {"ulp", "abs", "rel", "ignore_dtype", "b_step"}; result {"equal", "leaves": [...], ...}. */
int ckb_diff(const char* job_json, const char* b, const char* options_json, char** result_json);
/* [{"name", "aliases", "extensions", "caps", "write_options"}] and [{"name", "description", "options", "recipe"}]. */
int ckb_formats(char** json_out);
int ckb_profiles(char** json_out);
/* The LoRA-merging profile for a runtime family ("openpi", "peft"; "" = by has_adapter), as a JSON string. */
int ckb_lora_merge_profile(const char* family, int has_adapter, char** name_json);
/* Converts n elements between dtypes (round to nearest even), e.g. BF16 -> F32. */
int ckb_convert(const char* from_dtype, const void* src, uint64_t n, const char* to_dtype, void* dst);

#ifdef __cplusplus
}
#endif
#endif

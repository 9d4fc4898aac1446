// The S3 REST dialect: `s3://bucket/key` against AWS or an S3-compatible endpoint, and
// `gs://bucket/key` against the GCS XML API (https://storage.googleapis.com, or
// CKB_GS_ENDPOINT), which speaks the same dialect. Requests: HEAD, ranged GET,
// ListObjectsV2 (continuation tokens), PUT, multipart create / upload part / complete / abort,
// DELETE. Signed with SigV4 (S3 credentials, GCS HMAC keys with region "auto"), sent with a
// GCS bearer token, or anonymous. Addressing: path-style (endpoint/bucket/key) when an endpoint
// is set, RemoteOptions::path_style is on, for gs:// and for bucket names with dots;
// virtual-hosted (bucket.s3.<region>.amazonaws.com) otherwise.
#pragma once

#include <string>

#include "io/remote/object_store.h"
#include "io/remote/url.h"

namespace ckb::remote {

// `scheme` is Scheme::S3 or Scheme::GS. Credentials are looked up now (credentials.h).
ObjectStorePtr make_s3_store(Scheme scheme, const std::string& bucket, const RemoteOptions& options);

}  // namespace ckb::remote

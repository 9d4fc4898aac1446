// Where the remote stores' credentials come from.
//  - S3: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else the profile
//    (RemoteOptions::profile, AWS_PROFILE, "default") of AWS_SHARED_CREDENTIALS_FILE or
//    ~/.aws/credentials; none of these: anonymous (unsigned requests, for public buckets).
//    Region: RemoteOptions::region, AWS_REGION, AWS_DEFAULT_REGION, the profile's `region` in
//    AWS_CONFIG_FILE or ~/.aws/config, else us-east-1.
//  - GCS: a bearer token (RemoteOptions::bearer_token, GOOGLE_OAUTH_ACCESS_TOKEN, or the first
//    line printed by CKB_GS_TOKEN_COMMAND, run once per process and cached), else HMAC keys
//    GS_ACCESS_KEY_ID / GS_SECRET_ACCESS_KEY (SigV4, region "auto"), else anonymous.
//    Not supported: minting tokens from a service-account key or the metadata server (use
//    CKB_GS_TOKEN_COMMAND="gcloud auth print-access-token").
//  - http(s): RemoteOptions::bearer_token, else CKB_HTTP_TOKEN (sent to any host), else HF_TOKEN
//    (sent only to huggingface.co / hf.co hosts).
#pragma once

#include <optional>
#include <string>

#include "io/remote/object_store.h"
#include "io/remote/sigv4.h"

namespace ckb::remote {

// nullopt: anonymous.
std::optional<SigV4Credentials> aws_credentials(const RemoteOptions& options);
std::string aws_region(const RemoteOptions& options);

struct GcsAuth {
  std::string bearer;                     // non-empty: Authorization: Bearer
  std::optional<SigV4Credentials> hmac;   // else SigV4 with these, else anonymous
};
GcsAuth gcs_auth(const RemoteOptions& options);

// The bearer token for an http(s) host ("" when none applies).
std::string http_bearer(const RemoteOptions& options, const std::string& host);

// One value of an INI file's section ("" when absent): `section` is "default", "profile x", ...
std::string ini_value(const std::string& path, const std::string& section, const std::string& name);

}  // namespace ckb::remote

// Read-only objects behind `https://host[:port]/path` (and `http://`): HEAD for the size
// (falling back to a `Range: bytes=0-0` GET and its Content-Range when HEAD is refused, as
// pre-signed URLs do), ranged GETs, redirects followed (never from https to http; the
// Authorization header is not sent to another host). `Authorization: Bearer` from
// credentials.h's http_bearer(). Listing and writing throw UsageError.
#pragma once

#include <string>

#include "io/remote/object_store.h"
#include "io/remote/url.h"

namespace ckb::remote {

// `scheme` is Scheme::Http or Scheme::Https; `host` is "host[:port]".
ObjectStorePtr make_http_store(Scheme scheme, const std::string& host, const RemoteOptions& options);

}  // namespace ckb::remote

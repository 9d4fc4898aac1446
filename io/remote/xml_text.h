// The little XML the S3 REST API answers with (ListObjectsV2 pages, multipart upload ids,
// errors), read without a general parser: the text of an element, entities decoded.
// Elements are matched by exact name and must not nest in themselves (true of S3's answers).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ckb::remote {

// The text of the first <tag>...</tag> at or after `from`, entities decoded; nullopt when
// absent. `<tag/>` is an empty text.
std::optional<std::string> xml_text(std::string_view xml, std::string_view tag, std::size_t from = 0);
// The raw contents of every <tag>...</tag>, in order (for <Contents> blocks).
std::vector<std::string_view> xml_elements(std::string_view xml, std::string_view tag);
// &amp; &lt; &gt; &quot; &apos; &#N; &#xH; decoded; anything else (malformed) kept as is.
std::string xml_unescape(std::string_view s);

}  // namespace ckb::remote

// ckptbridge reads and writes little-endian data with memcpy; refuse big-endian hosts.
#include "io/byte_reader.h"

#include <bit>

static_assert(std::endian::native == std::endian::little, "ckptbridge assumes a little-endian host");

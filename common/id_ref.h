// A job or task id as users write it, parsed: "j7" (a whole job) or "j7.2" (one task of it).
// Apart from common/ids.h so that the task spec parser (below the protocol) can read ids without
// including the protocol.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace orq {

// A parsed id: a whole job (index empty) or one task of it.
struct IdRef {
  uint64_t job = 0;
  std::optional<uint32_t> index;
  bool operator==(const IdRef&) const = default;
};
// Nullopt when `text` is not an id ("j7", "j7.2"; the leading 'j' may be left out).
std::optional<IdRef> ParseId(std::string_view text);

}  // namespace orq

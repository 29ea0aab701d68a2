// Job and task ids as users see them: a job is "j7", its tasks "j7.0", "j7.1", ...
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/protocol.h"

namespace orq {

std::string FormatJobId(uint64_t job);
std::string FormatTaskId(TaskId id);

// A parsed id: a whole job (index empty) or one task of it.
struct IdRef {
  uint64_t job = 0;
  std::optional<uint32_t> index;
};
// Nullopt when `text` is not an id ("j7", "j7.2"; the leading 'j' may be left out).
std::optional<IdRef> ParseId(std::string_view text);

std::string_view StatusName(TaskStatus status);
// The status of that name ("ok", "failed", "timeout", "cancelled", "worker_lost").
std::optional<TaskStatus> ParseStatus(std::string_view name);

}  // namespace orq

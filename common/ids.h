// Job and task ids as users see them: a job is "j7", its tasks "j7.0", "j7.1", ...
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/id_ref.h"  // IdRef, ParseId
#include "common/protocol.h"

namespace orq {

std::string FormatJobId(uint64_t job);
std::string FormatTaskId(TaskId id);
std::string FormatId(const IdRef& id);

std::string_view StatusName(TaskStatus status);
// "waiting", "queued", "delayed", "running", "finished".
std::string_view StateName(TaskState state);
// The status of that name ("ok", "failed", "timeout", "cancelled", "worker_lost").
std::optional<TaskStatus> ParseStatus(std::string_view name);

}  // namespace orq

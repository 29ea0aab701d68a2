// Whether a submitted job may be accepted as it is: each task's spec, its --halt, its
// dependencies (inside the job, and on the jobs the broker has), the limits it names, and its
// context's size. Pure: the first fault, as one sentence naming the task and field.
#pragma once

#include <cstddef>
#include <optional>

#include "broker/limits.h"
#include "broker/task_table.h"
#include "common/error.h"
#include "common/protocol.h"

namespace orq {

std::optional<Error> CheckSubmission(const SubmitRequest& request, const TaskTable& tasks,
                                     const Limits& limits, size_t max_tasks_per_job);

// The specs of `orq retry`'s new job: `specs` are the tasks of job `old` at `indexes` that did not
// end ok, in that order. A dependency on a task of the old job runs after its new copy when that
// is retried too, else after the old one (which ended ok).
std::vector<TaskSpec> RetrySpecs(std::vector<TaskSpec> specs, const std::vector<uint32_t>& indexes,
                                 uint64_t old);

}  // namespace orq

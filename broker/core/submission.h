// Whether a submitted job may be accepted as it is: each task's spec, its --halt, its
// dependencies (inside the job, and on the jobs the broker has), the limits it names, and its
// context's size. Pure: the first fault, as one sentence naming the task and field. And what
// `orq retry` submits again.
#pragma once

#include <cstddef>
#include <optional>
#include <unordered_map>

#include "broker/core/job_builder.h"
#include "broker/core/limits.h"
#include "broker/core/spec_windows.h"
#include "broker/core/task_table.h"
#include "common/error.h"
#include "common/protocol.h"

namespace orq {

// `request` is the job's submit without its tasks, which `job` holds.
Expected<void> CheckSubmission(const SubmitRequest& request, const JobBuilder& job,
                               const TaskTable& tasks, const Limits& limits,
                               size_t max_tasks_per_job);

// `orq retry`'s new job (`request.job` is `job`): the tasks that did not end ok, or every task
// with --all, with their specs as submitted (read back through `specs`, a window at a time, so a
// job of millions is never decoded whole). kBadRequest when there is nothing to retry.
Expected<JobBuilder> RetryJob(const RetryRequest& request, const JobRecord& job, Store& store,
                              SpecWindows& specs);

// The spec of `orq retry`'s copy of a task of job `old` that did not end ok. `renumbered` maps
// each retried task's index in `old` to its index in the new job: a dependency on a task of the
// old job runs after its new copy when that is retried too, else after the old one (which ended
// ok).
TaskSpec RetrySpec(TaskSpec spec, const std::unordered_map<uint32_t, uint32_t>& renumbered,
                   uint64_t old);

}  // namespace orq

// What `orq status`, `orq jobs` and `orq explain` are told: read from the broker's parts, never
// changing them. Pure functions over const parts, so a report cannot disturb the lifecycle.
#pragma once

#include <array>

#include "broker/core/parking.h"
#include "broker/core/queues.h"
#include "broker/core/spec_windows.h"
#include "broker/core/store.h"
#include "broker/core/task_table.h"
#include "broker/core/worker_pool.h"
#include "common/error.h"
#include "common/protocol.h"

namespace orq {

// The parts a report reads, as the core has them at `now`.
struct ReportSources {
  const TaskTable& tasks;
  const WorkerPool& workers;
  const Parking& parking;
  const ReadyQueues& ready;
  const DelayedTasks& delayed;
  Store& store;        // (reading it is not const: SQLite steps its statements)
  SpecWindows& specs;  // (nor are the windows: reading one back keeps it)
  SteadyTime now;
};

// The tasks by state and outcome, the workers, limits and locks (the core adds what only it
// knows: its pid, endpoints, counters and journal problem).
StatusReply StatusReport(const ReportSources& from);
// Every job, or those named; kUnknownId names the first id that is not a job the broker has.
Expected<JobsReply> JobsReport(const TaskTable& tasks, const JobsRequest& request, SteadyTime now);
// A job's tasks from `from` on that `filter` lets through: at most `limit` of them, after looking
// at no more than kTaskScanBudget (the reply says where to go on from). kUnknownId for a job the
// broker does not have.
Expected<TasksReply> TasksReport(const ReportSources& from, const TasksRequest& request);
// The tasks waiting now that a worker of allocation queue `shape` (its queues, resources and time
// limit) could run, by task class: those queued in a ready queue it serves, and those parked until
// a worker that can run them comes; not those waiting for dependencies, a delay or a full limit.
// Looks at no more than `budget` tasks; the rest of a ready queue past it counts as runnable.
std::array<uint64_t, kTaskClassCount> AllocDemand(const ReportSources& from,
                                                  const AllocQueueSpec& shape, uint64_t budget);
// Why a task is where it is: its state, and for one that does not run, each reason.
Expected<ExplainedReply> Explain(const ReportSources& from, const ExplainRequest& request);

}  // namespace orq

// What `orq status`, `orq jobs` and `orq explain` are told: read from the broker's parts, never
// changing them. Pure functions over const parts, so a report cannot disturb the lifecycle.
#pragma once

#include "broker/parking.h"
#include "broker/queues.h"
#include "broker/spec_windows.h"
#include "broker/store.h"
#include "broker/task_table.h"
#include "broker/worker_pool.h"
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
// Why a task is where it is: its state, and for one that does not run, each reason.
Expected<ExplainedReply> Explain(const ReportSources& from, const ExplainRequest& request);

}  // namespace orq

// The broker's task table: every job it keeps, each task's state, and the counts by state and by
// outcome that status reports. Passive: BrokerCore decides each move (the lifecycle); the table
// keeps the books so that no count can drift from the states (Move() is the one place a state
// changes), names jobs, resolves ids, and empties what ended jobs no longer need (Compact()).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <variant>
#include <vector>

#include "broker/core/delivery.h"
#include "broker/core/journal.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/ids.h"
#include "common/protocol.h"

namespace orq {

struct TaskRecord {
  // What each state has of its own (Data's alternatives are in TaskState's order).
  struct Waiting {
    uint32_t pending = 0;  // dependencies that have not ended yet
  };
  struct Queued {
    uint32_t since = 0;  // ms after its job's submission that it was queued (dispatch latency)
  };
  struct Delayed {};
  struct Running {
    uint32_t worker : 31 = 0;           // the worker holding the lease
    uint32_t cancel_requested : 1 = 0;  // its worker was told to stop it
  };
  struct Finished {
    TaskStatus status = TaskStatus::kOk;
  };
  using Data = std::variant<Waiting, Queued, Delayed, Running, Finished>;

  // (Its spec is not here: SpecWindows has it, broker/core/spec_windows.h.)
  uint32_t attempt = 0;   // executions started so far
  uint32_t failures = 0;  // failed executions that were retried
  Data data = Queued{};   // its state, and what that state has (TaskTable::Move changes it)

  TaskState state() const { return static_cast<TaskState>(data.index()); }
  Waiting& waiting() { return std::get<Waiting>(data); }
  Running& running() { return std::get<Running>(data); }
  const Running& running() const { return std::get<Running>(data); }
};
static_assert(std::variant_size_v<TaskRecord::Data> == kTaskStateCount);
static_assert(
    std::is_same_v<std::variant_alternative_t<size_t(TaskState::kRunning), TaskRecord::Data>,
                   TaskRecord::Running>);
static_assert(
    std::is_same_v<std::variant_alternative_t<size_t(TaskState::kWaiting), TaskRecord::Data>,
                   TaskRecord::Waiting>);
// A job may hold millions of tasks: what each costs is counted (docs/PERFORMANCE.md).
static_assert(sizeof(TaskRecord) == 16);

struct JobRecord {
  std::shared_ptr<const JobContext> context;  // its shell tasks' cwd and environment
  // What remote workers get instead when not all of it travels (JobContext::named): the cwd,
  // and the named variables to set on top of their own environment. Made when first needed.
  std::shared_ptr<const JobContext> remote_context;
  std::vector<std::string> remote_env;
  SteadyTime submitted_at{};
  uint32_t ok = 0, failed = 0;  // finished tasks by outcome (failed: any status but ok)
  std::string label;            // its first task, for `orq jobs`
  std::vector<TaskRecord>
      tasks;  // emptied once every task has ended (Compact()): a few counters stay
  uint32_t unfinished = 0;
  SteadyTime finished_at{};            // when unfinished became 0
  uint32_t first_failed = UINT32_MAX;  // the first of its tasks to end other than ok
  std::string key;                     // its idempotency key (submit --key); empty: none
  uint32_t size = 0;                   // its tasks, also once `tasks` is emptied
  std::array<uint32_t, kTaskStatusCount> ended{};  // its finished tasks by TaskStatus
  bool spilled = false;        // an outcome's output went to files (removed on forget)
  HaltPolicy halt;             // GNU parallel's --halt (orq run)
  bool halted = false;         // its halt decided: no task of it starts again
  uint8_t kind = kMixedKinds;  // its tasks' kind (TaskBody's index) when all are of one
  static constexpr uint8_t kMixedKinds = UINT8_MAX;
};

// A task for people: its command line, or its kind (at most 120 characters).
std::string Label(const TaskSpec& spec);

// Sets a shell task's context for a worker: the job's, or for a remote worker only what of it
// travels (JobContext::named), made once per job.
void ShareContext(bool remote, JobRecord& job, Assignment& a);

class TaskTable {
 public:
  // A new job of `size` tasks, each counted as queued (the core then moves those that wait or
  // are delayed); `first` is its first task, for its label. `number` 0: the next free number.
  // Returns its number.
  uint64_t Add(uint32_t size, const TaskSpec* first, std::shared_ptr<const JobContext> context,
               SteadyTime submitted_at, std::string key, uint64_t number = 0);
  // A job the journal kept whose every task had ended: only its counts come back.
  void AddEnded(uint64_t number, std::shared_ptr<const JobContext> context, SteadyTime submitted_at,
                std::string key, const RecoveredJob::Ended& ended, SteadyTime now);

  // The task; for a task of a compacted job, a finished stand-in. Null: no such task.
  TaskRecord* Find(TaskId id);
  const TaskRecord* Find(TaskId id) const { return const_cast<TaskTable*>(this)->Find(id); }
  JobRecord* FindJob(uint64_t number);
  const JobRecord* FindJob(uint64_t number) const;
  JobRecord& job(uint64_t number) { return jobs_.at(number); }
  // The job submitted with this idempotency key (submit --key).
  std::optional<uint64_t> JobOfKey(const std::string& key) const;
  const std::unordered_map<uint64_t, JobRecord>& jobs() const { return jobs_; }

  // The one place a task's state changes (but to kFinished: Finish()), so the counts stay true.
  void Move(TaskRecord& task, TaskRecord::Data to);
  // The task ended with `status`: counted in its job (and the job's first failure, and when the
  // job ended). Returns its job.
  JobRecord& Finish(TaskId id, TaskRecord& task, TaskStatus status, SteadyTime now);

  // Expands ids into tasks, in order, jobs expanded; with `waiter`, also counts its mentions of
  // each job and task. kUnknownId names the first id that is not a job or task of the table.
  Expected<std::vector<TaskId>> Resolve(const std::vector<IdRef>& ids,
                                        Delivery::Request* waiter = nullptr) const;
  // The task, if the table has it; kUnknownId otherwise.
  Expected<TaskId> ResolveTask(TaskId id) const;
  // The jobs, if the table has each; kUnknownId naming the first it does not.
  Expected<std::vector<uint64_t>> ResolveJobs(std::vector<uint64_t> jobs) const;

  // Empties the tasks of the jobs that ended since the last call (the store keeps their specs
  // and outcomes). Called at the end of each entry point, so no caller is iterating
  // them.
  void Compact();
  // The kept job that finished first (the order retention and the memory bound forget in).
  std::optional<uint64_t> OldestFinished();
  void PopOldestFinished() { finished_order_.pop_front(); }
  // Forgets an ended job (its outcomes are the caller's to erase); returns it.
  JobRecord Remove(uint64_t number);

  uint64_t count(TaskState state) const { return by_state_[static_cast<size_t>(state)]; }
  uint64_t finished(TaskStatus status) const { return by_status_[static_cast<size_t>(status)]; }
  // Outcomes kept: every finished task of every job kept.
  uint64_t finished_total() const;

 private:
  std::unordered_map<uint64_t, JobRecord> jobs_;
  uint64_t next_job_ = 1;
  std::unordered_map<std::string, uint64_t> keys_;  // idempotency keys (submit --key) -> job
  std::deque<uint64_t> finished_order_;             // jobs in finishing order (may be forgotten)
  std::vector<uint64_t> ended_;                     // jobs whose last task ended: for Compact()
  TaskRecord compacted_task_;  // what Find() returns for a compacted job's tasks
  std::array<uint64_t, kTaskStateCount> by_state_{};    // kFinished is counted by status:
  std::array<uint64_t, kTaskStatusCount> by_status_{};  // finished tasks by TaskStatus
};

}  // namespace orq

// How the broker comes back after a restart: the events the core records as things happen
// (leases, retries, cancel requests, limits), buffered by the journal until the shell commits
// them, and what the journal gives back on start (RecoveredJob) for BrokerCore::Restore(). The
// journal on disk is broker/sqlite_journal.h; the core sees only this interface and the Store.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "broker/core/store.h"
#include "common/protocol.h"

namespace orq {

// How the broker comes back after a restart: the events between a job's submission and its
// tasks' outcomes (both in the Store), which Load() replays.
class Journal {
 public:
  virtual ~Journal() = default;
  virtual void RecordLease(TaskId id, uint32_t attempt) = 0;
  // A failed attempt will run again in `delay` seconds.
  virtual void RecordRetry(TaskId id, double delay, const std::string& error) = 0;
  virtual void RecordCancelRequest(TaskId id) = 0;
  // A limit was set (orq limit set), or removed.
  virtual void RecordLimit(const LimitSpec& limit, bool removed) = 0;
};

// `orq broker --no-journal` and tests: a broker that does not come back has nothing to record.
class NullJournal final : public Journal {
 public:
  void RecordLease(TaskId, uint32_t) override {}
  void RecordRetry(TaskId, double, const std::string&) override {}
  void RecordCancelRequest(TaskId) override {}
  void RecordLimit(const LimitSpec&, bool) override {}
};

// One task as the journal last saw it.
struct RecoveredTask {
  TaskSpec spec;
  uint32_t attempts = 0;  // executions started
  uint32_t failures = 0;  // failed attempts that were retried
  bool cancel_requested = false;
  std::optional<TaskOutcome> outcome;  // set when finished
  double retry_due = 0;                // wall-clock seconds; set while a retry waits
  std::string last_error;
};

struct RecoveredJob {
  uint64_t job = 0;
  double submitted = 0;  // wall-clock seconds since the epoch
  JobContext context;
  std::string key;                   // its idempotency key; empty: none
  std::vector<RecoveredTask> tasks;  // empty for a job whose every task has ended:
  // then only what the broker keeps of it (a restart costs what live work costs, not history).
  struct Ended {
    uint32_t size = 0;                                   // its tasks
    std::array<uint32_t, kTaskStatusCount> by_status{};  // of them, by TaskStatus
    uint32_t first_failed = UINT32_MAX;                  // the lowest index that did not end ok
    TaskSpec first;                                      // for its label
  };
  std::optional<Ended> ended;
};

}  // namespace orq

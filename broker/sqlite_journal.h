// The broker's durable record of jobs, leases, retries, cancels and results.
//
// BrokerCore calls the Journal's Record* methods and the Store's AddJob/Put/Forget as things
// happen; they only buffer. The shell (broker/durability.h) calls Commit() once per loop turn,
// before it sends any reply, so "accepted" (the job id printed by `orq submit`) always means
// "committed to disk", and all the submits and results of one turn share one fsync (group commit).
// On start, Load() gives back every job not forgotten, for BrokerCore::Restore().
//
// Layout (SQLite, WAL, synchronous=FULL; PRAGMA user_version = kJournalFormat, and a journal of
// another format is refused with a sentence, never misread):
//   jobs      one row per job: its size and its context (cwd, environment)
//   specs     its specs as submitted: one row per window of kSpecWindow tasks (job, part), each
//             encoded on its own, read back as dispatch reaches them (broker/core/spec_windows.h)
//   events    one row per (job, kind, loop turn) holding a batch of records (leases, retries,
//             cancels) as a blob, so the cost is per batch, not per task
//   outcomes  one row per finished task (job, idx): its status and its encoded TaskOutcome, read
//             back by gather through FindRange()
//   limits    the limits `orq limit set` made; keys: the idempotency keys of `orq submit --key`
// In `orq run`'s own broker (--no-journal-sync) synchronous=OFF and a commit every 20 ms.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/core/journal.h"
#include "broker/core/store.h"
#include "common/protocol.h"

struct sqlite3;
struct sqlite3_stmt;

namespace orq {

// The journal's layout version. 2: jobs carry a JobContext, shell tasks a cwd and env (issue 9).
// 3: specs carry their Needs (dependencies, limits, locks, resources, queue), and the tables
// `limits` and `keys` (issue 10). 4: outcomes one row per task in `outcomes`, read back when
// gathered (issue 11). 5: a job's specs in windows, one row each in `specs`, and its size in
// `jobs` (issue 20). 6: a task's Needs carry its time request; the table `allocs` (issue 22).
// 7: a remote worker's spilled output names the key of the worker that wrote it (issue 35).
inline constexpr int kJournalFormat = 7;

// The journal is also the broker's store (two roles of one SQLite file): a job or outcome put is
// found at once, from memory until the commit and from its table after it.
class SqliteJournal final : public Journal, public Store {
 public:
  // Opens (creating if needed) the journal at `path`. Throws std::runtime_error with a sentence.
  // durable: each commit reaches the disk (fsync) before the broker answers; false for a journal
  // that is only a store on disk for one run's results (orq run's own broker: its directory goes
  // when the run ends, and the run with it if the broker dies), where an fsync per turn only
  // slows each turn.
  static std::unique_ptr<SqliteJournal> Open(const std::string& path, bool durable = true);
  ~SqliteJournal() override;

  // Journal: the events, buffered until Commit().
  void RecordLease(TaskId id, uint32_t attempt) override;
  void RecordRetry(TaskId id, double delay, const std::string& error) override;
  void RecordCancelRequest(TaskId id) override;
  void RecordLimit(const LimitSpec& limit, bool removed) override;

  // Store: a job and an outcome are buffered until Commit() too, and found at once (from memory
  // until the commit, from the tables after it).
  void AddJob(uint64_t job, uint32_t size, std::vector<std::string> windows,
              const JobContext& context, const std::string& key) override;
  std::optional<std::vector<TaskSpec>> Specs(uint64_t job, uint32_t window) override;
  void Put(TaskOutcome outcome) override;
  std::optional<TaskOutcome> Find(TaskId id) override;
  void Forget(uint64_t job, uint32_t size) override;
  size_t FindRange(uint64_t job, uint32_t first, uint32_t count,
                   std::vector<std::optional<TaskOutcome>>& into, size_t max_bytes) override;

  // Writes everything recorded since the last Commit() in one transaction (one fsync). A failure
  // (a full disk: kDiskFull) is returned with SQLite's sentence; what was recorded is kept for the
  // next attempt.
  Expected<void> Commit();
  bool dirty() const {
    return !pending_.empty() || !outcomes_.empty() || !forgotten_.empty() || !limits_.empty() ||
           !keys_.empty() || !allocs_.empty();
  }
  // An allocation queue as it is now (orq alloc), or removed (nullopt); kept until Commit().
  void RecordAllocQueue(const std::string& name, std::optional<AllocQueueInfo> queue);
  // Every allocation queue kept, by name.
  std::vector<AllocQueueInfo> LoadAllocQueues();
  // Every job in the journal, in job order, with its tasks' state replayed from the events.
  std::vector<RecoveredJob> Load();
  // Every limit set and not removed.
  std::vector<LimitSpec> LoadLimits();

 private:
  void CommitOrThrow();  // Commit()'s work; SQLite's failures are thrown as std::runtime_error
  void WriteJobs();
  void WriteOutcomes();
  void WriteForgotten();
  void WriteSettings();
  // Load()'s parts.
  std::unordered_map<uint64_t, RecoveredJob::Ended> EndedJobs();
  std::vector<RecoveredJob> LoadJobs(std::unordered_map<uint64_t, RecoveredJob::Ended> ended,
                                     std::unordered_map<uint64_t, size_t>& where);
  void ReplayEvents(std::vector<RecoveredJob>& jobs,
                    const std::unordered_map<uint64_t, size_t>& where);
  void LoadOutcomes(std::vector<RecoveredJob>& jobs);
  explicit SqliteJournal(sqlite3* db);
  void Exec(const char* sql);

  struct RetryRecord {
    uint32_t index;
    double due;  // wall-clock seconds
    std::string error;
  };
  // Records of one job waiting for Commit(), one buffer per kind.
  struct Pending {
    bool added = false;                // the job was submitted in this turn: then
    uint32_t size = 0;                 // its tasks,
    std::vector<std::string> windows;  // its specs (encoded windows)
    std::string context;               // and its context
    std::vector<Lease> leases;
    std::vector<RetryRecord> retries;
    std::vector<uint32_t> cancels;
  };

  sqlite3* db_;  // owned; closed by the destructor
  std::unordered_map<uint64_t, Pending> pending_;
  // Recorded, not yet committed: its status and its encoding (as the row will hold it).
  struct PendingOutcome {
    TaskStatus status;
    std::string body;
  };
  std::unordered_map<TaskId, PendingOutcome, TaskIdHash> outcomes_;
  sqlite3_stmt* find_range_ = nullptr;  // SELECT of a range of a job's outcomes, prepared once
  sqlite3_stmt* find_specs_ = nullptr;  // SELECT of a window of a job's specs, idem
  std::vector<uint64_t> forgotten_;
  std::vector<std::pair<LimitSpec, bool>> limits_;      // set (false) or removed (true)
  std::vector<std::pair<uint64_t, std::string>> keys_;  // job, key
  // Allocation queues by name: encoded, or empty when removed.
  std::vector<std::pair<std::string, std::optional<std::string>>> allocs_;
};

}  // namespace orq

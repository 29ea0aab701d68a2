// What the broker keeps of its jobs: each job's specs as submitted and each finished task's one
// outcome. BrokerCore, delivery and the reports read and write them through this interface only.
// Two stores: the journal (SqliteJournal, broker/sqlite_journal.h), which keeps them on disk, so
// the broker's memory holds live work only; and MemoryStore, for `--no-journal` and tests, which
// keeps them in memory (the broker bounds how many outcomes: BrokerOptions::memory_results).
#pragma once

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/codec.h"
#include "common/protocol.h"

namespace orq {

// A job's specs are kept in windows of this many tasks (the last one may hold fewer), each encoded
// on its own (EncodeSpecs): the store writes and reads a window at a time, and the broker decodes
// only the windows that dispatch reaches (broker/core/spec_windows.h).
inline constexpr uint32_t kSpecWindow = 1024;

// A job's specs cut into encoded windows.
std::vector<std::string> EncodeWindows(const std::vector<TaskSpec>& specs);

class Store {
 public:
  virtual ~Store() = default;
  // A new job of `size` tasks: its specs as submitted (encoded windows of kSpecWindow, for
  // dispatch, `orq retry` and a restart), its context, and its idempotency key (empty: none).
  virtual void AddJob(uint64_t job, uint32_t size, std::vector<std::string> windows,
                      const JobContext& context, const std::string& key) = 0;
  // Window `window` of a job's specs (tasks window * kSpecWindow on), decoded; nullopt for a job
  // or window the store does not have.
  virtual std::optional<std::vector<TaskSpec>> Specs(uint64_t job, uint32_t window) = 0;
  // Records the one outcome of a task. A task has at most one: callers never Put twice.
  virtual void Put(TaskOutcome outcome) = 0;
  // The outcome of a finished task; nullopt while it is unfinished.
  virtual std::optional<TaskOutcome> Find(TaskId id) = 0;
  // Appends the outcomes of tasks first, first+1, ... of `job`, in order (nullopt: unfinished):
  // `count` of them, or fewer when their ApproxWireBytes pass `max_bytes` (the one that passes it
  // is the last; always at least one). Returns how many it appended. One read where the store can,
  // never holding much more than max_bytes.
  virtual size_t FindRange(uint64_t job, uint32_t first, uint32_t count,
                           std::vector<std::optional<TaskOutcome>>& into, size_t max_bytes) {
    size_t bytes = 0;
    for (uint32_t i = 0; i < count; ++i) {
      into.push_back(Find({job, first + i}));
      if (into.back()) bytes += ApproxWireBytes(*into.back());
      if (bytes > max_bytes) return i + 1;
    }
    return count;
  }
  // Forgets a job of `size` tasks: its specs and outcomes.
  virtual void Forget(uint64_t job, uint32_t size) = 0;
};

class MemoryStore final : public Store {
 public:
  // The specs stay encoded (a few bytes a task); a window is decoded when it is read.
  void AddJob(uint64_t job, uint32_t, std::vector<std::string> windows, const JobContext&,
              const std::string&) override {
    specs_[job] = std::move(windows);
  }
  std::optional<std::vector<TaskSpec>> Specs(uint64_t job, uint32_t window) override {
    auto it = specs_.find(job);
    if (it == specs_.end() || window >= it->second.size()) return std::nullopt;
    return DecodeSpecs(it->second[window]);
  }
  void Put(TaskOutcome outcome) override {
    const TaskId id = outcome.id;
    outcomes_.insert_or_assign(id, std::move(outcome));
  }
  std::optional<TaskOutcome> Find(TaskId id) override {
    auto it = outcomes_.find(id);
    if (it == outcomes_.end()) return std::nullopt;
    return it->second;
  }
  void Forget(uint64_t job, uint32_t size) override {
    specs_.erase(job);
    for (uint32_t i = 0; i < size; ++i) outcomes_.erase({job, i});
  }

 private:
  std::unordered_map<uint64_t, std::vector<std::string>> specs_;  // encoded windows
  std::unordered_map<TaskId, TaskOutcome, TaskIdHash> outcomes_;
};

}  // namespace orq

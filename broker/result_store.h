// Where the broker keeps finished tasks' outcomes. BrokerCore writes and reads through this
// interface only: the broker with a journal reads them back from SQLite (SqliteJournal is its
// store), so its memory holds live work only; `--no-journal` and tests keep them in memory.
#pragma once

#include <optional>
#include <unordered_map>
#include <vector>

#include "common/codec.h"
#include "common/protocol.h"

namespace orq {

class ResultStore {
 public:
  virtual ~ResultStore() = default;
  // Records the one outcome of a task. A task has at most one: callers never Put twice. (A store
  // that is also the journal has it already: Journal::RecordOutcome, or it was loaded from there.)
  virtual void Put(TaskOutcome outcome) = 0;
  // The outcome of a finished task; nullopt while it is unfinished.
  virtual std::optional<TaskOutcome> Find(TaskId id) = 0;
  // Removes a finished task's outcome (its job is forgotten).
  virtual void Erase(TaskId id) = 0;
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
};

class MemoryResultStore final : public ResultStore {
 public:
  void Put(TaskOutcome outcome) override {
    const TaskId id = outcome.id;
    outcomes_.insert_or_assign(id, std::move(outcome));
  }
  std::optional<TaskOutcome> Find(TaskId id) override {
    auto it = outcomes_.find(id);
    if (it == outcomes_.end()) return std::nullopt;
    return it->second;
  }
  void Erase(TaskId id) override { outcomes_.erase(id); }

 private:
  std::unordered_map<TaskId, TaskOutcome, TaskIdHash> outcomes_;
};

}  // namespace orq

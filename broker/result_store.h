// Where the broker keeps finished tasks' outcomes. BrokerCore writes and reads through this
// interface only, so a durable journal (SQLite) can stand in for the in-memory store.
#pragma once

#include <unordered_map>

#include "common/protocol.h"

namespace orq {

class ResultStore {
 public:
  virtual ~ResultStore() = default;
  // Records the one outcome of a task. A task has at most one: callers never Put twice.
  virtual void Put(TaskOutcome outcome) = 0;
  // The outcome of a finished task; nullptr while it is unfinished.
  virtual const TaskOutcome* Find(TaskId id) const = 0;
  // Removes a finished task's outcome (its job is forgotten).
  virtual void Erase(TaskId id) = 0;
};

class MemoryResultStore final : public ResultStore {
 public:
  void Put(TaskOutcome outcome) override {
    const TaskId id = outcome.id;
    outcomes_.insert_or_assign(id, std::move(outcome));
  }
  const TaskOutcome* Find(TaskId id) const override {
    auto it = outcomes_.find(id);
    return it == outcomes_.end() ? nullptr : &it->second;
  }
  void Erase(TaskId id) override { outcomes_.erase(id); }

 private:
  std::unordered_map<TaskId, TaskOutcome, TaskIdHash> outcomes_;
};

}  // namespace orq

// The specs of the broker's tasks, as the lifecycle needs them. A job's specs stay in the Store
// (encoded, in windows of kSpecWindow; on disk for the journal) and are read back a window at a
// time as dispatch reaches them; the few most recently used windows stay decoded. Dispatch takes
// a job's tasks in order, so it reads each window once: a queued task costs the broker its Task
// and its queue entry, not its spec. A running task's lease holds on to its spec (Worker::leases),
// so that its end never reads a window back however far dispatch has gone meanwhile. (What a lease
// holds keeps its window alive, and a window still alive is found again rather than read twice:
// at worst, with running tasks spread over every window of a job, the job's specs are all decoded
// once, as they were before windows; dispatch in order keeps a few.)
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "broker/core/store.h"
#include "common/ids.h"
#include "common/task_spec.h"

namespace orq {

class SpecWindows {
 public:
  explicit SpecWindows(Store& store) : store_(store) {}

  // Task `id`'s spec, from its window. The pointer keeps it alive however the windows change
  // meanwhile. Throws std::runtime_error when the store has no such spec (a
  // task the broker has always has one: the store lost it).
  std::shared_ptr<const TaskSpec> Look(TaskId id);
  // The same spec, uncounted: valid until the next call of this class (for a caller that only
  // reads it at once).
  const TaskSpec& Peek(TaskId id);
  // A window of a new job, already decoded: kept as the most recent, sparing a read.
  void Put(uint64_t job, uint32_t window, std::vector<TaskSpec> specs);
  // A job is forgotten: its windows go.
  void Forget(uint64_t job);

 private:
  struct Window {
    uint64_t job = 0;
    uint32_t number = 0;
    std::shared_ptr<const std::vector<TaskSpec>> specs;
  };
  void Keep(Window window);  // as the most recent, the oldest out
  // A few windows of dispatch's look-ahead and of the tasks just released or finished.
  static constexpr size_t kKept = 8;

  Store& store_;
  std::vector<Window> recent_;  // most recently used last
  // Windows that left recent_ while a running task (or any caller) still held a spec of theirs.
  std::map<std::pair<uint64_t, uint32_t>, std::weak_ptr<const std::vector<TaskSpec>>> away_;
  size_t away_limit_ = kKept;  // away_ is swept of the expired when twice this
};

}  // namespace orq

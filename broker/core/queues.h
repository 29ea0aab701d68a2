// Where queued tasks wait for a slot, and delayed ones for their time. Ready tasks wait in one
// heap per named queue and task class (highest priority, then submission order); a worker takes
// from the best heap among the queues it serves. Delayed tasks (a delay, a retry's backoff) wait
// in one heap by due time. Entries may be stale (a task cancelled while it waited): BrokerCore
// checks each task it pops. Pure and passive; never calls back.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "broker/core/parking.h"  // QueueEntry
#include "broker/core/worker_pool.h"
#include "common/clock.h"
#include "common/protocol.h"

namespace orq {

// A priority queue whose storage can be reserved (a job of a million tasks grows it once), and
// whose entries `orq explain` can count.
template <typename T> struct Heap : std::priority_queue<T> {
  void Reserve(size_t n) { this->c.reserve(n); }
  const std::vector<T>& entries() const { return this->c; }
};

class ReadyQueues {
 public:
  using Queue = Heap<QueueEntry>;

  // `queue` is the task's named queue ("" for the default one), `c` its class.
  void Push(const std::string& queue, size_t c, QueueEntry entry) { queues_[queue][c].push(entry); }
  // Room for `more` entries of class `c` in the default queue (where big jobs go).
  void ReserveDefault(size_t c, size_t more) {
    Queue& q = queues_[""][c];
    q.Reserve(q.size() + more);
  }
  // The queue of class `c` whose best task `w` takes next (highest priority among the queues it
  // serves), or null when none has one.
  Queue* Next(const Worker& w, size_t c);
  // The queue of `queue` and class `c`; null when it never had a task.
  const Queue* Find(const std::string& queue, size_t c) const;
  // Every named queue's heaps, by class ("" is the default queue).
  const std::map<std::string, std::array<Queue, kTaskClassCount>>& all() const { return queues_; }

 private:
  std::map<std::string, std::array<Queue, kTaskClassCount>> queues_;
};

class DelayedTasks {
 public:
  void Add(TaskId id, SteadyTime due) { heap_.push({due, next_seq_++, id}); }
  // The next task due at `now` or before, taken off; nullopt when none is.
  std::optional<TaskId> PopDue(SteadyTime now);
  // When the next one is due; nullopt when none waits.
  std::optional<SteadyTime> NextDue() const;
  // When the task is due (its earliest entry); nullopt when it has none. O(delayed): for explain.
  std::optional<SteadyTime> DueOf(TaskId id) const;

 private:
  struct Entry {
    SteadyTime due;
    uint64_t seq;  // tie-break between tasks due at the same time: first added, first out
    TaskId id;
    bool operator<(const Entry& o) const {  // min-heap on due time
      return due != o.due ? due > o.due : seq > o.seq;
    }
  };
  Heap<Entry> heap_;
  uint64_t next_seq_ = 0;
};

}  // namespace orq

// The gates a task passes before it starts (broker/core/limits.h: limits and locks; and kWorker, a
// worker that can run it at all) and the tasks parked on them. A queued task whose gates cannot
// all be granted is parked on the first one in the way, off the ready queue, so it blocks nobody
// behind it; when that gate has room, Unpark() hands back as many of its tasks as the room (locks:
// one writer, or the readers once no writer waits), for BrokerCore to queue again. A task handed
// back is that gate's candidate until it is dispatched or parked again. Pure: it keeps the books,
// returns the tasks to queue, and never calls back.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <queue>
#include <unordered_map>
#include <vector>

#include "broker/core/limits.h"
#include "common/clock.h"
#include "common/protocol.h"

namespace orq {

// A task in a ready queue or parked on a gate. A max-heap of them gives the highest priority
// first, then submission order (job, then index), so a task handed back by a lost worker goes
// back to its place, not to the end.
// Its fields laid out by hand: 16 bytes where {priority, TaskId} takes 24 (a job of 1,000,000
// queued tasks has 1,000,000 of them).
class QueueEntry {
 public:
  QueueEntry(int32_t priority, TaskId id) : priority_(priority), index_(id.index), job_(id.job) {}
  int32_t priority() const { return priority_; }
  TaskId id() const { return {job_, index_}; }
  bool operator<(const QueueEntry& o) const {
    return priority_ != o.priority_ ? priority_ < o.priority_ : id() > o.id();
  }

 private:
  int32_t priority_;
  uint32_t index_;
  uint64_t job_;
};
static_assert(sizeof(QueueEntry) == 16);

class Parking {
 public:
  struct WaitingFor {
    GateKey gate;
    bool candidate = false;  // handed back to the queue (else parked)
    bool writer = false;     // for a lock: it wants to write
  };

  // The limits and locks (for submission checks and explain: read only).
  const Limits& limits() const { return limits_; }
  // Sets a limit (orq limit set; CheckLimitSpec() passed): returns the tasks parked on it that
  // its room lets back into the queue now.
  [[nodiscard]] std::vector<TaskId> SetLimit(const LimitSpec& spec, SteadyTime now) {
    limits_.SetLimit(spec, now);
    return Unpark({GateKey::Kind::kLimit, spec.name}, now);
  }
  // Removes a limit: it limits nothing from now on. Returns the tasks parked on it (all back to
  // the queue); nullopt when there is no such limit.
  [[nodiscard]] std::optional<std::vector<TaskId>> RemoveLimit(const std::string& name,
                                                               SteadyTime now) {
    if (!limits_.RemoveLimit(name)) return std::nullopt;
    return Unpark({GateKey::Kind::kLimit, name}, now);
  }
  // Null when every gate of `needs` can be granted now; else the first one in the way.
  std::optional<Blocked> Check(const Needs& needs, SteadyTime now) const {
    return limits_.Check(needs, now);
  }
  // Grants every gate of `needs` to `id` (broker/core/leases.h: as its lease is granted).
  void Acquire(const Needs& needs, TaskId id, SteadyTime now) { limits_.Acquire(needs, id, now); }

  // Parks task `id` on `gate` (the first of its gates in the way; `needs` tells whether it wants
  // that lock for write).
  void Park(TaskId id, int32_t priority, const Needs* needs, const GateKey& gate);
  // The task leaves the queue (dispatched, ended, adopted): it waits for no gate any more. Returns
  // the tasks that the room it held lets back into the queue.
  [[nodiscard]] std::vector<TaskId> StopWaiting(TaskId id, SteadyTime now);
  // The tasks parked on `gate` that its room lets back into the queue now.
  [[nodiscard]] std::vector<TaskId> Unpark(const GateKey& gate, SteadyTime now);
  // The task stops running (ended, retried, lease lost): its gates are released, once. Returns
  // the tasks that their room lets back into the queue.
  [[nodiscard]] std::vector<TaskId> StopRunning(TaskId id, const Needs* needs, SteadyTime now);

  // Whether any task is parked or a candidate (a quick test before the others).
  bool empty() const { return waiting_for_.empty(); }
  // What the task waits for; null when it is neither parked nor a candidate.
  const WaitingFor* WaitingOf(TaskId id) const;
  // Every parked task and candidate with what it waits for (no order).
  const std::unordered_map<TaskId, WaitingFor, TaskIdHash>& waiting() const { return waiting_for_; }
  // The gates with parked tasks to look at again at `now`: those whose rate has a new token, or
  // with `all`, every one but kWorker (which only a new worker opens).
  std::vector<GateKey> ToRecheck(SteadyTime now, bool all) const;
  // When a limit with parked tasks next has a token; nullopt: none.
  std::optional<SteadyTime> NextToken(SteadyTime now) const;

  // For status: every limit and every lock held or waited for, with their parked tasks.
  std::vector<GateInfo> LimitInfos() const;
  std::vector<GateInfo> LockInfos() const;

 private:
  struct Parked {
    std::priority_queue<QueueEntry> tasks;
    std::priority_queue<QueueEntry> writers;  // locks only: they go before its readers
    uint32_t count = 0;                       // tasks parked here now
    uint32_t candidates = 0;                  // handed back to the queue, not yet dispatched
  };
  uint32_t ParkedOn(const GateKey& gate) const;

  Limits limits_;
  // The tasks parked on a gate, by priority (stale entries are skipped: see waiting_for_).
  std::map<GateKey, Parked> parked_;
  std::unordered_map<TaskId, WaitingFor, TaskIdHash> waiting_for_;  // parked tasks, and candidates
};

}  // namespace orq

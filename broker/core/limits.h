// Cluster-wide gates a task passes before it starts, on any worker: limits (the seed's semaphore:
// at most N holders; and a token-bucket rate of starts) and readers-writer locks (readers share,
// a writer is alone, and once a writer waits, later readers wait behind it). Pure: BrokerCore
// asks Check() with `now` before it dispatches a task, Acquire()s all of a task's gates at once
// when it does (all or none: a task never holds some while it waits for others, so gates cannot
// deadlock), and Release()s them exactly once when the task stops running (it ended, was
// cancelled, failed for a retry, or its lease was lost).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/protocol.h"
#include "common/words.h"

namespace orq {

// A gate a task may wait on: a lock or a limit, by name; or (kWorker) a worker that can run it at
// all (its cpus, resources and queue), which only a new worker can open.
struct GateKey {
  enum class Kind : uint8_t { kLock, kLimit, kWorker };
  Kind kind = Kind::kLimit;
  std::string name;
  friend auto operator<=>(const GateKey&, const GateKey&) = default;
};

// Why a task's gates cannot all be granted now: the first gate in the way, and why (for orq
// explain: "lock db is held for write by j2.0", "limit download is at 2/2").
struct Blocked {
  GateKey gate;
  Reason reason;
};

// Whether `spec` may be set (orq limit set): a valid name, a number of tasks or a rate, a rate
// within bounds. The fault as a sentence naming the limit.
Expected<void> CheckLimitSpec(const LimitSpec& spec);

class Limits {
 public:
  // Sets (creates or changes) a limit; a spec CheckLimitSpec() refuses is refused by the caller.
  void SetLimit(const LimitSpec& spec, SteadyTime now);
  // Removes a limit: it limits nothing from now on (its holders keep running). False: no such one.
  bool RemoveLimit(const std::string& name);
  bool HasLimit(const std::string& name) const { return limits_.count(name) > 0; }
  std::vector<LimitSpec> Specs() const;

  // Null when every gate of `needs` can be granted to `id` at `now`; else the first one in the
  // way. A limit that does not exist limits nothing.
  std::optional<Blocked> Check(const Needs& needs, SteadyTime now) const;
  // Grants every gate of `needs` to `id` (after Check() said yes; a restored lease may be granted
  // over a limit, never over a lock: the caller checks).
  void Acquire(const Needs& needs, TaskId id, SteadyTime now);
  // Returns every gate `id` holds. Each holder is released once: a second call does nothing.
  void Release(const Needs& needs, TaskId id);

  // A writer that waits for `lock` (so later readers wait behind it), or stops waiting.
  void WriterWaits(const std::string& lock, int delta);

  // How many more tasks the gate could take now, ignoring other gates: for a limit, its free
  // holders and whole tokens; for a lock, 1 for a writer when it is free, unbounded for readers
  // while no writer holds it. (UINT32_MAX: unbounded.)
  uint32_t Room(const GateKey& gate, LockMode mode, SteadyTime now) const;
  // When a rate-limited gate next has a token (for the broker's wake-up); nullopt: none limited.
  std::optional<SteadyTime> NextToken(const std::string& limit, SteadyTime now) const;

  // For status and explain.
  struct LockState {
    std::set<TaskId> readers;
    std::optional<TaskId> writer;
    uint32_t writers_waiting = 0;
  };
  struct LimitState {
    LimitSpec spec;
    std::set<TaskId> holders;
    double tokens = 0;  // of the rate's bucket, at `refilled`
    SteadyTime refilled{};
  };
  const std::map<std::string, LockState>& locks() const { return locks_; }
  const std::map<std::string, LimitState>& limits() const { return limits_; }

 private:
  double Tokens(const LimitState& limit, SteadyTime now) const;

  std::map<std::string, LockState> locks_;    // locks held or waited for; others are free
  std::map<std::string, LimitState> limits_;  // every limit set (orq limit set)
};

}  // namespace orq

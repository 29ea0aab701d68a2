// The allocation queues' policy as a pure state machine (orq alloc): when to ask a batch system for
// an allocation of workers, which allocations are queued, running or gone, and when a queue pauses
// itself. The broker's shell (broker/allocator.h) hands it the demand (the tasks waiting that each
// queue's workers could run), the workers registered by allocation, and what the backend answered,
// each with the time; Plan() returns the backend calls to make. It owns no process and reads no
// clock, so tests drive it against a fake backend with a fake clock (alloc/policy_test.cc).
//
// The rule: a queue asks for one more allocation when the tasks waiting need more workers than
// those that may still come (the workers of its allocations not ended that are not registered:
// queued, starting, or not yet back after our restart), while fewer than `backlog` of its
// allocations wait in the batch system's queue and one more (all its workers) keeps it within
// `max_workers`. One submit at a time per queue. Workers leave by themselves when
// idle or near their time limit; an allocation is over when the batch system no longer runs it.
#pragma once

#include <array>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/error.h"
#include "common/protocol.h"

namespace orq {

// Submits that fail in a row before a queue pauses itself, and the wait before trying again after
// each (doubling from the first, at most the last).
inline constexpr uint32_t kAllocFailuresToPause = 3;
inline constexpr std::chrono::milliseconds kAllocRetryFirst{1000};
inline constexpr std::chrono::milliseconds kAllocRetryMax{30000};
// How often a queue with allocations not ended asks the batch system how they are.
inline constexpr std::chrono::milliseconds kAllocPollInterval{2000};

// A call for the backend (alloc/backend.h) to make, for queue `queue`.
struct AllocAction {
  enum class Kind : uint8_t {
    kSubmit,  // submit one allocation (then Submitted())
    kPoll,    // list the queue's allocations the batch system has (then Observed() or PollFailed())
    kCancel,  // cancel allocation `id` (orq alloc rm)
  };
  Kind kind = Kind::kPoll;
  std::string queue;
  std::string id;
  friend bool operator==(const AllocAction&, const AllocAction&) = default;
};

// An allocation as the batch system lists it.
struct BackendJob {
  std::string id;
  AllocState state = AllocState::kQueued;
  std::string detail;  // its state in the batch system's words ("PENDING (Priority)", "TIMEOUT")
};

// The workers registered now from one allocation ("QUEUE/JOBID"), and the most slots of each
// class one of them has (what the queue's workers turn out to offer).
struct AllocWorkerCount {
  uint32_t count = 0;
  Slots slots{};
};

class AllocPolicy {
 public:
  // Queues kept in the journal, before anything else: each is polled before it may submit, so
  // that allocations the batch system still has (even ones submitted just before a crash, found
  // by their job name) are counted, not submitted again.
  void Restore(std::vector<AllocQueueInfo> queues);

  // orq alloc add/pause/resume/rm. Errors are kBadRequest or kUnknownId, with a sentence.
  Expected<AllocQueueInfo> Add(AllocQueueSpec spec, std::string access_file);
  Expected<AllocQueueInfo> Pause(const std::string& name);
  Expected<AllocQueueInfo> Resume(const std::string& name);
  // Removes the queue; returns the cancels of its allocations not ended (none with `keep`).
  Expected<std::vector<AllocAction>> Remove(const std::string& name, bool keep);
  // Every queue, or the one named (kUnknownId when there is none).
  Expected<std::vector<AllocQueueInfo>> List(const std::string& name) const;
  std::vector<AllocQueueInfo> All() const;
  bool empty() const { return queues_.empty(); }
  // The queues, for the shell to ask the core each one's demand.
  std::vector<const AllocQueueSpec*> Specs() const;

  // What to do at `now`: `demand` is, by queue name, the tasks waiting that its workers could run
  // (by class); `workers` the workers registered by allocation. Also counts each allocation's
  // workers. `wall` is the wall-clock time, for display.
  std::vector<AllocAction> Plan(
      const std::map<std::string, std::array<uint64_t, kTaskClassCount>>& demand,
      const std::map<std::string, AllocWorkerCount>& workers, SteadyTime now, double wall);
  // The answer to a kSubmit: the new allocation's id, or the batch system's refusal. False when
  // the queue was removed meanwhile: the caller cancels the allocation, which is nobody's.
  bool Submitted(const std::string& queue, const Expected<std::string>& id, SteadyTime now,
                 double wall);
  // The answer to a kPoll: every allocation of the queue the batch system lists. Those it does
  // not list are over. Returns the allocations that ended now, as "QUEUE/JOBID" (their workers
  // still registered are dropped by the shell).
  std::vector<std::string> Observed(const std::string& queue, const std::vector<BackendJob>& jobs,
                                    SteadyTime now, double wall);
  void PollFailed(const std::string& queue, const std::string& why, SteadyTime now);

  // The queues changed since the last call (to write to the journal), and those removed.
  std::vector<AllocQueueInfo> TakeChanged();
  std::vector<std::string> TakeRemoved() { return std::exchange(removed_, {}); }

  // The workers that one allocation of `spec` would bring for each class until they register:
  // what the queue's workers offered before, else a worker's defaults (one shell slot).
  static Slots DefaultSlots();

 private:
  struct Queue {
    AllocQueueInfo info;
    bool submitting = false;   // a submit is being made
    bool polling = false;      // a poll is being made
    bool polled = false;       // the batch system answered a poll since our start
    SteadyTime next_poll{};    // when to poll next
    SteadyTime next_submit{};  // not before (after a failed submit)
    Slots slots{};             // the most slots per class its workers registered with
    std::string poll_error;    // the last poll's failure, logged once
  };
  Queue* Find(const std::string& name);
  void Changed(Queue& q) { changed_.push_back(q.info.spec.name); }
  // Ends allocation `a`, saying how; keeps the history within kAllocHistory.
  static void End(AllocationInfo& a, std::string how, double wall);
  static void Trim(AllocQueueInfo& info);

  std::map<std::string, Queue> queues_;
  std::vector<std::string> changed_;  // names, possibly repeated
  std::vector<std::string> removed_;
};

// The allocation name a worker registers with: "QUEUE/JOBID".
inline std::string AllocationName(const std::string& queue, const std::string& id) {
  return queue + "/" + id;
}

// Checks an allocation queue's spec (name, numbers); the sentence names the flag at fault.
Expected<void> CheckAllocSpec(const AllocQueueSpec& spec);

}  // namespace orq

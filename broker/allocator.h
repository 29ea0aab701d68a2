// The broker's allocation queues (orq alloc), between its poll loop and the batch system. The
// policy (alloc/policy.h) runs on the loop's thread, fed with the core's demand and workers; the
// backend's calls (sbatch, squeue, scancel: each may take seconds) run one at a time on a thread
// of their own, and their answers come back through a queue that wakes the loop (wake_fd()). The
// queues are kept in the journal (when there is one) each time they change.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>

#include "alloc/backend.h"
#include "alloc/policy.h"
#include "broker/core/broker_core.h"
#include "broker/sqlite_journal.h"

namespace orq {

// How often the policy looks at the demand (a scan of at most kAllocDemandBudget queued tasks per
// queue), and how soon after a submit.
inline constexpr std::chrono::milliseconds kAllocStep{500};
inline constexpr std::chrono::milliseconds kAllocHurry{20};
inline constexpr uint64_t kAllocDemandBudget = 16384;

class Allocator {
 public:
  // `journal`: where the queues are kept (null: in memory only). Starts the backend's thread.
  Allocator(std::unique_ptr<AllocBackend> backend, SqliteJournal* journal);
  // Stops the thread once the call it makes (if any) returns, within that call's deadline.
  ~Allocator();
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  // Readable when the backend answered: the loop polls it, then calls Step().
  int wake_fd() const { return wake_fd_; }
  // The queues the journal kept, at the broker's start.
  void Restore(std::vector<AllocQueueInfo> queues) { policy_.Restore(std::move(queues)); }
  // orq alloc add/list/pause/resume/rm: the reply, or an ErrorReply.
  Message Handle(const AllocRequest& request);
  // Takes the backend's answers (an allocation gone drops its workers from `core`), and plans
  // every kAllocStep (at once after an answer, or with `plan_now`): asks the core for each
  // queue's demand, hands the backend what to do.
  void Step(BrokerCore& core, SteadyTime now, double wall, bool plan_now = false);
  // Tasks were submitted: plan within kAllocHurry rather than at the next kAllocStep (a burst of
  // submits still makes one plan).
  void Hurry(SteadyTime now) {
    if (!policy_.empty()) next_plan_ = std::min(next_plan_, now + kAllocHurry);
  }
  // When Step() should next run; max without queues.
  SteadyTime NextWakeup() const { return policy_.empty() ? SteadyTime::max() : next_plan_; }
  // Every queue, for orq status.
  std::vector<AllocQueueInfo> Infos() const { return policy_.All(); }

 private:
  struct Call {
    AllocAction action;
    AllocQueueInfo queue;  // as it was when the call was made
  };
  struct Answer {
    AllocAction action;
    std::variant<Expected<std::string>, Expected<std::vector<BackendJob>>, Expected<void>>
        result;  // Submit's, Jobs', Cancel's
  };
  void Run();  // the backend's thread
  void Post(std::vector<AllocAction> actions);
  void Keep();  // the changed queues to the journal

  AllocPolicy policy_;
  std::unique_ptr<AllocBackend> backend_;
  SqliteJournal* journal_;  // null: none
  int wake_fd_ = -1;        // an eventfd, written by the thread for each answer
  SteadyTime next_plan_{};
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Call> calls_;      // guarded by mutex_: what the thread is to do, in order
  std::deque<Answer> answers_;  // guarded by mutex_: what it did
  bool stopping_ = false;       // guarded by mutex_
  std::thread thread_;          // last: started once the rest is made
};

}  // namespace orq

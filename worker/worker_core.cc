#include "worker/worker_core.h"

#include <algorithm>
#include <type_traits>

#include "common/codec.h"

namespace orq {

WorkerCore::WorkerCore(WorkerOptions options) : options_(options) {}

ReadyMessage WorkerCore::Ready(SteadyTime now) const {
  ReadyMessage ready{options_.pid,  options_.threads,   options_.slots, {},
                     options_.host, options_.resources, options_.queues};
  for (const auto& [id, attempt] : running_) ready.running.push_back({id, attempt});
  ready.allocation = options_.allocation;
  if (options_.ends_at != SteadyTime::max())
    ready.lifetime_ms = static_cast<uint64_t>(std::max<int64_t>(
        1, std::chrono::duration_cast<std::chrono::milliseconds>(options_.ends_at - now).count()));
  return ready;
}

void WorkerCore::Connected(SteadyTime now, WorkerActions& actions) {
  last_heard_ = std::max(last_heard_, now);  // keeps a reconnect backoff in force
  next_heartbeat_ = now + options_.heartbeat_interval;
  if (idle_since_ == SteadyTime{}) idle_since_ = now;
  ready_sent_ = now;
  actions.send.push_back(Ready(now));
}

void WorkerCore::Reconnected(SteadyTime now, WorkerActions& actions) {
  last_heard_ = std::max(last_heard_, now);
  next_heartbeat_ = now + options_.heartbeat_interval;
  actions.send.push_back(HeartbeatMessage{});
}

void WorkerCore::OnMessage(Message message, SteadyTime now, WorkerActions& actions) {
  last_heard_ = now;
  backoff_ = kReconnectMin;
  std::visit(
      [&](auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, TasksMessage>) {
          if (stopping_) return;  // the broker hands nothing out while it shuts down
          for (Assignment& a : m.tasks) {
            auto [it, fresh] = running_.emplace(a.id, a.attempt);
            if (fresh) {
              actions.start.push_back(std::move(a));
            } else if (it->second != a.attempt) {
              // An earlier execution of it still runs here: ignoring this lease would leave the
              // broker waiting for an attempt nobody runs. That execution's end decides (OnDone).
              it->second = a.attempt;
              again_[a.id] = std::move(a);
            }  // (else the same lease twice: one execution)
          }
          idle_since_ = now;
        } else if constexpr (std::is_same_v<T, CancelTasksMessage>) {
          for (TaskId id : m.ids) {
            if (running_.count(id)) actions.cancel.push_back(id);
          }
        } else if constexpr (std::is_same_v<T, StopMessage>) {
          stopping_ = true;
          stop_deadline_ = std::min(stop_deadline_, now + std::chrono::milliseconds(m.grace_ms));
          if (running_.empty()) actions.exit = true;
        } else if constexpr (std::is_same_v<T, DropOutputMessage>) {
          actions.drop_output = std::move(m.attempts);
        } else if constexpr (std::is_same_v<T, ReadOutputMessage>) {
          actions.read_output.push_back(m);
        } else if constexpr (std::is_same_v<T, WatchMessage>) {
          for (TaskId id : m.ids) {
            if (running_.count(id)) actions.watch.push_back(id);
          }
        } else if constexpr (std::is_same_v<T, ReregisterMessage>) {
          if (ready_sent_ != SteadyTime{} && now - ready_sent_ < options_.heartbeat_interval)
            return;  // a Ready is on its way already
          ready_sent_ = now;
          actions.send.push_back(Ready(now));
        } else if constexpr (std::is_same_v<T, BrokerHeartbeatMessage>) {
          // last_heard_ is all it is for
        } else if constexpr (std::is_same_v<T, ErrorReply>) {
          actions.refused = m.message;  // its registration: no retry can fix it
          actions.exit = true;
        } else {
          // Requests and replies are not for a worker. A message for workers has its case above:
          // a new one without one does not compile.
          static_assert(!ToWorker(T::kCommand), "a message for workers needs a case here");
          ++unexpected_;
        }
      },
      message);
}

void WorkerCore::OnDone(TaskOutcome outcome, SteadyTime now) {
  if (auto it = running_.find(outcome.id); it != running_.end() && it->second != outcome.attempt) {
    // The end of an execution older than the lease we hold now: a result answers that lease;
    // anything else (it was cancelled as stale, say) starts the task again for it.
    auto next = again_.find(outcome.id);
    if (outcome.status != TaskStatus::kOk && next != again_.end()) {
      starts_.push_back(std::move(next->second));
      again_.erase(next);
      return;
    }
    outcome.attempt = it->second;
    if (next != again_.end()) again_.erase(next);
  }
  running_.erase(outcome.id);
  if (running_.empty()) idle_since_ = now;
  pending_.push_back(std::move(outcome));
}

void WorkerCore::Flush(WorkerActions& actions) {
  for (Assignment& a : starts_) actions.start.push_back(std::move(a));
  starts_.clear();
  if (pending_.empty()) return;
  // Batches of about kResultBatchBytes: with one more outcome (at most its two streams and its
  // command), a message stays under what a broker's TCP listener takes (kMaxRemoteMessageBytes).
  WorkerResultsMessage message;
  size_t bytes = 0;
  for (TaskOutcome& o : pending_) {
    bytes += ApproxWireBytes(o);
    message.outcomes.push_back(std::move(o));
    if (message.outcomes.size() == kMaxTasksPerMessage || bytes > kResultBatchBytes) {
      actions.send.push_back(std::move(message));
      message = WorkerResultsMessage{};
      bytes = 0;
    }
  }
  if (!message.outcomes.empty()) actions.send.push_back(std::move(message));
  pending_.clear();
  if (stopping_ && running_.empty()) actions.exit = true;
}

void WorkerCore::Tick(SteadyTime now, WorkerActions& actions) {
  if (stopping_ && now >= stop_deadline_) {
    actions.exit = true;  // the grace is over: what still runs is killed, the broker requeues it
    return;
  }
  if (now >= options_.ends_at) {
    Flush(actions);
    actions.exit = true;  // what still runs goes back to the broker with our goodbye
    actions.leaving = "its time is up (--lifetime): leaving, handing back " +
                      std::to_string(running_.size()) + " running tasks";
    return;
  }
  if (options_.idle_timeout.count() > 0 && running_.empty() && pending_.empty() && !stopping_ &&
      idle_since_ != SteadyTime{} && now - idle_since_ >= options_.idle_timeout) {
    actions.exit = true;
    actions.leaving = "no task for " + std::to_string(options_.idle_timeout.count() / 1000) +
                      " s (--idle-timeout): leaving";
    return;
  }
  if (now - last_heard_ > options_.heartbeat_interval * options_.liveness) {
    // The broker is silent (or we were paused): connect again and register with the leases we
    // hold; the broker keeps those nobody else took. Next try after the backoff.
    actions.reconnect = true;
    last_heard_ = now + backoff_;  // the next try: backoff plus liveness from now
    backoff_ = std::min(backoff_ * 2, kReconnectMax);
  }
  if (now >= next_heartbeat_) {
    actions.send.push_back(HeartbeatMessage{});
    next_heartbeat_ = now + options_.heartbeat_interval;
  }
}

SteadyTime WorkerCore::NextWakeup() const {
  SteadyTime idle_end = SteadyTime::max();
  if (options_.idle_timeout.count() > 0 && running_.empty() && idle_since_ != SteadyTime{})
    idle_end = idle_since_ + options_.idle_timeout;
  return std::min({next_heartbeat_, stop_deadline_, options_.ends_at, idle_end,
                   last_heard_ + options_.heartbeat_interval * options_.liveness +
                       std::chrono::milliseconds(1)});
}

}  // namespace orq

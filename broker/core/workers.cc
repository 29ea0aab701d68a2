// BrokerCore's side of the workers: registration (and the adoption of a returning worker's
// leases), dispatch, results and retries, and a worker's loss. Leases are granted and returned
// through Leases (broker/core/leases.h) alone.
#include <algorithm>
#include <cmath>

#include "broker/core/broker_core.h"
#include "broker/core/helpers.h"
#include "common/ids.h"

namespace orq {

void BrokerCore::On(const Sender& from, ReadyMessage& ready) {
  // The same connection registering again (its Ready crossed a Reregister) keeps what it held:
  // those leases are not adopted anew.
  std::unordered_set<TaskId, TaskIdHash> held;
  if (from.worker) {
    for (const auto& [lease, spec] : from.worker->leases) held.insert(lease);
    DropWorker(from.worker_id, "it registered again");
  }
  if (shutting_down_) return out_.Send(from.identity, StopMessage{0});
  const uint32_t id =
      workers_.Add(from.identity, from.peer.role == Role::kWorker, from.peer.key, ready, now_);
  const Worker& w = workers_.at(id);
  telemetry_.WorkerJoined(w.pid, w.host, now_);
  if (auto stale = Adopt(id, from.peer, ready, held); !stale.empty())
    out_.Send(from.identity, CancelTasksMessage{std::move(stale)});
  // Tasks no worker could run may fit this one.
  Requeue(parking_.Unpark({GateKey::Kind::kWorker, ""}, now_));
  Dispatch();
}

std::vector<TaskId> BrokerCore::Adopt(uint32_t worker_id, const Peer& from,
                                      const ReadyMessage& ready,
                                      const std::unordered_set<TaskId, TaskIdHash>& held) {
  // A worker coming back (after a pause, a partition or our restart) still runs some tasks. Those
  // whose lease nobody else has taken since are adopted; the others are stale: it must drop them.
  Worker& w = workers_.at(worker_id);
  std::vector<TaskId> stale;
  for (const Lease& lease : ready.running) {
    TaskRecord* task = tasks_.Find(lease.id);
    // Only a queued task (its lease lost) may be adopted: only its spec is read (the others'
    // gates are not waited for: StopWaiting would do nothing).
    const auto spec = task && task->state() == TaskState::kQueued ? specs_.Look(lease.id) : nullptr;
    // A task whose gates went to others meanwhile may not go on: that would break a lock.
    const bool gated = spec && spec->needs;
    const Parking::WaitingFor* waiting = gated ? parking_.WaitingOf(lease.id) : nullptr;
    const bool parked = waiting && !waiting->candidate;  // off the ready queue, on a gate
    if (gated && !parking_.empty()) Requeue(parking_.StopWaiting(lease.id, now_));
    // (Nor one it no longer has the resources for: it may have registered with fewer.)
    if (spec && task->attempt == lease.attempt && MayAdopt(lease.id, from.role, from.key) &&
        !leases_.Gated(*spec, now_) && Leases::Fits(w, *spec, now_)) {
      std::vector<std::string> ignored;  // it has its units' variables already
      leases_.Grant(w, lease.id, spec, ignored, now_);
      orphans_.erase(lease.id);
      tasks_.Move(*task, TaskRecord::Running{.worker = worker_id});
      if (!held.count(lease.id)) ++counters_.adopted;
    } else {
      stale.push_back(lease.id);
      // Taken off its gate for the check: back to its queue, where dispatch parks it again.
      if (parked) Enqueue(lease.id);
    }
  }
  return stale;
}

void BrokerCore::On(const Sender& from, WorkerResultsMessage& results) {
  if (!from.worker) {
    // A worker we dropped (paused, partitioned): its results are stale; it must register again,
    // telling us what it still runs.
    counters_.stale_results += results.outcomes.size();
    return out_.Send(from.identity, ReregisterMessage{});
  }
  Worker& worker = *from.worker;
  for (TaskOutcome& outcome : results.outcomes) {
    TaskRecord* task = tasks_.Find(outcome.id);
    if (!task || task->state() != TaskState::kRunning || task->running().worker != from.worker_id ||
        task->attempt != outcome.attempt) {
      ++counters_.stale_results;
      continue;
    }
    ++(outcome.status == TaskStatus::kOk ? worker.done : worker.failed);
    std::vector<TaskId> unparked;
    const auto spec = leases_.Return(worker, outcome.id, now_, unparked);
    Requeue(unparked);
    outcome.worker_pid = worker.pid;
    const bool own_failure =
        outcome.status == TaskStatus::kFailed || outcome.status == TaskStatus::kTimeout;
    if (own_failure && !task->running().cancel_requested &&
        ScheduleRetry(outcome.id, *task, *spec, outcome))
      continue;
    Finish(outcome.id, *task, std::move(outcome), spec);
  }
  Dispatch();
}

void BrokerCore::On(const Sender& from, HeartbeatMessage&) {
  if (!from.worker) out_.Send(from.identity, ReregisterMessage{});
}

void BrokerCore::On(const Sender& from, GoodbyeMessage&) {
  if (from.worker) DropWorker(from.worker_id, "it left");
}

void BrokerCore::On(const Sender& from, OutputMessage& m) {
  if (from.worker) readers_.Output(from.worker_id, m, tasks_.Find(m.id));
}

void BrokerCore::On(const Sender& from, OutputPieceMessage& m) {
  if (m.text.size() > kOutputPieceBytes) {  // counted, and the next worker is asked
    ++counters_.over_bounds;
    m.found = false;
    m.text.clear();
  }
  if (!from.worker || !readers_.Piece(from.worker_id, m, workers_)) ++counters_.unexpected;
}

bool BrokerCore::MayAdopt(TaskId id, Role role, const std::string& key) const {
  auto it = orphans_.find(id);
  if (it == orphans_.end()) return false;  // never leased, or leased to someone else since
  return it->second == key || (it->second.empty() && role == Role::kLocal);
}

void BrokerCore::Dispatch() {
  if (!halts_due_.empty()) Halt();  // before any lease: no task of a halted job starts
  if (shutting_down_ || !journal_problem_.empty()) return;
  std::vector<std::pair<TaskId, size_t>> too_big;  // python tasks whose inputs may not travel
  for (bool progress = true; progress;) {
    progress = false;
    for (const auto& [worker_id, known] : workers_.all()) {
      Worker& w = workers_.at(worker_id);
      TasksMessage message;
      // Tasks another worker could run, but not this one now: back to their queue afterwards.
      std::vector<std::pair<ReadyQueues::Queue*, QueueEntry>> skipped;
      size_t input_bytes = 0;  // the python tasks' inputs in `message`: bounded, the rest waits
      for (size_t c = 0; c < kTaskClassCount; ++c) {
        while (w.in_use[c] < w.capacity[c] && message.tasks.size() < kMaxTasksPerMessage &&
               input_bytes < kMaxCallInputBytes) {
          ReadyQueues::Queue* queue = ready_.Next(w, c);
          if (!queue) break;
          const QueueEntry entry = queue->top();
          queue->pop();
          const TaskId id = entry.id();
          TaskRecord* task = tasks_.Find(id);
          if (!task || task->state() != TaskState::kQueued) continue;  // cancelled while queued
          const auto spec = specs_.Look(id);  // (it stays alive: windows may be read meanwhile)
          const Needs* needs = spec->needs.get();
          const uint32_t cpus = Cpus(*spec);
          if ((needs || cpus > 0) && !Leases::Fits(w, *spec, now_)) {
            if (workers_.AnyCouldRun(*spec, cpus, now_)) {
              skipped.push_back({queue, entry});
            } else {
              if (!parking_.empty()) Requeue(parking_.StopWaiting(id, now_));
              parking_.Park(id, spec->priority, needs,
                            {GateKey::Kind::kWorker, ""});  // until a worker that can comes
            }
            continue;
          }
          if (needs) {
            if (!parking_.empty()) Requeue(parking_.StopWaiting(id, now_));
            if (auto blocked = leases_.Gated(*spec, now_)) {
              parking_.Park(id, spec->priority, needs, blocked->gate);
              continue;
            }
          }
          std::vector<std::string> inputs;
          if (std::holds_alternative<PythonTask>(spec->body)) {
            inputs = Inputs(id, *spec);
            const size_t bytes = InputBytes(inputs);
            if (bytes > kMaxCallInputBytes) {  // ended after the loop (queues stay as they are)
              too_big.push_back({id, bytes});
              continue;
            }
            if (input_bytes + bytes > kMaxCallInputBytes && !message.tasks.empty()) {
              skipped.push_back({queue, entry});  // in this worker's next message
              break;
            }
            input_bytes += bytes;
          }
          Assign(worker_id, w, id, *task, spec, std::move(inputs), message);
        }
      }
      for (auto& [queue, entry] : skipped) queue->push(entry);
      if (message.tasks.empty()) continue;
      progress = true;
      WatchMessage watch;  // the tasks someone waits to read the output of
      for (const Assignment& a : message.tasks) {
        if (readers_.Watched(a.id)) watch.ids.push_back(a.id);
      }
      out_.Send(w.identity, std::move(message));
      if (!watch.ids.empty()) out_.Send(w.identity, std::move(watch));
    }
  }
  EndOverweightCalls(too_big);
}

void BrokerCore::EndOverweightCalls(const std::vector<std::pair<TaskId, size_t>>& calls) {
  for (const auto& [id, bytes] : calls) {
    if (TaskRecord* task = tasks_.Find(id); task && task->state() == TaskState::kQueued)
      Finish(id, *task,
             Ending(TaskStatus::kFailed,
                    "its inputs (the results of the calls it runs after) are " +
                        std::to_string(bytes >> 20) + " MiB; at most " +
                        std::to_string(kMaxCallInputBytes >> 20) +
                        " MiB travel with one call: pass fewer futures, or paths"));
  }
}

void BrokerCore::Assign(uint32_t worker_id, Worker& w, TaskId id, TaskRecord& task,
                        std::shared_ptr<const TaskSpec> looked, std::vector<std::string> inputs,
                        TasksMessage& message) {
  JobRecord& job = tasks_.job(id.job);
  const auto queued_at =
      job.submitted_at + std::chrono::milliseconds(std::get<TaskRecord::Queued>(task.data).since);
  tasks_.Move(task, TaskRecord::Running{.worker = worker_id});
  ++task.attempt;
  telemetry_.TaskStarted(id, task.attempt, w.pid, looked->body.index(), now_ - queued_at, now_);
  if (!orphans_.empty()) orphans_.erase(id);  // leased anew: nobody may adopt the old
  journal_.RecordLease(id, task.attempt);
  Assignment& a =
      message.tasks.emplace_back(Assignment{id, task.attempt, *looked, nullptr, {}, {}});
  if (RunsInContext(*looked)) ShareContext(w.remote, job, a);
  a.inputs = std::move(inputs);
  leases_.Grant(w, id, std::move(looked), a.env, now_);  // (the lease keeps it while it runs)
}

size_t BrokerCore::InputBytes(const std::vector<std::string>& inputs) {
  size_t bytes = 0;
  for (const std::string& input : inputs) bytes += input.size();
  return bytes;
}

std::vector<std::string> BrokerCore::Inputs(TaskId id, const TaskSpec& spec) {
  std::vector<std::string> inputs;
  for (const Dependency& d : spec.need().after) {
    std::optional<TaskOutcome> outcome;
    if (!d.whole_job)
      outcome = store_.Find({d.job == Dependency::kSameJob ? id.job : d.job, d.index});
    inputs.push_back(outcome ? std::move(outcome->result) : std::string());
  }
  return inputs;
}

bool BrokerCore::ScheduleRetry(TaskId id, TaskRecord& task, const TaskSpec& spec,
                               const TaskOutcome& failed) {
  if (task.failures >= spec.retries) return false;
  ++task.failures;
  ++counters_.retries;
  // Exponential backoff with jitter: min(max, base * 2^(n-1)) * [0.5, 1).
  const double backoff = std::min(
      spec.backoff_max,
      spec.backoff_base * std::ldexp(1.0, static_cast<int>(std::min(task.failures, 60u)) - 1));
  const double delay =
      backoff * (0.5 + 0.5 * std::uniform_real_distribution<double>(0, 1)(random_));
  std::string error = "attempt " + std::to_string(task.attempt) + ": " + failed.error;
  journal_.RecordRetry(id, delay, error);
  last_errors_[id] = std::move(error);
  Delay(id, task, now_ + Seconds(delay));
  return true;
}

void BrokerCore::DropWorker(uint32_t worker_id, const std::string& why, bool lost) {
  if (!workers_.Find(worker_id)) return;
  const Worker gone = workers_.Remove(worker_id);
  telemetry_.WorkerLeft(gone.pid, gone.host, lost, now_);
  const std::string reason = "its worker (pid " + std::to_string(gone.pid) + ") was lost: " + why;
  readers_.WorkerGone(worker_id, workers_);
  for (const auto& [id, spec] : gone.leases) {
    TaskRecord& task = *tasks_.Find(id);
    Requeue(leases_.ReturnLost(id, *spec, now_));
    const bool cancelled = task.running().cancel_requested;
    tasks_.Move(task, QueuedNow(id));
    ++counters_.requeued;
    LeaseLost(id, task, reason, cancelled);
    if (task.state() == TaskState::kQueued) orphans_[id] = gone.key;  // it may come back for it
  }
  Dispatch();
}

void BrokerCore::LeaseLost(TaskId id, TaskRecord& task, const std::string& why, bool cancelled) {
  // Precondition: task.state is kQueued (and counted so), not yet in the ready queue.
  if (cancelled)
    return Finish(id, task, Ending(TaskStatus::kCancelled, "cancelled while running; " + why));
  const uint32_t lost = task.attempt - task.failures;  // executions that ended without a result
  if (lost >= specs_.Look(id)->attempts)
    return Finish(id, task,
                  Ending(TaskStatus::kWorkerLost, "lost " + std::to_string(lost) + " time" +
                                                      (lost == 1 ? "" : "s") +
                                                      " with its worker; last time " + why));
  Enqueue(id);
}

bool BrokerCore::RetireWorker(int64_t pid) {
  const std::optional<uint32_t> id = workers_.IdOfPid(pid);
  if (!id) return false;
  out_.Send(workers_.at(*id).identity, StopMessage{UINT32_MAX});  // its tasks finish
  return true;
}

void BrokerCore::WorkerExited(int64_t pid) {
  if (auto id = workers_.IdOfPid(pid)) DropWorker(*id, "its process exited", true);
  EndTurn();
}

size_t BrokerCore::WorkersOfKey(const std::string& key, const std::string& identity) const {
  const auto earlier = workers_.IdOf(identity);
  return workers_.OfKey(key) - (earlier && workers_.at(*earlier).key == key ? 1 : 0);
}

std::vector<std::string> BrokerCore::RemoteWorkersOn(const std::string& host,
                                                     const std::string& key) const {
  return workers_.RemoteOn(host, key);
}

std::array<uint64_t, kTaskClassCount> BrokerCore::AllocDemand(const AllocQueueSpec& shape,
                                                              uint64_t budget, SteadyTime now) {
  now_ = now;
  return orq::AllocDemand(Sources(), shape, budget);
}

std::map<std::string, BrokerCore::AllocWorkers> BrokerCore::AllocationWorkers() const {
  std::map<std::string, AllocWorkers> by;
  for (const auto& [id, w] : workers_.all()) {
    if (w.allocation.empty()) continue;
    AllocWorkers& a = by[w.allocation];
    ++a.count;
    for (size_t c = 0; c < kTaskClassCount; ++c) a.slots[c] = std::max(a.slots[c], w.capacity[c]);
  }
  return by;
}

void BrokerCore::AllocationGone(const std::string& allocation, const std::string& why) {
  std::vector<uint32_t> gone;
  for (const auto& [id, w] : workers_.all()) {
    if (w.allocation == allocation) gone.push_back(id);
  }
  for (uint32_t id : gone) {
    ++counters_.workers_lost;  // they did not say goodbye: their allocation went first
    DropWorker(id, why, true);
  }
  EndTurn();
}

}  // namespace orq

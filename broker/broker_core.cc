#include "broker/broker_core.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "common/ids.h"

namespace orq {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

size_t ClassIndex(const TaskSpec& spec) { return static_cast<size_t>(ClassOf(spec.kind)); }

// The size of a gather reply chunk: large enough to amortise, small enough to stay well under
// the message size limit with shell output in it.
constexpr size_t kGatherChunk = 4096;

}  // namespace

BrokerCore::BrokerCore(BrokerOptions options, ResultStore& store)
    : options_(std::move(options)), store_(store) {}

void BrokerCore::Handle(const std::string& from, Message message, SteadyTime now,
                        std::vector<Outgoing>& out) {
  Worker* worker = nullptr;
  if (auto it = worker_ids_.find(from); it != worker_ids_.end()) {
    worker = &workers_.at(it->second);
    worker->last_seen = now;
  }
  std::visit(
      Overloaded{
          [&](SubmitRequest& m) { Submit(from, m, now, out); },
          [&](GatherRequest& m) { Gather(from, m, out); },
          [&](StatusRequest&) { Status(from, out); },
          [&](CancelRequest& m) { Cancel(from, m, out); },
          [&](ShutdownRequest&) { Shutdown(from, out); },
          [&](PingRequest&) { out.push_back({from, PongReply{options_.broker_pid}}); },
          [&](ReadyMessage& m) { Register(from, m, now, out); },
          [&](WorkerResultsMessage& m) {
            if (worker)
              Results(*worker, m, out);
            else
              ++counters_.unexpected;
          },
          [&](HeartbeatMessage&) {
            if (!worker) ++counters_.unexpected;
          },
          [&](auto&) { ++counters_.unexpected; },  // a reply sent to the broker
      },
      message);
}

void BrokerCore::HandleMalformed(const std::string& from, const std::string& what,
                                 std::vector<Outgoing>& out) {
  ++counters_.malformed;
  if (!worker_ids_.count(from))
    out.push_back({from, ErrorReply{ErrorCode::kBadRequest, "malformed request: " + what}});
}

void BrokerCore::PeerUnreachable(const std::string& peer) {
  std::vector<uint64_t> gone;
  for (const auto& [id, waiter] : waiters_) {
    if (waiter.client == peer) gone.push_back(id);
  }
  for (uint64_t id : gone) ForgetWaiter(id);
}

void BrokerCore::Submit(const std::string& from, SubmitRequest& request, SteadyTime now,
                        std::vector<Outgoing>& out) {
  auto refuse = [&](std::string message) {
    out.push_back({from, ErrorReply{ErrorCode::kBadRequest, std::move(message)}});
  };
  if (shutting_down_) {
    out.push_back({from, ErrorReply{ErrorCode::kShuttingDown, "the broker is shutting down"}});
    return;
  }
  if (request.tasks.empty()) return refuse("a job needs at least one task");
  if (request.tasks.size() > kMaxTasksPerJob)
    return refuse("a job may hold at most " + std::to_string(kMaxTasksPerJob) + " tasks");
  for (size_t i = 0; i < request.tasks.size(); ++i) {
    if (auto error = ValidateSpec(request.tasks[i]))
      return refuse("task " + std::to_string(i) + ": " + *error);
  }
  const uint64_t job_number = next_job_++;
  Job& job = jobs_[job_number];
  job.tasks.resize(request.tasks.size());
  job.unfinished = static_cast<uint32_t>(request.tasks.size());
  for (uint32_t i = 0; i < job.tasks.size(); ++i) {
    Task& task = job.tasks[i];
    task.spec = std::move(request.tasks[i]);
    TaskId id{job_number, i};
    if (task.spec.delay > 0) {
      task.state = State::kDelayed;
      ++delayed_count_;
      auto due = now + std::chrono::duration_cast<SteadyTime::duration>(
                           std::chrono::duration<double>(task.spec.delay));
      delayed_.push({due, next_seq_++, id});
    } else {
      task.state = State::kQueued;
      ++queued_;
      Enqueue(id, task);
    }
  }
  out.push_back({from, SubmittedReply{job_number, static_cast<uint32_t>(job.tasks.size())}});
  Dispatch(out);
}

BrokerCore::Task* BrokerCore::Find(TaskId id) {
  auto it = jobs_.find(id.job);
  if (it == jobs_.end() || id.index >= it->second.tasks.size()) return nullptr;
  return &it->second.tasks[id.index];
}

void BrokerCore::Enqueue(TaskId id, const Task& task) {
  ready_[ClassIndex(task.spec)].push({task.spec.priority, id});
}

bool BrokerCore::Resolve(const std::string& from, const std::vector<std::string>& ids,
                         std::vector<TaskId>& tasks, std::vector<Outgoing>& out,
                         Waiter* waiter) const {
  auto unknown = [&](const std::string& message) {
    out.push_back({from, ErrorReply{ErrorCode::kUnknownId, message}});
    return false;
  };
  if (ids.empty()) return unknown("no job or task id given");
  for (const std::string& text : ids) {
    auto ref = ParseId(text);
    if (!ref) return unknown("'" + text + "' is not a job or task id (expected j7 or j7.2)");
    auto job = jobs_.find(ref->job);
    if (job == jobs_.end()) return unknown("unknown job " + FormatJobId(ref->job));
    const uint32_t size = static_cast<uint32_t>(job->second.tasks.size());
    if (ref->index) {
      if (*ref->index >= size)
        return unknown("unknown task " + text + ": job " + FormatJobId(ref->job) + " has " +
                       std::to_string(size) + " task" + (size == 1 ? "" : "s"));
      tasks.push_back({ref->job, *ref->index});
      if (waiter) ++waiter->single_tasks[{ref->job, *ref->index}];
    } else {
      if (waiter) ++waiter->whole_jobs[ref->job];
      for (uint32_t i = 0; i < size; ++i) tasks.push_back({ref->job, i});
    }
  }
  return true;
}

void BrokerCore::Gather(const std::string& from, const GatherRequest& request,
                        std::vector<Outgoing>& out) {
  Waiter waiter;
  waiter.client = from;
  if (!Resolve(from, request.ids, waiter.ids, out, &waiter)) return;
  for (TaskId id : waiter.ids) {
    if (Find(id)->state != State::kFinished) ++waiter.remaining;
  }
  if (waiter.remaining == 0) return ReplyResults(waiter, out);
  const uint64_t waiter_id = next_waiter_++;
  for (TaskId id : waiter.ids) {
    auto& list = jobs_[id.job].waiters;
    if (list.empty() || list.back() != waiter_id) list.push_back(waiter_id);
  }
  waiters_.emplace(waiter_id, std::move(waiter));
}

void BrokerCore::ForgetWaiter(uint64_t waiter_id) {
  auto it = waiters_.find(waiter_id);
  if (it == waiters_.end()) return;
  auto unlist = [&](uint64_t job) {
    auto j = jobs_.find(job);
    if (j == jobs_.end()) return;
    auto& list = j->second.waiters;
    list.erase(std::remove(list.begin(), list.end(), waiter_id), list.end());
  };
  for (const auto& [job, n] : it->second.whole_jobs) unlist(job);
  for (const auto& [task, n] : it->second.single_tasks) unlist(task.job);
  waiters_.erase(it);
}

void BrokerCore::ReplyResults(const Waiter& waiter, std::vector<Outgoing>& out) const {
  ResultsReply chunk;
  for (size_t i = 0; i < waiter.ids.size(); ++i) {
    chunk.outcomes.push_back(*store_.Find(waiter.ids[i]));
    if (chunk.outcomes.size() == kGatherChunk && i + 1 < waiter.ids.size()) {
      chunk.final = false;
      out.push_back({waiter.client, std::move(chunk)});
      chunk = ResultsReply{};
    }
  }
  chunk.final = true;
  out.push_back({waiter.client, std::move(chunk)});
}

void BrokerCore::Finish(TaskId id, Task& task, TaskOutcome outcome, std::vector<Outgoing>& out) {
  switch (task.state) {
    case State::kQueued: --queued_; break;
    case State::kDelayed: --delayed_count_; break;
    case State::kRunning: --running_; break;
    case State::kFinished: return;  // one outcome per task, always
  }
  task.state = State::kFinished;
  ++finished_[static_cast<size_t>(outcome.status)];
  outcome.id = id;
  outcome.attempt = task.attempt;
  store_.Put(std::move(outcome));
  // The spec's payload is no longer needed; the kind stays for status.
  task.spec.value.clear();
  task.spec.value.shrink_to_fit();
  task.spec.argv = {};

  Job& job = jobs_.at(id.job);
  --job.unfinished;
  for (size_t i = 0; i < job.waiters.size();) {
    const uint64_t waiter_id = job.waiters[i];
    Waiter& waiter = waiters_.at(waiter_id);
    // The waiter counted this task once per mention, as part of its job or by itself.
    if (auto j = waiter.whole_jobs.find(id.job); j != waiter.whole_jobs.end())
      waiter.remaining -= j->second;
    if (auto t = waiter.single_tasks.find(id); t != waiter.single_tasks.end())
      waiter.remaining -= t->second;
    if (waiter.remaining > 0) {
      ++i;
      continue;
    }
    ReplyResults(waiter, out);
    ForgetWaiter(waiter_id);  // removes job.waiters[i]: index i now holds the next one
  }
}

void BrokerCore::Cancel(const std::string& from, const CancelRequest& request,
                        std::vector<Outgoing>& out) {
  std::vector<TaskId> ids;
  if (!Resolve(from, request.ids, ids, out)) return;
  uint32_t count = 0;
  std::unordered_map<uint32_t, CancelTasksMessage> stops;
  for (TaskId id : ids) {
    Task& task = *Find(id);
    if (task.state == State::kRunning) {
      stops[task.worker].ids.push_back(id);
      ++count;
    } else if (task.state != State::kFinished) {
      TaskOutcome outcome;
      outcome.status = TaskStatus::kCancelled;
      outcome.error = "cancelled before it started";
      outcome.is_shell = task.spec.kind == TaskKind::kShell;
      Finish(id, task, std::move(outcome), out);
      ++count;
    }
  }
  for (auto& [worker_id, message] : stops)
    out.push_back({workers_.at(worker_id).identity, std::move(message)});
  out.push_back({from, CancelledReply{count}});
}

void BrokerCore::Status(const std::string& from, std::vector<Outgoing>& out) const {
  nlohmann::json status;
  status["broker"] = {{"pid", options_.broker_pid}};
  status["endpoint"] = options_.endpoint;
  auto workers = nlohmann::json::array();
  std::vector<const Worker*> sorted;
  for (const auto& [id, w] : workers_) sorted.push_back(&w);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->pid < b->pid; });
  for (const Worker* w : sorted) {
    workers.push_back({{"pid", w->pid},
                       {"threads", w->threads},
                       {"running", w->leases.size()},
                       {"slots",
                        {{"async", w->capacity[0]}, {"cpu", w->capacity[1]}, {"shell", w->capacity[2]}}}});
  }
  status["workers"] = std::move(workers);
  status["tasks"] = {{"queued", queued_},
                     {"delayed", delayed_count_},
                     {"running", running_},
                     {"done", finished_[static_cast<size_t>(TaskStatus::kOk)]},
                     {"failed", finished_[static_cast<size_t>(TaskStatus::kFailed)]},
                     {"timeout", finished_[static_cast<size_t>(TaskStatus::kTimeout)]},
                     {"cancelled", finished_[static_cast<size_t>(TaskStatus::kCancelled)]},
                     {"worker_lost", finished_[static_cast<size_t>(TaskStatus::kWorkerLost)]}};
  status["jobs"] = jobs_.size();
  status["counters"] = {{"malformed", counters_.malformed},
                        {"unexpected", counters_.unexpected},
                        {"stale_results", counters_.stale_results},
                        {"workers_lost", counters_.workers_lost}};
  out.push_back({from, StatusReply{status.dump()}});
}

void BrokerCore::Shutdown(const std::string& from, std::vector<Outgoing>& out) {
  BeginShutdown(out);
  out.push_back({from, ShutdownAck{}});
}

void BrokerCore::BeginShutdown(std::vector<Outgoing>& out) {
  if (shutting_down_) return;
  shutting_down_ = true;
  for (const auto& [id, w] : workers_) out.push_back({w.identity, StopMessage{}});
}

void BrokerCore::Register(const std::string& from, const ReadyMessage& ready, SteadyTime now,
                          std::vector<Outgoing>& out) {
  if (auto it = worker_ids_.find(from); it != worker_ids_.end()) DropWorker(it->second, out);
  if (shutting_down_) {
    out.push_back({from, StopMessage{}});
    return;
  }
  const uint32_t id = next_worker_++;
  Worker& w = workers_[id];
  w.identity = from;
  w.pid = ready.pid;
  w.threads = ready.threads;
  w.capacity = ready.slots;
  w.last_seen = now;
  worker_ids_[from] = id;
  Dispatch(out);
}

void BrokerCore::Results(Worker& worker, WorkerResultsMessage& results, std::vector<Outgoing>& out) {
  const uint32_t worker_id = worker_ids_.at(worker.identity);
  for (TaskOutcome& outcome : results.outcomes) {
    Task* task = Find(outcome.id);
    if (!task || task->state != State::kRunning || task->worker != worker_id ||
        task->attempt != outcome.attempt) {
      ++counters_.stale_results;
      continue;
    }
    --worker.in_use[ClassIndex(task->spec)];
    worker.leases.erase(outcome.id);
    outcome.worker_pid = worker.pid;
    Finish(outcome.id, *task, std::move(outcome), out);
  }
  Dispatch(out);
}

void BrokerCore::Dispatch(std::vector<Outgoing>& out) {
  if (shutting_down_) return;
  for (bool progress = true; progress;) {
    progress = false;
    for (auto& [worker_id, w] : workers_) {
      TasksMessage message;
      for (size_t c = 0; c < kTaskClassCount; ++c) {
        auto& queue = ready_[c];
        while (w.in_use[c] < w.capacity[c] && message.tasks.size() < kMaxTasksPerMessage &&
               !queue.empty()) {
          const TaskId id = queue.top().id;
          queue.pop();
          Task* task = Find(id);
          if (!task || task->state != State::kQueued) continue;  // cancelled while queued
          task->state = State::kRunning;
          task->worker = worker_id;
          ++task->attempt;
          --queued_;
          ++running_;
          ++w.in_use[c];
          w.leases.insert(id);
          message.tasks.push_back({id, task->attempt, task->spec});
        }
      }
      if (!message.tasks.empty()) {
        progress = true;
        out.push_back({w.identity, std::move(message)});
      }
    }
  }
}

void BrokerCore::DropWorker(uint32_t worker_id, std::vector<Outgoing>& out) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  for (TaskId id : it->second.leases) {
    Task& task = *Find(id);
    task.state = State::kQueued;
    --running_;
    ++queued_;
    Enqueue(id, task);
  }
  worker_ids_.erase(it->second.identity);
  workers_.erase(it);
  Dispatch(out);
}

void BrokerCore::WorkerExited(int64_t pid, std::vector<Outgoing>& out) {
  for (const auto& [id, w] : workers_) {
    if (w.pid == pid) return DropWorker(id, out);
  }
}

void BrokerCore::Tick(SteadyTime now, std::vector<Outgoing>& out) {
  while (!delayed_.empty() && delayed_.top().due <= now) {
    const TaskId id = delayed_.top().id;
    delayed_.pop();
    Task* task = Find(id);
    if (!task || task->state != State::kDelayed) continue;  // cancelled while delayed
    task->state = State::kQueued;
    --delayed_count_;
    ++queued_;
    Enqueue(id, *task);
  }
  if (now >= next_heartbeat_) {
    next_heartbeat_ = now + options_.heartbeat_interval;
    const auto expiry = options_.heartbeat_interval * options_.liveness;
    std::vector<uint32_t> silent;
    for (const auto& [id, w] : workers_) {
      if (now - w.last_seen > expiry)
        silent.push_back(id);
      else
        out.push_back({w.identity, BrokerHeartbeatMessage{}});
    }
    for (uint32_t id : silent) {
      ++counters_.workers_lost;
      DropWorker(id, out);
    }
  }
  Dispatch(out);
}

SteadyTime BrokerCore::NextWakeup() const {
  SteadyTime next = next_heartbeat_;
  if (!delayed_.empty()) next = std::min(next, delayed_.top().due);
  return next;
}

}  // namespace orq

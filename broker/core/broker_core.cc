#include "broker/core/broker_core.h"

#include <algorithm>

#include "broker/core/helpers.h"
#include "broker/core/submission.h"
#include "common/ids.h"

namespace orq {

BrokerCore::BrokerCore(BrokerOptions options, Store& store, Journal& journal, Outbox& out)
    : options_(std::move(options)),
      store_(store),
      journal_(journal),
      out_(out),
      random_(options_.seed),
      specs_(store),
      delivery_(store, out),
      readers_(out),
      telemetry_(out) {}

bool BrokerCore::Admit(const Peer& from, Command command) {
  if (!ToBroker(command)) {
    ++counters_.unexpected;  // a reply or a broker-to-worker message sent to the broker
    return false;
  }
  if (MaySend(from.role, command)) return true;
  ++counters_.forbidden;
  if (IsRequest(command))  // (a worker message from a non-worker: nobody waits for it)
    out_.Send(from.identity, Error{ErrorCode::kForbidden, std::string("the broker refused this "
                                                                      "request: ") +
                                                              RefusalOf(from.role)});
  return false;
}

BrokerCore::Sender BrokerCore::Identify(const Peer& from) {
  Sender sender{from, from.identity};
  const std::optional<uint32_t> id = workers_.IdOf(from.identity);
  if (!id) return sender;
  Worker& worker = workers_.at(*id);
  if (worker.key != from.key) {  // another key on this worker's routing id: not that worker
    ++counters_.impostors;
    sender.impostor = true;
    return sender;
  }
  worker.last_seen = now_;
  sender.worker = &worker;
  sender.worker_id = *id;
  return sender;
}

void BrokerCore::Status(const Peer& from, const StatusRequest& request,
                        std::vector<AllocQueueInfo> allocs, SteadyTime now) {
  now_ = now;
  StatusReply status = StatusReport(Sources());
  if (request.metrics) status.metrics = telemetry_.metrics();
  status.broker_pid = options_.broker_pid;
  status.journal_problem = journal_problem_;
  status.endpoints = {options_.endpoint};
  status.endpoints.insert(status.endpoints.end(), options_.listen.begin(), options_.listen.end());
  status.counters = counters_;
  status.allocs = std::move(allocs);
  out_.Send(from.identity, std::move(status));
  EndTurn();
}

void BrokerCore::On(const Sender& from, ShutdownRequest&) {
  BeginShutdown();
  out_.Send(from.identity, ShutdownAck{});
}

void BrokerCore::On(const Sender& from, PingRequest&) {
  out_.Send(from.identity, PongReply{options_.broker_pid});
}

void BrokerCore::On(const Sender& from, JobsRequest& m) {
  out_.Send(from.identity, JobsReport(tasks_, m, now_));
}

void BrokerCore::On(const Sender& from, ExplainRequest& m) {
  out_.Send(from.identity, Explain(Sources(), m));
}

void BrokerCore::On(const Sender& from, TasksRequest& m) {
  out_.Send(from.identity, TasksReport(Sources(), m));
}

void BrokerCore::On(const Sender& from, EventsRequest& m) {
  telemetry_.Read(from.identity, m, now_);
}

void BrokerCore::On(const Sender& from, ResultsAck&) { delivery_.Acknowledged(from.identity); }

void BrokerCore::On(const Sender& from, LogsRequest& m) {
  const auto id = tasks_.ResolveTask(m.task);
  if (!id) return out_.Send(from.identity, id.error());
  readers_.Logs(from.identity, m, *id, *tasks_.Find(*id), store_, workers_, now_);
}

void BrokerCore::On(const Sender& from, LimitRequest& m) {
  const LimitSpec& limit = m.limit;
  switch (m.op) {
    case LimitRequest::Op::kList:
      break;
    case LimitRequest::Op::kSet:
      if (auto checked = CheckLimitSpec(limit); !checked.ok())
        return out_.Send(from.identity, std::move(checked.error()));
      journal_.RecordLimit(limit, false);
      Requeue(parking_.SetLimit(limit, now_));  // it may have grown
      Dispatch();
      break;
    case LimitRequest::Op::kRemove: {
      auto unparked = parking_.RemoveLimit(limit.name, now_);
      if (!unparked)
        return out_.Send(from.identity,
                         Error{ErrorCode::kUnknownId, "there is no limit '" + limit.name + "'"});
      journal_.RecordLimit(limit, true);
      Requeue(*unparked);  // it limits nothing now
      Dispatch();
      break;
    }
  }
  out_.Send(from.identity, LimitsReply{parking_.LimitInfos()});
}

void BrokerCore::Submit(const Peer& from, const SubmitRequest& request, JobBuilder job,
                        SteadyTime now) {
  now_ = now;
  Accept(from.identity, request, std::move(job));
  EndTurn();
}

void BrokerCore::Accept(const std::string& from, const SubmitRequest& request, JobBuilder job) {
  if (shutting_down_)
    return out_.Send(from, Error{ErrorCode::kShuttingDown, "the broker is shutting down"});
  if (request.key.size() > kMaxKeyBytes)
    return out_.Send(from, Error{ErrorCode::kBadRequest,
                                 "the key is " + std::to_string(request.key.size()) +
                                     " bytes; the limit is " + std::to_string(kMaxKeyBytes)});
  if (auto job = tasks_.JobOfKey(request.key)) {
    // Submitted before (a retry after a timeout, say): that job's id, and nothing new.
    return out_.Send(from, SubmittedReply{*job, tasks_.job(*job).size, true});
  }
  if (job.size() == 0)
    return out_.Send(from, Error{ErrorCode::kBadRequest, "a job needs at least one task"});
  // (After the key: returning a job submitted before writes nothing to the journal.)
  if (!journal_problem_.empty())
    return out_.Send(from,
                     Error{ErrorCode::kDiskFull, "nothing was accepted: " + journal_problem_});
  if (auto checked =
          CheckSubmission(request, job, tasks_, parking_.limits(), options_.max_tasks_per_job);
      !checked.ok())
    return out_.Send(from, std::move(checked.error()));
  const uint64_t number =
      AddJob(std::move(job), std::make_shared<const JobContext>(request.context), request.key);
  tasks_.job(number).halt = request.halt;
  out_.Send(from, SubmittedReply{number, tasks_.job(number).size});
  Dispatch();
}

uint64_t BrokerCore::AddJob(JobBuilder built, std::shared_ptr<const JobContext> context,
                            std::string key) {
  for (size_t c = 0; c < kTaskClassCount; ++c) ready_.ReserveDefault(c, built.per_class()[c]);
  const uint64_t number =
      tasks_.Add(built.size(), built.first(), std::move(context), now_, std::move(key));
  JobRecord& job = tasks_.job(number);
  store_.AddJob(number, job.size, built.TakeWindows(), *job.context, job.key);
  specs_.Put(number, 0, built.TakeFirstWindow());  // the first to be dispatched: no read back
  const auto& per_kind = built.per_kind();
  if (std::count(per_kind.begin(), per_kind.end(), 0u) + 1 == std::ssize(per_kind))
    job.kind = static_cast<uint8_t>(
        std::find_if(per_kind.begin(), per_kind.end(), [](uint32_t n) { return n > 0; }) -
        per_kind.begin());
  telemetry_.JobSubmitted(number, job.size, per_kind, now_);
  // Tasks with dependencies: wired once all of the job exists.
  std::vector<std::pair<uint32_t, const Needs*>> to_wire;
  const std::vector<JobBuilder::Special>& specials = built.specials();
  auto special = specials.begin();
  for (uint32_t i = 0; i < job.size; ++i) {
    const JobBuilder::Queueing q = built.queueing()[i];
    const QueueEntry entry{q.priority, {number, i}};
    if (special == specials.end() || special->index != i) {
      ready_.Push({}, static_cast<size_t>(q.task_class), entry);
      continue;
    }
    const JobBuilder::Special& s = *special++;
    if (s.needs && !s.needs->after.empty()) {
      tasks_.Move(job.tasks[i], TaskRecord::Waiting{});
      to_wire.push_back({i, s.needs.get()});
    } else if (s.delay > 0) {
      Delay({number, i}, job.tasks[i], now_ + Seconds(s.delay));
    } else {
      ready_.Push(s.needs ? s.needs->queue : std::string(), static_cast<size_t>(q.task_class),
                  entry);
    }
  }
  for (const auto& [i, needs] : to_wire) Wire({number, i}, job.tasks[i], *needs);
  return number;
}

void BrokerCore::On(const Sender& from, GatherRequest& request) {
  Delivery::Request gather{.client = from.identity, .stream = request.stream};
  auto ids = tasks_.Resolve(request.ids, &gather);
  if (!ids) return out_.Send(from.identity, ids.error());
  gather.ids = std::move(*ids);
  std::vector<bool> finished(gather.ids.size());
  for (size_t i = 0; i < gather.ids.size(); ++i)
    finished[i] = tasks_.Find(gather.ids[i])->state() == TaskState::kFinished;
  if (gather.stream) {
    for (const IdRef& ref : request.ids)  // (Resolve() checked them all)
      gather.sizes.push_back(ref.index ? 1 : tasks_.job(ref.job).size);
  }
  delivery_.Gather(std::move(gather), finished);
}

void BrokerCore::On(const Sender& from, CancelRequest& request) {
  auto ids = tasks_.Resolve(request.ids);
  if (!ids) return out_.Send(from.identity, ids.error());
  const uint32_t count = CancelTasks(*ids, request.running, "cancelled before it started");
  out_.Send(from.identity, CancelledReply{count});
}

uint32_t BrokerCore::CancelTasks(const std::vector<TaskId>& ids, bool running,
                                 const std::string& why) {
  uint32_t count = 0;
  std::unordered_map<uint32_t, CancelTasksMessage> stops;
  for (TaskId id : ids) {
    TaskRecord& task = *tasks_.Find(id);
    if (task.state() == TaskState::kRunning) {
      if (!running) continue;  // --halt soon: let it finish
      if (TaskRecord::Running& run = task.running(); !run.cancel_requested) {
        run.cancel_requested = true;
        journal_.RecordCancelRequest(id);
        stops[run.worker].ids.push_back(id);
      }
      ++count;
    } else if (task.state() != TaskState::kFinished) {
      Finish(id, task, Ending(TaskStatus::kCancelled, why));
      ++count;
    }
  }
  for (auto& [worker_id, message] : stops)
    out_.Send(workers_.at(worker_id).identity, std::move(message));
  return count;
}

void BrokerCore::Halt() {
  while (!halts_due_.empty()) {
    const uint64_t job_number = halts_due_.back();
    halts_due_.pop_back();
    const JobRecord* job = tasks_.FindJob(job_number);
    if (!job || job->unfinished == 0) continue;
    std::vector<TaskId> ids;
    for (uint32_t i = 0; i < job->tasks.size(); ++i) {
      if (job->tasks[i].state() != TaskState::kFinished) ids.push_back({job_number, i});
    }
    CancelTasks(ids, job->halt.now, "cancelled: its job halted (--halt)");
  }
}

void BrokerCore::On(const Sender& from, RetryRequest& request) {
  if (shutting_down_)
    return out_.Send(from.identity, Error{ErrorCode::kShuttingDown, "the broker is shutting down"});
  if (!journal_problem_.empty())
    return out_.Send(from.identity,
                     Error{ErrorCode::kDiskFull, "nothing was retried: " + journal_problem_});
  const JobRecord* job = tasks_.FindJob(request.job);
  if (!job)
    return out_.Send(from.identity,
                     Error{ErrorCode::kUnknownId, "unknown job " + FormatJobId(request.job)});
  auto built = RetryJob(request, *job, store_, specs_);
  if (!built) return out_.Send(from.identity, std::move(built.error()));
  const uint64_t number = AddJob(std::move(*built), job->context);
  out_.Send(from.identity, SubmittedReply{number, tasks_.job(number).size});
  Dispatch();
}

void BrokerCore::On(const Sender& from, ForgetRequest& request) {
  auto jobs = tasks_.ResolveJobs(request.jobs);
  if (!jobs) return out_.Send(from.identity, jobs.error());
  for (uint64_t number : *jobs) {
    const std::string name = FormatJobId(number);
    if (delivery_.Gathering(number))
      return out_.Send(from.identity,
                       Error{ErrorCode::kBadRequest, "job " + name + " is being gathered"});
    if (const uint32_t unfinished = tasks_.job(number).unfinished; unfinished > 0)
      return out_.Send(from.identity, Error{ErrorCode::kBadRequest,
                                            "job " + name + " has " + std::to_string(unfinished) +
                                                " unfinished tasks; cancel or gather it first"});
  }
  for (uint64_t number : *jobs) ForgetJob(number);
  out_.Send(from.identity, ForgottenReply{static_cast<uint32_t>(jobs->size())});
}

bool BrokerCore::ForgetJob(uint64_t number) {
  const JobRecord* kept = tasks_.FindJob(number);
  if (!kept || kept->unfinished > 0 || delivery_.Gathering(number)) return false;
  const JobRecord job = tasks_.Remove(number);
  for (uint32_t i = 0; job.spilled && i < job.size; ++i) {
    // Output that went to files on its worker's host goes too (the file named as the broker
    // named it: absolute for a local worker).
    auto o = store_.Find({number, i});
    const ShellOutput::More* more = o && o->shell ? o->shell->more.get() : nullptr;
    if (!more || !Spilled(*more)) continue;
    const std::string& named = more->stdout_file.empty() ? more->stderr_file : more->stdout_file;
    forgotten_output_.push_back({{o->id, o->attempt}, more->host, more->key, named[0] == '/'});
  }
  store_.Forget(number, job.size);
  specs_.Forget(number);
  return true;
}

void BrokerCore::Finish(TaskId id, TaskRecord& task, TaskOutcome outcome,
                        std::shared_ptr<const TaskSpec> spec) {
  if (task.state() == TaskState::kFinished) return;  // one outcome per task, always
  if (!orphans_.empty()) orphans_.erase(id);
  if (task.state() == TaskState::kQueued && !parking_.empty())
    Requeue(parking_.StopWaiting(id, now_));
  JobRecord& job = tasks_.Finish(id, task, outcome.status, now_);
  outcome.id = id;
  outcome.attempt = task.attempt;
  if (auto it = last_errors_.find(id); it != last_errors_.end()) {
    outcome.last_error = std::move(it->second);
    last_errors_.erase(it);
  }
  if (!job.halted && HaltDecided(job.halt, job.failed, job.ok)) {
    job.halted = true;
    halts_due_.push_back(id.job);
  }
  if (outcome.shell) {
    if (outcome.shell->more && Spilled(*outcome.shell->more)) job.spilled = true;
    // Its command goes with its outcome (gather replies show it).
    if (!spec) spec = specs_.Look(id);
    if (const auto* shell = std::get_if<ShellTask>(&spec->body)) {
      auto more = outcome.shell->more ? std::make_shared<ShellOutput::More>(*outcome.shell->more)
                                      : std::make_shared<ShellOutput::More>();
      more->argv = shell->argv;
      outcome.shell->more = std::move(more);
    }
  }
  const size_t kind = spec                                 ? spec->body.index()
                      : job.kind != JobRecord::kMixedKinds ? job.kind
                                                           : specs_.Peek(id).body.index();
  telemetry_.TaskEnded(id, outcome.status, outcome.attempt, outcome.worker_pid, kind,
                       now_ - job.submitted_at, now_);
  readers_.Ended(id, outcome);
  store_.Put(std::move(outcome));
  delivery_.Ended(id);
  if (graph_.Ended(id)) NotifyDependants();
}

void BrokerCore::HandleMalformed(const std::string& from, const std::string& what) {
  ++counters_.malformed;
  if (!workers_.IdOf(from))
    out_.Send(from, Error{ErrorCode::kBadRequest, "malformed request: " + what});
}

void BrokerCore::PeerUnreachable(const std::string& peer) {
  telemetry_.ReaderGone(peer);
  delivery_.ClientGone(peer);
  readers_.ClientGone(peer);
}

void BrokerCore::PeerRevoked(const std::string& peer) {
  ++counters_.revoked;
  PeerUnreachable(peer);
  if (auto id = workers_.IdOf(peer)) DropWorker(*id, "its key was revoked");
  EndTurn();
}

void BrokerCore::SetJournalProblem(std::string problem) {
  journal_problem_ = std::move(problem);
  if (journal_problem_.empty()) Dispatch();
}

void BrokerCore::BeginShutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  const auto grace = static_cast<uint32_t>(kShutdownGrace.count());
  for (const auto& [id, w] : workers_.all()) out_.Send(w.identity, StopMessage{grace});
}

void BrokerCore::EndTurn() {
  if (!halts_due_.empty()) Halt();
  delivery_.Flush();
  telemetry_.Wake(now_);
  tasks_.Compact();
  // Outcomes kept in memory are bounded: the jobs that ended first go first.
  while (options_.memory_results > 0 && tasks_.finished_total() > options_.memory_results) {
    const std::optional<uint64_t> oldest = tasks_.OldestFinished();
    if (!oldest || !ForgetJob(*oldest)) break;  // being gathered: when that is done
    tasks_.PopOldestFinished();
  }
}

void BrokerCore::Tick(SteadyTime now) {
  now_ = now;
  while (const std::optional<TaskId> due = delayed_.PopDue(now)) {
    TaskRecord* task = tasks_.Find(*due);
    if (!task || task->state() != TaskState::kDelayed) continue;  // cancelled while delayed
    tasks_.Move(*task, QueuedNow(*due));
    Enqueue(*due);
  }
  // Rates have new tokens; and once a heartbeat, every gate is looked at again (a safety net:
  // nothing parked waits longer than that for room it already has).
  const bool heartbeat = now >= next_heartbeat_;
  for (const GateKey& gate : parking_.ToRecheck(now, heartbeat))
    Requeue(parking_.Unpark(gate, now_));
  if (heartbeat) {
    next_heartbeat_ = now + options_.heartbeat_interval;
    const auto expiry = options_.heartbeat_interval * options_.liveness;
    std::vector<uint32_t> silent;
    for (const auto& [id, w] : workers_.all()) {
      if (now - w.last_seen > expiry)
        silent.push_back(id);
      else
        out_.Send(w.identity, BrokerHeartbeatMessage{});
    }
    for (uint32_t id : silent) {
      ++counters_.workers_lost;
      DropWorker(id, "no heartbeat for " + std::to_string(expiry.count()) + " ms", true);
    }
    readers_.Expire(now);
    if (options_.retention.count() > 0) {
      while (const std::optional<uint64_t> oldest = tasks_.OldestFinished()) {
        if (now - tasks_.job(*oldest).finished_at < options_.retention || !ForgetJob(*oldest))
          break;  // (not yet; or being gathered)
        tasks_.PopOldestFinished();
      }
    }
  }
  Dispatch();
  EndTurn();
}

SteadyTime BrokerCore::NextWakeup() const {
  SteadyTime next = next_heartbeat_;
  if (auto due = delayed_.NextDue()) next = std::min(next, *due);
  if (auto token = parking_.NextToken(now_)) next = std::min(next, *token);
  return std::min(next, telemetry_.NextDeadline());
}

ReportSources BrokerCore::Sources() {
  return {tasks_, workers_, parking_, ready_, delayed_, store_, specs_, now_};
}

void BrokerCore::Delay(TaskId id, TaskRecord& task, SteadyTime due) {
  tasks_.Move(task, TaskRecord::Delayed{});
  delayed_.Add(id, due);
}

void BrokerCore::Enqueue(TaskId id) { Enqueue(id, specs_.Peek(id)); }

void BrokerCore::Enqueue(TaskId id, const TaskSpec& spec) {
  ready_.Push(spec.need().queue, ClassIndex(spec), {spec.priority, id});
}

void BrokerCore::Requeue(const std::vector<TaskId>& ids) {
  for (TaskId id : ids) Enqueue(id);
}

TaskRecord::Queued BrokerCore::QueuedNow(TaskId id) {
  const auto since =
      std::chrono::duration_cast<std::chrono::milliseconds>(now_ - tasks_.job(id.job).submitted_at);
  return {static_cast<uint32_t>(std::clamp<int64_t>(since.count(), 0, UINT32_MAX))};
}

}  // namespace orq

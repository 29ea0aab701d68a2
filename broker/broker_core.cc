#include "broker/broker_core.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "broker/submission.h"
#include "common/ids.h"
#include "common/overloaded.h"

namespace orq {
namespace {

SteadyTime::duration Seconds(double seconds) {
  return std::chrono::duration_cast<SteadyTime::duration>(std::chrono::duration<double>(seconds));
}

// Whether an outcome's output went to files (removed when its job is forgotten).
bool Spilled(const ShellOutput::More& more) {
  return !more.stdout_file.empty() || !more.stderr_file.empty();
}

TaskOutcome Ending(TaskStatus status, std::string error) {
  TaskOutcome outcome;
  outcome.status = status;
  outcome.error = std::move(error);
  return outcome;
}

}  // namespace

BrokerCore::BrokerCore(BrokerOptions options, Store& store, Journal& journal)
    : options_(std::move(options)),
      store_(store),
      journal_(journal),
      random_(options_.seed),
      specs_(store),
      delivery_(store) {}

void BrokerCore::Restore(std::vector<RecoveredJob> jobs, SteadyTime now, double wall_now) {
  now_ = now;
  // Tasks that had not started, with dependencies (their needs: the recovered specs go first).
  std::vector<std::pair<TaskId, std::shared_ptr<const Needs>>> to_wire;
  for (RecoveredJob& recovered : jobs) {
    auto context = std::make_shared<const JobContext>(std::move(recovered.context));
    const SteadyTime submitted_at = now - Seconds(std::max(0.0, wall_now - recovered.submitted));
    if (recovered.ended) {  // every task ended: counts, as compaction leaves a job
      tasks_.AddEnded(recovered.job, std::move(context), submitted_at, std::move(recovered.key),
                      *recovered.ended, now);
      continue;
    }
    // (The store has its specs already: the journal is the store.)
    tasks_.Add(static_cast<uint32_t>(recovered.tasks.size()),
               recovered.tasks.empty() ? nullptr : &recovered.tasks.front().spec,
               std::move(context), submitted_at, std::move(recovered.key), recovered.job);
    JobRecord& job = tasks_.job(recovered.job);
    for (uint32_t i = 0; i < job.size; ++i) {
      const RecoveredTask& r = recovered.tasks[i];
      const TaskSpec& spec = r.spec;
      TaskRecord& task = job.tasks[i];
      const TaskId id{recovered.job, i};
      task.attempt = r.attempts;
      task.failures = r.failures;
      if (!r.last_error.empty()) last_errors_[id] = r.last_error;
      if (r.outcome) {  // (in the store already; nobody waits for it yet)
        tasks_.Finish(id, task, r.outcome->status, now);
        if (const ShellOutput* shell = r.outcome->shell ? &*r.outcome->shell : nullptr;
            shell && shell->more && Spilled(*shell->more))
          job.spilled = true;
        continue;
      }
      if (spec.needs && !spec.needs->after.empty() && task.attempt == 0 && r.retry_due == 0 &&
          !r.cancel_requested) {
        tasks_.Move(task, TaskRecord::Waiting{});  // wired once every job is back: it may wait on
        to_wire.push_back({id, spec.needs});       // a later one
        continue;
      }
      if (r.cancel_requested) {
        Finish(id, task,
               Ending(TaskStatus::kCancelled,
                      "cancelled while running (the broker restarted meanwhile)"));
        continue;
      }
      double wait = 0;  // seconds until eligible
      if (r.retry_due > 0) {
        wait = r.retry_due - wall_now;
      } else if (task.attempt == 0 && spec.delay > 0) {
        wait = recovered.submitted + spec.delay - wall_now;
      } else if (task.attempt > task.failures) {
        // It was running when the broker stopped: that execution is lost.
        ++counters_.requeued;
        if (task.attempt - task.failures >= spec.attempts) {
          LeaseLost(id, task, "the broker stopped while it ran", false);
          continue;
        }
        orphans_[id] = "";  // who held it is not journaled: a local worker may take it back
      }
      if (wait > 0)
        Delay(id, task, now + Seconds(wait));
      else
        Enqueue(id);
    }
  }
  // A dependency the journal no longer has was forgotten after it ended, and its dependants were
  // still waiting: it ended as they needed (else they would have ended too). Wire() says so.
  for (const auto& [id, needs] : to_wire) Wire(id, *tasks_.Find(id), *needs);
  EndTurn();
  out_.clear();  // no worker or client is connected yet
}

void BrokerCore::Handle(const std::string& from, Message message, SteadyTime now, Role role,
                        const std::string& key) {
  now_ = now;
  const Command command = CommandOf(message);
  if (!ToBroker(command)) {
    ++counters_.unexpected;  // a reply or a broker-to-worker message sent to the broker
    return;
  }
  if (!MaySend(role, command)) {
    ++counters_.forbidden;
    if (IsRequest(command))  // (a worker message from a non-worker: nobody waits for it)
      Reply(from, Error{ErrorCode::kForbidden,
                        std::string("the broker refused this request: ") + RefusalOf(role)});
    return;
  }
  Worker* worker = nullptr;
  const std::optional<uint32_t> worker_id = workers_.IdOf(from);
  if (worker_id) {
    worker = &workers_.at(*worker_id);
    if (worker->key != key) {  // another key on this worker's routing id: not that worker
      ++counters_.impostors;
      return;
    }
    worker->last_seen = now;
  }
  std::visit(
      Overloaded{
          [&](SubmitRequest& m) { Submit(from, m, JobBuilder(std::move(m.tasks))); },
          [&](GatherRequest& m) { Gather(from, m); },
          [&](StatusRequest& m) {
            StatusReply status = StatusReport(Sources());
            if (m.metrics) status.metrics = telemetry_.metrics();
            status.broker_pid = options_.broker_pid;
            status.journal_problem = journal_problem_;
            status.endpoints = {options_.endpoint};
            status.endpoints.insert(status.endpoints.end(), options_.listen.begin(),
                                    options_.listen.end());
            status.counters = counters_;
            Reply(from, std::move(status));
          },
          [&](CancelRequest& m) { Cancel(from, m); },
          [&](ShutdownRequest&) {
            BeginShutdown();
            Reply(from, ShutdownAck{});
          },
          [&](PingRequest&) { Reply(from, PongReply{options_.broker_pid}); },
          [&](ForgetRequest& m) { Forget(from, m); },
          [&](JobsRequest& m) { Reply(from, JobsReport(tasks_, m, now_)); },
          [&](RetryRequest& m) { Retry(from, m); },
          [&](LogsRequest& m) {
            const auto id = tasks_.ResolveTask(m.task);
            if (!id) return Reply(from, id.error());
            readers_.Logs(from, m, *id, *tasks_.Find(*id), store_, workers_, now_, out_);
          },
          [&](LimitRequest& m) { Limit(from, m); },
          [&](ExplainRequest& m) { Reply(from, Explain(Sources(), m)); },
          [&](EventsRequest& m) { telemetry_.Read(from, m, now_, out_); },
          [&](TasksRequest& m) { Reply(from, TasksReport(Sources(), m)); },
          [&](ResultsAck&) { delivery_.Acknowledged(from, out_); },
          [&](OutputMessage& m) {
            if (worker) readers_.Output(*worker_id, m, tasks_.Find(m.id), out_);
          },
          [&](OutputPieceMessage& m) {
            if (m.text.size() > kOutputPieceBytes) {  // counted, and the next worker is asked
              ++counters_.over_bounds;
              m.found = false;
              m.text.clear();
            }
            if (!worker || !readers_.Piece(*worker_id, m, workers_, out_)) ++counters_.unexpected;
          },
          [&](ReadyMessage& m) { Register(from, role, key, m); },
          [&](WorkerResultsMessage& m) {
            if (worker) return Results(*worker_id, m);
            // A worker we dropped (paused, partitioned): its results are stale; it must
            // register again, telling us what it still runs.
            counters_.stale_results += m.outcomes.size();
            Reply(from, ReregisterMessage{});
          },
          [&](HeartbeatMessage&) {
            if (!worker) Reply(from, ReregisterMessage{});
          },
          [&](GoodbyeMessage&) {
            if (worker) DropWorker(*worker_id, "it left");
          },
          // The shell answers or keeps these; they never reach the core.
          [&](ReloadAccessRequest&) { ++counters_.unexpected; },
          [&](ScaleRequest&) { ++counters_.unexpected; },
          [&](AllocRequest&) { ++counters_.unexpected; },
          [&](SubmitPartRequest&) { ++counters_.unexpected; },
          [&]<typename T>(T&) {
            // Replies and messages for workers are not for the broker (ToBroker() returned above).
            static_assert(!ToBroker(T::kCommand),
                          "a message for the broker needs a case in BrokerCore::Handle "
                          "(broker/broker_core.cc)");
          },
      },
      message);
  EndTurn();
}

void BrokerCore::HandleSubmit(const std::string& from, const SubmitRequest& request, JobBuilder job,
                              SteadyTime now) {
  now_ = now;
  Submit(from, request, std::move(job));
  EndTurn();
}

ReportSources BrokerCore::Sources() {
  return {tasks_, workers_, parking_, ready_, delayed_, store_, specs_, now_};
}

void BrokerCore::PeerRevoked(const std::string& peer) {
  ++counters_.revoked;
  PeerUnreachable(peer);
  if (auto id = workers_.IdOf(peer)) DropWorker(*id, "its key was revoked");
  EndTurn();
}

void BrokerCore::HandleMalformed(const std::string& from, const std::string& what) {
  ++counters_.malformed;
  if (!workers_.IdOf(from))
    Reply(from, Error{ErrorCode::kBadRequest, "malformed request: " + what});
}

void BrokerCore::PeerUnreachable(const std::string& peer) {
  telemetry_.ReaderGone(peer);
  delivery_.ClientGone(peer);
  readers_.ClientGone(peer);
}

void BrokerCore::Submit(const std::string& from, const SubmitRequest& request, JobBuilder job) {
  if (shutting_down_)
    return Reply(from, Error{ErrorCode::kShuttingDown, "the broker is shutting down"});
  if (request.key.size() > kMaxKeyBytes)
    return Reply(from, Error{ErrorCode::kBadRequest,
                             "the key is " + std::to_string(request.key.size()) +
                                 " bytes; the limit is " + std::to_string(kMaxKeyBytes)});
  if (auto job = tasks_.JobOfKey(request.key)) {
    // Submitted before (a retry after a timeout, say): that job's id, and nothing new.
    return Reply(from, SubmittedReply{*job, tasks_.job(*job).size, true});
  }
  if (job.size() == 0)
    return Reply(from, Error{ErrorCode::kBadRequest, "a job needs at least one task"});
  // (After the key: returning a job submitted before writes nothing to the journal.)
  if (!journal_problem_.empty())
    return Reply(from, Error{ErrorCode::kDiskFull, "nothing was accepted: " + journal_problem_});
  if (auto error =
          CheckSubmission(request, job, tasks_, parking_.limits(), options_.max_tasks_per_job))
    return Reply(from, std::move(*error));
  const uint64_t number =
      AddJob(std::move(job), std::make_shared<const JobContext>(request.context), request.key);
  tasks_.job(number).halt = request.halt;
  Reply(from, SubmittedReply{number, tasks_.job(number).size});
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

void BrokerCore::Wire(TaskId id, TaskRecord& task, const Needs& needs) {
  // Precondition: task.state is kWaiting (and counted so). One more than the dependencies while
  // wiring, so that a dependency ending meanwhile cannot release it.
  uint32_t& pending = task.waiting().pending;
  pending = 1;
  for (const Dependency& d : needs.after) {
    if (task.state() != TaskState::kWaiting) return;  // it ended (dependency_failed) on the way
    const uint64_t job_number = d.job == Dependency::kSameJob ? id.job : d.job;
    const Dependant me{id, d.any};
    if (d.whole_job) {
      const JobRecord* job = tasks_.FindJob(job_number);
      if (!job) continue;  // forgotten after it ended (see Restore)
      ++pending;
      if (job->unfinished > 0) {
        graph_.WaitForJob(job_number, me);
        continue;
      }
      const auto [name, failure] = JobEnded(job_number, *job);
      DependencyEnded(me, name, failure ? &*failure : nullptr);
      continue;
    }
    const TaskId other{job_number, d.index};
    const TaskRecord* dependency = tasks_.Find(other);
    if (!dependency) continue;  // forgotten after it ended
    ++pending;
    if (dependency->state() != TaskState::kFinished) {
      graph_.WaitForTask(other, me);
      continue;
    }
    const auto outcome = store_.Find(other);
    DependencyEnded(me, FormatTaskId(other),
                    outcome && outcome->status != TaskStatus::kOk ? &*outcome : nullptr);
  }
  if (task.state() != TaskState::kWaiting) return;
  if (--pending == 0) Release(id, task);
}

void BrokerCore::Release(TaskId id, TaskRecord& task) {
  const TaskSpec& spec = specs_.Peek(id);
  const SteadyTime due = tasks_.job(id.job).submitted_at + Seconds(spec.delay);
  if (spec.delay > 0 && due > now_) return Delay(id, task, due);
  tasks_.Move(task, QueuedNow(id));
  Enqueue(id, spec);
}

std::pair<std::string, std::optional<TaskOutcome>> BrokerCore::JobEnded(
    uint64_t job_number, const JobRecord& job) const {
  if (job.first_failed == UINT32_MAX) return {FormatJobId(job_number), std::nullopt};
  const TaskId first{job_number, job.first_failed};
  return {FormatJobId(job_number) + ": " + FormatTaskId(first), store_.Find(first)};
}

void BrokerCore::DependencyEnded(const Dependant& dependant, const std::string& dependency,
                                 const TaskOutcome* outcome) {
  TaskRecord* task = tasks_.Find(dependant.id);
  if (!task || task->state() != TaskState::kWaiting)
    return;  // it ended already (cancelled, failed)
  if (!outcome || dependant.any) {
    if (--task->waiting().pending == 0) Release(dependant.id, *task);
    return;
  }
  task->attempt = 0;
  Finish(dependant.id, *task,
         Ending(TaskStatus::kDependencyFailed, DependencyFailure(dependency, *outcome)));
}

void BrokerCore::NotifyDependants() {
  if (notifying_) return;
  notifying_ = true;
  while (const std::optional<TaskId> ended = graph_.NextEnded()) {
    const TaskId id = *ended;
    if (const std::vector<Dependant> list = graph_.TakeTaskDependants(id); !list.empty()) {
      const std::string name = FormatTaskId(id);
      const auto outcome = store_.Find(id);
      const TaskOutcome* failure =
          outcome && outcome->status != TaskStatus::kOk ? &*outcome : nullptr;
      for (const Dependant& d : list) DependencyEnded(d, name, failure);
    }
    const JobRecord* job = tasks_.FindJob(id.job);
    if (!job || job->unfinished > 0) continue;
    if (const std::vector<Dependant> list = graph_.TakeJobDependants(id.job); !list.empty()) {
      const auto [name, failure] = JobEnded(id.job, *job);
      for (const Dependant& d : list) DependencyEnded(d, name, failure ? &*failure : nullptr);
    }
  }
  notifying_ = false;
}

void BrokerCore::Retry(const std::string& from, const RetryRequest& request) {
  if (shutting_down_)
    return Reply(from, Error{ErrorCode::kShuttingDown, "the broker is shutting down"});
  if (!journal_problem_.empty())
    return Reply(from, Error{ErrorCode::kDiskFull, "nothing was retried: " + journal_problem_});
  const JobRecord* job = tasks_.FindJob(request.job);
  if (!job)
    return Reply(from, Error{ErrorCode::kUnknownId, "unknown job " + FormatJobId(request.job)});
  auto built = RetryJob(request, *job, store_, specs_);
  if (!built) return Reply(from, std::move(built.error()));
  const uint64_t number = AddJob(std::move(*built), job->context);
  Reply(from, SubmittedReply{number, tasks_.job(number).size});
  Dispatch();
}

void BrokerCore::EndTurn() {
  if (!halts_due_.empty()) Halt();
  delivery_.Flush(out_);
  telemetry_.Wake(now_, out_);
  tasks_.Compact();
  // Outcomes kept in memory are bounded: the jobs that ended first go first.
  while (options_.memory_results > 0 && tasks_.finished_total() > options_.memory_results) {
    const std::optional<uint64_t> oldest = tasks_.OldestFinished();
    if (!oldest || !ForgetJob(*oldest)) break;  // being gathered: when that is done
    tasks_.PopOldestFinished();
  }
}

void BrokerCore::Delay(TaskId id, TaskRecord& task, SteadyTime due) {
  tasks_.Move(task, TaskRecord::Delayed{});
  delayed_.Add(id, due);
}

void BrokerCore::Enqueue(TaskId id) { Enqueue(id, specs_.Peek(id)); }

void BrokerCore::Enqueue(TaskId id, const TaskSpec& spec) {
  ready_.Push(spec.need().queue, ClassIndex(spec), {spec.priority, id});
}

void BrokerCore::Gather(const std::string& from, const GatherRequest& request) {
  Delivery::Request gather{.client = from, .stream = request.stream};
  auto ids = tasks_.Resolve(request.ids, &gather);
  if (!ids) return Reply(from, ids.error());
  gather.ids = std::move(*ids);
  std::vector<bool> finished(gather.ids.size());
  for (size_t i = 0; i < gather.ids.size(); ++i)
    finished[i] = tasks_.Find(gather.ids[i])->state() == TaskState::kFinished;
  if (gather.stream) {
    for (const IdRef& ref : request.ids)  // (Resolve() checked them all)
      gather.sizes.push_back(ref.index ? 1 : tasks_.job(ref.job).size);
  }
  delivery_.Gather(std::move(gather), finished, out_);
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
  readers_.Ended(id, outcome, out_);
  store_.Put(std::move(outcome));
  delivery_.Ended(id, out_);
  if (graph_.Ended(id)) NotifyDependants();
}

void BrokerCore::Cancel(const std::string& from, const CancelRequest& request) {
  auto ids = tasks_.Resolve(request.ids);
  if (!ids) return Reply(from, ids.error());
  const uint32_t count = CancelTasks(*ids, request.running, "cancelled before it started");
  Reply(from, CancelledReply{count});
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
    Reply(workers_.at(worker_id).identity, std::move(message));
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

void BrokerCore::RestoreLimits(const std::vector<LimitSpec>& limits, SteadyTime now) {
  for (const LimitSpec& limit : limits) parking_.limits().SetLimit(limit, now);
}

void BrokerCore::Limit(const std::string& from, const LimitRequest& request) {
  const LimitSpec& limit = request.limit;
  switch (request.op) {
    case LimitRequest::Op::kList:
      break;
    case LimitRequest::Op::kSet:
      if (auto error = CheckLimitSpec(limit))
        return Reply(from, Error{ErrorCode::kBadRequest, std::move(*error)});
      parking_.limits().SetLimit(limit, now_);
      journal_.RecordLimit(limit, false);
      Requeue(parking_.Unpark({GateKey::Kind::kLimit, limit.name}, now_));  // it may have grown
      Dispatch();
      break;
    case LimitRequest::Op::kRemove:
      if (!parking_.limits().RemoveLimit(limit.name))
        return Reply(from, Error{ErrorCode::kUnknownId, "there is no limit '" + limit.name + "'"});
      journal_.RecordLimit(limit, true);
      Requeue(parking_.Unpark({GateKey::Kind::kLimit, limit.name}, now_));  // it limits nothing now
      Dispatch();
      break;
  }
  Reply(from, LimitsReply{parking_.LimitInfos()});
}

void BrokerCore::BeginShutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  const auto grace = static_cast<uint32_t>(kShutdownGrace.count());
  for (const auto& [id, w] : workers_.all()) Reply(w.identity, StopMessage{grace});
}

bool BrokerCore::MayAdopt(TaskId id, Role role, const std::string& key) const {
  auto it = orphans_.find(id);
  if (it == orphans_.end()) return false;  // never leased, or leased to someone else since
  return it->second == key || (it->second.empty() && role == Role::kLocal);
}

void BrokerCore::Register(const std::string& from, Role role, const std::string& key,
                          const ReadyMessage& ready) {
  // The same connection registering again (its Ready crossed a Reregister) keeps what it held:
  // those leases are not adopted anew.
  std::unordered_set<TaskId, TaskIdHash> held;
  if (auto earlier = workers_.IdOf(from)) {
    for (const auto& [lease, spec] : workers_.at(*earlier).leases) held.insert(lease);
    DropWorker(*earlier, "it registered again");
  }
  if (shutting_down_) return Reply(from, StopMessage{0});
  const uint32_t id = workers_.Add(from, role == Role::kWorker, key, ready, now_);
  Worker& w = workers_.at(id);
  telemetry_.WorkerJoined(w.pid, w.host, now_);
  // A worker coming back (after a pause, a partition or our restart) still runs some tasks. Those
  // whose lease nobody else has taken since are adopted; the others are stale: it must drop them.
  CancelTasksMessage stale;
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
    if (spec && task->attempt == lease.attempt && MayAdopt(lease.id, role, key) &&
        (!gated || !parking_.limits().Check(*spec->needs, now_)) &&
        WorkerPool::Fits(w, *spec, Cpus(*spec), now_)) {
      if (gated) parking_.limits().Acquire(*spec->needs, lease.id, now_);
      std::vector<std::string> ignored;  // it has its units' variables already
      WorkerPool::Lease(w, lease.id, spec, ignored);
      orphans_.erase(lease.id);
      tasks_.Move(*task, TaskRecord::Running{.worker = id});
      if (!held.count(lease.id)) ++counters_.adopted;
    } else {
      stale.ids.push_back(lease.id);
      // Taken off its gate for the check: back to its queue, where dispatch parks it again.
      if (parked) Enqueue(lease.id);
    }
  }
  if (!stale.ids.empty()) Reply(from, std::move(stale));
  // Tasks no worker could run may fit this one.
  Requeue(parking_.Unpark({GateKey::Kind::kWorker, ""}, now_));
  Dispatch();
}

void BrokerCore::Results(uint32_t worker_id, WorkerResultsMessage& results) {
  Worker& worker = workers_.at(worker_id);
  for (TaskOutcome& outcome : results.outcomes) {
    TaskRecord* task = tasks_.Find(outcome.id);
    if (!task || task->state() != TaskState::kRunning || task->running().worker != worker_id ||
        task->attempt != outcome.attempt) {
      ++counters_.stale_results;
      continue;
    }
    ++(outcome.status == TaskStatus::kOk ? worker.done : worker.failed);
    const auto spec = WorkerPool::Return(worker, outcome.id);
    Requeue(parking_.StopRunning(outcome.id, spec->needs.get(), now_));
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

void BrokerCore::Forget(const std::string& from, const ForgetRequest& request) {
  auto jobs = tasks_.ResolveJobs(request.jobs);
  if (!jobs) return Reply(from, jobs.error());
  for (uint64_t number : *jobs) {
    const std::string name = FormatJobId(number);
    if (delivery_.Gathering(number))
      return Reply(from, Error{ErrorCode::kBadRequest, "job " + name + " is being gathered"});
    if (const uint32_t unfinished = tasks_.job(number).unfinished; unfinished > 0)
      return Reply(
          from, Error{ErrorCode::kBadRequest, "job " + name + " has " + std::to_string(unfinished) +
                                                  " unfinished tasks; cancel or gather it first"});
  }
  for (uint64_t number : *jobs) ForgetJob(number);
  Reply(from, ForgottenReply{static_cast<uint32_t>(jobs->size())});
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

size_t BrokerCore::WorkersOfKey(const std::string& key, const std::string& identity) const {
  const auto earlier = workers_.IdOf(identity);
  return workers_.OfKey(key) - (earlier && workers_.at(*earlier).key == key ? 1 : 0);
}

std::vector<std::string> BrokerCore::RemoteWorkersOn(const std::string& host,
                                                     const std::string& key) const {
  return workers_.RemoteOn(host, key);
}

void BrokerCore::SetJournalProblem(std::string problem) {
  journal_problem_ = std::move(problem);
  if (journal_problem_.empty()) Dispatch();
}

void BrokerCore::Dispatch() {
  if (!halts_due_.empty()) Halt();  // before any lease: no task of a halted job starts
  if (shutting_down_ || !journal_problem_.empty()) return;
  for (bool progress = true; progress;) {
    progress = false;
    for (auto& [worker_id, w] : workers_.all()) {
      TasksMessage message;
      // Tasks another worker could run, but not this one now: back to their queue afterwards.
      std::vector<std::pair<ReadyQueues::Queue*, QueueEntry>> skipped;
      for (size_t c = 0; c < kTaskClassCount; ++c) {
        while (w.in_use[c] < w.capacity[c] && message.tasks.size() < kMaxTasksPerMessage) {
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
          if ((needs || cpus > 0) && !WorkerPool::Fits(w, *spec, cpus, now_)) {
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
            if (auto blocked = parking_.limits().Check(*needs, now_)) {
              parking_.Park(id, spec->priority, needs, blocked->gate);
              continue;
            }
            parking_.limits().Acquire(*needs, id, now_);
          }
          Assign(worker_id, w, id, *task, spec, message);
        }
      }
      for (auto& [queue, entry] : skipped) queue->push(entry);
      if (message.tasks.empty()) continue;
      progress = true;
      WatchMessage watch;  // the tasks someone waits to read the output of
      for (const Assignment& a : message.tasks) {
        if (readers_.Watched(a.id)) watch.ids.push_back(a.id);
      }
      Reply(w.identity, std::move(message));
      if (!watch.ids.empty()) Reply(w.identity, std::move(watch));
    }
  }
}

void BrokerCore::Assign(uint32_t worker_id, Worker& w, TaskId id, TaskRecord& task,
                        std::shared_ptr<const TaskSpec> looked, TasksMessage& message) {
  JobRecord& job = tasks_.job(id.job);
  const auto queued_at =
      job.submitted_at + std::chrono::milliseconds(std::get<TaskRecord::Queued>(task.data).since);
  tasks_.Move(task, TaskRecord::Running{.worker = worker_id});
  ++task.attempt;
  telemetry_.TaskStarted(id, task.attempt, w.pid, looked->body.index(), now_ - queued_at, now_);
  if (!orphans_.empty()) orphans_.erase(id);  // leased anew: nobody may adopt the old
  journal_.RecordLease(id, task.attempt);
  Assignment& a = message.tasks.emplace_back(Assignment{id, task.attempt, *looked, nullptr, {}});
  if (std::holds_alternative<ShellTask>(looked->body)) ShareContext(w.remote, job, a);
  WorkerPool::Lease(w, id, std::move(looked), a.env);  // (the lease keeps it while it runs)
}

TaskRecord::Queued BrokerCore::QueuedNow(TaskId id) {
  const auto since =
      std::chrono::duration_cast<std::chrono::milliseconds>(now_ - tasks_.job(id.job).submitted_at);
  return {static_cast<uint32_t>(std::clamp<int64_t>(since.count(), 0, UINT32_MAX))};
}

void BrokerCore::DropWorker(uint32_t worker_id, const std::string& why, bool lost) {
  if (!workers_.Find(worker_id)) return;
  const Worker gone = workers_.Remove(worker_id);
  telemetry_.WorkerLeft(gone.pid, gone.host, lost, now_);
  const std::string reason = "its worker (pid " + std::to_string(gone.pid) + ") was lost: " + why;
  readers_.WorkerGone(worker_id, workers_, out_);
  for (const auto& [id, spec] : gone.leases) {
    TaskRecord& task = *tasks_.Find(id);
    Requeue(parking_.StopRunning(id, spec->needs.get(), now_));
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
  Reply(workers_.at(*id).identity, StopMessage{UINT32_MAX});  // its tasks finish
  return true;
}

void BrokerCore::WorkerExited(int64_t pid) {
  if (auto id = workers_.IdOfPid(pid)) DropWorker(*id, "its process exited", true);
  EndTurn();
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
        Reply(w.identity, BrokerHeartbeatMessage{});
    }
    for (uint32_t id : silent) {
      ++counters_.workers_lost;
      DropWorker(id, "no heartbeat for " + std::to_string(expiry.count()) + " ms", true);
    }
    readers_.Expire(now, out_);
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

void BrokerCore::Requeue(const std::vector<TaskId>& ids) {
  for (TaskId id : ids) Enqueue(id);
}

}  // namespace orq

#include "broker/broker_core.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <type_traits>

#include "common/ids.h"
#include "common/overloaded.h"

namespace orq {
namespace {

// A job's first task, for people: its command line, or its kind.
std::string Label(const TaskSpec& spec) {
  std::string label;
  if (const auto* shell = std::get_if<ShellTask>(&spec.body)) {
    if (const std::string* line = ShellCommand(shell->argv)) {
      label = *line;
    } else {
      for (const std::string& word : shell->argv) label += (label.empty() ? "" : " ") + word;
    }
  } else {
    label = KindName(spec);
  }
  constexpr size_t kMax = 120;
  if (label.size() > kMax) label = label.substr(0, kMax - 3) + "...";
  return label;
}

}  // namespace

BrokerCore::BrokerCore(BrokerOptions options, ResultStore& store, Journal& journal)
    : options_(std::move(options)),
      store_(store),
      journal_(journal),
      random_(options_.seed),
      delivery_(store) {}

void BrokerCore::Restore(std::vector<RecoveredJob> jobs, SteadyTime now, double wall_now) {
  now_ = now;
  std::vector<Outgoing> unused;  // no worker or client is connected yet
  std::vector<TaskId> to_wire;   // tasks that had not started, with dependencies
  for (RecoveredJob& recovered : jobs) {
    Job& job = jobs_[recovered.job];
    next_job_ = std::max(next_job_, recovered.job + 1);
    job.context = std::make_shared<const JobContext>(std::move(recovered.context));
    job.submitted_at =
        now - std::chrono::duration_cast<SteadyTime::duration>(
                  std::chrono::duration<double>(std::max(0.0, wall_now - recovered.submitted)));
    if (!recovered.key.empty()) keys_[recovered.key] = recovered.job;
    job.key = std::move(recovered.key);
    if (recovered.ended) {  // every task ended: counts, as Compact() leaves a job
      const RecoveredJob::Ended& e = *recovered.ended;
      job.label = Label(e.first);
      job.size = e.size;
      job.ended = e.by_status;
      job.ok = e.by_status[static_cast<size_t>(TaskStatus::kOk)];
      job.failed = e.size - job.ok;
      job.first_failed = e.first_failed;
      job.spilled = true;  // not known without reading every outcome: looked for when forgotten
      job.finished_at = now;
      finished_jobs_.push_back(recovered.job);
      for (size_t s = 0; s < e.by_status.size(); ++s) finished_[s] += e.by_status[s];
      continue;
    }
    job.tasks.resize(recovered.tasks.size());
    job.specs.resize(recovered.tasks.size());
    job.size = static_cast<uint32_t>(recovered.tasks.size());
    if (!recovered.tasks.empty()) job.label = Label(recovered.tasks[0].spec);
    job.unfinished = static_cast<uint32_t>(recovered.tasks.size());
    for (uint32_t i = 0; i < job.tasks.size(); ++i) {
      RecoveredTask& r = recovered.tasks[i];
      Task& task = job.tasks[i];
      const TaskId id{recovered.job, i};
      job.specs[i] = std::move(r.spec);
      task.spec = &job.specs[i];
      task.attempt = r.attempts;
      task.failures = r.failures;
      if (!r.last_error.empty()) last_errors_[id] = r.last_error;
      if (r.outcome) {
        task.state = State::kRunning;  // so Finish() counts it from a known state
        ++running_;
        Finish(id, task, std::move(*r.outcome), unused, /*journal=*/false);
        continue;
      }
      if (task.spec->needs && !task.spec->needs->after.empty() && task.attempt == 0 &&
          r.retry_due == 0 && !r.cancel_requested) {
        task.state = State::kWaiting;  // wired once every job is back: it may wait on a later one
        ++waiting_;
        to_wire.push_back(id);
        continue;
      }
      task.state = State::kQueued;
      ++queued_;
      if (r.cancel_requested) {
        TaskOutcome outcome;
        outcome.status = TaskStatus::kCancelled;
        outcome.error = "cancelled while running (the broker restarted meanwhile)";
        Finish(id, task, std::move(outcome), unused);
        continue;
      }
      double wait = 0;  // seconds until eligible
      if (r.retry_due > 0) {
        wait = r.retry_due - wall_now;
      } else if (task.attempt == 0 && task.spec->delay > 0) {
        wait = recovered.submitted + task.spec->delay - wall_now;
      } else if (task.attempt > task.failures) {
        // It was running when the broker stopped: that execution is lost.
        ++counters_.requeued;
        if (task.attempt - task.failures >= task.spec->attempts) {
          LeaseLost(id, task, "the broker stopped while it ran", unused);
          continue;
        }
        orphans_[id] = "";  // who held it is not journaled: a local worker may take it back
      }
      if (wait > 0) {
        task.state = State::kDelayed;
        --queued_;
        ++delayed_count_;
        Delay(id, now + std::chrono::duration_cast<SteadyTime::duration>(
                            std::chrono::duration<double>(wait)));
      } else {
        Enqueue(id, task);
      }
    }
    if (job.unfinished == 0) job.finished_at = now;
  }
  // A dependency the journal no longer has was forgotten after it ended, and its dependants were
  // still waiting: it ended as they needed (else they would have ended too). Wire() says so.
  for (TaskId id : to_wire) Wire(id, *Find(id), unused);
  Compact();
}

void BrokerCore::Delay(TaskId id, SteadyTime due) { delayed_.Add(id, due); }

void BrokerCore::Handle(const std::string& from, Message message, SteadyTime now,
                        std::vector<Outgoing>& out, Role role, const std::string& key) {
  now_ = now;
  const Command command = CommandOf(message);
  if (!ToBroker(command)) {
    ++counters_.unexpected;  // a reply or a broker-to-worker message sent to the broker
    return;
  }
  if (!MaySend(role, command)) return Refuse(from, role, command, out);
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
          [&](SubmitRequest& m) { Submit(from, m, now, out); },
          [&](GatherRequest& m) { Gather(from, m, out); },
          [&](StatusRequest&) { Status(from, out); },
          [&](CancelRequest& m) { Cancel(from, m, out); },
          [&](ShutdownRequest&) { Shutdown(from, out); },
          [&](PingRequest&) {
            out.push_back({from, PongReply{options_.broker_pid}});
          },
          [&](ForgetRequest& m) { Forget(from, m, out); },
          [&](JobsRequest& m) { Jobs(from, m, out); },
          [&](RetryRequest& m) { Retry(from, m, now, out); },
          [&](LogsRequest& m) { Logs(from, m, out); },
          [&](LimitRequest& m) { Limit(from, m, out); },
          [&](ExplainRequest& m) { Explain(from, m, out); },
          [&](ResultsAck&) { delivery_.Acknowledged(from, out); },
          [&](OutputMessage& m) {
            if (worker) Output(*worker_id, m, out);
          },
          [&](OutputPieceMessage& m) {
            if (m.text.size() > kOutputPieceBytes) {  // counted, and the next worker is asked
              ++counters_.over_bounds;
              m.found = false;
              m.text.clear();
            }
            if (!worker || !spill_fetches_.Piece(*worker_id, m, IdentityOf(), out))
              ++counters_.unexpected;
          },
          [&](ReadyMessage& m) { Register(from, role, key, m, now, out); },
          [&](WorkerResultsMessage& m) {
            if (worker) return Results(*worker_id, m, now, out);
            // A worker we dropped (paused, partitioned): its results are stale; it must
            // register again, telling us what it still runs.
            counters_.stale_results += m.outcomes.size();
            out.push_back({from, ReregisterMessage{}});
          },
          [&](HeartbeatMessage&) {
            if (!worker) out.push_back({from, ReregisterMessage{}});
          },
          [&](GoodbyeMessage&) {
            if (worker) DropWorker(*worker_id, "it left", out);
          },
          // The shell answers or keeps these; they never reach the core.
          [&](ReloadAccessRequest&) { ++counters_.unexpected; },
          [&](ScaleRequest&) { ++counters_.unexpected; },
          [&](SubmitPartRequest&) { ++counters_.unexpected; },
          [&]<typename T>(T&) {
            // Replies and messages for workers are not for the broker (ToBroker() returned above).
            static_assert(!ToBroker(T::kCommand),
                          "a message for the broker needs a case in BrokerCore::Handle "
                          "(broker/broker_core.cc)");
          },
      },
      message);
  EndTurn(out);
}

void BrokerCore::Refuse(const std::string& from, Role role, Command command,
                        std::vector<Outgoing>& out) {
  ++counters_.forbidden;
  if (!IsRequest(command)) return;  // a worker message from a non-worker: nobody waits for it
  std::string why;
  switch (role) {
    case Role::kRevoked:
      why = "this key was revoked";
      break;
    case Role::kWorker:
      why = "a worker key may only register and report results";
      break;
    case Role::kClient:
      why = "a client key may not administer access; do that on the broker's host";
      break;
    case Role::kLocal:
      why = "not allowed";
      break;
  }
  out.push_back(
      {from, ErrorReply{ErrorCode::kForbidden, "the broker refused this request: " + why}});
}

void BrokerCore::PeerRevoked(const std::string& peer, std::vector<Outgoing>& out) {
  ++counters_.revoked;
  PeerUnreachable(peer);
  if (auto id = workers_.IdOf(peer)) DropWorker(*id, "its key was revoked", out);
  EndTurn(out);
}

void BrokerCore::HandleMalformed(const std::string& from, const std::string& what,
                                 std::vector<Outgoing>& out) {
  ++counters_.malformed;
  if (!workers_.IdOf(from))
    out.push_back({from, ErrorReply{ErrorCode::kBadRequest, "malformed request: " + what}});
}

void BrokerCore::PeerUnreachable(const std::string& peer) {
  delivery_.ClientGone(peer);
  spill_fetches_.ClientGone(peer);
  followers_.ClientGone(peer);
}

void BrokerCore::Logs(const std::string& from, const LogsRequest& request,
                      std::vector<Outgoing>& out) {
  auto ref = ParseId(request.task);
  Task* task = ref && ref->index ? Find({ref->job, *ref->index}) : nullptr;
  if (!task)
    return out.push_back(
        {from, ErrorReply{ErrorCode::kUnknownId, "unknown task '" + request.task + "'"}});
  const TaskId id{ref->job, *ref->index};
  if (request.rest) return LogsRest(from, id, request, out);
  const Followers::Follower follower{from, request.err, request.follow, task->attempt, 0};
  switch (task->state) {
    case State::kFinished:
      followers_.Add(id, follower);
      return followers_.End(id, Stored(id), out);
    case State::kWaiting:
    case State::kQueued:
    case State::kDelayed:
      if (!request.follow)
        return out.push_back(
            {from, LogChunk{"", true, request.task + " has not started yet", "", ""}});
      followers_.Add(id, follower);  // told to its worker when it is leased (Dispatch)
      return;
    case State::kRunning:
      followers_.Add(id, follower);
      // Its worker sends what it printed so far at once, then the rest as it comes.
      return out.push_back({workers_.at(task->worker).identity, WatchMessage{{id}}});
  }
}

void BrokerCore::LogsRest(const std::string& from, TaskId id, const LogsRequest& request,
                          std::vector<Outgoing>& out) {
  const std::string stream = request.err ? "stderr" : "stdout";
  if (Find(id)->state != State::kFinished)
    return out.push_back({from, LogChunk{"", true,
                                         FormatTaskId(id) + " runs again: its " + stream +
                                             " starts again (orq logs " + FormatTaskId(id) + ")"}});
  const TaskOutcome outcome = Stored(id);
  const ShellOutput::More* more = outcome.shell ? outcome.shell->more.get() : nullptr;
  const std::string file = more ? (request.err ? more->stderr_file : more->stdout_file) : "";
  if (file.empty())
    return out.push_back({from, LogChunk{"", true, "its " + stream + " did not go to a file"}});
  // The broker named the file (absolute: a local worker's, in this host's $ORQ_HOME; else in the
  // $ORQ_HOME of the remote worker on its host), so every local worker can read a local one, and
  // the remote workers of that host may have a remote one.
  const bool local = file[0] == '/';
  std::vector<uint32_t> holders = workers_.Readers(local, more->host);
  const std::string where =
      local ? file : file + " in the $ORQ_HOME of its worker on " + more->host;
  spill_fetches_.Begin({from, {id, outcome.attempt}, request.err, request.offset, where},
                       std::move(holders), now_, IdentityOf(), out);
}

SpillFetches::IdentityOf BrokerCore::IdentityOf() const {
  return [this](uint32_t worker) -> const std::string* {
    const Worker* w = workers_.Find(worker);
    return w ? &w->identity : nullptr;
  };
}

void BrokerCore::Output(uint32_t worker, const OutputMessage& output, std::vector<Outgoing>& out) {
  if (followers_.empty()) return;
  // Only the attempt that holds the lease speaks for the task (a worker that lost it may still
  // send a little): anything else would restart the followers' stream.
  const Task* task = Find(output.id);
  if (!task || task->state != State::kRunning || task->attempt != output.attempt ||
      task->worker != worker)
    return;
  followers_.Output(output, out);
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
  if (request.key.size() > kMaxKeyBytes)
    return refuse("the key is " + std::to_string(request.key.size()) + " bytes; the limit is " +
                  std::to_string(kMaxKeyBytes));
  if (auto it = keys_.find(request.key); !request.key.empty() && it != keys_.end()) {
    // Submitted before (a retry after a timeout, say): that job's id, and nothing new.
    const Job& job = jobs_.at(it->second);
    return out.push_back({from, SubmittedReply{it->second, job.size, true}});
  }
  if (request.tasks.empty()) return refuse("a job needs at least one task");
  // (After the key: returning a job submitted before writes nothing to the journal.)
  if (!journal_problem_.empty())
    return out.push_back(
        {from, ErrorReply{ErrorCode::kDiskFull, "nothing was accepted: " + journal_problem_}});
  if (request.tasks.size() > options_.max_tasks_per_job)
    return refuse("a job may hold at most " + std::to_string(options_.max_tasks_per_job) +
                  " tasks; this one has " + std::to_string(request.tasks.size()));
  for (size_t i = 0; i < request.tasks.size(); ++i) {
    if (auto error = ValidateSpec(request.tasks[i]))
      return refuse("task " + std::to_string(i) + ": " + *error);
  }
  if (auto error = ValidateHalt(request.halt)) return refuse(*error);
  if (auto error = CheckDependencies(request.tasks)) return refuse(*error);
  if (auto error = CheckForeignDependencies(request.tasks)) return refuse(*error);
  for (size_t i = 0; i < request.tasks.size(); ++i) {
    for (const std::string& limit : request.tasks[i].need().limits) {
      if (!parking_.limits().HasLimit(limit))
        return refuse("task " + std::to_string(i) + ": there is no limit '" + limit +
                      "'; set it first: orq limit set " + limit + " N");
    }
  }
  if (request.context.cwd.size() > kMaxPathBytes)
    return refuse("the job's directory is " + std::to_string(request.context.cwd.size()) +
                  " bytes long; the limit is " + std::to_string(kMaxPathBytes));
  if (request.context.env) {
    if (auto error = ValidateEnv(*request.context.env, "the job's environment"))
      return refuse(*error);
  }
  const uint64_t job_number = AddJob(std::move(request.tasks),
                                     std::make_shared<const JobContext>(std::move(request.context)),
                                     now, out, std::move(request.key));
  jobs_.at(job_number).halt = request.halt;
  out.push_back({from, SubmittedReply{job_number, jobs_.at(job_number).size}});
  Dispatch(out);
}

uint64_t BrokerCore::AddJob(std::vector<TaskSpec> specs, std::shared_ptr<const JobContext> context,
                            SteadyTime now, std::vector<Outgoing>& out, std::string key) {
  const uint64_t job_number = next_job_++;
  journal_.RecordJob(job_number, specs, *context);
  Job& job = jobs_[job_number];
  job.context = std::move(context);
  job.submitted_at = now;
  job.label = Label(specs.front());
  job.specs = std::move(specs);  // the specs stay where they are; tasks point at them
  if (!key.empty()) {
    journal_.RecordKey(job_number, key);
    keys_[key] = job_number;
    job.key = std::move(key);
  }
  size_t per_class[kTaskClassCount] = {};
  for (const TaskSpec& spec : job.specs) ++per_class[ClassIndex(spec)];
  for (size_t c = 0; c < kTaskClassCount; ++c) ready_.ReserveDefault(c, per_class[c]);
  job.tasks.resize(job.specs.size());
  job.size = static_cast<uint32_t>(job.specs.size());
  job.unfinished = job.size;
  std::vector<uint32_t> to_wire;  // tasks with dependencies: wired once all of the job exists
  for (uint32_t i = 0; i < job.tasks.size(); ++i) {
    Task& task = job.tasks[i];
    task.spec = &job.specs[i];
    TaskId id{job_number, i};
    if (task.spec->needs && !task.spec->needs->after.empty()) {
      task.state = State::kWaiting;
      ++waiting_;
      to_wire.push_back(i);
    } else if (task.spec->delay > 0) {
      task.state = State::kDelayed;
      ++delayed_count_;
      Delay(id, now + std::chrono::duration_cast<SteadyTime::duration>(
                          std::chrono::duration<double>(task.spec->delay)));
    } else {
      task.state = State::kQueued;
      ++queued_;
      Enqueue(id, task);
    }
  }
  for (uint32_t i : to_wire) Wire({job_number, i}, job.tasks[i], out);
  return job_number;
}

std::optional<std::string> BrokerCore::CheckForeignDependencies(
    const std::vector<TaskSpec>& specs) const {
  for (size_t i = 0; i < specs.size(); ++i) {
    for (const Dependency& d : specs[i].need().after) {
      if (d.job == Dependency::kSameJob) continue;
      const std::string id = d.whole_job ? FormatJobId(d.job) : FormatTaskId({d.job, d.index});
      auto job = jobs_.find(d.job);
      if (job == jobs_.end() || (!d.whole_job && d.index >= job->second.size))
        return "task " + std::to_string(i) + ": field 'after' names " + id +
               ", which the broker does not have (unknown, or forgotten)";
    }
  }
  return std::nullopt;
}

void BrokerCore::Wire(TaskId id, Task& task, std::vector<Outgoing>& out) {
  // Precondition: task.state is kWaiting (and counted so). One more than the dependencies while
  // wiring, so that a dependency ending meanwhile cannot release it.
  task.pending = 1;
  for (const Dependency& d : task.spec->need().after) {
    if (task.state != State::kWaiting) return;  // it ended (dependency_failed) on the way
    const uint64_t job_number = d.job == Dependency::kSameJob ? id.job : d.job;
    const Dependant me{id, d.any};
    auto job = jobs_.find(job_number);
    if (d.whole_job) {
      if (job == jobs_.end()) continue;  // forgotten after it ended (see Restore)
      if (job->second.unfinished > 0) {
        graph_.WaitForJob(job_number, me);
        ++task.pending;
        continue;
      }
      ++task.pending;
      const auto [name, failure] = JobEnded(job_number, job->second);
      DependencyEnded(me, name, failure ? &*failure : nullptr, out);
      continue;
    }
    const TaskId other{job_number, d.index};
    const Task* dependency = Find(other);
    if (!dependency) continue;  // forgotten after it ended
    ++task.pending;
    if (dependency->state != State::kFinished) {
      graph_.WaitForTask(other, me);
      continue;
    }
    const auto outcome = store_.Find(other);
    DependencyEnded(me, FormatTaskId(other),
                    outcome && outcome->status != TaskStatus::kOk ? &*outcome : nullptr, out);
  }
  if (task.state != State::kWaiting) return;
  if (--task.pending == 0) Release(id, task);
}

void BrokerCore::Release(TaskId id, Task& task) {
  --waiting_;
  const SteadyTime due =
      jobs_.at(id.job).submitted_at + std::chrono::duration_cast<SteadyTime::duration>(
                                          std::chrono::duration<double>(task.spec->delay));
  if (task.spec->delay > 0 && due > now_) {
    task.state = State::kDelayed;
    ++delayed_count_;
    return Delay(id, due);
  }
  task.state = State::kQueued;
  ++queued_;
  Enqueue(id, task);
}

std::pair<std::string, std::optional<TaskOutcome>> BrokerCore::JobEnded(uint64_t job_number,
                                                                        const Job& job) const {
  if (job.first_failed == UINT32_MAX) return {FormatJobId(job_number), std::nullopt};
  const TaskId first{job_number, job.first_failed};
  return {FormatJobId(job_number) + ": " + FormatTaskId(first), store_.Find(first)};
}

void BrokerCore::DependencyEnded(const Dependant& dependant, const std::string& dependency,
                                 const TaskOutcome* outcome, std::vector<Outgoing>& out) {
  Task* task = Find(dependant.id);
  if (!task || task->state != State::kWaiting) return;  // it ended already (cancelled, failed)
  if (!outcome || dependant.any) {
    if (--task->pending == 0) Release(dependant.id, *task);
    return;
  }
  // The sentence names the dependency and how it ended; down a chain, the first failure too
  // (its own sentence is not nested again and again: it stays one line however long the chain).
  TaskOutcome failed;
  failed.status = TaskStatus::kDependencyFailed;
  failed.error = "dependency " + dependency + " ended " + std::string(StatusName(outcome->status));
  if (outcome->status == TaskStatus::kDependencyFailed) {
    constexpr std::string_view kFirst = "; the first failure: ";
    const size_t at = outcome->error.find(kFirst);
    const std::string_view root =
        std::string_view(outcome->error)
            .substr(at == std::string::npos ? std::string_view("dependency ").size()
                                            : at + kFirst.size());
    failed.error += std::string(kFirst) + std::string(root);
  }
  task->attempt = 0;
  Finish(dependant.id, *task, std::move(failed), out);
}

void BrokerCore::NotifyDependants(std::vector<Outgoing>& out) {
  if (notifying_) return;
  notifying_ = true;
  while (const std::optional<TaskId> ended = graph_.NextEnded()) {
    const TaskId id = *ended;
    if (const std::vector<Dependant> list = graph_.TakeTaskDependants(id); !list.empty()) {
      const std::string name = FormatTaskId(id);
      const auto outcome = store_.Find(id);
      const TaskOutcome* failure =
          outcome && outcome->status != TaskStatus::kOk ? &*outcome : nullptr;
      for (const Dependant& d : list) DependencyEnded(d, name, failure, out);
    }
    auto job = jobs_.find(id.job);
    if (job == jobs_.end() || job->second.unfinished > 0) continue;
    if (const std::vector<Dependant> list = graph_.TakeJobDependants(id.job); !list.empty()) {
      const auto [name, failure] = JobEnded(id.job, job->second);
      for (const Dependant& d : list) DependencyEnded(d, name, failure ? &*failure : nullptr, out);
    }
  }
  notifying_ = false;
}

void BrokerCore::Jobs(const std::string& from, const JobsRequest& request,
                      std::vector<Outgoing>& out) const {
  std::vector<uint64_t> numbers;
  if (request.ids.empty()) {
    for (const auto& [number, job] : jobs_) numbers.push_back(number);
    std::sort(numbers.begin(), numbers.end());
  } else {
    for (const std::string& text : request.ids) {
      auto ref = ParseId(text);
      if (!ref || ref->index)
        return out.push_back({from, ErrorReply{ErrorCode::kUnknownId,
                                               "'" + text + "' is not a job id (expected j7)"}});
      if (!jobs_.count(ref->job))
        return out.push_back(
            {from, ErrorReply{ErrorCode::kUnknownId, "unknown job " + FormatJobId(ref->job)}});
      numbers.push_back(ref->job);
    }
  }
  JobsReply reply;
  for (uint64_t number : numbers) {
    const Job& job = jobs_.at(number);
    JobInfo info;
    info.job = number;
    info.age = std::chrono::duration<double>(now_ - job.submitted_at).count();
    info.tasks = job.size;
    for (const Task& task : job.tasks) {  // O(tasks): asked for now and then, not per task
      switch (task.state) {
        case State::kWaiting:
          ++info.waiting;
          break;
        case State::kQueued:
          ++info.queued;
          break;
        case State::kDelayed:
          ++info.delayed;
          break;
        case State::kRunning:
          ++info.running;
          break;
        case State::kFinished:
          break;
      }
    }
    info.ok = job.ok;
    info.cancelled = job.ended[static_cast<size_t>(TaskStatus::kCancelled)];
    info.failed = job.failed - info.cancelled;
    if (job.unfinished == 0)
      info.finished_age = std::chrono::duration<double>(now_ - job.finished_at).count();
    info.label = job.label;
    reply.jobs.push_back(std::move(info));
  }
  out.push_back({from, std::move(reply)});
}

void BrokerCore::Retry(const std::string& from, const RetryRequest& request, SteadyTime now,
                       std::vector<Outgoing>& out) {
  auto refuse = [&](ErrorCode code, std::string message) {
    out.push_back({from, ErrorReply{code, std::move(message)}});
  };
  if (shutting_down_) return refuse(ErrorCode::kShuttingDown, "the broker is shutting down");
  if (!journal_problem_.empty())
    return refuse(ErrorCode::kDiskFull, "nothing was retried: " + journal_problem_);
  auto it = jobs_.find(request.job);
  if (it == jobs_.end())
    return refuse(ErrorCode::kUnknownId, "unknown job " + FormatJobId(request.job));
  const Job& job = it->second;
  std::vector<TaskSpec> specs;
  if (request.all) {
    // Finished tasks keep no payload in memory; the journal has every spec as submitted.
    auto stored = journal_.Specs(request.job);
    if (!stored)
      return refuse(ErrorCode::kBadRequest,
                    "this broker keeps no journal (--no-journal), so only the tasks that did not "
                    "end ok can be retried: drop --all");
    specs = std::move(*stored);
  } else {
    std::unordered_map<uint32_t, uint32_t> renumbered;  // old index -> index in the new job
    // A compacted job's specs are in the journal only.
    std::optional<std::vector<TaskSpec>> stored;
    if (job.tasks.empty()) stored = journal_.Specs(request.job);
    for (uint32_t i = 0; i < job.size; ++i) {
      if (!job.tasks.empty() && job.tasks[i].state != State::kFinished) continue;
      const auto outcome = store_.Find({request.job, i});
      if (outcome && outcome->status != TaskStatus::kOk) {
        renumbered[i] = static_cast<uint32_t>(specs.size());
        specs.push_back(job.tasks.empty() ? stored->at(i) : *job.tasks[i].spec);
      }
    }
    if (specs.empty())
      return refuse(
          ErrorCode::kBadRequest,
          FormatJobId(request.job) + " has no finished task that did not end ok: nothing to retry");
    // A dependency on a task of the old job runs after its new copy when that is retried too,
    // else after the old one (which ended ok).
    for (TaskSpec& spec : specs) {
      if (!spec.needs || spec.needs->after.empty()) continue;
      Needs needs = *spec.needs;
      for (Dependency& d : needs.after) {
        if (d.job != Dependency::kSameJob) continue;
        if (auto it = renumbered.find(d.index); it != renumbered.end())
          d.index = it->second;
        else
          d.job = request.job;
      }
      spec.needs = MakeNeeds(std::move(needs));
    }
  }
  const uint64_t number = AddJob(std::move(specs), job.context, now, out);
  out.push_back({from, SubmittedReply{number, jobs_.at(number).size}});
  Dispatch(out);
}

BrokerCore::Task* BrokerCore::Find(TaskId id) {
  auto it = jobs_.find(id.job);
  if (it == jobs_.end() || id.index >= it->second.size) return nullptr;
  if (it->second.tasks.empty()) {  // compacted: every task of it has ended
    compacted_task_ = Task{};
    compacted_task_.spec = &compacted_spec_;
    compacted_task_.state = State::kFinished;
    return &compacted_task_;
  }
  return &it->second.tasks[id.index];
}

void BrokerCore::EndTurn(std::vector<Outgoing>& out) {
  if (!halts_due_.empty()) Halt(out);
  delivery_.Flush(out);
  Compact();
}

void BrokerCore::Compact() {
  if (!journal_.durable()) {  // memory is the only place they are kept: bounded, oldest out
    ended_jobs_.clear();
    uint64_t kept = 0;
    for (uint64_t n : finished_) kept += n;
    while (options_.memory_results > 0 && kept > options_.memory_results &&
           !finished_jobs_.empty()) {
      auto job = jobs_.find(finished_jobs_.front());
      if (job != jobs_.end()) {
        if (delivery_.Gathering(job->first)) break;  // being gathered: when that is done
        kept -= job->second.size;
        ForgetJob(job->first);
      }
      finished_jobs_.pop_front();
    }
    return;
  }
  for (uint64_t number : ended_jobs_) {
    auto it = jobs_.find(number);
    if (it == jobs_.end() || it->second.unfinished > 0) continue;  // forgotten, or retried
    std::vector<Task>().swap(it->second.tasks);
    std::vector<TaskSpec>().swap(it->second.specs);
  }
  ended_jobs_.clear();
}

void BrokerCore::Enqueue(TaskId id, const Task& task) {
  ready_.Push(task.spec->need().queue, ClassIndex(*task.spec), {task.spec->priority, id});
}

bool BrokerCore::Resolve(const std::string& from, const std::vector<std::string>& ids,
                         std::vector<TaskId>& tasks, std::vector<Outgoing>& out,
                         Delivery::Request* waiter) const {
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
    const uint32_t size = job->second.size;
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
  Delivery::Request gather{.client = from, .stream = request.stream};
  if (!Resolve(from, request.ids, gather.ids, out, &gather)) return;
  std::vector<bool> finished(gather.ids.size());
  for (size_t i = 0; i < gather.ids.size(); ++i)
    finished[i] = Find(gather.ids[i])->state == State::kFinished;
  if (gather.stream) {
    for (const std::string& text : request.ids) {
      auto ref = ParseId(text);  // Resolve() checked them all
      gather.sizes.push_back(ref->index ? 1 : jobs_.at(ref->job).size);
    }
  }
  delivery_.Gather(std::move(gather), finished, out);
}

TaskOutcome BrokerCore::Stored(TaskId id) const { return Delivery::Stored(store_, id); }

void BrokerCore::Finish(TaskId id, Task& task, TaskOutcome outcome, std::vector<Outgoing>& out,
                        bool journal) {
  if (!orphans_.empty()) orphans_.erase(id);
  switch (task.state) {
    case State::kWaiting:
      --waiting_;
      break;
    case State::kQueued:
      --queued_;
      if (!parking_.empty()) Requeue(parking_.StopWaiting(id, now_));
      break;
    case State::kDelayed:
      --delayed_count_;
      break;
    case State::kRunning:
      --running_;
      break;
    case State::kFinished:
      return;  // one outcome per task, always
  }
  task.state = State::kFinished;
  task.cancel_requested = false;
  ++finished_[static_cast<size_t>(outcome.status)];
  outcome.id = id;
  outcome.attempt = task.attempt;
  if (auto it = last_errors_.find(id); it != last_errors_.end()) {
    outcome.last_error = std::move(it->second);
    last_errors_.erase(it);
  }
  Job& job = jobs_.at(id.job);
  const bool ok = outcome.status == TaskStatus::kOk;
  ++(ok ? job.ok : job.failed);
  ++job.ended[static_cast<size_t>(outcome.status)];
  if (!ok && job.first_failed == UINT32_MAX) job.first_failed = id.index;
  if (!job.halted && HaltDecided(job.halt, job.failed, job.ok)) {
    job.halted = true;
    halts_due_.push_back(id.job);
  }
  if (outcome.shell) {
    if (outcome.shell->more &&
        !(outcome.shell->more->stdout_file.empty() && outcome.shell->more->stderr_file.empty()))
      job.spilled = true;
    // Its command goes with its outcome (gather replies show it), so the spec need not stay.
    if (const auto* shell = std::get_if<ShellTask>(&task.spec->body); shell && journal) {
      auto more = outcome.shell->more ? std::make_shared<ShellOutput::More>(*outcome.shell->more)
                                      : std::make_shared<ShellOutput::More>();
      more->argv = shell->argv;
      outcome.shell->more = std::move(more);
    }
  }
  if (journal) journal_.RecordOutcome(outcome);
  if (!followers_.empty()) followers_.End(id, outcome, out);
  store_.Put(std::move(outcome));
  // The payload (values) of a task that ended ok is no longer needed; its kind stays, for its
  // class (a shell task's command went into its outcome above). One that did not end ok keeps
  // it, for `orq retry`.
  if (ok) std::visit([](auto& body) { body = std::decay_t<decltype(body)>{}; }, task.spec->body);

  if (--job.unfinished == 0) {
    job.finished_at = now_;
    finished_jobs_.push_back(id.job);
    ended_jobs_.push_back(id.job);
  }
  delivery_.Ended(id, out);
  if (graph_.Ended(id)) NotifyDependants(out);
}

void BrokerCore::Cancel(const std::string& from, const CancelRequest& request,
                        std::vector<Outgoing>& out) {
  std::vector<TaskId> ids;
  if (!Resolve(from, request.ids, ids, out)) return;
  const uint32_t count = CancelTasks(ids, request.running, "cancelled before it started", out);
  out.push_back({from, CancelledReply{count}});
}

uint32_t BrokerCore::CancelTasks(const std::vector<TaskId>& ids, bool running,
                                 const std::string& why, std::vector<Outgoing>& out) {
  uint32_t count = 0;
  std::unordered_map<uint32_t, CancelTasksMessage> stops;
  for (TaskId id : ids) {
    Task& task = *Find(id);
    if (task.state == State::kRunning) {
      if (!running) continue;  // --halt soon: let it finish
      if (!task.cancel_requested) {
        task.cancel_requested = true;
        journal_.RecordCancelRequest(id);
        stops[task.worker].ids.push_back(id);
      }
      ++count;
    } else if (task.state != State::kFinished) {
      TaskOutcome outcome;
      outcome.status = TaskStatus::kCancelled;
      outcome.error = why;
      Finish(id, task, std::move(outcome), out);
      ++count;
    }
  }
  for (auto& [worker_id, message] : stops)
    out.push_back({workers_.at(worker_id).identity, std::move(message)});
  return count;
}

void BrokerCore::Halt(std::vector<Outgoing>& out) {
  while (!halts_due_.empty()) {
    const uint64_t job_number = halts_due_.back();
    halts_due_.pop_back();
    auto it = jobs_.find(job_number);
    if (it == jobs_.end() || it->second.unfinished == 0) continue;
    std::vector<TaskId> ids;
    for (uint32_t i = 0; i < it->second.tasks.size(); ++i) {
      if (it->second.tasks[i].state != State::kFinished) ids.push_back({job_number, i});
    }
    CancelTasks(ids, it->second.halt.now, "cancelled: its job halted (--halt)", out);
  }
}

void BrokerCore::Status(const std::string& from, std::vector<Outgoing>& out) const {
  StatusReply status;
  status.broker_pid = options_.broker_pid;
  status.journal_problem = journal_problem_;
  status.endpoints = {options_.endpoint};
  status.endpoints.insert(status.endpoints.end(), options_.listen.begin(), options_.listen.end());
  status.workers = workers_.Infos();
  auto finished = [&](TaskStatus s) { return finished_[static_cast<size_t>(s)]; };
  status.tasks = {waiting_,
                  queued_,
                  delayed_count_,
                  running_,
                  finished(TaskStatus::kOk),
                  finished(TaskStatus::kFailed),
                  finished(TaskStatus::kTimeout),
                  finished(TaskStatus::kCancelled),
                  finished(TaskStatus::kWorkerLost),
                  finished(TaskStatus::kDependencyFailed)};
  status.jobs = jobs_.size();
  status.counters = counters_;
  status.limits = parking_.LimitInfos();
  status.locks = parking_.LockInfos();
  out.push_back({from, std::move(status)});
}

void BrokerCore::RestoreLimits(const std::vector<LimitSpec>& limits, SteadyTime now) {
  for (const LimitSpec& limit : limits) parking_.limits().SetLimit(limit, now);
}

void BrokerCore::Limit(const std::string& from, const LimitRequest& request,
                       std::vector<Outgoing>& out) {
  const LimitSpec& limit = request.limit;
  auto refuse = [&](std::string message) {
    out.push_back({from, ErrorReply{ErrorCode::kBadRequest, std::move(message)}});
  };
  switch (request.op) {
    case LimitRequest::Op::kList:
      break;
    case LimitRequest::Op::kSet:
      if (auto error = ValidateName(limit.name, "the limit")) return refuse(*error);
      if (limit.max == 0 && !(limit.rate > 0))
        return refuse("limit " + limit.name + " needs a number of tasks at once, or a rate");
      if (!std::isfinite(limit.rate) || limit.rate < 0 || limit.rate > 1e6)
        return refuse("the rate of limit " + limit.name + " must be above 0 and at most 1000000/s");
      parking_.limits().SetLimit(limit, now_);
      journal_.RecordLimit(limit, false);
      Requeue(parking_.Unpark({GateKey::Kind::kLimit, limit.name}, now_));  // it may have grown
      Dispatch(out);
      break;
    case LimitRequest::Op::kRemove:
      if (!parking_.limits().RemoveLimit(limit.name))
        return out.push_back(
            {from, ErrorReply{ErrorCode::kUnknownId, "there is no limit '" + limit.name + "'"}});
      journal_.RecordLimit(limit, true);
      Requeue(parking_.Unpark({GateKey::Kind::kLimit, limit.name}, now_));  // it limits nothing now
      Dispatch(out);
      break;
  }
  out.push_back({from, LimitsReply{parking_.LimitInfos()}});
}

void BrokerCore::Explain(const std::string& from, const ExplainRequest& request,
                         std::vector<Outgoing>& out) {
  auto ref = ParseId(request.task);
  Task* task = ref && ref->index ? Find({ref->job, *ref->index}) : nullptr;
  if (!task)
    return out.push_back({from, ErrorReply{ErrorCode::kUnknownId,
                                           "unknown task '" + request.task + "' (expected j7.2)"}});
  const TaskId id{ref->job, *ref->index};
  ExplainedReply reply;
  auto say = [&](std::string reason) { reply.reasons.push_back(std::move(reason)); };
  switch (task->state) {
    case State::kWaiting: {
      reply.state = "waiting";
      size_t shown = 0, more = 0;
      for (const Dependency& d : task->spec->need().after) {
        const uint64_t job = d.job == Dependency::kSameJob ? id.job : d.job;
        std::string name, state;
        if (d.whole_job) {
          auto it = jobs_.find(job);
          if (it == jobs_.end() || it->second.unfinished == 0) continue;
          name = FormatJobId(job);
          state = std::to_string(it->second.unfinished) + " of its tasks unfinished";
        } else {
          const Task* other = Find({job, d.index});
          if (!other || other->state == State::kFinished) continue;
          name = FormatTaskId({job, d.index});
          state = StateName(other->state);
        }
        if (shown++ < 10)
          say("waiting for " + name + " (" + state + ")" + (d.any ? ", however it ends" : ""));
        else
          ++more;
      }
      if (more) say("and for " + std::to_string(more) + " more");
      break;
    }
    case State::kDelayed: {
      reply.state = "delayed";
      const std::optional<SteadyTime> due = delayed_.DueOf(id);  // O(delayed), now and then
      char in[64] = "";
      if (due) {
        reply.eligible_in = std::max(0.0, std::chrono::duration<double>(*due - now_).count());
        std::snprintf(in, sizeof in, ": it is eligible in %.1f s", reply.eligible_in);
      }
      say(std::string(task->failures > 0 ? "waiting out its retry backoff"
                                         : "waiting out its delay") +
          in);
      break;
    }
    case State::kRunning: {
      reply.state = "running";
      const Worker& w = workers_.at(task->worker);
      say("running: attempt " + std::to_string(task->attempt) + " on worker pid " +
          std::to_string(w.pid) + " on " + w.host);
      break;
    }
    case State::kFinished:
      reply.state = std::string(StatusName(Stored(id).status));
      break;
    case State::kQueued: {
      reply.state = "queued";
      if (const Needs* needs = task->spec->needs.get()) {
        if (auto blocked = parking_.limits().Check(*needs, now_)) say(blocked->why);
      }
      const uint32_t cpus = Cpus(*task->spec);
      if (const Parking::WaitingFor* w = parking_.WaitingOf(id);
          w && w->gate.kind == GateKey::Kind::kWorker) {
        say(workers_.NoWorkerReason(*task->spec));
      } else if ((task->spec->needs || cpus > 1) && !workers_.AnyCouldRun(*task->spec, cpus)) {
        say(workers_.NoWorkerReason(*task->spec));
      } else if ((task->spec->needs || cpus > 1) && !workers_.AnyFits(*task->spec, cpus)) {
        say("waiting for a worker with " + WorkerPool::Wants(*task->spec) + " free");
      }
      const size_t c = ClassIndex(*task->spec);
      if (workers_.empty())
        say("no worker is registered");
      else if (!workers_.AnyServesClass(c))
        say("no worker has slots for " + std::string(KindName(*task->spec)) + " tasks");
      if (const Parking::WaitingFor* w = parking_.WaitingOf(id); w && !w->candidate) break;
      // In the ready queue: behind the tasks that go first.
      const QueueEntry me{task->spec->priority, id};
      size_t ahead = 0;
      if (const ReadyQueues::Queue* queue = ready_.Find(task->spec->need().queue, c)) {
        for (const QueueEntry& e : queue->entries()) {
          const Task* other = Find(e.id);
          if (other && other->state == State::kQueued && me < e) ++ahead;
        }
      }
      if (ahead > 0)
        say("queued behind " + std::to_string(ahead) + " task" + (ahead == 1 ? "" : "s") +
            " that go first (higher priority, or submitted earlier)");
      else if (reply.reasons.empty())
        say("next in line: it starts when a worker has a free " +
            std::string(KindName(*task->spec)) + " slot");
      break;
    }
  }
  out.push_back({from, std::move(reply)});
}

void BrokerCore::Shutdown(const std::string& from, std::vector<Outgoing>& out) {
  BeginShutdown(out);
  out.push_back({from, ShutdownAck{}});
}

void BrokerCore::BeginShutdown(std::vector<Outgoing>& out) {
  if (shutting_down_) return;
  shutting_down_ = true;
  const auto grace = static_cast<uint32_t>(kShutdownGrace.count());
  for (const auto& [id, w] : workers_.all()) out.push_back({w.identity, StopMessage{grace}});
}

bool BrokerCore::MayAdopt(TaskId id, Role role, const std::string& key) const {
  auto it = orphans_.find(id);
  if (it == orphans_.end()) return false;  // never leased, or leased to someone else since
  return it->second == key || (it->second.empty() && role == Role::kLocal);
}

void BrokerCore::Register(const std::string& from, Role role, const std::string& key,
                          const ReadyMessage& ready, SteadyTime now, std::vector<Outgoing>& out) {
  // The same connection registering again (its Ready crossed a Reregister) keeps what it held:
  // those leases are not adopted anew.
  std::unordered_set<TaskId, TaskIdHash> held;
  if (auto earlier = workers_.IdOf(from)) {
    held = workers_.at(*earlier).leases;
    DropWorker(*earlier, "it registered again", out);
  }
  if (shutting_down_) {
    out.push_back({from, StopMessage{0}});
    return;
  }
  const uint32_t id = workers_.Add(from, role == Role::kWorker, key, ready, now);
  Worker& w = workers_.at(id);
  // A worker coming back (after a pause, a partition or our restart) still runs some tasks. Those
  // whose lease nobody else has taken since are adopted; the others are stale: it must drop them.
  CancelTasksMessage stale;
  for (const Lease& lease : ready.running) {
    Task* task = Find(lease.id);
    // A task whose gates went to others meanwhile may not go on: that would break a lock.
    const bool gated = task && task->spec->needs;
    if (gated && !parking_.empty()) Requeue(parking_.StopWaiting(lease.id, now));
    // (Nor one it no longer has the resources for: it may have registered with fewer.)
    if (task && task->state == State::kQueued && task->attempt == lease.attempt &&
        MayAdopt(lease.id, role, key) && !task->cancel_requested &&
        (!gated || !parking_.limits().Check(*task->spec->needs, now)) &&
        WorkerPool::Fits(w, *task->spec, Cpus(*task->spec))) {
      if (gated) parking_.limits().Acquire(*task->spec->needs, lease.id, now);
      std::vector<std::string> ignored;  // it has its units' variables already
      WorkerPool::Lease(w, lease.id, *task->spec, ignored);
      orphans_.erase(lease.id);
      task->state = State::kRunning;
      task->worker = id;
      --queued_;
      ++running_;
      if (!held.count(lease.id)) ++counters_.adopted;
    } else {
      stale.ids.push_back(lease.id);
    }
  }
  if (!stale.ids.empty()) out.push_back({from, std::move(stale)});
  Requeue(parking_.Unpark({GateKey::Kind::kWorker, ""},
                          now_));  // tasks no worker could run may fit this one
  Dispatch(out);
}

void BrokerCore::Results(uint32_t worker_id, WorkerResultsMessage& results, SteadyTime now,
                         std::vector<Outgoing>& out) {
  Worker& worker = workers_.at(worker_id);
  for (TaskOutcome& outcome : results.outcomes) {
    Task* task = Find(outcome.id);
    if (!task || task->state != State::kRunning || task->worker != worker_id ||
        task->attempt != outcome.attempt) {
      ++counters_.stale_results;
      continue;
    }
    WorkerPool::Return(worker, outcome.id, *task->spec);
    Requeue(parking_.StopRunning(outcome.id, task->spec->needs.get(), now_));
    outcome.worker_pid = worker.pid;
    const bool own_failure =
        outcome.status == TaskStatus::kFailed || outcome.status == TaskStatus::kTimeout;
    if (own_failure && !task->cancel_requested && ScheduleRetry(outcome.id, *task, outcome, now))
      continue;
    Finish(outcome.id, *task, std::move(outcome), out);
  }
  Dispatch(out);
}

bool BrokerCore::ScheduleRetry(TaskId id, Task& task, const TaskOutcome& failed, SteadyTime now) {
  if (task.failures >= task.spec->retries) return false;
  ++task.failures;
  ++counters_.retries;
  // Exponential backoff with jitter: min(max, base * 2^(n-1)) * [0.5, 1).
  const double backoff =
      std::min(task.spec->backoff_max,
               task.spec->backoff_base *
                   std::ldexp(1.0, static_cast<int>(std::min(task.failures, 60u)) - 1));
  const double delay =
      backoff * (0.5 + 0.5 * std::uniform_real_distribution<double>(0, 1)(random_));
  std::string error = "attempt " + std::to_string(task.attempt) + ": " + failed.error;
  journal_.RecordRetry(id, delay, error);
  last_errors_[id] = std::move(error);
  --running_;
  ++delayed_count_;
  task.state = State::kDelayed;
  Delay(id, now + std::chrono::duration_cast<SteadyTime::duration>(
                      std::chrono::duration<double>(delay)));
  return true;
}

void BrokerCore::Forget(const std::string& from, const ForgetRequest& request,
                        std::vector<Outgoing>& out) {
  std::vector<uint64_t> jobs;
  for (const std::string& text : request.ids) {
    auto ref = ParseId(text);
    if (!ref || ref->index) {
      out.push_back({from, ErrorReply{ErrorCode::kUnknownId,
                                      "'" + text + "' is not a job id (expected j7)"}});
      return;
    }
    auto it = jobs_.find(ref->job);
    if (it == jobs_.end()) {
      out.push_back(
          {from, ErrorReply{ErrorCode::kUnknownId, "unknown job " + FormatJobId(ref->job)}});
      return;
    }
    if (delivery_.Gathering(ref->job)) {
      out.push_back({from, ErrorReply{ErrorCode::kBadRequest,
                                      "job " + FormatJobId(ref->job) + " is being gathered"}});
      return;
    }
    if (it->second.unfinished > 0) {
      out.push_back({from, ErrorReply{ErrorCode::kBadRequest,
                                      "job " + FormatJobId(ref->job) + " has " +
                                          std::to_string(it->second.unfinished) +
                                          " unfinished tasks; cancel or gather it first"}});
      return;
    }
    jobs.push_back(ref->job);
  }
  for (uint64_t job : jobs) ForgetJob(job);
  out.push_back({from, ForgottenReply{static_cast<uint32_t>(jobs.size())}});
}

void BrokerCore::ForgetJob(uint64_t job_number) {
  auto it = jobs_.find(job_number);
  if (it == jobs_.end() || it->second.unfinished > 0 || delivery_.Gathering(job_number)) return;
  const Job& job = it->second;
  for (size_t s = 0; s < job.ended.size(); ++s) finished_[s] -= job.ended[s];
  for (uint32_t i = 0; i < job.size; ++i) {
    if (job.spilled) {  // output that went to files on its worker's host: they go too
      auto o = store_.Find({job_number, i});
      if (o && o->shell && o->shell->more) {
        const auto& more = *o->shell->more;
        const std::string& named = more.stdout_file.empty() ? more.stderr_file : more.stdout_file;
        if (!named.empty())  // (as the broker named it: absolute for a local worker)
          forgotten_output_.push_back({{o->id, o->attempt}, more.host, named[0] == '/'});
      }
    }
    store_.Erase({job_number, i});
  }
  journal_.RecordForget(job_number);
  if (!it->second.key.empty()) keys_.erase(it->second.key);  // the key may be used again
  jobs_.erase(it);
}

void BrokerCore::ShareContext(const Worker& w, Job& job, Assignment& a) {
  const JobContext& context = *job.context;
  const auto travels = [&](const std::string& entry) {
    const std::string name = entry.substr(0, entry.find('='));
    return std::find(context.named->begin(), context.named->end(), name) != context.named->end();
  };
  if (!w.remote || !context.named || !context.env ||
      std::all_of(context.env->begin(), context.env->end(), travels)) {
    a.context = job.context;  // a local worker, --env-all, or nothing but named variables
    return;
  }
  // A remote worker: its own environment, with only the variables the submitter named on top.
  if (!job.remote_context) {
    job.remote_context = std::make_shared<const JobContext>(JobContext{context.cwd, {}, {}});
    for (const std::string& entry : *context.env) {
      if (travels(entry)) job.remote_env.push_back(entry);
    }
  }
  a.context = job.remote_context;
  a.env = job.remote_env;
}

std::vector<std::string> BrokerCore::RemoteWorkersOn(const std::string& host) const {
  return workers_.RemoteOn(host);
}

void BrokerCore::SetJournalProblem(std::string problem, std::vector<Outgoing>& out) {
  journal_problem_ = std::move(problem);
  if (journal_problem_.empty()) Dispatch(out);
}

void BrokerCore::Dispatch(std::vector<Outgoing>& out) {
  if (!halts_due_.empty()) Halt(out);  // before any lease: no task of a halted job starts
  if (shutting_down_ || !journal_problem_.empty()) return;
  for (bool progress = true; progress;) {
    progress = false;
    for (auto& [worker_id, w] : workers_.all()) {
      TasksMessage message;
      WatchMessage watch;
      // Tasks another worker could run, but not this one now: back to their queue afterwards.
      std::vector<std::pair<ReadyQueues::Queue*, QueueEntry>> skipped;
      for (size_t c = 0; c < kTaskClassCount; ++c) {
        while (w.in_use[c] < w.capacity[c] && message.tasks.size() < kMaxTasksPerMessage) {
          ReadyQueues::Queue* queue = ready_.Next(w, c);
          if (!queue) break;
          const QueueEntry entry = queue->top();
          queue->pop();
          const TaskId id = entry.id;
          Task* task = Find(id);
          if (!task || task->state != State::kQueued) continue;  // cancelled while queued
          const Needs* needs = task->spec->needs.get();
          const uint32_t cpus = Cpus(*task->spec);
          if ((needs || cpus > 0) && !WorkerPool::Fits(w, *task->spec, cpus)) {
            if (workers_.AnyCouldRun(*task->spec, cpus)) {
              skipped.push_back({queue, entry});
            } else {
              if (!parking_.empty()) Requeue(parking_.StopWaiting(id, now_));
              parking_.Park(id, task->spec->priority, task->spec->needs.get(),
                            {GateKey::Kind::kWorker, ""});  // until a worker that can comes
            }
            continue;
          }
          if (needs) {
            if (!parking_.empty()) Requeue(parking_.StopWaiting(id, now_));
            if (auto blocked = parking_.limits().Check(*needs, now_)) {
              parking_.Park(id, task->spec->priority, task->spec->needs.get(), blocked->gate);
              continue;
            }
            parking_.limits().Acquire(*needs, id, now_);
          }
          task->state = State::kRunning;
          task->worker = worker_id;
          ++task->attempt;
          --queued_;
          ++running_;
          if (!orphans_.empty()) orphans_.erase(id);  // leased anew: nobody may adopt the old
          journal_.RecordLease(id, task->attempt);
          const bool shell = std::holds_alternative<ShellTask>(task->spec->body);
          Assignment& a =
              message.tasks.emplace_back(Assignment{id, task->attempt, *task->spec, nullptr, {}});
          if (shell) ShareContext(w, jobs_.at(id.job), a);
          WorkerPool::Lease(w, id, *task->spec, a.env);
          if (!followers_.empty() && followers_.Watched(id))
            watch.ids.push_back(id);  // someone waits for its output
        }
      }
      for (auto& [queue, entry] : skipped) queue->push(entry);
      if (!message.tasks.empty()) {
        progress = true;
        out.push_back({w.identity, std::move(message)});
      }
      if (!watch.ids.empty()) out.push_back({w.identity, std::move(watch)});
    }
  }
}

void BrokerCore::DropWorker(uint32_t worker_id, const std::string& why,
                            std::vector<Outgoing>& out) {
  if (!workers_.Find(worker_id)) return;
  const Worker gone = workers_.Remove(worker_id);
  const std::string reason = "its worker (pid " + std::to_string(gone.pid) + ") was lost: " + why;
  const std::unordered_set<TaskId, TaskIdHash>& leases = gone.leases;
  const std::string& key = gone.key;
  spill_fetches_.WorkerGone(worker_id, IdentityOf(), out);
  for (TaskId id : leases) {
    Task& task = *Find(id);
    Requeue(parking_.StopRunning(id, task.spec->needs.get(), now_));
    --running_;
    ++queued_;
    task.state = State::kQueued;
    ++counters_.requeued;
    LeaseLost(id, task, reason, out);
    if (task.state == State::kQueued) orphans_[id] = key;  // it may come back for it
  }
  Dispatch(out);
}

void BrokerCore::LeaseLost(TaskId id, Task& task, const std::string& why,
                           std::vector<Outgoing>& out) {
  // Precondition: task.state is kQueued (and counted so), not yet in the ready queue.
  TaskOutcome outcome;
  if (task.cancel_requested) {
    outcome.status = TaskStatus::kCancelled;
    outcome.error = "cancelled while running; " + why;
    return Finish(id, task, std::move(outcome), out);
  }
  const uint32_t lost = task.attempt - task.failures;  // executions that ended without a result
  if (lost >= task.spec->attempts) {
    outcome.status = TaskStatus::kWorkerLost;
    outcome.error = "lost " + std::to_string(lost) + " time" + (lost == 1 ? "" : "s") +
                    " with its worker; last time " + why;
    return Finish(id, task, std::move(outcome), out);
  }
  Enqueue(id, task);
}

bool BrokerCore::RetireWorker(int64_t pid, std::vector<Outgoing>& out) {
  const std::optional<uint32_t> id = workers_.IdOfPid(pid);
  if (!id) return false;
  out.push_back({workers_.at(*id).identity, StopMessage{UINT32_MAX}});  // its tasks finish
  return true;
}

void BrokerCore::WorkerExited(int64_t pid, std::vector<Outgoing>& out) {
  if (auto id = workers_.IdOfPid(pid)) DropWorker(*id, "its process exited", out);
  EndTurn(out);
}

void BrokerCore::Tick(SteadyTime now, std::vector<Outgoing>& out) {
  now_ = now;
  while (const std::optional<TaskId> due = delayed_.PopDue(now)) {
    Task* task = Find(*due);
    if (!task || task->state != State::kDelayed) continue;  // cancelled while delayed
    task->state = State::kQueued;
    --delayed_count_;
    ++queued_;
    Enqueue(*due, *task);
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
        out.push_back({w.identity, BrokerHeartbeatMessage{}});
    }
    for (uint32_t id : silent) {
      ++counters_.workers_lost;
      DropWorker(id, "no heartbeat for " + std::to_string(expiry.count()) + " ms", out);
    }
    spill_fetches_.Expire(now, out);
    if (options_.retention.count() > 0) {
      while (!finished_jobs_.empty()) {
        auto job = jobs_.find(finished_jobs_.front());
        if (job != jobs_.end() &&
            (now - job->second.finished_at < options_.retention || delivery_.Gathering(job->first)))
          break;
        if (job != jobs_.end()) ForgetJob(job->first);
        finished_jobs_.pop_front();
      }
    }
  }
  Dispatch(out);
  EndTurn(out);
}

SteadyTime BrokerCore::NextWakeup() const {
  SteadyTime next = next_heartbeat_;
  if (auto due = delayed_.NextDue()) next = std::min(next, *due);
  if (auto token = parking_.NextToken(now_)) next = std::min(next, *token);
  return next;
}

void BrokerCore::Requeue(const std::vector<TaskId>& ids) {
  for (TaskId id : ids) Enqueue(id, *Find(id));
}

}  // namespace orq

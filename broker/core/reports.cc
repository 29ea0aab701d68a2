#include "broker/core/reports.h"

#include <algorithm>
#include <chrono>

#include "common/ids.h"

namespace orq {
namespace {

double Seconds(SteadyTime::duration d) { return std::chrono::duration<double>(d).count(); }

// A waiting task's reasons: the dependencies that have not ended (the first ten, then how many
// more).
void WaitingFor(const ReportSources& from, TaskId id, std::vector<Reason>& reasons) {
  size_t shown = 0, more = 0;
  const auto spec = from.specs.Look(id);
  for (const Dependency& d : spec->need().after) {
    const uint64_t job = d.job == Dependency::kSameJob ? id.job : d.job;
    Reason why{.kind = Reason::Kind::kDependency, .any = d.any};
    if (d.whole_job) {
      const JobRecord* other = from.tasks.FindJob(job);
      if (!other || other->unfinished == 0) continue;
      why.id = {job, std::nullopt};
      why.count = other->unfinished;
    } else {
      const TaskRecord* other = from.tasks.Find({job, d.index});
      if (!other || other->state() == TaskState::kFinished) continue;
      why.id = {job, d.index};
      why.state = other->state();
    }
    if (shown++ < 10)
      reasons.push_back(std::move(why));
    else
      ++more;
  }
  if (more) reasons.push_back({.kind = Reason::Kind::kMoreDependencies, .count = more});
}

// A queued task's reasons: a gate, no worker that could run it or has room, and the tasks ahead
// of it in its ready queue.
void Queued(const ReportSources& from, TaskId id, std::vector<Reason>& reasons) {
  const auto looked = from.specs.Look(id);
  const TaskSpec& spec = *looked;
  if (const Needs* needs = spec.needs.get()) {
    if (auto blocked = from.parking.limits().Check(*needs, from.now))
      reasons.push_back(std::move(blocked->reason));
  }
  const uint32_t cpus = Cpus(spec);
  const Parking::WaitingFor* parked = from.parking.WaitingOf(id);
  if (parked && parked->gate.kind == GateKey::Kind::kWorker) {
    reasons.push_back(from.workers.NoWorkerReason(spec, from.now));
  } else if ((spec.needs || cpus > 1) && !from.workers.AnyCouldRun(spec, cpus, from.now)) {
    reasons.push_back(from.workers.NoWorkerReason(spec, from.now));
  } else if ((spec.needs || cpus > 1) && !from.workers.AnyFits(spec, cpus, from.now)) {
    reasons.push_back({.kind = Reason::Kind::kNoRoom, .name = WorkerPool::Wants(spec)});
  }
  const size_t c = ClassIndex(spec);
  const std::string kind(KindName(spec));
  if (from.workers.empty())
    reasons.push_back({.kind = Reason::Kind::kNoWorkers});
  else if (!from.workers.AnyServesClass(c))
    reasons.push_back({.kind = Reason::Kind::kNoSlots, .name = kind});
  if (parked && !parked->candidate) return;
  // In the ready queue: behind the tasks that go first.
  const QueueEntry me{spec.priority, id};
  size_t ahead = 0;
  if (const ReadyQueues::Queue* queue = from.ready.Find(spec.need().queue, c)) {
    for (const QueueEntry& e : queue->entries()) {
      const TaskRecord* other = from.tasks.Find(e.id());
      if (other && other->state() == TaskState::kQueued && me < e) ++ahead;
    }
  }
  if (ahead > 0)
    reasons.push_back({.kind = Reason::Kind::kBehind, .count = ahead});
  else if (reasons.empty())
    reasons.push_back({.kind = Reason::Kind::kNextInLine, .name = kind});
}

}  // namespace

StatusReply StatusReport(const ReportSources& from) {
  StatusReply status;
  status.workers = from.workers.Infos(from.now);
  const TaskTable& t = from.tasks;
  status.tasks = {t.count(TaskState::kWaiting),        t.count(TaskState::kQueued),
                  t.count(TaskState::kDelayed),        t.count(TaskState::kRunning),
                  t.finished(TaskStatus::kOk),         t.finished(TaskStatus::kFailed),
                  t.finished(TaskStatus::kTimeout),    t.finished(TaskStatus::kCancelled),
                  t.finished(TaskStatus::kWorkerLost), t.finished(TaskStatus::kDependencyFailed)};
  status.jobs = t.jobs().size();
  status.limits = from.parking.LimitInfos();
  status.locks = from.parking.LockInfos();
  return status;
}

Expected<JobsReply> JobsReport(const TaskTable& tasks, const JobsRequest& request, SteadyTime now) {
  std::vector<uint64_t> numbers;
  if (request.jobs.empty()) {
    for (const auto& [number, job] : tasks.jobs()) numbers.push_back(number);
    std::sort(numbers.begin(), numbers.end());
  } else {
    auto named = tasks.ResolveJobs(request.jobs);
    if (!named) return named.error();
    numbers = std::move(*named);
  }
  JobsReply reply;
  for (uint64_t number : numbers) {
    const JobRecord& job = *tasks.FindJob(number);
    JobInfo info;
    info.job = number;
    info.age = Seconds(now - job.submitted_at);
    info.tasks = job.size;
    for (const TaskRecord& task : job.tasks) {  // O(tasks): asked for now and then, not per task
      switch (task.state()) {
        case TaskState::kWaiting:
          ++info.waiting;
          break;
        case TaskState::kQueued:
          ++info.queued;
          break;
        case TaskState::kDelayed:
          ++info.delayed;
          break;
        case TaskState::kRunning:
          ++info.running;
          break;
        case TaskState::kFinished:
          break;
      }
    }
    info.ok = job.ok;
    info.cancelled = job.ended[static_cast<size_t>(TaskStatus::kCancelled)];
    info.failed = job.failed - info.cancelled;
    if (job.unfinished == 0) info.finished_age = Seconds(now - job.finished_at);
    info.label = job.label;
    reply.jobs.push_back(std::move(info));
  }
  return reply;
}

namespace {

bool Lets(TaskFilter filter, TaskState state, TaskStatus status) {
  switch (filter) {
    case TaskFilter::kAll:
      return true;
    case TaskFilter::kWaiting:
      return state == TaskState::kWaiting;
    case TaskFilter::kQueued:
      return state == TaskState::kQueued;
    case TaskFilter::kDelayed:
      return state == TaskState::kDelayed;
    case TaskFilter::kRunning:
      return state == TaskState::kRunning;
    case TaskFilter::kFinished:
      return state == TaskState::kFinished;
    case TaskFilter::kOk:
      return state == TaskState::kFinished && status == TaskStatus::kOk;
    case TaskFilter::kFailed:
      return state == TaskState::kFinished && status != TaskStatus::kOk &&
             status != TaskStatus::kCancelled;
    case TaskFilter::kCancelled:
      return state == TaskState::kFinished && status == TaskStatus::kCancelled;
  }
  return false;
}

// Whether an ended job can have a task `filter` lets through, from its counts alone.
bool EndedJobMayHave(const JobRecord& job, TaskFilter filter) {
  const auto ended = [&](TaskStatus s) { return job.ended[static_cast<size_t>(s)]; };
  switch (filter) {
    case TaskFilter::kAll:
    case TaskFilter::kFinished:
      return true;
    case TaskFilter::kOk:
      return job.ok > 0;
    case TaskFilter::kCancelled:
      return ended(TaskStatus::kCancelled) > 0;
    case TaskFilter::kFailed:
      return job.failed > ended(TaskStatus::kCancelled);
    default:
      return false;  // every task of it has ended
  }
}

TaskRow Row(const ReportSources& from, TaskId id, const TaskRecord& task,
            std::optional<TaskOutcome> outcome) {
  TaskRow row{.index = id.index, .state = task.state(), .attempt = task.attempt};
  if (task.state() == TaskState::kRunning) {
    row.worker = from.workers.at(task.running().worker).pid;
  } else if (task.state() == TaskState::kFinished) {
    if (!outcome) outcome = Delivery::Stored(from.store, id);
    row.status = outcome->status;
    row.attempt = outcome->attempt;
    row.worker = outcome->worker_pid;
    row.started = outcome->started;
    row.finished = outcome->finished;
    row.error = outcome->error;
  }
  const TaskSpec& spec = from.specs.Peek(id);
  row.label = Label(spec);
  for (const Dependency& d : spec.need().after) {
    const uint64_t job = d.job == Dependency::kSameJob ? id.job : d.job;
    row.after.push_back({job, d.whole_job ? std::nullopt : std::optional<uint32_t>(d.index)});
  }
  return row;
}

}  // namespace

Expected<TasksReply> TasksReport(const ReportSources& from, const TasksRequest& request) {
  const JobRecord* job = from.tasks.FindJob(request.job);
  if (!job) return Error{ErrorCode::kUnknownId, "unknown job " + FormatJobId(request.job)};
  TasksReply reply{.size = job->size, .next = job->size};
  const uint32_t limit = std::clamp<uint32_t>(request.limit, 1, kMaxTaskRows);
  uint32_t i = std::min(request.from, job->size);
  if (!job->tasks.empty()) {  // a live job: each task's state and status are in memory
    for (uint32_t scanned = 0; i < job->size && scanned < kTaskScanBudget; ++i, ++scanned) {
      if (reply.tasks.size() == limit) break;
      const TaskRecord& task = job->tasks[i];
      const TaskStatus status = task.state() == TaskState::kFinished
                                    ? std::get<TaskRecord::Finished>(task.data).status
                                    : TaskStatus::kOk;
      if (Lets(request.filter, task.state(), status))
        reply.tasks.push_back(Row(from, {request.job, i}, task, std::nullopt));
    }
    reply.next = i;
    return reply;
  }
  // An ended job (compacted): every task finished; its outcomes are read from the store, a
  // bounded number a request.
  if (!EndedJobMayHave(*job, request.filter)) return reply;
  const TaskRecord* finished = from.tasks.Find({request.job, 0});
  constexpr uint32_t kChunk = 1024, kStoreBudget = 16 * kChunk;
  std::vector<std::optional<TaskOutcome>> chunk;
  for (uint32_t read = 0; i < job->size && read < kStoreBudget && reply.tasks.size() < limit;) {
    chunk.clear();
    const uint32_t count = std::min(kChunk, job->size - i);
    from.store.FindRange(request.job, i, count, chunk, kResultsReplyBytes);
    read += static_cast<uint32_t>(chunk.size());
    uint32_t k = 0;
    for (; k < chunk.size() && reply.tasks.size() < limit; ++k) {
      auto& outcome = chunk[k];
      if (!outcome) outcome = Delivery::Missing({request.job, i + k});
      if (Lets(request.filter, TaskState::kFinished, outcome->status))
        reply.tasks.push_back(Row(from, {request.job, i + k}, *finished, std::move(outcome)));
    }
    i += k;
  }
  reply.next = i;
  return reply;
}

Expected<ExplainedReply> Explain(const ReportSources& from, const ExplainRequest& request) {
  auto id = from.tasks.ResolveTask(request.task);
  if (!id) return id.error();
  const TaskRecord& task = *from.tasks.Find(*id);
  ExplainedReply reply;
  reply.state = task.state();
  switch (task.state()) {
    case TaskState::kWaiting:
      WaitingFor(from, *id, reply.reasons);
      break;
    case TaskState::kDelayed: {
      const std::optional<SteadyTime> due = from.delayed.DueOf(*id);  // O(delayed), now and then
      if (due) reply.eligible_in = std::max(0.0, Seconds(*due - from.now));
      reply.reasons.push_back(
          {.kind = task.failures > 0 ? Reason::Kind::kBackoff : Reason::Kind::kDelay,
           .seconds = reply.eligible_in});
      break;
    }
    case TaskState::kRunning: {
      const Worker& w = from.workers.at(task.running().worker);
      reply.reasons.push_back(
          {.kind = Reason::Kind::kRunning, .name = w.host, .count = task.attempt, .pid = w.pid});
      break;
    }
    case TaskState::kFinished:
      reply.status = Delivery::Stored(from.store, *id).status;
      break;
    case TaskState::kQueued:
      Queued(from, *id, reply.reasons);
      break;
  }
  return reply;
}

std::array<uint64_t, kTaskClassCount> AllocDemand(const ReportSources& from,
                                                  const AllocQueueSpec& shape, uint64_t budget) {
  // A worker as the queue's allocations would start it: what CouldRun() asks of a task.
  Worker w;
  w.queues = shape.queues;
  std::sort(w.queues.begin(), w.queues.end());
  w.cpus = UINT32_MAX;  // its node's cores are not known before it registers
  for (const ResourceNeed& r : shape.resources) {
    if (r.name == "cpus")
      w.cpus = r.amount;
    else
      w.units[r.name] = Units{std::vector<bool>(r.amount, false), r.amount};
  }
  if (shape.time_limit_s) w.ends_at = from.now + std::chrono::seconds(shape.time_limit_s);
  std::array<uint64_t, kTaskClassCount> demand{};
  auto runnable = [&](TaskId id) -> std::optional<size_t> {
    const TaskRecord* task = from.tasks.Find(id);
    if (!task || task->state() != TaskState::kQueued) return std::nullopt;  // stale
    const TaskSpec& spec = from.specs.Peek(id);
    if (!WorkerPool::CouldRun(w, spec, Cpus(spec), from.now)) return std::nullopt;
    return ClassIndex(spec);
  };
  for (const auto& [name, heaps] : from.ready.all()) {
    if (!WorkerPool::Serves(w, name)) continue;
    for (size_t c = 0; c < kTaskClassCount; ++c) {
      const auto& entries = heaps[c].entries();
      size_t looked = 0;
      for (; looked < entries.size() && budget > 0; ++looked, --budget) {
        if (auto klass = runnable(entries[looked].id())) ++demand[*klass];
      }
      demand[c] += entries.size() - looked;
    }
  }
  for (const auto& [id, waiting] : from.parking.waiting()) {
    if (budget == 0) break;
    if (waiting.candidate || waiting.gate.kind != GateKey::Kind::kWorker) continue;
    --budget;
    if (auto klass = runnable(id)) ++demand[*klass];
  }
  return demand;
}

}  // namespace orq

#include "broker/reports.h"

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
      const Job* other = from.tasks.FindJob(job);
      if (!other || other->unfinished == 0) continue;
      why.id = {job, std::nullopt};
      why.count = other->unfinished;
    } else {
      const Task* other = from.tasks.Find({job, d.index});
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
    reasons.push_back(from.workers.NoWorkerReason(spec));
  } else if ((spec.needs || cpus > 1) && !from.workers.AnyCouldRun(spec, cpus)) {
    reasons.push_back(from.workers.NoWorkerReason(spec));
  } else if ((spec.needs || cpus > 1) && !from.workers.AnyFits(spec, cpus)) {
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
      const Task* other = from.tasks.Find(e.id());
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
  status.workers = from.workers.Infos();
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
    const Job& job = *tasks.FindJob(number);
    JobInfo info;
    info.job = number;
    info.age = Seconds(now - job.submitted_at);
    info.tasks = job.size;
    for (const Task& task : job.tasks) {  // O(tasks): asked for now and then, not per task
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

Expected<ExplainedReply> Explain(const ReportSources& from, const ExplainRequest& request) {
  auto id = from.tasks.ResolveTask(request.task);
  if (!id) return id.error();
  const Task& task = *from.tasks.Find(*id);
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

}  // namespace orq

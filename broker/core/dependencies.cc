// BrokerCore's dependencies between tasks (orq submit --after, a task file's `after`) and its
// restore from the journal, which wires the dependencies of the tasks it brings back.
#include <algorithm>

#include "broker/core/broker_core.h"
#include "broker/core/helpers.h"
#include "common/ids.h"

namespace orq {

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
  out_.Take();  // no worker or client is connected yet: nobody to tell
}

void BrokerCore::RestoreLimits(const std::vector<LimitSpec>& limits, SteadyTime now) {
  for (const LimitSpec& limit : limits) Requeue(parking_.SetLimit(limit, now));
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

}  // namespace orq

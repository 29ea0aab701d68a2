#include "broker/core/submission.h"

#include <string>
#include <unordered_map>
#include <utility>

#include "common/ids.h"

namespace orq {
namespace {

// Each dependency on another job names a job or task the broker has.
Expected<void> CheckForeignDependencies(const std::vector<TaskNeeds>& needs,
                                        const TaskTable& tasks) {
  for (const TaskNeeds& t : needs) {
    for (const Dependency& d : t.needs->after) {
      if (d.job == Dependency::kSameJob) continue;
      const JobRecord* job = tasks.FindJob(d.job);
      if (!job || (!d.whole_job && d.index >= job->size))
        return Fault("task " + std::to_string(t.index) + ": field 'after' names " +
                     (d.whole_job ? FormatJobId(d.job) : FormatTaskId({d.job, d.index})) +
                     ", which the broker does not have (unknown, or forgotten)");
    }
  }
  return {};
}

}  // namespace

Expected<void> CheckSubmission(const SubmitRequest& request, const JobBuilder& job,
                               const TaskTable& tasks, const Limits& limits,
                               size_t max_tasks_per_job) {
  if (job.size() > max_tasks_per_job)
    return Fault("a job may hold at most " + std::to_string(max_tasks_per_job) +
                 " tasks; this one has " + std::to_string(job.size()));
  if (!job.problem().ok()) return job.problem();
  if (auto halt = ValidateHalt(request.halt); !halt.ok()) return halt;
  const std::vector<TaskNeeds> needs = job.needs();
  if (auto inside = CheckDependencies(job.size(), needs); !inside.ok()) return inside;
  if (auto outside = CheckForeignDependencies(needs, tasks); !outside.ok()) return outside;
  for (const TaskNeeds& t : needs) {
    for (const std::string& limit : t.needs->limits) {
      if (!limits.HasLimit(limit))
        return Fault("task " + std::to_string(t.index) + ": there is no limit '" + limit +
                     "'; set it first: orq limit set " + limit + " N");
    }
  }
  if (request.context.cwd.size() > kMaxPathBytes)
    return Fault("the job's directory is " + std::to_string(request.context.cwd.size()) +
                 " bytes long; the limit is " + std::to_string(kMaxPathBytes));
  if (request.context.env) return ValidateEnv(*request.context.env, "the job's environment");
  return {};
}

Expected<JobBuilder> RetryJob(const RetryRequest& request, const JobRecord& job, Store& store,
                              SpecWindows& specs) {
  std::vector<uint32_t> failed;  // without --all: the finished tasks that did not end ok
  if (!request.all) {
    for (uint32_t i = 0; i < job.size; ++i) {
      if (!job.tasks.empty() && job.tasks[i].state() != TaskState::kFinished) continue;
      const auto outcome = store.Find({request.job, i});
      if (outcome && outcome->status != TaskStatus::kOk) failed.push_back(i);
    }
    if (failed.empty())
      return Error{
          ErrorCode::kBadRequest,
          FormatJobId(request.job) + " has no finished task that did not end ok: nothing to retry"};
  }
  std::unordered_map<uint32_t, uint32_t> renumbered;  // old index -> index in the new job
  for (uint32_t i = 0; i < failed.size(); ++i) renumbered[failed[i]] = i;
  // Their specs as submitted, from the store a window at a time (a job of millions is never
  // decoded whole).
  JobBuilder built;
  std::vector<TaskSpec> window;
  const uint32_t count = request.all ? job.size : static_cast<uint32_t>(failed.size());
  for (uint32_t i = 0; i < count; ++i) {
    const TaskId old{request.job, request.all ? i : failed[i]};
    window.push_back(request.all ? *specs.Look(old)
                                 : RetrySpec(*specs.Look(old), renumbered, request.job));
    if (window.size() == kSpecWindow || i + 1 == count) built.Add(std::exchange(window, {}));
  }
  return built;
}

TaskSpec RetrySpec(TaskSpec spec, const std::unordered_map<uint32_t, uint32_t>& renumbered,
                   uint64_t old) {
  if (!spec.needs || spec.needs->after.empty()) return spec;
  Needs needs = *spec.needs;
  for (Dependency& d : needs.after) {
    if (d.job != Dependency::kSameJob) continue;
    if (auto it = renumbered.find(d.index); it != renumbered.end())
      d.index = it->second;
    else
      d.job = old;
  }
  spec.needs = MakeNeeds(std::move(needs));
  return spec;
}

}  // namespace orq

#include "broker/submission.h"

#include <string>
#include <unordered_map>

#include "common/ids.h"

namespace orq {
namespace {

// Each dependency on another job names a job or task the broker has.
std::optional<std::string> CheckForeignDependencies(const std::vector<TaskNeeds>& needs,
                                                    const TaskTable& tasks) {
  for (const TaskNeeds& t : needs) {
    for (const Dependency& d : t.needs->after) {
      if (d.job == Dependency::kSameJob) continue;
      const Job* job = tasks.FindJob(d.job);
      if (!job || (!d.whole_job && d.index >= job->size))
        return "task " + std::to_string(t.index) + ": field 'after' names " +
               (d.whole_job ? FormatJobId(d.job) : FormatTaskId({d.job, d.index})) +
               ", which the broker does not have (unknown, or forgotten)";
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<Error> CheckSubmission(const SubmitRequest& request, const JobBuilder& job,
                                     const TaskTable& tasks, const Limits& limits,
                                     size_t max_tasks_per_job) {
  auto refuse = [](std::string sentence) {
    return Error{ErrorCode::kBadRequest, std::move(sentence)};
  };
  if (job.size() > max_tasks_per_job)
    return refuse("a job may hold at most " + std::to_string(max_tasks_per_job) +
                  " tasks; this one has " + std::to_string(job.size()));
  if (job.problem()) return refuse(*job.problem());
  if (auto error = ValidateHalt(request.halt)) return refuse(*error);
  const std::vector<TaskNeeds> needs = job.needs();
  if (auto error = CheckDependencies(job.size(), needs)) return refuse(*error);
  if (auto error = CheckForeignDependencies(needs, tasks)) return refuse(*error);
  for (const TaskNeeds& t : needs) {
    for (const std::string& limit : t.needs->limits) {
      if (!limits.HasLimit(limit))
        return refuse("task " + std::to_string(t.index) + ": there is no limit '" + limit +
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
  return std::nullopt;
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

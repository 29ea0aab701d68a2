#include "broker/submission.h"

#include <string>
#include <unordered_map>

#include "common/ids.h"

namespace orq {
namespace {

// Each dependency on another job names a job or task the broker has.
std::optional<std::string> CheckForeignDependencies(const std::vector<TaskSpec>& specs,
                                                    const TaskTable& tasks) {
  for (size_t i = 0; i < specs.size(); ++i) {
    for (const Dependency& d : specs[i].need().after) {
      if (d.job == Dependency::kSameJob) continue;
      const Job* job = tasks.FindJob(d.job);
      if (!job || (!d.whole_job && d.index >= job->size))
        return "task " + std::to_string(i) + ": field 'after' names " +
               (d.whole_job ? FormatJobId(d.job) : FormatTaskId({d.job, d.index})) +
               ", which the broker does not have (unknown, or forgotten)";
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<Error> CheckSubmission(const SubmitRequest& request, const TaskTable& tasks,
                                     const Limits& limits, size_t max_tasks_per_job) {
  auto refuse = [](std::string sentence) {
    return Error{ErrorCode::kBadRequest, std::move(sentence)};
  };
  const std::vector<TaskSpec>& specs = request.tasks;
  if (specs.size() > max_tasks_per_job)
    return refuse("a job may hold at most " + std::to_string(max_tasks_per_job) +
                  " tasks; this one has " + std::to_string(specs.size()));
  for (size_t i = 0; i < specs.size(); ++i) {
    if (auto error = ValidateSpec(specs[i]))
      return refuse("task " + std::to_string(i) + ": " + *error);
  }
  if (auto error = ValidateHalt(request.halt)) return refuse(*error);
  if (auto error = CheckDependencies(specs)) return refuse(*error);
  if (auto error = CheckForeignDependencies(specs, tasks)) return refuse(*error);
  for (size_t i = 0; i < specs.size(); ++i) {
    for (const std::string& limit : specs[i].need().limits) {
      if (!limits.HasLimit(limit))
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
  return std::nullopt;
}

std::vector<TaskSpec> RetrySpecs(std::vector<TaskSpec> specs, const std::vector<uint32_t>& indexes,
                                 uint64_t old) {
  std::unordered_map<uint32_t, uint32_t> renumbered;  // old index -> index in the new job
  for (uint32_t i = 0; i < indexes.size(); ++i) renumbered[indexes[i]] = i;
  for (TaskSpec& spec : specs) {
    if (!spec.needs || spec.needs->after.empty()) continue;
    Needs needs = *spec.needs;
    for (Dependency& d : needs.after) {
      if (d.job != Dependency::kSameJob) continue;
      if (auto it = renumbered.find(d.index); it != renumbered.end())
        d.index = it->second;
      else
        d.job = old;
    }
    spec.needs = MakeNeeds(std::move(needs));
  }
  return specs;
}

}  // namespace orq

// Who waits for whom: the tasks waiting for a task, or for every task of a job, to end (a task's
// `after`), and the ended tasks whose dependants have not been told yet. Pure and passive: the
// graph keeps the edges; BrokerCore decides what an ending means for each dependant (released,
// or dependency_failed, which may end more tasks: NextEnded() hands them out one at a time, so a
// failure down a chain of 10,000 tasks is a loop, not a recursion).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/ids.h"
#include "common/protocol.h"

namespace orq {

// A task waiting for another task or job to end.
struct Dependant {
  TaskId id;
  bool any = false;  // it runs however the other ended; else only if it ended ok
};

// Why a dependant ends dependency_failed: the dependency (named for people) and how it ended;
// down a chain, the first failure too (its own sentence is not nested again and again: it stays
// one line however long the chain).
inline std::string DependencyFailure(const std::string& dependency, const TaskOutcome& outcome) {
  std::string why =
      "dependency " + dependency + " ended " + std::string(StatusName(outcome.status));
  if (outcome.status == TaskStatus::kDependencyFailed) {
    constexpr std::string_view kFirst = "; the first failure: ";
    const size_t at = outcome.error.find(kFirst);
    const std::string_view root =
        std::string_view(outcome.error)
            .substr(at == std::string::npos ? std::string_view("dependency ").size()
                                            : at + kFirst.size());
    why += std::string(kFirst) + std::string(root);
  }
  return why;
}

class DependencyGraph {
 public:
  void WaitForTask(TaskId dependency, Dependant dependant) {
    tasks_[dependency].push_back(dependant);
  }
  void WaitForJob(uint64_t job, Dependant dependant) { jobs_[job].push_back(dependant); }

  // The task ended: its dependants (and, once its job has ended, the job's) are to be told.
  // False when no task waits for anything (nothing to tell).
  bool Ended(TaskId id) {
    if (tasks_.empty() && jobs_.empty()) return false;
    ended_.push_back(id);
    return true;
  }
  // An ended task whose dependants have not been told yet; nullopt when none is left.
  std::optional<TaskId> NextEnded() {
    if (ended_.empty()) return std::nullopt;
    const TaskId id = ended_.back();
    ended_.pop_back();
    return id;
  }
  // Takes the dependants of a task, or of a whole job: they are told once.
  std::vector<Dependant> TakeTaskDependants(TaskId id) { return Take(tasks_, id); }
  std::vector<Dependant> TakeJobDependants(uint64_t job) { return Take(jobs_, job); }
  bool HasJobDependants(uint64_t job) const { return jobs_.count(job) > 0; }

 private:
  template <typename Map, typename Key> static std::vector<Dependant> Take(Map& map, Key key) {
    auto it = map.find(key);
    if (it == map.end()) return {};
    std::vector<Dependant> list = std::move(it->second);
    map.erase(it);
    return list;
  }

  std::unordered_map<TaskId, std::vector<Dependant>, TaskIdHash> tasks_;
  std::unordered_map<uint64_t, std::vector<Dependant>> jobs_;
  std::vector<TaskId> ended_;
};

}  // namespace orq

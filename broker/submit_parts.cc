#include "broker/submit_parts.h"

namespace orq {

void SubmitParts::Add(const std::string& from, std::vector<TaskSpec> tasks, size_t bytes,
                      SteadyTime now) {
  auto it = held_.find(from);
  if (it == held_.end()) {
    if (held_.size() >= kMaxPartSenders) return;  // its submit will find its parts missing
    it = held_.emplace(from, Held{}).first;
  }
  Held& held = it->second;
  held.last = now;
  if (held.over) return;
  if (held.tasks + tasks.size() > max_tasks_ || held.bytes + bytes > kMaxMessageBytes) {
    held.over = true;
    held.job = {};
    return;
  }
  held.bytes += bytes;
  held.tasks += tasks.size();
  held.job.Add(std::move(tasks));
}

SubmitParts::Taken SubmitParts::Take(const std::string& from, uint32_t expected) {
  Taken taken;
  auto it = held_.find(from);
  if (it == held_.end()) {
    if (expected > 0)
      taken.problem = "the job's first " + std::to_string(expected) +
                      " tasks did not reach the broker, or waited there too long; nothing was "
                      "accepted";
    return taken;
  }
  Held held = std::move(it->second);
  held_.erase(it);
  if (held.over) {
    taken.problem = "a job may hold at most " + std::to_string(max_tasks_) + " tasks and " +
                    std::to_string(kMaxMessageBytes >> 20) + " MiB; nothing was accepted";
  } else if (held.tasks != expected) {
    taken.problem = "the job's first " + std::to_string(expected) +
                    " tasks did not all reach the broker (" + std::to_string(held.tasks) +
                    " did); nothing was accepted";
  } else {
    taken.job = std::move(held.job);
    taken.bytes = held.bytes;
  }
  return taken;
}

void SubmitParts::Expire(SteadyTime now) {
  std::erase_if(held_,
                [&](const auto& entry) { return now - entry.second.last >= kRequestTimeout; });
}

}  // namespace orq

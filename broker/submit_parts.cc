#include "broker/submit_parts.h"

namespace orq {
namespace {
std::string Mib(size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }
}  // namespace

void SubmitParts::Add(const std::string& from, const std::string& key, std::vector<TaskSpec> tasks,
                      size_t bytes, SteadyTime now) {
  auto it = held_.find(from);
  if (it == held_.end()) {
    // Its submit will find its parts missing.
    if (held_.size() >= kMaxPartSenders || keys_[key].senders >= kMaxPartSendersPerKey) return;
    it = held_.emplace(from, Held{key}).first;
    ++keys_[key].senders;
  }
  Held& held = it->second;
  held.last = now;
  if (!held.over.empty()) return;
  PerKey& mine = keys_[held.key];
  if (held.tasks + tasks.size() > max_tasks_ || held.bytes + bytes > kMaxMessageBytes)
    return Drop(held, "a job may hold at most " + std::to_string(max_tasks_) + " tasks and " +
                          Mib(kMaxMessageBytes));
  if (mine.bytes + bytes > kMaxPartBytesPerKey)
    return Drop(held, "jobs being submitted with this key hold " + Mib(kMaxPartBytesPerKey) +
                          " at most, all together, until their submits come");
  if (bytes_ + bytes > kMaxPartBytes)
    return Drop(held, "jobs being submitted hold " + Mib(kMaxPartBytes) +
                          " of the broker at most, all together; submit again later");
  held.bytes += bytes;
  mine.bytes += bytes;
  bytes_ += bytes;
  held.tasks += tasks.size();
  held.job.Add(std::move(tasks));
}

void SubmitParts::Drop(Held& held, std::string why) {
  keys_[held.key].bytes -= held.bytes;
  bytes_ -= held.bytes;
  held.bytes = 0;
  held.job = {};
  held.over = std::move(why);
}

void SubmitParts::Release(const Held& held) {
  auto it = keys_.find(held.key);
  it->second.bytes -= held.bytes;
  bytes_ -= held.bytes;
  if (--it->second.senders == 0) keys_.erase(it);
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
  Release(held);
  if (!held.over.empty()) {
    taken.problem = held.over + "; nothing was accepted";
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
  for (auto it = held_.begin(); it != held_.end();) {
    if (now - it->second.last >= kRequestTimeout) {
      Release(it->second);
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace orq

#include "common/ids.h"

#include <charconv>

namespace orq {

std::string FormatJobId(uint64_t job) { return "j" + std::to_string(job); }

std::string FormatTaskId(TaskId id) { return FormatJobId(id.job) + "." + std::to_string(id.index); }
std::string FormatId(const IdRef& id) {
  return id.index ? FormatTaskId({id.job, *id.index}) : FormatJobId(id.job);
}

std::string_view StateName(TaskState state) {
  switch (state) {
    case TaskState::kWaiting:
      return "waiting";
    case TaskState::kQueued:
      return "queued";
    case TaskState::kDelayed:
      return "delayed";
    case TaskState::kRunning:
      return "running";
    case TaskState::kFinished:
      return "finished";
  }
  return "?";
}

std::optional<IdRef> ParseId(std::string_view text) {
  if (!text.empty() && text.front() == 'j') text.remove_prefix(1);
  IdRef ref;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, ref.job);
  if (ec != std::errc() || p == text.data() || ref.job == 0) return std::nullopt;
  if (p == end) return ref;
  if (*p != '.') return std::nullopt;
  uint32_t index = 0;
  auto [q, ec2] = std::from_chars(p + 1, end, index);
  if (ec2 != std::errc() || q == p + 1 || q != end) return std::nullopt;
  ref.index = index;
  return ref;
}

std::string_view StatusName(TaskStatus status) {
  switch (status) {
    case TaskStatus::kOk:
      return "ok";
    case TaskStatus::kFailed:
      return "failed";
    case TaskStatus::kTimeout:
      return "timeout";
    case TaskStatus::kCancelled:
      return "cancelled";
    case TaskStatus::kWorkerLost:
      return "worker_lost";
    case TaskStatus::kDependencyFailed:
      return "dependency_failed";
  }
  return "?";
}

std::optional<TaskStatus> ParseStatus(std::string_view name) {
  for (auto s : {TaskStatus::kOk, TaskStatus::kFailed, TaskStatus::kTimeout, TaskStatus::kCancelled,
                 TaskStatus::kWorkerLost, TaskStatus::kDependencyFailed}) {
    if (StatusName(s) == name) return s;
  }
  return std::nullopt;
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kLocal:
      return "local";
    case Role::kClient:
      return "client";
    case Role::kWorker:
      return "worker";
    case Role::kRevoked:
      return "revoked";
  }
  return "?";
}

}  // namespace orq

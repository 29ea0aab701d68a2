#include "common/protocol.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace orq {

void Histogram::Observe(double seconds) {
  seconds = std::max(seconds, 0.0);
  const auto bucket = std::lower_bound(kLatencyBuckets.begin(), kLatencyBuckets.end(), seconds);
  ++counts[static_cast<size_t>(bucket - kLatencyBuckets.begin())];
  sum += seconds;
}

uint64_t Histogram::count() const { return std::accumulate(counts.begin(), counts.end(), 0ull); }

std::string_view EventKindName(Event::Kind kind) {
  switch (kind) {
    case Event::Kind::kJobSubmitted:
      return "job_submitted";
    case Event::Kind::kTaskStarted:
      return "task_started";
    case Event::Kind::kTaskEnded:
      return "task_ended";
    case Event::Kind::kWorkerJoined:
      return "worker_joined";
    case Event::Kind::kWorkerLeft:
      return "worker_left";
  }
  return "?";
}

namespace {
constexpr std::array<std::string_view, kLastTaskFilter + 1> kTaskFilterNames = {
    "all", "waiting", "queued", "delayed", "running", "finished", "ok", "failed", "cancelled"};
}  // namespace

std::string_view TaskFilterName(TaskFilter filter) {
  return kTaskFilterNames[static_cast<size_t>(filter)];
}

std::optional<TaskFilter> TaskFilterNamed(std::string_view name) {
  for (size_t i = 0; i < kTaskFilterNames.size(); ++i)
    if (kTaskFilterNames[i] == name) return static_cast<TaskFilter>(i);
  return std::nullopt;
}

bool HaltDecided(const HaltPolicy& halt, uint64_t failed, uint64_t succeeded) {
  if (halt.threshold <= 0) return false;
  const uint64_t counted = halt.on_failure ? failed : succeeded;
  if (!halt.percent) return static_cast<double>(counted) >= halt.threshold;
  const uint64_t ended = failed + succeeded;
  return ended >= 3 && counted > 0 &&
         100.0 * static_cast<double>(counted) >= halt.threshold * static_cast<double>(ended);
}

Expected<void> ValidateHalt(const HaltPolicy& halt) {
  if (!std::isfinite(halt.threshold) || halt.threshold < 0 ||
      (halt.percent && halt.threshold > 100) ||
      (!halt.percent && (halt.threshold != std::floor(halt.threshold) || halt.threshold > 1e12)))
    return Fault("the halt threshold must be a count or a percentage from 0 to 100");
  return {};
}

}  // namespace orq

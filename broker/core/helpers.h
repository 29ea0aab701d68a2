// Small functions BrokerCore's files share (broker/core/broker_core.cc, workers.cc,
// dependencies.cc).
#pragma once

#include <chrono>
#include <string>
#include <utility>

#include "common/clock.h"
#include "common/protocol.h"

namespace orq {

inline SteadyTime::duration Seconds(double seconds) {
  return std::chrono::duration_cast<SteadyTime::duration>(std::chrono::duration<double>(seconds));
}

// Whether an outcome's output went to files (removed when its job is forgotten).
inline bool Spilled(const ShellOutput::More& more) {
  return !more.stdout_file.empty() || !more.stderr_file.empty();
}

// The outcome of a task the broker ends itself (cancelled, lost with its worker, a dependency
// failed).
inline TaskOutcome Ending(TaskStatus status, std::string error) {
  TaskOutcome outcome;
  outcome.status = status;
  outcome.error = std::move(error);
  return outcome;
}

}  // namespace orq

#include "common/protocol.h"

#include <cmath>

namespace orq {

bool HaltDecided(const HaltPolicy& halt, uint64_t failed, uint64_t succeeded) {
  if (halt.threshold <= 0) return false;
  const uint64_t counted = halt.on_failure ? failed : succeeded;
  if (!halt.percent) return static_cast<double>(counted) >= halt.threshold;
  const uint64_t ended = failed + succeeded;
  return ended >= 3 && counted > 0 &&
         100.0 * static_cast<double>(counted) >= halt.threshold * static_cast<double>(ended);
}

std::optional<std::string> ValidateHalt(const HaltPolicy& halt) {
  if (!std::isfinite(halt.threshold) || halt.threshold < 0 ||
      (halt.percent && halt.threshold > 100) ||
      (!halt.percent && (halt.threshold != std::floor(halt.threshold) || halt.threshold > 1e12)))
    return "the halt threshold must be a count or a percentage from 0 to 100";
  return std::nullopt;
}

}  // namespace orq

#include "common/words.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/ids.h"

namespace orq {
namespace {

std::string Plural(uint64_t n, const std::string& one) {
  return std::to_string(n) + " " + one + (n == 1 ? "" : "s");
}

// The first three holders, and how many more there are.
std::string Holders(const Reason& r) {
  std::string text;
  for (size_t i = 0; i < r.holders.size() && i < 3; ++i)
    text += (text.empty() ? "" : ", ") + FormatTaskId(r.holders[i]);
  if (r.count > 3) text += " and " + std::to_string(r.count - 3) + " more";
  return text;
}

std::string Eligible(double seconds) {
  if (seconds < 0) return "";
  char text[64];
  std::snprintf(text, sizeof text, ": it is eligible in %.1f s", seconds);
  return text;
}

}  // namespace

std::string Sentence(const Reason& r) {
  using Kind = Reason::Kind;
  switch (r.kind) {
    case Kind::kDependency:
      return "waiting for " + FormatId(r.id) + " (" +
             (r.id.index ? std::string(StateName(r.state))
                         : std::to_string(r.count) + " of its tasks unfinished") +
             ")" + (r.any ? ", however it ends" : "");
    case Kind::kMoreDependencies:
      return "and for " + std::to_string(r.count) + " more";
    case Kind::kDelay:
      return "waiting out its delay" + Eligible(r.seconds);
    case Kind::kBackoff:
      return "waiting out its retry backoff" + Eligible(r.seconds);
    case Kind::kRunning:
      return "running: attempt " + std::to_string(r.count) + " on worker pid " +
             std::to_string(r.pid) + " on " + r.name;
    case Kind::kLockHeld:
      return "lock " + r.name + " is held for " + LockModeName(r.mode) + " by " + Holders(r);
    case Kind::kWritersWaiting:
      return "lock " + r.name + " has " + Plural(r.count, "writer") +
             " waiting, and readers wait behind writers";
    case Kind::kLimitFull:
      return "limit " + r.name + " is at " + std::to_string(r.count) + "/" + std::to_string(r.max) +
             " (held by " + Holders(r) + ")";
    case Kind::kLimitRate: {
      char text[32];
      std::snprintf(text, sizeof text, "%.3g", r.seconds);
      return "limit " + r.name + " allows " + FormatRate(r.rate) + " and its next start is in " +
             text + " s";
    }
    case Kind::kNoWorkers:
      return "no worker is registered";
    case Kind::kNoQueueServer:
      return "no worker serves queue '" + r.name + "' (orq worker --queues " + r.name + ")";
    case Kind::kNoWorkerOffers:
      return "no worker offers " + r.name + " (orq worker --resources, --queues)";
    case Kind::kNoRoom:
      return "waiting for a worker with " + r.name + " free";
    case Kind::kNoSlots:
      return "no worker has slots for " + r.name + " tasks";
    case Kind::kBehind:
      return "queued behind " + Plural(r.count, "task") +
             " that go first (higher priority, or submitted earlier)";
    case Kind::kNextInLine:
      return "next in line: it starts when a worker has a free " + r.name + " slot";
    case Kind::kNoTimeLeft: {
      char text[32];
      std::snprintf(text, sizeof text, "%.0f", r.seconds);
      return std::string("no worker that serves it has ") + text +
             " s left (its --time-request; a worker's time is its --lifetime)";
    }
  }
  return "?";
}

std::optional<double> ParseRate(const std::string& text) {
  const size_t slash = text.find('/');
  if (slash == std::string::npos || slash == 0) return std::nullopt;
  char* end = nullptr;
  const std::string number = text.substr(0, slash);
  const double n = std::strtod(number.c_str(), &end);
  if (*end || !std::isfinite(n) || n <= 0) return std::nullopt;
  const std::string unit = text.substr(slash + 1);
  if (unit == "s") return n;
  if (unit == "m") return n / 60;
  if (unit == "h") return n / 3600;
  return std::nullopt;
}

std::string FormatRate(double per_second) {
  char text[48];
  if (per_second >= 1 || per_second * 60 < 1)
    std::snprintf(text, sizeof text, "%g/s", per_second);
  else
    std::snprintf(text, sizeof text, "%g/m", per_second * 60);
  return text;
}

}  // namespace orq

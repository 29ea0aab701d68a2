#include "broker/peer_bounds.h"

#include <algorithm>
#include <set>
#include <string_view>

#include "common/text.h"

namespace orq {
namespace {

std::string Bytes(size_t n) { return std::to_string(n) + " bytes"; }

Expected<void> Over(std::string_view field, size_t size, size_t limit, const char* unit) {
  if (size <= limit) return {};
  return Fault(std::string(field) + " has " + std::to_string(size) + " " + unit +
               "; the limit is " + std::to_string(limit));
}

}  // namespace

Expected<void> CheckReady(const ReadyMessage& ready) {
  if (ready.host.empty() || ready.host.size() > kMaxHostBytes || !IsPrintableUtf8(ready.host))
    return Fault("its host name must be 1 to " + std::to_string(kMaxHostBytes) +
                 " bytes of printable UTF-8");
  if (ready.threads > kMaxSlots) return Over("threads", ready.threads, kMaxSlots, "threads");
  uint64_t slots = 0;
  for (uint32_t s : ready.slots) {
    if (s > kMaxSlots) return Over("a task class", s, kMaxSlots, "slots");
    slots += s;
  }
  if (auto e = Over("its list of running tasks", ready.running.size(), slots, "entries (slots)");
      !e.ok())
    return e;
  if (auto e = Over("its resources", ready.resources.size(), kMaxOffered, "entries"); !e.ok())
    return e;
  std::set<std::string_view> names;
  for (const ResourceNeed& r : ready.resources) {
    if (auto e = ValidateName(r.name, "resource"); !e.ok()) return e;
    if (r.amount < 1 || r.amount > kMaxResourceUnits)
      return Fault("resource " + r.name + " has " + std::to_string(r.amount) +
                   " units; give 1 to " + std::to_string(kMaxResourceUnits));
    if (!names.insert(r.name).second) return Fault("resource " + r.name + " is offered twice");
  }
  if (auto e = Over("its queues", ready.queues.size(), kMaxOffered, "entries"); !e.ok()) return e;
  for (const std::string& q : ready.queues) {
    if (auto e = ValidateName(q, "queue"); !e.ok()) return e;
  }
  // An allocation is QUEUE/JOBID: a queue's name and a batch system's job id.
  if (!ready.allocation.empty()) {
    const size_t slash = ready.allocation.find('/');
    if (slash == std::string::npos || ready.allocation.size() > 128 ||
        !ValidateName(ready.allocation.substr(0, slash), "allocation").ok() ||
        !ValidateName(ready.allocation.substr(slash + 1), "allocation").ok())
      return Fault("its allocation must be QUEUE/JOBID, two names of at most 64 characters");
  }
  if (ready.lifetime_ms > 366ull * 86400 * 1000)
    return Over("its lifetime", ready.lifetime_ms, 366ull * 86400 * 1000, "ms");
  return {};
}

Expected<void> CheckScope(const ReadyMessage& ready,
                          const std::optional<std::vector<std::string>>& queues,
                          const std::optional<std::vector<ResourceNeed>>& resources) {
  if (queues) {
    std::string allowed;
    for (const std::string& q : *queues) allowed += (allowed.empty() ? "" : ",") + q;
    const auto in_scope = [&](const std::string& q) {
      return std::find(queues->begin(), queues->end(), q) != queues->end();
    };
    if (ready.queues.empty() || !std::all_of(ready.queues.begin(), ready.queues.end(), in_scope))
      return Fault("this key may take tasks from the queues " + allowed +
                   " only: start the worker with --queues " + allowed + " (or some of them)");
  }
  if (resources) {
    for (const ResourceNeed& offered : ready.resources) {
      auto it = std::find_if(resources->begin(), resources->end(),
                             [&](const ResourceNeed& r) { return r.name == offered.name; });
      if (it == resources->end() && offered.name == "cpus") continue;
      const uint32_t most = it == resources->end() ? 0 : it->amount;
      if (offered.amount > most)
        return Fault("this key may offer at most " + std::to_string(most) + " " + offered.name +
                     "; it offered " + std::to_string(offered.amount));
    }
  }
  return {};
}

Expected<void> CheckOutcome(const TaskOutcome& outcome) {
  if (auto e = Over("its result", outcome.result.size(), kMaxValueBytes, "bytes"); !e.ok())
    return e;
  if (auto e = Over("its error", outcome.error.size() + outcome.last_error.size(), kMaxErrorBytes,
                    "bytes");
      !e.ok())
    return e;
  if (!outcome.shell) return {};
  const ShellOutput& shell = *outcome.shell;
  if (auto e = Over("its stdout", shell.stdout_text.size(), kMaxOutputBytes, "bytes"); !e.ok())
    return e;
  if (auto e = Over("its stderr", shell.stderr_text.size(), kMaxOutputBytes, "bytes"); !e.ok())
    return e;
  if (!shell.more) return {};
  const ShellOutput::More& more = *shell.more;
  if (auto e = Over("its command", more.argv.size(), kMaxArgs, "arguments"); !e.ok()) return e;
  size_t argv = 0;
  for (const std::string& a : more.argv) argv += a.size();
  if (auto e = Over("its command", argv, kMaxArgvBytes, "bytes"); !e.ok()) return e;
  if (more.host.size() > kMaxHostBytes || !IsPrintableUtf8(more.host))
    return Fault("its host name must be at most " + Bytes(kMaxHostBytes) + " of printable UTF-8");
  for (const std::string* file : {&more.stdout_file, &more.stderr_file}) {
    if (file->size() > kMaxPathBytes || !IsPrintableUtf8(*file))
      return Fault("its output file must be a path of at most " + Bytes(kMaxPathBytes) +
                   " of printable UTF-8");
  }
  return {};
}

TaskOutcome OverBounds(const TaskOutcome& outcome, const std::string& why) {
  TaskOutcome failed;
  failed.id = outcome.id;
  failed.attempt = outcome.attempt;
  failed.status = TaskStatus::kFailed;
  failed.started = outcome.started;
  failed.finished = outcome.finished;
  failed.error = "its worker sent an outcome the broker does not keep: " + why;
  return failed;
}

}  // namespace orq

#include "cli/format.h"

#include "broker/core/limits.h"
#include "common/ids.h"
#include "common/text.h"

namespace orq {
namespace {}  // namespace

void PrintText(const TaskOutcome& o, std::FILE* out, std::string_view tag) {
  std::string_view text;
  std::string decoded;
  if (o.shell) {
    text = o.shell->stdout_text;
  } else if (o.status == TaskStatus::kOk) {
    text = o.result;
    if (!text.empty() && text.front() == '"') {  // a JSON string prints as its contents
      decoded = ResultJson(o).get<std::string>();
      text = decoded;
    }
  }
  const bool exact = o.shell.has_value();  // a value's line ends with a newline, always
  if (tag.empty()) {
    std::fwrite(text.data(), 1, text.size(), out);
    if (!exact && (text.empty() || text.back() != '\n')) std::fputc('\n', out);
    return;
  }
  // --tag: every line after the tag and a tab (GNU parallel's form).
  std::string tagged;
  size_t start = 0;
  if (!exact && text.empty()) tagged.append(tag).append("\t\n");  // a value shows, even empty
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    const bool last = end == std::string_view::npos;
    if (last) end = text.size();
    tagged.append(tag).append("\t").append(text.substr(start, end - start));
    if (!last || !exact) tagged.append("\n");
    start = end + 1;
  }
  std::fwrite(tagged.data(), 1, tagged.size(), out);
}

std::string FailureSentence(const TaskOutcome& o) {
  std::string s = "orq: task " + FormatTaskId(o.id) + " " + std::string(StatusName(o.status));
  if (!o.error.empty()) s += ": " + EscapeControls(o.error);
  if (o.shell && !o.shell->stderr_text.empty()) {
    std::string_view err = o.shell->stderr_text;
    auto nl = err.find('\n');
    if (nl != std::string_view::npos && nl + 1 < err.size()) err = err.substr(0, nl);
    while (!err.empty() && err.back() == '\n') err.remove_suffix(1);
    s += " (stderr: " + EscapeControls(err) + ")";
  }
  return s;
}

namespace {
std::string Holders(const GateInfo& g) {
  std::string text;
  for (TaskId id : g.holders) text += (text.empty() ? "" : " ") + FormatTaskId(id);
  if (g.held > g.holders.size()) text += " ...";
  return text;
}
}  // namespace

std::string LimitLine(const GateInfo& l) {
  std::string line = l.name + ":";
  if (l.limit.max > 0)
    line += " " + std::to_string(l.held) + "/" + std::to_string(l.limit.max) + " running";
  else
    line += " " + std::to_string(l.held) + " running";
  if (l.limit.rate > 0) {
    line += ", at most " + FormatRate(l.limit.rate);
    if (l.limit.burst > 1) line += " (bursts of " + std::to_string(l.limit.burst) + ")";
  }
  line += ", " + std::to_string(l.waiting) + " waiting";
  if (l.held > 0) line += "; held by " + Holders(l);
  return line;
}

std::string AllocQueueLine(const AllocQueueInfo& q) {
  uint32_t queued = 0, running = 0, workers = 0;
  for (const AllocationInfo& a : q.allocations) {
    queued += a.state == AllocState::kQueued;
    running += a.state == AllocState::kRunning;
    workers += a.workers;
  }
  std::string line = q.spec.name + ": " + q.spec.backend + ", " + std::to_string(workers) + "/" +
                     std::to_string(q.spec.max_workers) + " workers, " + std::to_string(running) +
                     " allocations running, " + std::to_string(queued) + " queued (backlog " +
                     std::to_string(q.spec.backlog) + ")";
  if (q.paused)
    line += q.pause_reason.empty() ? "; paused (orq alloc resume " + q.spec.name + ")"
                                   : "; " + EscapeControls(q.pause_reason);
  else if (!q.last_error.empty())
    line += "; last error: " + EscapeControls(q.last_error);
  return line;
}

std::string LockLine(const GateInfo& l) {
  std::string line = l.name + ": ";
  line += l.mode ? std::string("held for ") + LockModeName(*l.mode) + " by " + Holders(l) : "free";
  if (l.waiting > 0) line += ", " + std::to_string(l.waiting) + " waiting";
  return line;
}

void PrintStatus(StatusReply s, std::FILE* out) {
  std::string endpoints;
  for (const auto& e : s.endpoints) endpoints += "  " + e;
  std::fprintf(out, "broker   pid %lld%s\n", static_cast<long long>(s.broker_pid),
               endpoints.c_str());
  if (!s.journal_problem.empty()) std::fprintf(out, "journal  %s\n", s.journal_problem.c_str());
  std::fprintf(out, "workers  %zu\n", s.workers.size());
  for (const WorkerInfo& w : s.workers) {
    std::string offer;
    for (const ResourceNeed& r : w.resources)
      offer += (offer.empty() ? "" : ",") + r.name + "=" + std::to_string(r.amount);
    for (size_t i = 0; i < w.queues.size(); ++i) offer += (i ? "," : "  queues ") + w.queues[i];
    if (!w.allocation.empty()) offer += "  allocation " + EscapeControls(w.allocation);
    if (w.ends_in > 0)
      offer += "  leaves in " + std::to_string(static_cast<int64_t>(w.ends_in)) + " s";
    std::fprintf(out, "  %-6s %-20s pid %-8lld threads %-3u running %-4u %s\n",
                 w.remote ? "remote" : "local", EscapeControls(w.host).c_str(),
                 static_cast<long long>(w.pid), w.threads, w.running, offer.c_str());
  }
  std::fprintf(out, "tasks   ");
  TaskCounts::ForEach(s.tasks, [&](const char* name, uint64_t v) {
    std::fprintf(out, " %s %llu", name, static_cast<unsigned long long>(v));
  });
  std::fprintf(out, "\n");
  if (!s.limits.empty()) std::fprintf(out, "limits   %zu\n", s.limits.size());
  for (const GateInfo& l : s.limits) std::fprintf(out, "  %s\n", LimitLine(l).c_str());
  if (!s.locks.empty()) std::fprintf(out, "locks    %zu\n", s.locks.size());
  for (const GateInfo& l : s.locks) std::fprintf(out, "  %s\n", LockLine(l).c_str());
  if (!s.allocs.empty()) std::fprintf(out, "allocs   %zu\n", s.allocs.size());
  for (const AllocQueueInfo& q : s.allocs) std::fprintf(out, "  %s\n", AllocQueueLine(q).c_str());
}

}  // namespace orq

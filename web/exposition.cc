#include "web/exposition.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string_view>

#include "common/ids.h"

namespace orq::web {
namespace {

// TaskClass's names, in its order.
constexpr std::array<std::string_view, kTaskClassCount> kClassNames = {"async", "cpu", "shell",
                                                                       "python"};

// What each BrokerCounters counter counts, for its HELP line.
const std::map<std::string_view, std::string_view>& CounterHelp() {
  static const std::map<std::string_view, std::string_view> help = {
      {"malformed", "Frames from peers that did not decode."},
      {"unexpected", "Well-formed messages the broker never takes (replies sent to it)."},
      {"stale_results", "Results for a task not leased to the worker that sent them."},
      {"workers_lost", "Workers dropped for missing heartbeats."},
      {"retries", "Failed attempts scheduled to run again."},
      {"requeued", "Leases handed back to the queue (worker lost, goodbye, restart)."},
      {"adopted", "Leases a re-registering worker kept."},
      {"forbidden", "Messages outside the sender's role (a worker key submitting...)."},
      {"revoked", "Connections dropped because their key was revoked."},
      {"auth_refused", "TCP handshakes refused by the ZAP handler (key not allowed)."},
      {"handshake_failed", "TCP handshakes that failed before ZAP (no CURVE, garbage)."},
      {"shed", "TCP connections closed in their handshake to keep the broker's bounds."},
      {"remote_closed", "Authenticated TCP connections that closed (a peer left or was cut)."},
      {"over_bounds", "Messages from peers with a field over its bound."},
      {"impostors", "Messages on a worker's routing id from a connection of another key."},
  };
  return help;
}

class Writer {
 public:
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    text_ += "# HELP ";
    text_ += name;
    text_ += ' ';
    text_ += help;
    text_ += "\n# TYPE ";
    text_ += name;
    text_ += ' ';
    text_ += type;
    text_ += '\n';
  }
  // One sample; `labels` already written as name="value",...
  void Sample(std::string_view name, std::string_view labels, double value) {
    text_ += name;
    if (!labels.empty()) {
      text_ += '{';
      text_ += labels;
      text_ += '}';
    }
    text_ += ' ';
    text_ += Number(value);
    text_ += '\n';
  }
  void Histogram(std::string_view name, std::string_view help, const orq::Histogram& h) {
    Family(name, "histogram", help);
    uint64_t cumulative = 0;
    const std::string bucket = std::string(name) + "_bucket";
    for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
      cumulative += h.counts[i];
      Sample(bucket, "le=\"" + Number(kLatencyBuckets[i]) + "\"", double(cumulative));
    }
    cumulative += h.counts.back();
    Sample(bucket, "le=\"+Inf\"", double(cumulative));
    Sample(std::string(name) + "_sum", "", h.sum);
    Sample(std::string(name) + "_count", "", double(cumulative));
  }
  std::string Take() { return std::move(text_); }

  static std::string Number(double v) {
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (std::isnan(v)) return "NaN";
    char buf[32];
    if (v == std::floor(v) && std::fabs(v) < 1e15) {
      std::snprintf(buf, sizeof buf, "%.0f", v);
      return buf;
    }
    for (int precision = 1; precision <= 17; ++precision) {  // the shortest that reads back
      std::snprintf(buf, sizeof buf, "%.*g", precision, v);
      if (std::strtod(buf, nullptr) == v) break;
    }
    return buf;
  }

 private:
  std::string text_;
};

// A label value as the exposition format writes it: \, " and newline escaped.
std::string Label(std::string_view name, std::string_view value) {
  std::string text = std::string(name) + "=\"";
  for (char c : value) {
    if (c == '\\' || c == '"')
      text += '\\', text += c;
    else if (c == '\n')
      text += "\\n";
    else
      text += c;
  }
  return text + "\"";
}

// What the broker holds: tasks, jobs, workers and their slots.
void Holdings(Writer& w, const StatusReply& s) {
  w.Family("orq_tasks", "gauge",
           "Tasks the broker keeps, by state (finished ones by status; done is ok).");
  TaskCounts::ForEach(s.tasks, [&](const char* name, uint64_t v) {
    w.Sample("orq_tasks", Label("state", name), double(v));
  });
  w.Family("orq_jobs", "gauge", "Jobs the broker keeps.");
  w.Sample("orq_jobs", "", double(s.jobs));

  w.Family("orq_workers", "gauge",
           "Workers registered: local (ipc) or remote (TCP); busy (running a task) or idle.");
  double workers[2][2] = {};  // [remote][busy]
  double busy = 0;
  Slots slots{};
  for (const WorkerInfo& info : s.workers) {
    workers[info.remote][info.running > 0] += 1;
    busy += info.running;
    for (size_t c = 0; c < slots.size(); ++c) slots[c] += info.slots[c];
  }
  for (int remote : {0, 1}) {
    for (int running : {0, 1}) {
      w.Sample("orq_workers",
               Label("location", remote ? "remote" : "local") + "," +
                   Label("state", running ? "busy" : "idle"),
               workers[remote][running]);
    }
  }
  w.Family("orq_worker_slots", "gauge", "Task slots the workers offer, by task class.");
  for (size_t c = 0; c < slots.size(); ++c)
    w.Sample("orq_worker_slots", Label("class", kClassNames[c]), double(slots[c]));
  w.Family("orq_worker_slots_busy", "gauge", "Slots running a task, over every worker.");
  w.Sample("orq_worker_slots_busy", "", busy);
}

// Counters and histograms since the broker started.
void Totals(Writer& w, const Metrics& m) {
  w.Family("orq_jobs_submitted_total", "counter", "Jobs submitted (a retry is a new job).");
  w.Sample("orq_jobs_submitted_total", "", double(m.jobs_submitted));
  w.Family("orq_tasks_submitted_total", "counter", "Tasks submitted, by kind.");
  for (size_t k = 0; k < m.submitted.size(); ++k)
    w.Sample("orq_tasks_submitted_total", Label("kind", KindNameAt(k)), double(m.submitted[k]));
  w.Family("orq_tasks_finished_total", "counter", "Tasks that ended, by kind and status.");
  for (size_t k = 0; k < kTaskKindCount; ++k) {
    for (size_t st = 0; st < kTaskStatusCount; ++st) {
      w.Sample("orq_tasks_finished_total",
               Label("kind", KindNameAt(k)) + "," +
                   Label("status", StatusName(static_cast<TaskStatus>(st))),
               double(m.finished[k * kTaskStatusCount + st]));
    }
  }
  w.Histogram("orq_task_dispatch_seconds",
              "Time from a task being ready (queued) to its lease to a worker.", m.dispatch);
  w.Histogram("orq_task_end_to_end_seconds",
              "Time from a job's submission to the end of each of its tasks.", m.end_to_end);
  w.Histogram("orq_journal_commit_seconds", "Time each journal commit took.", m.commit);
  w.Family("orq_journal_bytes", "gauge", "Bytes of the journal's files on disk (0: none).");
  w.Sample("orq_journal_bytes", "", double(m.journal_bytes));
  w.Family("orq_events_total", "counter", "Events (orq events) since the broker started.");
  w.Sample("orq_events_total", "", double(m.events));
}

// Limits and locks: who holds each, who waits.
void Gates(Writer& w, const StatusReply& s) {
  w.Family("orq_limit_holders", "gauge", "Tasks holding a limit (running under it).");
  for (const GateInfo& g : s.limits) w.Sample("orq_limit_holders", Label("limit", g.name), g.held);
  w.Family("orq_limit_waiters", "gauge", "Tasks waiting for room under a limit.");
  for (const GateInfo& g : s.limits)
    w.Sample("orq_limit_waiters", Label("limit", g.name), g.waiting);
  w.Family("orq_limit_max", "gauge", "How many may hold a limit at once (0: no bound).");
  for (const GateInfo& g : s.limits) w.Sample("orq_limit_max", Label("limit", g.name), g.limit.max);
  w.Family("orq_lock_holders", "gauge", "Tasks holding a lock, by the mode it is held in.");
  for (const GateInfo& g : s.locks)
    w.Sample("orq_lock_holders",
             Label("lock", g.name) + "," + Label("mode", g.mode ? LockModeName(*g.mode) : "free"),
             g.held);
  w.Family("orq_lock_waiters", "gauge", "Tasks waiting for a lock.");
  for (const GateInfo& g : s.locks) w.Sample("orq_lock_waiters", Label("lock", g.name), g.waiting);
}

}  // namespace

std::string Exposition(const StatusReply& s) {
  Writer w;
  Holdings(w, s);
  if (s.metrics) Totals(w, *s.metrics);
  w.Family("orq_journal_healthy", "gauge",
           "1 while the journal can be written; 0 while its disk is full (work is refused).");
  w.Sample("orq_journal_healthy", "", s.journal_problem.empty() ? 1 : 0);
  BrokerCounters::ForEach(s.counters, [&](const char* name, uint64_t v) {
    const std::string metric = "orq_" + std::string(name) + "_total";
    const auto help = CounterHelp().find(name);
    w.Family(metric, "counter", help == CounterHelp().end() ? "A broker counter." : help->second);
    w.Sample(metric, "", double(v));
  });
  Gates(w, s);
  return w.Take();
}

std::string HttpExposition(const std::map<std::string, uint64_t>& refused) {
  Writer w;
  w.Family("orq_http_refused_total", "counter",
           "Dashboard requests refused, by reason (host, token, origin, csrf, method, too_large, "
           "malformed, rate, connections).");
  for (const auto& [reason, count] : refused)
    w.Sample("orq_http_refused_total", Label("reason", reason), double(count));
  return w.Take();
}

}  // namespace orq::web

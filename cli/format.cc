#include "cli/format.h"

#include "broker/limits.h"
#include "common/ids.h"
#include "common/text.h"

namespace orq {
namespace {

nlohmann::json ResultJson(const TaskOutcome& o) {
  if (o.shell) return o.shell->stdout_text;
  if (o.result.empty()) return nullptr;
  return nlohmann::json::parse(o.result, nullptr, /*allow_exceptions=*/false);
}

nlohmann::json Time(double t) { return t > 0 ? nlohmann::json(t) : nlohmann::json(nullptr); }

}  // namespace

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

nlohmann::json ToJson(const TaskOutcome& o) {
  nlohmann::json j = {{"id", FormatTaskId(o.id)},
                      {"index", o.id.index},
                      {"status", StatusName(o.status)},
                      {"result", o.status == TaskStatus::kOk || o.shell ? ResultJson(o) : nullptr},
                      {"attempts", o.attempt},
                      {"worker", o.worker_pid ? nlohmann::json(o.worker_pid) : nullptr},
                      {"started", Time(o.started)},
                      {"finished", Time(o.finished)}};
  if (o.shell && o.shell->more && !o.shell->more->argv.empty()) {
    const auto& argv = o.shell->more->argv;  // the command: "cmd" for sh -c CMD, else "argv"
    if (const std::string* line = ShellCommand(argv))
      j["cmd"] = *line;
    else
      j["argv"] = argv;
  }
  if (!o.error.empty()) j["error"] = o.error;
  if (!o.last_error.empty()) j["last_error"] = o.last_error;
  if (o.shell) {
    j["exit_code"] =
        o.shell->exit_code >= 0 ? nlohmann::json(o.shell->exit_code) : nlohmann::json(nullptr);
    j["stdout"] = o.shell->stdout_text;
    j["stderr"] = o.shell->stderr_text;
    if (o.shell->truncated) j["truncated"] = true;
    if (const auto& more = o.shell->more) {
      if (!more->stdout_file.empty()) j["stdout_file"] = more->stdout_file;
      if (!more->stderr_file.empty()) j["stderr_file"] = more->stderr_file;
      if (!more->stdout_file.empty() || !more->stderr_file.empty()) j["host"] = more->host;
    }
  }
  return j;
}

std::string FailureSentence(const TaskOutcome& o) {
  std::string s = "orq: task " + FormatTaskId(o.id) + " " + std::string(StatusName(o.status));
  if (!o.error.empty()) s += ": " + o.error;
  if (o.shell && !o.shell->stderr_text.empty()) {
    std::string_view err = o.shell->stderr_text;
    auto nl = err.find('\n');
    if (nl != std::string_view::npos && nl + 1 < err.size()) err = err.substr(0, nl);
    while (!err.empty() && err.back() == '\n') err.remove_suffix(1);
    s += " (stderr: " + std::string(err) + ")";
  }
  return s;
}

std::string JsonLine(const nlohmann::json& json) {
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json StatusJson(StatusReply s) {
  nlohmann::json j;
  j["broker"] = {{"pid", s.broker_pid}};
  j["endpoint"] = s.endpoints.empty() ? "" : s.endpoints.front();
  j["endpoints"] = s.endpoints;
  auto workers = nlohmann::json::array();
  for (const WorkerInfo& w : s.workers) {
    workers.push_back(
        {{"pid", w.pid},
         {"host", w.host},
         {"remote", w.remote},
         {"threads", w.threads},
         {"running", w.running},
         {"slots", {{"async", w.slots[0]}, {"cpu", w.slots[1]}, {"shell", w.slots[2]}}}});
    for (const ResourceNeed& r : w.resources) workers.back()["resources"][r.name] = r.amount;
    workers.back()["queues"] = w.queues;
  }
  j["workers"] = std::move(workers);
  TaskCounts::ForEach(s.tasks, [&](const char* name, uint64_t v) { j["tasks"][name] = v; });
  j["jobs"] = s.jobs;
  BrokerCounters::ForEach(s.counters,
                          [&](const char* name, uint64_t v) { j["counters"][name] = v; });
  j["limits"] = nlohmann::json::array();
  for (const GateInfo& l : s.limits) j["limits"].push_back(LimitJson(l));
  j["locks"] = nlohmann::json::array();
  for (const GateInfo& l : s.locks) j["locks"].push_back(LockJson(l));
  j["journal_problem"] =
      s.journal_problem.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.journal_problem);
  return j;
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

// The holders' ids as people write them ("j7.2").
std::vector<std::string> HolderIds(const GateInfo& g) {
  std::vector<std::string> ids;
  for (TaskId id : g.holders) ids.push_back(FormatTaskId(id));
  return ids;
}

nlohmann::json LimitJson(const GateInfo& l) {
  nlohmann::json j = {{"name", l.name},
                      {"running", l.held},
                      {"waiting", l.waiting},
                      {"holders", HolderIds(l)},
                      {"max", nullptr},
                      {"rate_per_s", nullptr},
                      {"burst", std::max<uint32_t>(l.limit.burst, 1)}};
  if (l.limit.max > 0) j["max"] = l.limit.max;
  if (l.limit.rate > 0) j["rate_per_s"] = l.limit.rate;
  return j;
}

std::string LockLine(const GateInfo& l) {
  std::string line = l.name + ": ";
  line += l.mode ? std::string("held for ") + LockModeName(*l.mode) + " by " + Holders(l) : "free";
  if (l.waiting > 0) line += ", " + std::to_string(l.waiting) + " waiting";
  return line;
}

nlohmann::json LockJson(const GateInfo& l) {
  return {{"name", l.name},
          {"mode", l.mode ? nlohmann::json(LockModeName(*l.mode)) : nlohmann::json(nullptr)},
          {"holders", HolderIds(l)},
          {"held", l.held},
          {"waiting", l.waiting}};
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
}

}  // namespace orq

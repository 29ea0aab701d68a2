#include "common/shapes.h"

#include "common/ids.h"
#include "common/text.h"

namespace orq {
namespace {

nlohmann::json Time(double t) { return t > 0 ? nlohmann::json(t) : nlohmann::json(nullptr); }

// The holders' ids as people write them ("j7.2").
std::vector<std::string> HolderIds(const GateInfo& g) {
  std::vector<std::string> ids;
  for (TaskId id : g.holders) ids.push_back(FormatTaskId(id));
  return ids;
}

}  // namespace

nlohmann::json ResultJson(const TaskOutcome& o) {
  if (o.shell) return o.shell->stdout_text;
  if (o.result.empty()) return nullptr;
  return nlohmann::json::parse(o.result, nullptr, /*allow_exceptions=*/false);
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
         {"slots",
          {{"async", w.slots[0]},
           {"cpu", w.slots[1]},
           {"shell", w.slots[2]},
           {"python", w.slots[3]}}},
         {"last_heard", w.last_heard},
         {"done", w.done},
         {"failed", w.failed},
         {"allocation",
          w.allocation.empty() ? nlohmann::json(nullptr) : nlohmann::json(w.allocation)},
         {"ends_in", w.ends_in > 0 ? nlohmann::json(w.ends_in) : nlohmann::json(nullptr)}});
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
  j["allocs"] = nlohmann::json::array();
  for (const AllocQueueInfo& q : s.allocs) j["allocs"].push_back(AllocQueueJson(q));
  return j;
}

std::string_view AllocStateName(AllocState state) {
  switch (state) {
    case AllocState::kQueued:
      return "queued";
    case AllocState::kRunning:
      return "running";
    case AllocState::kEnded:
      return "ended";
  }
  return "?";
}

nlohmann::json AllocQueueJson(const AllocQueueInfo& q) {
  const AllocQueueSpec& s = q.spec;
  nlohmann::json resources = nlohmann::json::object();
  for (const ResourceNeed& r : s.resources) resources[r.name] = r.amount;
  auto allocations = nlohmann::json::array();
  uint32_t workers = 0;
  for (const AllocationInfo& a : q.allocations) {
    workers += a.workers;
    auto time = [](double t) { return t > 0 ? nlohmann::json(t) : nlohmann::json(nullptr); };
    allocations.push_back(
        {{"id", a.id},
         {"state", AllocStateName(a.state)},
         {"workers", a.workers},
         {"workers_seen", a.workers_seen},
         {"submitted", time(a.submitted)},
         {"started", time(a.started)},
         {"ended", time(a.ended)},
         {"end", a.end.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.end)}});
  }
  auto text_or_null = [](const std::string& t) {
    return t.empty() ? nlohmann::json(nullptr) : nlohmann::json(t);
  };
  return {{"name", s.name},
          {"backend", s.backend},
          {"time_limit", s.time_limit_s},
          {"workers_per_alloc", s.workers_per_alloc},
          {"max_workers", s.max_workers},
          {"backlog", s.backlog},
          {"idle_timeout", s.idle_timeout_s},
          {"worker_args", s.worker_args},
          {"queues", s.queues},
          {"resources", resources},
          {"backend_args", s.backend_args},
          {"paused", q.paused},
          {"pause_reason", text_or_null(q.pause_reason)},
          {"last_error", text_or_null(q.last_error)},
          {"failures_in_row", q.failures_in_row},
          {"submits", q.submits},
          {"failures", q.failures},
          {"access_file", q.access_file},
          {"workers", workers},
          {"allocations", allocations}};
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

nlohmann::json LockJson(const GateInfo& l) {
  return {{"name", l.name},
          {"mode", l.mode ? nlohmann::json(LockModeName(*l.mode)) : nlohmann::json(nullptr)},
          {"holders", HolderIds(l)},
          {"held", l.held},
          {"waiting", l.waiting}};
}

nlohmann::json JobJson(const JobInfo& j) {
  nlohmann::json o = {{"id", FormatJobId(j.job)}, {"age", j.age},
                      {"tasks", j.tasks},         {"ok", j.ok},
                      {"failed", j.failed},       {"cancelled", j.cancelled},
                      {"running", j.running},     {"queued", j.queued},
                      {"delayed", j.delayed},     {"waiting", j.waiting},
                      {"command", j.label}};
  o["finished"] = j.finished_age >= 0;
  const uint32_t done = j.ok + j.failed + j.cancelled;
  if (j.finished_age < 0 && done > 0 && j.age > 0)
    o["eta"] = (j.tasks - done) * j.age / done;  // seconds, at the rate so far
  return o;
}

nlohmann::json EventJson(const Event& e, double wall_offset) {
  nlohmann::json j = {
      {"seq", e.seq}, {"time", e.at + wall_offset}, {"event", EventKindName(e.kind)}};
  switch (e.kind) {
    case Event::Kind::kJobSubmitted:
      j["job"] = FormatJobId(e.task.job);
      j["tasks"] = e.count;
      break;
    case Event::Kind::kTaskStarted:
      j["id"] = FormatTaskId(e.task);
      j["kind"] = KindNameAt(e.task_kind);
      j["attempt"] = e.count;
      j["worker"] = e.worker;
      break;
    case Event::Kind::kTaskEnded:
      j["id"] = FormatTaskId(e.task);
      j["kind"] = KindNameAt(e.task_kind);
      j["status"] = StatusName(e.status);
      j["attempt"] = e.count;
      j["worker"] = e.worker ? nlohmann::json(e.worker) : nlohmann::json(nullptr);
      break;
    case Event::Kind::kWorkerJoined:
    case Event::Kind::kWorkerLeft:
      j["worker"] = e.worker;
      j["host"] = e.host;
      if (e.kind == Event::Kind::kWorkerLeft) j["lost"] = e.status == TaskStatus::kWorkerLost;
      break;
  }
  return j;
}

nlohmann::json TaskRowJson(uint64_t job, const TaskRow& r) {
  std::vector<std::string> after;
  for (const IdRef& a : r.after)
    after.push_back(a.index ? FormatTaskId({a.job, *a.index}) : FormatJobId(a.job));
  nlohmann::json j = {{"id", FormatTaskId({job, r.index})},
                      {"index", r.index},
                      {"state", StateName(r.state)},
                      {"status", r.status ? nlohmann::json(StatusName(*r.status)) : nullptr},
                      {"attempts", r.attempt},
                      {"worker", r.worker ? nlohmann::json(r.worker) : nullptr},
                      {"started", Time(r.started)},
                      {"finished", Time(r.finished)},
                      {"command", r.label},
                      {"after", after}};
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

}  // namespace orq

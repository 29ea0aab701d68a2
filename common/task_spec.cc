#include "common/task_spec.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "common/id_ref.h"

namespace orq {
namespace {

// A task file's or task's fault: the one sentence that names the line and field.
Error Malformed(std::string sentence) { return {ErrorCode::kBadRequest, std::move(sentence)}; }

using nlohmann::json;

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

// What a number field may be.
struct NumberField {
  const char* name;
  bool required = false;   // else a missing field leaves `out` as it was
  bool allow_zero = true;  // else it must be more than zero
};
// Reads a non-negative number into `out`; the error names the field.
Expected<void> ReadNumber(const json& obj, const NumberField& field, double& out) {
  auto it = obj.find(field.name);
  if (it == obj.end()) {
    if (field.required) return Fault("missing field " + Quote(field.name));
    return {};
  }
  if (!it->is_number())
    return Fault("field " + Quote(field.name) + " must be a number, not " + it->type_name());
  double v = it->get<double>();
  if (!std::isfinite(v) || v < 0 || (!field.allow_zero && v == 0))
    return Fault("field " + Quote(field.name) + " must be " +
                 (field.allow_zero ? "zero or more" : "more than zero") + ", not " + it->dump());
  out = v;
  return {};
}

template <typename T> struct KindTag { using type = T; };
// Calls f(KindTag<T>{}) for each kind T of TaskBody, in index order.
template <typename F, size_t... I> void ForEachKind(F&& f, std::index_sequence<I...>) {
  (f(KindTag<std::variant_alternative_t<I, TaskBody>>{}), ...);
}
template <typename F> void ForEachKind(F&& f) {
  ForEachKind(f, std::make_index_sequence<std::variant_size_v<TaskBody>>{});
}

// The parser's table of kinds, made from TaskBody: a new kind is in it the moment it is added.
struct Kind {
  std::string_view name;
  std::vector<std::string_view> fields;  // its own, besides the shared ones
  Expected<void> (*parse)(const json& object, TaskBody& body);
};
const std::vector<Kind>& Kinds() {
  static const std::vector<Kind> kinds = [] {
    std::vector<Kind> table;
    ForEachKind([&](auto tag) {
      using T = typename decltype(tag)::type;
      table.push_back({T::kName,
                       {T::kFields.begin(), T::kFields.end()},
                       [](const json& object, TaskBody& body) -> Expected<void> {
                         T task;
                         if (auto parsed = T::Parse(object, task); !parsed.ok()) return parsed;
                         body = std::move(task);
                         return {};
                       }});
    });
    return table;
  }();
  return kinds;
}

constexpr std::array<std::string_view, 16> kSharedFields = {
    "kind",          "delay",  "timeout", "priority",    "attempts", "retries",
    "retry_backoff", "name",   "after",   "after_any",   "cpus",     "resources",
    "queue",         "limits", "locks",   "time_request"};

Expected<void> ValueSize(const std::string& json_text) {
  if (json_text.size() <= kMaxValueBytes) return {};
  return Fault("the task's value is " + std::to_string(json_text.size()) + " bytes; the limit is " +
               std::to_string(kMaxValueBytes));
}

std::string Bad(const char* field, const char* what, double v) {
  return "field " + Quote(field) + " must be " + what + ", not " + json(v).dump();
}

}  // namespace

// --- each kind: its fields in a task file, and its checks ---

Expected<void> SleepTask::Parse(const json& obj, SleepTask& out) {
  if (auto error = ReadNumber(obj, {.name = "seconds", .required = true}, out.seconds); !error.ok())
    return error;
  if (auto it = obj.find("result"); it != obj.end()) out.result = it->dump();
  return {};
}
Expected<void> SleepTask::Validate() const {
  if (!std::isfinite(seconds) || seconds < 0) return Fault(Bad("seconds", "zero or more", seconds));
  return ValueSize(result);
}

Expected<void> EchoTask::Parse(const json& obj, EchoTask& out) {
  auto it = obj.find("value");
  if (it == obj.end()) return Fault("missing field 'value'");
  out.value = it->dump();
  return {};
}
Expected<void> EchoTask::Validate() const { return ValueSize(value); }

Expected<void> CpuTask::Parse(const json& obj, CpuTask& out) {
  return ReadNumber(obj, {.name = "ms", .required = true}, out.ms);
}
Expected<void> CpuTask::Validate() const {
  if (!std::isfinite(ms) || ms < 0) return Fault(Bad("ms", "zero or more", ms));
  return {};
}

Expected<void> PythonTask::Parse(const json& obj, PythonTask& out) {
  Function fn;
  for (auto [field, into, required] :
       {std::tuple{"fn", &fn.pickled, true}, std::tuple{"args", &out.args, true},
        std::tuple{"function", &fn.name, false}, std::tuple{"python", &fn.python, false}}) {
    auto it = obj.find(field);
    if (it == obj.end()) {
      if (required) return Fault("missing field " + Quote(field));
      continue;
    }
    if (!it->is_string()) return Fault("field " + Quote(field) + " must be a string");
    *into = it->get<std::string>();
  }
  out.fn = std::make_shared<const Function>(std::move(fn));
  return {};
}
Expected<void> PythonTask::Validate() const {
  const Function& f = function();
  if (f.pickled.empty()) return Fault("field 'fn' must not be empty");
  if (args.empty()) return Fault("field 'args' must not be empty");
  if (f.pickled.size() + args.size() > kMaxCallBytes)
    return Fault("fields 'fn' and 'args' are " + std::to_string(f.pickled.size() + args.size()) +
                 " bytes; the limit is " + std::to_string(kMaxCallBytes) +
                 " (pass large data as a file, or as the result of another call)");
  if (f.name.size() > 1024) return Fault("field 'function' is over 1024 bytes");
  if (f.python.size() > kMaxPathBytes)
    return Fault("field 'python' is over " + std::to_string(kMaxPathBytes) + " bytes");
  return {};
}
const PythonTask::Function& PythonTask::function() const {
  static const Function kNone;
  return fn ? *fn : kNone;
}

namespace {
// A shell task's "cwd" (a string) and "env" (an object of strings).
Expected<void> ParsePlace(const json& obj, ShellTask& out) {
  ShellTask::Place place;
  const auto cwd_it = obj.find("cwd"), env_it = obj.find("env");
  if (cwd_it == obj.end() && env_it == obj.end()) return {};
  if (auto it = cwd_it; it != obj.end()) {
    if (!it->is_string() || it->get_ref<const std::string&>().empty())
      return Fault("field 'cwd' must be a directory's path (a string)");
    place.cwd = it->get<std::string>();
  }
  if (auto it = env_it; it != obj.end()) {
    if (!it->is_object())
      return Fault("field 'env' must be an object of strings: {\"NAME\": \"value\"}");
    for (const auto& [name, value] : it->items()) {
      if (name.empty() || name.find('=') != std::string::npos)
        return Fault("field 'env' has the name " + Quote(name) +
                     "; a name is not empty and has no '='");
      if (!value.is_string())
        return Fault("field 'env' item " + Quote(name) + " must be a string, not " +
                     value.type_name());
      place.env.push_back(name + "=" + value.get<std::string>());
    }
  }
  out.place = std::make_shared<const ShellTask::Place>(std::move(place));
  return {};
}
}  // namespace

Expected<void> ShellTask::Parse(const json& obj, ShellTask& out) {
  auto argv_it = obj.find("argv");
  auto cmd_it = obj.find("cmd");
  if ((argv_it == obj.end()) == (cmd_it == obj.end()))
    return Fault("a shell task needs exactly one of 'argv' or 'cmd'");
  if (cmd_it != obj.end()) {
    if (!cmd_it->is_string()) return Fault("field 'cmd' must be a string");
    const auto& cmd = cmd_it->get_ref<const std::string&>();
    if (cmd.empty()) return Fault("field 'cmd' must not be empty");
    out.argv = {"/bin/sh", "-c", cmd};
    return ParsePlace(obj, out);
  }
  if (!argv_it->is_array()) return Fault("field 'argv' must be an array of strings");
  if (argv_it->empty()) return Fault("field 'argv' must not be empty");
  for (size_t i = 0; i < argv_it->size(); ++i) {
    const auto& a = (*argv_it)[i];
    if (!a.is_string())
      return Fault("field 'argv' item " + std::to_string(i) + " must be a string, not " +
                   a.type_name());
    out.argv.push_back(a.get<std::string>());
  }
  if (out.argv[0].empty()) return Fault("field 'argv' item 0 (the program) must not be empty");
  return ParsePlace(obj, out);
}
Expected<void> ShellTask::Validate() const {
  if (argv.empty() || argv[0].empty())
    return Fault("a shell task needs a command: 'argv' must not be empty");
  if (argv.size() > kMaxArgs)
    return Fault("field 'argv' has " + std::to_string(argv.size()) + " items; the limit is " +
                 std::to_string(kMaxArgs));
  size_t bytes = 0;
  for (const auto& a : argv) bytes += a.size() + 1;
  if (bytes > kMaxArgvBytes)
    return Fault("field 'argv' is " + std::to_string(bytes) + " bytes; the limit is " +
                 std::to_string(kMaxArgvBytes));
  if (cwd().size() > kMaxPathBytes)
    return Fault("field 'cwd' is " + std::to_string(cwd().size()) + " bytes; the limit is " +
                 std::to_string(kMaxPathBytes));
  return ValidateEnv(env(), "field 'env'");
}

const std::string& ShellTask::cwd() const {
  static const std::string kNone;
  return place ? place->cwd : kNone;
}
const std::vector<std::string>& ShellTask::env() const {
  static const std::vector<std::string> kNone;
  return place ? place->env : kNone;
}

const std::string* ShellCommand(const std::vector<std::string>& argv) {
  return argv.size() == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" ? &argv[2] : nullptr;
}

void SetEnv(std::vector<std::string>& env, std::string_view entry) {
  const std::string_view name = entry.substr(0, entry.find('=') + 1);  // with its '='
  for (std::string& e : env) {
    if (std::string_view(e).substr(0, name.size()) == name) return void(e.assign(entry));
  }
  env.emplace_back(entry);
}

Expected<void> ValidateEnv(const std::vector<std::string>& env, std::string_view what) {
  size_t bytes = 0;
  for (const std::string& entry : env) {
    const size_t eq = entry.find('=');
    if (eq == 0 || eq == std::string::npos)
      return Fault(std::string(what) + " item " + Quote(entry) + " must be NAME=VALUE");
    if (entry.find('\0') != std::string::npos)
      return Fault(std::string(what) + " item " + Quote(entry.substr(0, eq)) + " holds a NUL byte");
    bytes += entry.size() + 1;
  }
  if (bytes > kMaxEnvBytes)
    return Fault(std::string(what) + " is " + std::to_string(bytes) + " bytes; the limit is " +
                 std::to_string(kMaxEnvBytes));
  return {};
}

// --- what a task needs (Needs) ---

Expected<void> ValidateName(std::string_view name, std::string_view what) {
  constexpr size_t kMaxName = 64;
  const bool ok =
      !name.empty() && name.size() <= kMaxName && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
      });
  if (ok) return {};
  return Fault(std::string(what) + " " + Quote(name) +
               " is not a name: use 1 to 64 letters, digits, '_', '-' or '.'");
}

namespace {

// A JSON string, or an array of them: "a" or ["a", "b"].
Expected<void> StringList(const json& obj, const char* field, std::vector<std::string>& out) {
  auto it = obj.find(field);
  if (it == obj.end()) return {};
  auto bad = [&] {
    return Fault("field " + Quote(field) + " must be a string or an array of strings");
  };
  if (it->is_string()) {
    out.push_back(it->get<std::string>());
    return {};
  }
  if (!it->is_array()) return bad();
  for (const auto& item : *it) {
    if (!item.is_string()) return bad();
    out.push_back(item.get<std::string>());
  }
  return {};
}

Expected<void> Count(const json& value, const std::string& what, uint32_t& out) {
  if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > 1000000)
    return Fault(what + " must be a whole number from 1 to 1000000, not " + value.dump());
  out = static_cast<uint32_t>(value.get<int64_t>());
  return {};
}

// The shared fields of issue 10: name, after, after_any, cpus, resources, queue, limits, locks.
Expected<void> ParseNeeds(const json& obj, TaskSpec& spec, std::vector<NamedDependency>* named) {
  Needs needs;
  bool any_field = false;
  if (auto it = obj.find("name"); it != obj.end()) {
    if (!it->is_string()) return Fault("field 'name' must be a string");
    needs.name = it->get<std::string>();
    if (ParseId(needs.name))
      return Fault("field 'name' " + Quote(needs.name) +
                   " looks like a task id; pick another name");
    any_field = true;
  }
  for (const bool any : {false, true}) {
    const char* field = any ? "after_any" : "after";
    std::vector<std::string> refs;
    if (auto error = StringList(obj, field, refs); !error.ok()) return error;
    for (const std::string& ref : refs) {
      any_field = true;
      if (auto id = ParseId(ref)) {
        if (id->job == 0)
          return Fault("field " + Quote(field) + " names j0; jobs are numbered from j1");
        needs.after.push_back({id->job, id->index.value_or(0), !id->index, any});
        continue;
      }
      if (auto error = ValidateName(ref, "field '" + std::string(field) + "' item"); !error.ok())
        return error;
      if (!named)
        return Fault("field " + Quote(field) + " names the task " + Quote(ref) +
                     "; names are known only within a task file (give an id such as j7 or j7.2)");
      named->push_back({ref, any});
    }
  }
  if (auto it = obj.find("cpus"); it != obj.end()) {
    if (auto error = Count(*it, "field 'cpus'", needs.cpus); !error.ok()) return error;
    any_field = true;
  }
  if (auto it = obj.find("resources"); it != obj.end()) {
    if (!it->is_object()) return Fault("field 'resources' must be an object such as {\"gpu\": 1}");
    for (const auto& [name, amount] : it->items()) {
      uint32_t n = 0;
      if (auto error = Count(amount, "field 'resources' item " + Quote(name), n); !error.ok())
        return error;
      if (name == "cpus")
        needs.cpus = n;
      else
        needs.resources.push_back({name, n});
    }
    any_field = true;
  }
  if (auto it = obj.find("queue"); it != obj.end()) {
    if (!it->is_string()) return Fault("field 'queue' must be a string");
    needs.queue = it->get<std::string>();
    any_field = true;
  }
  if (auto error = StringList(obj, "limits", needs.limits); !error.ok()) return error;
  any_field = any_field || !needs.limits.empty();
  if (obj.contains("time_request")) {  // seconds, whole ones kept (a fraction rounds up)
    double seconds = 0;
    if (auto error = ReadNumber(obj, {.name = "time_request", .allow_zero = false}, seconds);
        !error.ok())
      return error;
    if (seconds > kMaxTimeRequest)
      return Fault("field 'time_request' must be at most " + std::to_string(kMaxTimeRequest) +
                   " seconds (a year), not " + json(seconds).dump());
    needs.time_request = static_cast<uint32_t>(std::ceil(seconds));
    any_field = true;
  }
  if (auto it = obj.find("locks"); it != obj.end()) {
    if (!it->is_object())
      return Fault("field 'locks' must be an object such as {\"db\": \"write\"}");
    for (const auto& [name, mode] : it->items()) {
      if (mode != "read" && mode != "write")
        return Fault("field 'locks' item " + Quote(name) + " must be \"read\" or \"write\", not " +
                     mode.dump());
      needs.locks.push_back({name, mode == "read" ? LockMode::kRead : LockMode::kWrite});
    }
    any_field = true;
  }
  if (any_field || (named && !named->empty())) spec.needs = MakeNeeds(std::move(needs));
  return {};
}

}  // namespace

std::shared_ptr<const Needs> MakeNeeds(Needs needs) {
  if (needs.queue == kDefaultQueue) needs.queue.clear();
  std::sort(needs.resources.begin(), needs.resources.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(needs.limits.begin(), needs.limits.end());
  needs.limits.erase(std::unique(needs.limits.begin(), needs.limits.end()), needs.limits.end());
  std::sort(needs.locks.begin(), needs.locks.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return std::make_shared<const Needs>(std::move(needs));
}

const Needs& TaskSpec::need() const {
  static const Needs kNone;
  return needs ? *needs : kNone;
}

bool RunsInContext(const TaskSpec& spec) {
  return std::holds_alternative<ShellTask>(spec.body) ||
         std::holds_alternative<PythonTask>(spec.body);
}

uint32_t Cpus(const TaskSpec& spec) {
  if (spec.needs && spec.needs->cpus > 0) return spec.needs->cpus;
  return std::holds_alternative<ShellTask>(spec.body) ? 1 : 0;
}

namespace {

Expected<void> ValidateNeeds(const Needs& n) {
  if (!n.name.empty()) {
    if (auto error = ValidateName(n.name, "field 'name'"); !error.ok()) return error;
  }
  if (n.after.size() > kMaxTasksPerJob)
    return Fault("field 'after' names " + std::to_string(n.after.size()) + " tasks; the limit is " +
                 std::to_string(kMaxTasksPerJob));
  if (n.cpus > 1000000) return Fault("field 'cpus' must be at most 1000000");
  for (size_t i = 0; i < n.resources.size(); ++i) {
    const ResourceNeed& r = n.resources[i];
    if (auto error = ValidateName(r.name, "field 'resources' item"); !error.ok()) return error;
    if (r.name == "cpus") return Fault("give cpus as field 'cpus', not as a resource");
    if (r.amount < 1 || r.amount > 1000000)
      return Fault("field 'resources' item " + Quote(r.name) + " must be from 1 to 1000000");
    if (i > 0 && n.resources[i - 1].name >= r.name)
      return Fault("field 'resources' names " + Quote(r.name) + " twice (or out of order)");
  }
  if (!n.queue.empty()) {
    if (auto error = ValidateName(n.queue, "field 'queue'"); !error.ok()) return error;
  }
  for (size_t i = 0; i < n.limits.size(); ++i) {
    if (auto error = ValidateName(n.limits[i], "field 'limits' item"); !error.ok()) return error;
    if (i > 0 && n.limits[i - 1] >= n.limits[i])
      return Fault("field 'limits' names " + Quote(n.limits[i]) + " twice (or out of order)");
  }
  for (size_t i = 0; i < n.locks.size(); ++i) {
    if (auto error = ValidateName(n.locks[i].name, "field 'locks' item"); !error.ok()) return error;
    if (n.locks[i].mode != LockMode::kRead && n.locks[i].mode != LockMode::kWrite)
      return Fault("field 'locks' item " + Quote(n.locks[i].name) + " has no mode (read or write)");
    if (i > 0 && n.locks[i - 1].name >= n.locks[i].name)
      return Fault("field 'locks' names " + Quote(n.locks[i].name) + " twice (or out of order)");
  }
  if (n.time_request > kMaxTimeRequest)
    return Fault("field 'time_request' must be at most " + std::to_string(kMaxTimeRequest) +
                 " seconds (a year), not " + std::to_string(n.time_request));
  constexpr size_t kMaxGates = 64;  // limits, locks and resources of one task
  if (n.limits.size() + n.locks.size() + n.resources.size() > kMaxGates)
    return Fault("a task may take at most " + std::to_string(kMaxGates) +
                 " limits, locks and resources together");
  return {};
}

}  // namespace

std::vector<uint32_t> FindCycle(uint32_t size, const std::vector<TaskNeeds>& needs) {
  // Kahn's algorithm on the edges dependency -> dependant within the job; what it cannot remove
  // holds a cycle, found by walking from any of it along its remaining dependencies. Only tasks
  // with own-job dependencies cost memory per task (a job of millions without any costs none).
  const uint32_t n = size;
  std::vector<uint32_t> indegree;  // own-job dependencies not yet removed
  std::vector<std::vector<uint32_t>> dependants;
  std::vector<const Needs*> of;  // each task's needs, by index
  for (const TaskNeeds& t : needs) {
    for (const Dependency& d : t.needs->after) {
      if (d.job != Dependency::kSameJob) continue;
      if (indegree.empty()) indegree.resize(n), dependants.resize(n), of.resize(n);
      dependants[d.index].push_back(t.index);
      ++indegree[t.index];
      of[t.index] = t.needs.get();
    }
  }
  if (indegree.empty()) return {};
  std::vector<uint32_t> ready;
  for (uint32_t i = 0; i < n; ++i) {
    if (indegree[i] == 0) ready.push_back(i);
  }
  uint32_t removed = 0;
  while (!ready.empty()) {
    const uint32_t i = ready.back();
    ready.pop_back();
    ++removed;
    for (uint32_t d : dependants[i]) {
      if (--indegree[d] == 0) ready.push_back(d);
    }
  }
  if (removed == n) return {};
  uint32_t at = 0;
  while (indegree[at] == 0) ++at;
  std::vector<uint32_t> seen(n, UINT32_MAX), path;  // seen: position in path
  while (seen[at] == UINT32_MAX) {
    seen[at] = static_cast<uint32_t>(path.size());
    path.push_back(at);
    for (const Dependency& d : of[at]->after) {
      if (d.job == Dependency::kSameJob && indegree[d.index] > 0) {
        at = d.index;
        break;
      }
    }
  }
  std::vector<uint32_t> cycle(path.begin() + seen[at], path.end());
  std::reverse(cycle.begin(), cycle.end());  // dependency first: a -> b means b runs after a
  std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
  cycle.push_back(cycle.front());
  return cycle;
}

std::vector<uint32_t> FindCycle(const std::vector<TaskSpec>& specs) {
  return FindCycle(static_cast<uint32_t>(specs.size()), NeedsOf(specs));
}

std::vector<TaskNeeds> NeedsOf(const std::vector<TaskSpec>& specs) {
  std::vector<TaskNeeds> needs;
  for (uint32_t i = 0; i < specs.size(); ++i) {
    if (specs[i].needs) needs.push_back({i, specs[i].needs});
  }
  return needs;
}

Expected<void> CheckDependencies(uint32_t size, const std::vector<TaskNeeds>& needs) {
  for (const TaskNeeds& t : needs) {
    for (const Dependency& d : t.needs->after) {
      if (d.job != Dependency::kSameJob) continue;
      if (d.whole_job || d.index >= size || d.index == t.index)
        return Fault("task " + std::to_string(t.index) + ": field 'after' names task " +
                     std::to_string(d.index) + " of its own job, which is not another task of it");
    }
  }
  const std::vector<uint32_t> cycle = FindCycle(size, needs);
  if (cycle.empty()) return {};
  std::string text;
  for (uint32_t i : cycle) text += (text.empty() ? "" : " -> ") + ("task " + std::to_string(i));
  return Fault("the tasks' 'after' make a cycle: " + text);
}

// --- any kind ---

TaskClass ClassOf(const TaskSpec& spec) {
  return std::visit([](const auto& t) { return std::decay_t<decltype(t)>::kClass; }, spec.body);
}

std::string_view KindName(const TaskSpec& spec) {
  return std::visit([](const auto& t) { return std::decay_t<decltype(t)>::kName; }, spec.body);
}

std::string_view KindNameAt(size_t index) {
  const auto& kinds = Kinds();
  return index < kinds.size() ? kinds[index].name : "?";
}

std::string KindNames() {
  std::string names;
  const auto& kinds = Kinds();
  for (size_t i = 0; i < kinds.size(); ++i) {
    if (i > 0) names += i + 1 == kinds.size() ? " or " : ", ";
    names += kinds[i].name;
  }
  return names;
}

Expected<void> ValidateSpec(const TaskSpec& spec) {
  if (!std::isfinite(spec.delay) || spec.delay < 0)
    return Fault(Bad("delay", "zero or more", spec.delay));
  if (!std::isfinite(spec.timeout) || spec.timeout < 0)
    return Fault(Bad("timeout", "zero (no limit) or more", spec.timeout));
  if (spec.attempts < 1) return Fault("field 'attempts' must be at least 1");
  if (!std::isfinite(spec.backoff_base) || spec.backoff_base < 0 ||
      !std::isfinite(spec.backoff_max) || spec.backoff_max < spec.backoff_base)
    return Fault("field 'retry_backoff' must be [BASE, MAX] with 0 <= BASE <= MAX");
  if (spec.needs) {
    if (auto error = ValidateNeeds(*spec.needs); !error.ok()) return error;
  }
  return std::visit([](const auto& t) { return t.Validate(); }, spec.body);
}

Expected<TaskSpec> ParseTaskJson(std::string_view line, std::string_view where,
                                 std::vector<NamedDependency>* named) {
  auto fail = [&](const std::string& msg) { return Malformed(std::string(where) + ": " + msg); };
  json obj;
  try {
    obj = json::parse(line);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for huge numbers
    std::string what = e.what();
    auto pos = what.find("] ");
    return fail("malformed JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2)));
  }
  if (!obj.is_object())
    return fail("a task must be a JSON object, not " + std::string(obj.type_name()));

  auto kind_it = obj.find("kind");
  if (kind_it == obj.end()) return fail("missing field 'kind' (" + KindNames() + ")");
  if (!kind_it->is_string()) return fail("field 'kind' must be a string");
  const std::string& name = kind_it->get_ref<const std::string&>();
  const auto& kinds = Kinds();
  auto kind =
      std::find_if(kinds.begin(), kinds.end(), [&](const Kind& k) { return k.name == name; });
  if (kind == kinds.end())
    return fail("unknown kind " + Quote(name) + " (expected " + KindNames() + ")");
  bool shared = false;  // a field beyond "kind" that any kind of task may have
  for (const auto& [key, unused] : obj.items()) {
    if (key != "kind" &&
        std::find(kSharedFields.begin(), kSharedFields.end(), key) != kSharedFields.end()) {
      shared = true;
    } else if (std::find(kind->fields.begin(), kind->fields.end(), key) == kind->fields.end() &&
               key != "kind") {
      return fail("unknown field " + Quote(key) + " for a " + name + " task");
    }
  }

  TaskSpec spec;
  if (!shared) {  // the common case of a big file: its kind's fields only, none to look up
    if (auto body = kind->parse(obj, spec.body); !body.ok()) return fail(body.error().sentence);
    if (auto invalid = ValidateSpec(spec); !invalid.ok()) return fail(invalid.error().sentence);
    return spec;
  }
  if (auto error = ReadNumber(obj, {.name = "delay"}, spec.delay); !error.ok())
    return fail(error.error().sentence);
  if (auto error = ReadNumber(obj, {.name = "timeout", .allow_zero = false}, spec.timeout);
      !error.ok())
    return fail(error.error().sentence);
  if (auto it = obj.find("priority"); it != obj.end()) {
    if (!it->is_number_integer()) return fail("field 'priority' must be an integer");
    auto p = it->get<int64_t>();
    if (p < INT32_MIN || p > INT32_MAX) return fail("field 'priority' is out of range");
    spec.priority = static_cast<int32_t>(p);
  }
  for (auto [field, out, min] :
       {std::tuple{"attempts", &spec.attempts, 1}, std::tuple{"retries", &spec.retries, 0}}) {
    auto it = obj.find(field);
    if (it == obj.end()) continue;
    if (!it->is_number_integer() || it->get<int64_t>() < min || it->get<int64_t>() > 1000000)
      return fail("field " + Quote(field) + " must be an integer of at least " +
                  std::to_string(min));
    *out = static_cast<uint32_t>(it->get<int64_t>());
  }
  if (auto it = obj.find("retry_backoff"); it != obj.end()) {
    if (!it->is_array() || it->size() != 2 || !(*it)[0].is_number() || !(*it)[1].is_number())
      return fail("field 'retry_backoff' must be [BASE, MAX] in seconds");
    spec.backoff_base = (*it)[0].get<double>();
    spec.backoff_max = (*it)[1].get<double>();
  }
  if (auto needs_error = ParseNeeds(obj, spec, named); !needs_error.ok())
    return fail(needs_error.error().sentence);
  if (auto body = kind->parse(obj, spec.body); !body.ok()) return fail(body.error().sentence);
  if (auto invalid = ValidateSpec(spec); !invalid.ok()) return fail(invalid.error().sentence);
  return spec;
}

Expected<std::vector<TaskSpec>> ParseTaskFile(std::istream& in, std::string_view name) {
  std::vector<TaskSpec> specs;
  std::vector<size_t> lines;                          // each task's line number
  std::vector<std::vector<NamedDependency>> named;    // each task's "after" by name
  std::unordered_map<std::string, uint32_t> by_name;  // task name -> index
  std::string line;
  std::string where;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    where.assign(name).append(":").append(std::to_string(number));
    std::vector<NamedDependency> names;
    auto parsed = ParseTaskJson(line, where, &names);
    if (!parsed) return std::move(parsed.error());
    specs.push_back(std::move(*parsed));
    lines.push_back(number);
    named.push_back(std::move(names));
    if (const std::string& task_name = specs.back().need().name; !task_name.empty()) {
      auto [it, added] = by_name.emplace(task_name, static_cast<uint32_t>(specs.size() - 1));
      if (!added)
        return Malformed(where + ": the name " + Quote(task_name) + " is taken by line " +
                         std::to_string(lines[it->second]));
    }
  }
  if (in.bad()) return Malformed(std::string(name) + ": read error");
  if (specs.empty()) return Malformed(std::string(name) + ": no tasks in the file");
  auto where_is = [&](uint32_t i) { return std::string(name) + ":" + std::to_string(lines[i]); };
  for (uint32_t i = 0; i < specs.size(); ++i) {
    if (named[i].empty()) continue;
    Needs needs = specs[i].need();
    for (const NamedDependency& dependency : named[i]) {
      auto it = by_name.find(dependency.name);
      if (it == by_name.end())
        return Malformed(where_is(i) + ": field '" + (dependency.any ? "after_any" : "after") +
                         "' names " + Quote(dependency.name) + ", which no task in " +
                         std::string(name) + " is called");
      if (it->second == i)
        return Malformed(where_is(i) + ": the task " + Quote(dependency.name) +
                         " cannot run after itself");
      needs.after.push_back({Dependency::kSameJob, it->second, false, dependency.any});
    }
    specs[i].needs = MakeNeeds(std::move(needs));
  }
  if (const std::vector<uint32_t> cycle = FindCycle(specs); !cycle.empty()) {
    std::string text;
    for (uint32_t i : cycle) {
      const std::string& task_name = specs[i].need().name;
      text += (text.empty() ? "" : " -> ") +
              (task_name.empty() ? "line " + std::to_string(lines[i])
                                 : Quote(task_name) + " (line " + std::to_string(lines[i]) + ")");
    }
    return Malformed(std::string(name) + ": the tasks' 'after' make a cycle: " + text);
  }
  return specs;
}

}  // namespace orq

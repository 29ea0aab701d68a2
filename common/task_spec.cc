#include "common/task_spec.h"

#include "common/protocol.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <nlohmann/json.hpp>

namespace orq {
namespace {

using nlohmann::json;

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

// Reads an optional non-negative number; the error names the field.
bool ReadNumber(const json& obj, const char* field, bool required, bool allow_zero, double* out,
                std::string* error) {
  auto it = obj.find(field);
  if (it == obj.end()) {
    if (required) *error = "missing field " + Quote(field);
    return !required;
  }
  if (!it->is_number()) {
    *error = "field " + Quote(field) + " must be a number, not " + it->type_name();
    return false;
  }
  double v = it->get<double>();
  if (!std::isfinite(v) || v < 0 || (!allow_zero && v == 0)) {
    *error = "field " + Quote(field) + " must be " + (allow_zero ? "zero or more" : "more than zero") +
             ", not " + it->dump();
    return false;
  }
  *out = v;
  return true;
}

}  // namespace

TaskClass ClassOf(TaskKind kind) {
  switch (kind) {
    case TaskKind::kSleep:
    case TaskKind::kEcho:
      return TaskClass::kAsync;
    case TaskKind::kCpu:
      return TaskClass::kCpu;
    case TaskKind::kShell:
      return TaskClass::kShell;
  }
  return TaskClass::kAsync;
}

std::string_view KindName(TaskKind kind) {
  switch (kind) {
    case TaskKind::kSleep: return "sleep";
    case TaskKind::kEcho: return "echo";
    case TaskKind::kCpu: return "cpu";
    case TaskKind::kShell: return "shell";
  }
  return "?";
}

std::optional<std::string> ValidateSpec(const TaskSpec& spec) {
  auto bad = [](const char* field, const char* what, double v) {
    return "field " + Quote(field) + " must be " + what + ", not " + json(v).dump();
  };
  if (!std::isfinite(spec.delay) || spec.delay < 0) return bad("delay", "zero or more", spec.delay);
  if (!std::isfinite(spec.timeout) || spec.timeout < 0)
    return bad("timeout", "more than zero", spec.timeout);
  if (spec.attempts < 1) return std::string("field 'attempts' must be at least 1");
  if (!std::isfinite(spec.backoff_base) || spec.backoff_base <= 0 ||
      !std::isfinite(spec.backoff_max) || spec.backoff_max < spec.backoff_base)
    return std::string("field 'retry_backoff' must be [BASE, MAX] with 0 < BASE <= MAX");
  if (spec.value.size() > kMaxValueBytes)
    return "the task's value is " + std::to_string(spec.value.size()) + " bytes; the limit is " +
           std::to_string(kMaxValueBytes);
  switch (spec.kind) {
    case TaskKind::kSleep:
      if (!std::isfinite(spec.seconds) || spec.seconds < 0)
        return bad("seconds", "zero or more", spec.seconds);
      break;
    case TaskKind::kCpu:
      if (!std::isfinite(spec.ms) || spec.ms < 0) return bad("ms", "zero or more", spec.ms);
      break;
    case TaskKind::kShell:
      if (spec.argv.empty() || spec.argv[0].empty())
        return std::string("a shell task needs a command: 'argv' must not be empty");
      if (spec.argv.size() > kMaxArgs)
        return "field 'argv' has " + std::to_string(spec.argv.size()) + " items; the limit is " +
               std::to_string(kMaxArgs);
      {
        size_t bytes = 0;
        for (const auto& a : spec.argv) bytes += a.size() + 1;
        if (bytes > kMaxArgvBytes)
          return "field 'argv' is " + std::to_string(bytes) + " bytes; the limit is " +
                 std::to_string(kMaxArgvBytes);
      }
      break;
    case TaskKind::kEcho:
      break;
  }
  return std::nullopt;
}

std::variant<TaskSpec, SpecError> ParseTaskJson(std::string_view line, std::string_view where) {
  auto fail = [&](const std::string& msg) { return SpecError{std::string(where) + ": " + msg}; };
  json obj;
  try {
    obj = json::parse(line);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for huge numbers
    std::string what = e.what();
    auto pos = what.find("] ");
    return fail("malformed JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2)));
  }
  if (!obj.is_object()) return fail("a task must be a JSON object, not " + std::string(obj.type_name()));

  TaskSpec spec;
  auto kind_it = obj.find("kind");
  if (kind_it == obj.end()) return fail("missing field 'kind' (sleep, echo, cpu or shell)");
  if (!kind_it->is_string()) return fail("field 'kind' must be a string");
  const std::string& kind = kind_it->get_ref<const std::string&>();
  std::vector<std::string_view> allowed = {"kind",     "delay",   "timeout",      "priority",
                                           "attempts", "retries", "retry_backoff"};
  if (kind == "sleep") {
    spec.kind = TaskKind::kSleep;
    allowed.insert(allowed.end(), {"seconds", "result"});
  } else if (kind == "echo") {
    spec.kind = TaskKind::kEcho;
    allowed.push_back("value");
  } else if (kind == "cpu") {
    spec.kind = TaskKind::kCpu;
    allowed.push_back("ms");
  } else if (kind == "shell") {
    spec.kind = TaskKind::kShell;
    allowed.insert(allowed.end(), {"argv", "cmd"});
  } else {
    return fail("unknown kind " + Quote(kind) + " (expected sleep, echo, cpu or shell)");
  }
  for (const auto& [key, unused] : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      return fail("unknown field " + Quote(key) + " for a " + kind + " task");
  }

  std::string error;
  if (!ReadNumber(obj, "delay", false, true, &spec.delay, &error) ||
      !ReadNumber(obj, "timeout", false, false, &spec.timeout, &error))
    return fail(error);
  if (auto it = obj.find("priority"); it != obj.end()) {
    if (!it->is_number_integer()) return fail("field 'priority' must be an integer");
    auto p = it->get<int64_t>();
    if (p < INT32_MIN || p > INT32_MAX) return fail("field 'priority' is out of range");
    spec.priority = static_cast<int32_t>(p);
  }
  for (auto [field, out, min] : {std::tuple{"attempts", &spec.attempts, 1},
                                 std::tuple{"retries", &spec.retries, 0}}) {
    auto it = obj.find(field);
    if (it == obj.end()) continue;
    if (!it->is_number_integer() || it->get<int64_t>() < min || it->get<int64_t>() > 1000000)
      return fail("field " + Quote(field) + " must be an integer of at least " + std::to_string(min));
    *out = static_cast<uint32_t>(it->get<int64_t>());
  }
  if (auto it = obj.find("retry_backoff"); it != obj.end()) {
    if (!it->is_array() || it->size() != 2 || !(*it)[0].is_number() || !(*it)[1].is_number())
      return fail("field 'retry_backoff' must be [BASE, MAX] in seconds");
    spec.backoff_base = (*it)[0].get<double>();
    spec.backoff_max = (*it)[1].get<double>();
  }

  switch (spec.kind) {
    case TaskKind::kSleep:
      if (!ReadNumber(obj, "seconds", true, true, &spec.seconds, &error)) return fail(error);
      if (auto it = obj.find("result"); it != obj.end()) spec.value = it->dump();
      break;
    case TaskKind::kEcho: {
      auto it = obj.find("value");
      if (it == obj.end()) return fail("missing field 'value'");
      spec.value = it->dump();
      break;
    }
    case TaskKind::kCpu:
      if (!ReadNumber(obj, "ms", true, true, &spec.ms, &error)) return fail(error);
      break;
    case TaskKind::kShell: {
      auto argv_it = obj.find("argv");
      auto cmd_it = obj.find("cmd");
      if ((argv_it == obj.end()) == (cmd_it == obj.end()))
        return fail("a shell task needs exactly one of 'argv' or 'cmd'");
      if (cmd_it != obj.end()) {
        if (!cmd_it->is_string()) return fail("field 'cmd' must be a string");
        const auto& cmd = cmd_it->get_ref<const std::string&>();
        if (cmd.empty()) return fail("field 'cmd' must not be empty");
        spec.argv = {"/bin/sh", "-c", cmd};
      } else {
        if (!argv_it->is_array()) return fail("field 'argv' must be an array of strings");
        if (argv_it->empty()) return fail("field 'argv' must not be empty");
        for (size_t i = 0; i < argv_it->size(); ++i) {
          const auto& a = (*argv_it)[i];
          if (!a.is_string())
            return fail("field 'argv' item " + std::to_string(i) + " must be a string, not " +
                        a.type_name());
          spec.argv.push_back(a.get<std::string>());
        }
        if (spec.argv[0].empty()) return fail("field 'argv' item 0 (the program) must not be empty");
      }
      break;
    }
  }
  if (auto error = ValidateSpec(spec)) return fail(*error);
  return spec;
}

std::variant<std::vector<TaskSpec>, SpecError> ParseTaskFile(std::istream& in,
                                                             std::string_view name) {
  std::vector<TaskSpec> specs;
  std::string line;
  std::string where;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    where.assign(name).append(":").append(std::to_string(number));
    auto parsed = ParseTaskJson(line, where);
    if (auto* err = std::get_if<SpecError>(&parsed)) return std::move(*err);
    specs.push_back(std::move(std::get<TaskSpec>(parsed)));
  }
  if (in.bad()) return SpecError{std::string(name) + ": read error"};
  if (specs.empty()) return SpecError{std::string(name) + ": no tasks in the file"};
  return specs;
}

}  // namespace orq

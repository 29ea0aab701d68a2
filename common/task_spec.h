// Task specs: the four task kinds, and the parser for task files (JSON lines) and for the values
// the CLI takes on its command line. The parser refuses a file whole: the first bad line yields one
// sentence naming the line and the field, and no spec at all.
#pragma once

#include <array>
#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace orq {

enum class TaskKind : uint8_t { kSleep = 0, kEcho = 1, kCpu = 2, kShell = 3 };

// Where a kind runs on a worker, and so which of the worker's slots it takes: sleep and echo
// on the async loop (thousands of slots), cpu on the thread pool, shell as child processes.
enum class TaskClass : uint8_t { kAsync = 0, kCpu = 1, kShell = 2 };
inline constexpr size_t kTaskClassCount = 3;
using Slots = std::array<uint32_t, kTaskClassCount>;

TaskClass ClassOf(TaskKind kind);
std::string_view KindName(TaskKind kind);

struct TaskSpec {
  TaskKind kind = TaskKind::kEcho;
  double seconds = 0;            // sleep: how long
  std::string value;             // sleep: JSON text of the result (empty: the seconds); echo: JSON text
  double ms = 0;                 // cpu: milliseconds of busy work
  std::vector<std::string> argv; // shell: argv (a "cmd" becomes {"/bin/sh", "-c", cmd})
  double delay = 0;              // seconds after submission before the task is eligible
  double timeout = 0;            // seconds the task may run; 0 = no limit
  int32_t priority = 0;          // higher runs first
  uint32_t attempts = 3;         // executions that may be lost with their worker before worker_lost
  uint32_t retries = 0;          // re-runs after the task fails (or times out) on its own
  double backoff_base = 1;       // retry n waits min(max, base * 2^n) s, times a jitter in [0.5, 1]
  double backoff_max = 60;

  friend bool operator==(const TaskSpec&, const TaskSpec&) = default;
};

// A user's mistake, as one sentence ("tasks.jsonl:3: field 'seconds' must be ...").
struct SpecError {
  std::string message;
};

// Parses one JSON object (one line of a task file). `where` prefixes the error ("FILE:LINE").
std::variant<TaskSpec, SpecError> ParseTaskJson(std::string_view line, std::string_view where);

// Parses a whole task file: every non-blank line is a task. All or nothing.
std::variant<std::vector<TaskSpec>, SpecError> ParseTaskFile(std::istream& in,
                                                             std::string_view name);

// Checks the fields every kind shares (delay, timeout, priority) and the kind's own; used for
// specs built from command-line options. Returns the error sentence, or nullopt when valid.
std::optional<std::string> ValidateSpec(const TaskSpec& spec);

}  // namespace orq

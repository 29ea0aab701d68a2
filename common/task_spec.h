// Task specs: what a task runs (one struct per kind, in the closed variant TaskBody) and the fields
// every kind shares (delay, timeout, priority, attempts, retries), with the parser for task files
// (JSON lines) and the check for specs built from command-line options. The parser refuses a file
// whole: the first bad line yields one sentence naming the line and the field, and no spec at all.
//
// Adding a kind (say `http`): write its struct below with kName, kClass, kTimesItself, kFields,
// Parse(), Validate() and Fields(), add it to TaskBody, and follow the compiler. The parser, the
// codec and the broker need nothing more (they are generated from TaskBody); the worker's
// TaskRunner, the one place that knows how each kind runs, fails to build until it runs the new
// one.
#pragma once

#include <array>
#include <cstdint>
#include <istream>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

#include "common/error.h"

namespace orq {

// Bounds of what a spec may hold (bounded input: a peer's spec over one is refused where it is
// validated, with a sentence).
inline constexpr size_t kMaxTasksPerJob = 5'000'000;
inline constexpr size_t kMaxArgvBytes = 128u << 10;  // a shell task's argv, all strings together
inline constexpr size_t kMaxArgs = 4096;             // a shell task's argv entries
inline constexpr size_t kMaxValueBytes = 1u << 20;   // an echo value or a sleep result (JSON)
// A job's environment, or a task's own, all "K=V" strings together: within Linux's limit on what
// execve() takes (argv and environment together, a quarter of the stack limit, 2 MiB by default).
inline constexpr size_t kMaxEnvBytes = 1u << 20;
inline constexpr size_t kMaxPathBytes = 4096;  // a cwd (PATH_MAX)

// Where a kind runs on a worker, and so which of the worker's slots it takes: sleep and echo on
// the async loop (thousands of slots), cpu on the thread pool, shell as child processes.
// python calls on its warm interpreters (as many run at once as it has shell slots; the broker
// sends it a few more, which wait there for an interpreter).
enum class TaskClass : uint8_t { kAsync = 0, kCpu = 1, kShell = 2, kPython = 3 };
inline constexpr size_t kTaskClassCount = 4;
using Slots = std::array<uint32_t, kTaskClassCount>;

// A parse or check fails with its sentence (common/error.h's Fault), without the "FILE:LINE: "
// the parser puts before it.

// sleep: a timer on the worker's loop. Result: `result`, else the seconds.
struct SleepTask {
  static constexpr std::string_view kName = "sleep";
  static constexpr TaskClass kClass = TaskClass::kAsync;
  // The runner enforces its timeout with a timer (its process, if any, does not).
  static constexpr bool kTimesItself = false;
  static constexpr std::array<std::string_view, 2> kFields = {"seconds", "result"};
  double seconds = 0;
  std::string result;  // JSON text; empty: the seconds
  static Expected<void> Parse(const nlohmann::json& object, SleepTask& out);
  Expected<void> Validate() const;
  template <typename Self, typename F> static void Fields(Self& self, F&& f) {
    f(self.seconds), f(self.result);
  }
  friend bool operator==(const SleepTask&, const SleepTask&) = default;
};

// echo: done at once on the loop. Result: `value`.
struct EchoTask {
  static constexpr std::string_view kName = "echo";
  static constexpr TaskClass kClass = TaskClass::kAsync;
  // The runner enforces its timeout with a timer (its process, if any, does not).
  static constexpr bool kTimesItself = false;
  static constexpr std::array<std::string_view, 1> kFields = {"value"};
  std::string value;  // JSON text
  static Expected<void> Parse(const nlohmann::json& object, EchoTask& out);
  Expected<void> Validate() const;
  template <typename Self, typename F> static void Fields(Self& self, F&& f) { f(self.value); }
  friend bool operator==(const EchoTask&, const EchoTask&) = default;
};

// cpu: busy work on the worker's thread pool. Result: the milliseconds.
struct CpuTask {
  static constexpr std::string_view kName = "cpu";
  static constexpr TaskClass kClass = TaskClass::kCpu;
  // The runner enforces its timeout with a timer (its process, if any, does not).
  static constexpr bool kTimesItself = false;
  static constexpr std::array<std::string_view, 1> kFields = {"ms"};
  double ms = 0;
  static Expected<void> Parse(const nlohmann::json& object, CpuTask& out);
  Expected<void> Validate() const;
  template <typename Self, typename F> static void Fields(Self& self, F&& f) { f(self.ms); }
  friend bool operator==(const CpuTask&, const CpuTask&) = default;
};

// shell: a child process in its own process group. Result: its stdout (TaskOutcome::shell).
// It runs in its job's directory with its job's environment (JobContext, common/protocol.h: the
// submitter's), unless its own `cwd` says otherwise; its own `env` is set on top.
struct ShellTask {
  static constexpr std::string_view kName = "shell";
  static constexpr TaskClass kClass = TaskClass::kShell;
  // Its own process enforces its timeout (the runner sets no timer of its own).
  static constexpr bool kTimesItself = true;
  static constexpr std::array<std::string_view, 4> kFields = {"argv", "cmd", "cwd", "env"};
  std::vector<std::string> argv;  // a "cmd" becomes {"/bin/sh", "-c", cmd}
  // Where and with what it runs when the task itself says so. Rare, so kept out of line: every
  // spec of every kind is as large as the largest kind, and a job may hold millions.
  struct Place {
    std::string cwd;               // empty: the job's; relative: to the job's (the submitter's)
    std::vector<std::string> env;  // "K=V", set on top of the job's environment
    friend bool operator==(const Place&, const Place&) = default;
  };
  std::shared_ptr<const Place> place;  // null: the job's directory and environment
  static ShellTask In(std::vector<std::string> argv, std::string cwd,
                      std::vector<std::string> env) {
    return {std::move(argv), std::make_shared<const Place>(Place{std::move(cwd), std::move(env)})};
  }
  const std::string& cwd() const;
  const std::vector<std::string>& env() const;
  static Expected<void> Parse(const nlohmann::json& object, ShellTask& out);
  Expected<void> Validate() const;
  template <typename Self, typename F> static void Fields(Self& self, F&& f) {
    f(self.argv), f(self.place);
  }
  friend bool operator==(const ShellTask& a, const ShellTask& b) {
    return a.argv == b.argv && a.cwd() == b.cwd() && a.env() == b.env();
  }
};

// python: a call of a Python function (the orq Python module's `c.call`, `Executor.submit`), run
// by one of its worker's warm interpreters (worker/python_pool.h), in its job's directory and
// environment as a shell task. Its inputs are the results of the tasks it runs after (`after`, in
// order), which the broker hands over with it. Result: the value (python/orq/serve.py says how).
struct PythonTask {
  static constexpr std::string_view kName = "python";
  static constexpr TaskClass kClass = TaskClass::kPython;
  // The runner enforces its timeout with a timer (which ends the interpreter, not the worker).
  static constexpr bool kTimesItself = false;
  static constexpr std::array<std::string_view, 4> kFields = {"fn", "args", "function", "python"};
  // The function: the same for every call of it in a job, so its tasks share one (the client
  // makes them share it; the codec writes it once per message or window of specs).
  struct Function {
    std::string pickled;  // "fn": base64 of the pickled function; an interpreter unpickles it once
    std::string name;     // "function": its qualified name ("__main__.square"), for people
    std::string python;   // "python": the interpreter the caller runs; empty: python3 (a worker's
                          // --python wins over both)
    friend bool operator==(const Function&, const Function&) = default;
  };
  std::shared_ptr<const Function> fn;  // never null once parsed
  std::string args;                    // "args": base64 of the pickled (args, kwargs)
  const Function& function() const;
  static Expected<void> Parse(const nlohmann::json& object, PythonTask& out);
  Expected<void> Validate() const;
  template <typename Self, typename F> static void Fields(Self& self, F&& f) {
    f(self.fn), f(self.args);
  }
  friend bool operator==(const PythonTask& a, const PythonTask& b) {
    return a.function() == b.function() && a.args == b.args;
  }
};
// The largest pickled call a python task may carry, and the largest pickled value (a result, so
// also an input) a call may return: above it the call fails with a sentence saying so. (A remote
// worker's messages to the broker are at most 4 MiB: a value at the limit, base64, and a MiB of
// each output stream fit.)
inline constexpr size_t kMaxCallBytes = 8u << 20;
inline constexpr size_t kMaxPythonValueBytes = 1u << 20;
// The most a python task's inputs (the results of the calls it runs after) may weigh together,
// and a message of assignments to one worker: a call over it fails with a sentence, a message is
// split, so what the broker sends a worker stays far below kMaxMessageBytes.
inline constexpr size_t kMaxCallInputBytes = 64u << 20;

// What a task runs. The index of each alternative is on the wire and in the journal: append new
// kinds, never reorder.
using TaskBody = std::variant<SleepTask, EchoTask, CpuTask, ShellTask, PythonTask>;
inline constexpr size_t kTaskKindCount = std::variant_size_v<TaskBody>;

// --- What a task needs before it may start: coordination across the cluster (issue 10) ---

// A task it runs after: one task ("j4.2"), every task of a job ("j3"), or a task of its own job
// (a name in its task file, which the parser turns into that task's index).
struct Dependency {
  static constexpr uint64_t kSameJob = 0;
  uint64_t job = kSameJob;
  uint32_t index = 0;
  bool whole_job = false;
  bool any = false;  // after_any: however it ended (Slurm's afterany); else it must end ok
  friend bool operator==(const Dependency&, const Dependency&) = default;
};

// A readers-writer lock a task holds while it runs: readers share it, a writer holds it alone.
enum class LockMode : uint8_t { kRead = 0, kWrite = 1 };
constexpr const char* LockModeName(LockMode mode) {
  return mode == LockMode::kRead ? "read" : "write";
}
struct LockNeed {
  std::string name;
  LockMode mode = LockMode::kRead;
  friend bool operator==(const LockNeed&, const LockNeed&) = default;
};
// Units of a resource a worker declares (orq worker --resources gpu=2).
struct ResourceNeed {
  std::string name;
  uint32_t amount = 1;
  friend bool operator==(const ResourceNeed&, const ResourceNeed&) = default;
};

// Everything but the kind's own fields that decides when and where a task may start. Few tasks
// have any, so a spec holds it out of line (null: none): every spec stays small.
struct Needs {
  std::string name;               // its name in its task file, for people; unique in its job
  std::vector<Dependency> after;  // all must have ended (ok, unless `any`) before it starts
  uint32_t cpus = 0;              // of its worker's cpus; 0: the kind's default (DefaultCpus)
  // Whole seconds the task needs to run: a worker that has less time left (its allocation ends
  // sooner) is not given it. 0: no need said. (Beside cpus, in what was padding: a job's tasks
  // with needs keep them in memory.)
  uint32_t time_request = 0;
  std::vector<ResourceNeed> resources;  // other than cpus; sorted by name, each once
  std::string queue;                    // empty: the default queue
  std::vector<std::string> limits;      // semaphores (orq limit set) it takes; sorted, each once
  std::vector<LockNeed> locks;          // sorted by name, each once
  friend bool operator==(const Needs&, const Needs&) = default;
};

// The longest time request a task may make, in seconds (a year).
inline constexpr uint32_t kMaxTimeRequest = 366 * 86400;

// Names of queues, limits, locks, resources and tasks: letters, digits, '_', '-', '.'; at most
// 64 characters. Returns the sentence when `name` is not one.
Expected<void> ValidateName(std::string_view name, std::string_view what);

// The queue of tasks that name none; a worker serves it when its --queues name it (or when it
// serves every queue).
inline constexpr std::string_view kDefaultQueue = "default";

// Needs as a spec holds them: limits, locks and resources sorted by name, limits each once, and
// the default queue as "".
std::shared_ptr<const Needs> MakeNeeds(Needs needs);

struct TaskSpec {
  TaskBody body;            // what to run
  double delay = 0;         // seconds after submission before the task is eligible
  double timeout = 0;       // seconds the task may run; 0 = no limit
  int32_t priority = 0;     // higher runs first
  uint32_t attempts = 3;    // executions that may be lost with their worker before worker_lost
  uint32_t retries = 0;     // re-runs after the task fails (or times out) on its own
  double backoff_base = 1;  // retry n waits min(MAX, BASE * 2^(n-1)) s, times [0.5, 1); 0: none
  double backoff_max = 60;
  std::shared_ptr<const Needs> needs;  // null: none (no dependency, lock, limit, resource...)

  // The task's needs, or an empty set.
  const Needs& need() const;
  friend bool operator==(const TaskSpec& a, const TaskSpec& b) {
    return std::tie(a.body, a.delay, a.timeout, a.priority, a.attempts, a.retries, a.backoff_base,
                    a.backoff_max) == std::tie(b.body, b.delay, b.timeout, b.priority, b.attempts,
                                               b.retries, b.backoff_base, b.backoff_max) &&
           a.need() == b.need();
  }
};

// The cpus a task takes of its worker's: what it asked for, else 1 for a shell task (a process)
// and none for the kinds that run on the worker's own loop, pool and interpreters.
uint32_t Cpus(const TaskSpec& spec);

TaskClass ClassOf(const TaskSpec& spec);
// Whether it runs as a process in its job's directory and environment (shell, python): then its
// job's context goes to the broker with it and to its worker.
bool RunsInContext(const TaskSpec& spec);
std::string_view KindName(const TaskSpec& spec);
// The name of the kind of TaskBody's alternative `index` ("?" past the last).
std::string_view KindNameAt(size_t index);
// "sleep, echo, cpu or shell": every kind's name, for sentences.
std::string KindNames();

// A dependency named by a task's name in its file ("after": ["a1"]), before the file is read
// whole and the name becomes an index.
struct NamedDependency {
  std::string name;
  bool any = false;
};

// Parses one JSON object (one line of a task file). `where` prefixes the error ("FILE:LINE").
// Names in "after" go to `named` (ParseTaskFile resolves them); without it they are an error.
// A failure is kBadRequest with the sentence ("tasks.jsonl:3: field 'seconds' must be ...").
Expected<TaskSpec> ParseTaskJson(std::string_view line, std::string_view where,
                                 std::vector<NamedDependency>* named = nullptr);

// Parses a whole task file: every non-blank line is a task. All or nothing: a name in "after" that
// no task has, a name given twice, or a cycle refuses the file, naming the lines.
Expected<std::vector<TaskSpec>> ParseTaskFile(std::istream& in, std::string_view name);

// Checks the fields every kind shares (delay, timeout, retries...) and the kind's own; used for
// specs built from command-line options and on the broker for every submitted spec. Returns the
// error sentence, or nullopt when valid.
Expected<void> ValidateSpec(const TaskSpec& spec);

// A task of a job that has needs, and them: what the job-wide checks read (a job's tasks without
// needs cost them nothing).
struct TaskNeeds {
  uint32_t index = 0;
  std::shared_ptr<const Needs> needs;  // not null
};
// The tasks of `specs` that have needs, in order.
std::vector<TaskNeeds> NeedsOf(const std::vector<TaskSpec>& specs);

// Checks a job's dependencies on its own tasks (a job of `size` tasks; `needs` those that have
// any, in order): each names another task of the job, and they make no cycle. Returns the
// sentence ("a cycle: task 3 -> task 5 -> task 3"), or nullopt.
Expected<void> CheckDependencies(uint32_t size, const std::vector<TaskNeeds>& needs);
// A cycle among the job's own dependencies, as task indices (the first again at the end); empty
// when there is none. Assumes every index is in range. Linear in tasks and dependencies.
std::vector<uint32_t> FindCycle(uint32_t size, const std::vector<TaskNeeds>& needs);
std::vector<uint32_t> FindCycle(const std::vector<TaskSpec>& specs);

// The LINE of a shell task run as {"/bin/sh", "-c", LINE} (a "cmd", --lines, one word with shell
// syntax), else null.
const std::string* ShellCommand(const std::vector<std::string>& argv);

// Sets NAME=VALUE in a "K=V" list, replacing the entry of that name.
void SetEnv(std::vector<std::string>& env, std::string_view entry);

// Checks a "K=V" environment list: every entry has a name (no '=' in it, not empty) and the whole
// fits kMaxEnvBytes. `what` names it in the sentence ("field 'env'", "--env").
Expected<void> ValidateEnv(const std::vector<std::string>& env, std::string_view what);

}  // namespace orq

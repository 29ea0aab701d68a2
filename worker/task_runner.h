// The one place that knows how each task kind runs on a worker:
//   sleep: an Asio timer on the loop (thousands wait at once on one thread)
//   echo:  completes at once on the loop
//   cpu:   busy work on an Asio thread pool of T threads; completion posted back to the loop
//   shell: a child process (common/process.h's Subprocess) with its output captured
//   python: a call on one of the worker's warm interpreters (worker/python_pool.h)
// Every completion, timeout and cancellation is reported through `done` on the loop thread, exactly
// once per started task. Timeouts: a sleep ends early, a shell task's process group gets TERM then
// KILL, a cpu task's result is abandoned (the thread finishes its slice of work, then is free).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>  // before Asio under C++20 with Boost 1.74
#include <vector>

#include "common/protocol.h"
#include "worker/python_pool.h"

namespace orq {

class Subprocess;
struct SubprocessResult;

struct RunnerOptions {
  int threads = 1;
  std::chrono::milliseconds kill_grace{2000};  // TERM -> KILL for shell tasks
  size_t output_limit = kMaxOutputBytes;
  int64_t pid = 0;      // reported as the worker in outcomes
  std::string workdir;  // where shell tasks run; empty: the worker's own directory
  // How long a shell task killed by SIGTERM, SIGINT, SIGHUP or SIGKILL from outside is held before
  // it is reported failed, in case its worker is being stopped by the same hand (then it runs
  // again).
  std::chrono::milliseconds stop_signal_window{500};
  // Where a shell task's output beyond output_limit goes (DIR/j7.2.ATTEMPT.out and .err); empty:
  // it is dropped. `host` is reported with such files.
  std::string spill_dir;
  std::string host;
  PythonPoolOptions python;  // python tasks' interpreters
};

// A shell task's environment: its job's (the submitter's; `own`, the worker's, when the job brings
// none), its own `env` on top, then ORQ_JOB_ID, ORQ_TASK_ID, ORQ_TASK_INDEX, ORQ_ATTEMPT and
// ORQ_SLOT (the worker's shell slot it holds, 0 to slots-1: stable while it runs, for pinning a
// GPU), and PWD=dir when it runs in `dir`.
std::vector<std::string> ShellEnvironment(const Assignment& a, const ShellTask& t, int slot,
                                          const std::vector<std::string>& own,
                                          const std::string& dir);
// Where a task of its job runs: its job's directory, else `own`.
std::string JobDirectory(const Assignment& a, const std::string& own);
// A python call's request to its interpreter (JSON, python/orq/serve.py): the call, its inputs,
// and the variables a shell task would get that differ per task (ORQ_TASK_ID, ORQ_SLOT...).
// `function_id` names its function; "fn" goes only with `send_function`.
std::string PythonRequest(const Assignment& a, const PythonTask& t, int slot,
                          const std::string& function_id, bool send_function, bool forget);
// The id an interpreter knows a function by.
std::string FunctionId(const PythonTask::Function& fn);
// Where it runs: its own `cwd` (relative to its job's), else its job's, else `own`.
std::string ShellDirectory(const Assignment& a, const ShellTask& t, const std::string& own);

class TaskRunner {
 public:
  using Done = std::function<void(TaskOutcome)>;

  TaskRunner(boost::asio::io_context& loop, RunnerOptions options, Done done);
  ~TaskRunner();

  void Start(const Assignment& assignment);
  // Stops a running task; it is reported with status cancelled. Unknown ids are ignored.
  void Cancel(TaskId id);
  // Kills every child and abandons every task, without reporting them (the worker is exiting; the
  // broker runs them again). Also those held after a stop signal (RunnerOptions).
  void KillAll();
  // Reaps exited children; the worker's SIGCHLD handler calls it.
  void ReapChildren();
  // Someone follows this running task's output: Output() sends it from the start. Ignored for a
  // task not running here.
  void Watch(TaskId id);
  // The watched tasks' output since the last call (every watched task once after Watch(), even
  // with nothing new, so a follower hears at once).
  std::vector<OutputMessage> Output();
  bool watching() const { return !watched_.empty(); }
  // Where output over the limit goes (empty: it is dropped).
  const std::string& spill_dir() const { return options_.spill_dir; }
  size_t running() const { return tasks_.size(); }
  size_t python_waiting() const { return python_.waiting(); }  // calls waiting for an interpreter

 private:
  struct Running;
  void Complete(TaskId id, TaskOutcome outcome);
  // A shell task's child is gone: its outcome from how it ended.
  void ShellEnded(TaskId id, SubprocessResult result);
  // A python task's interpreter answered, or ended without answering.
  void PythonEnded(TaskId id, PythonReply reply);
  void Expire(TaskId id, TaskStatus status, std::string error);

  boost::asio::io_context& loop_;
  RunnerOptions options_;
  Done done_;
  // The lowest shell slot number not in use (ORQ_SLOT), marked used; a Running gives it back.
  int TakeSlot();

  boost::asio::thread_pool pool_;
  PythonPool python_;
  std::vector<bool> shell_slots_;  // shell slot numbers in use
  struct Watched {
    size_t out = 0, err = 0;  // bytes of each stream already sent
    bool fresh = true;        // not sent since Watch()
  };
  std::unordered_map<TaskId, Watched, TaskIdHash> watched_;
  std::vector<std::string> own_env_;  // the worker's environment, for jobs that bring none
  std::unordered_map<TaskId, std::unique_ptr<Running>, TaskIdHash> tasks_;  // started, not reported
};

}  // namespace orq

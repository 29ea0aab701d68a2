// The one place that knows how each task kind runs on a worker:
//   sleep: an Asio timer on the loop (thousands wait at once on one thread)
//   echo:  completes at once on the loop
//   cpu:   busy work on an Asio thread pool of T threads; completion posted back to the loop
//   shell: a child process (common/process.h's Subprocess) with its output captured
// Every completion, timeout and cancellation is reported through `done` on the loop thread, exactly
// once per started task. Timeouts: a sleep ends early, a shell task's process group gets TERM then
// KILL, a cpu task's result is abandoned (the thread finishes its slice of work, then is free).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <memory>
#include <unordered_map>
#include <utility>  // before Asio under C++20 with Boost 1.74

#include "common/protocol.h"

namespace orq {

class Subprocess;
struct SubprocessResult;

struct RunnerOptions {
  int threads = 1;
  std::chrono::milliseconds kill_grace{2000};  // TERM -> KILL for shell tasks
  size_t output_limit = kMaxOutputBytes;
  int64_t pid = 0;      // reported as the worker in outcomes
  std::string workdir;  // where shell tasks run; empty: the worker's own directory
  // How long a shell task killed by SIGTERM, SIGINT or SIGHUP from outside is held before it is
  // reported failed, in case its worker is being stopped by the same hand (then it runs again).
  std::chrono::milliseconds stop_signal_window{500};
};

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
  size_t running() const { return tasks_.size(); }

 private:
  struct Running;
  void Complete(TaskId id, TaskOutcome outcome);
  // A shell task's child is gone: its outcome from how it ended.
  void ShellEnded(TaskId id, SubprocessResult result);
  void Expire(TaskId id, TaskStatus status, std::string error);

  boost::asio::io_context& loop_;
  RunnerOptions options_;
  Done done_;
  boost::asio::thread_pool pool_;
  std::unordered_map<TaskId, std::unique_ptr<Running>, TaskIdHash> tasks_;  // started, not reported
};

}  // namespace orq

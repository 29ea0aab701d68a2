// orq's client library: submit tasks to an orq broker from a program and wait for their results as
// futures, as `orq submit` and `orq gather` do from the shell (the orq command links it, and
// reaches its broker through the same connection code).
//
//   orq::Client client = orq::Client::FromEnvironment();   // the broker `orq up` started
//   orq::Job job = client.Submit({{orq::Task::Sleep(1, "\"hello\""), orq::Task::Shell({"date"})}});
//   for (const orq::Outcome& o : client.Gather(job.tasks(), std::chrono::minutes(1)))
//     std::cout << o.id << " " << (o.ok() ? o.result + o.stdout_text : o.error) << "\n";
//
// Thread-safe: every member may be called from any thread. Each Client runs one thread of its own
// that talks to the broker (two DEALER sockets: requests, and the results of its jobs as they
// finish); callbacks (Future::Then) run on that thread and must not block. No call waits without a
// deadline: each blocking call takes a timeout and throws orq::Timeout when it passes; a broker
// that stops answering fails what waits on it with orq::Unreachable within seconds.
//
// Errors are the orq command's (orq/errors.h), orq::Exception with its code (orq::Errc):
// UsageError (a bad task, an unknown id), Unreachable, Refused (a key the broker does not take),
// DiskFull, Timeout.
//
// Versioned: ORQ_CLIENT_API_VERSION is raised whenever this header changes incompatibly.
// Installed by `cmake --install` with a CMake package: find_package(orq) and
// target_link_libraries(app orq::client).
#pragma once

#include <orq/errors.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// 2: Exception::code() is an Errc, not an exit code; 3: Task::After
#define ORQ_CLIENT_API_VERSION 3

namespace orq {

// The library's version and API version, "0.1.0 (api 1)".
ORQ_API std::string ClientVersion();

class Client;
class Future;
namespace detail {
struct FutureState;
struct ClientCore;
}  // namespace detail

// One task, as a line of a task file says it (docs/COORDINATION.md, "Task files"): JSON with its
// "kind" and the kind's fields, and what any task may add ("timeout", "retries", "delay",
// "priority", "queue", "after", "limits", "locks", "resources", ...). Checked when submitted: a
// mistake is a UsageError naming the task and the field.
class ORQ_API Task {
 public:
  // A command: argv[0] is looked up in $PATH. Result: its stdout (Outcome::stdout_text).
  static Task Shell(std::vector<std::string> argv);
  // A shell command line, run by /bin/sh -c.
  static Task Command(const std::string& line);
  // A timer on the worker's loop: `seconds`, then `result_json` (JSON text; empty: the seconds).
  static Task Sleep(double seconds, const std::string& result_json = "");
  // Done at once: its result is `value_json`.
  static Task Echo(const std::string& value_json);
  // `ms` milliseconds of busy work on a worker's thread pool.
  static Task Cpu(double ms);
  // Any task-file line (one JSON object).
  static Task Json(std::string line);

  // Sets a field to a JSON value: With("retries", "2"), With("queue", "\"gpu\"").
  Task& With(const std::string& field, const std::string& value_json);
  Task& Timeout(double seconds);  // the attempt is stopped after this long (status kTimeout)
  Task& Retries(int retries);     // attempts after the first when it fails
  Task& Priority(int priority);   // higher first
  Task& Queue(const std::string& queue);
  // Runs after another task ended ok (else it ends kDependencyFailed without running): the task
  // of `future` (of an earlier job started by this client), the task "j4.2", or task `index` of
  // its own job. Its `after` lists these after the task file's own, in the order given; a python
  // task gets their results as its inputs in that order.
  Task& After(const Future& future);
  Task& After(const std::string& task_id);  // UsageError when it is not a task's id
  Task& AfterIndex(uint32_t index);

  // One task it runs after: a future's, else a task by its id (job 0: of its own job).
  struct AfterRef {
    std::shared_ptr<detail::FutureState> future;
    uint64_t job = 0;
    uint32_t index = 0;
  };
  const std::string& json() const { return json_; }
  const std::vector<AfterRef>& after() const { return after_; }

 private:
  explicit Task(std::string json) : json_(std::move(json)) {}
  std::string json_;
  std::vector<AfterRef> after_;
};

// A job: tasks submitted together (one id, "j7"; its tasks are "j7.0", "j7.1", ...).
struct ORQ_API JobSpec {
  std::vector<Task> tasks;
  // Where its shell tasks run: empty, this process's current directory (as orq submit).
  std::string cwd;
  // "NAME=VALUE" set for its shell tasks on top of this process's environment, which they get as
  // orq submit's do; these (and only these) also travel to workers on other hosts.
  std::vector<std::string> env;
  // Idempotency (orq submit --key): while a job submitted with this key is kept, submitting the
  // same key again returns that job and submits nothing.
  std::string key;
};

// How a task ended; the same names as `orq gather --json` prints.
enum class Status { kOk, kFailed, kTimeout, kCancelled, kWorkerLost, kDependencyFailed };
ORQ_API const char* StatusName(Status status);  // "ok", "failed", "timeout", ...

// The outcome of one task.
struct ORQ_API Outcome {
  std::string id;  // "j7.2"
  uint64_t job = 0;
  uint32_t index = 0;
  Status status = Status::kOk;
  std::string result;  // JSON text: a sleep's, echo's or cpu task's result; empty for shell tasks
  // A shell task that started: its exit code (128+N when signal N killed it), and its output
  // (each stream up to 1 MiB; `truncated` when there was more).
  std::optional<int> exit_code;
  std::string stdout_text, stderr_text;
  bool truncated = false;
  std::string error;  // one sentence when it did not end ok
  uint32_t attempt = 1;
  int64_t worker_pid = 0;
  double started = 0, finished = 0;  // wall-clock seconds since the epoch
  bool ok() const { return status == Status::kOk; }
};

// The outcome of one task, once it has one: a handle that can be copied, waited on from any
// thread, and cancelled. A task that ends badly still has an Outcome (check ok()); get() throws
// only when there will be none: its job was refused (UsageError, DiskFull, Refused), the broker
// was lost (Unreachable), or the deadline passed (Timeout).
class ORQ_API Future {
 public:
  Future() = default;
  // Its task's id ("j7.2"): empty until the broker accepted the job.
  std::string id() const;
  bool ready() const;
  // Waits up to `timeout` for it to be ready; whether it is.
  bool wait_for(std::chrono::milliseconds timeout) const;
  // Its outcome, waiting up to `timeout`; throws as said above.
  Outcome get(std::chrono::milliseconds timeout) const;
  // Calls `f` once it is ready (at once, on this thread, when it is already), else on the
  // client's thread: `f` must not block, nor call the client's blocking members.
  void Then(std::function<void(const Future&)> f) const;
  // Cancels its task (it stops if it runs; its outcome will say kCancelled). Does not wait.
  void Cancel() const;

  bool valid() const { return state_ != nullptr; }
  explicit Future(std::shared_ptr<detail::FutureState> state) : state_(std::move(state)) {}
  const std::shared_ptr<detail::FutureState>& state() const { return state_; }

 private:
  std::shared_ptr<detail::FutureState> state_;
};

// A job the broker accepted.
class ORQ_API Job {
 public:
  uint64_t number() const { return number_; }
  std::string id() const { return "j" + std::to_string(number_); }
  size_t size() const { return tasks_.size(); }
  const Future& operator[](size_t index) const { return tasks_.at(index); }
  const std::vector<Future>& tasks() const { return tasks_; }
  // The key named a job submitted before: this is that job, and nothing new was submitted.
  bool existing() const { return existing_; }

  Job(uint64_t number, std::vector<Future> tasks, bool existing)
      : number_(number), tasks_(std::move(tasks)), existing_(existing) {}

 private:
  uint64_t number_ = 0;
  std::vector<Future> tasks_;
  bool existing_ = false;
};

// Futures in the order they finish: Next() gives each once.
class ORQ_API Completion {
 public:
  // The next future to finish, waiting up to `timeout`; nullopt when every one was given (or the
  // timeout passed: then remaining() > 0).
  std::optional<Future> Next(std::chrono::milliseconds timeout);
  size_t remaining() const;

  struct State;
  explicit Completion(std::shared_ptr<State> state) : state_(std::move(state)) {}

 private:
  std::shared_ptr<State> state_;
};

// When Client::Wait returns, as asyncio.wait and concurrent.futures.wait.
enum class WaitFor { kFirstCompleted, kFirstException, kAllCompleted };
struct ORQ_API WaitResult {
  std::vector<Future> done, pending;
};

class ORQ_API Client {
 public:
  // The broker `orq up` runs in `home` (empty: $ORQ_HOME, else ~/.orq). Unreachable when none
  // runs there.
  static Client Local(const std::string& home = "");
  // A broker on an ipc:// endpoint.
  static Client Endpoint(const std::string& endpoint);
  // A broker over TCP with CURVE, as a client access file (orq access add --client) says.
  static Client AccessFile(const std::string& path);
  // As the orq command finds its broker: $ORQ_ACCESS (an access file), else $ORQ_ENDPOINT, else
  // the broker running in $ORQ_HOME.
  static Client FromEnvironment();

  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  // Stops the client's thread. Futures still waiting fail with Unreachable; their tasks go on.
  ~Client();

  // Submits a job and returns once the broker accepted it (it is in the broker's journal), with
  // a future per task. Throws UsageError for a bad task (naming it), and the broker's refusal.
  Job Submit(const JobSpec& job, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Submits without waiting: the futures fail with the refusal if the job is refused. Jobs
  // started one after another go to the broker as they are accepted, in order.
  std::vector<Future> Start(const JobSpec& job);

  // Every outcome, in the order of `futures`, waiting up to `timeout` for the last.
  std::vector<Outcome> Gather(const std::vector<Future>& futures,
                              std::chrono::milliseconds timeout);
  // The futures in the order they finish.
  Completion AsCompleted(const std::vector<Future>& futures);
  // Waits until `when` holds (kFirstException: a task did not end ok, or all are done) or
  // `timeout` passes, and says which are done.
  WaitResult Wait(const std::vector<Future>& futures, WaitFor when,
                  std::chrono::milliseconds timeout);

  // Cancels a job's tasks that have not ended; how many were cancelled or asked to stop.
  uint32_t Cancel(const Job& job, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Cancels tasks and jobs by id ("j7", "j7.2"), as orq cancel does.
  uint32_t Cancel(const std::vector<std::string>& ids,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // The broker's state as `orq status --json` prints it (a JSON document).
  std::string StatusJson(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Why a task ("j7.2") is where it is, as `orq explain --json` prints it: {"task", "state",
  // "reasons": [sentences], and for a delayed one "eligible_in" seconds}.
  std::string ExplainJson(const std::string& task_id,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // What a task printed so far on stdout (or stderr), as `orq logs` shows it.
  std::string Logs(const std::string& task_id, bool stderr_stream = false,
                   std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // The broker's pid: it answers.
  int64_t Ping(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  explicit Client(std::shared_ptr<detail::ClientCore> core);

 private:
  std::vector<Future> NewFutures(size_t n,
                                 std::vector<std::shared_ptr<detail::FutureState>>& states);
  std::shared_ptr<detail::ClientCore> core_;
};

}  // namespace orq

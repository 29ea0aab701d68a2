#include "worker/task_runner.h"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/ids.h"
#include "common/overloaded.h"
#include "common/process.h"

namespace asio = boost::asio;

namespace orq {
namespace {

std::chrono::steady_clock::duration Seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

// Whole numbers print as integers: a 2-second sleep returns 2, not 2.0.
std::string NumberJson(double v) {
  if (v == std::floor(v) && std::fabs(v) < 9e15) return std::to_string(static_cast<int64_t>(v));
  return nlohmann::json(v).dump();
}

// Busy work for `ms` milliseconds of this thread's time.
void Spin(double ms) {
  const auto end = std::chrono::steady_clock::now() + Seconds(ms / 1000.0);
  volatile uint64_t sink = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 1000; ++i) sink = sink + i;
  }
}

}  // namespace

std::vector<std::string> ShellEnvironment(const Assignment& a, const ShellTask& t, int slot,
                                          const std::vector<std::string>& own,
                                          const std::string& dir) {
  std::vector<std::string> env = a.context && a.context->env ? *a.context->env : own;
  for (const std::string& e : t.env()) SetEnv(env, e);
  if (!dir.empty()) SetEnv(env, "PWD=" + dir);  // the submitter's PWD names another directory
  const std::string job = FormatJobId(a.id.job);
  SetEnv(env, "ORQ_JOB_ID=" + job);
  SetEnv(env, "ORQ_TASK_ID=" + job + "." + std::to_string(a.id.index));
  SetEnv(env, "ORQ_TASK_INDEX=" + std::to_string(a.id.index));
  SetEnv(env, "ORQ_ATTEMPT=" + std::to_string(a.attempt));
  SetEnv(env, "ORQ_SLOT=" + std::to_string(slot));
  for (const std::string& e : a.env) SetEnv(env, e);  // the resource units it was given
  return env;
}

std::string JobDirectory(const Assignment& a, const std::string& own) {
  return a.context && !a.context->cwd.empty() ? a.context->cwd : own;
}

std::string FunctionId(const PythonTask::Function& fn) {
  return std::to_string(std::hash<std::string>{}(fn.pickled)) + "." +
         std::to_string(fn.pickled.size());
}

std::string PythonRequest(const Assignment& a, const PythonTask& t, int slot,
                          const std::string& function_id, bool send_function, bool forget) {
  const std::string job = FormatJobId(a.id.job);
  nlohmann::json env = {{"ORQ_JOB_ID", job},
                        {"ORQ_TASK_ID", FormatTaskId(a.id)},
                        {"ORQ_TASK_INDEX", std::to_string(a.id.index)},
                        {"ORQ_ATTEMPT", std::to_string(a.attempt)},
                        {"ORQ_SLOT", std::to_string(slot)}};
  for (const std::string& e : a.env) {  // the resource units it was given
    const size_t eq = e.find('=');
    env[e.substr(0, eq)] = eq == std::string::npos ? "" : e.substr(eq + 1);
  }
  nlohmann::json request{{"task", FormatTaskId(a.id)}, {"function", t.function().name},
                         {"fn_id", function_id},       {"args", t.args},
                         {"inputs", a.inputs},         {"env", std::move(env)}};
  if (send_function) request["fn"] = t.function().pickled;
  if (forget) request["forget"] = true;
  return request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string ShellDirectory(const Assignment& a, const ShellTask& t, const std::string& own) {
  const std::string base = JobDirectory(a, own);
  const std::string& cwd = t.cwd();
  if (cwd.empty()) return base;
  if (cwd[0] == '/' || base.empty()) return cwd;
  return base + "/" + cwd;
}

struct TaskRunner::Running {
  explicit Running(asio::io_context& loop) : timer(loop), deadline(loop) {}
  ~Running() {
    if (slots && slot >= 0) (*slots)[static_cast<size_t>(slot)] = false;
  }
  std::vector<bool>* slots = nullptr;  // the runner's shell slots, when this task holds one
  int slot = -1;
  TaskOutcome outcome;                // id, attempt, started filled in at start
  bool cpu = false;                   // a cpu task: its thread cannot be stopped, only abandoned
  asio::steady_timer timer;           // sleep tasks
  asio::steady_timer deadline;        // the task's timeout
  std::shared_ptr<Subprocess> child;  // shell tasks
  uint64_t python_call = 0;           // python tasks: the call's ticket in the PythonPool
  TaskStatus stop_status = TaskStatus::kOk;  // set when a shell task is being stopped
  std::string stop_error;
};

TaskRunner::TaskRunner(asio::io_context& loop, RunnerOptions options, Done done)
    : loop_(loop),
      options_(options),
      done_(std::move(done)),
      pool_(static_cast<size_t>(std::max(1, options.threads))),
      python_(loop, options.python) {
  for (char** e = environ; *e; ++e) own_env_.emplace_back(*e);
}

TaskRunner::~TaskRunner() {
  KillAll();
  pool_.join();
}

void TaskRunner::Start(const Assignment& a) {
  if (tasks_.count(a.id)) return;  // already running: a duplicate assignment changes nothing
  if (auto* echo = std::get_if<EchoTask>(&a.spec.body)) {
    // Done as soon as started: no timers, no entry in tasks_ (the no-op path stays
    // allocation-light).
    TaskOutcome outcome;
    outcome.id = a.id;
    outcome.attempt = a.attempt;
    outcome.worker_pid = options_.pid;
    outcome.started = outcome.finished = WallNow();
    outcome.result = echo->value;
    return done_(std::move(outcome));
  }
  auto running = std::make_unique<Running>(loop_);
  Running& r = *running;
  r.outcome.id = a.id;
  r.outcome.attempt = a.attempt;
  r.outcome.worker_pid = options_.pid;
  r.outcome.started = WallNow();
  r.cpu = ClassOf(a.spec) == TaskClass::kCpu;  // on the thread pool
  tasks_.emplace(a.id, std::move(running));
  const TaskId id = a.id;

  const double timeout = a.spec.timeout;
  const auto* sleep = std::get_if<SleepTask>(&a.spec.body);
  const bool times_itself = std::visit(
      [](const auto& t) { return std::decay_t<decltype(t)>::kTimesItself; }, a.spec.body);
  auto arm_deadline = [this, id, timeout](Running& r) {
    r.deadline.expires_after(Seconds(timeout));
    r.deadline.async_wait([this, id, timeout](const boost::system::error_code& ec) {
      if (ec) return;
      char buf[64];
      std::snprintf(buf, sizeof buf, "timed out after %g s", timeout);
      Expire(id, TaskStatus::kTimeout, buf);
    });
  };
  const bool python = std::holds_alternative<PythonTask>(a.spec.body);
  if (timeout > 0 && !times_itself && !python &&  // a python call's counts once it starts
      !(sleep && sleep->seconds <= timeout)) {    // a shorter sleep ends first
    arm_deadline(r);
  }

  // How each kind runs. No default: a new kind does not compile until it is handled here.
  std::visit(Overloaded{
                 [&](const EchoTask&) {},  // done above
                 [&](const SleepTask& t) {
                   r.timer.expires_after(Seconds(t.seconds));
                   std::string result = t.result.empty() ? NumberJson(t.seconds) : t.result;
                   r.timer.async_wait(
                       [this, id, result = std::move(result)](const boost::system::error_code& ec) {
                         if (ec) return;
                         TaskOutcome outcome;
                         outcome.result = result;
                         Complete(id, std::move(outcome));
                       });
                 },
                 [&](const CpuTask& t) {
                   const double ms = t.ms;
                   asio::post(pool_, [this, id, ms, attempt = a.attempt] {
                     Spin(ms);
                     asio::post(loop_, [this, id, ms, attempt] {
                       auto it = tasks_.find(id);
                       if (it == tasks_.end() || it->second->outcome.attempt != attempt)
                         return;  // abandoned
                       TaskOutcome outcome;
                       outcome.result = NumberJson(ms);
                       Complete(id, std::move(outcome));
                     });
                   });
                 },
                 [&](const ShellTask& t) {
                   r.slots = &shell_slots_;
                   r.slot = TakeSlot();
                   std::string dir = ShellDirectory(a, t, options_.workdir);
                   auto env = ShellEnvironment(a, t, r.slot, own_env_, dir);
                   SubprocessOptions o{t.argv,  std::move(dir),      options_.output_limit,
                                       timeout, options_.kill_grace, std::move(env)};
                   if (!options_.spill_dir.empty())
                     o.spill = options_.spill_dir + "/" + FormatTaskId(a.id) + "." +
                               std::to_string(a.attempt);
                   r.child = Subprocess::Start(loop_, std::move(o), [this, id](SubprocessResult e) {
                     ShellEnded(id, std::move(e));
                   });
                 },
                 [&](const PythonTask& t) {
                   PythonCall call;
                   call.python = t.function().python;
                   call.function_id = FunctionId(t.function());
                   call.cwd = JobDirectory(a, options_.workdir);
                   call.env = a.context && a.context->env ? *a.context->env : own_env_;
                   if (!call.cwd.empty()) SetEnv(call.env, "PWD=" + call.cwd);
                   call.request = [a, t, fid = call.function_id](int slot, bool send, bool forget) {
                     return PythonRequest(a, t, slot, fid, send, forget);
                   };
                   if (timeout > 0)
                     call.started = [this, id, arm_deadline] {
                       if (auto it = tasks_.find(id); it != tasks_.end()) arm_deadline(*it->second);
                     };
                   r.python_call = python_.Call(std::move(call), [this, id](PythonReply reply) {
                     PythonEnded(id, std::move(reply));
                   });
                 },
             },
             a.spec.body);
}

int TaskRunner::TakeSlot() {
  auto free = std::find(shell_slots_.begin(), shell_slots_.end(), false);
  if (free == shell_slots_.end()) free = shell_slots_.insert(shell_slots_.end(), false);
  *free = true;
  return static_cast<int>(free - shell_slots_.begin());
}

void TaskRunner::ShellEnded(TaskId id, SubprocessResult e) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  Running& r = *it->second;
  TaskOutcome outcome;
  outcome.shell = ShellOutput{ShellCode(e.status), std::move(e.stdout_text),
                              std::move(e.stderr_text), e.truncated, nullptr};
  if (!e.stdout_file.empty() || !e.stderr_file.empty())  // spilled: say where
    outcome.shell->more = std::make_shared<const ShellOutput::More>(
        ShellOutput::More{std::move(e.stdout_file), std::move(e.stderr_file), options_.host, {}});
  if (r.stop_status != TaskStatus::kOk) {  // cancelled: that is what happened, whatever the exit
    outcome.status = r.stop_status;
    outcome.error = r.stop_error;
  } else {
    std::visit(Overloaded{
                   [&](const Exited& x) {
                     if (x.code == 0) return;
                     outcome.status = TaskStatus::kFailed;
                     outcome.error = "exit code " + std::to_string(x.code);
                   },
                   [&](const Killed&) {
                     outcome.status = TaskStatus::kFailed;
                     outcome.error = Describe(e.status);
                   },
                   [&](const TimedOut&) {
                     outcome.status = TaskStatus::kTimeout;
                     outcome.error = Describe(e.status);
                   },
                   [&](const NotStarted& n) {
                     outcome.status = TaskStatus::kFailed;
                     outcome.error = n.why;
                   },
               },
               e.status);
  }
  // Killed by a stop signal nobody in orq sent: perhaps its worker is being stopped too (Slurm,
  // systemd and a terminal signal a whole job or group at once, in no set order; scancel of a
  // step KILLs every process of it, the worker perhaps a moment after its task). Held for a
  // moment: if the worker stops meanwhile, KillAll() drops it and the broker runs it again.
  if (const auto* killed = std::get_if<Killed>(&e.status);
      killed && r.stop_status == TaskStatus::kOk &&
      (killed->signal == SIGTERM || killed->signal == SIGINT || killed->signal == SIGHUP ||
       killed->signal == SIGKILL)) {
    r.deadline.expires_after(options_.stop_signal_window);
    r.deadline.async_wait(
        [this, id, outcome = std::move(outcome)](const boost::system::error_code& ec) mutable {
          if (!ec) Complete(id, std::move(outcome));
        });
    return;
  }
  Complete(id, std::move(outcome));
}

void TaskRunner::PythonEnded(TaskId id, PythonReply reply) {
  if (!tasks_.count(id)) return;
  TaskOutcome outcome;
  if (!reply.answered) {
    outcome.status = TaskStatus::kFailed;
    outcome.error = std::move(reply.error);
    return Complete(id, std::move(outcome));
  }
  const auto answer = nlohmann::json::parse(reply.body, nullptr, false);
  if (!answer.is_object() || !answer.contains("ok") || !answer["ok"].is_boolean()) {
    outcome.status = TaskStatus::kFailed;
    outcome.error = "its Python interpreter answered with what is not a reply";
    return Complete(id, std::move(outcome));
  }
  const bool ok = answer["ok"].get<bool>();
  const auto text = [&](const char* field) {
    auto it = answer.find(field);
    std::string s = it != answer.end() && it->is_string() ? it->get<std::string>() : "";
    if (s.size() > options_.output_limit) s.resize(options_.output_limit);
    return s;
  };
  if (auto it = answer.find("result"); it != answer.end()) outcome.result = it->dump();
  outcome.shell = ShellOutput{ok ? 0 : 1, text("stdout"), text("stderr"), false, nullptr};
  if (!ok) {
    outcome.status = TaskStatus::kFailed;
    outcome.error = text("error");
    if (outcome.error.empty()) outcome.error = "the call raised an exception";
  }
  Complete(id, std::move(outcome));
}

void TaskRunner::Complete(TaskId id, TaskOutcome outcome) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  Running& r = *it->second;
  outcome.id = id;
  outcome.attempt = r.outcome.attempt;
  outcome.worker_pid = r.outcome.worker_pid;
  outcome.started = r.outcome.started;
  outcome.finished = WallNow();
  tasks_.erase(it);  // cancels its timers; their handlers see operation_aborted
  done_(std::move(outcome));
}

void TaskRunner::Expire(TaskId id, TaskStatus status, std::string error) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  Running& r = *it->second;
  if (r.child) {
    // Report once the group is gone, so the outcome carries the output so far.
    if (r.stop_status == TaskStatus::kOk) {
      r.stop_status = status;
      r.stop_error = std::move(error);
      r.child->Terminate();
    }
    return;
  }
  TaskOutcome outcome;
  outcome.status = status;
  outcome.error = std::move(error);
  if (r.cpu) outcome.error += " (its thread finishes the work; the result is discarded)";
  if (r.python_call != 0) {
    python_.Abort(r.python_call);  // the interpreter goes with the call; the next one starts anew
    outcome.error += " (its Python interpreter was ended)";
  }
  Complete(id, std::move(outcome));
}

void TaskRunner::Cancel(TaskId id) {
  Expire(id, TaskStatus::kCancelled, "cancelled while running");
}

void TaskRunner::Watch(TaskId id) {
  if (tasks_.count(id)) watched_[id] = Watched{};
}

std::vector<OutputMessage> TaskRunner::Output() {
  std::vector<OutputMessage> out;
  for (auto it = watched_.begin(); it != watched_.end();) {
    auto task = tasks_.find(it->first);
    if (task == tasks_.end()) {  // reported: its outcome carries the rest
      it = watched_.erase(it);
      continue;
    }
    Watched& w = it->second;
    OutputMessage m{it->first, task->second->outcome.attempt, w.out, {}, w.err, {}};
    if (const auto& child = task->second->child) {
      m.out = child->stdout_so_far().substr(std::min(w.out, child->stdout_so_far().size()));
      m.err = child->stderr_so_far().substr(std::min(w.err, child->stderr_so_far().size()));
    }
    if (w.fresh || !m.out.empty() || !m.err.empty()) {
      w.out += m.out.size();
      w.err += m.err.size();
      w.fresh = false;
      out.push_back(std::move(m));
    }
    ++it;
  }
  return out;
}

void TaskRunner::KillAll() {
  for (auto& [id, r] : tasks_) {
    if (r->child) r->child->Kill();
  }
  python_.KillAll();
  tasks_.clear();
  watched_.clear();
}

void TaskRunner::ReapChildren() {
  std::vector<std::shared_ptr<Subprocess>> children;
  for (auto& [id, r] : tasks_) {
    if (r->child) children.push_back(r->child);
  }
  for (auto& child : children) child->Poll();  // Poll may complete (and erase) the task
  python_.Reap();
}

}  // namespace orq

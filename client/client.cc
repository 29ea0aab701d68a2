// The client library (include/orq/client.h): a thread of its own polls two connections to the
// broker, one for requests (one at a time, in order: the broker answers some at once and others
// after its journal's commit, so replies are matched by order only with one in flight) and one
// for the results of the jobs this client submitted (a streamed gather per job, acknowledged
// chunk by chunk). Callers hand it closures through an inbox and wake it with an eventfd.
#include <orq/client.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "client/connection.h"
#include "common/errors.h"
#include "common/ids.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/shapes.h"
#include "common/task_spec.h"
#include "common/words.h"

namespace orq {
namespace detail {

using std::chrono::milliseconds;

struct FutureState {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Outcome> outcome;
  std::exception_ptr error;  // there will be no outcome
  std::vector<std::function<void(const Future&)>> then;
  uint64_t job = 0;  // 0 until the broker accepted its job
  uint32_t index = 0;
  bool cancel_wanted = false;  // Cancel() before its job was accepted
  std::weak_ptr<ClientCore> core;

  bool ready_locked() const { return outcome.has_value() || error != nullptr; }
};

namespace {

// The public Status is TaskStatus, value for value (the wire's stable numbers).
static_assert(static_cast<int>(Status::kOk) == static_cast<int>(TaskStatus::kOk) &&
                  static_cast<int>(Status::kDependencyFailed) ==
                      static_cast<int>(TaskStatus::kDependencyFailed) &&
                  kTaskStatusCount == 6,
              "orq::Status and TaskStatus must match");
Status PublicStatus(TaskStatus status) { return static_cast<Status>(status); }

Outcome PublicOutcome(const TaskOutcome& o) {
  Outcome out;
  out.id = FormatTaskId(o.id);
  out.job = o.id.job;
  out.index = o.id.index;
  out.status = PublicStatus(o.status);
  out.result = o.result;
  if (o.shell) {
    out.exit_code = o.shell->exit_code;
    out.stdout_text = o.shell->stdout_text;
    out.stderr_text = o.shell->stderr_text;
    out.truncated = o.shell->truncated;
  }
  out.error = o.error;
  out.attempt = o.attempt;
  out.worker_pid = o.worker_pid;
  out.started = o.started;
  out.finished = o.finished;
  return out;
}

// Settles a future once (an outcome, or the error there will be none) and runs its callbacks.
void Settle(const std::shared_ptr<FutureState>& state, std::optional<Outcome> outcome,
            std::exception_ptr error) {
  std::vector<std::function<void(const Future&)>> then;
  {
    std::lock_guard lock(state->mu);
    if (state->ready_locked()) return;
    if (outcome)
      state->outcome = std::move(outcome);
    else
      state->error = error;
    then.swap(state->then);
  }
  state->cv.notify_all();
  const Future future(state);
  for (auto& f : then) {
    try {
      f(future);
    } catch (const std::exception& e) {
      Log(std::string("orq client: a future's callback threw: ") + e.what());
    }
  }
}

std::exception_ptr ErrorOf(const ErrorReply& error, const std::string& verb) {
  try {
    Throw(error, verb);
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace

// The client's thread and what only it touches.
inline constexpr milliseconds kStopGrace{2000};

struct ClientCore : std::enable_shared_from_this<ClientCore> {
  using Done = std::function<void(std::optional<Message>, std::exception_ptr)>;
  struct Pending {
    std::variant<Message, SubmitRequest> message;  // a submit may go in parts
    Done done;
    // A submit's tasks that run after futures (task index, what): their ids are known once the
    // jobs before it were accepted, which they are when it is its turn to go.
    std::vector<std::pair<uint32_t, Task::AfterRef>> after;
    std::vector<std::shared_ptr<FutureState>> own;  // its futures (for those of its own job)
  };

  explicit ClientCore(BrokerAddress address)
      : requests_(address), results_(address), wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (wake_ < 0) throw Exception(Errc::kFailed, std::string("eventfd: ") + std::strerror(errno));
    endpoint_ = requests_.endpoint();
  }
  ~ClientCore() {
    if (wake_ >= 0) ::close(wake_);
  }

  void Run() {
    thread_ = std::thread([self = shared_from_this()] { self->Loop(); });
  }
  // Requests already handed over (a cancel, say) still go out, and get their answers for up to
  // kStopGrace; the outcomes still awaited are not waited for.
  void Stop() {
    Post([this] {
      stopping_ = true;
      stop_by_ = Clock::now() + kStopGrace;
    });
    if (thread_.joinable()) thread_.join();
  }

  // Runs `f` on the client's thread.
  void Post(std::function<void()> f) {
    {
      std::lock_guard lock(mu_);
      inbox_.push_back(std::move(f));
    }
    const uint64_t one = 1;
    (void)!::write(wake_, &one, sizeof one);
  }
  bool OnThread() const { return std::this_thread::get_id() == thread_.get_id(); }

  // A request and its reply, waited for up to `timeout` by the calling thread.
  Message Call(Message message, milliseconds timeout, const std::string& verb) {
    if (OnThread())
      throw UsageError(verb +
                       ": a blocking call from a future's callback (it runs on the "
                       "client's thread, which the call would wait for)");
    struct Slot {
      std::mutex mu;
      std::condition_variable cv;
      std::optional<Message> reply;
      std::exception_ptr error;
      bool done = false;
    };
    auto slot = std::make_shared<Slot>();
    Post([this, slot, message = std::move(message)]() mutable {
      Enqueue({std::move(message), [slot](std::optional<Message> reply, std::exception_ptr e) {
                 {
                   std::lock_guard lock(slot->mu);
                   slot->reply = std::move(reply);
                   slot->error = e;
                   slot->done = true;
                 }
                 slot->cv.notify_all();
               }});
    });
    std::unique_lock lock(slot->mu);
    if (!slot->cv.wait_for(lock, timeout, [&] { return slot->done; }))
      throw Timeout(verb + ": the broker at " + endpoint_ + " did not answer within " +
                    std::to_string(timeout.count()) + " ms");
    if (slot->error) std::rethrow_exception(slot->error);
    if (auto* error = std::get_if<ErrorReply>(&*slot->reply)) Throw(*error, verb);
    return std::move(*slot->reply);
  }

  // Hands a job to the thread: its futures are settled from there.
  void StartJob(SubmitRequest request, std::vector<std::shared_ptr<FutureState>> futures,
                std::function<void(const SubmittedReply&)> accepted,
                std::vector<std::pair<uint32_t, Task::AfterRef>> after = {}) {
    Post([this, request = std::move(request), futures = std::move(futures),
          accepted = std::move(accepted), after = std::move(after)]() mutable {
      auto done = [this, futures, accepted](std::optional<Message> reply,
                                            std::exception_ptr e) mutable {
        if (!e && reply) {
          if (auto* error = std::get_if<ErrorReply>(&*reply)) e = ErrorOf(*error, "submit");
        }
        if (e || !reply || !std::holds_alternative<SubmittedReply>(*reply)) {
          if (!e)
            e = std::make_exception_ptr(
                Exception(Errc::kFailed, "submit: the broker sent an unexpected reply"));
          for (auto& f : futures) Settle(f, std::nullopt, e);
          if (accepted) accepted(SubmittedReply{});
          return;
        }
        const auto& submitted = std::get<SubmittedReply>(*reply);
        Accepted(submitted.job, std::move(futures));
        if (accepted) accepted(submitted);
      };
      std::vector<std::shared_ptr<FutureState>> own;
      if (!after.empty()) own = futures;
      Enqueue({std::move(request), std::move(done), std::move(after), std::move(own)});
    });
  }

  void Cancel(const std::shared_ptr<FutureState>& state) {
    Post([this, state] {
      uint64_t job;
      uint32_t index;
      {
        std::lock_guard lock(state->mu);
        if (state->ready_locked()) return;
        if (state->job == 0) {
          state->cancel_wanted = true;  // sent once its job is accepted
          return;
        }
        job = state->job;
        index = state->index;
      }
      SendCancel(job, index);
    });
  }

 private:
  void SendCancel(uint64_t job, uint32_t index) {
    CancelRequest cancel;
    cancel.ids.push_back(IdRef{job, index});
    Enqueue({Message(std::move(cancel)), [](std::optional<Message> reply, std::exception_ptr) {
               if (reply)
                 if (auto* error = std::get_if<ErrorReply>(&*reply))
                   Log("orq client: cancel: " + error->message);
             }});
  }

  void Accepted(uint64_t job, std::vector<std::shared_ptr<FutureState>> futures) {
    auto& live = jobs_[job];
    live.futures.resize(futures.size());
    live.remaining = futures.size();
    for (size_t i = 0; i < futures.size(); ++i) {
      bool cancel = false;
      {
        std::lock_guard lock(futures[i]->mu);
        futures[i]->job = job;
        futures[i]->index = static_cast<uint32_t>(i);
        cancel = futures[i]->cancel_wanted;
      }
      live.futures[i] = std::move(futures[i]);
      if (cancel) SendCancel(job, static_cast<uint32_t>(i));
    }
    SendGather(job);
  }

  void SendGather(uint64_t job) {
    GatherRequest gather;
    gather.ids.push_back(IdRef{job, std::nullopt});
    gather.stream = true;
    results_.Send(gather);
    awaiting_first_.push_back(job);
  }

  void Enqueue(Pending pending) {
    queue_.push_back(std::move(pending));
    SendNext();
  }

  void SendNext() {
    if (in_flight_ || queue_.empty()) return;
    in_flight_ = std::move(queue_.front());
    queue_.pop_front();
    if (auto* submit = std::get_if<SubmitRequest>(&in_flight_->message)) {
      if (auto resolved = ResolveAfter(*submit, in_flight_->after, in_flight_->own);
          !resolved.ok()) {
        auto done = std::move(in_flight_->done);
        in_flight_.reset();
        done(std::nullopt, std::make_exception_ptr(UsageError(resolved.error().sentence)));
        return SendNext();
      }
      requests_.SendSubmit(std::move(*submit));
    } else {
      requests_.Send(std::get<Message>(in_flight_->message));
    }
  }

  // Adds to the tasks' `after` what they run after, now that the jobs of those before it have ids.
  static Expected<void> ResolveAfter(SubmitRequest& request,
                                     const std::vector<std::pair<uint32_t, Task::AfterRef>>& after,
                                     const std::vector<std::shared_ptr<FutureState>>& own) {
    for (const auto& [task, ref] : after) {
      Dependency d{ref.job, ref.index, false, false};
      if (ref.future) {
        auto same = std::find(own.begin(), own.end(), ref.future);
        if (same != own.end()) {
          d = Dependency{Dependency::kSameJob, static_cast<uint32_t>(same - own.begin()), false,
                         false};
        } else {
          std::lock_guard lock(ref.future->mu);
          if (ref.future->job == 0)
            return Fault("task " + std::to_string(task) +
                         " runs after a future whose job was not accepted");
          d = Dependency{ref.future->job, ref.future->index, false, false};
        }
      }
      TaskSpec& spec = request.tasks[task];
      Needs needs = spec.need();
      needs.after.push_back(d);
      spec.needs = MakeNeeds(std::move(needs));
    }
    return {};
  }

  template <typename T> bool AskedFor() const {
    if (!in_flight_) return false;
    auto* m = std::get_if<Message>(&in_flight_->message);
    return m && std::holds_alternative<T>(*m);
  }

  void Reply(Message message) {
    if (!in_flight_) return;  // an answer nobody waits for (from before a lost broker)
    if (auto* chunk = std::get_if<LogChunk>(&message); chunk && AskedFor<LogsRequest>()) {
      logs_ += chunk->text;  // a task's output comes in chunks, the last one final
      if (!chunk->final) return;
      chunk->text = std::move(logs_);
      logs_.clear();
    }
    Pending done = std::move(*in_flight_);
    in_flight_.reset();
    done.done(std::move(message), nullptr);
    SendNext();
  }

  void Results(Message message) {
    if (auto* error = std::get_if<ErrorReply>(&message)) {
      // Only a gather's first answer may be an error: it is for the oldest awaiting one.
      if (awaiting_first_.empty()) return;
      const uint64_t job = awaiting_first_.front();
      awaiting_first_.pop_front();
      FailJob(job, ErrorOf(*error, "gather"));
      return;
    }
    auto* results = std::get_if<ResultsReply>(&message);
    if (!results) return;
    results_.Send(ResultsAck{});
    if (!results->sizes.empty() && !awaiting_first_.empty()) awaiting_first_.pop_front();
    for (const TaskOutcome& o : results->outcomes) {
      auto it = jobs_.find(o.id.job);
      if (it == jobs_.end() || o.id.index >= it->second.futures.size()) continue;
      auto& slot = it->second.futures[o.id.index];
      if (!slot) continue;  // settled already (a gather sent again)
      Settle(slot, PublicOutcome(o), nullptr);
      slot.reset();
      if (--it->second.remaining == 0) jobs_.erase(it);
    }
  }

  void FailJob(uint64_t job, std::exception_ptr e) {
    auto it = jobs_.find(job);
    if (it == jobs_.end()) return;
    for (auto& f : it->second.futures)
      if (f) Settle(f, std::nullopt, e);
    jobs_.erase(it);
  }

  void FailAll(std::exception_ptr e) {
    for (auto& [job, live] : jobs_)
      for (auto& f : live.futures)
        if (f) Settle(f, std::nullopt, e);
    jobs_.clear();
    awaiting_first_.clear();
    if (in_flight_) {
      auto done = std::move(in_flight_->done);
      in_flight_.reset();
      done(std::nullopt, e);
    }
    while (!queue_.empty()) {
      auto done = std::move(queue_.front().done);
      queue_.pop_front();
      done(std::nullopt, e);
    }
  }

  bool Waiting() const { return in_flight_.has_value() || !jobs_.empty(); }

  void Loop() {
    auto next_ping = Clock::now() + kClientPingInterval;
    last_heard_ = Clock::now();
    while (!stopping_ || ((in_flight_ || !queue_.empty()) && Clock::now() < stop_by_)) {
      zmq::pollitem_t items[5] = {{nullptr, wake_, ZMQ_POLLIN, 0},
                                  {requests_.socket().handle(), 0, ZMQ_POLLIN, 0},
                                  {results_.socket().handle(), 0, ZMQ_POLLIN, 0}};
      int n = 3;
      for (Connection* c : {&requests_, &results_})
        if (c->monitor()) items[n++] = {c->monitor()->handle(), 0, ZMQ_POLLIN, 0};
      const auto wait = Waiting() ? std::chrono::duration_cast<milliseconds>(
                                        std::max(next_ping - Clock::now(), Clock::duration(0)))
                                  : milliseconds(-1);
      try {
        zmq::poll(items, n, wait);
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      uint64_t count;
      (void)!::read(wake_, &count, sizeof count);
      std::deque<std::function<void()>> inbox;
      {
        std::lock_guard lock(mu_);
        inbox.swap(inbox_);
      }
      try {
        const bool was_waiting = Waiting();
        for (auto& f : inbox) f();
        if (!was_waiting && Waiting()) {  // the broker's silence counts from now
          last_heard_ = Clock::now();
          next_ping = last_heard_ + kClientPingInterval;
        }
        requests_.CheckHandshakes();
        results_.CheckHandshakes();
        while (auto m = requests_.TryReceive()) {
          last_heard_ = Clock::now();
          if (auto* pong = std::get_if<PongReply>(&*m)) {
            Pong(pong->broker_pid);
            if (!AskedFor<PingRequest>()) continue;
          }
          Reply(std::move(*m));
        }
        while (auto m = results_.TryReceive()) {
          last_heard_ = Clock::now();
          Results(std::move(*m));
        }
        if (Waiting() && Clock::now() >= next_ping) {
          requests_.Send(PingRequest{});
          next_ping = Clock::now() + kClientPingInterval;
        }
        if (Waiting() && Clock::now() - last_heard_ > kClientSilenceLimit)
          throw Unreachable("the broker at " + endpoint_ + " stopped answering");
      } catch (const std::exception&) {
        FailAll(std::current_exception());
        last_heard_ = Clock::now();
      }
    }
    FailAll(std::make_exception_ptr(
        Unreachable("the client was closed before this task's outcome came")));
  }

  // A broker that answers with another pid was restarted: what this client gathered from the
  // old one is asked of the new one (its journal kept the jobs).
  // The request in flight then may never be answered (the old broker may or may not have taken
  // it): it fails, and the next one goes.
  void Pong(int64_t pid) {
    const bool restarted = broker_pid_ != 0 && pid != broker_pid_;
    broker_pid_ = pid;
    if (!restarted) return;
    awaiting_first_.clear();
    for (auto& [job, live] : jobs_) SendGather(job);
    if (in_flight_ && !AskedFor<PingRequest>()) {
      Pending lost = std::move(*in_flight_);
      in_flight_.reset();
      lost.done(std::nullopt, std::make_exception_ptr(Unreachable(
                                  "the broker at " + endpoint_ +
                                  " restarted before it answered (a job submitted then may "
                                  "or may not have been accepted: see orq jobs)")));
      SendNext();
    }
  }

  struct LiveJob {
    std::vector<std::shared_ptr<FutureState>> futures;  // null once settled
    size_t remaining = 0;
  };

  Connection requests_, results_;
  int wake_ = -1;
  std::string endpoint_;
  std::thread thread_;
  std::mutex mu_;
  std::deque<std::function<void()>> inbox_;  // under mu_
  // The client's thread only:
  bool stopping_ = false;
  Clock::time_point stop_by_;
  std::deque<Pending> queue_;
  std::optional<Pending> in_flight_;
  std::unordered_map<uint64_t, LiveJob> jobs_;
  std::deque<uint64_t> awaiting_first_;  // gathers sent, whose first answer has not come
  Clock::time_point last_heard_;
  int64_t broker_pid_ = 0;
  std::string logs_;  // the chunks of the LogsRequest in flight so far
};

}  // namespace detail

using detail::ClientCore;
using detail::FutureState;
using std::chrono::milliseconds;

std::string ClientVersion() {
  return std::string(ORQ_VERSION) + " (api " + std::to_string(ORQ_CLIENT_API_VERSION) + ")";
}

const char* StatusName(Status status) {
  return orq::StatusName(static_cast<TaskStatus>(status)).data();  // (literals: terminated)
}

// --- Task ---

namespace {
Task Made(const nlohmann::json& object) { return Task::Json(object.dump()); }
nlohmann::json ParsedValue(const std::string& json, const std::string& what) {
  auto value = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) throw UsageError(what + " is not JSON: '" + json + "'");
  return value;
}
}  // namespace

Task Task::Shell(std::vector<std::string> argv) {
  return Made({{"kind", "shell"}, {"argv", std::move(argv)}});
}
Task Task::Command(const std::string& line) { return Made({{"kind", "shell"}, {"cmd", line}}); }
Task Task::Sleep(double seconds, const std::string& result_json) {
  nlohmann::json task = {{"kind", "sleep"}, {"seconds", seconds}};
  if (!result_json.empty()) task["result"] = ParsedValue(result_json, "a sleep's result");
  return Made(task);
}
Task Task::Echo(const std::string& value_json) {
  return Made({{"kind", "echo"}, {"value", ParsedValue(value_json, "an echo's value")}});
}
Task Task::Cpu(double ms) { return Made({{"kind", "cpu"}, {"ms", ms}}); }
Task Task::Json(std::string line) { return Task(std::move(line)); }

Task& Task::After(const Future& future) {
  if (!future.valid()) throw UsageError("Task::After: the future is empty");
  after_.push_back({future.state(), 0, 0});
  return *this;
}
Task& Task::After(const std::string& task_id) {
  auto id = ParseId(task_id);
  if (!id || !id->index || id->job == 0)
    throw UsageError("Task::After: '" + task_id + "' is not a task's id (j4.2)");
  after_.push_back({nullptr, id->job, *id->index});
  return *this;
}
Task& Task::AfterIndex(uint32_t index) {
  after_.push_back({nullptr, Dependency::kSameJob, index});
  return *this;
}

Task& Task::With(const std::string& field, const std::string& value_json) {
  nlohmann::json task = ParsedValue(json_, "the task");
  if (!task.is_object()) throw UsageError("the task is not a JSON object: '" + json_ + "'");
  task[field] = ParsedValue(value_json, "field '" + field + "'");
  json_ = task.dump();
  return *this;
}
Task& Task::Timeout(double seconds) { return With("timeout", nlohmann::json(seconds).dump()); }
Task& Task::Retries(int retries) { return With("retries", std::to_string(retries)); }
Task& Task::Priority(int priority) { return With("priority", std::to_string(priority)); }
Task& Task::Queue(const std::string& queue) { return With("queue", nlohmann::json(queue).dump()); }

// --- Future ---

std::string Future::id() const {
  std::lock_guard lock(state_->mu);
  return state_->job ? FormatTaskId({state_->job, state_->index}) : "";
}
bool Future::ready() const {
  std::lock_guard lock(state_->mu);
  return state_->ready_locked();
}
bool Future::wait_for(milliseconds timeout) const {
  std::unique_lock lock(state_->mu);
  return state_->cv.wait_for(lock, timeout, [&] { return state_->ready_locked(); });
}
Outcome Future::get(milliseconds timeout) const {
  std::unique_lock lock(state_->mu);
  if (!state_->cv.wait_for(lock, timeout, [&] { return state_->ready_locked(); }))
    throw orq::Timeout("task " + (state_->job ? FormatTaskId({state_->job, state_->index}) : "") +
                       " did not end within " + std::to_string(timeout.count()) + " ms");
  if (state_->error) std::rethrow_exception(state_->error);
  return *state_->outcome;
}
void Future::Then(std::function<void(const Future&)> f) const {
  {
    std::lock_guard lock(state_->mu);
    if (!state_->ready_locked()) {
      state_->then.push_back(std::move(f));
      return;
    }
  }
  f(*this);
}
void Future::Cancel() const {
  if (auto core = state_->core.lock()) core->Cancel(state_);
}

// --- Completion ---

struct Completion::State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Future> done;
  size_t remaining = 0;  // not yet given by Next()
};

std::optional<Future> Completion::Next(milliseconds timeout) {
  std::unique_lock lock(state_->mu);
  if (state_->remaining == 0) return std::nullopt;
  if (!state_->cv.wait_for(lock, timeout, [&] { return !state_->done.empty(); }))
    return std::nullopt;
  Future f = std::move(state_->done.front());
  state_->done.pop_front();
  --state_->remaining;
  return f;
}
size_t Completion::remaining() const {
  std::lock_guard lock(state_->mu);
  return state_->remaining;
}

// --- Client ---

Client::Client(std::shared_ptr<ClientCore> core) : core_(std::move(core)) { core_->Run(); }
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    if (core_) core_->Stop();
    core_ = std::move(other.core_);
  }
  return *this;
}
Client::~Client() {
  if (core_) core_->Stop();
}

Client Client::Local(const std::string& home) {
  const std::string dir = home.empty() ? OrqHome() : home;
  if (!ReadLivePid(PidFile(dir)))
    throw Unreachable("orq is not running (no broker in " + dir + "); start it with 'orq up'");
  return Client(std::make_shared<ClientCore>(BrokerAddress{DefaultEndpoint(dir), {}, ""}));
}
Client Client::Endpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) != 0)
    throw UsageError("'" + endpoint +
                     "' is not an ipc:// endpoint; a broker over TCP is reached with an access "
                     "file (Client::AccessFile)");
  if (auto problem = IpcEndpointProblem(endpoint); !problem.ok())
    throw UsageError(endpoint + ": " + problem.error().sentence);
  return Client(std::make_shared<ClientCore>(BrokerAddress{endpoint, {}, ""}));
}
Client Client::AccessFile(const std::string& path) {
  ::orq::AccessFile access = ReadAccessFile(path);
  if (access.role != Role::kClient)
    throw UsageError(path + " is a " + std::string(RoleName(access.role)) +
                     " access file; a client needs a client one ('orq access add --client "
                     "FILE' on the broker's host)");
  return Client(std::make_shared<ClientCore>(BrokerAddress{
      access.endpoints.front(),
      CurveClient{access.broker_public_key, access.keys.public_key, access.keys.secret_key},
      path}));
}
Client Client::FromEnvironment() {
  if (const char* access = std::getenv("ORQ_ACCESS"); access && *access) return AccessFile(access);
  if (const char* endpoint = std::getenv("ORQ_ENDPOINT"); endpoint && *endpoint)
    return Endpoint(endpoint);
  return Local();
}

namespace {
std::vector<std::pair<uint32_t, Task::AfterRef>> AfterOf(const JobSpec& job) {
  std::vector<std::pair<uint32_t, Task::AfterRef>> after;
  for (size_t i = 0; i < job.tasks.size(); ++i) {
    for (const Task::AfterRef& ref : job.tasks[i].after())
      after.emplace_back(static_cast<uint32_t>(i), ref);
  }
  return after;
}

SubmitRequest Request(const JobSpec& job) {
  if (job.tasks.empty()) throw UsageError("a job needs at least one task");
  SubmitRequest request;
  request.tasks.reserve(job.tasks.size());
  std::vector<NamedDependency> named;
  bool shell = false;
  for (size_t i = 0; i < job.tasks.size(); ++i) {
    auto spec = ParseTaskJson(job.tasks[i].json(), "task " + std::to_string(i));
    if (!spec) throw UsageError(spec.error().sentence);
    if (auto error = ValidateSpec(*spec); !error.ok())
      throw UsageError("task " + std::to_string(i) + ": " + error.error().sentence);
    shell = shell || RunsInContext(*spec);
    // Calls of one function share it (the codec then writes it once per message).
    if (auto* python = std::get_if<PythonTask>(&spec->body); python && i > 0) {
      if (const auto* last = std::get_if<PythonTask>(&request.tasks.back().body);
          last && last->function() == python->function())
        python->fn = last->fn;
    }
    request.tasks.push_back(std::move(*spec));
  }
  if (shell) request.context = SubmitterContext(job.cwd, job.env, false, false);
  if (job.key.size() > kMaxKeyBytes)
    throw UsageError("a job's key is at most " + std::to_string(kMaxKeyBytes) + " bytes");
  request.key = job.key;
  return request;
}
}  // namespace

std::vector<Future> Client::NewFutures(size_t n,
                                       std::vector<std::shared_ptr<FutureState>>& states) {
  std::vector<Future> futures;
  futures.reserve(n);
  states.resize(n);
  for (auto& s : states) {
    s = std::make_shared<FutureState>();
    s->core = core_;
    futures.emplace_back(s);
  }
  return futures;
}

std::vector<Future> Client::Start(const JobSpec& job) {
  SubmitRequest request = Request(job);
  std::vector<std::shared_ptr<FutureState>> states;
  std::vector<Future> futures = NewFutures(request.tasks.size(), states);
  core_->StartJob(std::move(request), std::move(states), nullptr, AfterOf(job));
  return futures;
}

Job Client::Submit(const JobSpec& spec, milliseconds timeout) {
  if (core_->OnThread()) throw UsageError("submit: a blocking call from a future's callback");
  SubmitRequest request = Request(spec);
  std::vector<std::shared_ptr<FutureState>> states;
  std::vector<Future> futures = NewFutures(request.tasks.size(), states);
  struct Slot {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<SubmittedReply> reply;
  };
  auto slot = std::make_shared<Slot>();
  core_->StartJob(
      std::move(request), states,
      [slot](const SubmittedReply& reply) {
        {
          std::lock_guard lock(slot->mu);
          slot->reply = reply;
        }
        slot->cv.notify_all();
      },
      AfterOf(spec));
  std::unique_lock lock(slot->mu);
  if (!slot->cv.wait_for(lock, timeout, [&] { return slot->reply.has_value(); }))
    throw orq::Timeout("submit: the broker did not accept the job within " +
                       std::to_string(timeout.count()) + " ms");
  if (slot->reply->job == 0) futures.front().get(milliseconds(0));  // rethrows the refusal
  return Job(slot->reply->job, std::move(futures), slot->reply->existing);
}

std::vector<Outcome> Client::Gather(const std::vector<Future>& futures, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::vector<Outcome> outcomes;
  outcomes.reserve(futures.size());
  for (const Future& f : futures) {
    const auto left = std::max(milliseconds(0),
                               std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    outcomes.push_back(f.get(left));
  }
  return outcomes;
}

Completion Client::AsCompleted(const std::vector<Future>& futures) {
  auto state = std::make_shared<Completion::State>();
  state->remaining = futures.size();
  for (const Future& f : futures) {
    f.Then([state](const Future& done) {
      {
        std::lock_guard lock(state->mu);
        state->done.push_back(done);
      }
      state->cv.notify_all();
    });
  }
  return Completion(state);
}

WaitResult Client::Wait(const std::vector<Future>& futures, WaitFor when, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Completion completion = AsCompleted(futures);
  size_t finished = 0;
  for (;;) {
    if (finished == futures.size()) break;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() < 0) break;
    auto next = completion.Next(left);
    if (!next) break;
    ++finished;
    if (when == WaitFor::kFirstCompleted) break;
    if (when == WaitFor::kFirstException) {
      bool bad = true;
      try {
        bad = !next->get(milliseconds(0)).ok();
      } catch (const std::exception&) {
      }
      if (bad) break;
    }
  }
  WaitResult result;
  for (const Future& f : futures) (f.ready() ? result.done : result.pending).push_back(f);
  return result;
}

uint32_t Client::Cancel(const Job& job, milliseconds timeout) {
  return Cancel(std::vector<std::string>{job.id()}, timeout);
}

uint32_t Client::Cancel(const std::vector<std::string>& ids, milliseconds timeout) {
  CancelRequest request;
  for (const std::string& id : ids) {
    auto ref = ParseId(id);
    if (!ref) throw UsageError("'" + id + "' is not a job or task id (j7, j7.2)");
    request.ids.push_back(*ref);
  }
  return std::get<CancelledReply>(core_->Call(std::move(request), timeout, "cancel")).count;
}

std::string Client::ExplainJson(const std::string& task_id, milliseconds timeout) {
  auto id = ParseId(task_id);
  if (!id || !id->index || id->job == 0)
    throw UsageError("explain: '" + task_id + "' is not a task's id (j4.2)");
  auto reply = std::get<ExplainedReply>(
      core_->Call(ExplainRequest{TaskId{id->job, *id->index}}, timeout, "explain"));
  const std::string state(reply.status ? StatusName(*reply.status) : StateName(reply.state));
  nlohmann::json reasons = nlohmann::json::array();
  for (const Reason& reason : reply.reasons) reasons.push_back(Sentence(reason));
  nlohmann::json j{{"task", FormatTaskId(TaskId{id->job, *id->index})},
                   {"state", state},
                   {"reasons", std::move(reasons)}};
  if (reply.eligible_in >= 0) j["eligible_in"] = reply.eligible_in;
  return j.dump();
}

std::string Client::StatusJson(milliseconds timeout) {
  return orq::StatusJson(std::get<StatusReply>(core_->Call(StatusRequest{}, timeout, "status")))
      .dump();
}

std::string Client::Logs(const std::string& task_id, bool stderr_stream, milliseconds timeout) {
  auto ref = ParseId(task_id);
  if (!ref || !ref->index) throw UsageError("'" + task_id + "' is not a task id (j7.2)");
  LogsRequest request;
  request.task = {ref->job, *ref->index};
  request.err = stderr_stream;
  return std::get<LogChunk>(core_->Call(std::move(request), timeout, "logs")).text;
}

int64_t Client::Ping(milliseconds timeout) {
  return std::get<PongReply>(core_->Call(PingRequest{}, timeout, "ping")).broker_pid;
}

}  // namespace orq

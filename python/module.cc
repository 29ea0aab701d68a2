// orq._orq: the Python module's native part, over the C++ client library (include/orq/client.h):
// one implementation of the wire. Python (python/orq/) builds asyncio and concurrent.futures on
// it: start() submits a batch of tasks without waiting, and take() hands over, a batch at a time,
// the outcomes that came since the last call, waiting for them with the GIL released, so a
// thread of the Python client resolves thousands of futures per call. An asyncio loop can read
// the outcomes itself instead (arm(): an eventfd it watches, take_now() when it is readable), one
// thread hop less per result; take() then takes only what the loop left for a grace period.
#include <orq/client.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace py = pybind11;
using std::chrono::milliseconds;

namespace {

class NativeClient {
 public:
  NativeClient(const std::string& access, const std::string& endpoint, const std::string& home)
      : client_(Make(access, endpoint, home)) {}

  // Submits `tasks` (task-file lines) as one job under the caller's number `batch`; their
  // outcomes come out of take() as (batch, index, ...). `after`, when given, holds for each task
  // what it runs after, in order: "j4.2" (a task by its id), "#3" (task 3 of this job) or
  // "b7:2" (task 2 of batch 7, which the caller has not released).
  void Start(uint64_t batch, const std::vector<std::string>& tasks, const std::string& cwd,
             const std::vector<std::string>& env,
             const std::vector<std::vector<std::string>>& after) {
    orq::JobSpec spec;
    spec.tasks.reserve(tasks.size());
    for (const std::string& t : tasks) spec.tasks.push_back(orq::Task::Json(t));
    spec.cwd = cwd;
    spec.env = env;
    if (!after.empty()) {
      std::lock_guard lock(state_->mu);
      for (size_t i = 0; i < after.size() && i < spec.tasks.size(); ++i) {
        for (const std::string& ref : after[i]) AddAfter(spec.tasks[i], ref);
      }
    }
    std::vector<orq::Future> futures = client().Start(spec);
    {
      std::lock_guard lock(state_->mu);
      started_[batch] = futures;
    }
    for (size_t i = 0; i < futures.size(); ++i) {
      futures[i].Then([state = state_, batch, i](const orq::Future& f) {
        bool armed, first;
        {
          std::lock_guard lock(state->mu);
          armed = state->armed;
          first = state->done.empty();
          if (first) state->oldest = std::chrono::steady_clock::now();
          state->done.push_back({batch, static_cast<uint32_t>(i), f});
        }
        if (!armed) return state->cv.notify_one();
        const uint64_t one = 1;
        if (first) (void)!::write(state->wake, &one, sizeof one);  // take() polls meanwhile
      });
    }
  }

  void Cancel(uint64_t batch, uint32_t index) {
    std::lock_guard lock(state_->mu);
    auto it = started_.find(batch);
    if (it != started_.end() && index < it->second.size()) it->second[index].Cancel();
  }

  // The outcomes that came, waiting up to `timeout` seconds for one; None once closed. While a
  // loop is armed it takes only outcomes the loop left for kGrace (a loop busy or closed).
  py::object Take(double timeout) {
    std::deque<Done> done;
    {
      py::gil_scoped_release release;
      using Clock = std::chrono::steady_clock;
      const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(timeout));
      std::unique_lock lock(state_->mu);
      for (;;) {
        if (state_->done.empty() && state_->closed) return py::none();
        const auto now = Clock::now();
        const bool left = now - state_->oldest >= kGrace || state_->closed;
        if (!state_->done.empty() && (!state_->armed || left)) break;
        if (now >= deadline) break;
        state_->cv.wait_until(lock, state_->armed ? std::min(deadline, now + kGrace) : deadline);
      }
      done.swap(state_->done);
    }
    return Items(done);
  }

  // What came, without waiting (the armed loop's reader; it also clears the eventfd).
  py::list TakeNow() {
    uint64_t count;
    (void)!::read(state_->wake, &count, sizeof count);
    std::deque<Done> done;
    {
      std::lock_guard lock(state_->mu);
      done.swap(state_->done);
    }
    return Items(done);
  }

  // An event loop reads the outcomes (true) or take() alone does (false); the eventfd to watch.
  int Arm(bool armed) {
    {
      std::lock_guard lock(state_->mu);
      state_->armed = armed;
    }
    state_->cv.notify_all();
    return state_->wake;
  }

  // The id ("j7.2") of task `index` of a batch, once the broker accepted its job (waiting up to
  // `timeout` seconds for that).
  std::string TaskId(uint64_t batch, uint32_t index, double timeout) {
    orq::Future future;
    {
      std::lock_guard lock(state_->mu);
      auto it = started_.find(batch);
      if (it == started_.end() || index >= it->second.size())
        throw orq::UsageError("task_id: the future is no longer known to the client");
      future = it->second[index];
    }
    py::gil_scoped_release release;
    const auto deadline = std::chrono::steady_clock::now() + Ms(timeout);
    for (;;) {
      if (std::string id = future.id(); !id.empty()) return id;
      if (future.ready()) return future.get(milliseconds(0)).id;  // a refusal throws
      if (std::chrono::steady_clock::now() > deadline)
        throw orq::Timeout("task_id: the broker did not accept the job within " +
                           std::to_string(timeout) + " s");
      std::this_thread::sleep_for(milliseconds(1));
    }
  }
  std::string Explain(const std::string& task_id, double timeout) {
    py::gil_scoped_release release;
    return client().ExplainJson(task_id, Ms(timeout));
  }

  // The caller is done with a batch: none of its futures will be named in `after` again.
  void Release(uint64_t batch) {
    std::lock_guard lock(state_->mu);
    started_.erase(batch);
  }

  std::string Status(double timeout) {
    py::gil_scoped_release release;
    return client().StatusJson(Ms(timeout));
  }
  int64_t Ping(double timeout) {
    py::gil_scoped_release release;
    return client().Ping(Ms(timeout));
  }
  uint32_t CancelIds(const std::vector<std::string>& ids, double timeout) {
    py::gil_scoped_release release;
    return client().Cancel(ids, Ms(timeout));
  }

  // Stops the client's thread: what still waits comes out of take() as errors, then None.
  void Close() {
    py::gil_scoped_release release;
    client_.reset();  // settles what waits (Unreachable), which Then() queues
    {
      std::lock_guard lock(state_->mu);
      state_->closed = true;
    }
    state_->cv.notify_all();
  }

 private:
  orq::Client& client() {
    if (!client_) throw orq::UsageError("this orq client is closed");
    return *client_;
  }
  // Under state_->mu.
  void AddAfter(orq::Task& task, const std::string& ref) {
    if (ref.size() > 1 && ref[0] == '#') return void(task.AfterIndex(std::stoul(ref.substr(1))));
    if (ref.size() > 1 && ref[0] == 'b') {
      const size_t colon = ref.find(':');
      auto it = started_.find(std::stoull(ref.substr(1, colon - 1)));
      const size_t index = std::stoul(ref.substr(colon + 1));
      if (it == started_.end() || index >= it->second.size())
        throw orq::UsageError("a future this task runs after is no longer known to the client");
      return void(task.After(it->second[index]));
    }
    task.After(ref);
  }
  static milliseconds Ms(double seconds) {
    return milliseconds(static_cast<int64_t>(seconds * 1000));
  }
  static std::unique_ptr<orq::Client> Make(const std::string& access, const std::string& endpoint,
                                           const std::string& home) {
    if (!access.empty()) return std::make_unique<orq::Client>(orq::Client::AccessFile(access));
    if (!endpoint.empty()) return std::make_unique<orq::Client>(orq::Client::Endpoint(endpoint));
    if (!home.empty()) return std::make_unique<orq::Client>(orq::Client::Local(home));
    return std::make_unique<orq::Client>(orq::Client::FromEnvironment());
  }
  struct Done {
    uint64_t batch;
    uint32_t index;
    orq::Future future;
  };
  static py::list Items(std::deque<Done>& done) {
    py::list items;
    for (Done& d : done) {
      try {
        orq::Outcome o = d.future.get(milliseconds(0));
        items.append(
            py::make_tuple(d.batch, d.index, orq::StatusName(o.status), o.id, py::bytes(o.result),
                           o.exit_code ? py::object(py::int_(*o.exit_code)) : py::none(),
                           py::bytes(o.stdout_text), py::bytes(o.stderr_text), o.error, o.attempt));
      } catch (const orq::Exception& e) {
        items.append(py::make_tuple(d.batch, d.index, "error", "", py::bytes(""), py::none(),
                                    py::bytes(""), py::bytes(""), std::string(e.what()),
                                    static_cast<int>(e.code())));
      }
    }
    return items;
  }
  // How long take() leaves outcomes to an armed loop.
  static constexpr std::chrono::milliseconds kGrace{20};
  struct State {
    State() : wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
      if (wake < 0)
        throw orq::Exception(orq::Errc::kFailed, std::string("eventfd: ") + std::strerror(errno));
    }
    ~State() { ::close(wake); }
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Done> done;
    std::chrono::steady_clock::time_point oldest;  // when `done` last became non-empty
    bool closed = false;
    bool armed = false;
    int wake;  // written when `done` becomes non-empty while armed
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
  std::unique_ptr<orq::Client> client_;
  // Under state_->mu: the futures of each batch until the caller releases it.
  std::unordered_map<uint64_t, std::vector<orq::Future>> started_;
};

}  // namespace

PYBIND11_MODULE(_orq, m) {
  m.doc() = "The native part of orq's Python module (use the orq package, not this).";
  // orq's errors, by code (orq::Errc): the package maps them to its own exception classes.
  static py::exception<orq::Exception> error(m, "NativeError");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const orq::Exception& e) {
      py::object exc = py::reinterpret_borrow<py::object>(error.ptr())(e.what());
      exc.attr("code") = static_cast<int>(e.code());
      PyErr_SetObject(error.ptr(), exc.ptr());
    }
  });
  m.def("version", &orq::ClientVersion);
  py::class_<NativeClient>(m, "NativeClient")
      .def(py::init<const std::string&, const std::string&, const std::string&>(),
           py::arg("access") = "", py::arg("endpoint") = "", py::arg("home") = "")
      .def("start", &NativeClient::Start)
      .def("cancel", &NativeClient::Cancel)
      .def("release", &NativeClient::Release)
      .def("task_id", &NativeClient::TaskId)
      .def("explain_json", &NativeClient::Explain)
      .def("take", &NativeClient::Take)
      .def("take_now", &NativeClient::TakeNow)
      .def("arm", &NativeClient::Arm)
      .def("status_json", &NativeClient::Status)
      .def("ping", &NativeClient::Ping)
      .def("cancel_ids", &NativeClient::CancelIds)
      .def("close", &NativeClient::Close);
}

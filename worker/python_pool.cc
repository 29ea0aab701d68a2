#include "worker/python_pool.h"

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <unordered_set>

#include "common/process.h"
#include "common/task_spec.h"

namespace asio = boost::asio;

namespace orq {
namespace {

// What an interpreter may print on its own stderr that is kept (for the sentence when it dies).
constexpr size_t kStderrKept = 64 << 10;
// The largest reply an interpreter may send: a value at its limit, base64, and its output.
constexpr size_t kMaxReplyBytes = kMaxPythonValueBytes * 2 + (4u << 20);

std::string Frame(const std::string& body) {
  const auto n = static_cast<uint32_t>(body.size());
  std::string frame{static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                    static_cast<char>(n >> 8), static_cast<char>(n)};
  return frame + body;
}

std::string Tail(const std::string& text, size_t n) {
  std::string tail = text.size() > n ? "..." + text.substr(text.size() - n) : text;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  return tail;
}

}  // namespace

struct PythonPool::Interpreter {
  explicit Interpreter(asio::io_context& loop) : idle_timer(loop) {}
  std::string key;
  std::shared_ptr<Subprocess> child;
  std::string buffer;   // what it printed on stdout that is not a whole frame yet
  uint64_t ticket = 0;  // the call it runs; 0: idle
  size_t slot = 0;      // while it runs a call: its number among those running
  std::unordered_set<std::string> functions;  // the ids of the functions it was sent
  Done done;
  uint32_t calls = 0;
  bool broken = false;  // it sent what is not a frame: ended once its call is answered
  asio::steady_timer idle_timer;
  std::chrono::steady_clock::time_point idle_since;
};

PythonPool::PythonPool(asio::io_context& loop, PythonPoolOptions options)
    : loop_(loop), options_(std::move(options)) {}

PythonPool::~PythonPool() { KillAll(); }

uint64_t PythonPool::Call(PythonCall call, Done done) {
  const uint64_t ticket = next_ticket_++;
  if (Busy() < std::max<size_t>(options_.keep, 1) && waiting_.empty())
    Run({ticket, std::move(call), std::move(done)});
  else
    waiting_.push_back({ticket, std::move(call), std::move(done)});
  return ticket;
}

size_t PythonPool::Busy() const {
  return static_cast<size_t>(std::count_if(interpreters_.begin(), interpreters_.end(),
                                           [](const auto& i) { return i->ticket != 0; }));
}

void PythonPool::RunWaiting() {
  while (!waiting_.empty() && Busy() < std::max<size_t>(options_.keep, 1)) {
    Waiting next = std::move(waiting_.front());
    waiting_.pop_front();
    Run(std::move(next));
  }
}

void PythonPool::Run(Waiting call) {
  std::string key =
      (options_.python.empty() ? call.call.python : options_.python) + '\0' + call.call.cwd;
  for (const std::string& e : call.call.env) key += '\0' + e;
  std::shared_ptr<Interpreter> interpreter;
  std::vector<bool> slots(interpreters_.size() + 1);
  for (const auto& i : interpreters_) {
    if (i->ticket == 0 && i->key == key) interpreter = i;
    if (i->ticket != 0 && i->slot < slots.size()) slots[i->slot] = true;
  }
  if (!interpreter) {
    MakeRoom();
    interpreter = Start(call.call, key);
  }
  interpreter->slot =
      static_cast<size_t>(std::find(slots.begin(), slots.end(), false) - slots.begin());
  interpreter->idle_timer.cancel();
  interpreter->ticket = call.ticket;
  interpreter->done = std::move(call.done);
  const bool send = !interpreter->functions.count(call.call.function_id);
  const bool forget = send && interpreter->functions.size() >= options_.functions_kept;
  if (forget) interpreter->functions.clear();
  if (send) interpreter->functions.insert(call.call.function_id);
  interpreter->child->Write(
      Frame(call.call.request(static_cast<int>(interpreter->slot), send, forget)));
  if (call.call.started) call.call.started();
}

std::shared_ptr<PythonPool::Interpreter> PythonPool::Start(const PythonCall& call,
                                                           const std::string& key) {
  auto interpreter = std::make_shared<Interpreter>(loop_);
  interpreter->key = key;
  std::string python = !options_.python.empty() ? options_.python
                       : !call.python.empty()   ? call.python
                                                : "python3";
  SubprocessOptions o;
  o.argv = {python, "-m", "orq.serve"};
  o.cwd = call.cwd;
  o.env = call.env;
  o.output_limit = kStderrKept;
  o.stdin_pipe = true;
  std::weak_ptr<Interpreter> weak = interpreter;
  o.on_stdout = [this, weak](std::string_view bytes) {
    auto self = weak.lock();
    if (!self) return;
    self->buffer.append(bytes);
    while (self->buffer.size() >= 4) {
      const auto* b = reinterpret_cast<const unsigned char*>(self->buffer.data());
      const size_t n = size_t{b[0]} << 24 | size_t{b[1]} << 16 | size_t{b[2]} << 8 | b[3];
      if (n > kMaxReplyBytes) {  // not serve.py speaking: end it
        self->broken = true;
        self->buffer.clear();
        self->child->Terminate();
        return;
      }
      if (self->buffer.size() < 4 + n) return;
      std::string body = self->buffer.substr(4, n);
      self->buffer.erase(0, 4 + n);
      Answered(self, std::move(body));
    }
  };
  interpreter->child = Subprocess::Start(loop_, std::move(o), [this, weak](SubprocessResult r) {
    if (auto self = weak.lock()) {
      if (const auto* never = std::get_if<NotStarted>(&r.status))
        return Ended(self, "could not start: " + never->why);
      const std::string& err = r.stderr_text;
      Ended(self, "ended during the call: " + Describe(r.status) +
                      (err.empty() ? "" : "; it said: " + Tail(err, 2000)));
    }
  });
  ++started_;
  interpreters_.push_back(interpreter);
  return interpreter;
}

void PythonPool::Answered(const std::shared_ptr<Interpreter>& interpreter, std::string body) {
  if (interpreter->ticket == 0) {  // an answer nobody asked for
    interpreter->child->Terminate();
    return;
  }
  Done done = std::move(interpreter->done);
  interpreter->done = nullptr;
  interpreter->ticket = 0;
  ++interpreter->calls;
  const bool worn =
      (options_.max_calls > 0 && interpreter->calls >= options_.max_calls) ||
      (options_.max_memory > 0 && CurrentRss(interpreter->child->pid()) > options_.max_memory);
  if (worn || interpreter->broken)
    Remove(interpreter, false);
  else
    Idle(interpreter);
  done(PythonReply{true, std::move(body), {}});
  RunWaiting();
}

void PythonPool::Ended(const std::shared_ptr<Interpreter>& interpreter, const std::string& how) {
  Done done = std::move(interpreter->done);
  interpreter->done = nullptr;
  const pid_t pid = interpreter->child->pid();
  Remove(interpreter, false);
  if (done)
    done(PythonReply{false,
                     {},
                     "its Python interpreter" +
                         (pid > 0 ? " (pid " + std::to_string(pid) + ")" : "") +
                         " ended during the call: " + how});
  RunWaiting();
}

void PythonPool::Idle(const std::shared_ptr<Interpreter>& interpreter) {
  interpreter->idle_since = std::chrono::steady_clock::now();
  interpreter->idle_timer.expires_after(options_.idle);
  std::weak_ptr<Interpreter> weak = interpreter;
  interpreter->idle_timer.async_wait([this, weak](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (!ec && self && self->ticket == 0) Remove(self, false);
  });
}

// Before a new interpreter starts: the idle ones beyond `keep` go, the longest idle first.
void PythonPool::MakeRoom() {
  for (;;) {
    std::vector<std::shared_ptr<Interpreter>> idle;
    for (const auto& i : interpreters_) {
      if (i->ticket == 0) idle.push_back(i);
    }
    if (idle.empty() || idle.size() < std::max<size_t>(options_.keep, 1)) return;
    Remove(*std::min_element(
               idle.begin(), idle.end(),
               [](const auto& a, const auto& b) { return a->idle_since < b->idle_since; }),
           false);
  }
}

// Out of the pool. Ended gently (TERM; it ends at once, serve.py holds no state worth saving)
// unless `kill`; either way its group goes and it is reaped (Subprocess).
void PythonPool::Remove(const std::shared_ptr<Interpreter>& interpreter, bool kill) {
  interpreter->idle_timer.cancel();
  interpreter->done = nullptr;
  auto it = std::find(interpreters_.begin(), interpreters_.end(), interpreter);
  if (it == interpreters_.end()) return;
  interpreters_.erase(it);
  if (kill)
    interpreter->child->Kill();
  else
    interpreter->child->Terminate();  // reaped by Reap(); its Subprocess lives until then
  retiring_.push_back(interpreter->child);
}

void PythonPool::Abort(uint64_t ticket) {
  auto waiting = std::find_if(waiting_.begin(), waiting_.end(),
                              [&](const Waiting& w) { return w.ticket == ticket; });
  if (waiting != waiting_.end()) return void(waiting_.erase(waiting));
  for (const auto& i : interpreters_) {
    if (i->ticket == ticket) {
      Remove(i, true);
      return RunWaiting();
    }
  }
}

void PythonPool::Reap() {
  for (const auto& i : std::vector<std::shared_ptr<Interpreter>>(interpreters_)) i->child->Poll();
  std::vector<std::shared_ptr<Subprocess>> retiring;
  retiring.swap(retiring_);
  for (auto& child : retiring) {
    child->Poll();
    if (child->pid() > 0 && !child->reaped()) retiring_.push_back(std::move(child));
  }
}

void PythonPool::KillAll() {
  waiting_.clear();
  for (const auto& i : std::vector<std::shared_ptr<Interpreter>>(interpreters_)) Remove(i, true);
  for (auto& child : retiring_) child->Kill();
  retiring_.clear();
}

}  // namespace orq

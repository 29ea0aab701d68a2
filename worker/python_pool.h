// A worker's warm Python interpreters, which run its python tasks (common/task_spec.h's
// PythonTask). Each is a child, `PYTHON -m orq.serve` (python/orq/serve.py), in its own process
// group, that takes one call at a time on its stdin and answers on its stdout, each message a
// frame: 4 bytes of length (big-endian), then that many bytes of JSON. A call costs a round trip,
// not an interpreter's start.
//
// An interpreter serves only calls that would have started it the same way: the same interpreter
// path, directory and environment (the job's: the submitter's, with its PYTHONPATH, so its
// sys.path). Two programs never share one unless they agree on all three; the variables that
// differ per call (ORQ_TASK_ID, ORQ_SLOT, the resources given) are set by serve.py for the call.
//
// Started on first use, kept while used, ended when idle for `idle`, when it has served
// `max_calls` calls or holds more than `max_memory` after one (then the next call gets a new
// one), and when the worker stops. A call that is aborted (its timeout, a cancel) ends its
// interpreter, not the worker. An interpreter that dies during a call fails that call with what
// it said on stderr.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>  // before Asio under C++20 with Boost 1.74
#include <vector>

namespace orq {

class Subprocess;

struct PythonPoolOptions {
  std::string python;      // every call's interpreter (orq worker --python); empty: the call's own
  uint32_t max_calls = 0;  // calls an interpreter serves before it is replaced; 0: no limit
  size_t max_memory = 0;   // resident bytes after a call past which it is replaced; 0: no limit
  std::chrono::milliseconds idle{60000};  // an interpreter idle this long is ended
  // Calls running at once, and idle interpreters kept at most (the worker's process slots).
  // Calls beyond it wait here, in order, for an interpreter (the broker sends a worker more
  // calls than it runs at once, so that the next one is here when one ends).
  size_t keep = 2;
  size_t functions_kept = 1024;  // functions an interpreter keeps; then it forgets them all
};

// One call: how its interpreter starts, and the request (JSON, serve.py reads it).
struct PythonCall {
  std::string python;  // the caller's interpreter; empty: python3
  std::string cwd;     // empty: the worker's own directory
  std::vector<std::string> env;
  // Names the function: an interpreter is sent it once (the request's "fn_id"; "fn" only with
  // `send_function`).
  std::string function_id;
  // The request, made when the call starts on an interpreter: `slot` is that interpreter's
  // number among those running calls, 0 to keep-1 (ORQ_SLOT); `send_function` when that
  // interpreter has not been sent it; `forget` when it should drop the functions it was sent.
  std::function<std::string(int slot, bool send_function, bool forget)> request;
  std::function<void()> started;  // it starts on an interpreter now (its timeout counts from it)
};

// How a call ended: the interpreter's answer (JSON), or why there is none.
struct PythonReply {
  bool answered = false;
  std::string body;   // answered: the reply (JSON)
  std::string error;  // not answered: one sentence
};

class PythonPool {
 public:
  using Done = std::function<void(PythonReply)>;

  PythonPool(boost::asio::io_context& loop, PythonPoolOptions options);
  ~PythonPool();  // every interpreter is killed
  PythonPool(const PythonPool&) = delete;
  PythonPool& operator=(const PythonPool&) = delete;

  // Runs a call on an idle interpreter of its kind, or on a new one, once fewer than `keep` calls
  // run; `done` runs on the loop once (never after Abort). Returns the call's ticket.
  uint64_t Call(PythonCall call, Done done);
  // Ends the call: one still waiting is dropped; a running one's interpreter is ended (its
  // timeout passed, or it was cancelled). `done` is not called.
  void Abort(uint64_t ticket);
  // Reaps interpreters that exited (the worker's SIGCHLD handler).
  void Reap();
  // Kills every interpreter now (the worker is exiting).
  void KillAll();
  size_t size() const { return interpreters_.size(); }
  size_t waiting() const { return waiting_.size(); }
  size_t started() const { return started_; }

 private:
  struct Interpreter;
  struct Waiting {
    uint64_t ticket;
    PythonCall call;
    Done done;
  };
  void Run(Waiting call);
  void RunWaiting();
  size_t Busy() const;
  std::shared_ptr<Interpreter> Start(const PythonCall& call, const std::string& key);
  void Answered(const std::shared_ptr<Interpreter>& interpreter, std::string body);
  void Ended(const std::shared_ptr<Interpreter>& interpreter, const std::string& how);
  void Remove(const std::shared_ptr<Interpreter>& interpreter, bool kill);
  void Idle(const std::shared_ptr<Interpreter>& interpreter);
  void MakeRoom();

  boost::asio::io_context& loop_;
  PythonPoolOptions options_;
  std::vector<std::shared_ptr<Interpreter>> interpreters_;
  std::vector<std::shared_ptr<Subprocess>> retiring_;  // ended, not reaped yet
  std::deque<Waiting> waiting_;                        // calls beyond `keep`, in order
  uint64_t next_ticket_ = 1;
  size_t started_ = 0;
};

}  // namespace orq

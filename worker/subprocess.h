// One shell task's child process (folly's Subprocess, in Asio form): started with Boost.Process
// in its own process group, stdout and stderr read through async pipes on the worker's loop, and
// reaped by waitpid when the loop sees SIGCHLD. Terminate() escalates TERM -> KILL to the whole
// group. When the child itself exits, whatever it left behind in its group is killed, so no
// grandchild outlives its task (one that calls setsid() on purpose escapes this).
//
// Only this file and common/spawn.cc include Boost.Process (it is slow to compile).
#pragma once

#include <utility>  // before Asio under C++20 with Boost 1.74
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace orq {

// How a child ended.
struct ChildExit {
  int exit_code = -1;      // exit status, or 128 + signal when killed by one
  int signal = 0;          // the signal that killed it, 0 if it exited
  std::string stdout_text;
  std::string stderr_text;
  bool truncated = false;  // a stream was longer than the limit; the rest was dropped
  std::string spawn_error; // non-empty when the program could not be started at all
};

class Subprocess : public std::enable_shared_from_this<Subprocess> {
 public:
  using Done = std::function<void(ChildExit)>;

  // Starts argv (argv[0] looked up in PATH when it has no '/') in directory `cwd` (empty: the
  // worker's own). `done` runs on `loop` exactly once, after the child is reaped and both pipes are
  // closed; for a spawn failure too.
  static std::shared_ptr<Subprocess> Start(boost::asio::io_context& loop,
                                           const std::vector<std::string>& argv,
                                           size_t output_limit, const std::string& cwd, Done done);

  // Call from the loop's SIGCHLD handler: reaps the child if it has exited.
  void Poll();
  // SIGTERM to the process group now, SIGKILL after `grace` if anything of it is left.
  void Terminate(std::chrono::milliseconds grace);
  // SIGKILL to the group and reap the leader now; `done` is never called.
  void Kill();
  pid_t pid() const { return pid_; }
  ~Subprocess();

 private:
  struct Impl;
  explicit Subprocess(boost::asio::io_context& loop);
  void MaybeDone();

  std::unique_ptr<Impl> impl_;
  pid_t pid_ = -1;  // leader of the child's process group; -1 before start; stays set once reaped
  bool reaped_ = false;
};

}  // namespace orq

// Starting orq's own processes (the broker for `run` and `up`, workers under the broker) with
// Boost.Process, and owning them until they are reaped. The only file of orq's components that
// includes Boost.Process (the worker's shell-task runner is the other).
//
// A Process that is destroyed while its child still runs sends SIGKILL and reaps it, unless it was
// released with Release(): no child is ever left unreaped or orphaned by accident.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace orq {

struct SpawnOptions {
  std::vector<std::string> args;  // arguments after the orq executable
  bool die_with_parent = false;   // PR_SET_PDEATHSIG: SIGTERM when the spawning process dies
  bool new_session = false;       // setsid(): no terminal, survives the CLI (orq up)
  std::string output_file;        // stdout and stderr written here (from its start: Boost opens it
                                  // without O_APPEND); empty: inherited
};

class Process {
 public:
  // Starts /proc/self/exe with options.args. Throws std::runtime_error with a sentence on failure.
  static Process SpawnSelf(const SpawnOptions& options);

  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  pid_t pid() const { return pid_; }
  // True while the child runs; reaps it (and records how it ended) once it has exited.
  bool Running();
  void Signal(int signal);
  // Waits for the child to exit, at most until `deadline`. True when it has exited (and is reaped).
  bool WaitUntil(std::chrono::steady_clock::time_point deadline);
  // TERM, then KILL once `grace` has passed; always reaps.
  void Stop(std::chrono::milliseconds grace);
  // Gives up ownership: the child lives on and this object forgets it.
  void Release() { pid_ = -1; }
  // How the child ended ("exited with code 1", "killed by signal 9"); empty while it runs.
  const std::string& how_it_ended() const { return ended_; }

 private:
  explicit Process(pid_t pid) : pid_(pid) {}
  void Reaped(int wait_status);

  pid_t pid_ = -1;  // the child; -1 once reaped or released
  std::string ended_;
};

// SIGKILL to every process left in session `sid` (a dead worker's shell tasks and their children:
// a worker leads its own session, so nothing it started can hide from this). Returns how many.
int KillSession(pid_t sid);

// Waits until process `pid` (not necessarily a child) has exited, at most until `deadline`.
bool WaitForExit(pid_t pid, std::chrono::steady_clock::time_point deadline);

// The absolute path of the running executable (for spawning orq itself).
std::string SelfExecutable();

}  // namespace orq

// orq's one process module (folly's Subprocess is the model): starting child processes, stopping
// them, reaping them, and reading /proc. Two owners of a child, one for each way of waiting:
//   Process     started and waited for by blocking calls with a deadline: the broker under
//               `orq run` and `orq up`, the local workers under the broker, bench's workers.
//   Subprocess  a shell task's child on the worker's Asio loop: its own process group, output read
//               through async pipes, its own timeout, reaped when the loop sees SIGCHLD.
// Both say how a child ended with one closed type, ExitStatus. Stopping is always the same
// sequence: SIGTERM, then SIGKILL once a grace has passed (StopProcess() blocking, Subprocess on
// the loop), and a child is always reaped: an owner destroyed while its child runs kills and reaps
// it.
//
// process.cc and subprocess.cc are the only files that include Boost.Process (slow to compile).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace orq {

// ---- How a child ended -------------------------------------------------------------------------

struct Exited {  // exit(code)
  int code = 0;
  friend bool operator==(const Exited&, const Exited&) = default;
};
struct Killed {  // by a signal
  int signal = 0;
  friend bool operator==(const Killed&, const Killed&) = default;
};
struct TimedOut {  // its timeout passed, so it was stopped (TERM, then KILL after the grace)
  double seconds = 0;
  int code = 0;  // how it then ended, as ShellCode() (128 + 15 after TERM, 128 + 9 after KILL)
  friend bool operator==(const TimedOut&, const TimedOut&) = default;
};
struct NotStarted {  // the program could not be started at all
  std::string why;
  friend bool operator==(const NotStarted&, const NotStarted&) = default;
};
using ExitStatus = std::variant<Exited, Killed, TimedOut, NotStarted>;

// The status waitpid() reported, as an ExitStatus (Exited or Killed).
ExitStatus FromWaitStatus(int wait_status);
// The shell's convention: the exit code, or 128 + N when killed by signal N (also when that was
// after its timeout); 127 when it could not be started.
int ShellCode(const ExitStatus& status);
// "exited with code 1", "killed by signal 9 (SIGKILL)", "timed out after 2 s", or the reason it did
// not start.
std::string Describe(const ExitStatus& status);

// ---- Stopping and waiting (any process, ours or not) -------------------------------------------

using ProcessClock = std::chrono::steady_clock;

// Waits until process `pid` has exited (a zombie counts as exited), at most until `deadline`.
// True when it has.
bool WaitForExit(pid_t pid, ProcessClock::time_point deadline);
// The stop sequence, written once: SIGTERM to `pid`, then SIGKILL once `grace` has passed with it
// still there (grace 0: SIGKILL at once), then up to kKillWait for it to go. True when it is gone.
// Does not reap: a child's owner reaps it after.
bool StopProcess(pid_t pid, std::chrono::milliseconds grace);
constexpr std::chrono::milliseconds kKillWait{5000};
// SIGKILL to every process left in session `sid` (a dead worker's shell tasks and their children:
// a worker leads its own session, so nothing it started can hide from this). Returns how many.
int KillSession(pid_t sid);

// ---- Descriptors
// ---------------------------------------------------------------------------------

// Raises this process's soft RLIMIT_NOFILE to its hard limit (the broker, so that strangers'
// connections cannot starve it of descriptors) and returns the limit now in force. Children
// started with Process::SpawnSelf() get the soft limit this process started with.
size_t RaiseDescriptorLimit();

// ---- /proc -------------------------------------------------------------------------------------

struct ProcStat {    // the fields of /proc/PID/stat that orq reads
  char state = '?';  // R, S, D, Z (zombie), ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  double cpu_seconds = 0;  // user + system time so far (utime + stime); 0 when the line lacks it
};
// Parses one /proc/PID/stat line; nullopt when it is not one. (The command name may hold spaces
// and parentheses: the fields start after the last ')'.)
std::optional<ProcStat> ParseProcStat(std::string_view line);
std::optional<ProcStat> ReadProcStat(pid_t pid);  // nullopt when there is no such process
// The whole of /proc/PID/NAME ("" when the process is gone or the file unreadable).
std::string ReadProcFile(pid_t pid, const char* name);
// The NUL-separated entries of a /proc file such as cmdline or environ.
std::vector<std::string> SplitNul(std::string_view text);
// Every process id in /proc.
std::vector<pid_t> ListPids();
// A process's peak resident set (VmHWM) in bytes; 0 when unknown.
size_t PeakRss(pid_t pid);
// Its resident set now (VmRSS) in bytes; 0 when unknown.
size_t CurrentRss(pid_t pid);
// open(2) and unlink(2) of DIR/NAME where neither DIR nor NAME may be a symbolic link (what is
// above DIR may): orq's files under $ORQ_HOME (spilled output) are opened only so. -1 (false)
// with errno as open(2) sets it.
int OpenBeneath(const std::string& path, int flags, mode_t mode = 0);
bool UnlinkBeneath(const std::string& path);
// The absolute path of the running executable (for spawning orq itself).
std::string SelfExecutable();

// ---- Process: a child of orq itself, waited for by blocking calls -------------------------------

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
  ~Process();  // a child still running is killed and reaped, unless released

  pid_t pid() const { return pid_; }  // -1 once reaped or released
  // True while the child runs; reaps it (and records how it ended) once it has exited.
  bool Running();
  // Waits for the child to exit, at most until `deadline`. True when it has exited (and is reaped).
  bool WaitUntil(ProcessClock::time_point deadline);
  // StopProcess(), then reaps. Returns how it ended.
  ExitStatus Stop(std::chrono::milliseconds grace);
  // Gives up ownership: the child lives on and this object forgets it.
  void Release() { pid_ = -1; }
  // How the child ended; nullopt while it runs (or when it was released).
  const std::optional<ExitStatus>& exit() const { return exit_; }

 private:
  explicit Process(pid_t pid) : pid_(pid) {}
  void Reaped(int wait_status);

  pid_t pid_ = -1;
  std::optional<ExitStatus> exit_;
};

// ---- Subprocess: a shell task's child on an Asio loop -------------------------------------------

struct SubprocessOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  std::string cwd;                // empty: the caller's own directory
  size_t output_limit = 0;        // bytes kept of each of stdout and stderr
  double timeout = 0;             // seconds; 0: none. Then TERM, and KILL after kill_grace.
  std::chrono::milliseconds kill_grace{2000};
  // The child's whole environment, "K=V" (its PATH is where argv[0] is looked up); nullopt: the
  // caller's own.
  std::optional<std::vector<std::string>> env;
  // What a stream prints beyond output_limit is written to SPILL.out / SPILL.err (mode 0600)
  // instead of being dropped; empty: dropped.
  std::string spill;
  // A long-lived child that speaks over its pipes (a worker's Python interpreter): its stdin is a
  // pipe that Write() feeds (else /dev/null), and what it prints on stdout goes to `on_stdout` as
  // it comes (else it is kept, as above).
  bool stdin_pipe = false;
  std::function<void(std::string_view)> on_stdout;
};

struct SubprocessResult {
  ExitStatus status;
  std::string stdout_text;
  std::string stderr_text;
  bool truncated = false;  // a stream was longer than the limit; the rest was dropped (or spilled)
  std::string stdout_file, stderr_file;  // where the rest of each went, when it was spilled
};

class Subprocess : public std::enable_shared_from_this<Subprocess> {
 public:
  using Done = std::function<void(SubprocessResult)>;

  // Starts options.argv in its own process group. `done` runs on `loop` exactly once, after the
  // child is reaped and both pipes are closed; for a child that could not start too (NotStarted).
  // When the leader exits, whatever it left in its group is killed, so no grandchild outlives its
  // task (one that calls setsid() on purpose escapes this).
  static std::shared_ptr<Subprocess> Start(boost::asio::io_context& loop, SubprocessOptions options,
                                           Done done);

  // Call from the loop's SIGCHLD handler: reaps the child if it has exited.
  void Poll();
  // SIGTERM to the process group now, SIGKILL after the grace if anything of it is left.
  void Terminate();
  // Queues `bytes` for the child's stdin (options.stdin_pipe); written in order, on the loop. A
  // child that closed its stdin drops them (its end is reported through `done`).
  void Write(std::string bytes);
  // SIGKILL to the group and reap the leader now; `done` is never called.
  void Kill();
  pid_t pid() const { return pid_; }
  bool reaped() const { return reaped_; }
  // What it has printed so far (up to the output limit), for following a running task.
  const std::string& stdout_so_far() const;
  const std::string& stderr_so_far() const;
  ~Subprocess();  // kills the group and reaps the leader if it still runs

 private:
  struct Impl;
  explicit Subprocess(boost::asio::io_context& loop);
  void MaybeDone();
  void WriteNext();

  std::unique_ptr<Impl> impl_;
  pid_t pid_ = -1;  // leader of the child's process group; -1 before start; stays set once reaped
  bool reaped_ = false;
};

// ---- A command run to its end, from a thread that may block -------------------------------------

struct CommandResult {
  ExitStatus status;
  std::string out, err;  // what it printed, up to the limit each
};
// Runs `argv` (argv[0] looked up in PATH; stdin /dev/null) on a loop of its own until it ends,
// its output captured (at most `limit` bytes of each stream); past `timeout` it is stopped (TERM,
// then KILL) and its status is TimedOut. Blocks the calling thread (the broker's allocator
// thread runs sbatch and squeue so), never an event loop's.
CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         size_t limit = 1 << 20);

}  // namespace orq

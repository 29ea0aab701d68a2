// Test support for integration tests: runs the real orq binary with a private $ORQ_HOME, with a
// deadline on every run, and finds every process that still carries that home in its environment
// (broker, workers and shell tasks all inherit it), so a test can assert nothing was left behind.
//
// Every deadline here is a ceiling for a condition to come true, never a moment to assert at, and
// is multiplied by TimeScale(): a sanitizer build or a loaded machine is slower, not wrong.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/temp_dir.h"

namespace orq::testing {

// How many times longer than written every deadline of these tests is: $ORQ_TEST_TIME_SCALE when
// set (a number >= 1), else the build's (3 under sanitizers, else 1).
double TimeScale();
std::chrono::milliseconds Scaled(std::chrono::milliseconds planned);
// Asks `condition` every `poll` until it holds (true) or Scaled(timeout) passes (false).
bool WaitUntil(const std::function<bool()>& condition,
               std::chrono::milliseconds timeout = std::chrono::seconds(30),
               std::chrono::milliseconds poll = std::chrono::milliseconds(20));

struct RunResult {
  std::string command;  // "orq ARGS..." as run, for messages
  int code = -1;        // exit code; 128+N when killed by signal N; -1 when it hit the deadline
  std::string out;
  std::string err;
  double seconds = 0;
};

// Why process `pid` (a child of this one, not yet reaped) has not finished: exited with its
// output still held open by another process, or each of its threads' state and kernel wait.
std::string WhereItWaits(pid_t pid);

class OrqEnv {
 public:
  // `wrapper` runs every orq command under another one, e.g. {"ip", "netns", "exec", NS} for a
  // host in a network namespace (tests/netns.h).
  explicit OrqEnv(std::vector<std::string> wrapper = {});
  ~OrqEnv();  // `orq down`, then kills whatever is left with this home, then removes the home

  // Runs `orq ARGS...` to completion (killed at Scaled(timeout)).
  RunResult Run(const std::vector<std::string>& args, const std::string& input = "",
                std::chrono::seconds timeout = std::chrono::seconds(60)) const;
  // Starts `orq ARGS...` without waiting; its output goes to files in the home.
  pid_t Start(const std::vector<std::string>& args) const;
  // Processes (other than zombies) whose environment has this ORQ_HOME.
  std::vector<pid_t> Processes() const;
  // Waits until at least `n` such processes run; false at the (scaled) deadline.
  bool WaitProcesses(size_t n, std::chrono::seconds timeout) const;
  // Waits until Processes() is empty; false at the (scaled) deadline.
  bool WaitNoProcesses(std::chrono::seconds timeout) const;
  // `orq status --json`; a failure to run it is a test failure (and the result is null).
  nlohmann::json Status() const;
  // Asks Status() until `done` holds of it; false at the (scaled) deadline.
  bool WaitStatus(const std::function<bool(const nlohmann::json&)>& done,
                  std::chrono::seconds timeout = std::chrono::seconds(30)) const;
  // Writes a file in the home and returns its path.
  std::string WriteFile(const std::string& name, const std::string& content) const;

  const std::string& home() const { return home_; }
  // The directory later Run() and Start() calls run orq in (default: the test's own).
  void set_directory(std::string dir) { directory_ = std::move(dir); }

 private:
  [[noreturn]] void Exec(const std::vector<std::string>& args) const;

  TempDir home_dir_;  // removed last, after the destructor's `orq down` and kill
  std::string home_;
  std::string directory_;
  std::vector<std::string> wrapper_;
};

// A GoogleTest assertion that a command ended with exit code `code`; when it did not, the message
// names the command, how it ended and everything it printed on stderr (and stdout), so a failure
// says why. ASSERT_TRUE(Exits(env.Run({"up"}), 0)).
::testing::AssertionResult Exits(const RunResult& result, int code);

std::string Example(const std::string& name);  // path of examples/NAME
// The job id `orq submit` printed; throws std::runtime_error (a test failure, with the submit's
// stderr) when it did not succeed, so a failed submit is reported as such rather than as a crash.
std::string JobId(const RunResult& submit);
std::vector<std::string> Lines(const std::string& text);
// A command line, and two of them end to end.
using Words = std::vector<std::string>;
inline Words Concat(Words a, const Words& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
// A whole file ("" when it is not there).
std::string ReadFile(const std::string& path);

// Runs a program (not orq) to completion, killed at Scaled(timeout); returns its exit code (-1 when
// it hit the deadline or was killed) and appends what it printed on stdout and stderr to `output`.
int RunProgram(const std::vector<std::string>& argv, std::string& output,
               std::chrono::seconds timeout = std::chrono::seconds(30));
// RunProgram() that must succeed: returns the output, or throws std::runtime_error with it.
std::string Command(const std::vector<std::string>& argv,
                    std::chrono::seconds timeout = std::chrono::seconds(30));

// Waits until process `pid` (not necessarily a child) has ended: gone, or a zombie (its files,
// locks and sockets are released; only its parent's wait is missing). False at the (scaled)
// deadline.
bool WaitGone(pid_t pid, std::chrono::seconds timeout = std::chrono::seconds(30));

// Waits for child `pid` (from OrqEnv::Start) to exit; its exit code, 128+N when killed by signal N,
// or -1 at the (scaled) deadline (it is then left running). With `peak_rss`: the most memory it
// was resident in, in bytes.
int WaitExit(pid_t pid, std::chrono::seconds timeout, size_t* peak_rss = nullptr);

// setenv for the scope of a test, then the variable as it was: orq (and the submitter's
// environment it records) sees it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value);
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv();

 private:
  std::string name_;
  std::optional<std::string> before_;
};

}  // namespace orq::testing

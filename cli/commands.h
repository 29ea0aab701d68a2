// The CLI's verbs. Each returns the process exit code (see ExitCode); user mistakes print one
// sentence on stderr.
#pragma once

#include <string>
#include <vector>

#include "common/task_spec.h"

namespace orq {

// Documented in the README; scripts depend on them.
enum ExitCode : int {
  kExitOk = 0,
  kExitTaskFailed = 1,   // some task did not end ok
  kExitUsage = 2,        // bad arguments, bad task file, unknown ids
  kExitUnreachable = 3,  // no broker, or it stopped answering; or orq's processes would not start
  kExitRefused = 4,      // the broker refused our key, or the request is outside its role
  kExitTimeout = 124,    // gather --timeout expired
};

struct RunOptions {
  std::string file;  // "-" = stdin
  int workers = 0;
  int threads = 0;
  bool json = false;
  bool no_journal = false;
};

struct SubmitOptions {
  std::vector<std::string> command;  // after "--"
  std::string file;
  std::optional<double> sleep, cpu;
  std::optional<std::string> result, echo;
  std::optional<double> delay, timeout;
  std::optional<int> priority;
  std::optional<int> attempts, retries;
  std::optional<std::string> retry_backoff;  // "BASE,MAX"
};

int RunCommand(const RunOptions& options);
int UpCommand(int workers, int threads, int heartbeat_ms, const std::vector<std::string>& listen);
int DownCommand();
int SubmitCommand(const SubmitOptions& options);
int GatherCommand(const std::vector<std::string>& ids, bool json, std::optional<double> timeout);
int StatusCommand(bool json);
int CancelCommand(const std::vector<std::string>& ids);
int ForgetCommand(const std::vector<std::string>& ids);

// Loads a task file ("-" = stdin) or prints the sentence and returns nullopt.
std::optional<std::vector<TaskSpec>> LoadTaskFile(const std::string& file);

}  // namespace orq

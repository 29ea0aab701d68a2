// What `orq run` and `orq submit` build a job from, in one place: a command with GNU parallel's
// input sources (cli/template.h), a file of shell command lines (--lines), an array of indices
// (--array), a JSON task file, or one sleep/cpu/echo task; the options every task takes (timeout,
// retries...); and where the job's shell tasks run (--cwd, --env, --clean-env: by default the
// submitter's directory and environment, recorded now as a JobContext).
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/protocol.h"

namespace orq {

struct JobInput {
  std::vector<std::string> words;  // the command and its ::: sources
  bool stdin_lines = false;        // no source given and stdin a pipe or a file: its lines are one
  std::string file;                // a JSON task file ("-" = stdin)
  std::string lines;               // --lines: one shell command per line ("-" = stdin)
  std::string array;               // --array: "1-100", "1-100:5", "1,4,9"
  std::optional<double> sleep, cpu;
  std::optional<std::string> result, echo;
  // Applied to every task.
  std::optional<double> delay, timeout;
  std::optional<int> priority;
  std::optional<int> attempts, retries;
  std::optional<std::pair<double, double>> retry_backoff;  // BASE,MAX
  // Coordination (added to each task's own, from a task file): --after, --after-any (ids),
  // --cpus, --resource NAME=N, --queue, --limit NAME, --lock NAME:read|write.
  std::vector<std::string> after, after_any;
  std::optional<int> cpus;
  std::vector<std::string> resources, limits, locks;
  std::string queue;
  std::optional<uint64_t> time_request;  // seconds: --time-request
  std::string key;                       // orq submit --key: idempotency
  // Where shell tasks run.
  std::string cwd;
  std::vector<std::string> env;  // NAME=VALUE, or NAME to pass the submitter's value
  bool clean_env = false;
  bool env_all = false;  // remote workers get the whole environment, not only --env's
  bool dry_run = false;
  // orq run: a joblog to resume from (GNU parallel's --resume, --resume-failed, --retry-failed).
  std::string joblog;
  bool resume = false, resume_failed = false, retry_failed = false;
};

// Adds --lines, --array, the per-task options and --cwd/--env/--clean-env/--dry-run to `cmd`.
// Returns the --lines option, so a verb can make its other inputs exclude it.
CLI::Option* AddJobOptions(CLI::App* cmd, JobInput& in);

struct BuiltJob {
  std::vector<TaskSpec> specs;
  JobContext context;             // empty when the job has no shell task
  std::vector<std::string> tags;  // per task, for --tag: its arguments, or its command line
  std::vector<uint64_t> seqs;     // per task, GNU parallel's {#} and joblog Seq (from 1)
};

// Takes the words after orq's options (CommandWords()) as what to run. One word and no "--": a
// task file when it is "-" or ends in .json or .jsonl; a file that is not a program, or a
// directory, is refused with the ways to say what was meant. Stdin becomes the input source (GNU
// parallel's `:::: -`) when no other is given and it is a pipe, a socket or a file, not a terminal
// or a device such as /dev/null (scripts under cron or nohup run their one command).
void TakeCommand(JobInput& in, const std::vector<std::string>& words, bool after_dashes,
                 const std::string& verb);

// Builds the job. Throws UsageError with one sentence naming the flag, file, line or field.
BuiltJob BuildJob(const JobInput& in);

// The numbers of an --array: "1-100", "0-99:10", "1,4,9", "1-3,10-20:5".
std::vector<int64_t> ParseArray(const std::string& text);

// --dry-run: each task's command as one shell line (GNU parallel's quoting), one per line.
void PrintDryRun(const std::vector<TaskSpec>& specs, std::FILE* out);

}  // namespace orq

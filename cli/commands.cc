// The verbs for jobs on a broker: `run` (all in one go, on a broker and workers of its own), and
// `submit`, `gather`, `status`, `cancel`, `forget` (against the running broker).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <tuple>

#include "cli/embedded.h"
#include "cli/format.h"
#include "cli/job_input.h"
#include "cli/progress.h"
#include "cli/results.h"
#include "cli/template.h"
#include "cli/verbs.h"
#include "client/connection.h"
#include "common/ids.h"
#include "common/keys.h"
#include "common/paths.h"
#include "common/process.h"
#include "common/task_spec.h"
#include "common/text.h"

namespace orq {
namespace {

using std::chrono::milliseconds;

volatile std::sig_atomic_t interrupted = 0;
extern "C" void OnInterrupt(int) { interrupted = 1; }

void InstallInterruptHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
}

uint64_t Submit(Connection& client, BuiltJob job, const std::string& key = "",
                const HaltPolicy& halt = {}) {
  SubmitRequest request{std::move(job.specs), std::move(job.context), key};
  request.halt = halt;
  const auto reply =
      Expect<SubmittedReply>(client.Submit(std::move(request), kRequestTimeout), "orq submit");
  if (reply.existing)
    Say("orq submit: the key " + key + " names " + FormatJobId(reply.job) +
        ", submitted before; nothing new was submitted");
  return reply.job;
}

// ---- orq run ------------------------------------------------------------------------------------

struct RunOptions {
  JobInput input;
  std::string jobs;  // -j: tasks at once in all, as GNU parallel's (N, N%, +N, -N); "": cores
  int workers = 0;   // 0: 1, or as many as -t needs
  int threads = 0;   // 0: from -j
  bool json = false;
  bool no_journal = false;
  bool tag = false;
  bool unordered = false;
  std::string halt;
  bool progress = false, quiet = false;
};

// orq run starts a broker and workers of its own: each worker has `threads` cpus and no other
// resource, and the broker no limits. A task they could never run is refused now, not waited for.
void CheckRunnable(const std::vector<TaskSpec>& specs, int threads) {
  const std::string instead = "; or use orq up (--resources), orq limit set and orq submit";
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string task = "task " + std::to_string(i) + " ";
    if (Cpus(specs[i]) > static_cast<uint32_t>(threads))
      throw UsageError(task + "asks for " + std::to_string(Cpus(specs[i])) +
                       " cpus and orq run's workers have " + std::to_string(threads) +
                       " each: give -t " + std::to_string(Cpus(specs[i])) + instead);
    const Needs& needs = specs[i].need();
    if (!needs.resources.empty())
      throw UsageError(task + "asks for " + needs.resources[0].name + "=" +
                       std::to_string(needs.resources[0].amount) +
                       " and orq run's workers offer no resources" + instead);
    if (!needs.limits.empty())
      throw UsageError(task + "takes the limit '" + needs.limits[0] +
                       "' and orq run's own broker has no limits" + instead);
  }
}

// --progress / --quiet on run and gather.
void AddProgressFlags(CLI::App* cmd, bool& progress, bool& quiet) {
  auto* p = cmd->add_flag("--progress", progress,
                          "show the progress line on stderr even when it is not a terminal");
  cmd->add_flag("-q,--quiet", quiet, "no progress line and no summary on stderr")->excludes(p);
}

// What `orq run` knows of the tasks it built, for --tag, --json and --joblog.
LocalTasks Describe(const BuiltJob& job) {
  LocalTasks local;
  local.tags = job.tags;
  local.seqs = job.seqs;
  local.commands.reserve(job.specs.size());
  const bool any_shell = std::any_of(job.specs.begin(), job.specs.end(), [](const TaskSpec& s) {
    return std::holds_alternative<ShellTask>(s.body);
  });
  if (!any_shell) return local;  // --joblog names such tasks by their id
  for (const TaskSpec& spec : job.specs) {
    const auto* shell = std::get_if<ShellTask>(&spec.body);
    if (!shell) {
      local.commands.push_back("(a " + std::string(KindName(spec)) + " task)");
      continue;
    }
    local.commands.push_back(ShellLine(shell->argv));
  }
  return local;
}

// The joblog to write (--joblog): appended to when resuming, else started afresh with a header.
struct Joblog {
  std::FILE* file = nullptr;
  ~Joblog() {
    if (file) std::fclose(file);
  }
};
void OpenJoblog(const JobInput& in, Joblog& log) {
  if (in.joblog.empty()) return;
  const bool append = in.resume || in.resume_failed || in.retry_failed;
  log.file = std::fopen(in.joblog.c_str(), append ? "a" : "w");
  if (!log.file)
    throw UsageError("cannot write the joblog " + in.joblog + ": " + std::strerror(errno));
  if (!append || std::ftell(log.file) == 0) std::fputs(kJoblogHeader, log.file);
}

// GNU parallel's -j: N, N% of the cores, +N or -N cores; at least 1.
int TasksAtOnce(const std::string& text) {
  const auto bad = [&] {
    return UsageError(
        "-j takes a number of tasks at once: N, N% of the cores, +N or -N cores; not '" + text +
        "'");
  };
  if (text.empty()) return Cores();
  std::string number = text;
  const bool percent = number.back() == '%';
  if (percent) number.pop_back();
  const bool relative = !percent && (number[0] == '+' || number[0] == '-');
  size_t used = 0;
  long n = 0;
  try {
    n = std::stol(number, &used);
  } catch (const std::exception&) {
    throw bad();
  }
  if (used != number.size() || (!relative && n < 1 && !percent) || n > 1000000) throw bad();
  long total = percent ? Cores() * n / 100 : relative ? Cores() + n : n;
  return static_cast<int>(std::clamp<long>(total, 1, 1000000));
}

// orq run's worker processes and the slots of each: -j N in all (default cores), split evenly
// among -w W processes (default: as many as the cores, if N splits so); -w W alone: W processes
// sharing the cores (at least a slot each); -w and -t as given (W x T).
std::pair<int, int> Slots(const RunOptions& o) {
  if (o.threads > 0) return {o.workers > 0 ? o.workers : 1, o.threads};
  if (o.workers > 0 && o.jobs.empty()) return {o.workers, std::max(1, Cores() / o.workers)};
  const int total = TasksAtOnce(o.jobs);
  // One process spawns one task at a time (a vfork lasts until the child's exec), so the slots
  // go to as many processes as there are cores when they split evenly: the largest divisor of
  // the total up to the cores.
  int workers = o.workers;
  for (int w = std::min(total, Cores()); workers == 0; --w) {
    if (total % w == 0) workers = w;
  }
  if (total % workers != 0)
    throw UsageError("-j " + std::to_string(total) +
                     " tasks at once do not split evenly among -w " + std::to_string(workers) +
                     " worker processes; give a -j that -w divides, or -w T -t S for T x S");
  return {workers, total / workers};
}

ExitCode Run(RunOptions& options) {
  const auto start = Clock::now();
  JobInput& in = options.input;
  if (in.words.empty() && in.file.empty() && in.lines.empty() && in.array.empty() &&
      !in.retry_failed && !in.stdin_lines)
    throw UsageError(
        "give what to run: a command (CMD ARGS... [::: ARGS...]), lines on stdin, a task file "
        "(FILE.jsonl or -f FILE) or --lines FILE");
  OutputOptions output;
  output.json = options.json;
  output.tag = options.tag;
  output.unordered = options.unordered;
  if (!options.halt.empty()) output.halt = ParseHalt(options.halt);
  BuiltJob built = BuildJob(in);
  if (in.dry_run) {
    PrintDryRun(built.specs, stdout);
    return ExitCode::kOk;
  }
  if (built.specs.empty()) {
    Say(in.joblog.empty()
            ? "orq: nothing to run: no lines on stdin"
            : "orq: nothing to run: the joblog " + in.joblog + " has every task done");
    return ExitCode::kOk;
  }
  const auto [workers, threads] = Slots(options);
  CheckRunnable(built.specs, threads);
  Joblog joblog;
  OpenJoblog(in, joblog);
  output.joblog = joblog.file;
  Progress progress(!options.quiet && (options.progress || StderrIsTerminal()));
  output.progress = &progress;
  const LocalTasks local = Describe(built);
  InstallInterruptHandlers();
  EmbeddedBroker broker(
      {.workers = workers, .threads = threads, .journal = !options.no_journal, .sync = false});
  ExitCode code = ExitCode::kOk;
  Gatherer gatherer(broker.client(), output, &local);
  const GatherSummary& summary = gatherer.summary();
  uint64_t job = 0;
  try {
    job = Submit(broker.client(), std::move(built), "",
                 output.halt ? HaltPolicy(*output.halt) : HaltPolicy{});
    code =
        gatherer.Run({FormatJobId(job)}, Clock::time_point::max(), [] { return interrupted != 0; });
  } catch (const Unreachable& e) {
    if (!interrupted) throw Unreachable(std::string(e.what()) + "\n" + Tail(broker.log(), 10));
    Say("orq: interrupted; stopping the broker and its workers");
    code = ExitCode::kInterrupted;
    // Cancel first, so running tasks are stopped now rather than given the shutdown's grace.
    if (job) {
      try {
        broker.client().Request(CancelRequest{{IdRef{job}}}, milliseconds(2000));
      } catch (const std::exception&) {
        // Stop() below ends everything in any case.
      }
    }
  }
  broker.Stop();
  if (code == ExitCode::kInterrupted || options.quiet) return code;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::string line = std::to_string(summary.total) + (summary.total == 1 ? " task: " : " tasks: ") +
                     std::to_string(summary.ok) + " ok, " + std::to_string(summary.failed) +
                     " failed";
  if (summary.halted)
    line += ", " + std::to_string(summary.cancelled_by_halt) + " cancelled: halted at " +
            *summary.halted;
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, " in %.2f s", elapsed);
  Say(line + seconds);
  return code;
}

// ---- orq submit ---------------------------------------------------------------------------------

ExitCode SubmitVerb(const JobInput& in) {
  const bool other = !in.file.empty() || !in.lines.empty() || in.sleep || in.cpu || in.echo;
  if (!in.words.empty() && other)
    throw UsageError(
        "orq submit: give a command or one of -f, --lines, --sleep, --cpu, --echo; "
        "not both (the command is " +
        ShellQuote(in.words[0]) + ")");
  if (in.words.empty() && !other && !in.stdin_lines)
    throw UsageError(
        "give what to run: a command (CMD ARGS... [::: ARGS...]), lines on stdin, --lines FILE, "
        "-f FILE, --sleep SECONDS, --cpu MS or --echo VALUE");
  BuiltJob built = BuildJob(in);
  if (in.dry_run) {
    PrintDryRun(built.specs, stdout);
    return ExitCode::kOk;
  }
  if (built.specs.empty()) {
    Say("orq submit: nothing to submit: no lines on stdin");
    return ExitCode::kOk;
  }
  Connection client(FindBroker());
  std::printf("%s\n", FormatJobId(Submit(client, std::move(built), in.key)).c_str());
  return ExitCode::kOk;
}

// ---- orq gather, status, cancel, forget --------------------------------------------------------

struct GatherOptions {
  std::vector<std::string> ids;
  bool json = false, tag = false, unordered = false, first = false, fail_fast = false;
  bool progress = false, quiet = false;
  std::vector<std::string> status;
  std::optional<double> timeout;
};

ExitCode GatherVerb(const GatherOptions& o) {
  OutputOptions output;
  output.json = o.json;
  output.tag = o.tag;
  output.unordered = o.unordered;
  output.first = o.first;
  output.fail_fast = o.fail_fast;
  for (const std::string& name : o.status) {
    if (auto status = ParseStatus(name)) output.only.insert(*status);
  }
  Connection client(FindBroker());
  auto deadline = Clock::time_point::max();
  if (o.timeout)
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(*o.timeout));
  Progress progress(!o.quiet && (o.progress || StderrIsTerminal()));
  output.progress = &progress;
  const ExitCode code = Gatherer(client, output).Run(o.ids, deadline);
  if (code == ExitCode::kTimeout)
    Say("orq gather: not finished after " + nlohmann::json(*o.timeout).dump() + " s");
  return code;
}

// ---- orq status, jobs, retry, logs ------------------------------------------------------------

std::vector<JobInfo> AskJobs(Connection& client, const std::vector<std::string>& ids) {
  return Expect<JobsReply>(client.Request(JobsRequest{ToJobs(ids)}, kRequestTimeout), "orq jobs")
      .jobs;
}

// "2m05s", "3h10m", "4d2h": an age for people.
std::string Age(double seconds) {
  const auto s = static_cast<uint64_t>(std::max(0.0, seconds));
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(s));
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%llum%02llus", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  else if (s < 86400)
    std::snprintf(buf, sizeof buf, "%lluh%02llum", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s / 60 % 60));
  else
    std::snprintf(buf, sizeof buf, "%llud%02lluh", static_cast<unsigned long long>(s / 86400),
                  static_cast<unsigned long long>(s / 3600 % 24));
  return buf;
}

// `orq status JOB`: one line per job.
std::string JobLine(const JobInfo& j) {
  const uint32_t done = j.ok + j.failed + j.cancelled;
  std::string line = FormatJobId(j.job) + ": " + std::to_string(done) + "/" +
                     std::to_string(j.tasks) + " done (" + std::to_string(j.ok) + " ok, " +
                     std::to_string(j.failed) + " failed";
  if (j.cancelled) line += ", " + std::to_string(j.cancelled) + " cancelled";
  line += "), " + std::to_string(j.running) + " running, " + std::to_string(j.queued) + " queued";
  if (j.delayed) line += ", " + std::to_string(j.delayed) + " delayed";
  if (j.waiting) line += ", " + std::to_string(j.waiting) + " waiting for dependencies";
  if (j.finished_age >= 0) return line + "; finished " + Age(j.finished_age) + " ago";
  line += "; submitted " + Age(j.age) + " ago";
  if (done > 0 && j.age > 0) line += ", ETA " + Age((j.tasks - done) * j.age / done);
  return line;
}

ExitCode StatusVerb(bool json, const std::vector<std::string>& jobs) {
  std::optional<Connection> client;
  try {
    client.emplace(FindBroker());
    if (!jobs.empty()) {
      for (const JobInfo& j : AskJobs(*client, jobs))
        std::printf("%s\n", json ? JsonLine(JobJson(j)).c_str() : JobLine(j).c_str());
      return ExitCode::kOk;
    }
    const auto status =
        Expect<StatusReply>(client->Request(StatusRequest{}, kRequestTimeout), "orq status");
    if (json)
      std::printf("%s\n", JsonLine(StatusJson(status)).c_str());
    else
      PrintStatus(status, stdout);
  } catch (const Unreachable& e) {
    // A script asking for JSON gets JSON, also when there is no broker.
    if (json)
      std::printf("%s\n",
                  JsonLine(nlohmann::json{{"running", false}, {"error", e.what()}}).c_str());
    throw;
  }
  return ExitCode::kOk;
}

ExitCode JobsVerb(bool json) {
  Connection client(FindBroker());
  const auto jobs = AskJobs(client, {});
  if (json) {
    for (const JobInfo& j : jobs) std::printf("%s\n", JsonLine(JobJson(j)).c_str());
    return ExitCode::kOk;
  }
  if (jobs.empty()) {
    Say("no jobs");
    return ExitCode::kOk;
  }
  // Every task in one column: queued (delayed ones too), waiting for dependencies, running, and
  // how the ended ones ended.
  std::printf("%-8s %7s %7s %7s %7s %7s %7s %7s %9s  %s\n", "JOB", "AGE", "TASKS", "QUEUED",
              "WAITING", "RUNNING", "OK", "FAILED", "CANCELLED", "COMMAND");
  for (const JobInfo& j : jobs)
    std::printf("%-8s %7s %7u %7u %7u %7u %7u %7u %9u  %s\n", FormatJobId(j.job).c_str(),
                Age(j.age).c_str(), j.tasks, j.queued + j.delayed, j.waiting, j.running, j.ok,
                j.failed, j.cancelled, EscapeControls(j.label).c_str());
  return ExitCode::kOk;
}

ExitCode RetryVerb(const std::string& job, bool all) {
  Connection client(FindBroker());
  const auto submitted = Expect<SubmittedReply>(
      client.Request(RetryRequest{ParseId(job)->job, all}, kRequestTimeout), "orq retry");
  std::printf("%s\n", FormatJobId(submitted.job).c_str());
  return ExitCode::kOk;
}

// The rest of an ended task's stream, from the file it spilled to. On the broker's host, a local
// worker's file is read here, named from the task and the attempt in this host's output directory
// (never a path from the wire); anything else comes through the broker from a worker on the
// file's host, a piece at a time. False when it could not be had (a note says where it is).
bool PrintSpilled(Connection& client, const std::string& task, bool err, const LogChunk& last) {
  const auto id = ParseId(task);
  if (last.file[0] == '/' && !client.remote()) {
    const std::string path =
        SpillDirectory(OrqHome()) + "/" + SpillName(id->job, *id->index, last.attempt, err);
    const int fd = OpenBeneath(path, O_RDONLY | O_NONBLOCK);
    struct stat st {};
    if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      char buffer[1 << 16];
      for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;)
        std::fwrite(buffer, 1, static_cast<size_t>(n), stdout);
      ::close(fd);
      std::fflush(stdout);
      return true;
    }
    if (fd >= 0) ::close(fd);
  }
  for (uint64_t offset = 0;;) {
    client.Send(LogsRequest{ToTask(task), err, false, /*rest=*/true, offset});
    // The broker answers within kRequestTimeout even when the worker it asked does not.
    auto reply = client.Receive(Clock::now() + 2 * kRequestTimeout);
    if (!reply) throw Unreachable("orq logs: no word from the broker while fetching the rest");
    const LogChunk chunk = Expect<LogChunk>(std::move(*reply), "orq logs");
    std::fwrite(chunk.text.data(), 1, chunk.text.size(), stdout);
    std::fflush(stdout);
    offset += chunk.text.size();
    if (!chunk.note.empty()) Say("orq logs: " + EscapeControls(chunk.note));
    if (chunk.final) return chunk.note.empty();
  }
}

ExitCode LogsVerb(const std::string& task, bool err, bool follow) {
  Connection client(FindBroker());
  client.Send(LogsRequest{ToTask(task), err, follow});
  for (;;) {
    auto reply = client.Receive(Clock::time_point::max());
    const LogChunk chunk = Expect<LogChunk>(std::move(*reply), "orq logs");
    if (!chunk.note.empty()) Say("orq logs: " + EscapeControls(chunk.note));
    std::fwrite(chunk.text.data(), 1, chunk.text.size(), stdout);
    std::fflush(stdout);
    if (!chunk.final) continue;
    // The output over the in-memory limit is in a file on its worker's host.
    if (!chunk.file.empty() && !PrintSpilled(client, task, err, chunk))
      return ExitCode::kFailed;  // printed what it had; the note says where the rest is
    return ExitCode::kOk;
  }
}

ExitCode CancelVerb(const std::vector<std::string>& ids) {
  Connection client(FindBroker());
  const auto cancelled = Expect<CancelledReply>(
      client.Request(CancelRequest{ToIds(ids)}, kRequestTimeout), "orq cancel");
  std::printf("cancelled %u task%s\n", cancelled.count, cancelled.count == 1 ? "" : "s");
  return ExitCode::kOk;
}

ExitCode ForgetVerb(const std::vector<std::string>& ids) {
  Connection client(FindBroker());
  const auto forgotten = Expect<ForgottenReply>(
      client.Request(ForgetRequest{ToJobs(ids)}, kRequestTimeout), "orq forget");
  std::printf("forgot %u job%s\n", forgotten.count, forgotten.count == 1 ? "" : "s");
  return ExitCode::kOk;
}

}  // namespace

Verb RegisterRun(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand(
      "run", "Run a job on a broker and workers started for this run; print results in order");
  auto* file = cmd->add_option("-f,--file", o->input.file,
                               "every task of a task file (JSON lines; '-' = stdin)");
  AddJobOptions(cmd, o->input)->excludes(file);
  auto* jobs = cmd->add_option(
      "-j,--jobs,-P,--max-procs", o->jobs,
      "tasks at once in all, as GNU parallel's -j: N, N% of the cores, +N or -N (default: cores)");
  cmd->add_option("-w,--workers", o->workers,
                  "worker processes the -j slots are split among, evenly (default: the cores, "
                  "or fewer so that they split evenly; alone: cores/W slots each, at least 1)")
      ->check(MoreThanZero());
  cmd->add_option("-t,--threads", o->threads,
                  "slots (and cpu threads) per worker, instead of -j: -w W -t T runs W x T")
      ->check(MoreThanZero())
      ->excludes(jobs);
  cmd->add_flag("--json", o->json, "one JSON object per task instead of text");
  cmd->add_flag("--tag", o->tag, "prefix each output line with the task's arguments and a tab");
  cmd->add_flag("--unordered", o->unordered, "print each result as it finishes, not in order");
  cmd->add_option("--halt", o->halt,
                  "stop at failures or successes: now|soon,fail|success=N|P% (GNU parallel's)");
  cmd->add_option("--joblog", o->input.joblog,
                  "log each task in GNU parallel's joblog columns to FILE");
  auto* resume = cmd->add_flag("--resume", o->input.resume,
                               "with --joblog: skip the tasks the joblog says ran");
  auto* resume_failed =
      cmd->add_flag("--resume-failed", o->input.resume_failed,
                    "with --joblog: skip the tasks the joblog says succeeded; run the rest");
  auto* retry_failed =
      cmd->add_flag("--retry-failed", o->input.retry_failed,
                    "with --joblog: run again the commands the joblog says failed");
  for (auto* flag : {resume, resume_failed, retry_failed}) flag->needs("--joblog");
  resume->excludes(resume_failed)->excludes(retry_failed);
  resume_failed->excludes(retry_failed);
  cmd->add_flag("--no-journal", o->no_journal, "keep the run's results in memory only");
  AddProgressFlags(cmd, o->progress, o->quiet);
  cmd->footer(
      "What to run, after the options: CMD ARGS... [::: ARGS...] [:::: FILE...] (every word from "
      "CMD on is the command's; '--' before it is accepted), lines on stdin, or a task file "
      "(FILE.json, FILE.jsonl or -f FILE).");
  return {cmd, [o] {
            TakeCommand(o->input, CommandWords(), CommandAfterDashes(), "orq run");
            return Run(*o);
          }};
}

Verb RegisterSubmit(CLI::App& app) {
  auto o = std::make_shared<JobInput>();
  auto* cmd = app.add_subcommand("submit", "Submit a job; prints its id once accepted");
  // What to run: a command (the words after the options), or one of these.
  auto* what = cmd->add_option_group("task", "what to run, unless a command (one of)");
  auto* sleep = what->add_option("--sleep", o->sleep, "a sleep task of SECONDS");
  sleep->check(ZeroOrMore());
  auto* lines = AddJobOptions(cmd, *o);
  for (CLI::Option* option : {
           what->add_option("-f,--file", o->file, "every task of a task file ('-' = stdin)"),
           sleep,
           what->add_option("--cpu", o->cpu, "a cpu task of MS milliseconds")->check(ZeroOrMore()),
           what->add_option("--echo", o->echo, "an echo task returning VALUE (JSON or text)"),
       }) {
    option->excludes(lines);
  }
  what->require_option(0, 1);
  cmd->add_option("--result", o->result, "the sleep task's result")->needs(sleep);
  cmd->add_option("--key", o->key,
                  "an idempotency key: while its job is kept, submitting it again prints that "
                  "job's id and submits nothing")
      ->check(CLI::Validator(
          [](std::string& key) -> std::string {
            if (key.empty() || key.size() > kMaxKeyBytes)
              return "a key is 1 to " + std::to_string(kMaxKeyBytes) + " bytes";
            return "";
          },
          "KEY"));
  cmd->footer(
      "What to run, after the options: CMD ARGS... [::: ARGS...] [:::: FILE...] (every word from "
      "CMD on is the command's; '--' before it is accepted), lines on stdin, or one of the task "
      "options.");
  return {cmd, [o] {
            TakeCommand(*o, CommandWords(), CommandAfterDashes(), "orq submit");
            return SubmitVerb(*o);
          }};
}

Verb RegisterGather(CLI::App& app) {
  auto o = std::make_shared<GatherOptions>();
  auto* cmd = app.add_subcommand("gather", "Wait for jobs or tasks; print results in order");
  cmd->add_option("ids", o->ids, "job ids (j7) or task ids (j7.2)")
      ->required()
      ->check(IdCheck(true));
  cmd->add_flag("--json", o->json, "one JSON object per task");
  cmd->add_flag("--tag", o->tag, "prefix each output line with the task's id and a tab");
  cmd->add_flag("--as-completed,--unordered", o->unordered,
                "print each result as it finishes, not in order");
  auto* first = cmd->add_flag("--first", o->first, "print the first result to finish, then stop");
  cmd->add_flag("--fail-fast", o->fail_fast, "stop at the first task that does not end ok (exit 1)")
      ->excludes(first);
  cmd->add_option("--status", o->status, "print only results of these statuses")
      ->check(CLI::IsMember(
          {"ok", "failed", "timeout", "cancelled", "worker_lost", "dependency_failed"}))
      ->delimiter(',');
  cmd->add_option("--timeout", o->timeout, "give up after SECONDS (exit 124)")->check(ZeroOrMore());
  AddProgressFlags(cmd, o->progress, o->quiet);
  return {cmd, [o] { return GatherVerb(*o); }};
}

Verb RegisterStatus(CLI::App& app) {
  struct Options {
    bool json = false;
    std::vector<std::string> jobs;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "status", "Show the broker, workers and task counts; or a job's progress and ETA");
  cmd->add_option("jobs", o->jobs, "job ids (j7): their counts and ETA")->check(IdCheck(false));
  cmd->add_flag("--json", o->json, "as JSON (one object per job)");
  return {cmd, [o] { return StatusVerb(o->json, o->jobs); }};
}

Verb RegisterJobs(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("jobs", "List the broker's jobs: age, tasks, outcomes, command");
  cmd->add_flag("--json", *json, "one JSON object per job");
  return {cmd, [json] { return JobsVerb(*json); }};
}

Verb RegisterRetry(CLI::App& app) {
  struct Options {
    std::string job;
    bool failed = false, all = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "retry", "Submit a job's tasks that did not end ok again, as a new job; prints its id");
  cmd->add_option("job", o->job, "the job (j7)")->required()->check(IdCheck(false));
  auto* failed =
      cmd->add_flag("--failed", o->failed, "the tasks that did not end ok (the default)");
  cmd->add_flag("--all", o->all, "every task of the job")->excludes(failed);
  return {cmd, [o] { return RetryVerb(o->job, o->all); }};
}

Verb RegisterLogs(CLI::App& app) {
  struct Options {
    std::string task;
    bool err = false, follow = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "logs", "Print a task's output: what it printed so far, or (--follow) as it prints it");
  cmd->add_option("task", o->task, "the task (j7.2)")->required()->check(TaskIdCheck());
  cmd->add_flag("--stderr", o->err, "its stderr instead of its stdout");
  cmd->add_flag("-f,--follow", o->follow, "print its output as it comes, until it ends");
  return {cmd, [o] { return LogsVerb(o->task, o->err, o->follow); }};
}

Verb RegisterCancel(CLI::App& app) {
  auto ids = std::make_shared<std::vector<std::string>>();
  auto* cmd = app.add_subcommand("cancel", "Cancel tasks not yet finished");
  cmd->add_option("ids", *ids, "job ids (j7) or task ids (j7.2)")->required()->check(IdCheck(true));
  return {cmd, [ids] { return CancelVerb(*ids); }};
}

Verb RegisterForget(CLI::App& app) {
  auto ids = std::make_shared<std::vector<std::string>>();
  auto* cmd = app.add_subcommand("forget", "Remove finished jobs and their results");
  cmd->add_option("ids", *ids, "job ids (j7)")->required()->check(IdCheck(false));
  return {cmd, [ids] { return ForgetVerb(*ids); }};
}

}  // namespace orq

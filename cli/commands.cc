// The verbs for jobs on a broker: `run` (all in one go, on a broker and workers of its own), and
// `submit`, `gather`, `status`, `cancel`, `forget` (against the running broker).
#include <signal.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <tuple>

#include "cli/client.h"
#include "cli/embedded.h"
#include "cli/format.h"
#include "cli/job_input.h"
#include "cli/results.h"
#include "cli/template.h"
#include "cli/verbs.h"
#include "common/ids.h"
#include "common/task_spec.h"

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

// The broker answered a request with an error: the sentence, as the exception for its exit code.
[[noreturn]] void Throw(const ErrorReply& error, const std::string& verb) {
  const std::string sentence = verb + ": " + error.message;
  switch (ExitCodeOf(error.code)) {
    case ExitCode::kUsage:
      throw UsageError(sentence);
    case ExitCode::kRefused:
      throw Refused(sentence);
    case ExitCode::kUnreachable:
      throw Unreachable(sentence);
    default:
      throw std::runtime_error(sentence);
  }
}

// The reply of type T, or the exception its error calls for.
template <typename T> T Expect(Message reply, const std::string& verb) {
  if (auto* error = std::get_if<ErrorReply>(&reply)) Throw(*error, verb);
  if (auto* t = std::get_if<T>(&reply)) return std::move(*t);
  throw std::runtime_error(verb + ": the broker sent an unexpected reply");
}

// CLI11 check: a job id (j7) or, with tasks, a task id (j7.2).
CLI::Validator IdCheck(bool tasks) {
  return CLI::Validator(
      [tasks](std::string& text) {
        auto id = ParseId(text);
        if (id && (tasks || !id->index)) return std::string();
        return "'" + text + "' is not a " + (tasks ? "job or task id (j7 or j7.2)" : "job id (j7)");
      },
      tasks ? "ID" : "JOB");
}

uint64_t Submit(Client& client, BuiltJob job) {
  return Expect<SubmittedReply>(
             client.Request(SubmitRequest{std::move(job.specs), std::move(job.context)},
                            kRequestTimeout),
             "orq submit")
      .job;
}

// ---- orq run ------------------------------------------------------------------------------------

struct RunOptions {
  JobInput input;
  int workers = 0;  // 0: cores
  int threads = 0;  // 0: cores
  bool json = false;
  bool no_journal = false;
  bool tag = false;
  bool unordered = false;
  std::string halt;
};

// What `orq run` knows of the tasks it built, for --tag, --json and --joblog.
LocalTasks Describe(const BuiltJob& job) {
  LocalTasks local;
  local.tags = job.tags;
  local.seqs = job.seqs;
  local.commands.reserve(job.specs.size());
  local.argv.reserve(job.specs.size());
  for (const TaskSpec& spec : job.specs) {
    const auto* shell = std::get_if<ShellTask>(&spec.body);
    if (!shell) {
      local.commands.push_back("(a " + std::string(KindName(spec)) + " task)");
      local.argv.emplace_back(nullptr);
      continue;
    }
    local.commands.push_back(ShellLine(shell->argv));
    const auto& a = shell->argv;
    if (a.size() == 3 && a[0] == "/bin/sh" && a[1] == "-c")
      local.argv.emplace_back(a[2]);  // "cmd"
    else
      local.argv.emplace_back(a);  // "argv"
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

ExitCode Run(RunOptions& options) {
  const auto start = Clock::now();
  JobInput& in = options.input;
  // `orq run FILE` runs a task file; `orq run -- CMD ...`, or a command with ::: sources, runs
  // the command.
  if (!CommandAfterDashes() && in.words.size() == 1 && in.lines.empty() && in.array.empty()) {
    in.file = in.words[0];
    in.words.clear();
  }
  if (in.words.empty() && in.file.empty() && in.lines.empty() && !in.retry_failed)
    throw UsageError(
        "give what to run: a task file, --lines FILE, or -- CMD ARGS... [::: ARGS...]");
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
    Say("orq: nothing to run: the joblog " + in.joblog + " has every task done");
    return ExitCode::kOk;
  }
  Joblog joblog;
  OpenJoblog(in, joblog);
  output.joblog = joblog.file;
  const LocalTasks local = Describe(built);
  InstallInterruptHandlers();
  EmbeddedBroker broker({options.workers > 0 ? options.workers : Cores(),
                         options.threads > 0 ? options.threads : Cores(), !options.no_journal});
  ExitCode code = ExitCode::kOk;
  GatherSummary summary;
  uint64_t job = 0;
  try {
    job = Submit(broker.client(), std::move(built));
    output.halt_job = job;
    code = Gather(broker.client(), {FormatJobId(job)}, output, &local, Clock::time_point::max(),
                  summary, nullptr, [] { return interrupted != 0; });
  } catch (const Unreachable& e) {
    if (!interrupted) throw Unreachable(std::string(e.what()) + "\n" + Tail(broker.log(), 10));
    Say("orq: interrupted; stopping the broker and its workers");
    code = ExitCode::kInterrupted;
    // Cancel first, so running tasks are stopped now rather than given the shutdown's grace.
    if (job) {
      try {
        broker.client().Request(CancelRequest{{FormatJobId(job)}}, milliseconds(2000));
      } catch (const std::exception&) {
        // Stop() below ends everything in any case.
      }
    }
  }
  broker.Stop();
  if (code == ExitCode::kInterrupted) return code;
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
  if (in.words.empty() && in.file.empty() && in.lines.empty() && !in.sleep && !in.cpu && !in.echo)
    throw UsageError(
        "give what to run: -- CMD ARGS... [::: ARGS...], --lines FILE, -f FILE, --sleep SECONDS, "
        "--cpu MS or --echo VALUE");
  BuiltJob built = BuildJob(in);
  if (in.dry_run) {
    PrintDryRun(built.specs, stdout);
    return ExitCode::kOk;
  }
  Client client(FindBroker());
  std::printf("%s\n", FormatJobId(Submit(client, std::move(built))).c_str());
  return ExitCode::kOk;
}

// ---- orq gather, status, cancel, forget --------------------------------------------------------

struct GatherOptions {
  std::vector<std::string> ids;
  bool json = false, tag = false, unordered = false, first = false, fail_fast = false;
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
  Client client(FindBroker());
  auto deadline = Clock::time_point::max();
  if (o.timeout)
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(*o.timeout));
  GatherSummary summary;
  const ExitCode code = Gather(client, o.ids, output, nullptr, deadline, summary);
  if (code == ExitCode::kTimeout)
    Say("orq gather: not finished after " + nlohmann::json(*o.timeout).dump() + " s");
  return code;
}

ExitCode StatusVerb(bool json) {
  Client client(FindBroker());
  const auto status =
      Expect<StatusReply>(client.Request(StatusRequest{}, kRequestTimeout), "orq status");
  if (json)
    std::printf("%s\n", StatusJson(status).dump().c_str());
  else
    PrintStatus(status, stdout);
  return ExitCode::kOk;
}

ExitCode CancelVerb(const std::vector<std::string>& ids) {
  Client client(FindBroker());
  const auto cancelled =
      Expect<CancelledReply>(client.Request(CancelRequest{ids}, kRequestTimeout), "orq cancel");
  std::printf("cancelled %u task%s\n", cancelled.count, cancelled.count == 1 ? "" : "s");
  return ExitCode::kOk;
}

ExitCode ForgetVerb(const std::vector<std::string>& ids) {
  Client client(FindBroker());
  const auto forgotten =
      Expect<ForgottenReply>(client.Request(ForgetRequest{ids}, kRequestTimeout), "orq forget");
  std::printf("forgot %u job%s\n", forgotten.count, forgotten.count == 1 ? "" : "s");
  return ExitCode::kOk;
}

}  // namespace

Verb RegisterRun(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand(
      "run", "Run a job on a broker and workers started for this run; print results in order");
  cmd->add_option("command", o->input.words,
                  "a task file (JSON lines, '-' = stdin), or [--] CMD ARGS... [::: ARGS...]");
  auto* lines = AddJobOptions(cmd, o->input);
  lines->excludes(cmd->get_option("command"));
  cmd->add_option("-w,--workers", o->workers, "worker processes (default: cores)")
      ->check(MoreThanZero());
  cmd->add_option("-t,--threads", o->threads, "threads per worker pool (default: cores)")
      ->check(MoreThanZero());
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
  return {cmd, [o] { return Run(*o); }};
}

Verb RegisterSubmit(CLI::App& app) {
  auto o = std::make_shared<JobInput>();
  auto* cmd = app.add_subcommand("submit", "Submit a job; prints its id once accepted");
  // What to run: one of these (CLI11 cannot put a positional in an option group, so "none" is
  // checked in SubmitVerb).
  auto* command =
      cmd->add_option("command", o->words, "a command: [--] CMD ARGS... [::: ARGS...] [:::: FILE]");
  auto* what = cmd->add_option_group("task", "what to run, unless -- CMD ARGS... (one of)");
  auto* sleep = what->add_option("--sleep", o->sleep, "a sleep task of SECONDS");
  sleep->check(ZeroOrMore());
  auto* lines = AddJobOptions(cmd, *o);
  for (CLI::Option* option : {
           what->add_option("-f,--file", o->file, "every task of a task file ('-' = stdin)"),
           sleep,
           what->add_option("--cpu", o->cpu, "a cpu task of MS milliseconds")->check(ZeroOrMore()),
           what->add_option("--echo", o->echo, "an echo task returning VALUE (JSON or text)"),
       }) {
    option->excludes(command);
    option->excludes(lines);
  }
  lines->excludes(command);
  what->require_option(0, 1);
  cmd->add_option("--result", o->result, "the sleep task's result")->needs(sleep);
  return {cmd, [o] { return SubmitVerb(*o); }};
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
      ->check(CLI::IsMember({"ok", "failed", "timeout", "cancelled", "worker_lost"}))
      ->delimiter(',');
  cmd->add_option("--timeout", o->timeout, "give up after SECONDS (exit 124)")->check(ZeroOrMore());
  return {cmd, [o] { return GatherVerb(*o); }};
}

Verb RegisterStatus(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("status", "Show the broker, workers and task counts");
  cmd->add_flag("--json", *json, "as a JSON object");
  return {cmd, [json] { return StatusVerb(*json); }};
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

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

struct Tally {
  size_t total = 0, ok = 0, failed = 0;
};

// Waits for the results of `ids` and prints them in order as the chunks arrive; kTimeout when
// `deadline` passes first.
ExitCode GatherAndPrint(Client& client, const std::vector<std::string>& ids, bool json,
                        Clock::time_point deadline, Tally& tally) {
  client.Send(GatherRequest{ids});
  std::vector<std::string> failures;
  for (;;) {
    auto reply = client.Receive(deadline);
    if (!reply) return ExitCode::kTimeout;
    const ResultsReply results = Expect<ResultsReply>(std::move(*reply), "orq gather");
    for (const TaskOutcome& o : results.outcomes) {
      ++tally.total;
      if (o.status == TaskStatus::kOk) {
        ++tally.ok;
      } else {
        ++tally.failed;
        failures.push_back(FailureSentence(o));
      }
      if (json) {
        std::string line = ToJson(o).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        line += '\n';
        std::fwrite(line.data(), 1, line.size(), stdout);
      } else {
        PrintText(o, stdout);
      }
    }
    if (results.final) break;
  }
  std::fflush(stdout);
  constexpr size_t kShown = 20;
  for (size_t i = 0; i < failures.size() && i < kShown; ++i) Say(failures[i]);
  if (failures.size() > kShown)
    Say("orq: ... and " + std::to_string(failures.size() - kShown) + " more tasks did not end ok");
  return tally.failed ? ExitCode::kTaskFailed : ExitCode::kOk;
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
};

ExitCode Run(RunOptions& options) {
  const auto start = Clock::now();
  JobInput& in = options.input;
  // `orq run FILE` runs a task file; `orq run -- CMD ...`, or a command with ::: sources, runs
  // the command.
  if (!CommandAfterDashes() && in.words.size() == 1 && in.lines.empty() && in.array.empty()) {
    in.file = in.words[0];
    in.words.clear();
  }
  if (in.words.empty() && in.file.empty() && in.lines.empty())
    throw UsageError(
        "give what to run: a task file, --lines FILE, or -- CMD ARGS... [::: ARGS...]");
  BuiltJob built = BuildJob(in);
  if (in.dry_run) {
    PrintDryRun(built.specs, stdout);
    return ExitCode::kOk;
  }
  InstallInterruptHandlers();
  EmbeddedBroker broker({options.workers > 0 ? options.workers : Cores(),
                         options.threads > 0 ? options.threads : Cores(), !options.no_journal});
  ExitCode code = ExitCode::kOk;
  Tally tally;
  uint64_t job = 0;
  try {
    job = Submit(broker.client(), std::move(built));
    code = GatherAndPrint(broker.client(), {FormatJobId(job)}, options.json,
                          Clock::time_point::max(), tally);
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
  std::fprintf(stderr, "%zu task%s: %zu ok, %zu failed in %.2f s\n", tally.total,
               tally.total == 1 ? "" : "s", tally.ok, tally.failed, elapsed);
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

ExitCode GatherVerb(const std::vector<std::string>& ids, bool json, std::optional<double> timeout) {
  Client client(FindBroker());
  auto deadline = Clock::time_point::max();
  if (timeout)
    deadline = Clock::now() +
               std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*timeout));
  Tally tally;
  const ExitCode code = GatherAndPrint(client, ids, json, deadline, tally);
  if (code == ExitCode::kTimeout)
    Say("orq gather: not finished after " + nlohmann::json(*timeout).dump() + " s");
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
                  "a task file (JSON lines, '-' = stdin), or -- CMD ARGS... [::: ARGS...]");
  auto* lines = AddJobOptions(cmd, o->input);
  lines->excludes(cmd->get_option("command"));
  cmd->add_option("-w,--workers", o->workers, "worker processes (default: cores)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("-t,--threads", o->threads, "threads per worker pool (default: cores)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", o->json, "one JSON object per task instead of text");
  cmd->add_flag("--no-journal", o->no_journal, "keep the run's results in memory only");
  return {cmd, [o] { return Run(*o); }};
}

Verb RegisterSubmit(CLI::App& app) {
  auto o = std::make_shared<JobInput>();
  auto* cmd = app.add_subcommand("submit", "Submit a job; prints its id once accepted");
  // What to run: one of these (CLI11 cannot put a positional in an option group, so "none" is
  // checked in SubmitVerb).
  auto* command =
      cmd->add_option("command", o->words, "a command: -- CMD ARGS... [::: ARGS...] [:::: FILE]");
  auto* what = cmd->add_option_group("task", "what to run, unless -- CMD ARGS... (one of)");
  auto* sleep = what->add_option("--sleep", o->sleep, "a sleep task of SECONDS");
  sleep->check(CLI::NonNegativeNumber);
  auto* lines = AddJobOptions(cmd, *o);
  for (CLI::Option* option : {
           what->add_option("-f,--file", o->file, "every task of a task file ('-' = stdin)"),
           sleep,
           what->add_option("--cpu", o->cpu, "a cpu task of MS milliseconds")
               ->check(CLI::NonNegativeNumber),
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
  struct Options {
    std::vector<std::string> ids;
    bool json = false;
    std::optional<double> timeout;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("gather", "Wait for jobs or tasks; print results in order");
  cmd->add_option("ids", o->ids, "job ids (j7) or task ids (j7.2)")
      ->required()
      ->check(IdCheck(true));
  cmd->add_flag("--json", o->json, "one JSON object per task");
  cmd->add_option("--timeout", o->timeout, "give up after SECONDS (exit 124)")
      ->check(CLI::NonNegativeNumber);
  return {cmd, [o] { return GatherVerb(o->ids, o->json, o->timeout); }};
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

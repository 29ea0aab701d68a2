// The CLI's verbs. Each registers itself: Register*(app) adds its subcommand with its options and
// CLI11's checks (ranges, excludes, needs, IsMember, delimiters) and returns the function that runs
// it once the command line has parsed. main() (cli/main.cc) registers the one named, parses, runs
// the chosen one and turns what escapes into an exit code (common/errors.h) in one place.
//
// To add a verb: write its Register function in the file of its group, list it here and in
// AllVerbs() (cli/verbs.cc), and document it in docs/CLI.md (and a line in the README's table of
// verbs).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "common/errors.h"
#include "common/keys.h"
#include "common/protocol.h"
#include "common/task_spec.h"

namespace orq {

struct Verb {
  CLI::App* command;               // the subcommand; run when it was given
  std::function<ExitCode()> main;  // reads the options the parse filled in
};

// cli/commands.cc: jobs on a broker
Verb RegisterRun(CLI::App& app);
Verb RegisterSubmit(CLI::App& app);
Verb RegisterGather(CLI::App& app);
Verb RegisterStatus(CLI::App& app);
Verb RegisterCancel(CLI::App& app);
Verb RegisterForget(CLI::App& app);
Verb RegisterJobs(CLI::App& app);
Verb RegisterRetry(CLI::App& app);
Verb RegisterLogs(CLI::App& app);
// cli/coordination.cc: limits and explain
Verb RegisterLimit(CLI::App& app);
Verb RegisterExplain(CLI::App& app);
// cli/serve.cc: the broker and workers
Verb RegisterUp(CLI::App& app);
Verb RegisterDown(CLI::App& app);
Verb RegisterScale(CLI::App& app);
Verb RegisterBroker(CLI::App& app);
Verb RegisterWorker(CLI::App& app);
// cli/watch.cc: events and the dashboard
Verb RegisterEvents(CLI::App& app);
Verb RegisterDashboard(CLI::App& app);
// cli/access.cc
Verb RegisterAccess(CLI::App& app);
// Allows a new key `name` (a worker key scoped to `queues` and `resources` when given), writes
// its access file at `file` (which must not exist) and tells the running broker; the endpoints
// are the broker's --listen ones unless given. UsageError with the sentence otherwise.
AccessFile AddAccessKey(const KeyStore& store, Role role, const std::string& name,
                        const std::string& file, const std::vector<std::string>& endpoints,
                        const std::vector<std::string>& queues,
                        const std::optional<std::vector<ResourceNeed>>& resources);
// Takes key `name` off the allow-list and tells the running broker; false when it was not there.
bool RevokeAccessKey(const KeyStore& store, const std::string& name);
// cli/alloc.cc: allocation queues (Slurm)
Verb RegisterAlloc(CLI::App& app);
// cli/bench.cc
Verb RegisterBench(CLI::App& app);
// cli/docs.cc: completion, the man page, and each verb's examples
Verb RegisterCompletion(CLI::App& app);
Verb RegisterManpage(CLI::App& app);
// Ends each verb's --help with its examples (after every verb is registered).
void AddExamples(CLI::App& app);

// --resources NAME=N,... as given to orq worker, orq up and orq access add: each NAME a name,
// each N from 1 to kMaxResourceUnits, no NAME twice; else UsageError with the sentence.
std::vector<ResourceNeed> ParseResources(const std::vector<std::string>& items);

// Every verb, under the name of the subcommand its Register function adds: main() registers only
// the one a command line names.
struct VerbEntry {
  std::string_view name;
  Verb (*registrar)(CLI::App&);
};
std::span<const VerbEntry> AllVerbs();

// Shared by the verbs.
// run and submit: the command and its input sources, every word after orq's options (main() splits
// the command line there, as GNU parallel does: a word after the command is never orq's option).
const std::vector<std::string>& CommandWords();
// Whether the command came after a "--": then even one word is a command, never a task file.
bool CommandAfterDashes();
// Where orq's options end on a command line (args[0] the program) of a verb that takes a command
// (run, submit), as GNU parallel reads its own: at "--", at the first word that is neither an
// option of the verb's or of orq's nor an option's value, or just after an unknown option (CLI11
// refuses that one, with its hint). CLI11 parses args[0, options_end); the command and its input
// sources are args[command_at...], none of them ever taken for an option of orq's. nullopt for
// the other verbs.
struct CommandSplit {
  int options_end, command_at;
  bool dashes;
};
std::optional<CommandSplit> SplitAtCommand(const CLI::App& app,
                                           const std::vector<std::string>& args);
// Number checks whose sentence says what is accepted ("--timeout: must be more than 0, not -5"),
// where CLI11's own print the whole range of a double.
CLI::Validator MoreThanZero();
CLI::Validator ZeroOrMore();
// A length of time: "90s", "2m", "1h30m", "1d", Slurm's "[D-]HH:MM:SS" or a number of seconds;
// the option's value becomes its seconds. nullopt from ParseDuration when the text is not one.
std::optional<uint64_t> ParseDuration(std::string_view text);
CLI::Validator DurationCheck();
// A job id (j7) or, with tasks, a task id (j7.2).
CLI::Validator IdCheck(bool tasks);
// A task id (j7.2).
CLI::Validator TaskIdCheck();
// Ids the checks above passed, as the wire carries them. A text that is not one (a caller that
// skipped the check) is a UsageError naming it.
std::vector<IdRef> ToIds(const std::vector<std::string>& texts);
std::vector<uint64_t> ToJobs(const std::vector<std::string>& texts);
TaskId ToTask(const std::string& text);

// "; did you mean --timeout?" when `word` is a near miss of one of `app`'s options or
// subcommands (edit distance at most 2, or a prefix); "" otherwise.
std::string DidYouMean(const CLI::App& app, const std::string& word);
void Say(const std::string& sentence);  // one line on stderr
int Cores();                            // the machine's, at least 1
// The last `lines` lines of a log file, indented, for a sentence about what went wrong.
std::string Tail(const std::string& file, size_t lines);

// Registers every verb and the global options, parses the command line, runs the chosen verb and
// returns its exit code: the whole of main().
int Main(int argc, char** argv);

}  // namespace orq

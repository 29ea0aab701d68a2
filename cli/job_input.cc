#include "cli/job_input.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "cli/results.h"
#include "cli/template.h"
#include "cli/verbs.h"
#include "client/connection.h"
#include "common/errors.h"
#include "common/ids.h"
#include "common/task_spec.h"

extern char** environ;

namespace orq {
namespace {

// A whole file ("-" = stdin). Throws UsageError naming the file and, via `flag`, how it was given.
std::string ReadWhole(const std::string& file, const std::string& what) {
  if (file == "-") {
    std::ostringstream text;
    text << std::cin.rdbuf();
    return text.str();
  }
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw UsageError(file + " is a directory; " + what + " is a file");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw UsageError("cannot read " + file + " (" + what + "): " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw UsageError("cannot read " + file + " (" + what + ")");
  return text.str();
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<TaskSpec> TaskFileSpecs(const std::string& file) {
  const std::string text = ReadWhole(file, "a task file");
  const std::string name = file == "-" ? "<stdin>" : file;
  // A file of shell commands given as a task file: say so, and name --lines. (The first line that
  // is not blank tells; the file is not split for it.)
  if (const size_t first = text.find_first_not_of(" \t\r\n");
      first != std::string::npos && text[first] != '{') {
    const size_t number =
        1 + static_cast<size_t>(
                std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(first), '\n'));
    throw UsageError(name + ":" + std::to_string(number) +
                     ": not JSON: a task file holds one JSON object per line; to run each line "
                     "as a shell command, use --lines " +
                     file);
  }
  std::istringstream in(text);
  auto parsed = ParseTaskFile(in, name);
  if (!parsed) throw UsageError(parsed.error().sentence + "; nothing was submitted");
  return std::move(*parsed);
}

TaskSpec Shell(std::vector<std::string> argv) {
  TaskSpec spec;
  spec.body = ShellTask{std::move(argv), nullptr};
  return spec;
}

void LinesSpecs(const std::string& file, BuiltJob& job) {
  for (std::string& line : SplitLines(ReadWhole(file, "--lines"))) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    job.tags.push_back(line);
    job.specs.push_back(Shell({"/bin/sh", "-c", std::move(line)}));
  }
  if (job.specs.empty())
    throw UsageError("--lines " + file + ": no commands in it (one shell command per line)");
}

// --retry-failed: the commands of the joblog's failed entries, with their Seq.
void RetrySpecs(const JobInput& in, BuiltJob& job) {
  if (in.joblog.empty()) throw UsageError("--retry-failed needs --joblog FILE");
  if (!in.words.empty() || !in.lines.empty() || !in.file.empty())
    throw UsageError("--retry-failed takes its commands from the joblog " + in.joblog +
                     "; drop the command");
  std::map<uint64_t, JoblogEntry> last;
  for (auto& [seq, entry] : ReadJoblog(in.joblog)) last[seq] = std::move(entry);
  for (auto& [seq, entry] : last) {
    if (entry.ok) continue;
    job.tags.push_back(entry.command);
    job.seqs.push_back(seq);
    job.specs.push_back(Shell({"/bin/sh", "-c", entry.command}));
  }
}

// --resume / --resume-failed: drops the tasks the joblog says ran (succeeded), by Seq.
void SkipDone(const JobInput& in, BuiltJob& job) {
  if (in.joblog.empty())
    throw UsageError(std::string(in.resume ? "--resume" : "--resume-failed") +
                     " needs --joblog FILE");
  std::map<uint64_t, bool> ok;
  for (auto& [seq, entry] : ReadJoblog(in.joblog)) ok[seq] = entry.ok;
  BuiltJob kept;
  kept.context = std::move(job.context);
  for (size_t i = 0; i < job.specs.size(); ++i) {
    auto it = ok.find(job.seqs[i]);
    if (it != ok.end() && (in.resume || it->second)) continue;
    kept.specs.push_back(std::move(job.specs[i]));
    kept.tags.push_back(std::move(job.tags[i]));
    kept.seqs.push_back(job.seqs[i]);
  }
  job = std::move(kept);
}

// A `::::` file's lines ("-" = stdin), without a '\r' before each '\n'.
std::vector<std::string> SourceLines(const std::string& file) {
  std::vector<std::string> lines = SplitLines(ReadWhole(file, "an input source (::::)"));
  for (auto& l : lines) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
  }
  return lines;
}

// The command with its ::: sources; with --array, the array is its one source; with neither and
// stdin_lines, stdin's lines are.
void CommandSpecs(const JobInput& in, BuiltJob& job) {
  CommandTemplate t = ParseCommandTemplate(in.words, SourceLines);
  const bool array = !in.array.empty();
  if (array) {
    if (!t.sources.empty())
      throw UsageError("--array and ::: both give the tasks' arguments; use one of them");
    InputSource source{{}, false, "--array"};
    for (int64_t n : ParseArray(in.array)) source.values.push_back(std::to_string(n));
    t.sources.push_back(std::move(source));
  } else if (t.sources.empty() && in.stdin_lines) {
    t.sources.push_back({SourceLines("-"), false, "stdin"});
    if (t.sources[0].values.empty()) return;  // nothing piped in: nothing to run
  }
  if (t.command.empty() && t.sources.empty())
    throw UsageError("give a command, e.g. orq submit echo hello");
  if (t.sources.empty()) {  // one task; under sh -c when it needs a shell (NeedsShell)
    job.specs.push_back(NeedsShell(t.command) ? Shell({"/bin/sh", "-c", JoinedLine(t.command)})
                                              : Shell(t.command));
    job.tags.push_back(ShellLine(std::get<ShellTask>(job.specs.back().body).argv));
    return;
  }
  const auto tuples = CombineSources(t.sources, kMaxTasksPerJob);
  if (tuples.empty()) throw UsageError("the input sources are empty: no tasks to run");
  job.specs.reserve(tuples.size());
  job.tags.reserve(tuples.size());
  const bool shell = NeedsShell(t.command);  // the template's: the same for every task
  for (size_t i = 0; i < tuples.size(); ++i) {
    // An array's index is in $ORQ_ARRAY_ID (HyperQueue's HQ_TASK_ID) and {}; it is not appended.
    TaskSpec spec = Shell(ExpandCommand(t.command, shell, tuples[i], i + 1, /*append=*/!array));
    if (array)
      std::get<ShellTask>(spec.body).place = std::make_shared<const ShellTask::Place>(
          ShellTask::Place{"", {"ORQ_ARRAY_ID=" + tuples[i][0]}});
    job.specs.push_back(std::move(spec));
    std::string tag;  // GNU parallel's --tag: the arguments, space-separated
    for (const std::string& a : tuples[i]) tag += (tag.empty() ? "" : " ") + a;
    job.tags.push_back(std::move(tag));
  }
}

}  // namespace

std::vector<int64_t> ParseArray(const std::string& text) {
  auto bad = [&] {
    return UsageError("--array takes ranges such as 1-100, 0-99:10 or 1,4,9; not '" + text + "'");
  };
  std::vector<int64_t> values;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, ',');) {
    int64_t first = 0, last = 0, step = 1;
    char dash = 0, colon = 0;
    std::istringstream p(part);
    if (!(p >> first)) throw bad();
    last = first;
    if (p >> dash) {
      if (dash != '-' || !(p >> last)) throw bad();
      if (p >> colon) {
        if (colon != ':' || !(p >> step) || step <= 0) throw bad();
      }
    }
    std::string rest;
    if (p >> rest) throw bad();
    if (last < first) throw bad();
    if (static_cast<uint64_t>((last - first) / step) + values.size() >= kMaxTasksPerJob)
      throw UsageError("--array " + text + " makes more than " + std::to_string(kMaxTasksPerJob) +
                       " tasks, the most a job may hold");
    for (int64_t v = first; v <= last; v += step) values.push_back(v);
  }
  if (values.empty()) throw bad();
  return values;
}

void TakeCommand(JobInput& in, const std::vector<std::string>& words, bool after_dashes,
                 const std::string& verb) {
  in.words = words;
  struct stat st {};
  in.stdin_lines =
      ::fstat(0, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISREG(st.st_mode));
  if (after_dashes || words.size() != 1 || !in.file.empty() || !in.lines.empty() ||
      !in.array.empty())
    return;
  const std::string& word = words[0];
  auto ends = [&](const std::string& suffix) {
    return word.size() > suffix.size() &&
           word.compare(word.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (word == "-" || ends(".json") || ends(".jsonl")) {
    in.file = word;
    in.words.clear();
    return;
  }
  // A file named as a command by mistake (its lines are a common thing to pipe in, so then only a
  // path with a '/' is looked at: `ls | orq run gzip` runs gzip whatever this directory holds).
  if ((in.stdin_lines && word.find('/') == std::string::npos) || ::stat(word.c_str(), &st) != 0)
    return;
  const std::string ways = ": -f " + ShellQuote(word) + " runs a task file (JSON lines), --lines " +
                           ShellQuote(word) + " runs each line as a shell command, and " + verb +
                           " -- " + ShellQuote(word) + " runs it as a program";
  if (S_ISDIR(st.st_mode)) throw UsageError(word + " is a directory, not a program or a file");
  if (S_ISREG(st.st_mode) && ::access(word.c_str(), X_OK) != 0)
    throw UsageError(word + " is a file and not a program" + ways);
}

CLI::Option* AddJobOptions(CLI::App* cmd, JobInput& in) {
  auto* lines = cmd->add_option("--lines", in.lines,
                                "one shell command per line of FILE ('-' = stdin), a task each");
  cmd->add_option("--array", in.array,
                  "a task per number of RANGE (1-100, 0-99:10, 1,4,9): {} and $ORQ_ARRAY_ID");
  cmd->add_option("--delay", in.delay, "seconds before the tasks are eligible")
      ->check(ZeroOrMore());
  cmd->add_option("--timeout", in.timeout, "seconds a task may run")->check(MoreThanZero());
  cmd->add_option("--priority", in.priority, "higher runs first (default 0)");
  cmd->add_option("--attempts", in.attempts,
                  "executions that may be lost with their worker (default 3)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--retries", in.retries,
                  "runs in all of a task that fails on its own, one at once after another, as "
                  "GNU parallel's --retries (default 1)")
      ->check(CLI::Range(0, 1000000));
  cmd->add_option("--retry-backoff", in.retry_backoff,
                  "BASE,MAX seconds of exponential backoff between runs (default: none)")
      ->delimiter(',');
  cmd->add_option("--after", in.after,
                  "run after these jobs or tasks (j3, j4.2) ended ok; else end dependency_failed")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(IdCheck(true));
  cmd->add_option("--after-any", in.after_any,
                  "run after these jobs or tasks ended, however they ended")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(IdCheck(true));
  cmd->add_option("--cpus", in.cpus, "cpus each task takes of its worker's (shell default 1)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--resource", in.resources,
                  "NAME=N units of a worker resource each task takes (repeatable): gpu=1")
      ->delimiter(',')
      ->allow_extra_args(false);
  cmd->add_option("--queue", in.queue, "the named queue the tasks go to (orq worker --queues)");
  cmd->add_option("--time-request", in.time_request,
                  "how long each task needs to run (90s, 10m): a worker that has less time left "
                  "(its allocation ends sooner) is not given it")
      ->transform(DurationCheck());
  cmd->add_option("--limit", in.limits,
                  "a limit each task takes (orq limit set NAME N): at most N run at once")
      ->delimiter(',')
      ->allow_extra_args(false);
  cmd->add_option("--lock", in.locks,
                  "NAME:read or NAME:write: a cluster-wide readers-writer lock each task holds")
      ->delimiter(',')
      ->allow_extra_args(false);
  cmd->add_option("--cwd", in.cwd,
                  "where shell tasks run (default: this directory, recorded at submit)");
  cmd->add_option("--env", in.env,
                  "NAME=VALUE for shell tasks (repeatable); NAME alone passes this value on")
      ->allow_extra_args(false);  // one value per --env, so "--env A=1 -- cmd" ends at --
  cmd->add_flag("--clean-env", in.clean_env,
                "shell tasks get only --env and ORQ_*, not this environment");
  cmd->add_flag("--env-all", in.env_all,
                "remote workers get this whole environment too (default: only --env's; they "
                "run tasks in their own with those on top)");
  cmd->add_flag("--dry-run", in.dry_run, "print each task's command line; submit nothing");
  return lines;
}

namespace {

// The coordination options as Needs, to add to every task's own; null when none was given.
std::shared_ptr<const Needs> OptionNeeds(const JobInput& in) {
  Needs needs;
  for (const bool any : {false, true}) {
    for (const std::string& text : any ? in.after_any : in.after) {
      auto id = ParseId(text);  // IdCheck passed it
      if (!id || id->job == 0) throw UsageError("--after " + text + ": not a job or task id");
      needs.after.push_back({id->job, id->index.value_or(0), !id->index, any});
    }
  }
  if (in.cpus) needs.cpus = static_cast<uint32_t>(*in.cpus);
  for (const std::string& r : in.resources) {
    const size_t eq = r.find('=');
    ResourceNeed need{r.substr(0, eq), 1};
    if (eq != std::string::npos) {
      const std::string amount = r.substr(eq + 1);
      char* end = nullptr;
      const long n = std::strtol(amount.c_str(), &end, 10);
      if (amount.empty() || *end || n < 1 || n > 1000000)
        throw UsageError("--resource " + r + ": the amount must be a whole number from 1");
      need.amount = static_cast<uint32_t>(n);
    }
    if (auto error = ValidateName(need.name, "--resource"); !error.ok())
      throw UsageError(error.error().sentence);
    if (need.name == "cpus") {
      needs.cpus = need.amount;
      continue;
    }
    needs.resources.push_back(std::move(need));
  }
  needs.queue = in.queue;
  needs.limits = in.limits;
  for (const std::string& l : in.locks) {
    const size_t colon = l.rfind(':');
    const std::string mode = colon == std::string::npos ? "" : l.substr(colon + 1);
    if (mode != "read" && mode != "write")
      throw UsageError("--lock " + l + ": give NAME:read or NAME:write");
    needs.locks.push_back(
        {l.substr(0, colon), mode == "read" ? LockMode::kRead : LockMode::kWrite});
  }
  if (in.time_request) {
    if (*in.time_request < 1 || *in.time_request > kMaxTimeRequest)
      throw UsageError("--time-request must be from 1 s to a year, not " +
                       std::to_string(*in.time_request) + " s");
    needs.time_request = static_cast<uint32_t>(*in.time_request);
  }
  if (needs == Needs{}) return nullptr;
  return MakeNeeds(std::move(needs));
}

// `extra` on top of what the task file gave the task: lists joined, single values replaced.
std::shared_ptr<const Needs> Merge(const std::shared_ptr<const Needs>& own, const Needs& extra) {
  if (!own) return MakeNeeds(extra);
  Needs n = *own;
  n.after.insert(n.after.end(), extra.after.begin(), extra.after.end());
  if (extra.cpus) n.cpus = extra.cpus;
  for (const ResourceNeed& r : extra.resources) {
    std::erase_if(n.resources, [&](const ResourceNeed& x) { return x.name == r.name; });
    n.resources.push_back(r);
  }
  if (!extra.queue.empty()) n.queue = extra.queue;
  if (extra.time_request > 0) n.time_request = extra.time_request;
  n.limits.insert(n.limits.end(), extra.limits.begin(), extra.limits.end());
  for (const LockNeed& l : extra.locks) {
    std::erase_if(n.locks, [&](const LockNeed& x) { return x.name == l.name; });
    n.locks.push_back(l);
  }
  return MakeNeeds(std::move(n));
}

}  // namespace

BuiltJob BuildJob(const JobInput& in) {
  if (in.retry_backoff &&
      !(0 <= in.retry_backoff->first && in.retry_backoff->first <= in.retry_backoff->second))
    throw UsageError("--retry-backoff BASE,MAX needs 0 <= BASE <= MAX (seconds)");
  BuiltJob job;
  if (in.retry_failed) {
    RetrySpecs(in, job);
  } else if (!in.file.empty()) {
    job.specs = TaskFileSpecs(in.file);
  } else if (!in.lines.empty()) {
    if (!in.words.empty())
      throw UsageError("--lines " + in.lines + " gives the commands; drop the command (" +
                       ShellQuote(in.words[0]) + ")");
    LinesSpecs(in.lines, job);
  } else if (in.sleep || in.cpu || in.echo) {
    TaskSpec spec;
    if (in.sleep) {
      spec.body = SleepTask{*in.sleep, in.result ? nlohmann::json(*in.result).dump() : ""};
    } else if (in.cpu) {
      spec.body = CpuTask{*in.cpu};
    } else {
      auto value = nlohmann::json::parse(*in.echo, nullptr, false);
      spec.body = EchoTask{(value.is_discarded() ? nlohmann::json(*in.echo) : value).dump()};
    }
    job.specs.push_back(std::move(spec));
  } else {
    CommandSpecs(in, job);
  }
  job.tags.resize(job.specs.size());  // "": the task's id
  if (job.seqs.empty()) {
    for (size_t i = 0; i < job.specs.size(); ++i) job.seqs.push_back(i + 1);
  }
  if (in.resume || in.resume_failed) SkipDone(in, job);
  if (job.specs.size() > kMaxTasksPerJob)
    throw UsageError("the job has " + std::to_string(job.specs.size()) +
                     " tasks; a job may hold at most " + std::to_string(kMaxTasksPerJob));
  bool shell = false;
  const std::shared_ptr<const Needs> needs = OptionNeeds(in);
  for (TaskSpec& spec : job.specs) {  // options given on the command line apply to every task
    if (needs) spec.needs = spec.needs ? Merge(spec.needs, *needs) : needs;
    if (in.delay) spec.delay = *in.delay;
    if (in.timeout) spec.timeout = *in.timeout;
    if (in.priority) spec.priority = *in.priority;
    if (in.attempts) spec.attempts = static_cast<uint32_t>(*in.attempts);
    if (in.retries) {  // GNU parallel's meaning: runs in all (0 as 1), the next one at once
      spec.retries = static_cast<uint32_t>(std::max(*in.retries, 1) - 1);
      spec.backoff_base = spec.backoff_max = 0;
    }
    if (in.retry_backoff) std::tie(spec.backoff_base, spec.backoff_max) = *in.retry_backoff;
    if (auto error = ValidateSpec(spec); !error.ok()) throw UsageError(error.error().sentence);
    shell = shell || RunsInContext(spec);
  }
  // Only a job with shell or python tasks carries the submitter's directory and environment.
  if (shell) job.context = SubmitterContext(in.cwd, in.env, in.env_all, in.clean_env);
  return job;
}

void PrintDryRun(const std::vector<TaskSpec>& specs, std::FILE* out) {
  for (const TaskSpec& spec : specs) {
    std::string line;
    if (const auto* shell = std::get_if<ShellTask>(&spec.body))
      line = ShellLine(shell->argv);
    else
      line = "(a " + std::string(KindName(spec)) + " task)";
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), out);
  }
}

}  // namespace orq

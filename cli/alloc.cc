// `orq alloc`: allocation queues, through which the broker asks a batch system (Slurm) for workers
// while tasks wait and lets them go when the work is done (the policy: alloc/policy.h; the
// broker's side: broker/allocator.h).
//   orq alloc add slurm [--name N] --time-limit 30m [--workers-per-alloc K] [--max-workers M]
//                       [--backlog B] [--idle-timeout 2m] [--worker-args "..."] [--queues Q,...]
//                       [--resources R=N,...] -- SBATCH_ARGS...
//   orq alloc dry-run slurm (the same options)   prints the script and sbatch command, and asks
//                                                sbatch --test-only whether Slurm would take it
//   orq alloc list [--json] | info NAME [--json] | pause NAME | resume NAME | rm NAME [--keep]
// `add` makes the queue's worker key (its access file in $ORQ_HOME/alloc/NAME, scoped to the
// queue's queues and resources), and `rm` revokes it unless --keep.
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "alloc/slurm.h"
#include "cli/format.h"
#include "cli/verbs.h"
#include "client/connection.h"
#include "common/keys.h"
#include "common/paths.h"
#include "common/process.h"
#include "common/text.h"

namespace orq {
namespace {

struct AllocOptions {
  std::string backend;
  std::string name;
  uint64_t time_limit_s = 0;
  uint32_t workers_per_alloc = 1;
  uint32_t max_workers = 4;
  uint32_t backlog = 1;
  uint64_t idle_timeout_s = 120;
  std::string worker_args;  // as one string; Words() splits it (quotes group words)
  std::vector<std::string> queues, resources;
  std::vector<std::string> backend_args;
  bool json = false;
  bool keep = false;
};

// "a b 'c d'" into words: spaces separate, single or double quotes group.
std::vector<std::string> Words(const std::string& text, const std::string& flag) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (char c : text) {
    if (quote) {
      if (c == quote)
        quote = 0;
      else
        word += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(std::exchange(word, {}));
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (quote) throw UsageError(flag + ": a quote is not closed in '" + text + "'");
  if (in_word) words.push_back(word);
  return words;
}

void AddQueueOptions(CLI::App* cmd, AllocOptions& o) {
  cmd->add_option("backend", o.backend, "the batch system: slurm")
      ->required()
      ->check(CLI::IsMember({"slurm"}));
  cmd->add_option("--name", o.name, "the queue's name (default: the backend's, then -2, -3...)");
  cmd->add_option("--time-limit", o.time_limit_s,
                  "each allocation's time limit (sbatch --time): 30m, 2h, 1-00:00:00")
      ->required()
      ->transform(DurationCheck());
  cmd->add_option("--workers-per-alloc", o.workers_per_alloc,
                  "workers each allocation starts (sbatch --ntasks; default 1)")
      ->check(CLI::Range(1, 10000));
  cmd->add_option("--max-workers", o.max_workers,
                  "workers of all its allocations at once, at most (default 4)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--backlog", o.backlog,
                  "allocations waiting in Slurm's queue at once, at most (default 1)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--idle-timeout", o.idle_timeout_s,
                  "a worker with no task this long leaves (default 2m)")
      ->transform(DurationCheck());
  cmd->add_option("--worker-args", o.worker_args,
                  "more options for each worker, as one string: \"-t 4 --shell-slots 8\"");
  cmd->add_option("--queues", o.queues, "the queues its workers take tasks from (default: all)")
      ->delimiter(',');
  cmd->add_option("--resources", o.resources, "what its workers offer: gpu=2,cpus=8")
      ->delimiter(',');
  cmd->add_option("sbatch_args", o.backend_args,
                  "after --: sbatch's own options for each allocation (-p PARTITION, -A ACCOUNT)");
}

AllocQueueSpec SpecOf(const AllocOptions& o, const std::string& name) {
  AllocQueueSpec spec;
  spec.name = name;
  spec.backend = o.backend;
  spec.time_limit_s = o.time_limit_s;
  spec.workers_per_alloc = o.workers_per_alloc;
  spec.max_workers = o.max_workers;
  spec.backlog = o.backlog;
  spec.idle_timeout_s = o.idle_timeout_s;
  spec.worker_args = Words(o.worker_args, "--worker-args");
  spec.queues = o.queues;
  spec.resources = ParseResources(o.resources);
  spec.backend_args = o.backend_args;
  if (auto error = CheckAllocSpec(spec); !error.ok()) throw UsageError(error.error().sentence);
  return spec;
}

SlurmSetup Setup() { return {SelfExecutable(), OrqHome()}; }

std::string AccessFileOf(const std::string& queue) {
  return AllocDirectory(Setup(), queue) + "/worker.access";
}

std::vector<AllocQueueInfo> Request(AllocRequest request, const std::string& verb) {
  Connection client(FindBroker());
  return Expect<AllocReply>(client.Request(request, kRequestTimeout), verb).queues;
}

std::string Clock(double t) {
  if (t <= 0) return "-";
  const auto seconds = static_cast<std::time_t>(t);
  std::tm tm{};
  localtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%H:%M:%S", &tm);
  return text;
}

void PrintQueues(const std::vector<AllocQueueInfo>& queues, bool json) {
  if (json) {
    for (const AllocQueueInfo& q : queues) std::printf("%s\n", JsonLine(AllocQueueJson(q)).c_str());
    return;
  }
  if (queues.empty()) std::printf("no allocation queues (orq alloc add slurm ...)\n");
  for (const AllocQueueInfo& q : queues) std::printf("%s\n", AllocQueueLine(q).c_str());
}

ExitCode Add(const AllocOptions& o) {
  const std::string verb = "orq alloc add";
  std::string name = o.name;
  if (name.empty()) {  // the backend's name, or the first of NAME-2, NAME-3... that is free
    const auto queues = Request({AllocRequest::Op::kList}, verb);
    for (int n = 1; name.empty(); ++n) {
      const std::string candidate = o.backend + (n == 1 ? "" : "-" + std::to_string(n));
      if (std::none_of(queues.begin(), queues.end(),
                       [&](const AllocQueueInfo& q) { return q.spec.name == candidate; }))
        name = candidate;
    }
  }
  AllocRequest request{AllocRequest::Op::kAdd, name, SpecOf(o, name), AccessFileOf(name)};
  // The queue's own worker key, scoped to what its workers offer.
  const KeyStore store(KeysDir(OrqHome()));
  MakePrivateDirectory(AllocDirectory(Setup(), name), "the allocation queue's directory");
  std::optional<std::vector<ResourceNeed>> scope;
  if (!request.spec.resources.empty()) scope = request.spec.resources;
  AddAccessKey(store, Role::kWorker, AllocationKeyName(name), request.access_file, {},
               request.spec.queues, scope);
  std::vector<AllocQueueInfo> added;
  try {
    added = Request(request, verb);
  } catch (...) {
    RevokeAccessKey(store, AllocationKeyName(name));
    std::filesystem::remove(request.access_file);
    throw;
  }
  const AllocQueueSpec& s = request.spec;
  std::printf(
      "added allocation queue %s: up to %u workers, %u per allocation of %llu minutes (sbatch "
      "%s)\n",
      name.c_str(), s.max_workers, s.workers_per_alloc,
      static_cast<unsigned long long>((s.time_limit_s + 59) / 60),
      s.backend_args.empty() ? "with no options" : ShellWords(s.backend_args).c_str());
  std::printf("its workers use %s (key %s); it submits while tasks wait: orq alloc info %s\n",
              request.access_file.c_str(), AllocationKeyName(name).c_str(), name.c_str());
  if (o.json) PrintQueues(added, true);
  return ExitCode::kOk;
}

ExitCode DryRun(const AllocOptions& o) {
  const std::string name = o.name.empty() ? o.backend : o.name;
  AllocQueueInfo queue;
  queue.spec = SpecOf(o, name);
  queue.access_file = AccessFileOf(name);
  const std::string script = BatchScript(Setup(), queue);
  std::printf("# the batch script of each allocation of queue %s:\n%s", name.c_str(),
              script.c_str());
  const std::string dir =
      std::filesystem::temp_directory_path() / ("orq-alloc-dry-run." + std::to_string(::getpid()));
  MakePrivateDirectory(dir, "the dry run's directory");
  const std::string path = dir + "/job.sh";
  {
    std::ofstream out(path);
    out << script;
  }
  const auto argv = SbatchCommand(queue, path, /*test_only=*/true);
  auto shown = SbatchCommand(queue, AllocDirectory(Setup(), name) + "/job.sh", false);
  std::printf("# submitted as:\n%s\n", ShellWords(shown).c_str());
  std::printf("# %s says:\n", ShellWords(argv).c_str());
  const CommandResult result = RunCommand(argv, kSbatchTimeout);
  std::filesystem::remove_all(dir);
  std::fputs(result.out.c_str(), stdout);
  std::fputs(result.err.c_str(), stdout);
  const auto* exited = std::get_if<Exited>(&result.status);
  if (!exited || exited->code != 0)
    throw UsageError("sbatch --test-only refused it (" + Describe(result.status) +
                     "): as it is, the allocation queue would pause after " +
                     std::to_string(kAllocFailuresToPause) + " failed submissions");
  return ExitCode::kOk;
}

ExitCode Info(const std::string& name, bool json) {
  const auto queues = Request({AllocRequest::Op::kList, name}, "orq alloc info");
  if (json) {
    PrintQueues(queues, true);
    return ExitCode::kOk;
  }
  for (const AllocQueueInfo& q : queues) {
    std::printf("%s\n", AllocQueueLine(q).c_str());
    const AllocQueueSpec& s = q.spec;
    std::printf("  time limit %llu s, %u workers per allocation, idle timeout %llu s, sbatch %s\n",
                static_cast<unsigned long long>(s.time_limit_s), s.workers_per_alloc,
                static_cast<unsigned long long>(s.idle_timeout_s),
                s.backend_args.empty() ? "-" : ShellWords(s.backend_args).c_str());
    std::printf("  submits %llu, failed %llu; workers' access file %s\n",
                static_cast<unsigned long long>(q.submits),
                static_cast<unsigned long long>(q.failures), q.access_file.c_str());
    if (q.allocations.empty())
      std::printf("  no allocations yet\n");
    else
      std::printf("  %-10s %-8s %-8s %-9s %-9s %-9s %s\n", "JOB", "STATE", "WORKERS", "SUBMITTED",
                  "STARTED", "ENDS", "HOW IT ENDED");
    for (const AllocationInfo& a : q.allocations) {
      // When it ended; or, running, when its time limit ends it at the latest ("<" before).
      std::string ends = Clock(a.ended);
      if (a.state == AllocState::kRunning && a.started > 0)
        ends = "<" + Clock(a.started + static_cast<double>(s.time_limit_s));
      std::printf("  %-10s %-8s %-8s %-9s %-9s %-9s %s\n", a.id.c_str(),
                  std::string(AllocStateName(a.state)).c_str(),
                  (std::to_string(a.workers) + "/" + std::to_string(a.workers_seen)).c_str(),
                  Clock(a.submitted).c_str(), Clock(a.started).c_str(), ends.c_str(),
                  EscapeControls(a.end).c_str());
    }
  }
  return ExitCode::kOk;
}

ExitCode Remove(const std::string& name, bool keep) {
  Request({AllocRequest::Op::kRemove, name, {}, {}, keep}, "orq alloc rm");
  if (keep) {
    std::printf(
        "removed allocation queue %s; its allocations run on, and their workers keep their key "
        "until 'orq access revoke %s'\n",
        name.c_str(), AllocationKeyName(name).c_str());
    return ExitCode::kOk;
  }
  RevokeAccessKey(KeyStore(KeysDir(OrqHome())), AllocationKeyName(name));
  std::filesystem::remove(AccessFileOf(name));
  std::printf("removed allocation queue %s: its allocations are cancelled, its key revoked\n",
              name.c_str());
  return ExitCode::kOk;
}

}  // namespace

Verb RegisterAlloc(CLI::App& app) {
  auto o = std::make_shared<AllocOptions>();
  auto* cmd = app.add_subcommand(
      "alloc",
      "Allocation queues: the broker asks Slurm for workers while tasks wait, and lets them go");
  cmd->require_subcommand(1);
  auto* add = cmd->add_subcommand(
      "add",
      "Add an allocation queue: allocations are submitted while tasks its workers could "
      "run wait");
  AddQueueOptions(add, *o);
  add->add_flag("--json", o->json, "also print the queue as JSON");
  auto* dry =
      cmd->add_subcommand("dry-run",
                          "Print the batch script and sbatch command a queue would use, and ask "
                          "sbatch --test-only whether Slurm takes it");
  AddQueueOptions(dry, *o);
  auto* list = cmd->add_subcommand("list", "Every allocation queue, with its allocations' counts");
  list->add_flag("--json", o->json, "one JSON object per queue");
  auto* info = cmd->add_subcommand("info",
                                   "A queue's allocations: Slurm job, state, workers, "
                                   "when submitted, started and ended");
  info->add_option("name", o->name, "the queue")->required();
  info->add_flag("--json", o->json, "as one JSON object");
  auto* pause = cmd->add_subcommand("pause", "Submit no more allocations (those there run on)");
  pause->add_option("name", o->name, "the queue")->required();
  auto* resume = cmd->add_subcommand("resume",
                                     "Submit allocations again (after a pause, or "
                                     "once the cause of failed submissions is fixed)");
  resume->add_option("name", o->name, "the queue")->required();
  auto* rm = cmd->add_subcommand(
      "rm", "Remove a queue: its allocations are cancelled and its worker key revoked");
  rm->add_option("name", o->name, "the queue")->required();
  rm->add_flag("--keep", o->keep, "leave its allocations running (and their key)");
  return {cmd, [=]() -> ExitCode {
            if (add->parsed()) return Add(*o);
            if (dry->parsed()) return DryRun(*o);
            if (list->parsed()) {
              PrintQueues(Request({AllocRequest::Op::kList}, "orq alloc list"), o->json);
              return ExitCode::kOk;
            }
            if (info->parsed()) return Info(o->name, o->json);
            if (rm->parsed()) return Remove(o->name, o->keep);
            const bool pausing = pause->parsed();
            const auto queues =
                Request({pausing ? AllocRequest::Op::kPause : AllocRequest::Op::kResume, o->name},
                        pausing ? "orq alloc pause" : "orq alloc resume");
            PrintQueues(queues, false);
            return ExitCode::kOk;
          }};
}

}  // namespace orq

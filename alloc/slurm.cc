#include "alloc/slurm.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/process.h"

namespace orq {

namespace {

std::string Hex8(std::string_view text) {
  uint32_t hash = 2166136261u;  // FNV-1a: a short, stable name for a path
  for (unsigned char c : text) hash = (hash ^ c) * 16777619u;
  char out[9];
  std::snprintf(out, sizeof out, "%08x", hash);
  return out;
}

std::string HoursMinutesSeconds(uint64_t seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%llu:%02llu:%02llu",
                static_cast<unsigned long long>(seconds / 3600),
                static_cast<unsigned long long>(seconds / 60 % 60),
                static_cast<unsigned long long>(seconds % 60));
  return text;
}

std::string Joined(const std::vector<std::string>& items, char separator) {
  std::string text;
  for (const std::string& item : items)
    text += (text.empty() ? "" : std::string(1, separator)) + item;
  return text;
}

// What a Slurm command printed on stderr, on one line ("sbatch: error: ..."), or how it ended.
std::string Complaint(const CommandResult& result, const std::string& command) {
  std::string words;
  std::string line;
  for (char c : result.err + "\n") {
    if (c != '\n') {
      line += c;
      continue;
    }
    if (!line.empty()) words += (words.empty() ? "" : "; ") + line;
    line.clear();
  }
  if (words.empty()) words = command + " " + Describe(result.status);
  return words;
}

bool Succeeded(const CommandResult& result) {
  const auto* exited = std::get_if<Exited>(&result.status);
  return exited && exited->code == 0;
}

}  // namespace

uint64_t WorkerLifetime(uint64_t time_limit_s) {
  const uint64_t margin = std::clamp<uint64_t>(time_limit_s / 10, 10, 300);
  return time_limit_s > margin ? time_limit_s - margin : 1;
}

std::string SlurmJobName(const SlurmSetup& setup, const std::string& queue) {
  return "orq." + queue + "." + Hex8(setup.home);
}

std::string AllocDirectory(const SlurmSetup& setup, const std::string& queue) {
  return setup.home + "/alloc/" + queue;
}

std::string ShellWords(const std::vector<std::string>& words) {
  std::string line;
  for (const std::string& w : words) {
    if (!line.empty()) line += ' ';
    const bool plain = !w.empty() && std::all_of(w.begin(), w.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) ||
             std::string_view("-_./=:,@%+").find(c) != std::string_view::npos;
    });
    if (plain) {
      line += w;
      continue;
    }
    line += '\'';
    for (char c : w) line += c == '\'' ? std::string("'\\''") : std::string(1, c);
    line += '\'';
  }
  return line;
}

std::string BatchScript(const SlurmSetup& setup, const AllocQueueInfo& queue) {
  const AllocQueueSpec& spec = queue.spec;
  std::vector<std::string> worker = {
      setup.orq,        "worker",
      "--access",       queue.access_file,
      "--idle-timeout", std::to_string(spec.idle_timeout_s),
      "--lifetime",     std::to_string(WorkerLifetime(spec.time_limit_s))};
  if (!spec.queues.empty()) {
    worker.push_back("--queues");
    worker.push_back(Joined(spec.queues, ','));
  }
  if (!spec.resources.empty()) {
    std::vector<std::string> offers;
    for (const ResourceNeed& r : spec.resources)
      offers.push_back(r.name + "=" + std::to_string(r.amount));
    worker.push_back("--resources");
    worker.push_back(Joined(offers, ','));
  }
  const bool threads_given =
      std::any_of(spec.worker_args.begin(), spec.worker_args.end(), [](const std::string& a) {
        return a == "-t" || a.rfind("--threads", 0) == 0 || (a.size() > 2 && a.rfind("-t", 0) == 0);
      });
  worker.insert(worker.end(), spec.worker_args.begin(), spec.worker_args.end());
  const std::string dir = AllocDirectory(setup, spec.name);
  std::string script =
      "#!/bin/bash\n"
      "# orq allocation queue '" +
      spec.name + "': " + std::to_string(spec.workers_per_alloc) +
      " orq worker(s) for the broker of " + setup.home +
      ".\n"
      "# Written by the broker for each allocation (orq alloc add); `orq alloc dry-run` prints "
      "it.\n"
      "# Each worker leaves after " +
      std::to_string(spec.idle_timeout_s) + " s without a task, and " +
      std::to_string(WorkerLifetime(spec.time_limit_s)) +
      " s after it started (before the time limit),\n"
      "# handing back what it still runs; when every worker has left, the job ends.\n"
      "#SBATCH --job-name=" +
      SlurmJobName(setup, spec.name) +
      "\n"
      "#SBATCH --time=" +
      HoursMinutesSeconds(spec.time_limit_s) +
      "\n"
      "#SBATCH --ntasks=" +
      std::to_string(spec.workers_per_alloc) +
      "\n"
      "#SBATCH --output=" +
      dir +
      "/slurm-%j.out\n"
      "set -eu\n"
      // Slurm's own idea of the CPUs each task has, unless --worker-args say -t.
      "exec srun --kill-on-bad-exit=0 " +
      ShellWords(worker) + " --allocation \"" + spec.name + "/$SLURM_JOB_ID\"" +
      (threads_given ? "" : " --threads \"${SLURM_CPUS_PER_TASK:-1}\"") + "\n";
  return script;
}

std::vector<std::string> SbatchCommand(const AllocQueueInfo& queue, const std::string& script,
                                       bool test_only) {
  std::vector<std::string> argv = {"sbatch", test_only ? "--test-only" : "--parsable"};
  argv.insert(argv.end(), queue.spec.backend_args.begin(), queue.spec.backend_args.end());
  argv.push_back(script);
  return argv;
}

AllocState SlurmState(std::string_view state) {
  for (std::string_view queued :
       {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}) {
    if (state == queued) return AllocState::kQueued;
  }
  for (std::string_view running :
       {"RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED"}) {
    if (state == running) return AllocState::kRunning;
  }
  return AllocState::kEnded;  // COMPLETED, CANCELLED, FAILED, TIMEOUT, NODE_FAIL, PREEMPTED...
}

std::vector<BackendJob> ParseSqueue(std::string_view text) {
  std::vector<BackendJob> jobs;
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    std::string_view line = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    const size_t bar = line.find('|');
    if (bar == std::string_view::npos || bar == 0) continue;
    const std::string_view id = line.substr(0, bar);
    if (!std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    std::string_view rest = line.substr(bar + 1);
    const size_t bar2 = rest.find('|');
    const std::string_view state = rest.substr(0, bar2);
    const std::string_view reason =
        bar2 == std::string_view::npos ? std::string_view() : rest.substr(bar2 + 1);
    std::string detail(state);
    if (!reason.empty() && reason != "None") detail += " (" + std::string(reason) + ")";
    jobs.push_back({std::string(id), SlurmState(state), detail});
  }
  return jobs;
}

Expected<std::string> SlurmBackend::Submit(const AllocQueueInfo& queue) {
  const std::string dir = AllocDirectory(setup_, queue.spec.name);
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, error);
  const std::string script = dir + "/job.sh";
  {
    std::ofstream out(script, std::ios::trunc);
    out << BatchScript(setup_, queue);
    if (!out.flush())
      return Error{ErrorCode::kBadRequest, "cannot write the batch script " + script};
  }
  const CommandResult result = RunCommand(SbatchCommand(queue, script, false), kSbatchTimeout);
  if (!Succeeded(result)) return Error{ErrorCode::kBadRequest, Complaint(result, "sbatch")};
  // --parsable: "JOBID" or "JOBID;CLUSTER".
  std::string id = result.out.substr(0, result.out.find_first_of(";\n"));
  if (id.empty() || !std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return Error{ErrorCode::kBadRequest, "sbatch printed no job id: " + result.out};
  return id;
}

Expected<std::vector<BackendJob>> SlurmBackend::Jobs(const AllocQueueInfo& queue) {
  const CommandResult result =
      RunCommand({"squeue", "-h", "-t", "all", "--name=" + SlurmJobName(setup_, queue.spec.name),
                  "-o", "%i|%T|%r"},
                 kSqueueTimeout);
  if (!Succeeded(result)) return Error{ErrorCode::kBadRequest, Complaint(result, "squeue")};
  return ParseSqueue(result.out);
}

Expected<void> SlurmBackend::Cancel(const AllocQueueInfo&, const std::string& id) {
  const CommandResult result = RunCommand({"scancel", id}, kSqueueTimeout);
  if (!Succeeded(result)) return Error{ErrorCode::kBadRequest, Complaint(result, "scancel")};
  return {};
}

}  // namespace orq

// Allocation queues on Slurm: each allocation is one batch job (sbatch) whose one step (srun -n K)
// runs K orq workers; its job name marks it as this broker's and this queue's, so that a broker
// that restarts finds its allocations in squeue. The script and commands are pure functions (the
// dry run prints them, tests read them); SlurmBackend runs them.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "alloc/backend.h"

namespace orq {

// Where the broker's allocations live: the orq binary their workers run, and the broker's home
// ($ORQ_HOME: each queue's script and its jobs' output go under HOME/alloc/QUEUE, on a filesystem
// the compute nodes see, as the access file is).
struct SlurmSetup {
  std::string orq;
  std::string home;
};

// How long before its allocation's time limit a worker leaves (a tenth of the limit, from 10 s to
// 5 minutes): its tasks move on before Slurm kills it.
uint64_t WorkerLifetime(uint64_t time_limit_s);
// The batch job's name: "orq.QUEUE.HASH", HASH naming the broker's home.
std::string SlurmJobName(const SlurmSetup& setup, const std::string& queue);
// HOME/alloc/QUEUE.
std::string AllocDirectory(const SlurmSetup& setup, const std::string& queue);
// The batch script of one allocation of `queue`.
std::string BatchScript(const SlurmSetup& setup, const AllocQueueInfo& queue);
// sbatch's command line for the script at `script` (--test-only: only checks that Slurm would
// take it).
std::vector<std::string> SbatchCommand(const AllocQueueInfo& queue, const std::string& script,
                                       bool test_only);
// squeue's output (-o '%i|%T|%r', one job a line) as jobs; lines that are not one are skipped.
std::vector<BackendJob> ParseSqueue(std::string_view text);
// A Slurm job state (PENDING, RUNNING, TIMEOUT...) as an allocation's.
AllocState SlurmState(std::string_view state);
// A command line as a shell would read it back ('quoted' where needed).
std::string ShellWords(const std::vector<std::string>& words);

class SlurmBackend final : public AllocBackend {
 public:
  explicit SlurmBackend(SlurmSetup setup) : setup_(std::move(setup)) {}
  Expected<std::string> Submit(const AllocQueueInfo& queue) override;
  Expected<std::vector<BackendJob>> Jobs(const AllocQueueInfo& queue) override;
  Expected<void> Cancel(const AllocQueueInfo& queue, const std::string& id) override;

 private:
  SlurmSetup setup_;
};

// Deadlines of the Slurm commands (slurmctld retries a busy moment for a while itself).
inline constexpr std::chrono::seconds kSbatchTimeout{60};
inline constexpr std::chrono::seconds kSqueueTimeout{30};

}  // namespace orq

// Workers launched by Slurm: a real single-node Slurm (tests/slurm/cluster.sh, from Debian's
// packages) starts orq workers as job steps and as a batch job; a broker outside it runs jobs
// through them while Slurm ends one. Then allocation queues (orq alloc): the broker submits
// allocations itself while tasks wait, their workers leave when idle, a cancelled allocation's
// tasks run elsewhere, and a refused submit pauses the queue with Slurm's words. Needs root and
// Slurm (scripts/setup.sh installs it); where either is missing the test fails with the reason.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "tests/checker.h"
#include "tests/harness.h"

namespace orq::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

const std::string kCluster = std::string(ORQ_SOURCE_DIR) + "/tests/slurm/cluster.sh";

// Whether Slurm can run here; why not when it cannot.
Expected<void> SlurmUnavailable() {
  if (::geteuid() != 0)
    return Fault("the Slurm test runs Slurm's daemons as root (CI runs as root); this is uid " +
                 std::to_string(::geteuid()));
  for (const char* tool : {"munged", "slurmctld", "slurmd", "srun", "sbatch", "salloc"}) {
    std::string out;
    if (RunProgram({"sh", "-c", std::string("command -v ") + tool}, out) != 0)
      return Fault(std::string(tool) +
                   " is not installed (scripts/setup.sh installs Slurm and munge)");
  }
  return {};
}

// One private Slurm per test: started in SetUp, every job cancelled and every daemon stopped in
// TearDown, all its state in a temporary directory.
class SlurmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto can = SlurmUnavailable(); !can.ok())
      FAIL() << "cannot run Slurm: " << can.error().sentence;
    temp_.emplace("orq-slurm");
    dir_ = temp_->path();
    // Stray SLURM_* variables (a CI inside a Slurm job) would steer srun elsewhere.
    for (char** e = environ; *e;) {
      std::string var = *e;
      if (var.rfind("SLURM_", 0) == 0) {
        ::unsetenv(var.substr(0, var.find('=')).c_str());
        e = environ;
      } else {
        ++e;
      }
    }
    ::setenv("SLURM_CONF", (dir_ + "/slurm.conf").c_str(), 1);
    // A start that fails or times out has cluster.sh stop what it started; TearDown stops it
    // again all the same (stopping is safe to repeat).
    Command({"bash", kCluster, "start", dir_}, seconds(90));
    RunResult up = broker_.Run({"up", "-w", "0", "--listen", "tcp://127.0.0.1:*"});
    ASSERT_TRUE(Exits(up, 0));
    access_ = broker_.home() + "/worker.access";
    RunResult add = broker_.Run({"access", "add", "--worker", access_});
    ASSERT_TRUE(Exits(add, 0));
  }
  void TearDown() override {
    if (!temp_) return;
    if (HasFailure()) {  // what the broker saw, for the reader of a failed run
      std::ifstream log(broker_.home() + "/broker.log");
      std::cerr << "--- the broker's log:\n" << log.rdbuf() << "---\n";
    }
    std::string out;
    if (RunProgram({"bash", kCluster, "stop", dir_}, out, seconds(60)) != 0)
      ADD_FAILURE() << "cluster.sh stop failed: " << out;
    temp_.reset();
  }

  nlohmann::json Status() const { return broker_.Status(); }
  bool WaitWorkers(size_t n, seconds timeout = seconds(30)) const {
    return broker_.WaitStatus([&](const nlohmann::json& s) { return s["workers"].size() == n; },
                              timeout);
  }
  // Waits until at least `n` tasks are done.
  bool WaitDone(int n, seconds timeout = seconds(30)) const {
    return broker_.WaitStatus([&](const nlohmann::json& s) { return s["tasks"]["done"] >= n; },
                              timeout);
  }
  // Submits N shell tasks of `seconds` each, task i printing "r<i>".
  std::string SubmitShell(int n, double seconds, std::vector<nlohmann::json>& expected) {
    std::string lines;
    for (int i = 0; i < n; ++i) {
      lines += nlohmann::json{{"kind", "shell"},
                              {"cmd",
                               "sleep " + std::to_string(seconds) + "; echo r" + std::to_string(i)}}
                   .dump() +
               "\n";
      expected.push_back("r" + std::to_string(i) + "\n");
    }
    RunResult r = broker_.Run({"submit", "-f", broker_.WriteFile("job.jsonl", lines)});
    EXPECT_TRUE(Exits(r, 0));
    return Lines(r.out).empty() ? "" : Lines(r.out)[0];
  }
  static std::string JobId(const std::string& text, const std::string& after) {
    std::smatch m;
    if (!std::regex_search(text, m, std::regex(after + " ([0-9]+)"))) return "";
    return m[1];
  }

  std::optional<TempDir> temp_;  // the cluster's state; set from SetUp until TearDown stopped it
  std::string dir_;
  OrqEnv broker_;
  std::string access_;
};

TEST_F(SlurmTest, SrunStepsRunAJobAndAKilledStepsTasksRunElsewhere) {
  // Given an allocation with two orq workers started by srun as two steps,
  std::string out = Command({"salloc", "--no-shell", "-N1", "-n2"}, seconds(60));
  const std::string job = JobId(out, "Granted job allocation");
  ASSERT_FALSE(job.empty()) << out;
  OrqEnv steps({"srun", "--jobid=" + job, "--overlap", "-N1", "-n1"});
  const pid_t first = steps.Start({"worker", "--access", access_, "-t", "2"});
  ASSERT_TRUE(WaitWorkers(1)) << "the first step's worker did not register";
  steps.Start({"worker", "--access", access_, "-t", "2"});
  ASSERT_TRUE(WaitWorkers(2)) << "the second step's worker did not register";
  // When a job runs through them and the first step is cancelled mid-job (scancel of a step sends
  // SIGKILL: its worker cannot say goodbye),
  std::vector<nlohmann::json> expected;
  const std::string orq_job = SubmitShell(80, 0.2, expected);
  ASSERT_TRUE(WaitDone(10));
  Command({"scancel", job + ".0"});
  // Then that step ends, the broker drops its worker when its heartbeats stop,
  EXPECT_NE(WaitExit(first, seconds(30)), -1) << "srun of step " << job << ".0 did not end";
  EXPECT_TRUE(WaitWorkers(1));
  // and every task still has exactly one result, ok, in order.
  RunResult gather = broker_.Run({"gather", "--json", orq_job}, "", seconds(90));
  EXPECT_TRUE(Exits(gather, 0));
  CheckReport report = CheckResults(orq_job, expected, gather.out);
  EXPECT_TRUE(report.ok()) << report.Describe();
  EXPECT_EQ(Status()["counters"]["workers_lost"], 1);
  Command({"scancel", job});
}

TEST_F(SlurmTest, TheSbatchExampleRunsWorkersUntilItsJobEndsAndTheirTasksMoveOn) {
  // Given two batch jobs of the example script, one worker each,
  OrqEnv workers;  // its home marks the batch jobs' processes, so the test can find them
  const std::string script = std::string(ORQ_SOURCE_DIR) + "/examples/slurm/orq-workers.sbatch";
  std::vector<std::string> batch_jobs;
  for (int i = 0; i < 2; ++i) {
    std::string out = Command(
        {"sbatch", "--export=ALL,ORQ=" + std::string(ORQ_BINARY) + ",ORQ_HOME=" + workers.home(),
         "-o", dir_ + "/batch" + std::to_string(i) + ".out", script, access_},
        seconds(60));
    batch_jobs.push_back(JobId(out, "Submitted batch job"));
    ASSERT_FALSE(batch_jobs.back().empty()) << out;
    ASSERT_TRUE(WaitWorkers(i + 1, seconds(60)))
        << "batch job " << i << "'s worker did not register";
  }
  // When a job runs through them and the first batch job ends mid-job (Slurm sends SIGTERM to the
  // steps of a job that ends, as at its time limit),
  std::vector<nlohmann::json> expected;
  const std::string orq_job = SubmitShell(40, 0.3, expected);
  ASSERT_TRUE(WaitDone(5));
  Command({"scancel", batch_jobs[0]});
  // Then its worker says goodbye (it is not lost by heartbeats) and its tasks run on the other,
  EXPECT_TRUE(WaitWorkers(1));
  RunResult gather = broker_.Run({"gather", "--json", orq_job}, "", seconds(60));
  EXPECT_TRUE(Exits(gather, 0));
  CheckReport report = CheckResults(orq_job, expected, gather.out);
  EXPECT_TRUE(report.ok()) << report.Describe();
  EXPECT_EQ(Status()["counters"]["workers_lost"], 0);
  std::ifstream log(dir_ + "/batch0.out");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("signal 15: stopping"), std::string::npos) << text;
  // and when the other ends too, nothing of either is left running.
  Command({"scancel", batch_jobs[1]});
  EXPECT_TRUE(WaitWorkers(0));
  EXPECT_TRUE(workers.WaitNoProcesses(seconds(30)));
}

// The allocation queue "slurm" as `orq alloc list --json` shows it (null when there is none).
nlohmann::json AllocQueue(const OrqEnv& broker) {
  RunResult r = broker.Run({"alloc", "list", "--json"});
  EXPECT_TRUE(Exits(r, 0));
  for (const std::string& line : Lines(r.out)) {
    auto q = nlohmann::json::parse(line, nullptr, false);
    if (q.is_object() && q["name"] == "slurm") return q;
  }
  return nullptr;
}

// The ids of the Slurm jobs whose name starts with orq's for allocation queues, as squeue lists
// those not ended.
std::vector<std::string> AllocJobsInSqueue() {
  std::string out;
  RunProgram({"squeue", "-h", "-o", "%i %j"}, out);
  std::vector<std::string> ids;
  for (const std::string& line : Lines(out)) {
    if (line.find(" orq.slurm.") != std::string::npos)
      ids.push_back(line.substr(0, line.find(' ')));
  }
  return ids;
}

TEST_F(SlurmTest, AllocationsComeForWaitingTasksAndGoWhenTheWorkIsDone) {
  // Given a broker with no worker and an allocation queue of at most two workers,
  RunResult add = broker_.Run({"alloc", "add", "slurm", "--time-limit", "2m", "--max-workers", "2",
                               "--idle-timeout", "5s"});
  ASSERT_TRUE(Exits(add, 0));
  EXPECT_NE(add.out.find("added allocation queue slurm"), std::string::npos) << add.out;
  EXPECT_TRUE(AllocJobsInSqueue().empty());  // nothing waits: nothing asked for
  // when 200 short tasks are submitted,
  std::vector<nlohmann::json> expected;
  const std::string job = SubmitShell(200, 0.05, expected);
  // then allocations appear in Slurm's queue and their two workers register,
  EXPECT_TRUE(WaitUntil([] { return !AllocJobsInSqueue().empty(); }, seconds(30)))
      << "no allocation appeared in squeue";
  ASSERT_TRUE(WaitWorkers(2, seconds(60))) << Status().dump();
  const nlohmann::json status = Status();  // (kept: a loop over a temporary's member dangles)
  for (const auto& w : status["workers"]) {
    EXPECT_TRUE(w["allocation"].is_string()) << w.dump();
    EXPECT_GT(w["ends_in"].get<double>(), 0) << w.dump();
  }
  // every task ends ok exactly once,
  RunResult gather = broker_.Run({"gather", "--json", job}, "", seconds(120));
  EXPECT_TRUE(Exits(gather, 0));
  CheckReport report = CheckResults(job, expected, gather.out);
  EXPECT_TRUE(report.ok()) << report.Describe();
  // the workers go idle and leave, the allocations end and leave Slurm's queue,
  EXPECT_TRUE(WaitWorkers(0, seconds(60))) << Status().dump();
  EXPECT_TRUE(WaitUntil([] { return AllocJobsInSqueue().empty(); }, seconds(60)));
  EXPECT_TRUE(WaitUntil(
      [&] {
        const nlohmann::json q = AllocQueue(broker_);
        if (!q.is_object() || q["allocations"].empty()) return false;
        for (const auto& a : q["allocations"]) {
          if (a["state"] != "ended") return false;
        }
        return true;
      },
      seconds(30)))
      << AllocQueue(broker_).dump();
  // and `orq alloc info` shows their history: each submitted, started and ended, with a worker.
  const nlohmann::json q = AllocQueue(broker_);
  EXPECT_GE(q["allocations"].size(), 2u);
  EXPECT_LE(q["submits"].get<int>(), 4) << q.dump();  // no runaway: about one per worker
  for (const auto& a : q["allocations"]) {
    EXPECT_TRUE(a["started"].is_number()) << a.dump();
    EXPECT_TRUE(a["ended"].is_number()) << a.dump();
  }
  RunResult info = broker_.Run({"alloc", "info", "slurm"});
  EXPECT_TRUE(Exits(info, 0));
  EXPECT_NE(info.out.find("ended"), std::string::npos) << info.out;
  EXPECT_EQ(Status()["counters"]["workers_lost"], 0);
  // Nothing of the allocations is left running: only the broker has this home.
  const int64_t broker_pid = Status()["broker"]["pid"];
  EXPECT_TRUE(WaitUntil(
      [&] { return broker_.Processes() == std::vector<pid_t>{static_cast<pid_t>(broker_pid)}; },
      seconds(30)));
}

TEST_F(SlurmTest, AnAllocationCancelledMidJobHasItsTasksRunElsewhere) {
  // Given an allocation queue of two workers running a job,
  ASSERT_TRUE(Exits(broker_.Run({"alloc", "add", "slurm", "--time-limit", "5m", "--max-workers",
                                 "2", "--idle-timeout", "10s"}),
                    0));
  std::vector<nlohmann::json> expected;
  const std::string job = SubmitShell(60, 0.3, expected);
  ASSERT_TRUE(WaitWorkers(2, seconds(60))) << Status().dump();
  // (orq alloc info shows them running, each with the latest time it may end: "<HH:MM:SS";
  // the broker marks an allocation running at its next plan or poll, so wait for it.)
  RunResult info;
  EXPECT_TRUE(WaitUntil(
      [&] {
        info = broker_.Run({"alloc", "info", "slurm"});
        return info.out.find("running") != std::string::npos &&
               info.out.find(" <") != std::string::npos;
      },
      seconds(30)))
      << info.out;
  ASSERT_TRUE(WaitDone(10, seconds(60)));
  // when one allocation is cancelled with scancel mid-job,
  const std::string cancelled = AllocQueue(broker_)["allocations"][0]["id"];
  Command({"scancel", cancelled});
  // then the broker notices it ended, its tasks run elsewhere, and each ends ok exactly once.
  EXPECT_TRUE(WaitUntil(
      [&] {
        const nlohmann::json q = AllocQueue(broker_);
        for (const auto& a : q["allocations"]) {
          if (a["id"] == cancelled) return a["state"] == "ended";
        }
        return false;
      },
      seconds(30)))
      << AllocQueue(broker_).dump();
  RunResult gather = broker_.Run({"gather", "--json", job}, "", seconds(120));
  EXPECT_TRUE(Exits(gather, 0));
  CheckReport report = CheckResults(job, expected, gather.out);
  EXPECT_TRUE(report.ok()) << report.Describe();
}

TEST_F(SlurmTest, ARefusedSubmitPausesTheQueueWithSlurmsWords) {
  // Given an allocation queue on a partition Slurm does not have,
  ASSERT_TRUE(
      Exits(broker_.Run({"alloc", "add", "slurm", "--time-limit", "2m", "--", "-p", "nope"}), 0));
  // when a task waits,
  std::vector<nlohmann::json> expected;
  SubmitShell(1, 0, expected);
  // then after three refused submissions the queue pauses itself, saying what Slurm said,
  EXPECT_TRUE(WaitUntil([&] { return AllocQueue(broker_)["paused"] == true; }, seconds(60)))
      << AllocQueue(broker_).dump();
  const nlohmann::json q = AllocQueue(broker_);
  EXPECT_EQ(q["failures"], 3);
  EXPECT_NE(q["pause_reason"].get<std::string>().find("nvalid partition"), std::string::npos)
      << q.dump();
  // which `orq status` shows too; and nothing was submitted.
  RunResult status = broker_.Run({"status"});
  EXPECT_NE(status.out.find("paused after 3 failed submissions"), std::string::npos) << status.out;
  EXPECT_TRUE(AllocJobsInSqueue().empty());
  // The dry run says so before anything is added.
  RunResult dry =
      broker_.Run({"alloc", "dry-run", "slurm", "--time-limit", "2m", "--", "-p", "nope"});
  EXPECT_TRUE(Exits(dry, 2));
  EXPECT_NE(dry.out.find("#SBATCH --time=0:02:00"), std::string::npos) << dry.out;
  EXPECT_NE(dry.err.find("sbatch --test-only refused it"), std::string::npos) << dry.err;
}

}  // namespace
}  // namespace orq::testing

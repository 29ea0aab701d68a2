// Workers launched by Slurm: a real single-node Slurm (tests/slurm/cluster.sh, from Debian's
// packages) starts orq workers as job steps and as a batch job; a broker outside it runs jobs
// through them while Slurm ends one. Needs root and Slurm (scripts/setup.sh installs it); where
// either is missing the test fails with the reason.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
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

// Why Slurm cannot run here; nullopt when it can.
std::optional<std::string> SlurmUnavailable() {
  if (::geteuid() != 0)
    return "the Slurm test runs Slurm's daemons as root (CI runs as root); this is uid " +
           std::to_string(::geteuid());
  for (const char* tool : {"munged", "slurmctld", "slurmd", "srun", "sbatch", "salloc"}) {
    std::string out;
    if (RunProgram({"sh", "-c", std::string("command -v ") + tool}, out) != 0)
      return std::string(tool) + " is not installed (scripts/setup.sh installs Slurm and munge)";
  }
  return std::nullopt;
}

// One private Slurm per test: started in SetUp, every job cancelled and every daemon stopped in
// TearDown, all its state in a temporary directory.
class SlurmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = SlurmUnavailable()) FAIL() << "cannot run Slurm: " << *why;
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

}  // namespace
}  // namespace orq::testing

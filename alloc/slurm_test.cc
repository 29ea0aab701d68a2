// The Slurm side's pure parts: the batch script, sbatch's command line, squeue's output and
// Slurm's states. (tests/slurm_test.cc runs them against a real Slurm.)
#include "alloc/slurm.h"

#include <gtest/gtest.h>

namespace orq {
namespace {

AllocQueueInfo Queue() {
  AllocQueueInfo q;
  q.spec.name = "gpu";
  q.spec.time_limit_s = 3600;
  q.spec.workers_per_alloc = 2;
  q.spec.idle_timeout_s = 90;
  q.spec.queues = {"a", "b"};
  q.spec.resources = {{"gpu", 2}};
  q.spec.worker_args = {"--shell-slots", "4"};
  q.spec.backend_args = {"-p", "long", "--account=x y"};
  q.access_file = "/home/u/.orq/alloc/gpu/worker.access";
  return q;
}

TEST(SlurmScriptTest, StartsTheQueuesWorkersWithItsAccessScopeAndTimes) {
  const SlurmSetup setup{"/opt/orq/bin/orq", "/home/u/.orq"};
  const std::string script = BatchScript(setup, Queue());
  EXPECT_EQ(script.rfind("#!/bin/bash\n", 0), 0u);
  EXPECT_NE(script.find("#SBATCH --job-name=" + SlurmJobName(setup, "gpu") + "\n"),
            std::string::npos);
  EXPECT_NE(script.find("#SBATCH --time=1:00:00\n"), std::string::npos);
  EXPECT_NE(script.find("#SBATCH --ntasks=2\n"), std::string::npos);
  EXPECT_NE(script.find("#SBATCH --output=/home/u/.orq/alloc/gpu/slurm-%j.out\n"),
            std::string::npos);
  // One step of two workers, each leaving when idle and 6 minutes (a tenth, at most 5) before
  // the limit; the default -t from Slurm since --worker-args say none.
  EXPECT_NE(script.find("exec srun --kill-on-bad-exit=0 /opt/orq/bin/orq worker --access "
                        "/home/u/.orq/alloc/gpu/worker.access --idle-timeout 90 --lifetime 3300 "
                        "--queues a,b --resources gpu=2 --shell-slots 4 --allocation "
                        "\"gpu/$SLURM_JOB_ID\" --threads \"${SLURM_CPUS_PER_TASK:-1}\"\n"),
            std::string::npos)
      << script;
}

TEST(SlurmScriptTest, WorkerArgsWithThreadsReplaceSlurmsCount) {
  AllocQueueInfo q = Queue();
  q.spec.worker_args = {"-t", "8"};
  const std::string script = BatchScript({"orq", "/h"}, q);
  EXPECT_EQ(script.find("SLURM_CPUS_PER_TASK"), std::string::npos);
  EXPECT_NE(script.find("-t 8 --allocation"), std::string::npos);
}

TEST(SlurmScriptTest, JobNamesTellBrokersAndQueuesApart) {
  EXPECT_NE(SlurmJobName({"orq", "/a"}, "q"), SlurmJobName({"orq", "/b"}, "q"));
  EXPECT_NE(SlurmJobName({"orq", "/a"}, "q"), SlurmJobName({"orq", "/a"}, "r"));
  EXPECT_EQ(SlurmJobName({"orq", "/a"}, "q"), SlurmJobName({"other", "/a"}, "q"));
}

TEST(SlurmScriptTest, SbatchGetsTheUsersOptionsBeforeTheScript) {
  EXPECT_EQ(SbatchCommand(Queue(), "/s/job.sh", false),
            (std::vector<std::string>{"sbatch", "--parsable", "-p", "long", "--account=x y",
                                      "/s/job.sh"}));
  EXPECT_EQ(SbatchCommand(Queue(), "/s/job.sh", true)[1], "--test-only");
  EXPECT_EQ(ShellWords({"sbatch", "--account=x y", "it's"}), "sbatch '--account=x y' 'it'\\''s'");
}

TEST(SlurmScriptTest, LifetimeLeavesAMarginBeforeTheLimit) {
  EXPECT_EQ(WorkerLifetime(120), 108u);      // a tenth
  EXPECT_EQ(WorkerLifetime(60), 50u);        // at least 10 s
  EXPECT_EQ(WorkerLifetime(86400), 86100u);  // at most 5 minutes
}

TEST(SqueueTest, ReadsJobsAndTheirStates) {
  const auto jobs = ParseSqueue(
      "41|PENDING|Priority\n42|RUNNING|None\n43|TIMEOUT|None\n44|CANCELLED|None\n"
      "garbage\n|RUNNING|x\n45x|RUNNING|None\n46|COMPLETING|None");
  ASSERT_EQ(jobs.size(), 5u);
  EXPECT_EQ(jobs[0].id, "41");
  EXPECT_EQ(jobs[0].state, AllocState::kQueued);
  EXPECT_EQ(jobs[0].detail, "PENDING (Priority)");
  EXPECT_EQ(jobs[1].state, AllocState::kRunning);
  EXPECT_EQ(jobs[1].detail, "RUNNING");
  EXPECT_EQ(jobs[2].state, AllocState::kEnded);
  EXPECT_EQ(jobs[2].detail, "TIMEOUT");
  EXPECT_EQ(jobs[3].state, AllocState::kEnded);
  EXPECT_EQ(jobs[4].id, "46");
  EXPECT_EQ(jobs[4].state, AllocState::kRunning);
  EXPECT_TRUE(ParseSqueue("").empty());
}

TEST(SqueueTest, UnknownStatesCountAsEnded) {
  EXPECT_EQ(SlurmState("NODE_FAIL"), AllocState::kEnded);
  EXPECT_EQ(SlurmState("SOMETHING_NEW"), AllocState::kEnded);
  EXPECT_EQ(SlurmState("CONFIGURING"), AllocState::kQueued);
}

}  // namespace
}  // namespace orq

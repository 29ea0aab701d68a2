#include "worker/task_runner.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fstream>

#include "common/process.h"
#include "tests/temp_dir.h"

namespace orq {
namespace {

using std::chrono::milliseconds;

// Runs tasks on a real loop, stepping it until the expected outcomes are in (with a ceiling).
class TaskRunnerTest : public ::testing::Test {
 protected:
  TaskRunnerTest()
      : children_(loop_, SIGCHLD),
        runner_(loop_, RunnerOptions{2, milliseconds(500), 64, 4242},
                [this](TaskOutcome o) { done_.push_back(std::move(o)); }) {
    WatchChildren();
  }
  void WatchChildren() {
    children_.async_wait([this](const boost::system::error_code& ec, int) {
      if (ec) return;
      runner_.ReapChildren();
      WatchChildren();
    });
  }
  void Start(uint32_t index, TaskSpec spec) {
    Assignment a;
    a.id = {1, index};
    a.attempt = 1;
    a.spec = std::move(spec);
    runner_.Start(a);
  }
  // Steps the loop until `n` outcomes are in or 20 s pass.
  void WaitFor(size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (done_.size() < n && std::chrono::steady_clock::now() < deadline)
      loop_.run_one_for(milliseconds(50));
    ASSERT_EQ(done_.size(), n);
  }
  static TaskSpec Shell(std::vector<std::string> argv, double timeout = 0) {
    TaskSpec s;
    s.body = ShellTask{std::move(argv)};
    s.timeout = timeout;
    return s;
  }
  static TaskSpec Sleep(double seconds, std::string value = "", double timeout = 0) {
    TaskSpec s;
    s.body = SleepTask{seconds, std::move(value)};
    s.timeout = timeout;
    return s;
  }

  boost::asio::io_context loop_;
  boost::asio::signal_set children_;
  std::vector<TaskOutcome> done_;
  TaskRunner runner_;
};

TEST_F(TaskRunnerTest, SleepsFinishInTimeOrderAndReturnTheirResult) {
  Start(0, Sleep(0.3, "\"late\""));
  Start(1, Sleep(0.1));
  WaitFor(2);
  EXPECT_EQ(done_[0].id.index, 1u);
  EXPECT_EQ(done_[0].result, "0.1");
  EXPECT_EQ(done_[1].result, "\"late\"");
  EXPECT_EQ(done_[1].worker_pid, 4242);
  EXPECT_GE(done_[1].finished - done_[1].started, 0.25);
}

TEST_F(TaskRunnerTest, ThousandsOfSleepsWaitAtOnce) {
  for (uint32_t i = 0; i < 5000; ++i) Start(i, Sleep(0.2));
  EXPECT_EQ(runner_.running(), 5000u);
  WaitFor(5000);
  for (const auto& o : done_) EXPECT_EQ(o.status, TaskStatus::kOk);
}

TEST_F(TaskRunnerTest, EchoReturnsItsValue) {
  TaskSpec s;
  s.body = EchoTask{"{\"a\":1}"};
  Start(0, s);
  WaitFor(1);
  EXPECT_EQ(done_[0].result, "{\"a\":1}");
}

TEST_F(TaskRunnerTest, CpuRunsOnThePool) {
  TaskSpec s;
  s.body = CpuTask{20};
  Start(0, s);
  Start(1, s);
  WaitFor(2);
  EXPECT_EQ(done_[0].result, "20");
  EXPECT_EQ(done_[1].status, TaskStatus::kOk);
}

TEST_F(TaskRunnerTest, ShellCapturesOutputAndExitCode) {
  Start(0, Shell({"sh", "-c", "echo out; echo err >&2; exit 3"}));
  WaitFor(1);
  const auto& o = done_[0];
  EXPECT_EQ(o.status, TaskStatus::kFailed);
  ASSERT_TRUE(o.shell);
  EXPECT_EQ(o.shell->exit_code, 3);
  EXPECT_EQ(o.shell->stdout_text, "out\n");
  EXPECT_EQ(o.shell->stderr_text, "err\n");
  EXPECT_EQ(o.error, "exit code 3");
}

TEST_F(TaskRunnerTest, ShellOutputBeyondTheLimitIsTruncatedAndFlagged) {
  Start(0, Shell({"sh", "-c", "head -c 1000 /dev/zero | tr '\\0' x"}));
  WaitFor(1);
  EXPECT_EQ(done_[0].status, TaskStatus::kOk);
  ASSERT_TRUE(done_[0].shell);
  EXPECT_EQ(done_[0].shell->stdout_text, std::string(64, 'x'));
  EXPECT_TRUE(done_[0].shell->truncated);
}

TEST_F(TaskRunnerTest, AShellTaskKilledFromOutsideFailsSayingBySignal) {
  // Given a task killed by a signal orq did not send (reported after the window in which its
  // worker might be stopping too),
  Start(0, Shell({"sh", "-c", "kill -KILL $$"}));
  Start(1, Shell({"sh", "-c", "kill -TERM $$"}));
  WaitFor(2);
  std::sort(done_.begin(), done_.end(),
            [](const TaskOutcome& a, const TaskOutcome& b) { return a.id < b.id; });
  // Then both fail, saying by which signal.
  for (const auto& o : done_) {
    EXPECT_EQ(o.status, TaskStatus::kFailed);
    ASSERT_TRUE(o.shell);
  }
  EXPECT_EQ(done_[0].error, "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(done_[0].shell->exit_code, 137);
  EXPECT_EQ(done_[1].error, "killed by signal 15 (SIGTERM)");
  EXPECT_EQ(done_[1].shell->exit_code, 143);
}

TEST_F(TaskRunnerTest, ATaskKilledByTermOrKillAsItsWorkerStopsIsHandedBackNotFailed) {
  for (const char* signal : {"TERM", "KILL"}) {
    done_.clear();
    // Given a task killed by SIGTERM (as Slurm signals every process of a job that ends) or
    // SIGKILL (as scancel of a step kills all its processes, the worker perhaps a moment later),
    Start(0, Shell({"sh", "-c", std::string("kill -") + signal + " $$"}));
    Start(1, Sleep(0.3));  // marks time: the signal was long seen when it ends
    WaitFor(1);
    ASSERT_EQ(done_[0].id.index, 1u) << signal << ": reported before its worker stopped";
    EXPECT_EQ(runner_.running(), 1u);  // held
    // When its worker stops within the window, the task is dropped, not reported failed (the
    // broker runs it again after the worker's goodbye).
    runner_.KillAll();
    EXPECT_EQ(runner_.running(), 0u);
    loop_.run_for(milliseconds(700));
    EXPECT_EQ(done_.size(), 1u) << signal;
  }
}

TEST_F(TaskRunnerTest, MissingProgramFails) {
  Start(0, Shell({"no-such-program-orq"}));
  WaitFor(1);
  EXPECT_EQ(done_[0].status, TaskStatus::kFailed);
  ASSERT_TRUE(done_[0].shell);
  EXPECT_EQ(done_[0].shell->exit_code, 127);
  EXPECT_EQ(done_[0].error, "cannot run 'no-such-program-orq': command not found");
}

TEST_F(TaskRunnerTest, SleepTimeout) {
  Start(0, Sleep(10, "", 0.1));
  WaitFor(1);
  EXPECT_EQ(done_[0].status, TaskStatus::kTimeout);
  EXPECT_EQ(done_[0].error, "timed out after 0.1 s");
}

TEST_F(TaskRunnerTest, ShellTimeoutKillsTheWholeGroup) {
  // Given a shell task that starts a background child and writes its pid (with two seconds to
  // get to its trap on a loaded machine: before it, TERM still ends it),
  const testing::TempDir dir("orq-runner");
  const std::string pid_file = dir.path() + "/bg.pid";
  Start(0,
        Shell({"sh", "-c", "sleep 30 & echo $! > " + pid_file + "; trap '' TERM; sleep 30"}, 2.0));
  // When its time limit passes (TERM is ignored: KILL follows after the grace),
  WaitFor(1);
  // Then it is reported as timeout, and the background child is gone too.
  EXPECT_EQ(done_[0].status, TaskStatus::kTimeout);
  ASSERT_TRUE(done_[0].shell);
  EXPECT_EQ(done_[0].shell->exit_code, 128 + SIGKILL);
  std::ifstream in(pid_file);
  pid_t bg = 0;
  ASSERT_TRUE(in >> bg);
  // The grandchild was killed; it may linger as a zombie of init for a moment, never running.
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    const auto stat = ReadProcStat(bg);
    gone = !stat || stat->state == 'Z';
    if (!gone) loop_.run_one_for(milliseconds(10));
  }
  EXPECT_TRUE(gone);
}

TEST_F(TaskRunnerTest, CancelStopsARunningTask) {
  Start(0, Sleep(30));
  Start(1, Shell({"sleep", "30"}));
  runner_.Cancel({1, 0});
  runner_.Cancel({1, 1});
  WaitFor(2);
  for (const auto& o : done_) {
    EXPECT_EQ(o.status, TaskStatus::kCancelled);
    EXPECT_EQ(o.error, "cancelled while running");
  }
}

TEST(ShellPlaceTest, EnvironmentIsTheJobsThenTheTasksThenOrqs) {
  Assignment a;
  a.id = {7, 2};
  a.attempt = 3;
  const ShellTask task = ShellTask::In({"true"}, "", {"B=task", "C=3"});
  const std::vector<std::string> own = {"A=worker", "B=worker"};
  // No job context: the worker's own environment.
  EXPECT_EQ(
      ShellEnvironment(a, task, 1, own, ""),
      (std::vector<std::string>{"A=worker", "B=task", "C=3", "ORQ_JOB_ID=j7", "ORQ_TASK_ID=j7.2",
                                "ORQ_TASK_INDEX=2", "ORQ_ATTEMPT=3", "ORQ_SLOT=1"}));
  // The job's environment replaces the worker's; PWD follows the directory.
  a.context = std::make_shared<JobContext>(
      JobContext{"/data", std::vector<std::string>{"B=job", "PWD=/elsewhere", "ORQ_SLOT=9"}});
  EXPECT_EQ(ShellEnvironment(a, task, 0, own, "/data"),
            (std::vector<std::string>{"B=task", "PWD=/data", "ORQ_SLOT=0", "C=3", "ORQ_JOB_ID=j7",
                                      "ORQ_TASK_ID=j7.2", "ORQ_TASK_INDEX=2", "ORQ_ATTEMPT=3"}));
  // --clean-env: an empty job environment is empty, not the worker's.
  a.context = std::make_shared<JobContext>(JobContext{"", std::vector<std::string>{}});
  EXPECT_EQ(ShellEnvironment(a, ShellTask{{"true"}}, 0, own, "").size(), 5u);
}

TEST_F(TaskRunnerTest, AWatchedTasksOutputComesOutAsItIsPrinted) {
  const std::string go = ::testing::TempDir() + "/orq-watch-go";
  std::remove(go.c_str());
  Start(0, Shell({"sh", "-c",
                  "echo first; while [ ! -e " + go + " ]; do sleep 0.01; done; echo second"}));
  runner_.Watch({1, 0});
  // At once: what it printed so far (perhaps nothing yet), then each new piece once.
  auto first = runner_.Output();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].out_offset, 0u);
  std::string seen = first[0].out;
  for (int i = 0; i < 500 && seen.find("first\n") == std::string::npos; ++i) {
    loop_.run_for(milliseconds(10));
    for (const auto& m : runner_.Output()) {
      EXPECT_EQ(m.out_offset, seen.size());
      seen += m.out;
    }
  }
  EXPECT_EQ(seen, "first\n");
  std::ofstream(go).put('\n');
  WaitFor(1);
  EXPECT_EQ(done_[0].shell->stdout_text, "first\nsecond\n");
  EXPECT_TRUE(runner_.Output().empty());  // reported: its outcome has the rest
  EXPECT_FALSE(runner_.watching());
  std::remove(go.c_str());
}

TEST(ShellPlaceTest, DirectoryIsTheTasksThenTheJobsThenTheWorkers) {
  Assignment a;
  EXPECT_EQ(ShellDirectory(a, ShellTask{{"true"}}, "/w"), "/w");
  EXPECT_EQ(ShellDirectory(a, ShellTask::In({"true"}, "rel", {}), "/w"), "/w/rel");
  a.context = std::make_shared<JobContext>(JobContext{"/job", std::nullopt});
  EXPECT_EQ(ShellDirectory(a, ShellTask{{"true"}}, "/w"), "/job");
  EXPECT_EQ(ShellDirectory(a, ShellTask::In({"true"}, "rel", {}), "/w"), "/job/rel");
  EXPECT_EQ(ShellDirectory(a, ShellTask::In({"true"}, "/abs", {}), "/w"), "/abs");
}

}  // namespace
}  // namespace orq

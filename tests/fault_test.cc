// Fault tests: workers and brokers killed, paused and poisoned mid-job, with real processes.
// Each ends with the checker: every task has exactly one result, in order, intact.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "common/process.h"
#include "tests/checker.h"
#include "tests/harness.h"

namespace orq::testing {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

std::vector<int> WorkerPids(const nlohmann::json& status) {
  std::vector<int> pids;
  if (status.is_object())
    for (const auto& w : status["workers"]) pids.push_back(w["pid"]);
  return pids;
}

std::string SubmitFile(const OrqEnv& env, const std::string& name, const std::string& lines,
                       std::vector<std::string> options = {}) {
  std::vector<std::string> args = {"submit", "-f", env.WriteFile(name, lines)};
  args.insert(args.end(), options.begin(), options.end());
  RunResult r = env.Run(args);
  EXPECT_TRUE(Exits(r, 0));
  return Lines(r.out).empty() ? "" : Lines(r.out)[0];
}

// N sleep tasks of `seconds`, task i returning "r<i>".
std::string Sleeps(int n, double seconds, std::vector<nlohmann::json>& expected) {
  std::string lines;
  for (int i = 0; i < n; ++i) {
    std::string result = "r" + std::to_string(i);
    lines +=
        nlohmann::json{{"kind", "sleep"}, {"seconds", seconds}, {"result", result}}.dump() + "\n";
    expected.push_back(result);
  }
  return lines;
}

TEST(FaultTest, KillingRandomWorkersLosesNothing) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "3", "-t", "1"}), 0));
  // Shell tasks take one of each worker's T slots, so the job is spread over all three workers.
  std::vector<nlohmann::json> expected;
  std::string lines;
  for (int i = 0; i < 300; ++i) {
    lines += nlohmann::json{{"kind", "shell"},
                            {"argv", {"sh", "-c", "sleep 0.05; echo r" + std::to_string(i)}}}
                 .dump() +
             "\n";
    expected.push_back("r" + std::to_string(i) + "\n");
  }
  std::string job = SubmitFile(env, "job.jsonl", lines, {"--attempts", "20"});
  // Given a job of 300 tasks in flight, When a random worker is killed with SIGKILL five times
  // (each time after its replacement has registered),
  std::mt19937 random(42);
  int kills = 0;
  for (; kills < 5; ++kills) {
    auto pids = WorkerPids(env.Status());
    ASSERT_EQ(pids.size(), 3u);
    int victim = pids[random() % pids.size()];
    ::kill(victim, SIGKILL);
    ASSERT_TRUE(env.WaitStatus([&](const nlohmann::json& s) {
      auto now = WorkerPids(s);
      return now.size() == 3 && std::find(now.begin(), now.end(), victim) == now.end();
    })) << "worker "
        << victim << " was not replaced";
  }
  // Then every task ends ok exactly once, in order, with its own result.
  RunResult r = env.Run({"gather", "--json", job}, "", seconds(90));
  EXPECT_TRUE(Exits(r, 0));
  CheckReport report = CheckResults(job, expected, r.out);
  EXPECT_TRUE(report.ok()) << report.Describe();
  auto status = env.Status();
  EXPECT_EQ(status["tasks"]["done"], 300);
  EXPECT_GE(status["counters"]["requeued"].get<int>(), 1);
}

TEST(FaultTest, BrokerKilledMidJobResumesOnUp) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "2", "-t", "1"}), 0));
  // Given a finished job and a job in flight,
  std::vector<nlohmann::json> before, during;
  std::string done = SubmitFile(env, "done.jsonl", Sleeps(20, 0, before));
  ASSERT_TRUE(Exits(env.Run({"gather", done}), 0));
  std::string job = SubmitFile(env, "job.jsonl", Sleeps(100, 4, during));
  // (every task of it running: each then runs a second time, after the restart)
  ASSERT_TRUE(env.WaitStatus([](const nlohmann::json& s) { return s["tasks"]["running"] == 100; }));
  // When the broker is killed with SIGKILL, its workers go too,
  int broker = env.Status()["broker"]["pid"];
  ::kill(broker, SIGKILL);
  ASSERT_TRUE(env.WaitNoProcesses(seconds(15)));
  // and `orq up` starts again from the journal,
  RunResult up = env.Run({"up", "-w", "2", "-t", "1"});
  ASSERT_TRUE(Exits(up, 0));
  // Then every accepted task completes exactly once, and earlier results are still there.
  RunResult r1 = env.Run({"gather", "--json", done});
  EXPECT_TRUE(Exits(r1, 0));
  CheckReport report1 = CheckResults(done, before, r1.out);
  EXPECT_TRUE(report1.ok()) << report1.Describe();
  RunResult r2 = env.Run({"gather", "--json", job}, "", seconds(60));
  EXPECT_TRUE(Exits(r2, 0));
  CheckReport report2 = CheckResults(job, during, r2.out);
  EXPECT_TRUE(report2.ok()) << report2.Describe();
  for (const auto& line : Lines(r2.out)) EXPECT_EQ(nlohmann::json::parse(line)["attempts"], 2);
}

TEST(FaultTest, PausedWorkerLosesItsLeaseAndItsLateResultIsRejected) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "2", "-t", "1", "--heartbeat-ms", "200"}), 0));
  // Given a task running on one worker (its first attempt runs until stopped, a second one ends
  // at once),
  const std::string marker = env.home() + "/first-attempt";
  RunResult submit = env.Run(
      {"submit", "--", "sh", "-c",
       "if [ -e " + marker + " ]; then echo once; else touch " + marker + "; sleep 60; fi"});
  std::string job = JobId(submit);
  ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(marker); }));
  int paused = 0;
  ASSERT_TRUE(env.WaitStatus([&](const nlohmann::json& s) {
    for (const auto& w : s["workers"]) {
      if (w["running"] == 1) paused = w["pid"];
    }
    return paused != 0;
  }));
  // When that worker is paused (SIGSTOP) past its liveness,
  ::kill(paused, SIGSTOP);
  // Then the task is leased again and completes on the other worker,
  RunResult r = env.Run({"gather", "--json", job}, "", seconds(30));
  ::kill(paused, SIGCONT);
  ASSERT_TRUE(Exits(r, 0));
  auto first = nlohmann::json::parse(r.out);
  EXPECT_EQ(first["result"], "once\n");
  EXPECT_EQ(first["attempts"], 2);
  EXPECT_NE(first["worker"], paused);
  // and once resumed, the paused worker is told to drop the task, and what it reports of it is
  // rejected and counted,
  EXPECT_TRUE(env.WaitStatus([](const nlohmann::json& s) {
    return s["counters"]["stale_results"] >= 1;
  })) << env.Status().dump();
  // and the task still has its one result.
  RunResult again = env.Run({"gather", "--json", job});
  EXPECT_EQ(nlohmann::json::parse(again.out), first);
  EXPECT_EQ(env.Status()["tasks"]["done"], 1);
}

bool AnyProcessNamed(const OrqEnv& env, const std::string& name) {
  for (pid_t pid : env.Processes()) {
    if (ReadProcFile(pid, "comm") == name + "\n") return true;
  }
  return false;
}

// Waits until a process named `name` is there (or, with present false, gone); false at the
// deadline.
bool WaitProcessNamed(const OrqEnv& env, const std::string& name, bool present, seconds timeout) {
  return WaitUntil([&] { return AnyProcessNamed(env, name) == present; }, timeout);
}

TEST(FaultTest, ShellTimeoutKillsBackgroundChildrenToo) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  // Given a shell task that starts background children and ignores SIGTERM,
  RunResult submit = env.Run({"submit", "--timeout", "0.5", "--", "sh", "-c",
                              "trap '' TERM; sleep 60 & sleep 60 & sleep 60; wait"});
  std::string job = JobId(submit);
  // When it runs over its time limit,
  RunResult r = env.Run({"gather", "--json", job});
  // Then it ends `timeout`, and no process of it is left.
  EXPECT_TRUE(Exits(r, 1));
  auto out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["status"], "timeout");
  EXPECT_EQ(out["error"], "timed out after 0.5 s");
  EXPECT_TRUE(WaitProcessNamed(env, "sleep", false, seconds(5)));
}

TEST(FaultTest, PoisonTaskEndsWorkerLostAndTheRestCompletes) {
  OrqEnv env;
  // Given a job whose second task kills its worker every time,
  std::string file =
      env.WriteFile("poison.jsonl",
                    "{\"kind\": \"echo\", \"value\": \"a\"}\n"
                    "{\"kind\": \"shell\", \"cmd\": \"kill -9 $PPID\", \"attempts\": 2}\n"
                    "{\"kind\": \"sleep\", \"seconds\": 0.5, \"result\": \"c\"}\n"
                    "{\"kind\": \"echo\", \"value\": \"d\"}\n");
  // When it runs,
  RunResult r = env.Run({"run", "--json", "-w", "2", "-t", "1", file});
  // Then the poison ends worker_lost after 2 attempts, and every other task ends ok.
  EXPECT_TRUE(Exits(r, 1));
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.err;
  auto poison = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(poison["status"], "worker_lost");
  EXPECT_EQ(poison["attempts"], 2);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["result"], "a");
  EXPECT_EQ(nlohmann::json::parse(lines[2])["result"], "c");
  EXPECT_EQ(nlohmann::json::parse(lines[3])["result"], "d");
  EXPECT_NE(r.err.find("4 tasks: 3 ok, 1 failed"), std::string::npos) << r.err;
}

TEST(FaultTest, RetriesRerunFailingTasks) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  // Given a task that fails twice, then succeeds (it counts its runs in a file), run with
  // --retries 2 (GNU parallel's meaning: 2 runs in all), it fails after its second run;
  std::string counter = env.home() + "/runs";
  const std::vector<std::string> task = {
      "--", "sh", "-c", "echo x >> " + counter + "; [ $(wc -l < " + counter + ") -ge 3 ]"};
  auto submit = [&](std::vector<std::string> args) {
    args.insert(args.end(), task.begin(), task.end());
    return JobId(env.Run(args));
  };
  RunResult r = env.Run({"gather", "--json", submit({"submit", "--retries", "2"})});
  EXPECT_TRUE(Exits(r, 1));
  EXPECT_EQ(nlohmann::json::parse(r.out)["attempts"], 2) << r.out;
  // with --retries 3, the third run succeeds (at once, or after a backoff when asked).
  ::unlink(counter.c_str());
  std::string job = submit({"submit", "--retries", "3", "--retry-backoff", "0.05,0.1"});
  r = env.Run({"gather", "--json", job});
  EXPECT_TRUE(Exits(r, 0));
  auto out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["status"], "ok");
  EXPECT_EQ(out["attempts"], 3);
  EXPECT_EQ(out["last_error"], "attempt 2: exit code 1");
}

TEST(FaultTest, GracefulDownFinishesShortTasksAndKeepsCancels) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  // Given a delayed task cancelled, and a short one running (it has said so),
  std::string delayed = JobId(env.Run({"submit", "--delay", "30", "--echo", "never"}));
  ASSERT_TRUE(Exits(env.Run({"cancel", delayed}), 0));
  const std::string started = env.home() + "/started";
  std::string running =
      JobId(env.Run({"submit", "--", "sh", "-c", "touch " + started + "; sleep 2; echo finished"}));
  ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(started); }));
  // When orq goes down (its grace is 5 s) and up again,
  ASSERT_TRUE(Exits(env.Run({"down"}), 0));
  ASSERT_TRUE(env.WaitNoProcesses(seconds(10)));
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  // Then the running task finished within the grace, once, and the cancel held.
  RunResult r = env.Run({"gather", "--json", running, delayed});
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.err;
  auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["result"], "finished\n");
  EXPECT_EQ(first["attempts"], 1);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["status"], "cancelled");
  // forget removes a finished job for good.
  EXPECT_EQ(env.Run({"forget", running}).out, "forgot 1 job\n");
  EXPECT_TRUE(Exits(env.Run({"gather", running}), 2));
}

TEST(FaultTest, KilledWorkersShellTasksDoNotOutliveIt) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  // Given a shell task with a child of its own, running on a worker,
  RunResult submit =
      env.Run({"submit", "--attempts", "1", "--", "sh", "-c", "sleep 60 & sleep 60"});
  std::string job = JobId(submit);
  ASSERT_TRUE(env.WaitStatus([](const nlohmann::json& s) { return s["tasks"]["running"] == 1; }));
  ASSERT_TRUE(WaitProcessNamed(env, "sleep", true, seconds(10)));
  // When the worker is killed with SIGKILL (it can clean nothing up),
  ::kill(WorkerPids(env.Status())[0], SIGKILL);
  // Then the task ends worker_lost and none of its processes is left.
  RunResult r = env.Run({"gather", "--json", job});
  EXPECT_EQ(nlohmann::json::parse(r.out)["status"], "worker_lost");
  EXPECT_TRUE(WaitProcessNamed(env, "sleep", false, seconds(5)));
}

TEST(FaultTest, StandaloneWorkerRidesOutABrokerRestart) {
  OrqEnv env;
  // Given a broker and a worker started by hand (not supervised: it reconnects on its own),
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "0", "--heartbeat-ms", "200"}), 0));
  env.Start({"worker", "--connect", "ipc://" + env.home() + "/broker.ipc", "-t", "1",
             "--heartbeat-ms", "200"});
  ASSERT_TRUE(env.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 1; }));
  // running a task (until the test opens its gate) when the broker is killed,
  const std::string gate = env.home() + "/gate";
  std::string job = JobId(env.Run(
      {"submit", "--", "sh", "-c", "while [ ! -e " + gate + " ]; do sleep 0.02; done; echo kept"}));
  ASSERT_TRUE(env.WaitStatus([](const nlohmann::json& s) { return s["tasks"]["running"] == 1; }));
  int broker = env.Status()["broker"]["pid"];
  ::kill(broker, SIGKILL);
  ASSERT_TRUE(WaitGone(broker));
  // When a new broker starts from the journal,
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "0", "--heartbeat-ms", "200"}), 0));
  // Then the worker registers again with its lease and the broker lets it keep the task,
  ASSERT_TRUE(env.WaitStatus([](const nlohmann::json& s) {
    return s["workers"].size() == 1 && s["tasks"]["running"] == 1;
  }));
  // and once the gate opens, the task finishes once, in its first attempt.
  env.WriteFile("gate", "");
  RunResult r = env.Run({"gather", "--json", job}, "", seconds(30));
  ASSERT_TRUE(Exits(r, 0));
  auto out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["result"], "kept\n");
  EXPECT_EQ(out["attempts"], 1);
  auto status = env.Status();
  EXPECT_EQ(status["counters"]["adopted"], 1);
  EXPECT_EQ(status["workers"].size(), 1u);
}

}  // namespace
}  // namespace orq::testing

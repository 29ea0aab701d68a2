// The daemon flow: orq up, submit each kind, gather, status, cancel, down.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/clock.h"
#include "tests/harness.h"

namespace orq::testing {
namespace {

using std::chrono::seconds;

std::string Submit(const OrqEnv& env, std::vector<std::string> args) {
  args.insert(args.begin(), "submit");
  RunResult r = env.Run(args);
  EXPECT_TRUE(Exits(r, 0));
  auto lines = Lines(r.out);
  EXPECT_EQ(lines.size(), 1u) << r.out;
  return lines.empty() ? "" : lines[0];
}

TEST(DaemonTest, UpSubmitGatherStatusCancelDown) {
  OrqEnv env;
  // Given orq up with two workers,
  RunResult up = env.Run({"up", "-w", "2", "-t", "1"});
  ASSERT_TRUE(Exits(up, 0));
  EXPECT_NE(up.out.find("orq is up"), std::string::npos);
  RunResult again = env.Run({"up", "-w", "2"});
  EXPECT_TRUE(Exits(again, 0));
  EXPECT_NE(again.err.find("already up"), std::string::npos);
  auto status = env.Status();
  ASSERT_EQ(status["workers"].size(), 2u);
  EXPECT_GT(status["broker"]["pid"].get<int>(), 0);
  EXPECT_NE(status["endpoint"].get<std::string>().find(env.home()), std::string::npos);
  EXPECT_EQ(status["tasks"]["queued"], 0);
  // (an unknown id is one sentence that names its verb once)
  RunResult unknown = env.Run({"gather", "j99"});
  EXPECT_TRUE(Exits(unknown, 2));
  EXPECT_EQ(unknown.err, "orq gather: unknown job j99\n");

  // When one task of each kind is submitted,
  std::string sleep = Submit(env, {"--sleep", "0.2", "--result", "slept"});
  std::string cpu = Submit(env, {"--cpu", "20"});
  std::string echo = Submit(env, {"--echo", "{\"k\": [1, 2]}"});
  std::string shell = Submit(env, {"--", "sh", "-c", "echo $((6 * 7))"});
  std::string file = env.WriteFile("two.jsonl",
                                   "{\"kind\": \"echo\", \"value\": \"x\"}\n"
                                   "{\"kind\": \"sleep\", \"seconds\": 0.1}\n");
  std::string job = Submit(env, {"-f", file});
  EXPECT_EQ(sleep, "j1");
  EXPECT_EQ(job, "j5");
  // Then gather prints them in the order named.
  RunResult gathered = env.Run({"gather", sleep, cpu, echo, shell, job, job + ".0"});
  EXPECT_TRUE(Exits(gathered, 0));
  EXPECT_EQ(gathered.out, "slept\n20\n{\"k\":[1,2]}\n42\nx\n0.1\nx\n");

  // A delayed task is held by the broker until due: it starts no sooner than a second after it
  // was submitted, however busy the machine.
  const double before_submit = WallNow();
  std::string delayed = Submit(env, {"--delay", "1", "--echo", "late"});
  RunResult late = env.Run({"gather", "--json", delayed});
  EXPECT_TRUE(Exits(late, 0));
  auto late_json = nlohmann::json::parse(late.out);
  EXPECT_EQ(late_json["result"], "late");
  EXPECT_GE(late_json["started"].get<double>(), before_submit + 1.0) << late.out;

  // Cancel: a running shell task and a delayed one.
  std::string running = Submit(env, {"--", "sleep", "60"});
  std::string waiting = Submit(env, {"--delay", "60", "--sleep", "1"});
  ASSERT_TRUE(env.WaitStatus([](const nlohmann::json& s) { return s["tasks"]["running"] == 1; }))
      << "the shell task never started";
  EXPECT_EQ(env.Status()["tasks"]["delayed"], 1);  // the broker holds the one not yet due
  RunResult cancel = env.Run({"cancel", running, waiting});
  EXPECT_TRUE(Exits(cancel, 0));
  EXPECT_EQ(cancel.out, "cancelled 2 tasks\n");
  RunResult cancelled = env.Run({"gather", "--json", running, waiting});
  EXPECT_TRUE(Exits(cancelled, 1));
  const auto outcomes = Lines(cancelled.out);
  ASSERT_EQ(outcomes.size(), 2u) << cancelled.out;
  const auto was_running = nlohmann::json::parse(outcomes[0]);
  const auto was_waiting = nlohmann::json::parse(outcomes[1]);
  EXPECT_EQ(was_running["status"], "cancelled");
  EXPECT_EQ(was_running["error"].get<std::string>().rfind("cancelled while running", 0), 0u)
      << was_running;  // stopped on its worker
  EXPECT_EQ(was_waiting["status"], "cancelled");
  EXPECT_EQ(was_waiting["error"], "cancelled before it started");
  status = env.Status();
  EXPECT_EQ(status["tasks"]["cancelled"], 2);
  EXPECT_EQ(status["tasks"]["done"], 7);  // 4 single tasks, a job of 2, the delayed one

  // Errors: unknown ids exit 2, a gather that times out exits 124.
  EXPECT_TRUE(Exits(env.Run({"gather", "j99"}), 2));
  EXPECT_TRUE(Exits(env.Run({"gather", "j1.5"}), 2));
  EXPECT_TRUE(Exits(env.Run({"gather", "nonsense"}), 2));
  EXPECT_TRUE(Exits(env.Run({"cancel", "j99"}), 2));
  std::string slow = Submit(env, {"--sleep", "30"});
  RunResult timeout = env.Run({"gather", "--timeout", "0.3", slow});
  EXPECT_TRUE(Exits(timeout, 124));
  EXPECT_TRUE(Exits(env.Run({"submit", "--sleep", "1", "--cpu", "1"}), 2));
  EXPECT_TRUE(Exits(env.Run({"submit", "--sleep", "-1"}), 2));

  // When orq goes down, Then nothing is left running; down again is a no-op.
  RunResult down = env.Run({"down"});
  EXPECT_TRUE(Exits(down, 0));
  EXPECT_NE(down.out.find("orq is down"), std::string::npos);
  EXPECT_TRUE(env.WaitNoProcesses(seconds(10)));
  EXPECT_FALSE(std::filesystem::exists(env.home() + "/broker.ipc"));
  EXPECT_FALSE(std::filesystem::exists(env.home() + "/broker.pid"));
  EXPECT_TRUE(std::filesystem::exists(env.home() + "/journal.db"));
  RunResult down_again = env.Run({"down"});
  EXPECT_TRUE(Exits(down_again, 0));
  EXPECT_NE(down_again.err.find("not running"), std::string::npos);
}

TEST(DaemonTest, AWorkerStartedByHandFindsItsBrokerAndUsesTheMachine) {
  OrqEnv env;
  const unsigned cores = std::thread::hardware_concurrency();
  ASSERT_GE(cores, 2u) << "this test needs 2 cores to see two gpu tasks at once";
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "0"}), 0));
  // Given a worker started by hand with no --connect and no -t, offering 2 gpus,
  const pid_t worker = env.Start({"worker", "--resources", "gpu=2"});
  ASSERT_TRUE(env.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 1; }))
      << ReadFile(env.home() + "/started.err");
  // then it joined $ORQ_HOME's broker with a thread and a shell slot per core,
  const nlohmann::json w = env.Status()["workers"][0];
  EXPECT_EQ(w["threads"], cores) << w.dump();
  EXPECT_EQ(w["slots"]["shell"], cores) << w.dump();
  // and two tasks taking a gpu each run at once (each waits until both have started).
  const std::string dir = env.home() + "/started";
  std::filesystem::create_directories(dir);
  RunResult submit = env.Run(
      {"submit", "--resource", "gpu=1", "--timeout", "60", "--", "sh", "-c",
       "touch " + dir + "/{}; until [ $(ls " + dir + " | wc -l) -ge 2 ]; do sleep 0.05; done",
       ":::", "a", "b"});
  ASSERT_TRUE(Exits(submit, 0));
  EXPECT_TRUE(Exits(env.Run({"gather", JobId(submit)}), 0));
  ::kill(worker, SIGTERM);
  EXPECT_EQ(WaitExit(worker, std::chrono::seconds(30)), 0);
}

TEST(DaemonTest, NoBrokerMeansExitThree) {
  OrqEnv env;
  RunResult gather = env.Run({"gather", "j1"});
  EXPECT_TRUE(Exits(gather, 3));
  EXPECT_NE(gather.err.find("orq is not running"), std::string::npos) << gather.err;
  EXPECT_TRUE(Exits(env.Run({"submit", "--sleep", "1"}), 3));
  EXPECT_TRUE(Exits(env.Run({"status"}), 3));
}

TEST(DaemonTest, BadTaskFileSubmitsNothing) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  std::string file = env.WriteFile("bad.jsonl",
                                   "{\"kind\": \"echo\", \"value\": 1}\n"
                                   "{\"kind\": \"shell\", \"argv\": []}\n");
  RunResult r = env.Run({"submit", "-f", file});
  EXPECT_TRUE(Exits(r, 2));
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("bad.jsonl:2: field 'argv' must not be empty"), std::string::npos) << r.err;
  EXPECT_EQ(env.Status()["jobs"], 0);
}

TEST(DaemonTest, BrokerSigtermStopsEverything) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "2", "-t", "1"}), 0));
  Submit(env, {"--", "sleep", "60"});
  int pid = env.Status()["broker"]["pid"];
  ::kill(pid, SIGTERM);
  EXPECT_TRUE(env.WaitNoProcesses(seconds(15)));
}

TEST(DaemonTest, KilledWorkerIsReplacedAndItsTaskRunsAgain) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  int worker = env.Status()["workers"][0]["pid"];
  // Given a task whose first attempt runs until stopped (a second one ends at once),
  const std::string marker = env.home() + "/first-attempt";
  std::string job = Submit(env, {"--", "sh", "-c",
                                 "if [ -e " + marker + " ]; then echo survived; else touch " +
                                     marker + "; sleep 60; fi"});
  // When its worker is killed while it runs it,
  ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(marker); }));
  ::kill(worker, SIGKILL);
  // Then it runs again on the worker that replaced it, and ends ok.
  RunResult r = env.Run({"gather", "--json", job});
  EXPECT_TRUE(Exits(r, 0));
  auto out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["result"], "survived\n");
  EXPECT_EQ(out["attempts"], 2);
  EXPECT_NE(out["worker"], worker);
}

}  // namespace
}  // namespace orq::testing

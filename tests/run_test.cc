// `orq run` end to end: a broker and workers started for the run, real processes throughout.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/harness.h"

namespace orq::testing {
namespace {

using std::chrono::seconds;

TEST(RunTest, SayAfterPrintsInOrderInAboutThreeSeconds) {
  OrqEnv env;
  // Given the seed's say_after example, When it runs,
  RunResult r = env.Run({"run", Example("say_after.jsonl")});
  // Then the results come in submission order, concurrently (about 3 s, not 6).
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "hello\nworld\n!!!\n");
  EXPECT_NE(r.err.find("3 tasks: 3 ok, 0 failed in "), std::string::npos) << r.err;
  EXPECT_GE(r.seconds, 2.9);
  EXPECT_LT(r.seconds, 5.5);
  EXPECT_TRUE(env.WaitNoProcesses(seconds(10)));
}

TEST(RunTest, SlowFunctionsGatherInSubmissionOrder) {
  OrqEnv env;
  std::ifstream in(Example("slow_functions.jsonl"));
  std::vector<std::string> expected;
  double longest = 0, sum = 0;
  for (std::string line; std::getline(in, line);) {
    double s = nlohmann::json::parse(line)["seconds"].get<double>();
    expected.push_back(std::to_string(static_cast<int>(s)));
    longest = std::max(longest, s);
    sum += s;
  }
  ASSERT_EQ(expected.size(), 10u);
  RunResult r = env.Run({"run", "-w", "2", Example("slow_functions.jsonl")});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Lines(r.out), expected);
  // Elapsed is about the longest, not the sum.
  EXPECT_GE(r.seconds, longest - 0.1);
  EXPECT_LT(r.seconds, longest + (sum - longest) / 2);
}

TEST(RunTest, MixedKindsAndJsonOutput) {
  OrqEnv env;
  RunResult r = env.Run({"run", "--json", "-w", "2", "-t", "2", Example("mixed.jsonl")});
  ASSERT_EQ(r.code, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 6u);
  std::vector<nlohmann::json> objs;
  for (auto& l : lines) objs.push_back(nlohmann::json::parse(l));
  for (size_t i = 0; i < objs.size(); ++i) {
    EXPECT_EQ(objs[i]["id"], "j1." + std::to_string(i));
    EXPECT_EQ(objs[i]["status"], "ok");
    EXPECT_EQ(objs[i]["attempts"], 1);
    EXPECT_TRUE(objs[i]["worker"].is_number());
    EXPECT_LE(objs[i]["started"].get<double>(), objs[i]["finished"].get<double>());
  }
  EXPECT_EQ(objs[0]["result"], nlohmann::json({{"greeting", "hello"}, {"n", 1}}));
  EXPECT_EQ(objs[1]["result"], "slept half a second");
  EXPECT_EQ(objs[2]["result"], 200);
  EXPECT_EQ(objs[3]["result"], "hi from a child process\n");
  EXPECT_EQ(objs[3]["exit_code"], 0);
  EXPECT_EQ(objs[4]["stdout"], "PIPED THROUGH A SHELL\n");
  EXPECT_EQ(objs[5]["result"], "done");
}

TEST(RunTest, ReadsTasksFromStdin) {
  OrqEnv env;
  RunResult r =
      env.Run({"run", "-w", "1", "-"},
              "{\"kind\": \"echo\", \"value\": \"a\"}\n{\"kind\": \"echo\", \"value\": 2}\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "a\n2\n");
}

TEST(RunTest, ShellFailuresExitOneWithCodeAndStderr) {
  OrqEnv env;
  std::string file =
      env.WriteFile("fail.jsonl",
                    "{\"kind\": \"shell\", \"cmd\": \"echo partial; echo broken >&2; exit 3\"}\n"
                    "{\"kind\": \"shell\", \"argv\": [\"true\"]}\n"
                    "{\"kind\": \"shell\", \"argv\": [\"no-such-command-orq\"]}\n");
  RunResult text = env.Run({"run", "-w", "1", file});
  EXPECT_EQ(text.code, 1);
  EXPECT_EQ(text.out, "partial\n\n\n");
  EXPECT_NE(text.err.find("task j1.0 failed: exit code 3 (stderr: broken)"), std::string::npos)
      << text.err;
  EXPECT_NE(text.err.find("3 tasks: 1 ok, 2 failed"), std::string::npos) << text.err;

  RunResult json = env.Run({"run", "--json", "-w", "1", file});
  EXPECT_EQ(json.code, 1);
  auto lines = Lines(json.out);
  ASSERT_EQ(lines.size(), 3u);
  auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["status"], "failed");
  EXPECT_EQ(first["exit_code"], 3);
  EXPECT_EQ(first["stdout"], "partial\n");
  EXPECT_EQ(first["stderr"], "broken\n");
  auto third = nlohmann::json::parse(lines[2]);
  EXPECT_EQ(third["exit_code"], 127);
  EXPECT_EQ(third["error"], "cannot run 'no-such-command-orq': command not found");
}

TEST(RunTest, TimeoutsEndTasks) {
  OrqEnv env;
  std::string file =
      env.WriteFile("timeouts.jsonl",
                    "{\"kind\": \"sleep\", \"seconds\": 30, \"timeout\": 0.2}\n"
                    "{\"kind\": \"shell\", \"argv\": [\"sleep\", \"30\"], \"timeout\": 0.2}\n"
                    "{\"kind\": \"sleep\", \"seconds\": 0.1, \"timeout\": 5}\n");
  RunResult r = env.Run({"run", "--json", "-w", "1", file});
  EXPECT_EQ(r.code, 1);
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["status"], "timeout");
  EXPECT_EQ(nlohmann::json::parse(lines[1])["status"], "timeout");
  EXPECT_EQ(nlohmann::json::parse(lines[2])["status"], "ok");
  EXPECT_LT(r.seconds, 10);
}

TEST(RunTest, BadFileIsRefusedWholeAndNothingStarts) {
  OrqEnv env;
  std::string file = env.WriteFile("bad.jsonl",
                                   "{\"kind\": \"echo\", \"value\": 1}\n"
                                   "{\"kind\": \"sleep\", \"seconds\": -1}\n");
  RunResult r = env.Run({"run", file});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "orq: " + file +
                       ":2: field 'seconds' must be zero or more, not -1; nothing was submitted\n");
  EXPECT_TRUE(env.Processes().empty());

  RunResult missing = env.Run({"run", env.home() + "/missing.jsonl"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("cannot read"), std::string::npos);
  RunResult usage = env.Run({"run", "-w", "0", Example("say_after.jsonl")});
  EXPECT_EQ(usage.code, 2);
}

TEST(RunTest, KilledRunLeavesNoProcess) {
  OrqEnv env;
  std::string file = env.WriteFile("long.jsonl",
                                   "{\"kind\": \"shell\", \"argv\": [\"sleep\", \"60\"]}\n"
                                   "{\"kind\": \"sleep\", \"seconds\": 60}\n");
  // Given a run whose broker, workers and shell task are all up,
  pid_t cli = env.Start({"run", "-w", "2", "-t", "1", file});
  ASSERT_TRUE(env.WaitProcesses(5, seconds(20)));  // cli, broker, 2 workers, the shell task
  // When the CLI is killed with SIGKILL,
  ::kill(cli, SIGKILL);
  ::waitpid(cli, nullptr, 0);
  // Then everything it started goes away.
  EXPECT_TRUE(env.WaitNoProcesses(seconds(15)));
}

TEST(RunTest, InterruptedRunStopsEverything) {
  OrqEnv env;
  std::string file =
      env.WriteFile("long.jsonl", "{\"kind\": \"shell\", \"argv\": [\"sleep\", \"60\"]}\n");
  pid_t cli = env.Start({"run", "-w", "1", "-t", "1", file});
  ASSERT_TRUE(env.WaitProcesses(4, seconds(20)));  // cli, broker, worker, the shell task
  ::kill(cli, SIGINT);
  int status = 0;
  ::waitpid(cli, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_TRUE(env.WaitNoProcesses(seconds(15)));
}

}  // namespace
}  // namespace orq::testing

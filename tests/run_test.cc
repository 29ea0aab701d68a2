// `orq run` end to end: a broker and workers started for the run, real processes throughout.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/harness.h"

namespace orq::testing {
namespace {

using std::chrono::seconds;

// The most tasks of a --json run's outcomes that ran at once (from their started/finished times).
int MostAtOnce(const std::vector<nlohmann::json>& outcomes) {
  std::vector<std::pair<double, int>> edges;
  for (const auto& o : outcomes) {
    edges.push_back({o["started"].get<double>(), +1});
    edges.push_back({o["finished"].get<double>(), -1});
  }
  std::sort(edges.begin(), edges.end(), [](const auto& a, const auto& b) {
    return a.first < b.first || (a.first == b.first && a.second < b.second);
  });
  int now = 0, most = 0;
  for (const auto& [time, step] : edges) most = std::max(most, now += step);
  return most;
}

std::vector<nlohmann::json> Outcomes(const RunResult& r) {
  std::vector<nlohmann::json> outcomes;
  for (const std::string& line : Lines(r.out)) outcomes.push_back(nlohmann::json::parse(line));
  return outcomes;
}

TEST(RunTest, SayAfterGathersInOrderAndRunsConcurrently) {
  OrqEnv env;
  // Given the seed's say_after example, When it runs,
  RunResult r = env.Run({"run", "--json", Example("say_after.jsonl")});
  // Then the results come in submission order, and the three sleeps ran at once (about 3 s in
  // all, not 6: each took its own time, and all three overlapped).
  EXPECT_TRUE(Exits(r, 0));
  const auto outcomes = Outcomes(r);
  ASSERT_EQ(outcomes.size(), 3u) << r.out;
  const std::vector<std::string> said = {"hello", "world", "!!!"};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(outcomes[i]["result"], said[i]);
    EXPECT_GE(outcomes[i]["finished"].get<double>() - outcomes[i]["started"].get<double>(),
              i + 1 - 0.05);
  }
  EXPECT_EQ(MostAtOnce(outcomes), 3) << r.out;
  EXPECT_NE(r.err.find("3 tasks: 3 ok, 0 failed in "), std::string::npos) << r.err;
  EXPECT_GE(r.seconds, 2.9);
  EXPECT_TRUE(env.WaitNoProcesses(seconds(10)));
}

TEST(RunTest, SlowFunctionsGatherInSubmissionOrderAndOverlap) {
  OrqEnv env;
  std::ifstream in(Example("slow_functions.jsonl"));
  std::vector<double> expected;
  for (std::string line; std::getline(in, line);)
    expected.push_back(nlohmann::json::parse(line)["seconds"].get<double>());
  ASSERT_EQ(expected.size(), 10u);
  RunResult r = env.Run({"run", "--json", "-w", "2", Example("slow_functions.jsonl")});
  EXPECT_TRUE(Exits(r, 0));
  const auto outcomes = Outcomes(r);
  ASSERT_EQ(outcomes.size(), 10u) << r.out;
  // In submission order, each as long as it said; and all ten at once over the two workers, so
  // the whole takes about the longest, not the sum.
  for (size_t i = 0; i < outcomes.size(); ++i) {
    EXPECT_EQ(outcomes[i]["id"], "j1." + std::to_string(i));
    EXPECT_GE(outcomes[i]["finished"].get<double>() - outcomes[i]["started"].get<double>(),
              expected[i] - 0.05);
  }
  EXPECT_EQ(MostAtOnce(outcomes), 10) << r.out;
}

TEST(RunTest, MixedKindsAndJsonOutput) {
  OrqEnv env;
  RunResult r = env.Run({"run", "--json", "-w", "2", "-t", "2", Example("mixed.jsonl")});
  ASSERT_TRUE(Exits(r, 0));
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
  EXPECT_TRUE(Exits(r, 0));
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
  EXPECT_TRUE(Exits(text, 1));
  EXPECT_EQ(text.out, "partial\n");  // what the tasks printed, nothing added (as GNU parallel)
  EXPECT_NE(text.err.find("task j1.0 failed: exit code 3 (stderr: broken)"), std::string::npos)
      << text.err;
  EXPECT_NE(text.err.find("3 tasks: 1 ok, 2 failed"), std::string::npos) << text.err;

  RunResult json = env.Run({"run", "--json", "-w", "1", file});
  EXPECT_TRUE(Exits(json, 1));
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
  EXPECT_TRUE(Exits(r, 1));
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["status"], "timeout");
  EXPECT_EQ(nlohmann::json::parse(lines[1])["status"], "timeout");
  EXPECT_EQ(nlohmann::json::parse(lines[2])["status"], "ok");
  EXPECT_LT(r.seconds, 30);  // not the 30 s the sleeps asked for
}

TEST(RunTest, BadFileIsRefusedWholeAndNothingStarts) {
  OrqEnv env;
  std::string file = env.WriteFile("bad.jsonl",
                                   "{\"kind\": \"echo\", \"value\": 1}\n"
                                   "{\"kind\": \"sleep\", \"seconds\": -1}\n");
  RunResult r = env.Run({"run", file});
  EXPECT_TRUE(Exits(r, 2));
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "orq: " + file +
                       ":2: field 'seconds' must be zero or more, not -1; nothing was submitted\n");
  EXPECT_TRUE(env.Processes().empty());

  RunResult missing = env.Run({"run", env.home() + "/missing.jsonl"});
  EXPECT_TRUE(Exits(missing, 2));
  EXPECT_NE(missing.err.find("cannot read"), std::string::npos);
  RunResult usage = env.Run({"run", "-w", "0", Example("say_after.jsonl")});
  EXPECT_TRUE(Exits(usage, 2));
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

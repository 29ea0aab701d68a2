// The seed's coordination across processes (issue 10), through the real binary: dependencies
// (a producer-consumer pipeline with `after`), limits (the semaphore), readers-writer locks, rate
// limits, resources and queues, idempotent submits and `orq explain`.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "tests/harness.h"

namespace orq::testing {
namespace {

nlohmann::json StatusJson(const OrqEnv& env) {
  RunResult r = env.Run({"status", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  return nlohmann::json::parse(r.out, nullptr, false);
}

pid_t BrokerPid(const OrqEnv& env) { return StatusJson(env)["broker"]["pid"].get<pid_t>(); }

TEST(CoordinationTest, APipelineRunsInDependencyOrderAndAFailureStopsWhatFollows) {
  OrqEnv env;
  ASSERT_EQ(env.Run({"up", "-w", "2", "-t", "2"}).code, 0);
  const std::string dir = env.home();
  // Given a producer, two consumers of what it made and a report after both (named in a file),
  // submitted report first,
  const std::string file = env.WriteFile(
      "pipeline.jsonl", "{\"kind\": \"shell\", \"cmd\": \"cat " + dir + "/a " + dir +
                            "/b\", \"after\": [\"a\", \"b\"]}\n" +
                            "{\"kind\": \"shell\", \"cmd\": \"sed s/x/a/ " + dir + "/made > " +
                            dir + "/a\", \"name\": \"a\", \"after\": \"make\"}\n" +
                            "{\"kind\": \"shell\", \"cmd\": \"sed s/x/b/ " + dir + "/made > " +
                            dir + "/b\", \"name\": \"b\", \"after\": \"make\"}\n" +
                            "{\"kind\": \"shell\", \"cmd\": \"sleep 0.2; echo x > " + dir +
                            "/made\", \"name\": \"make\"}\n");
  const std::string job = JobId(env.Run({"submit", "-f", file}));
  // When it is gathered, Then each ran after what it needed: the report shows both.
  RunResult r = env.Run({"gather", job + ".0"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "a\nb\n");
  // Given a task after a failing one (--after on the command line), and one after it whatever,
  const std::string bad = JobId(env.Run({"submit", "--", "false"}));
  const std::string next = JobId(env.Run({"submit", "--after", bad, "--", "echo never"}));
  const std::string any = JobId(env.Run({"submit", "--after-any", bad, "--", "echo anyway"}));
  // Then the first ends dependency_failed, naming the failure, and the second runs.
  r = env.Run({"gather", "--json", next});
  EXPECT_EQ(r.code, 1);
  auto o = nlohmann::json::parse(r.out);
  EXPECT_EQ(o["status"], "dependency_failed");
  EXPECT_EQ(o["error"], "dependency " + bad + ": " + bad + ".0 ended failed");
  r = env.Run({"gather", any});
  EXPECT_EQ(r.out, "anyway\n");
  // An unknown dependency or a cycle is refused whole, with a sentence.
  r = env.Run({"submit", "--after", "j99", "--", "true"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("names j99, which the broker does not have"), std::string::npos) << r.err;
  const std::string cycle =
      env.WriteFile("cycle.jsonl",
                    "{\"kind\": \"echo\", \"value\": 1, \"name\": \"p\", \"after\": \"q\"}\n"
                    "{\"kind\": \"echo\", \"value\": 1, \"name\": \"q\", \"after\": \"p\"}\n");
  r = env.Run({"submit", "-f", cycle});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("make a cycle: 'p' (line 1) -> 'q' (line 2) -> 'p' (line 1)"),
            std::string::npos)
      << r.err;
}

TEST(CoordinationTest, AWaitingJobIsVisibleAndSurvivesABrokerKill) {
  OrqEnv env;
  ASSERT_EQ(env.Run({"up", "-w", "1", "-t", "1"}).code, 0);
  // Given a job waiting on a long one,
  const std::string gate = env.home() + "/gate";
  const std::string first = JobId(
      env.Run({"submit", "--", "sh", "-c", "while [ ! -e " + gate + " ]; do sleep 0.05; done"}));
  const std::string second = JobId(env.Run({"submit", "--after", first, "--", "echo after"}));
  // Then `orq status JOB` says it waits,
  RunResult s = env.Run({"status", second});
  EXPECT_NE(s.out.find("1 waiting for dependencies"), std::string::npos) << s.out;
  // and when the broker is killed with SIGKILL and started again, the graph is still there:
  ::kill(BrokerPid(env), SIGKILL);
  ASSERT_TRUE(env.WaitNoProcesses(std::chrono::seconds(15)));
  ASSERT_EQ(env.Run({"up", "-w", "1", "-t", "1"}).code, 0);
  s = env.Run({"status", second});
  EXPECT_NE(s.out.find("1 waiting for dependencies"), std::string::npos) << s.out;
  env.WriteFile("gate", "");
  RunResult r = env.Run({"gather", second});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "after\n");
}

}  // namespace
}  // namespace orq::testing

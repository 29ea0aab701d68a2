// The seed's coordination across processes (issue 10), through the real binary: dependencies
// (a producer-consumer pipeline with `after`), limits (the semaphore), readers-writer locks, rate
// limits, resources and queues, idempotent submits and `orq explain`.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/clock.h"
#include "tests/harness.h"

namespace orq::testing {
namespace {

pid_t BrokerPid(const OrqEnv& env) { return env.Status()["broker"]["pid"].get<pid_t>(); }

TEST(CoordinationTest, APipelineRunsInDependencyOrderAndAFailureStopsWhatFollows) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "2", "-t", "2"}), 0));
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
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_EQ(r.out, "a\nb\n");
  // Given a task after a failing one (--after on the command line), and one after it whatever,
  const std::string bad = JobId(env.Run({"submit", "--", "false"}));
  const std::string next = JobId(env.Run({"submit", "--after", bad, "--", "echo never"}));
  const std::string any = JobId(env.Run({"submit", "--after-any", bad, "--", "echo anyway"}));
  // Then the first ends dependency_failed, naming the failure, and the second runs.
  r = env.Run({"gather", "--json", next});
  EXPECT_TRUE(Exits(r, 1));
  auto o = nlohmann::json::parse(r.out);
  EXPECT_EQ(o["status"], "dependency_failed");
  EXPECT_EQ(o["error"], "dependency " + bad + ": " + bad + ".0 ended failed");
  r = env.Run({"gather", any});
  EXPECT_EQ(r.out, "anyway\n");
  // An unknown dependency or a cycle is refused whole, with a sentence.
  r = env.Run({"submit", "--after", "j99", "--", "true"});
  EXPECT_TRUE(Exits(r, 2));
  EXPECT_NE(r.err.find("names j99, which the broker does not have"), std::string::npos) << r.err;
  const std::string cycle =
      env.WriteFile("cycle.jsonl",
                    "{\"kind\": \"echo\", \"value\": 1, \"name\": \"p\", \"after\": \"q\"}\n"
                    "{\"kind\": \"echo\", \"value\": 1, \"name\": \"q\", \"after\": \"p\"}\n");
  r = env.Run({"submit", "-f", cycle});
  EXPECT_TRUE(Exits(r, 2));
  EXPECT_NE(r.err.find("make a cycle: 'p' (line 1) -> 'q' (line 2) -> 'p' (line 1)"),
            std::string::npos)
      << r.err;
}

TEST(CoordinationTest, AWaitingJobIsVisibleAndSurvivesABrokerKill) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
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
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  s = env.Run({"status", second});
  EXPECT_NE(s.out.find("1 waiting for dependencies"), std::string::npos) << s.out;
  env.WriteFile("gate", "");
  RunResult r = env.Run({"gather", second});
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_EQ(r.out, "after\n");
}

// Each shell task appends "start" and "end" lines with its name to a shared log, so a test can
// replay who overlapped whom.
std::string Logged(const std::string& log, const std::string& name, double seconds) {
  return "echo start " + name + " >> " + log + "; sleep " + std::to_string(seconds) +
         "; echo end " + name + " >> " + log;
}

// Like Logged(), but after its start each task waits (up to 10 s) until `together` tasks of the
// log are running at once, or all `total` have started: a limit of `together` must then show
// exactly that many at once in the log, however slowly a loaded machine starts them.
std::string LoggedInGroups(const std::string& log, const std::string& name, int together,
                           int total) {
  const std::string started = "$(grep -c start " + log + ")";
  const std::string open = "$((" + started + " - $(grep -c end " + log + ")))";
  return "echo start " + name + " >> " + log + "; i=0; while [ " + open + " -lt " +
         std::to_string(together) + " ] && [ " + started + " -lt " + std::to_string(total) +
         " ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i + 1)); done; sleep 0.05; echo end " + name +
         " >> " + log;
}

// The most tasks of `names` (a prefix each) that ran at once, from the log.
int MostAtOnce(const std::string& text, const std::string& prefix) {
  int now = 0, most = 0;
  for (const std::string& line : Lines(text)) {
    if (line.find(" " + prefix) == std::string::npos) continue;
    now += line.rfind("start", 0) == 0 ? 1 : -1;
    most = std::max(most, now);
  }
  return most;
}

TEST(CoordinationTest, ALimitIsASemaphoreAcrossWorkers) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "2", "-t", "3"}), 0));
  // Given a limit of 2 and six tasks taking it over two workers with three slots each,
  RunResult set = env.Run({"limit", "set", "download", "2"});
  ASSERT_TRUE(Exits(set, 0));
  EXPECT_EQ(set.out, "download: 0/2 running, 0 waiting\n");
  const std::string log = env.home() + "/log";
  const std::string job =
      JobId(env.Run({"submit", "--limit", "download", "--", "sh", "-c",
                     LoggedInGroups(log, "d{}", 2, 6), ":::", "1", "2", "3", "4", "5", "6"}));
  // Then it is visible while they run, and at most two ever ran at once.
  RunResult list = env.Run({"limit", "list", "--json"});
  auto limit = nlohmann::json::parse(Lines(list.out).at(0));
  EXPECT_EQ(limit["max"], 2);
  ASSERT_TRUE(Exits(env.Run({"gather", job}), 0));
  EXPECT_EQ(MostAtOnce(ReadFile(log), "d"), 2) << ReadFile(log);
  // The limit is durable (orq down/up keeps it), and removable.
  ASSERT_TRUE(Exits(env.Run({"down"}), 0));
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1"}), 0));
  EXPECT_EQ(env.Run({"limit", "list"}).out, "download: 0/2 running, 0 waiting\n");
  EXPECT_EQ(env.Run({"limit", "rm", "download"}).out, "removed limit download\n");
  EXPECT_EQ(env.Run({"limit", "list"}).out, "no limits (orq limit set NAME N)\n");
  // A rate: 5 starts a second, one at a time. The bucket holds one token, so the broker hands out
  // the sixth start no sooner than a second after the first, and the first no sooner than the
  // submit: the last task starts at least a second after the submit (a lower bound a busy machine
  // only makes safer; the gaps between starts as the tasks see them are not, since a late first
  // launch shortens the first).
  ASSERT_EQ(env.Run({"limit", "set", "api", "--rate", "5/s"}).out,
            "api: 0 running, at most 5/s, 0 waiting\n");
  const double before_submit = WallNow();
  const std::string rated =
      JobId(env.Run({"submit", "--limit", "api", "--", "sh", "-c", "date +%s.%N # {}", ":::", "1",
                     "2", "3", "4", "5", "6"}));
  RunResult times = env.Run({"gather", rated});
  std::vector<double> starts;
  for (const std::string& line : Lines(times.out)) starts.push_back(std::stod(line));
  ASSERT_EQ(starts.size(), 6u) << times.out << times.err;
  std::sort(starts.begin(), starts.end());
  EXPECT_GE(starts.back(), before_submit + 1.0) << std::fixed << before_submit << "\n" << times.out;
  RunResult unknown = env.Run({"submit", "--limit", "download", "--", "true"});
  EXPECT_TRUE(Exits(unknown, 2));
  EXPECT_NE(unknown.err.find("there is no limit 'download'"), std::string::npos) << unknown.err;
}

TEST(CoordinationTest, ReadersShareALockAndAWriterRunsAlone) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "2", "-t", "4"}), 0));
  const std::string log = env.home() + "/log";
  const std::string gate = env.home() + "/gate";
  // Given three readers of a lock that hold it until the gate opens, then a writer, then more
  // readers,
  const std::string readers = JobId(env.Run({"submit", "--lock", "db:read", "--", "sh", "-c",
                                             "echo start r{} >> " + log + "; while [ ! -e " + gate +
                                                 " ]; do sleep 0.02; done; echo end r{} >> " + log,
                                             ":::", "1", "2", "3"}));
  const std::string writer =
      JobId(env.Run({"submit", "--lock", "db:write", "--", "sh", "-c", Logged(log, "w", 0.2)}));
  const std::string late = JobId(env.Run(
      {"submit", "--lock", "db:read", "--", "sh", "-c", Logged(log, "l{}", 0.1), ":::", "1", "2"}));
  // When all three readers hold it (so the writer waits, and the late readers wait behind it),
  ASSERT_TRUE(env.WaitStatus([](const nlohmann::json& s) { return s["tasks"]["running"] == 3; }));
  // Then explain says why a late reader waits, and status shows the lock;
  RunResult explain = env.Run({"explain", "--json", late + ".0"});
  auto why = nlohmann::json::parse(explain.out);
  EXPECT_EQ(why["state"], "queued");
  EXPECT_EQ(why["reasons"][0], "lock db has 1 writer waiting, and readers wait behind writers")
      << explain.out;
  EXPECT_EQ(env.Status()["locks"].size(), 1u);
  env.WriteFile("gate", "");
  ASSERT_TRUE(Exits(env.Run({"gather", readers, writer, late}), 0));
  // Then readers overlapped, the writer overlapped nobody, and the late readers came after it.
  const std::vector<std::string> lines = Lines(ReadFile(log));
  int open = 0;
  bool writer_alone = true, late_after_writer = true, seen_writer_end = false;
  bool writer_running = false;
  for (const std::string& line : lines) {
    const bool start = line.rfind("start", 0) == 0;
    const std::string who = line.substr(line.find(' ') + 1);
    if (who == "w" && start) writer_alone = writer_alone && open == 0;
    if (who == "w" && !start) seen_writer_end = true;
    if (who[0] == 'l' && start) late_after_writer = late_after_writer && seen_writer_end;
    if (who != "w" && start) writer_alone = writer_alone && !writer_running;
    if (who == "w") writer_running = start;
    open += start ? 1 : -1;
  }
  EXPECT_TRUE(writer_alone) << ReadFile(log);
  EXPECT_TRUE(late_after_writer) << ReadFile(log);
  EXPECT_EQ(MostAtOnce(ReadFile(log), "r"), 3) << ReadFile(log);
}

TEST(CoordinationTest, KillingAWorkerHoldingALockAndALimitReleasesBothOnce) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "2", "-t", "2"}), 0));
  ASSERT_TRUE(Exits(env.Run({"limit", "set", "slot", "1"}), 0));
  const std::string marker = env.home() + "/attempts";
  // Given a task holding a write lock and the limit, which hangs on its first attempt,
  const std::string holder = JobId(env.Run(
      {"submit", "--lock", "db:write", "--limit", "slot", "--", "sh", "-c",
       "echo x >> " + marker + "; [ $(wc -l < " + marker + ") -gt 1 ] || sleep 60; echo done"}));
  // and others waiting for each,
  const std::string reader = JobId(env.Run({"submit", "--lock", "db:read", "--", "echo", "read"}));
  const std::string limited = JobId(env.Run({"submit", "--limit", "slot", "--", "echo", "lim"}));
  const std::string free = JobId(env.Run({"submit", "--", "echo", "free"}));
  EXPECT_EQ(env.Run({"gather", free}).out, "free\n");  // nobody else is blocked
  // When the worker running it is killed with SIGKILL,
  pid_t victim = 0;
  ASSERT_TRUE(env.WaitStatus([&](const nlohmann::json& status) {
    for (const auto& w : status["workers"]) {
      if (w["running"].get<int>() > 0) victim = w["pid"].get<pid_t>();
    }
    return victim != 0;
  }));
  ::kill(victim, SIGKILL);
  // Then the task runs again and finishes, and both waiters run after it, once each.
  RunResult r = env.Run({"gather", "--json", holder, reader, limited});
  EXPECT_TRUE(Exits(r, 0));
  const auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["attempts"], 2);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["result"], "done\n");
  auto status = env.Status();
  EXPECT_EQ(status["limits"][0]["running"], 0);
  EXPECT_TRUE(status["locks"].empty()) << status.dump();
}

TEST(CoordinationTest, ResourcesQueuesAndExplainThroughTheBinary) {
  OrqEnv env;
  // Given one local worker with two gpus,
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "4", "--resources", "gpu=2"}), 0));
  auto workers = env.Status()["workers"];
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0]["resources"]["gpu"], 2);
  // When four tasks want one gpu each, they learn which one they hold, never the same at once;
  const std::string log = env.home() + "/gpus";
  const std::string job = JobId(env.Run({"submit", "--resource", "gpu=1", "--", "sh", "-c",
                                         "echo start $ORQ_RESOURCE_GPU >> " + log +
                                             "; sleep 0.2; echo end $ORQ_RESOURCE_GPU "
                                             ">> " +
                                             log + "; echo $CUDA_VISIBLE_DEVICES",
                                         ":::", "1", "2", "3", "4"}));
  RunResult r = env.Run({"gather", job});
  EXPECT_TRUE(Exits(r, 0));
  for (const std::string& line : Lines(r.out)) EXPECT_TRUE(line == "0" || line == "1") << r.out;
  std::set<std::string> held;
  for (const std::string& line : Lines(ReadFile(log))) {
    const std::string unit = line.substr(line.find(' ') + 1);
    if (line.rfind("start", 0) == 0)
      EXPECT_TRUE(held.insert(unit).second) << ReadFile(log);
    else
      held.erase(unit);
  }
  // A request no worker can meet waits, and explain says so; a worker serving its queue runs it.
  const std::string big = JobId(env.Run({"submit", "--resource", "gpu=4", "--", "echo", "big"}));
  const std::string fast = JobId(env.Run({"submit", "--queue", "fast", "--", "echo", "fast"}));
  RunResult e = env.Run({"explain", big + ".0"});
  EXPECT_EQ(
      e.out,
      big + ".0: queued\n  no worker offers cpus=1,gpu=4 (orq worker --resources, --queues)\n")
      << e.out;
  EXPECT_EQ(env.Run({"gather", fast}).out, "fast\n");  // the default worker serves every queue
  const pid_t extra = env.Start({"worker", "--connect", "ipc://" + env.home() + "/broker.ipc",
                                 "--resources", "gpu=4", "--queues", "default,big", "-t", "1"});
  ASSERT_GT(extra, 0);
  const std::string other =
      JobId(env.Run({"submit", "--queue", "big", "--resource", "gpu=4", "--", "echo", "other"}));
  EXPECT_EQ(env.Run({"gather", other}).out, "other\n");
  EXPECT_EQ(env.Run({"gather", big}).out, "big\n");
  // An idempotent submit: the same key gives the same job, and submits nothing new.
  const std::string keyed = JobId(env.Run({"submit", "--key", "k-1", "--", "echo", "once"}));
  RunResult again = env.Run({"submit", "--key", "k-1", "--", "echo", "once"});
  EXPECT_TRUE(Exits(again, 0));
  EXPECT_EQ(JobId(again), keyed);
  EXPECT_NE(again.err.find("submitted before; nothing new was submitted"), std::string::npos);
}

TEST(CoordinationTest, OrqRunRefusesWhatItsOwnWorkersCouldNeverRun) {
  OrqEnv env;
  RunResult r = env.Run({"run", "-w", "1", "-t", "2", "--cpus", "4", "--", "true"});
  EXPECT_TRUE(Exits(r, 2));
  EXPECT_NE(r.err.find("task 0 asks for 4 cpus and orq run's workers have 2 each: give -t 4"),
            std::string::npos)
      << r.err;
  r = env.Run({"run", "-w", "1", "--limit", "x", "--", "true"});
  EXPECT_TRUE(Exits(r, 2));
  EXPECT_NE(r.err.find("takes the limit 'x' and orq run's own broker has no limits"),
            std::string::npos)
      << r.err;
  // Locks and dependencies need nothing set up: they work in orq run too.
  r = env.Run({"run", "-w", "1", "-t", "2", "--lock", "db:write", "--", "echo", ":::", "a", "b"});
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_EQ(r.out, "a\nb\n");
}

}  // namespace
}  // namespace orq::testing

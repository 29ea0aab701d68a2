// The client library (include/orq/client.h) against a real broker and workers (orq up).
#include <gtest/gtest.h>
#include <orq/client.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <set>

#include "tests/harness.h"

namespace orq {
namespace {
using namespace orq::testing;

using std::chrono::milliseconds;
using std::chrono::seconds;

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Exits(env_.Run({"up", "-w", "2", "-t", "2"}), 0));
    client_.emplace(Client::Local(env_.home()));
  }
  milliseconds Long() const { return Scaled(milliseconds(60000)); }
  OrqEnv env_;
  std::optional<Client> client_;
};

TEST_F(ClientTest, SubmitGatherInOrderWhileTheyRunConcurrently) {
  Job job =
      client_->Submit({{Task::Sleep(1, "\"world\""), Task::Sleep(0.2, "\"hello\""),
                        Task::Echo("[1,2]"), Task::Shell({"sh", "-c", "echo out; echo err >&2"})}});
  EXPECT_GT(job.number(), 0u);
  EXPECT_EQ(job[2].id(), job.id() + ".2");
  auto outcomes = client_->Gather(job.tasks(), Long());
  ASSERT_EQ(outcomes.size(), 4u);
  EXPECT_EQ(outcomes[0].result, "\"world\"");
  EXPECT_EQ(outcomes[1].result, "\"hello\"");
  EXPECT_EQ(outcomes[2].result, "[1,2]");
  EXPECT_EQ(outcomes[3].stdout_text, "out\n");
  EXPECT_EQ(outcomes[3].stderr_text, "err\n");
  EXPECT_EQ(outcomes[3].exit_code, 0);
  for (const Outcome& o : outcomes) EXPECT_TRUE(o.ok()) << o.id << ": " << o.error;
  // The short sleep ran while the long one did (their times overlap, however busy the machine).
  const Outcome &world = outcomes[0], &hello = outcomes[1];
  EXPECT_TRUE(hello.started < world.finished && world.started < hello.finished)
      << std::fixed << "world " << world.started << "-" << world.finished << ", hello "
      << hello.started << "-" << hello.finished << ": the sleeps ran one after another";
}

TEST_F(ClientTest, AsCompletedGivesTheFirstToFinishFirst) {
  // Given a task that waits for a file the test makes only once the other has come back,
  const std::string gate = env_.home() + "/gate";
  Job job =
      client_->Submit({{Task::Command("while [ ! -e " + gate + " ]; do sleep 0.02; done; echo 1"),
                        Task::Echo("2")}});
  Completion completion = client_->AsCompleted(job.tasks());
  auto first = completion.Next(Long());
  ASSERT_TRUE(first);
  EXPECT_EQ(first->get(milliseconds(0)).id, job[1].id());
  // then the other comes next, once the file is there.
  std::ofstream{gate};
  auto second = completion.Next(Long());
  ASSERT_TRUE(second);
  EXPECT_EQ(second->get(milliseconds(0)).id, job[0].id());
  EXPECT_EQ(second->get(milliseconds(0)).stdout_text, "1\n");
  EXPECT_FALSE(completion.Next(milliseconds(10)));
}

TEST_F(ClientTest, WaitFirstCompletedFirstExceptionAndATimeout) {
  Job job = client_->Submit({{Task::Sleep(30), Task::Command("exit 3"), Task::Echo("1")}});
  WaitResult first = client_->Wait(job.tasks(), WaitFor::kFirstCompleted, Long());
  EXPECT_GE(first.done.size(), 1u);
  // (The echo's end is waited for: the failure may come first, and then it would still pend.)
  ASSERT_EQ(job[2].get(Long()).status, Status::kOk);
  WaitResult failed = client_->Wait(job.tasks(), WaitFor::kFirstException, Long());
  ASSERT_TRUE(job[1].ready());
  Outcome bad = job[1].get(milliseconds(0));
  EXPECT_EQ(bad.status, Status::kFailed);
  EXPECT_EQ(bad.exit_code, 3);
  EXPECT_EQ(failed.pending.size(), 1u);  // the long sleep
  EXPECT_THROW(job[0].get(milliseconds(50)), orq::Timeout);
  try {
    job[0].get(milliseconds(1));
  } catch (const orq::Exception& e) {
    EXPECT_EQ(e.code(), Errc::kTimeout);
  }
  EXPECT_EQ(client_->Cancel(job), 1u);
  EXPECT_EQ(job[0].get(Long()).status, Status::kCancelled);
}

TEST_F(ClientTest, AFutureCancelledBeforeItsJobIsAcceptedIsCancelledOnTheBroker) {
  std::vector<Future> futures = client_->Start({{Task::Sleep(60), Task::Echo("\"x\"")}});
  futures[0].Cancel();  // most likely before the broker's reply: sent once it comes
  EXPECT_EQ(futures[0].get(Long()).status, Status::kCancelled);
  EXPECT_EQ(futures[1].get(Long()).result, "\"x\"");
  EXPECT_TRUE(env_.WaitStatus([](const nlohmann::json& s) {
    return s["tasks"]["cancelled"].get<int>() == 1 && s["tasks"]["running"].get<int>() == 0;
  }));
}

TEST_F(ClientTest, ThenRunsOnceForEachAndThreadsMaySubmitAtOnce) {
  std::atomic<int> called{0};
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<Future> all;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        auto futures = client_->Start({{Task::Echo(std::to_string(t * 100 + i))}});
        futures[0].Then([&](const Future&) { ++called; });
        std::lock_guard lock(mu);
        all.insert(all.end(), futures.begin(), futures.end());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto outcomes = client_->Gather(all, Long());
  std::set<std::string> results;
  for (const Outcome& o : outcomes) results.insert(o.result);
  EXPECT_EQ(results.size(), 100u);
  EXPECT_TRUE(WaitUntil([&] { return called == 100; }, seconds(10)));
}

TEST_F(ClientTest, ATaskRunsAfterFuturesOfEarlierJobsAndOfItsOwn) {
  // Started one after another without waiting: the second job's ids of the first are known
  // when it goes.
  auto first = client_->Start({{Task::Sleep(0.3, "\"slow\""), Task::Echo("1")}});
  Task after_both = Task::Echo("2");
  after_both.After(first[0]).AfterIndex(0);
  auto second = client_->Start({{Task::Echo("0"), after_both, Task::Echo("3").After(first[1])}});
  auto outcomes = client_->Gather({first[0], second[1], second[2]}, Long());
  for (const Outcome& o : outcomes) ASSERT_TRUE(o.ok()) << o.id << ": " << o.error;
  EXPECT_GE(outcomes[1].started, outcomes[0].finished);  // it waited for the sleep
  EXPECT_THROW(Task::Echo("4").After("no-id"), UsageError);
  // A task after one that failed never runs.
  auto failing = client_->Start({{Task::Shell({"false"})}});
  auto dependant = client_->Start({{Task::Echo("5").After(failing[0])}});
  EXPECT_EQ(dependant[0].get(Long()).status, Status::kDependencyFailed);
}

TEST_F(ClientTest, MistakesAreUsageErrorsNamingTheTaskAndRefusalsFailTheFutures) {
  try {
    client_->Submit({{Task::Echo("1"), Task::Json(R"({"kind":"sleep","seconds":-1})")}});
    FAIL() << "a negative sleep was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("task 1"), std::string::npos) << e.what();
    EXPECT_EQ(e.code(), Errc::kInvalid);
  }
  EXPECT_THROW(client_->Submit(JobSpec{}), UsageError);
  EXPECT_THROW(Task::Echo("not json"), UsageError);
  EXPECT_THROW(client_->Cancel(std::vector<std::string>{"j999"}), UsageError);
  EXPECT_THROW(client_->Cancel(std::vector<std::string>{"x"}), UsageError);
}

TEST_F(ClientTest, StatusLogsAndTheJobContext) {
  JobSpec spec{{Task::Command("echo $ORQ_CLIENT_TEST; pwd")}};
  spec.env = {"ORQ_CLIENT_TEST=from the job"};
  spec.cwd = "/tmp";
  Job job = client_->Submit(spec);
  Outcome o = job[0].get(Long());
  EXPECT_EQ(o.stdout_text, "from the job\n/tmp\n");
  EXPECT_EQ(client_->Logs(job[0].id()), "from the job\n/tmp\n");
  auto status = nlohmann::json::parse(client_->StatusJson());
  EXPECT_EQ(status["workers"].size(), 2u);
  EXPECT_GT(client_->Ping(), 0);
  EXPECT_NE(ClientVersion().find("api 3"), std::string::npos);
}

TEST_F(ClientTest, ABrokerThatGoesAwayFailsWhatWaitsWithUnreachable) {
  Job job = client_->Submit({{Task::Sleep(60)}});
  ASSERT_TRUE(Exits(env_.Run({"down"}), 0));
  try {
    job[0].get(Long());
    FAIL() << "a future outlived its broker";
  } catch (const Unreachable& e) {
    EXPECT_EQ(e.code(), Errc::kUnreachable) << e.what();
  }
}

TEST_F(ClientTest, ABrokerRestartedAtOnceIsAskedAgainForWhatItsJournalKept) {
  Job job = client_->Submit({{Task::Sleep(1, "\"after the restart\"")}});
  const int64_t pid = client_->Ping();
  ASSERT_EQ(::kill(static_cast<pid_t>(pid), SIGKILL), 0);
  ASSERT_TRUE(WaitGone(static_cast<pid_t>(pid)));
  ASSERT_TRUE(Exits(env_.Run({"up", "-w", "1"}), 0));
  // The new broker replays its journal; the client sees another pid and gathers again.
  Outcome o = job[0].get(Long());
  EXPECT_EQ(o.result, "\"after the restart\"");
  EXPECT_NE(client_->Ping(), pid);
}

TEST(ClientNoBrokerTest, NoBrokerIsUnreachableAtOnce) {
  OrqEnv env;
  EXPECT_THROW(Client::Local(env.home()), Unreachable);
  EXPECT_THROW(Client::Endpoint("tcp://127.0.0.1:1"), UsageError);
}

}  // namespace
}  // namespace orq

// Limits, readers-writer locks and rates in the broker's core, with a fake clock: the seed's
// semaphore and readers-writer lock across every worker of a cluster.
#include "broker/core/limits.h"

#include <gtest/gtest.h>

#include "broker/core/core_fixture.h"
#include "common/ids.h"

namespace orq {
namespace {

TaskSpec Taking(std::vector<std::string> limits, std::vector<LockNeed> locks = {}) {
  TaskSpec spec = Sleep(1);
  Needs needs;
  needs.limits = std::move(limits);
  needs.locks = std::move(locks);
  spec.needs = MakeNeeds(std::move(needs));
  return spec;
}
TaskSpec Reads(const std::string& lock) { return Taking({}, {{lock, LockMode::kRead}}); }
TaskSpec Writes(const std::string& lock) { return Taking({}, {{lock, LockMode::kWrite}}); }

class GatesTest : public BrokerCoreTest {
 protected:
  void SetLimit(LimitSpec spec) {
    auto out = Send("client", LimitRequest{LimitRequest::Op::kSet, std::move(spec)});
    ASSERT_FALSE(out.empty());
    ASSERT_TRUE(std::holds_alternative<LimitsReply>(out.back().message));
  }
  // Ends `tasks` ok on `worker`; returns what it is sent next.
  std::vector<Assignment> Finish(const std::string& worker, const std::vector<Assignment>& tasks) {
    WorkerResultsMessage results;
    for (const Assignment& a : tasks) results.outcomes.push_back(Ok(a, "1"));
    return TasksTo(Send(worker, std::move(results)), worker);
  }
  static std::vector<TaskId> Ids(const std::vector<Assignment>& tasks) {
    std::vector<TaskId> ids;
    for (const Assignment& a : tasks) ids.push_back(a.id);
    return ids;
  }
  StatusReply Status() {
    for (auto& o : Send("client", StatusRequest{})) {
      if (auto* s = std::get_if<StatusReply>(&o.message)) return *s;
    }
    return {};
  }
};

TEST_F(GatesTest, ALimitBoundsRunningTasksAcrossEveryWorker) {
  // Given a limit of 2 and two workers with room for ten each,
  SetLimit({"download", 2});
  Register("w1", {10, 10, 10}, 1);
  Register("w2", {10, 10, 10}, 2);
  // When five tasks taking it and one that does not arrive,
  auto out = Send("client",
                  SubmitRequest{{Taking({"download"}), Taking({"download"}), Taking({"download"}),
                                 Taking({"download"}), Taking({"download"}), Sleep(1)}});
  auto w1 = TasksTo(out, "w1"), w2 = TasksTo(out, "w2");
  // Then two of them run, and the free task is not held up behind the others;
  EXPECT_EQ(w1.size() + w2.size(), 3u);
  EXPECT_EQ(Status().limits.at(0).held, 2u);
  EXPECT_EQ(Status().limits.at(0).waiting, 3u);
  EXPECT_EQ(Explain("j1.4"),
            (std::vector<std::string>{"limit download is at 2/2 (held by j1.0, j1.1)"}));
  // and each one that ends lets one more start.
  auto& holder = w1.empty() ? w2 : w1;
  const std::string worker = w1.empty() ? "w2" : "w1";
  std::vector<Assignment> first{holder.front()};
  EXPECT_EQ(Finish(worker, first).size(), 1u);
  EXPECT_EQ(Status().limits.at(0).held, 2u);
  EXPECT_EQ(Status().limits.at(0).waiting, 2u);
}

TEST_F(GatesTest, ReadersShareAWriterIsAloneAndWritersAreNotStarved) {
  Register("w1", {10, 10, 10});
  // Given two readers holding the lock,
  auto readers = TasksTo(Send("client", SubmitRequest{{Reads("db"), Reads("db")}}), "w1");
  ASSERT_EQ(readers.size(), 2u);
  // When a writer comes, then another reader,
  EXPECT_TRUE(TasksTo(Send("client", SubmitRequest{{Writes("db")}}), "w1").empty());
  EXPECT_TRUE(TasksTo(Send("client", SubmitRequest{{Reads("db")}}), "w1").empty());
  // Then the late reader waits behind the writer, saying so;
  EXPECT_EQ(
      Explain("j3.0"),
      (std::vector<std::string>{"lock db has 1 writer waiting, and readers wait behind writers"}));
  EXPECT_EQ(Explain("j2.0"), (std::vector<std::string>{"lock db is held for read by j1.0, j1.1"}));
  // the writer starts once both readers are done, alone;
  EXPECT_TRUE(Finish("w1", {readers[0]}).empty());
  auto writer = Finish("w1", {readers[1]});
  EXPECT_EQ(Ids(writer), (std::vector<TaskId>{{2, 0}}));
  EXPECT_EQ(Status().locks.at(0).mode, LockMode::kWrite);
  // and the reader after it.
  EXPECT_EQ(Ids(Finish("w1", writer)), (std::vector<TaskId>{{3, 0}}));
  EXPECT_EQ(Status().locks.at(0).mode, LockMode::kRead);
}

TEST_F(GatesTest, ATaskGetsAllItsGatesOrNone) {
  SetLimit({"slots", 1});
  Register("w1", {10, 10, 10});
  // Given the limit held,
  auto holder = TasksTo(Send("client", SubmitRequest{{Taking({"slots"})}}), "w1");
  ASSERT_EQ(holder.size(), 1u);
  // When a task needs the limit and a lock, and another only the lock,
  auto out =
      Send("client", SubmitRequest{{Taking({"slots"}, {{"db", LockMode::kWrite}}), Writes("db")}});
  // Then the first holds nothing while it waits, so the second takes the lock.
  EXPECT_EQ(Ids(TasksTo(out, "w1")), (std::vector<TaskId>{{2, 1}}));
}

TEST_F(GatesTest, ALostLeaseReleasesItsLockAndLimitOnce) {
  SetLimit({"slots", 1});
  // Given a worker running a task that holds a write lock and the limit,
  Register("w1", {10, 10, 10}, 101);
  auto held = TasksTo(Send("client", SubmitRequest{{Taking({"slots"}, {{"db", LockMode::kWrite}}),
                                                    Taking({"slots"}, {{"db", LockMode::kRead}})}}),
                      "w1");
  ASSERT_EQ(Ids(held), (std::vector<TaskId>{{1, 0}}));
  // When that worker dies,
  core_.WorkerExited(101);
  auto out = outbox_.Take();
  EXPECT_TRUE(Status().locks.empty() || Status().locks.at(0).held == 0);
  EXPECT_EQ(Status().limits.at(0).held, 0u);
  // Then the task runs again elsewhere, with both, and the other still waits for it.
  auto again = TasksTo(Register("w2", {10, 10, 10}, 102), "w2");
  EXPECT_EQ(Ids(again), (std::vector<TaskId>{{1, 0}}));
  EXPECT_EQ(again[0].attempt, 2u);
  EXPECT_EQ(Status().limits.at(0).held, 1u);
  EXPECT_EQ(Ids(Finish("w2", again)), (std::vector<TaskId>{{1, 1}}));
}

TEST_F(GatesTest, ARateSpacesStartsWithATokenBucket) {
  // Given 2 starts a second with bursts of 2,
  SetLimit({"api", 0, 2.0, 2});
  Register("w1", {100, 10, 10});
  std::vector<TaskSpec> specs(6, Taking({"api"}));
  // Then two start at once, then one every half second.
  Advance(milliseconds(0));
  EXPECT_EQ(TasksTo(Send("client", SubmitRequest{specs}), "w1").size(), 2u);
  EXPECT_EQ(core_.NextWakeup(), now_ + milliseconds(500) + std::chrono::microseconds(1));
  EXPECT_EQ(TasksTo(Advance(milliseconds(400)), "w1").size(), 0u);
  EXPECT_EQ(TasksTo(Advance(milliseconds(101)), "w1").size(), 1u);
  EXPECT_EQ(TasksTo(Advance(milliseconds(500)), "w1").size(), 1u);
  EXPECT_EQ(TasksTo(Advance(milliseconds(2000)), "w1").size(), 0u);  // w1 silent: dropped
}

TEST_F(GatesTest, RemovingALimitFreesItsWaitersAndUnknownLimitsAreRefused) {
  SetLimit({"dl", 1});
  Register("w1", {10, 10, 10});
  auto first = TasksTo(Send("client", SubmitRequest{{Taking({"dl"}), Taking({"dl"})}}), "w1");
  ASSERT_EQ(first.size(), 1u);
  auto out = Send("client", LimitRequest{LimitRequest::Op::kRemove, {"dl"}});
  EXPECT_EQ(TasksTo(out, "w1").size(), 1u);
  out = Send("client", SubmitRequest{{Taking({"dl"})}});
  ASSERT_TRUE(std::holds_alternative<ErrorReply>(out.at(0).message));
  EXPECT_EQ(std::get<ErrorReply>(out.at(0).message).message,
            "task 0: there is no limit 'dl'; set it first: orq limit set dl N");
}

TEST_F(GatesTest, AReturningWorkerKeepsALeaseOnlyIfItsLockIsStillFree) {
  // Given j1.0 writing on w1, which is dropped (its lease back in the queue),
  Register("w1", {10, 10, 10}, 101);
  auto held = TasksTo(Send("client", SubmitRequest{{Writes("db")}}), "w1");
  ASSERT_EQ(held.size(), 1u);
  core_.WorkerExited(101);
  auto out = outbox_.Take();
  // and a more urgent writer taking the lock on w2 meanwhile,
  TaskSpec urgent = Writes("db");
  urgent.priority = 5;
  Send("client", SubmitRequest{{urgent}});
  EXPECT_EQ(Ids(TasksTo(Register("w2", {1, 1, 1}, 102), "w2")), (std::vector<TaskId>{{2, 0}}));
  // When w1 comes back still running j1.0,
  out = Send("w1", ReadyMessage{101, 1, {10, 10, 10}, {{held[0].id, held[0].attempt}}});
  // Then it is told to drop it, and the lock has one writer: j2.0.
  bool dropped = false;
  for (const auto& o : out) {
    if (auto* c = std::get_if<CancelTasksMessage>(&o.message))
      dropped = o.to == "w1" && c->ids == std::vector<TaskId>{{1, 0}};
  }
  EXPECT_TRUE(dropped);
  EXPECT_EQ(Status().locks.at(0).holders, (std::vector<TaskId>{{2, 0}}));
}

TEST_F(GatesTest, ATaskParkedOnItsLimitStaysParkedWhenItsOldWorkerComesBack) {
  // Given a limit of 1 and a task T taking it whose worker leaves while it runs,
  SetLimit({"db", 1});
  Register("w1", {1, 1, 1}, 1);
  const uint64_t t_job = SubmitJob({Taking({"db"})});
  Send("w1", GoodbyeMessage{});
  // and a task U that goes first taking it on another worker, so that T is parked behind it,
  TaskSpec u = Taking({"db"});
  u.priority = 5;
  const uint64_t u_job = SubmitJob({u});
  const auto sent = TasksTo(Register("w2", {2, 2, 2}, 2), "w2");
  ASSERT_EQ(Ids(sent), (std::vector<TaskId>{{u_job, 0}}));
  // When T's old worker comes back still running it (the limit is taken: it may not go on),
  auto back = Send("w1", ReadyMessage{1, 1, {1, 1, 1}, {{{t_job, 0}, 1}}});
  bool told = false;
  for (const auto& o : back) {
    if (auto* c = std::get_if<CancelTasksMessage>(&o.message); c && o.to == "w1")
      told = c->ids == std::vector<TaskId>{{t_job, 0}};
  }
  EXPECT_TRUE(told) << "the returning worker is told to drop T";
  // Then T still waits for the limit, and runs once U has ended.
  EXPECT_EQ(Explain(FormatTaskId({t_job, 0})).at(0), "limit db is at 1/1 (held by j2.0)");
  auto out = Send("w2", WorkerResultsMessage{{Ok(sent[0], "1")}});
  auto next = TasksTo(out, "w1"), on_w2 = TasksTo(out, "w2");
  next.insert(next.end(), on_w2.begin(), on_w2.end());
  EXPECT_EQ(Ids(next), (std::vector<TaskId>{{t_job, 0}}));
}

}  // namespace
}  // namespace orq

#include "worker/worker_core.h"

#include <gtest/gtest.h>

namespace orq {
namespace {

using std::chrono::milliseconds;

class WorkerCoreTest : public ::testing::Test {
 protected:
  WorkerCoreTest() : core_(Options()) {}
  static WorkerOptions Options() {
    WorkerOptions o;
    o.pid = 7;
    o.threads = 2;
    o.slots = {100, 2, 2};
    return o;
  }
  static Assignment Task(uint32_t index) {
    Assignment a;
    a.id = {1, index};
    a.attempt = 1;
    return a;
  }
  SteadyTime now_{std::chrono::seconds(50)};
  WorkerCore core_;
};

TEST_F(WorkerCoreTest, RegistersWithItsSlots) {
  WorkerActions a;
  core_.Connected(now_, a);
  ASSERT_EQ(a.send.size(), 1u);
  const auto& ready = std::get<ReadyMessage>(a.send[0]);
  EXPECT_EQ(ready.pid, 7);
  EXPECT_EQ(ready.slots, (Slots{100, 2, 2}));
}

TEST_F(WorkerCoreTest, StartsEachAssignedTaskOnce) {
  WorkerActions a;
  core_.Connected(now_, a);
  a = {};
  core_.OnMessage(TasksMessage{{Task(0), Task(1), Task(0)}}, now_, a);
  ASSERT_EQ(a.start.size(), 2u);
  EXPECT_EQ(core_.running(), 2u);
}

TEST_F(WorkerCoreTest, OutcomesLeaveTogetherOnFlush) {
  WorkerActions a;
  core_.Connected(now_, a);
  core_.OnMessage(TasksMessage{{Task(0), Task(1)}}, now_, a);
  TaskOutcome o0, o1;
  o0.id = {1, 0};
  o1.id = {1, 1};
  core_.OnDone(o0, SteadyTime{});
  core_.OnDone(o1, SteadyTime{});
  a = {};
  core_.Flush(a);
  ASSERT_EQ(a.send.size(), 1u);
  EXPECT_EQ(std::get<WorkerResultsMessage>(a.send[0]).outcomes.size(), 2u);
  EXPECT_EQ(core_.running(), 0u);
  a = {};
  core_.Flush(a);
  EXPECT_TRUE(a.send.empty());
}

TEST_F(WorkerCoreTest, ResultsLeaveInBatchesATcpListenerTakes) {
  WorkerActions a;
  core_.Connected(now_, a);
  for (uint32_t i = 0; i < 5; ++i) {
    TaskOutcome o;
    o.id = {1, i};
    o.shell = ShellOutput{0, std::string(kMaxOutputBytes, 'o'), std::string(kMaxOutputBytes, 'e')};
    core_.OnDone(o, SteadyTime{});
  }
  a = {};
  core_.Flush(a);
  size_t outcomes = 0;
  for (const Message& m : a.send) {
    const auto& results = std::get<WorkerResultsMessage>(m);
    size_t bytes = 0;
    for (const TaskOutcome& o : results.outcomes)
      bytes += o.shell->stdout_text.size() + o.shell->stderr_text.size();
    EXPECT_LT(bytes, kMaxRemoteMessageBytes);
    outcomes += results.outcomes.size();
  }
  EXPECT_EQ(outcomes, 5u);
}

TEST_F(WorkerCoreTest, ARefusedRegistrationEndsTheWorkerWithTheBrokersSentence) {
  WorkerActions a;
  core_.Connected(now_, a);
  a = {};
  core_.OnMessage(ErrorReply{ErrorCode::kBadRequest, "the broker refused this worker: why"}, now_,
                  a);
  EXPECT_TRUE(a.exit);
  EXPECT_EQ(a.refused, "the broker refused this worker: why");
}

TEST_F(WorkerCoreTest, SpilledOutputIsReadAndDroppedByTheShellWhenTheBrokerAsks) {
  // Reading and deleting spill files is the shell's (it names them from the attempt alone).
  WorkerActions a;
  core_.OnMessage(ReadOutputMessage{3, {{1, 2}, 1}, true, 1u << 20}, now_, a);
  ASSERT_EQ(a.read_output.size(), 1u);
  EXPECT_EQ(a.read_output[0].fetch, 3u);
  EXPECT_EQ(a.read_output[0].attempt, (Lease{{1, 2}, 1}));
  EXPECT_TRUE(a.read_output[0].err);
  EXPECT_EQ(a.read_output[0].offset, 1u << 20);
  WorkerActions b;
  core_.OnMessage(DropOutputMessage{{{{1, 2}, 1}}}, now_, b);
  EXPECT_EQ(b.drop_output, (std::vector<Lease>{{{1, 2}, 1}}));
  EXPECT_TRUE(b.read_output.empty());
  EXPECT_EQ(core_.unexpected(), 0u);
}

TEST_F(WorkerCoreTest, CancelOnlyWhatRuns) {
  WorkerActions a;
  core_.Connected(now_, a);
  core_.OnMessage(TasksMessage{{Task(0)}}, now_, a);
  a = {};
  core_.OnMessage(CancelTasksMessage{{{1, 0}, {1, 5}}}, now_, a);
  EXPECT_EQ(a.cancel, (std::vector<TaskId>{{1, 0}}));
  // Watching (orq logs --follow) likewise: only what runs here.
  a = {};
  core_.OnMessage(WatchMessage{{{1, 5}, {1, 0}}}, now_, a);
  EXPECT_EQ(a.watch, (std::vector<TaskId>{{1, 0}}));
}

TEST_F(WorkerCoreTest, HeartbeatsEveryInterval) {
  WorkerActions a;
  core_.Connected(now_, a);
  a = {};
  core_.Tick(now_ + milliseconds(999), a);
  EXPECT_TRUE(a.send.empty());
  core_.OnMessage(BrokerHeartbeatMessage{}, now_ + milliseconds(999), a);
  core_.Tick(now_ + milliseconds(1000), a);
  ASSERT_EQ(a.send.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<HeartbeatMessage>(a.send[0]));
}

TEST_F(WorkerCoreTest, AConnectionMadeAgainByLibzmqSpeaksAtOnceAndResetsTheSilence) {
  WorkerActions a;
  core_.Connected(now_, a);
  // Given a broker silent for nearly the liveness limit (it was killed and is starting again),
  const SteadyTime later = now_ + kHeartbeatInterval * kHeartbeatLiveness - milliseconds(1);
  // when the socket's connection is made again,
  a = {};
  core_.Reconnected(later, a);
  // then a heartbeat goes at once (the broker asks an unknown worker to register), not a Ready,
  ASSERT_EQ(a.send.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<HeartbeatMessage>(a.send[0]));
  // and the silence counts from now: no new socket a moment later.
  a = {};
  core_.Tick(later + milliseconds(10), a);
  EXPECT_FALSE(a.reconnect);
}

TEST_F(WorkerCoreTest, ATaskLeasedAgainWhileAnEarlierExecutionRunsIsNeverLeftUnrun) {
  WorkerActions a;
  core_.Connected(now_, a);
  core_.OnMessage(TasksMessage{{Task(0), Task(1)}}, now_, a);
  // Given both tasks leased to us again (attempt 2) while their first executions still run,
  Assignment again0 = Task(0), again1 = Task(1);
  again0.attempt = again1.attempt = 2;
  a = {};
  core_.OnMessage(TasksMessage{{again0, again1}}, now_, a);
  EXPECT_TRUE(a.start.empty());  // not two executions at once
  auto outcome = [](uint32_t index, uint32_t attempt, TaskStatus status) {
    TaskOutcome o;
    o.id = {1, index};
    o.attempt = attempt;
    o.status = status;
    return o;
  };
  // when the first execution of one ends cancelled (the broker told us it was stale), then it
  // starts again for the newer lease, and nothing is reported for it yet,
  core_.OnDone(outcome(0, 1, TaskStatus::kCancelled), now_);
  a = {};
  core_.Flush(a);
  ASSERT_EQ(a.start.size(), 1u);
  EXPECT_EQ(a.start[0].attempt, 2u);
  EXPECT_TRUE(a.send.empty());
  // and when the other's first execution ends with a result, the result answers the newer lease.
  core_.OnDone(outcome(1, 1, TaskStatus::kOk), now_);
  a = {};
  core_.Flush(a);
  EXPECT_TRUE(a.start.empty());
  ASSERT_EQ(a.send.size(), 1u);
  const auto& results = std::get<WorkerResultsMessage>(a.send[0]);
  ASSERT_EQ(results.outcomes.size(), 1u);
  EXPECT_EQ(results.outcomes[0].attempt, 2u);
  EXPECT_EQ(core_.running(), 1u);  // the restarted one
}

TEST_F(WorkerCoreTest, ABrokerAskingSeveralTimesAtOnceGetsOneReady) {
  WorkerActions a;
  core_.Connected(now_ - std::chrono::seconds(10), a);
  // Given a broker that asks us to register (it does not know us: it restarted),
  a = {};
  core_.OnMessage(ReregisterMessage{}, now_, a);
  ASSERT_EQ(a.send.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<ReadyMessage>(a.send[0]));
  // when it asks again at once (each message we sent it before it had our Ready is answered so),
  a = {};
  core_.OnMessage(ReregisterMessage{}, now_ + milliseconds(50), a);
  // then no second Ready goes (it could cross the tasks the first brings),
  EXPECT_TRUE(a.send.empty());
  // but one asking a heartbeat later gets a Ready again (the first may have been lost).
  core_.OnMessage(ReregisterMessage{}, now_ + kHeartbeatInterval, a);
  ASSERT_EQ(a.send.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<ReadyMessage>(a.send[0]));
}

TEST_F(WorkerCoreTest, ReconnectsWhenBrokerIsSilent) {
  WorkerActions a;
  core_.Connected(now_, a);
  a = {};
  core_.Tick(now_ + milliseconds(3000), a);
  EXPECT_FALSE(a.reconnect);
  core_.Tick(now_ + milliseconds(3001), a);
  EXPECT_TRUE(a.reconnect);
  EXPECT_FALSE(a.exit);
}

TEST_F(WorkerCoreTest, ReRegistersWithTheLeasesItHolds) {
  WorkerActions a;
  core_.Connected(now_, a);
  core_.OnMessage(TasksMessage{{Task(3)}}, now_, a);
  a = {};
  // When the broker says it does not know us (a heartbeat or more after our Ready: one sooner
  // is answered by the Ready on its way), Then we register again, naming what we run.
  core_.OnMessage(ReregisterMessage{}, now_ + kHeartbeatInterval, a);
  ASSERT_EQ(a.send.size(), 1u);
  EXPECT_EQ(std::get<ReadyMessage>(a.send[0]).running, (std::vector<Lease>{{{1, 3}, 1}}));
}

TEST_F(WorkerCoreTest, ReconnectBacksOffDoubling) {
  WorkerActions a;
  core_.Connected(now_, a);
  a = {};
  core_.Tick(now_ + milliseconds(3001), a);
  ASSERT_TRUE(a.reconnect);
  core_.Connected(now_ + milliseconds(3001), a);
  // The next try comes 1 s backoff + 3 s liveness later, the one after 2 s + 3 s later.
  a = {};
  core_.Tick(now_ + milliseconds(3001 + 4000), a);
  EXPECT_FALSE(a.reconnect);
  core_.Tick(now_ + milliseconds(3001 + 4001), a);
  ASSERT_TRUE(a.reconnect);
  core_.Connected(now_ + milliseconds(7002), a);
  a = {};
  core_.Tick(now_ + milliseconds(7002 + 5000), a);
  EXPECT_FALSE(a.reconnect);
  core_.Tick(now_ + milliseconds(7002 + 5001), a);
  EXPECT_TRUE(a.reconnect);
}

TEST_F(WorkerCoreTest, StopLetsRunningTasksFinishThenExits) {
  WorkerActions a;
  core_.Connected(now_, a);
  core_.OnMessage(TasksMessage{{Task(0)}}, now_, a);
  a = {};
  core_.OnMessage(StopMessage{5000}, now_, a);
  EXPECT_FALSE(a.exit);
  core_.OnMessage(TasksMessage{{Task(1)}}, now_, a);
  EXPECT_TRUE(a.start.empty());  // no new work while stopping
  TaskOutcome o;
  o.id = {1, 0};
  core_.OnDone(o, SteadyTime{});
  core_.Flush(a);
  EXPECT_EQ(a.send.size(), 1u);
  EXPECT_TRUE(a.exit);
}

TEST_F(WorkerCoreTest, StopGraceEndsInExit) {
  WorkerActions a;
  core_.Connected(now_, a);
  core_.OnMessage(TasksMessage{{Task(0)}}, now_, a);
  core_.OnMessage(StopMessage{5000}, now_, a);
  a = {};
  core_.Tick(now_ + milliseconds(4999), a);
  EXPECT_FALSE(a.exit);
  core_.Tick(now_ + milliseconds(5000), a);
  EXPECT_TRUE(a.exit);
}

TEST_F(WorkerCoreTest, StopMeansExit) {
  WorkerActions a;
  core_.OnMessage(StopMessage{}, now_, a);
  EXPECT_TRUE(a.exit);
  a = {};
  core_.OnMessage(SubmittedReply{}, now_, a);
  EXPECT_EQ(core_.unexpected(), 1u);
}

TEST(WorkerCoreLeaving, AnIdleWorkerLeavesAfterItsIdleTimeoutNotWhileBusy) {
  // Given a worker with an idle timeout of 5 s, that had a task for 10 s,
  WorkerOptions o;
  o.slots = {10, 2, 2};
  o.idle_timeout = milliseconds(5000);
  WorkerCore core(o);
  SteadyTime now{std::chrono::seconds(100)};
  WorkerActions a;
  core.Connected(now, a);
  a = {};
  Assignment task;
  task.id = {1, 0};
  task.attempt = 1;
  core.OnMessage(TasksMessage{{task}}, now, a);
  // then it stays while the task runs, however long,
  a = {};
  core.Tick(now + milliseconds(10000), a);
  EXPECT_FALSE(a.exit);
  // and leaves 5 s after its task ended, not before.
  TaskOutcome done;
  done.id = task.id;
  done.attempt = 1;
  core.OnDone(done, now + milliseconds(10000));
  a = {};
  core.Flush(a);
  core.Tick(now + milliseconds(14000), a);
  EXPECT_FALSE(a.exit);
  EXPECT_LE(core.NextWakeup(), now + milliseconds(15000));
  a = {};
  core.Tick(now + milliseconds(15000), a);
  EXPECT_TRUE(a.exit);
  EXPECT_NE(a.leaving.find("--idle-timeout"), std::string::npos);
}

TEST(WorkerCoreLeaving, AWorkerLeavesAtItsEndAndSaysHowLongItHasWhenItRegisters) {
  // Given a worker that ends at 100 s, registering at 40 s,
  WorkerOptions o;
  o.slots = {10, 2, 2};
  o.ends_at = SteadyTime{std::chrono::seconds(100)};
  o.allocation = "q/41";
  WorkerCore core(o);
  WorkerActions a;
  core.Connected(SteadyTime{std::chrono::seconds(40)}, a);
  // then it says it has 60 s left, and which allocation it belongs to;
  const auto& ready = std::get<ReadyMessage>(a.send.at(0));
  EXPECT_EQ(ready.lifetime_ms, 60000u);
  EXPECT_EQ(ready.allocation, "q/41");
  // and at 100 s it leaves, running task or not (the broker requeues what it held).
  a = {};
  Assignment task;
  task.id = {1, 0};
  task.attempt = 1;
  core.OnMessage(TasksMessage{{task}}, SteadyTime{std::chrono::seconds(50)}, a);
  a = {};
  EXPECT_LE(core.NextWakeup(), SteadyTime{std::chrono::seconds(100)});
  core.Tick(SteadyTime{std::chrono::seconds(100)}, a);
  EXPECT_TRUE(a.exit);
  EXPECT_NE(a.leaving.find("handing back 1 running task"), std::string::npos);
}

}  // namespace
}  // namespace orq

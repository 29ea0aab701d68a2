#include "broker/core/broker_core.h"

#include <gtest/gtest.h>

#include "broker/core/core_fixture.h"

namespace orq {
namespace {

TEST_F(BrokerCoreTest, WorkerGetsAtMostItsSlots) {
  uint64_t job = SubmitJob({Sleep(1), Sleep(1), Sleep(1), Sleep(1), Sleep(1)});
  auto out = Register("w1", {2, 1, 1});
  auto first = TasksTo(out, "w1");
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].id, (TaskId{job, 0}));
  EXPECT_EQ(first[1].id, (TaskId{job, 1}));
  // One result frees one slot: one more task.
  out = Send("w1", WorkerResultsMessage{{Ok(first[0], "1")}});
  auto second = TasksTo(out, "w1");
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].id, (TaskId{job, 2}));
}

TEST_F(BrokerCoreTest, ClassesHaveSeparateCredits) {
  // Given a worker with 1 cpu slot and many async slots,
  Register("w1", {100, 1, 1});
  // When two cpu tasks and a sleep arrive, Then it gets one cpu task and the sleep.
  auto out = Send("client", SubmitRequest{{Cpu(10), Cpu(10), Sleep(1)}});
  auto tasks = TasksTo(out, "w1");
  ASSERT_EQ(tasks.size(), 2u);
  int cpu = 0;
  for (auto& t : tasks) cpu += std::holds_alternative<CpuTask>(t.spec.body);
  EXPECT_EQ(cpu, 1);
}

TEST_F(BrokerCoreTest, SlowWorkerDoesNotHoldQueuedTasks) {
  // Given two workers with one slot each, one of them busy,
  Register("slow", {1, 1, 1});
  uint64_t job = SubmitJob({Sleep(100)});
  // When more tasks arrive, Then the free worker gets them, not the busy one.
  auto out = Register("fast", {1, 1, 1});
  EXPECT_TRUE(TasksTo(out, "fast").empty());
  out = Send("client", SubmitRequest{{Sleep(1), Sleep(1)}});
  EXPECT_TRUE(TasksTo(out, "slow").empty());
  auto fast = TasksTo(out, "fast");
  ASSERT_EQ(fast.size(), 1u);
  EXPECT_EQ(fast[0].id.job, job + 1);
}

TEST_F(BrokerCoreTest, HigherPriorityRunsFirst) {
  uint64_t job = SubmitJob({Sleep(1, 0), Sleep(1, 5), Sleep(1, 5), Sleep(1, -1)});
  auto tasks = TasksTo(Register("w1", {10, 1, 1}), "w1");
  ASSERT_EQ(tasks.size(), 4u);
  EXPECT_EQ(tasks[0].id, (TaskId{job, 1}));  // priority 5, submitted first
  EXPECT_EQ(tasks[1].id, (TaskId{job, 2}));
  EXPECT_EQ(tasks[2].id, (TaskId{job, 0}));
  EXPECT_EQ(tasks[3].id, (TaskId{job, 3}));
}

TEST_F(BrokerCoreTest, DelayedTaskBecomesEligibleAtItsTime) {
  // Given a worker and a task delayed by 2 s,
  Register("w1", {10, 1, 1});
  auto out = Send("client", SubmitRequest{{Sleep(1, 0, 2.0)}});
  // Then the worker does not see it early,
  EXPECT_TRUE(TasksTo(out, "w1").empty());
  EXPECT_TRUE(TasksTo(Advance(milliseconds(1999)), "w1").empty());
  EXPECT_EQ(core_.NextWakeup(), now_ + milliseconds(1));
  // and gets it once it is due.
  EXPECT_EQ(TasksTo(Advance(milliseconds(1)), "w1").size(), 1u);
}

TEST_F(BrokerCoreTest, GatherWaitsAndRepliesInSubmissionOrder) {
  Register("w1", {10, 1, 1});
  uint64_t job = SubmitJob({Sleep(3), Sleep(1), Sleep(2)});
  auto tasks = TasksTo(Send("w1", HeartbeatMessage{}), "w1");
  // Given a client gathering the job,
  auto out = Send("c2", GatherRequest{{IdRef{job}}});
  EXPECT_EQ(ResultsFor(out, "c2"), nullptr);
  // When results arrive out of order,
  auto all = Register("w1", {10, 1, 1});  // re-registering resends the tasks (new attempts)
  tasks = TasksTo(all, "w1");
  ASSERT_EQ(tasks.size(), 3u);
  EXPECT_EQ(ResultsFor(Send("w1", WorkerResultsMessage{{Ok(tasks[1], "\"b\"")}}), "c2"), nullptr);
  EXPECT_EQ(ResultsFor(Send("w1", WorkerResultsMessage{{Ok(tasks[2], "\"c\"")}}), "c2"), nullptr);
  out = Send("w1", WorkerResultsMessage{{Ok(tasks[0], "\"a\"")}});
  // Then the reply comes once, with results in submission order.
  const ResultsReply* reply = ResultsFor(out, "c2");
  ASSERT_NE(reply, nullptr);
  ASSERT_EQ(reply->outcomes.size(), 3u);
  EXPECT_EQ(reply->outcomes[0].result, "\"a\"");
  EXPECT_EQ(reply->outcomes[1].result, "\"b\"");
  EXPECT_EQ(reply->outcomes[2].result, "\"c\"");
  EXPECT_EQ(reply->outcomes[0].worker_pid, 100);
  EXPECT_TRUE(reply->final);
}

TEST_F(BrokerCoreTest, GatherOfSingleTasksAndFinishedJobsAnswersAtOnce) {
  Register("w1", {10, 1, 1});
  uint64_t job = SubmitJob({Sleep(1), Sleep(1)});
  auto tasks = TasksTo(Send("w1", HeartbeatMessage{}), "w1");
  tasks = TasksTo(Register("w1", {10, 1, 1}), "w1");
  Send("w1", WorkerResultsMessage{{Ok(tasks[1], "2")}});
  const IdRef t1{job, 1};
  auto out = Send("c", GatherRequest{{t1, t1}});
  const ResultsReply* reply = ResultsFor(out, "c");
  ASSERT_NE(reply, nullptr);
  EXPECT_EQ(reply->outcomes.size(), 2u);
}

TEST_F(BrokerCoreTest, UnknownIdsAreRefused) {
  auto out = Send("c", GatherRequest{{IdRef{42}}});
  ASSERT_EQ(out.size(), 1u);
  auto* error = std::get_if<ErrorReply>(&out[0].message);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->code, ErrorCode::kUnknownId);
  EXPECT_EQ(error->message, "unknown job j42");
  uint64_t job = SubmitJob({Sleep(1)});
  out = Send("c", CancelRequest{{IdRef{job, 1}}});
  error = std::get_if<ErrorReply>(&out[0].message);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->message, "unknown task j1.1: job j1 has 1 task");
}

TEST_F(BrokerCoreTest, CancelQueuedDelayedAndRunning) {
  Register("w1", {1, 1, 1});
  uint64_t job = SubmitJob({Sleep(10), Sleep(10), Sleep(10, 0, 60)});
  // When the job is cancelled: the running task's worker is told, the others end at once.
  auto out = Send("c", CancelRequest{{IdRef{job}}});
  bool told = false;
  for (auto& o : out) {
    if (auto* c = std::get_if<CancelTasksMessage>(&o.message)) {
      told = o.to == "w1" && c->ids == std::vector<TaskId>{{job, 0}};
    }
  }
  EXPECT_TRUE(told);
  auto* reply = std::get_if<CancelledReply>(&out.back().message);
  ASSERT_NE(reply, nullptr);
  EXPECT_EQ(reply->count, 3u);
  // The freed slot is not used for the cancelled queued task.
  EXPECT_TRUE(TasksTo(out, "w1").empty());
  ASSERT_TRUE(store_.Find({job, 1}).has_value());
  EXPECT_EQ(store_.Find({job, 1})->status, TaskStatus::kCancelled);
  EXPECT_EQ(store_.Find({job, 2})->status, TaskStatus::kCancelled);
  EXPECT_FALSE(store_.Find({job, 0}).has_value());  // running: the worker reports it
}

TEST_F(BrokerCoreTest, RequeuesTaskWhenWorkerMissesHeartbeats) {
  // Given a worker holding a task,
  Register("w1", {1, 1, 1});
  uint64_t job = SubmitJob({Sleep(100)});
  // When it stays silent for longer than liveness x interval,
  Advance(milliseconds(1000));
  Advance(milliseconds(1000));
  Advance(milliseconds(1000));
  auto out = Advance(milliseconds(1001));
  EXPECT_EQ(core_.counters().workers_lost, 1u);
  // Then the task goes to the next worker, as attempt 2.
  auto tasks = TasksTo(Register("w2", {1, 1, 1}), "w2");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].id, (TaskId{job, 0}));
  EXPECT_EQ(tasks[0].attempt, 2u);
}

TEST_F(BrokerCoreTest, RequeuesAtOnceWhenWorkerProcessExits) {
  Register("w1", {1, 1, 1});  // pid 100
  uint64_t job = SubmitJob({Sleep(100)});
  Register("w2", {1, 1, 0}, 200);  // no shell slot: it takes none of the tasks below
  core_.WorkerExited(100);
  auto out = outbox_.Take();
  auto tasks = TasksTo(out, "w2");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].id, (TaskId{job, 0}));
  EXPECT_EQ(core_.worker_count(), 1u);
}

TEST_F(BrokerCoreTest, HeartbeatingWorkerKeepsItsTasks) {
  Register("w1", {1, 1, 1});
  SubmitJob({Sleep(100)});
  for (int i = 0; i < 10; ++i) {
    auto out = Advance(milliseconds(1000));
    bool heartbeat = false;
    for (auto& o : out)
      heartbeat |= o.to == "w1" && std::holds_alternative<BrokerHeartbeatMessage>(o.message);
    EXPECT_TRUE(heartbeat);
    Send("w1", HeartbeatMessage{});
  }
  EXPECT_EQ(core_.counters().workers_lost, 0u);
}

TEST_F(BrokerCoreTest, StaleResultIsRejected) {
  Register("w1", {1, 1, 1});
  uint64_t job = SubmitJob({Sleep(1)});
  auto first = TasksTo(Register("w1", {1, 1, 1}), "w1");  // re-register: attempt 2
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(first[0].attempt, 2u);
  TaskOutcome late;
  late.id = {job, 0};
  late.attempt = 1;
  Send("w1", WorkerResultsMessage{{late}});
  EXPECT_EQ(core_.counters().stale_results, 1u);
  EXPECT_FALSE(store_.Find({job, 0}).has_value());
  Send("w1", WorkerResultsMessage{{Ok(first[0], "1")}});
  ASSERT_TRUE(store_.Find({job, 0}).has_value());
  // A second result for the finished task changes nothing.
  Send("w1", WorkerResultsMessage{{Ok(first[0], "2")}});
  EXPECT_EQ(store_.Find({job, 0})->result, "1");
  EXPECT_EQ(core_.counters().stale_results, 2u);
}

TEST_F(BrokerCoreTest, InvalidSubmitIsRefusedWhole) {
  TaskSpec bad;
  bad.body = ShellTask{};  // no argv
  auto out = Send("c", SubmitRequest{{Sleep(1), bad}});
  ASSERT_EQ(out.size(), 1u);
  auto* error = std::get_if<ErrorReply>(&out[0].message);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->code, ErrorCode::kBadRequest);
  EXPECT_EQ(std::get_if<ErrorReply>(&Send("c", GatherRequest{{IdRef{1}}})[0].message)->code,
            ErrorCode::kUnknownId);
}

TEST_F(BrokerCoreTest, UnknownWorkerIsToldToRegisterAndItsResultsAreStale) {
  // Given a worker the broker does not know (dropped while paused),
  TaskOutcome late;
  late.id = {1, 0};
  // When it heartbeats or reports, Then it is told to register again and its results are stale.
  auto out = Send("stranger", HeartbeatMessage{});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<ReregisterMessage>(out[0].message));
  out = Send("stranger", WorkerResultsMessage{{late}});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<ReregisterMessage>(out[0].message));
  EXPECT_EQ(core_.counters().stale_results, 1u);
}

TEST_F(BrokerCoreTest, RepliesSentToTheBrokerAreCounted) {
  Send("stranger", PongReply{});
  EXPECT_EQ(core_.counters().unexpected, 1u);
  core_.HandleMalformed("stranger", "garbage");
  auto out = outbox_.Take();
  EXPECT_EQ(core_.counters().malformed, 1u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<ErrorReply>(out[0].message));
}

TEST_F(BrokerCoreTest, AJournalProblemRefusesSubmitsAndPausesDispatchUntilItClears) {
  // Given a worker with one slot busy, and a task queued behind it,
  Register("w1", {1, 1, 1});
  auto out = Send("c", SubmitRequest{{Sleep(1), Sleep(1)}});
  const auto started = TasksTo(out, "w1");
  ASSERT_EQ(started.size(), 1u);
  // when the journal's disk fills,
  core_.SetJournalProblem("the journal's disk is full");
  out = outbox_.Take();
  EXPECT_TRUE(out.empty());
  // then a submit is refused with kDiskFull, naming the problem,
  out = Send("c", SubmitRequest{{Sleep(1)}});
  ASSERT_EQ(out.size(), 1u);
  const auto& error = std::get<ErrorReply>(out[0].message);
  EXPECT_EQ(error.code, ErrorCode::kDiskFull);
  EXPECT_NE(error.message.find("the journal's disk is full"), std::string::npos);
  // the running task's result is taken, but the queued task does not start;
  out = Send("w1", WorkerResultsMessage{{Ok(started[0], "")}});
  EXPECT_TRUE(TasksTo(out, "w1").empty());
  // and once it clears, the queued task starts.
  core_.SetJournalProblem("");
  out = outbox_.Take();
  ASSERT_EQ(TasksTo(out, "w1").size(), 1u);
  EXPECT_EQ(TasksTo(out, "w1")[0].id, (TaskId{started[0].id.job, 1}));
}

TEST_F(BrokerCoreTest, ShutdownStopsWorkersAndRefusesWork) {
  Register("w1", {1, 1, 1});
  auto out = Send("c", ShutdownRequest{});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<StopMessage>(out[0].message));
  EXPECT_TRUE(std::holds_alternative<ShutdownAck>(out[1].message));
  EXPECT_TRUE(core_.shutting_down());
  out = Send("c", SubmitRequest{{Sleep(1)}});
  EXPECT_EQ(std::get<ErrorReply>(out[0].message).code, ErrorCode::kShuttingDown);
}

TEST_F(BrokerCoreTest, GoneClientsGatherIsForgotten) {
  Register("w1", {1, 1, 1});
  uint64_t job = SubmitJob({Sleep(1)});
  Send("c", GatherRequest{{IdRef{job}}});
  core_.PeerUnreachable("c");
  auto tasks = TasksTo(Register("w1", {1, 1, 1}), "w1");
  auto out = Send("w1", WorkerResultsMessage{{Ok(tasks[0], "1")}});
  EXPECT_EQ(ResultsFor(out, "c"), nullptr);
}

}  // namespace
}  // namespace orq

namespace orq {
namespace {

class BrokerFaultTest : public BrokerCoreTest {};

TEST_F(BrokerFaultTest, PoisonTaskEndsWorkerLostAfterItsAttempts) {
  // Given a task that may be lost twice,
  TaskSpec poison = Sleep(1);
  poison.attempts = 2;
  uint64_t job = SubmitJob({poison, Sleep(1)});
  // When every worker that runs it dies,
  Register("w1", {1, 1, 1}, 101);
  core_.WorkerExited(101);
  auto out = outbox_.Take();
  auto tasks = TasksTo(Register("w2", {1, 1, 1}, 102), "w2");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].attempt, 2u);
  core_.WorkerExited(102);
  out = outbox_.Take();
  // Then it ends worker_lost, and the rest of the job goes on.
  const auto lost = store_.Find({job, 0});
  ASSERT_TRUE(lost.has_value());
  EXPECT_EQ(lost->status, TaskStatus::kWorkerLost);
  EXPECT_EQ(lost->attempt, 2u);
  EXPECT_NE(lost->error.find("lost 2 times with its worker"), std::string::npos) << lost->error;
  tasks = TasksTo(Register("w3", {1, 1, 1}, 103), "w3");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].id, (TaskId{job, 1}));
}

TEST_F(BrokerFaultTest, FailedTaskIsRetriedWithBackoffThenFails) {
  TaskSpec flaky = Sleep(1);
  flaky.retries = 2;
  flaky.backoff_base = 1;
  flaky.backoff_max = 60;
  uint64_t job = SubmitJob({flaky});
  auto tasks = TasksTo(Register("w1", {1, 1, 1}), "w1");
  auto fail = [&](const Assignment& a) {
    TaskOutcome o;
    o.id = a.id;
    o.attempt = a.attempt;
    o.status = TaskStatus::kFailed;
    o.error = "exit code " + std::to_string(a.attempt);
    return Send("w1", WorkerResultsMessage{{o}});
  };
  // When the first attempt fails, Then it waits 0.5 to 1 s (base 1, jitter), then runs again.
  fail(tasks[0]);
  EXPECT_FALSE(store_.Find({job, 0}).has_value());
  EXPECT_TRUE(TasksTo(Advance(milliseconds(499)), "w1").empty());
  tasks = TasksTo(Advance(milliseconds(501)), "w1");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].attempt, 2u);
  // The second failure waits 1 to 2 s.
  fail(tasks[0]);
  EXPECT_TRUE(TasksTo(Advance(milliseconds(999)), "w1").empty());
  tasks = TasksTo(Advance(milliseconds(1001)), "w1");
  ASSERT_EQ(tasks.size(), 1u);
  // The third failure is final, with the previous error kept.
  fail(tasks[0]);
  const auto o = store_.Find({job, 0});
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->status, TaskStatus::kFailed);
  EXPECT_EQ(o->attempt, 3u);
  EXPECT_EQ(o->error, "exit code 3");
  EXPECT_EQ(o->last_error, "attempt 2: exit code 2");
  EXPECT_EQ(core_.counters().retries, 2u);
}

TEST_F(BrokerFaultTest, ReturningWorkerKeepsLeasesNobodyTook) {
  // Given a worker dropped for silence while it ran a task,
  Register("w1", {1, 1, 1});
  uint64_t job = SubmitJob({Sleep(10)});
  for (int i = 0; i < 5; ++i) Advance(milliseconds(1000));
  EXPECT_EQ(core_.counters().workers_lost, 1u);
  // When it comes back still running that attempt, before anyone else took it,
  ReadyMessage ready{100, 1, {1, 1, 1}, {{{job, 0}, 1}}};
  auto out = Send("w1", ready);
  // Then it keeps it: no second execution, nothing to cancel.
  EXPECT_TRUE(TasksTo(out, "w1").empty());
  for (auto& o : out) EXPECT_FALSE(std::holds_alternative<CancelTasksMessage>(o.message));
  EXPECT_EQ(core_.counters().adopted, 1u);
  TaskOutcome done;
  done.id = {job, 0};
  done.attempt = 1;
  Send("w1", WorkerResultsMessage{{done}});
  ASSERT_TRUE(store_.Find({job, 0}).has_value());
}

TEST_F(BrokerFaultTest, AnotherKeyOnAWorkersRoutingIdIsRefusedAndCounted) {
  auto from = [&](const std::string& key, Message m) {
    Deliver(core_, Peer{"w", Role::kWorker, key}, std::move(m), now_);
    return outbox_.Take();
  };
  // Given a worker of key A running a task,
  const uint64_t job = SubmitJob({Sleep(1)});
  auto tasks = TasksTo(from("A", ReadyMessage{1, 1, {1, 1, 1}, {}, "node1"}), "w");
  ASSERT_EQ(tasks.size(), 1u);
  // when a connection of key B uses that worker's routing id to report a forged result and to
  // register in its place,
  EXPECT_TRUE(from("B", WorkerResultsMessage{{Ok(tasks[0], "forged")}}).empty());
  EXPECT_TRUE(
      from("B", ReadyMessage{2, 1, {1, 1, 1}, {{tasks[0].id, tasks[0].attempt}}, "node1"}).empty());
  // then both are refused and counted, the worker keeps its lease,
  EXPECT_EQ(core_.counters().impostors, 2u);
  EXPECT_FALSE(store_.Find({job, 0}).has_value());
  EXPECT_EQ(core_.worker_count(), 1u);
  // and its own result is the one kept.
  from("A", WorkerResultsMessage{{Ok(tasks[0], "real")}});
  ASSERT_TRUE(store_.Find({job, 0}).has_value());
  EXPECT_EQ(store_.Find({job, 0})->result, "real");
}

TEST_F(BrokerFaultTest, AWorkerMayAdoptOnlyALeaseAWorkerOfItsKeyLost) {
  auto from = [&](const std::string& who, const std::string& key, Message m) {
    Deliver(core_, Peer{who, Role::kWorker, key}, std::move(m), now_);
    return outbox_.Take();
  };
  auto cancelled = [](const std::vector<Outgoing>& out) {
    for (const auto& o : out) {
      if (std::holds_alternative<CancelTasksMessage>(o.message)) return true;
    }
    return false;
  };
  // Given a task nobody was ever given (queued at attempt 0),
  const uint64_t never = SubmitJob({Sleep(10)});
  // a worker key claiming it is told to drop it, and it is not taken as running,
  auto out = from("thief", "KEY-B", ReadyMessage{100, 1, {0, 0, 0}, {{{never, 0}, 0}}, "h"});
  EXPECT_TRUE(cancelled(out));
  EXPECT_EQ(core_.counters().adopted, 0u);
  // Given a task a worker of key A ran when it was dropped for silence,
  from("honest", "KEY-A", ReadyMessage{100, 1, {1, 1, 1}, {}, "h"});
  for (int i = 0; i < 5; ++i) Advance(milliseconds(1000));
  ASSERT_EQ(core_.counters().workers_lost, 2u);  // (the thief was silent too)
  // a worker of key B claiming that lease (its id reused, or not) does not get it either,
  out = from("honest", "KEY-B", ReadyMessage{100, 1, {0, 0, 0}, {{{never, 0}, 1}}, "h"});
  EXPECT_TRUE(cancelled(out));
  EXPECT_EQ(core_.counters().adopted, 0u);
  // while a worker of key A does.
  out = from("honest-again", "KEY-A", ReadyMessage{100, 1, {1, 1, 1}, {{{never, 0}, 1}}, "h"});
  EXPECT_FALSE(cancelled(out));
  EXPECT_EQ(core_.counters().adopted, 1u);
}

TEST_F(BrokerFaultTest, AWorkerRegisteringTwiceKeepsItsLeaseAndIsAdoptedOnce) {
  // Given a returning worker that adopted its lease,
  Register("w1", {1, 1, 1});
  uint64_t job = SubmitJob({Sleep(10)});
  for (int i = 0; i < 5; ++i) Advance(milliseconds(1000));
  ReadyMessage ready{100, 1, {1, 1, 1}, {{{job, 0}, 1}}};
  Send("w1", ready);
  // When its Ready crosses a Reregister and it registers again on the same connection,
  auto out = Send("w1", ready);
  // Then it keeps the task (no second execution, nothing cancelled), counted as adopted once.
  EXPECT_TRUE(TasksTo(out, "w1").empty());
  for (auto& o : out) EXPECT_FALSE(std::holds_alternative<CancelTasksMessage>(o.message));
  EXPECT_EQ(core_.counters().adopted, 1u);
  auto status = Send("admin", StatusRequest{});
  EXPECT_EQ(std::get<StatusReply>(status.at(0).message).tasks.running, 1u);
}

TEST_F(BrokerFaultTest, ReturningWorkerDropsLeasesTakenByOthers) {
  Register("w1", {1, 1, 1});
  uint64_t job = SubmitJob({Sleep(10)});
  for (int i = 0; i < 5; ++i) Advance(milliseconds(1000));
  auto taken = TasksTo(Register("w2", {1, 1, 1}, 200), "w2");
  ASSERT_EQ(taken.size(), 1u);
  // The late result of attempt 1 is rejected; the worker is told to register and drop it.
  TaskOutcome late;
  late.id = {job, 0};
  late.attempt = 1;
  auto out = Send("w1", WorkerResultsMessage{{late}});
  EXPECT_TRUE(std::holds_alternative<ReregisterMessage>(out[0].message));
  out = Send("w1", ReadyMessage{100, 1, {1, 1, 1}, {{{job, 0}, 1}}});
  bool told = false;
  for (auto& o : out) {
    if (auto* c = std::get_if<CancelTasksMessage>(&o.message))
      told = c->ids == std::vector<TaskId>{{job, 0}};
  }
  EXPECT_TRUE(told);
  EXPECT_FALSE(store_.Find({job, 0}).has_value());
  Send("w2", WorkerResultsMessage{{Ok(taken[0], "\"once\"")}});
  EXPECT_EQ(store_.Find({job, 0})->result, "\"once\"");
  EXPECT_EQ(store_.Find({job, 0})->attempt, 2u);
}

TEST_F(BrokerFaultTest, CancelledRunningTaskWhoseWorkerDiesEndsCancelled) {
  Register("w1", {1, 1, 1}, 101);
  uint64_t job = SubmitJob({Sleep(10)});
  Send("c", CancelRequest{{IdRef{job}}});
  core_.WorkerExited(101);
  auto out = outbox_.Take();
  ASSERT_TRUE(store_.Find({job, 0}).has_value());
  EXPECT_EQ(store_.Find({job, 0})->status, TaskStatus::kCancelled);
}

TEST_F(BrokerFaultTest, ForgetRemovesFinishedJobsOnly) {
  Register("w1", {10, 1, 1});
  uint64_t done = SubmitJob({Sleep(1)});
  uint64_t busy = SubmitJob({Sleep(1)});
  (void)busy;
  auto tasks = TasksTo(Register("w1", {10, 1, 1}), "w1");
  for (auto& t : tasks) {
    if (t.id.job == done) Send("w1", WorkerResultsMessage{{Ok(t, "1")}});
  }
  auto out = Send("c", ForgetRequest{{2}});
  EXPECT_EQ(std::get<ErrorReply>(out[0].message).message,
            "job j2 has 1 unfinished tasks; cancel or gather it first");
  out = Send("c", ForgetRequest{{1}});
  EXPECT_EQ(std::get<ForgottenReply>(out[0].message).count, 1u);
  EXPECT_FALSE(store_.Find({done, 0}).has_value());
  out = Send("c", GatherRequest{{IdRef{1}}});
  EXPECT_EQ(std::get<ErrorReply>(out[0].message).code, ErrorCode::kUnknownId);
}

TEST(BrokerLimitTest, TasksPerJobAtNAndNPlusOne) {
  MemoryStore store;
  NullJournal journal;
  BrokerOptions options;
  options.max_tasks_per_job = 3;
  Outbox outbox;
  BrokerCore core(options, store, journal, outbox);
  Deliver(core, Peer{"c", Role::kLocal, {}}, SubmitRequest{{Sleep(1), Sleep(1), Sleep(1)}},
          SteadyTime{});
  auto out = outbox.Take();
  EXPECT_TRUE(std::holds_alternative<SubmittedReply>(out[0].message));
  Deliver(core, Peer{"c", Role::kLocal, {}},
          SubmitRequest{{Sleep(1), Sleep(1), Sleep(1), Sleep(1)}}, SteadyTime{});
  out = outbox.Take();
  EXPECT_EQ(std::get<ErrorReply>(out[0].message).message,
            "a job may hold at most 3 tasks; this one has 4");
}

TEST_F(BrokerFaultTest, RetentionForgetsOldFinishedJobs) {
  BrokerOptions options;
  options.retention = std::chrono::seconds(60);
  MemoryStore store;
  NullJournal journal;
  Outbox outbox;
  BrokerCore core(options, store, journal, outbox);
  Deliver(core, Peer{"w", Role::kLocal, {}}, ReadyMessage{1, 1, {1, 1, 1}, {}}, now_);
  auto out = outbox.Take();
  Deliver(core, Peer{"c", Role::kLocal, {}}, SubmitRequest{{Sleep(1)}}, now_);
  out = outbox.Take();
  auto tasks = TasksTo(out, "w");
  ASSERT_EQ(tasks.size(), 1u);
  Deliver(core, Peer{"w", Role::kLocal, {}}, WorkerResultsMessage{{Ok(tasks[0], "1")}}, now_);
  out = Concat(std::move(out), outbox.Take());
  core.Tick(now_ + std::chrono::seconds(59));
  out = Concat(std::move(out), outbox.Take());
  EXPECT_TRUE(store.Find(tasks[0].id).has_value());
  core.Tick(now_ + std::chrono::seconds(61));
  out = Concat(std::move(out), outbox.Take());
  EXPECT_FALSE(store.Find(tasks[0].id).has_value());
}

// Roles: what each kind of key may send (common/protocol.h), enforced on every message.
class BrokerRoleTest : public BrokerCoreTest {
 protected:
  std::vector<Outgoing> SendAs(const std::string& from, Role role, Message m) {
    Deliver(core_, Peer{from, role, {}}, std::move(m), now_);
    return outbox_.Take();
  }
  StatusReply Status() {
    auto out = Send("admin", StatusRequest{});
    return std::get<StatusReply>(out.at(0).message);
  }
};

TEST_F(BrokerRoleTest, WorkerKeyCannotSubmitOrAdministerAnything) {
  // Given a peer that authenticated with a worker key,
  // When it sends each client request,
  const std::vector<Message> requests = {SubmitRequest{{Sleep(1)}}, GatherRequest{{IdRef{1}}},
                                         StatusRequest{},           CancelRequest{{IdRef{1}}},
                                         ShutdownRequest{},         ForgetRequest{{1}},
                                         ReloadAccessRequest{}};
  for (const Message& m : requests) {
    auto out = SendAs("w", Role::kWorker, m);
    // Then each is refused with kForbidden, and nothing happens.
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(std::get<ErrorReply>(out[0].message).code, ErrorCode::kForbidden);
  }
  EXPECT_EQ(core_.counters().forbidden, requests.size());
  EXPECT_FALSE(core_.shutting_down());
  EXPECT_EQ(Status().jobs, 0);
}

TEST_F(BrokerRoleTest, ClientKeyCannotRegisterOrReportResults) {
  // Given a job queued and a peer with a client key,
  uint64_t job = SubmitJob({Sleep(1)});
  // When it registers as a worker and reports a forged result,
  auto out = SendAs("c", Role::kClient, ReadyMessage{1, 1, {8, 8, 8}, {}, "evil"});
  EXPECT_TRUE(out.empty());  // no tasks, no answer
  TaskOutcome forged;
  forged.id = {job, 0};
  forged.attempt = 1;
  forged.result = "\"forged\"";
  EXPECT_TRUE(SendAs("c", Role::kClient, WorkerResultsMessage{{forged}}).empty());
  EXPECT_TRUE(SendAs("c", Role::kClient, HeartbeatMessage{}).empty());
  // Then it is no worker, the task is still queued, and each refusal was counted.
  auto status = Status();
  EXPECT_EQ(status.workers.size(), 0u);
  EXPECT_EQ(status.tasks.queued, 1);
  EXPECT_EQ(status.counters.forbidden, 3);
  // A client key may still do what clients do.
  out = SendAs("c", Role::kClient, StatusRequest{});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<StatusReply>(out[0].message));
}

TEST_F(BrokerRoleTest, RevokedPeerMaySendNothing) {
  auto out = SendAs("r", Role::kRevoked, StatusRequest{});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_NE(std::get<ErrorReply>(out[0].message).message.find("revoked"), std::string::npos);
  EXPECT_TRUE(SendAs("r", Role::kRevoked, HeartbeatMessage{}).empty());
  EXPECT_EQ(core_.counters().forbidden, 2u);
}

TEST_F(BrokerRoleTest, RevokingARemoteWorkerReleasesItsLeasesAtOnce) {
  // Given a remote worker running a task,
  uint64_t job = SubmitJob({Sleep(1)});
  auto out = SendAs("remote", Role::kWorker, ReadyMessage{7, 1, {8, 8, 8}, {}, "node7"});
  ASSERT_EQ(TasksTo(out, "remote").size(), 1u);
  auto status = Status();
  EXPECT_EQ(status.workers[0].host, "node7");
  EXPECT_EQ(status.workers[0].remote, true);
  // When its key is revoked,
  core_.PeerRevoked("remote");
  out = outbox_.Take();
  // Then it is gone and its task goes to the next worker as a new attempt,
  EXPECT_EQ(core_.worker_count(), 0u);
  out = Register("w2", {8, 8, 8});
  auto tasks = TasksTo(out, "w2");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].id, (TaskId{job, 0}));
  EXPECT_EQ(tasks[0].attempt, 2u);
  EXPECT_EQ(core_.counters().revoked, 1u);
  // and what the revoked worker still sends is refused.
  TaskOutcome late = Ok(tasks[0], "\"late\"");
  late.attempt = 1;
  EXPECT_TRUE(SendAs("remote", Role::kRevoked, WorkerResultsMessage{{late}}).empty());
  EXPECT_EQ(Status().tasks.running, 1);
}

TEST_F(BrokerRoleTest, LocalPeersAreWorkersWithTheirHost) {
  Send("w", ReadyMessage{5, 1, {8, 8, 8}, {}, "here"});
  auto status = Status();
  EXPECT_EQ(status.workers[0].remote, false);
  EXPECT_EQ(status.workers[0].host, "here");
  EXPECT_EQ(status.endpoints[0], "ipc://test");
}

TEST_F(BrokerCoreTest, AStreamingGatherGetsResultsAsTheyFinishOnceEach) {
  // Given a job of three tasks, one of them already done,
  uint64_t job = SubmitJob({Sleep(1), Sleep(1), Sleep(1)});
  auto tasks = TasksTo(Register("w1", {3, 1, 1}), "w1");
  ASSERT_EQ(tasks.size(), 3u);
  Send("w1", WorkerResultsMessage{{Ok(tasks[1], "b")}});
  // When a client gathers it streaming, it gets the finished one at once (not final),
  auto out = Send("c", GatherRequest{{IdRef{job}}, true});
  const ResultsReply* first = ResultsFor(out, "c");
  ASSERT_NE(first, nullptr);
  EXPECT_FALSE(first->final);
  ASSERT_EQ(first->outcomes.size(), 1u);
  EXPECT_EQ(first->outcomes[0].id, (TaskId{job, 1}));
  EXPECT_EQ(first->sizes, (std::vector<uint32_t>{3}));
  // then each result in the turn it comes, in finishing order,
  out = Send("w1", WorkerResultsMessage{{Ok(tasks[2], "c")}});
  const ResultsReply* second = ResultsFor(out, "c");
  ASSERT_NE(second, nullptr);
  EXPECT_FALSE(second->final);
  ASSERT_EQ(second->outcomes.size(), 1u);
  EXPECT_EQ(second->outcomes[0].id, (TaskId{job, 2}));
  // and the last in a final chunk.
  out = Send("w1", WorkerResultsMessage{{Ok(tasks[0], "a")}});
  const ResultsReply* last = ResultsFor(out, "c");
  ASSERT_NE(last, nullptr);
  EXPECT_TRUE(last->final);
  ASSERT_EQ(last->outcomes.size(), 1u);
  EXPECT_EQ(last->outcomes[0].result, "a");
  // A stream of a finished job is one final chunk with everything.
  out = Send("c", GatherRequest{{IdRef{job}}, true});
  ASSERT_NE(ResultsFor(out, "c"), nullptr);
  EXPECT_TRUE(ResultsFor(out, "c")->final);
  EXPECT_EQ(ResultsFor(out, "c")->outcomes.size(), 3u);
}

TEST_F(BrokerCoreTest, AGatherSendsAFewChunksAheadAndOneMorePerAcknowledgement) {
  // Given a finished job with more results than kResultsWindow chunks hold,
  const size_t n = (kResultsWindow + 1) * kMaxResultsPerReply + 10;
  Register("w1", {static_cast<uint32_t>(n), 1, 1});
  auto out = Send("c", SubmitRequest{std::vector<TaskSpec>(n, Sleep(1))});
  WorkerResultsMessage results;
  for (const Assignment& a : TasksTo(out, "w1")) results.outcomes.push_back(Ok(a, "r"));
  ASSERT_EQ(results.outcomes.size(), n);
  Send("w1", std::move(results));
  auto chunks = [](const std::vector<Outgoing>& sent, bool& final) {
    size_t count = 0;
    for (const auto& o : sent) {
      if (const auto* r = std::get_if<ResultsReply>(&o.message)) {
        ++count;
        final = r->final;
      }
    }
    return count;
  };
  // When a client gathers it, it gets kResultsWindow chunks and no more,
  bool final = false;
  EXPECT_EQ(chunks(Send("c", GatherRequest{{IdRef{1}}}), final), kResultsWindow);
  EXPECT_FALSE(final);
  // then one chunk for each it acknowledges, the last one final,
  EXPECT_EQ(chunks(Send("c", ResultsAck{}), final), 1u);
  EXPECT_FALSE(final);
  EXPECT_EQ(chunks(Send("c", ResultsAck{}), final), 1u);
  EXPECT_TRUE(final);
  // and nothing after that.
  EXPECT_EQ(chunks(Send("c", ResultsAck{}), final), 0u);
}

TEST_F(BrokerCoreTest, AGatherIsCutIntoRepliesByBytesNotOnlyByCount) {
  // Given a finished job of 40 results of 300 KiB each (12 MiB, far fewer than
  // kMaxResultsPerReply),
  const size_t n = 40;
  Register("w1", {static_cast<uint32_t>(n), 1, 1});
  auto out = Send("c", SubmitRequest{std::vector<TaskSpec>(n, Sleep(1))});
  WorkerResultsMessage results;
  for (const Assignment& a : TasksTo(out, "w1"))
    results.outcomes.push_back(Ok(a, std::string(300 << 10, 'r')));
  ASSERT_EQ(results.outcomes.size(), n);
  Send("w1", std::move(results));
  // when a client gathers it, streamed or not, acknowledging every chunk,
  for (bool stream : {false, true}) {
    out = Send("c", GatherRequest{{IdRef{1}}, stream});
    std::vector<size_t> sizes;  // results per reply
    uint32_t next = 0;
    for (int acks = 0; acks < 100; ++acks) {
      bool final = false;
      for (const auto& o : out) {
        const auto* r = std::get_if<ResultsReply>(&o.message);
        if (!r) continue;
        // then each reply holds about 1 MiB (four results: the one that passes it is the last),
        size_t bytes = 0;
        for (const TaskOutcome& outcome : r->outcomes) {
          EXPECT_EQ(outcome.id.index, next++) << "stream " << stream;
          bytes += outcome.result.size();
        }
        EXPECT_LE(bytes, kResultsReplyBytes + (300u << 10)) << "stream " << stream;
        sizes.push_back(r->outcomes.size());
        final = r->final;
      }
      if (final) break;
      out = Send("c", ResultsAck{});
    }
    // and every result comes, once, in order.
    EXPECT_EQ(next, n) << "stream " << stream;
    EXPECT_EQ(sizes.size(), 10u) << "stream " << stream;
  }
}

TEST(BrokerCoreMemoryTest, WithoutAJournalTheJobsThatEndedFirstGoPastTheBound) {
  // Given a broker without a journal that keeps at most 2 outcomes in memory,
  MemoryStore store;
  NullJournal journal;
  BrokerOptions options;
  options.memory_results = 2;
  Outbox outbox;
  BrokerCore core(options, store, journal, outbox);
  std::vector<Outgoing> out;
  const SteadyTime now{};
  Deliver(core, Peer{"w", Role::kLocal, {}}, ReadyMessage{1, 1, {3, 1, 1}, {}}, now);
  out = Concat(std::move(out), outbox.Take());
  // when three one-task jobs end in turn,
  for (int i = 0; i < 3; ++i) {
    Deliver(core, Peer{"c", Role::kLocal, {}}, SubmitRequest{{Sleep(1)}}, now);
    out = outbox.Take();
    for (const Outgoing& o : out) {
      if (const auto* tasks = std::get_if<TasksMessage>(&o.message)) {
        std::vector<Outgoing> ignored;
        TaskOutcome ok;
        ok.id = tasks->tasks.at(0).id;
        ok.attempt = tasks->tasks.at(0).attempt;
        Deliver(core, Peer{"w", Role::kLocal, {}}, WorkerResultsMessage{{ok}}, now);
        ignored = Concat(std::move(ignored), outbox.Take());
      }
    }
  }
  // then the first is forgotten, and the two others are kept.
  Deliver(core, Peer{"c", Role::kLocal, {}}, GatherRequest{{IdRef{1}}}, now);
  out = outbox.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<ErrorReply>(out[0].message).code, ErrorCode::kUnknownId);
  EXPECT_TRUE(store.Find({2, 0}).has_value());
  EXPECT_TRUE(store.Find({3, 0}).has_value());
  EXPECT_FALSE(store.Find({1, 0}).has_value());
}

// GNU parallel's --halt, decided by the broker: the outcome that decides it frees a slot, and no
// task of the job takes it; "soon" lets the running ones finish, "now" stops them.
TEST_F(BrokerCoreTest, AHaltStartsNoTaskOfItsJobAfterTheDecision) {
  for (const bool now : {false, true}) {
    SCOPED_TRACE(now ? "now" : "soon");
    SubmitRequest request{{Sleep(1), Sleep(1), Sleep(1), Sleep(1), Sleep(1)}};
    request.halt = HaltPolicy{now, /*on_failure=*/true, /*percent=*/false, 1};
    auto out = Send("client", std::move(request));
    uint64_t job = 0;
    for (auto& o : out) {
      if (auto* s = std::get_if<SubmittedReply>(&o.message)) job = s->job;
    }
    const std::string worker = now ? "w-now" : "w-soon";
    auto tasks = TasksTo(Register(worker, {2, 2, 2}), worker);
    ASSERT_EQ(tasks.size(), 2u);
    // Task 0 ends ok: task 2 takes its slot. Task 1 fails: the halt decides.
    tasks = TasksTo(Send(worker, WorkerResultsMessage{{Ok(tasks[0], "ok")}}), worker);
    ASSERT_EQ(tasks.size(), 1u);
    EXPECT_EQ(tasks[0].id, (TaskId{job, 2}));
    TaskOutcome failed;
    failed.id = {job, 1};
    failed.attempt = 1;
    failed.status = TaskStatus::kFailed;
    out = Send(worker, WorkerResultsMessage{{failed}});
    EXPECT_TRUE(TasksTo(out, worker).empty());  // the freed slot stays free
    bool stopped = false;
    for (auto& o : out) {
      if (auto* c = std::get_if<CancelTasksMessage>(&o.message))
        stopped = c->ids == std::vector<TaskId>{{job, 2}};
    }
    EXPECT_EQ(stopped, now);
    EXPECT_EQ(store_.Find({job, 3})->status, TaskStatus::kCancelled);
    EXPECT_EQ(store_.Find({job, 3})->error, "cancelled: its job halted (--halt)");
    EXPECT_EQ(store_.Find({job, 4})->status, TaskStatus::kCancelled);
    EXPECT_FALSE(store_.Find({job, 2}).has_value());  // still running: its worker reports it
    // Another job, without --halt, takes the free slot.
    Send(worker, WorkerResultsMessage{{Ok(tasks[0], "ok")}});
    tasks = TasksTo(Send("client", SubmitRequest{{Sleep(1), Sleep(1)}}), worker);
    EXPECT_EQ(tasks.size(), 2u);
  }
  // A threshold no halt can have is refused.
  SubmitRequest bad{{Sleep(1)}};
  bad.halt.threshold = 1.5;
  auto out = Send("client", std::move(bad));
  ASSERT_FALSE(out.empty());
  EXPECT_TRUE(std::holds_alternative<ErrorReply>(out.back().message));
}

TEST_F(BrokerCoreTest, CancellingOnlyWhatHasNotStartedLeavesRunningTasksBe) {
  uint64_t job = SubmitJob({Sleep(1), Sleep(1), Sleep(1)});
  auto tasks = TasksTo(Register("w1", {1, 1, 1}), "w1");
  ASSERT_EQ(tasks.size(), 1u);
  // When the job is cancelled with running=false (--halt soon),
  auto out = Send("c", CancelRequest{{IdRef{job}}, false});
  // Then the two queued tasks are cancelled and the running one is not told to stop,
  for (const auto& o : out) EXPECT_FALSE(std::holds_alternative<CancelTasksMessage>(o.message));
  // and its result still counts.
  Send("w1", WorkerResultsMessage{{Ok(tasks[0], "done")}});
  out = Send("c", GatherRequest{{IdRef{job}}});
  const ResultsReply* r = ResultsFor(out, "c");
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->outcomes.size(), 3u);
  EXPECT_EQ(r->outcomes[0].status, TaskStatus::kOk);
  EXPECT_EQ(r->outcomes[1].status, TaskStatus::kCancelled);
  EXPECT_EQ(r->outcomes[2].status, TaskStatus::kCancelled);
}

TEST_F(BrokerCoreTest, JobsCountEachJobsTasksByState) {
  uint64_t job = SubmitJob({Sleep(1), Sleep(1), Sleep(1), Sleep(1, 0, 60)});
  auto tasks = TasksTo(Register("w1", {1, 1, 1}), "w1");
  ASSERT_EQ(tasks.size(), 1u);
  TaskOutcome failed = Ok(tasks[0], "");
  failed.status = TaskStatus::kFailed;
  Send("w1", WorkerResultsMessage{{failed}});  // the next one is leased at once
  now_ += milliseconds(1500);
  auto out = Send("c", JobsRequest{{job}});
  ASSERT_EQ(out.size(), 1u);
  const auto& reply = std::get<JobsReply>(out[0].message);
  ASSERT_EQ(reply.jobs.size(), 1u);
  const JobInfo& info = reply.jobs[0];
  EXPECT_EQ(info.tasks, 4u);
  EXPECT_EQ(info.failed, 1u);
  EXPECT_EQ(info.ok, 0u);
  EXPECT_EQ(info.running, 1u);
  EXPECT_EQ(info.queued, 1u);
  EXPECT_EQ(info.delayed, 1u);
  EXPECT_DOUBLE_EQ(info.age, 1.5);
  EXPECT_EQ(info.finished_age, -1);
  EXPECT_EQ(info.label, "sleep");
  // Unknown ids are refused; no ids: every job.
  EXPECT_TRUE(std::holds_alternative<ErrorReply>(Send("c", JobsRequest{{99}})[0].message));
  EXPECT_EQ(std::get<JobsReply>(Send("c", JobsRequest{})[0].message).jobs.size(), 1u);
}

TEST_F(BrokerCoreTest, RetrySubmitsWhatDidNotEndOkAsANewJob) {
  uint64_t job = SubmitJob({Sleep(1), Sleep(2), Sleep(3)});
  auto tasks = TasksTo(Register("w1", {3, 1, 1}), "w1");
  ASSERT_EQ(tasks.size(), 3u);
  TaskOutcome failed = Ok(tasks[1], "");
  failed.status = TaskStatus::kFailed;
  Send("w1", WorkerResultsMessage{{Ok(tasks[0], "1"), failed, Ok(tasks[2], "3")}});
  auto out = Send("c", RetryRequest{job, false});
  const SubmittedReply* submitted = nullptr;
  for (const auto& o : out) {
    if (auto* s = std::get_if<SubmittedReply>(&o.message)) submitted = s;
  }
  ASSERT_NE(submitted, nullptr);
  EXPECT_EQ(submitted->count, 1u);
  auto again = TasksTo(out, "w1");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, (TaskId{submitted->job, 0}));
  EXPECT_EQ(again[0].spec.body, TaskBody(SleepTask{2, ""}));  // the failed task's spec, kept
  // --all runs every task again, as submitted (the store keeps the specs, in memory here too);
  const auto all = Send("c", RetryRequest{job, true});
  ASSERT_TRUE(std::holds_alternative<SubmittedReply>(all[0].message));
  EXPECT_EQ(std::get<SubmittedReply>(all[0].message).count, 3u);
  // and a job with nothing failed has nothing to retry.
  Send("w1", WorkerResultsMessage{{Ok(again[0], "2")}});
  EXPECT_TRUE(std::holds_alternative<ErrorReply>(
      Send("c", RetryRequest{submitted->job, false})[0].message));
}

TEST_F(BrokerCoreTest, LogsFollowARunningTasksOutputFromItsWorker) {
  TaskSpec shell;
  shell.body = ShellTask{{"sh", "-c", "echo a; echo b"}};
  uint64_t job = SubmitJob({shell});
  auto tasks = TasksTo(Register("w1", {1, 1, 1}), "w1");
  ASSERT_EQ(tasks.size(), 1u);
  const TaskId id{job, 0};
  // When a client follows it, its worker is asked to send its output;
  auto out = Send("c", LogsRequest{id, false, true});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to, "w1");
  EXPECT_EQ(std::get<WatchMessage>(out[0].message).ids, (std::vector<TaskId>{{job, 0}}));
  // what the worker sends goes to the client, once, in order;
  out = Send("w1", OutputMessage{{job, 0}, 1, 0, "a\n", 0, ""});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<LogChunk>(out[0].message).text, "a\n");
  EXPECT_FALSE(std::get<LogChunk>(out[0].message).final);
  out = Send("w1", OutputMessage{{job, 0}, 1, 2, "b\n", 0, ""});
  EXPECT_EQ(std::get<LogChunk>(out[0].message).text, "b\n");
  // (a worker that does not hold the lease, or a stale attempt, is not heard)
  Register("w2", {1, 1, 0}, 200);  // no shell slot: it takes none of the tasks below
  EXPECT_TRUE(Send("w2", OutputMessage{{job, 0}, 1, 0, "x\n", 0, ""}).empty());
  EXPECT_TRUE(Send("w1", OutputMessage{{job, 0}, 7, 0, "x\n", 0, ""}).empty());
  // and when it ends, the rest (here nothing) in a final chunk.
  TaskOutcome done = Ok(tasks[0], "");
  done.shell = ShellOutput{0, "a\nb\n", "", false};
  out = Send("w1", WorkerResultsMessage{{done}});
  const LogChunk* last = nullptr;
  for (const auto& o : out) {
    if (o.to == "c") last = &std::get<LogChunk>(o.message);
  }
  ASSERT_NE(last, nullptr);
  EXPECT_TRUE(last->final);
  EXPECT_EQ(last->text, "");
  // A finished task's output comes whole at once; one not started says so.
  out = Send("c", LogsRequest{id, false, false});
  EXPECT_EQ(std::get<LogChunk>(out[0].message).text, "a\nb\n");
  uint64_t queued = SubmitJob({shell, shell});
  out = Send("c", LogsRequest{{queued, 1}, false, false});
  EXPECT_EQ(std::get<LogChunk>(out[0].message).note,
            "j" + std::to_string(queued) + ".1 has not started yet");
}

TEST_F(BrokerCoreTest, TheRestOfASpilledStreamIsAskedOfTheWorkersThatMayHoldIt) {
  // Worker rN connects with key kN, except r3: a second worker of r1's host and key.
  auto key_of = [](const std::string& who) { return who == "r3" ? "k1" : "k" + who.substr(1); };
  auto as_worker = [&](const std::string& who, Message m) {
    Deliver(core_, Peer{who, Role::kWorker, key_of(who)}, std::move(m), now_);
    return outbox_.Take();
  };
  auto spilled = [](const Assignment& a, std::string file, std::string host, std::string key) {
    TaskOutcome o = Ok(a, "");
    o.shell = ShellOutput{0, "first MiB", "", true,
                          std::make_shared<ShellOutput::More>(ShellOutput::More{
                              std::move(file), "", std::move(host), {"sh"}, std::move(key)})};
    return o;
  };
  TaskSpec shell;
  shell.body = ShellTask{{"sh", "-c", "seq 1000000"}};
  // Given a task of a remote worker on node3 whose stdout spilled (the broker named the file),
  // and a task of a local worker whose stdout spilled too,
  const uint64_t remote_job = SubmitJob({shell});
  const uint64_t local_job = SubmitJob({shell});
  auto remote = TasksTo(as_worker("r1", ReadyMessage{7, 1, {1, 1, 1}, {}, "node3"}), "r1");
  auto local = TasksTo(Register("local1", {1, 1, 1}, 300), "local1");
  ASSERT_EQ(remote.size(), 1u);
  ASSERT_EQ(local.size(), 1u);
  as_worker("r1", WorkerResultsMessage{{spilled(remote[0], "output/j1.0.1.out", "node3", "k1")}});
  Send("local1",
       WorkerResultsMessage{{spilled(local[0], "/home/o/output/j2.0.1.out", "here", "")}});
  // and more workers: remote ones on node3 and node4, another local one, and one with another
  // key that says it is on node3 too,
  as_worker("r2", ReadyMessage{8, 1, {0, 0, 0}, {}, "node4"});
  as_worker("r4", ReadyMessage{10, 1, {0, 0, 0}, {}, "node3"});
  as_worker("r3", ReadyMessage{9, 1, {0, 0, 0}, {}, "node3"});
  Register("local2", {0, 0, 0}, 301);
  auto asked = [](const std::vector<Outgoing>& out) {
    EXPECT_EQ(out.size(), 1u);
    return out.empty() ? std::string() : out[0].to;
  };
  // when a client asks for the rest of the remote task's stdout, from 1 MiB on,
  const TaskId remote_task{remote_job, 0};
  auto out = Send("c", LogsRequest{remote_task, false, false, true, 1u << 20});
  // then a remote worker on node3 is asked for that attempt's stream from there,
  ASSERT_EQ(asked(out), "r1");
  const auto ask = std::get<ReadOutputMessage>(out[0].message);
  EXPECT_EQ(ask.attempt, (Lease{{remote_job, 0}, 1}));
  EXPECT_EQ(ask.offset, 1u << 20);
  // then the other one on node3 with its key when it has no such file (never the other key's),
  ASSERT_EQ(asked(as_worker("r1", OutputPieceMessage{ask.fetch, false, true, ""})), "r3");
  // and what that one sends goes to the client;
  out = as_worker("r3", OutputPieceMessage{ask.fetch, true, true, "the rest"});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to, "c");
  EXPECT_EQ(std::get<LogChunk>(out[0].message).text, "the rest");
  EXPECT_TRUE(std::get<LogChunk>(out[0].message).final);
  // When neither of that key has it, the client is told where it is: r4 is never asked.
  out = Send("c", LogsRequest{remote_task, false, false, true, 0});
  const uint64_t fetch = std::get<ReadOutputMessage>(out.at(0).message).fetch;
  out = as_worker(out[0].to, OutputPieceMessage{fetch, false, true, ""});
  out = as_worker(asked(out), OutputPieceMessage{fetch, false, true, ""});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to, "c");
  EXPECT_TRUE(std::get<LogChunk>(out[0].message).final);
  // a local worker's file is asked of a local worker (they share this host's $ORQ_HOME).
  out = Send("c", LogsRequest{{local_job, 0}, false, false, true, 0});
  EXPECT_EQ(asked(out).rfind("local", 0), 0u);
  // A piece over kOutputPieceBytes is counted, never sent on.
  out = Send("c", LogsRequest{remote_task, false, false, true, 0});
  const auto again = std::get<ReadOutputMessage>(out.at(0).message);
  const uint64_t over = core_.counters().over_bounds;
  out = as_worker(out[0].to, OutputPieceMessage{again.fetch, true, true,
                                                std::string(kOutputPieceBytes + 1, 'x')});
  EXPECT_EQ(core_.counters().over_bounds, over + 1);
  for (const auto& o : out) {
    if (const auto* chunk = std::get_if<LogChunk>(&o.message)) {
      EXPECT_TRUE(chunk->text.empty());
    }
  }
}

}  // namespace
}  // namespace orq

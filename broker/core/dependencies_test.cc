// Dependencies in the broker's core: "after", "after_any", the waiting state, dependency_failed
// down the graph, cancels, and a restart from the journal's records.
#include <gtest/gtest.h>

#include "broker/core/core_fixture.h"
#include "common/ids.h"

namespace orq {
namespace {

TaskSpec After(TaskSpec spec, std::vector<Dependency> after) {
  Needs needs = spec.need();
  needs.after = std::move(after);
  spec.needs = MakeNeeds(std::move(needs));
  return spec;
}
Dependency Own(uint32_t index, bool any = false) {
  return {Dependency::kSameJob, index, false, any};
}

class DependenciesTest : public BrokerCoreTest {
 protected:
  // Runs every task the worker is sent, ending each with `status` unless `fail` names it, until
  // nothing more comes; returns the ids in the order they were sent.
  std::vector<TaskId> RunAll(std::vector<Outgoing> out, const std::string& worker,
                             const std::vector<TaskId>& fail = {}) {
    std::vector<TaskId> order;
    for (auto tasks = TasksTo(out, worker); !tasks.empty();) {
      WorkerResultsMessage results;
      for (const Assignment& a : tasks) {
        order.push_back(a.id);
        TaskOutcome o = Ok(a, "1");
        if (std::find(fail.begin(), fail.end(), a.id) != fail.end()) {
          o.status = TaskStatus::kFailed;
          o.error = "exit code 1";
        }
        results.outcomes.push_back(o);
      }
      tasks = TasksTo(Send(worker, std::move(results)), worker);
    }
    return order;
  }
  TaskStatus StatusOf(TaskId id) {
    const auto o = store_.Find(id);
    EXPECT_TRUE(o.has_value()) << FormatTaskId(id) << " has not ended";
    return o ? o->status : TaskStatus::kOk;
  }
  StatusReply Status() {
    for (auto& o : Send("client", StatusRequest{})) {
      if (auto* s = std::get_if<StatusReply>(&o.message)) return *s;
    }
    ADD_FAILURE() << "no status";
    return {};
  }
};

TEST_F(DependenciesTest, TasksRunAfterTheirDependenciesInOrder) {
  // Given a diamond a -> (b, c) -> d submitted in reverse order,
  const uint64_t job = SubmitJob({After(Sleep(1), {Own(1), Own(2)}), After(Sleep(1), {Own(3)}),
                                  After(Sleep(1), {Own(3)}), Sleep(1)});
  EXPECT_EQ(Status().tasks.waiting, 3u);
  // When a worker with room for all runs what it is sent,
  auto order = RunAll(Register("w1", {10, 10, 10}), "w1");
  // Then each task started only after those it runs after ended.
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0], (TaskId{job, 3}));
  EXPECT_EQ(order[3], (TaskId{job, 0}));
  for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(StatusOf({job, i}), TaskStatus::kOk);
  EXPECT_EQ(Status().tasks.waiting, 0u);
}

TEST_F(DependenciesTest, AFailureEndsEveryDependantDownTheGraphNamingIt) {
  // Given a chain 0 <- 1 <- 2 and a task 3 that runs after 1 whatever happens,
  const uint64_t job = SubmitJob({Sleep(1), After(Sleep(1), {Own(0)}), After(Sleep(1), {Own(1)}),
                                  After(Sleep(1), {Own(1, true)})});
  // When task 0 fails,
  auto order = RunAll(Register("w1", {10, 10, 10}), "w1", {{job, 0}});
  // Then 1 and 2 never run and end dependency_failed, naming the first failure; 3 runs.
  EXPECT_EQ(StatusOf({job, 1}), TaskStatus::kDependencyFailed);
  EXPECT_EQ(StatusOf({job, 2}), TaskStatus::kDependencyFailed);
  EXPECT_EQ(store_.Find({job, 1})->error, "dependency j1.0 ended failed");
  EXPECT_EQ(store_.Find({job, 2})->error,
            "dependency j1.1 ended dependency_failed; the first failure: j1.0 ended failed");
  EXPECT_EQ(StatusOf({job, 3}), TaskStatus::kOk);
  EXPECT_EQ(order, (std::vector<TaskId>{{job, 0}, {job, 3}}));
  EXPECT_EQ(Status().tasks.dependency_failed, 2u);
}

TEST_F(DependenciesTest, OtherJobsAndWholeJobsAreDependencies) {
  // Given a job of two tasks, and a job that runs after all of it and one after its task 1,
  const uint64_t first = SubmitJob({Sleep(1), Sleep(1)});
  const uint64_t whole = SubmitJob({After(Sleep(1), {{first, 0, true, false}})});
  const uint64_t one = SubmitJob({After(Sleep(1), {{first, 1, false, false}})});
  // When the first job runs, task 1 first,
  Register("w1", {1, 1, 1});
  auto out = Send("w1", WorkerResultsMessage{{Ok({{first, 0}, 1, Sleep(1), nullptr}, "1")}});
  // Then ... (task 0 was sent first: it ran; task 1 follows, then both dependants.)
  auto order = RunAll(out, "w1");
  EXPECT_EQ(StatusOf({whole, 0}), TaskStatus::kOk);
  EXPECT_EQ(StatusOf({one, 0}), TaskStatus::kOk);
  EXPECT_EQ(order.front(), (TaskId{first, 1}));
}

TEST_F(DependenciesTest, ADependencyThatEndedAlreadyCountsAtOnce) {
  const uint64_t first = SubmitJob({Sleep(1)});
  RunAll(Register("w1", {1, 1, 1}), "w1", {{first, 0}});
  // When tasks are submitted after a job that failed, one with after and one with after_any,
  const uint64_t job = SubmitJob(
      {After(Sleep(1), {{first, 0, true, false}}), After(Sleep(1), {{first, 0, true, true}})});
  // Then the first ends at once and the second runs.
  EXPECT_EQ(StatusOf({job, 0}), TaskStatus::kDependencyFailed);
  EXPECT_EQ(store_.Find({job, 0})->error, "dependency j1: j1.0 ended failed");
  auto out = Send("w1", WorkerResultsMessage{});
  EXPECT_EQ(Status().tasks.queued + Status().tasks.running, 1u);
}

TEST_F(DependenciesTest, CancellingADependencyEndsItsDependants) {
  const uint64_t job = SubmitJob({Sleep(1), After(Sleep(1), {Own(0)})});
  Send("client", CancelRequest{{IdRef{1, 0}}});
  EXPECT_EQ(StatusOf({job, 0}), TaskStatus::kCancelled);
  EXPECT_EQ(StatusOf({job, 1}), TaskStatus::kDependencyFailed);
  EXPECT_EQ(store_.Find({job, 1})->error, "dependency j1.0 ended cancelled");
}

TEST_F(DependenciesTest, CancellingAWaitingTaskEndsIt) {
  const uint64_t job = SubmitJob({Sleep(1), After(Sleep(1), {Own(0)})});
  Send("client", CancelRequest{{IdRef{1, 1}}});
  EXPECT_EQ(StatusOf({job, 1}), TaskStatus::kCancelled);
  RunAll(Register("w1", {1, 1, 1}), "w1");
  EXPECT_EQ(StatusOf({job, 0}), TaskStatus::kOk);
}

TEST_F(DependenciesTest, UnknownDependenciesAndCyclesAreRefusedWhole) {
  auto refused = [&](std::vector<TaskSpec> specs) {
    for (auto& o : Send("client", SubmitRequest{std::move(specs)})) {
      if (auto* e = std::get_if<ErrorReply>(&o.message)) return e->message;
    }
    return std::string("accepted");
  };
  EXPECT_EQ(
      refused({After(Sleep(1), {{9, 0, true, false}})}),
      "task 0: field 'after' names j9, which the broker does not have (unknown, or forgotten)");
  EXPECT_EQ(refused({After(Sleep(1), {Own(1)}), After(Sleep(1), {Own(0)})}),
            "the tasks' 'after' make a cycle: task 0 -> task 1 -> task 0");
  EXPECT_EQ(refused({After(Sleep(1), {Own(5)})}),
            "task 0: field 'after' names task 5 of its own job, which is not another task of it");
  EXPECT_EQ(Status().jobs, 0u);
}

TEST_F(DependenciesTest, DelayCountsFromSubmissionWhileWaiting) {
  // Given a task that runs 10 s after submission, after a task that ends at once,
  TaskSpec later = After(Sleep(1), {Own(0)});
  later.delay = 10;
  const uint64_t job = SubmitJob({Sleep(1), later});
  RunAll(Register("w1", {1, 1, 1}), "w1");
  // Then it waits out the rest of its delay, then runs.
  EXPECT_EQ(Status().tasks.delayed, 1u);
  Advance(std::chrono::seconds(11));  // (w1, silent meanwhile, is dropped)
  auto order = RunAll(Register("w2", {1, 1, 1}), "w2");
  EXPECT_EQ(order, (std::vector<TaskId>{{job, 1}}));
}

TEST_F(DependenciesTest, AChainOfTenThousandFailsWithoutRecursion) {
  std::vector<TaskSpec> chain{Sleep(1)};
  for (uint32_t i = 1; i < 10000; ++i) chain.push_back(After(Sleep(1), {Own(i - 1)}));
  const uint64_t job = SubmitJob(chain);
  RunAll(Register("w1", {1, 1, 1}), "w1", {{job, 0}});
  EXPECT_EQ(StatusOf({job, 9999}), TaskStatus::kDependencyFailed);
  EXPECT_EQ(Status().tasks.dependency_failed, 9999u);
}

TaskSpec Call() {
  TaskSpec spec;
  PythonTask call;
  call.fn = std::make_shared<const PythonTask::Function>(PythonTask::Function{"f", "f", ""});
  call.args = "a";
  spec.body = std::move(call);
  return spec;
}

TEST_F(DependenciesTest, ACallsInputsAreBoundedAndSplitAcrossMessages) {
  // Given three calls, each with one input of 40 MiB, and one after both of the last two (80 MiB),
  const uint64_t job =
      SubmitJob({Sleep(1), Sleep(1), Sleep(1), After(Call(), {Own(0)}), After(Call(), {Own(1)}),
                 After(Call(), {Own(2)}), After(Call(), {Own(1), Own(2)})});
  auto out = Register("w1", {10, 10, 10, 10});
  const std::string big(40u << 20, 'x');
  WorkerResultsMessage results;
  for (const Assignment& a : TasksTo(out, "w1")) results.outcomes.push_back(Ok(a, big));
  ASSERT_EQ(results.outcomes.size(), 3u);
  // When their results come,
  out = Send("w1", std::move(results));
  // Then no message to the worker carries more than kMaxCallInputBytes of inputs: the three
  // calls go one to a message, each with its input,
  size_t calls = 0;
  for (const Outgoing& o : out) {
    const auto* m = std::get_if<TasksMessage>(&o.message);
    if (!m) continue;
    size_t bytes = 0;
    for (const Assignment& a : m->tasks) {
      ASSERT_EQ(a.inputs.size(), 1u);
      EXPECT_EQ(a.inputs[0], big);
      bytes += a.inputs[0].size();
      ++calls;
    }
    EXPECT_LE(bytes, kMaxCallInputBytes);
  }
  EXPECT_EQ(calls, 3u);
  // and the call whose inputs are over it fails, saying why, without being sent.
  const auto failed = store_.Find({job, 6});
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->status, TaskStatus::kFailed);
  EXPECT_NE(failed->error.find("its inputs (the results of the calls it runs after) are 80 MiB"),
            std::string::npos)
      << failed->error;
}

}  // namespace
}  // namespace orq

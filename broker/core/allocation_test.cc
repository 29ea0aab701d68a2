// What the broker's core does for allocation queues (orq alloc): a worker that leaves at a known
// time is given no task whose time request ends later; the demand an allocation queue sees counts
// the tasks its workers could run (their queues, resources and time), not those waiting for a
// dependency or a full limit; workers are counted by allocation, and an allocation gone takes its
// workers' leases back at once.
#include <gtest/gtest.h>

#include "broker/core/core_fixture.h"

namespace orq {
namespace {

using std::chrono::seconds;

TaskSpec Timed(uint32_t time_request = 0, std::string queue = "",
               std::vector<ResourceNeed> resources = {}) {
  TaskSpec spec;
  spec.body = ShellTask{{"true"}};
  Needs needs;
  needs.time_request = time_request;
  needs.queue = std::move(queue);
  needs.resources = std::move(resources);
  if (needs != Needs{}) spec.needs = MakeNeeds(std::move(needs));
  return spec;
}

class AllocationTest : public BrokerCoreTest {
 protected:
  std::vector<Outgoing> Join(const std::string& worker, const std::string& allocation,
                             uint64_t lifetime_ms, int64_t pid, uint32_t shell_slots = 4) {
    ReadyMessage ready{pid, 1, {10, 10, shell_slots}, {}, "node"};
    ready.allocation = allocation;
    ready.lifetime_ms = lifetime_ms;
    return Send(worker, std::move(ready));
  }
  static AllocQueueSpec Shape(uint64_t time_limit_s = 3600) {
    AllocQueueSpec shape;
    shape.name = "q";
    shape.time_limit_s = time_limit_s;
    return shape;
  }
  uint64_t ShellDemand(const AllocQueueSpec& shape) {
    return core_.AllocDemand(shape, 100000, now_)[static_cast<size_t>(TaskClass::kShell)];
  }
};

TEST_F(AllocationTest, AWorkerNearItsEndGetsNoTaskLongerThanItsTimeLeft) {
  // Given a worker that leaves in 60 s,
  Join("w1", "q/7", 60000, 101);
  // when a task needing 10 minutes and one needing 30 s are submitted,
  auto tasks = TasksTo(Send("client", SubmitRequest{{Timed(600), Timed(30), Timed()}}), "w1");
  // then it gets the short one and the one that said nothing, not the long one,
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].id, (TaskId{1, 1}));
  EXPECT_EQ(tasks[1].id, (TaskId{1, 2}));
  EXPECT_EQ(Explain("j1.0"),
            (std::vector<std::string>{"no worker that serves it has 600 s left (its "
                                      "--time-request; a worker's time is its --lifetime)"}));
  // which waits for a worker with the time: a fresh one gets it.
  auto fresh = TasksTo(Join("w2", "q/8", 3600000, 102), "w2");
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].id, (TaskId{1, 0}));
}

TEST_F(AllocationTest, ATimeRequestOnlyMattersToWorkersThatEnd) {
  // Given a worker with no end, a task needing a day runs on it.
  Register("w1", {10, 10, 4});
  EXPECT_EQ(TasksTo(Send("client", SubmitRequest{{Timed(86400)}}), "w1").size(), 1u);
}

TEST_F(AllocationTest, DemandCountsTasksTheQueuesWorkersCouldRunAndNoOthers) {
  // Given no worker, and tasks: two plain, one for queue "gpu", one needing 2 hours, one waiting
  // for another, and one delayed,
  TaskSpec after = Timed();
  Needs needs;
  needs.after = {{1, 0, false, false}};
  after.needs = MakeNeeds(needs);
  TaskSpec delayed = Timed();
  delayed.delay = 60;
  SubmitJob({Timed()});
  SubmitJob({Timed(), Timed(0, "gpu"), Timed(7200), after, delayed});
  // then a queue serving every queue with an hour's limit could run three of them,
  EXPECT_EQ(ShellDemand(Shape()), 3u);
  AllocQueueSpec gpu = Shape(3 * 3600);
  gpu.queues = {"gpu"};
  // one serving only "gpu" with three hours, one;
  EXPECT_EQ(ShellDemand(gpu), 1u);
  AllocQueueSpec all = Shape(3 * 3600);
  EXPECT_EQ(ShellDemand(all), 4u);
  // and once a worker takes the two plain ones, they are no longer waiting.
  Register("w1", {10, 10, 2});
  EXPECT_EQ(ShellDemand(all), 2u);
}

TEST_F(AllocationTest, DemandCountsTasksParkedForAResourceNoWorkerHas) {
  // Given a worker without gpus, and two tasks that want one,
  Register("w1", {10, 10, 4});
  SubmitJob({Timed(0, "", {{"gpu", 1}}), Timed(0, "", {{"gpu", 1}})});
  // then a queue whose workers offer a gpu sees both; one whose workers offer none, neither.
  AllocQueueSpec gpu = Shape();
  gpu.resources = {{"gpu", 1}};
  EXPECT_EQ(ShellDemand(gpu), 2u);
  EXPECT_EQ(ShellDemand(Shape()), 0u);
}

TEST_F(AllocationTest, WorkersAreCountedByAllocationAndLostWithIt) {
  // Given two workers of allocation q/7 running tasks, and one of q/8,
  Join("w1", "q/7", 0, 101, 1);
  Join("w2", "q/7", 0, 102, 1);
  Join("w3", "q/8", 0, 103, 1);
  Register("plain", {10, 10, 0});
  SubmitJob({Timed(), Timed(), Timed(), Timed()});
  auto workers = core_.AllocationWorkers();
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers["q/7"].count, 2u);
  EXPECT_EQ(workers["q/7"].slots[static_cast<size_t>(TaskClass::kShell)], 1u);
  EXPECT_EQ(workers["q/8"].count, 1u);
  // when Slurm says q/7 is gone,
  core_.AllocationGone("q/7", "its allocation q/7 ended");
  std::vector<Outgoing> out;
  out = Concat(std::move(out), outbox_.Take());
  // then its workers are dropped and their tasks queued again (one goes to q/8's worker when it
  // is free), counted as lost.
  workers = core_.AllocationWorkers();
  EXPECT_EQ(workers.size(), 1u);
  EXPECT_EQ(core_.counters().workers_lost, 2u);
  auto status = Send("client", StatusRequest{});
  const auto& s = std::get<StatusReply>(status.front().message);
  EXPECT_EQ(s.tasks.running, 1u);
  EXPECT_EQ(s.tasks.queued, 3u);
  ASSERT_EQ(s.workers.size(), 2u);
}

}  // namespace
}  // namespace orq

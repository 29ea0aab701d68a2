// Resources, queues and idempotent submits in the broker's core: tasks go only to workers with
// their cpus and resource units free and serving their queue, learn which units they hold, and
// say so when no worker can run them.
#include <gtest/gtest.h>

#include "broker/core/core_fixture.h"
#include "common/ids.h"

namespace orq {
namespace {

TaskSpec Shell(std::vector<ResourceNeed> resources = {}, std::string queue = "",
               uint32_t cpus = 0) {
  TaskSpec spec;
  spec.body = ShellTask{{"true"}};
  Needs needs;
  needs.resources = std::move(resources);
  needs.queue = std::move(queue);
  needs.cpus = cpus;
  if (needs != Needs{}) spec.needs = MakeNeeds(std::move(needs));
  return spec;
}

class ResourcesTest : public BrokerCoreTest {
 protected:
  std::vector<Outgoing> Offer(const std::string& worker, uint32_t shell_slots,
                              std::vector<ResourceNeed> resources,
                              std::vector<std::string> queues = {}, int64_t pid = 100) {
    ReadyMessage ready{pid, 1, {10, 10, shell_slots}, {}, "host"};
    ready.resources = std::move(resources);
    ready.queues = std::move(queues);
    return Send(worker, std::move(ready));
  }
};

TEST_F(ResourcesTest, TasksGetFreeUnitsAndAreToldWhichOnes) {
  // Given a worker with two gpus and room for four shell tasks,
  Offer("w1", 4, {{"gpu", 2}});
  // When three tasks want a gpu each,
  auto tasks =
      TasksTo(Send("client",
                   SubmitRequest{{Shell({{"gpu", 1}}), Shell({{"gpu", 1}}), Shell({{"gpu", 1}})}}),
              "w1");
  // Then two run, on gpu 0 and gpu 1, and each knows its own;
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].env,
            (std::vector<std::string>{"ORQ_RESOURCE_GPU=0", "CUDA_VISIBLE_DEVICES=0"}));
  EXPECT_EQ(tasks[1].env,
            (std::vector<std::string>{"ORQ_RESOURCE_GPU=1", "CUDA_VISIBLE_DEVICES=1"}));
  EXPECT_EQ(Explain("j1.2"),
            (std::vector<std::string>{"waiting for a worker with cpus=1,gpu=1 free"}));
  // and the third gets the unit the first gives back.
  auto next = TasksTo(Send("w1", WorkerResultsMessage{{Ok(tasks[0], "")}}), "w1");
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].env.at(0), "ORQ_RESOURCE_GPU=0");
}

TEST_F(ResourcesTest, ARequestNoWorkerCanMeetWaitsAndSaysSoUntilOneComes) {
  Offer("w1", 4, {{"gpu", 1}}, {}, 101);
  const uint64_t job = SubmitJob({Shell({{"gpu", 2}}), Shell({}, "", 8), Shell()});
  EXPECT_EQ(Explain("j1.0"),
            (std::vector<std::string>{
                "no worker offers cpus=1,gpu=2 (orq worker --resources, --queues)"}));
  EXPECT_EQ(
      Explain("j1.1"),
      (std::vector<std::string>{"no worker offers cpus=8 (orq worker --resources, --queues)"}));
  // The task that fits ran meanwhile; a bigger worker takes the others.
  auto tasks = TasksTo(Offer("w2", 9, {{"gpu", 2}}, {}, 102), "w2");  // 9 cpus: 1 + 8
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].id, (TaskId{job, 0}));
  EXPECT_EQ(tasks[1].id, (TaskId{job, 1}));
}

TEST_F(ResourcesTest, CpusAreReservedAlongsideSlots) {
  // Given a worker with 4 cpus, a task taking all of them, then small ones,
  Offer("w1", 8, {{"cpus", 4}});
  auto tasks = TasksTo(Send("client", SubmitRequest{{Shell({}, "", 4), Shell(), Shell()}}), "w1");
  // Then the big one runs alone, and the small ones after it.
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].id, (TaskId{1, 0}));
  EXPECT_EQ(TasksTo(Send("w1", WorkerResultsMessage{{Ok(tasks[0], "")}}), "w1").size(), 2u);
}

TEST_F(ResourcesTest, NamedQueuesGoOnlyToWorkersThatServeThem) {
  Offer("fast", 4, {}, {"fast"}, 101);
  Offer("any", 4, {}, {}, 102);
  // A task of queue "slow": only the worker serving every queue takes it;
  auto out = Send("client", SubmitRequest{{Shell({}, "slow")}});
  EXPECT_TRUE(TasksTo(out, "fast").empty());
  EXPECT_EQ(TasksTo(out, "any").size(), 1u);
  // the default queue too; a task of "fast" goes to either.
  out = Send("client", SubmitRequest{{Shell(), Shell({}, "fast")}});
  EXPECT_EQ(TasksTo(out, "fast").size() + TasksTo(out, "any").size(), 2u);
  for (const auto& a : TasksTo(out, "fast")) EXPECT_EQ(a.spec.need().queue, "fast");
}

TEST_F(ResourcesTest, AKeySubmitsOnceWhileItsJobIsKept) {
  auto submit = [&](const std::string& key) {
    for (auto& o : Send("client", SubmitRequest{{Sleep(0)}, {}, key})) {
      if (auto* s = std::get_if<SubmittedReply>(&o.message)) return *s;
    }
    return SubmittedReply{};
  };
  const SubmittedReply first = submit("nightly-2026-11-29");
  const SubmittedReply again = submit("nightly-2026-11-29");
  EXPECT_EQ(again.job, first.job);
  EXPECT_FALSE(first.existing);
  EXPECT_TRUE(again.existing);
  EXPECT_NE(submit("other").job, first.job);
  // Once the job is forgotten, the key is free again.
  Send("client", CancelRequest{{IdRef{first.job}}});
  Send("client", ForgetRequest{{first.job}});
  EXPECT_FALSE(submit("nightly-2026-11-29").existing);
}

TEST_F(ResourcesTest, AWorkerBackWithFewerUnitsDropsTheTaskItCannotHold) {
  // Given a gpu task running on a worker that then goes silent and is dropped,
  Offer("w1", 4, {{"gpu", 1}});
  auto tasks = TasksTo(Send("client", SubmitRequest{{Shell({{"gpu", 1}})}}), "w1");
  ASSERT_EQ(tasks.size(), 1u);
  Advance(std::chrono::seconds(5));
  // When it comes back without its gpu, still running the task,
  ReadyMessage back{100, 1, {10, 10, 4}, {{tasks[0].id, tasks[0].attempt}}, "host"};
  auto out = Send("w1", back);
  // Then it is told to drop it (no unit to hold), and the task waits, saying why.
  bool dropped = false;
  for (const auto& o : out) {
    if (auto* c = std::get_if<CancelTasksMessage>(&o.message))
      dropped = c->ids == std::vector<TaskId>{tasks[0].id};
  }
  EXPECT_TRUE(dropped);
  EXPECT_EQ(Explain("j1.0"),
            (std::vector<std::string>{
                "no worker offers cpus=1,gpu=1 (orq worker --resources, --queues)"}));
}

}  // namespace
}  // namespace orq

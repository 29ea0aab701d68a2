// A job's specs kept encoded in windows (JobBuilder), read back a window at a time (SpecWindows),
// and the core dispatching, explaining and retrying a job of several windows.
#include "broker/core/spec_windows.h"

#include <gtest/gtest.h>

#include "broker/core/core_fixture.h"
#include "broker/core/job_builder.h"
#include "common/codec.h"

namespace orq {
namespace {

std::string Value(const TaskSpec& spec) { return std::get<EchoTask>(spec.body).value; }

// A MemoryStore that counts the windows read back.
class CountingStore final : public Store {
 public:
  void AddJob(uint64_t job, uint32_t size, std::vector<std::string> windows,
              const JobContext& context, const std::string& key) override {
    inner_.AddJob(job, size, std::move(windows), context, key);
  }
  std::optional<std::vector<TaskSpec>> Specs(uint64_t job, uint32_t window) override {
    ++reads;
    return inner_.Specs(job, window);
  }
  void Put(TaskOutcome outcome) override { inner_.Put(std::move(outcome)); }
  std::optional<TaskOutcome> Find(TaskId id) override { return inner_.Find(id); }
  void Forget(uint64_t job, uint32_t size) override { inner_.Forget(job, size); }
  int reads = 0;

 private:
  MemoryStore inner_;
};

TEST(JobBuilderTest, PartsAreCutIntoWindowsOfTheJobNotOfTheParts) {
  JobBuilder job;
  job.Add(Echoes(0, 700));
  job.Add(Echoes(700, 700));
  job.Add(Echoes(1400, 1100));
  ASSERT_EQ(job.size(), 2500u);
  EXPECT_TRUE(job.problem().ok());
  EXPECT_EQ(Value(*job.first()), "0");
  EXPECT_EQ(job.per_class()[static_cast<size_t>(TaskClass::kAsync)], 2500u);
  const std::vector<std::string> windows = job.TakeWindows();
  ASSERT_EQ(windows.size(), 3u);  // 1024 + 1024 + 452
  uint32_t next = 0;
  for (const std::string& window : windows) {
    auto specs = DecodeSpecs(window);
    ASSERT_TRUE(specs);
    EXPECT_EQ(specs->size(), std::min<uint32_t>(kSpecWindow, 2500 - next));
    for (const TaskSpec& spec : *specs) EXPECT_EQ(Value(spec), std::to_string(next++));
  }
  EXPECT_EQ(next, 2500u);
  const std::vector<TaskSpec> first = job.TakeFirstWindow();  // decoded, for the windows' cache
  ASSERT_EQ(first.size(), kSpecWindow);
  EXPECT_EQ(Value(first.back()), std::to_string(kSpecWindow - 1));
}

TEST(JobBuilderTest, OnlyTasksWithADelayOrNeedsAreListedApart) {
  std::vector<TaskSpec> specs = Echoes(0, 4);
  specs[1].delay = 5;
  specs[2].needs = MakeNeeds({.queue = "gpu"});
  specs[3].priority = 7;
  JobBuilder job(std::move(specs));
  ASSERT_EQ(job.specials().size(), 2u);
  EXPECT_EQ(job.specials()[0].index, 1u);
  EXPECT_EQ(job.specials()[0].delay, 5);
  EXPECT_EQ(job.specials()[1].index, 2u);
  EXPECT_EQ(job.specials()[1].needs->queue, "gpu");
  ASSERT_EQ(job.needs().size(), 1u);
  EXPECT_EQ(job.queueing()[3].priority, 7);
}

TEST(JobBuilderTest, ARefusedTaskIsNamedByItsPlaceInTheJobAndNothingIsKept) {
  JobBuilder job;
  job.Add(Echoes(0, 1500));
  std::vector<TaskSpec> more = Echoes(1500, 10);
  more[3].timeout = -1;
  job.Add(std::move(more));
  job.Add(Echoes(1510, 5));
  EXPECT_EQ(job.size(), 1515u);  // still counted
  ASSERT_FALSE(job.problem().ok());
  EXPECT_EQ(SentenceOf(job.problem()).rfind("task 1503: ", 0), 0u) << SentenceOf(job.problem());
  EXPECT_TRUE(job.TakeWindows().empty());
  EXPECT_TRUE(job.queueing().empty());
}

TEST(SpecWindowsTest, InOrderEachWindowIsReadOnceAndAHeldWindowIsNotReadTwice) {
  CountingStore store;
  store.AddJob(1, 20 * kSpecWindow, EncodeWindows(Echoes(0, 20 * kSpecWindow)), {}, "");
  SpecWindows windows(store);
  auto first = windows.Look({1, 0});
  for (uint32_t i = 0; i < 20 * kSpecWindow; ++i)
    ASSERT_EQ(Value(*windows.Look({1, i})), std::to_string(i));
  EXPECT_EQ(store.reads, 20);
  EXPECT_EQ(Value(*first), "0");  // its window left the decoded few meanwhile; the spec did not
  // A window still held is found again, not read (and decoded) twice.
  EXPECT_EQ(Value(*windows.Look({1, 5})), "5");
  EXPECT_EQ(store.reads, 20);
  // One that nobody holds any more is read again.
  first.reset();
  for (uint32_t w = 1; w <= 8; ++w) windows.Look({1, w * kSpecWindow});  // window 0 goes out
  EXPECT_EQ(store.reads, 28);
  EXPECT_EQ(Value(*windows.Look({1, 6})), "6");
  EXPECT_EQ(store.reads, 29);
  EXPECT_THROW(windows.Look({2, 0}), std::runtime_error);  // a task the store has not
}

TEST(SpecWindowsTest, AHeldSpecOutlivesItsWindowsAndAForgottenJobsWindowsGo) {
  CountingStore store;
  store.AddJob(1, 3, EncodeWindows(Echoes(0, 3)), {}, "");
  SpecWindows windows(store);
  const auto held = windows.Look({1, 2});  // as a running task's lease holds it
  EXPECT_EQ(store.reads, 1);
  windows.Forget(1);
  EXPECT_EQ(Value(*held), "2");
  windows.Look({1, 0});  // (were the job not forgotten): its window is read again
  EXPECT_EQ(store.reads, 2);
}

// A job of several windows, through the core: explained, dispatched in order, and retried.
TEST_F(BrokerCoreTest, AJobOfManyWindowsRunsInOrderAndIsExplainedAndRetriedFromTheStore) {
  constexpr uint32_t kTasks = 3 * kSpecWindow + 10;
  const uint64_t job = SubmitJob(Echoes(0, kTasks));
  EXPECT_EQ(Explain(FormatTaskId({job, kTasks - 1})),
            (std::vector<std::string>{"no worker is registered",
                                      "queued behind " + std::to_string(kTasks - 1) +
                                          " tasks that go first (higher priority, or "
                                          "submitted earlier)"}));
  // One worker with 100 slots: each result frees a slot for the next task, in order.
  std::vector<Assignment> sent = TasksTo(Register("w", {100, 1, 1}), "w");
  uint32_t next = 0;
  while (!sent.empty()) {
    std::vector<TaskOutcome> done;
    for (const Assignment& a : sent) {
      ASSERT_EQ(a.id, (TaskId{job, next}));
      ASSERT_EQ(Value(a.spec), std::to_string(next));
      done.push_back(Ok(a, Value(a.spec)));
      if (++next == kTasks) done.back().status = TaskStatus::kFailed;  // the last one fails
    }
    sent = TasksTo(Send("w", WorkerResultsMessage{std::move(done)}), "w");
  }
  EXPECT_EQ(next, kTasks);
  EXPECT_EQ(core_.running_and_held(), (std::pair<uint64_t, size_t>{0, 0}));
  // The job is compacted (every task ended): `orq retry` reads the failed one's spec back.
  std::vector<Assignment> again;
  for (auto& o : Send("client", RetryRequest{job})) {
    if (auto* s = std::get_if<SubmittedReply>(&o.message)) {
      EXPECT_EQ(s->count, 1u);
    }
    if (auto* t = std::get_if<TasksMessage>(&o.message)) again = t->tasks;
  }
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, (TaskId{job + 1, 0}));
  EXPECT_EQ(Value(again[0].spec), std::to_string(kTasks - 1));
}

}  // namespace
}  // namespace orq

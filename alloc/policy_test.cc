// The allocation policy against a fake batch system and a fake clock: what it submits for the
// tasks waiting (backlog, max workers, workers per allocation, the slots its workers turn out to
// have), what it notices (allocations started, ended, cancelled, unknown ones after a restart),
// and how it fails (a refused submit retried later, then the queue paused with the message).
#include "alloc/policy.h"

#include <gtest/gtest.h>

#include <map>

#include "alloc/backend.h"

namespace orq {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A batch system in memory: jobs by id, each queued until Start(), running until End().
class FakeBackend final : public AllocBackend {
 public:
  Expected<std::string> Submit(const AllocQueueInfo& queue) override {
    if (!refuse.empty()) return Error{ErrorCode::kBadRequest, refuse};
    const std::string id = std::to_string(next_++);
    jobs_[id] = {id, AllocState::kQueued, "PENDING"};
    queue_of_[id] = queue.spec.name;
    return id;
  }
  Expected<std::vector<BackendJob>> Jobs(const AllocQueueInfo& queue) override {
    std::vector<BackendJob> jobs;
    for (const auto& [id, job] : jobs_) {
      if (queue_of_[id] == queue.spec.name) jobs.push_back(job);
    }
    return jobs;
  }
  Expected<void> Cancel(const AllocQueueInfo&, const std::string& id) override {
    cancelled.push_back(id);
    jobs_.erase(id);
    return {};
  }
  void Start(const std::string& id) { jobs_.at(id).state = AllocState::kRunning; }
  void Gone(const std::string& id) { jobs_.erase(id); }
  void End(const std::string& id, const std::string& how) {
    jobs_.at(id) = {id, AllocState::kEnded, how};
  }
  size_t size() const { return jobs_.size(); }

  std::string refuse;  // set: every submit is refused with this
  std::vector<std::string> cancelled;

 private:
  std::map<std::string, BackendJob> jobs_;
  std::map<std::string, std::string> queue_of_;
  int next_ = 100;
};

class AllocPolicyTest : public ::testing::Test {
 protected:
  static AllocQueueSpec Spec(const std::string& name = "q") {
    AllocQueueSpec spec;
    spec.name = name;
    spec.time_limit_s = 600;
    spec.max_workers = 4;
    spec.backlog = 2;
    return spec;
  }
  // One step of the shell: plan with `waiting` shell tasks, then carry out what it asked.
  // Returns the ids of allocations that ended.
  std::vector<std::string> Step(uint64_t waiting, const std::string& queue = "q") {
    std::map<std::string, std::array<uint64_t, kTaskClassCount>> demand;
    demand[queue][static_cast<size_t>(TaskClass::kShell)] = waiting;
    std::vector<std::string> ended;
    for (const AllocAction& action : policy_.Plan(demand, workers_, now_, wall_)) {
      AllocQueueInfo info = *policy_.List(action.queue)->begin();
      switch (action.kind) {
        case AllocAction::Kind::kSubmit:
          ++submits_;
          policy_.Submitted(action.queue, backend_.Submit(info), now_, wall_);
          break;
        case AllocAction::Kind::kPoll: {
          auto jobs = backend_.Jobs(info);
          for (auto& e : policy_.Observed(action.queue, *jobs, now_, wall_)) ended.push_back(e);
          break;
        }
        case AllocAction::Kind::kCancel:
          EXPECT_TRUE(backend_.Cancel(info, action.id).ok());
          break;
      }
    }
    return ended;
  }
  void Advance(milliseconds by) {
    now_ += by;
    wall_ += std::chrono::duration<double>(by).count();
  }
  const AllocQueueInfo& Info(const std::string& name = "q") {
    info_ = policy_.List(name)->front();
    return info_;
  }
  size_t Count(AllocState state) {
    size_t n = 0;
    for (const AllocationInfo& a : Info().allocations) n += a.state == state;
    return n;
  }

  AllocPolicy policy_;
  FakeBackend backend_;
  std::map<std::string, AllocWorkerCount> workers_;  // registered, by "QUEUE/JOBID"
  SteadyTime now_{seconds(1000)};
  double wall_ = 1.7e9;
  int submits_ = 0;
  AllocQueueInfo info_;
};

TEST_F(AllocPolicyTest, SubmitsNothingWhileNoTaskItsWorkersCouldRunWaits) {
  // Given a queue, when no task waits, then no allocation is asked for.
  ASSERT_TRUE(policy_.Add(Spec(), "/q.access"));
  for (int i = 0; i < 10; ++i, Advance(milliseconds(500))) Step(0);
  EXPECT_EQ(submits_, 0);
}

TEST_F(AllocPolicyTest, SubmitsOneAtATimeUpToTheBacklog) {
  // Given a queue with a backlog of 2, when many tasks wait and Slurm starts nothing,
  ASSERT_TRUE(policy_.Add(Spec(), "/q.access"));
  for (int i = 0; i < 10; ++i, Advance(milliseconds(500))) Step(1000);
  // then two allocations wait in Slurm's queue, no more.
  EXPECT_EQ(submits_, 2);
  EXPECT_EQ(Count(AllocState::kQueued), 2u);
}

TEST_F(AllocPolicyTest, StopsAtMaxWorkersCountingThoseRegisteredAndComing) {
  // Given a queue of at most 3 workers, 2 per allocation, and a deep backlog,
  AllocQueueSpec spec = Spec();
  spec.max_workers = 3;
  spec.workers_per_alloc = 2;
  spec.backlog = 10;
  ASSERT_TRUE(policy_.Add(spec, "/q.access"));
  // when many tasks wait, then one allocation (2 workers) is asked for: a second would make 4.
  for (int i = 0; i < 10; ++i, Advance(milliseconds(500))) Step(1000);
  EXPECT_EQ(submits_, 1);
  // When it starts and its workers register, still no more.
  backend_.Start("100");
  workers_["q/100"] = {2, AllocPolicy::DefaultSlots()};
  for (int i = 0; i < 10; ++i, Advance(milliseconds(500))) Step(1000);
  EXPECT_EQ(submits_, 1);
  EXPECT_EQ(Info().allocations.front().state, AllocState::kRunning);
  EXPECT_EQ(Info().allocations.front().workers, 2u);
}

TEST_F(AllocPolicyTest, AsksOnlyForTheWorkersTheWaitingTasksNeed) {
  // Given a queue, when 3 shell tasks wait (a worker has one shell slot until one registers),
  AllocQueueSpec spec = Spec();
  spec.max_workers = 10;
  spec.backlog = 10;
  ASSERT_TRUE(policy_.Add(spec, "/q.access"));
  for (int i = 0; i < 10; ++i, Advance(milliseconds(500))) Step(3);
  // then three allocations of one worker are asked for;
  EXPECT_EQ(submits_, 3);
  // and when their workers register with 8 shell slots each, 20 tasks waiting need 3 workers.
  Slots eight{};
  eight[static_cast<size_t>(TaskClass::kShell)] = 8;
  for (const char* id : {"100", "101", "102"}) {
    backend_.Start(id);
    workers_[std::string("q/") + id] = {1, eight};
  }
  // (20 tasks waiting beyond what the three run need three more: asked for one at a time,
  // each counted as coming once asked for.)
  for (int i = 0; i < 10; ++i, Advance(milliseconds(500))) Step(20);
  EXPECT_EQ(submits_, 6);
}

TEST_F(AllocPolicyTest, ARefusedSubmitIsRetriedLaterAndPausesTheQueueAfterThreeInARow) {
  // Given Slurm refusing every submit (a bad partition),
  ASSERT_TRUE(policy_.Add(Spec(), "/q.access"));
  backend_.refuse = "sbatch: error: invalid partition specified: nope";
  // when tasks wait, the first submit fails, and the next is not tried before its backoff;
  Step(5);
  EXPECT_EQ(submits_, 1);
  Advance(milliseconds(500));
  Step(5);
  EXPECT_EQ(submits_, 1);
  EXPECT_EQ(Info().last_error, backend_.refuse);
  EXPECT_FALSE(Info().paused);
  // then after three in a row the queue pauses itself, saying why, and submits nothing more,
  for (int i = 0; i < 200; ++i, Advance(milliseconds(500))) Step(5);
  EXPECT_EQ(submits_, 3);
  EXPECT_TRUE(Info().paused);
  EXPECT_NE(Info().pause_reason.find("invalid partition specified: nope"), std::string::npos);
  EXPECT_EQ(Info().failures, 3u);
  // until it is resumed (once the cause is fixed): then it submits again.
  backend_.refuse.clear();
  ASSERT_TRUE(policy_.Resume("q"));
  Step(5);
  EXPECT_EQ(submits_, 4);
  EXPECT_EQ(Info().failures_in_row, 0u);
  EXPECT_EQ(Count(AllocState::kQueued), 1u);
}

TEST_F(AllocPolicyTest, NoticesAnAllocationStartedEndedOrCancelledAndSaysWhichEnded) {
  // Given two allocations, one running with its worker registered,
  ASSERT_TRUE(policy_.Add(Spec(), "/q.access"));
  for (int i = 0; i < 4; ++i, Advance(milliseconds(500))) Step(100);
  ASSERT_EQ(submits_, 2);
  backend_.Start("100");
  Advance(seconds(3));
  Step(0);
  EXPECT_EQ(Count(AllocState::kRunning), 1u);
  EXPECT_NE(Info().allocations[0].started, 0);
  workers_["q/100"] = {1, AllocPolicy::DefaultSlots()};
  // when one is cancelled (gone from squeue) and the other times out,
  backend_.Gone("100");
  backend_.End("101", "TIMEOUT");
  Advance(seconds(3));
  std::vector<std::string> ended = Step(0);
  // then both have ended, with how, and the shell is told which (to drop their workers).
  EXPECT_EQ(ended, (std::vector<std::string>{"q/100", "q/101"}));
  EXPECT_EQ(Count(AllocState::kEnded), 2u);
  EXPECT_EQ(Info().allocations[0].end, "gone from the batch system (its workers left)");
  EXPECT_EQ(Info().allocations[1].end, "TIMEOUT");
  // An ended allocation is told once.
  Advance(seconds(3));
  EXPECT_TRUE(Step(0).empty());
}

TEST_F(AllocPolicyTest, ARestartCountsItsAllocationsFromSlurmAndSubmitsNoDuplicate) {
  // Given a queue with one allocation journalled, and one Slurm has but the journal lost (the
  // broker crashed between sbatch and its commit),
  ASSERT_TRUE(policy_.Add(Spec(), "/q.access"));
  Step(100);
  ASSERT_EQ(submits_, 1);
  auto kept = policy_.TakeChanged();
  ASSERT_EQ(kept.size(), 1u);
  AllocQueueInfo info = kept.front();
  ASSERT_TRUE(backend_.Submit(info));  // 101: the one the journal does not know
  // when a new broker restores the queue and tasks wait,
  AllocPolicy restarted;
  restarted.Restore({info});
  policy_ = std::move(restarted);
  submits_ = 0;
  for (int i = 0; i < 6; ++i, Advance(milliseconds(500))) Step(100);
  // then it asked Slurm first, counts both (the backlog of 2 is full) and submits nothing.
  EXPECT_EQ(submits_, 0);
  EXPECT_EQ(Count(AllocState::kQueued), 2u);
  EXPECT_EQ(backend_.size(), 2u);
}

TEST_F(AllocPolicyTest, ARunningAllocationsWorkersCountBeforeTheyComeBackAfterARestart) {
  // Given a queue of one worker whose allocation runs, its worker registered,
  AllocQueueSpec spec = Spec();
  spec.max_workers = 1;
  ASSERT_TRUE(policy_.Add(spec, "/q.access"));
  Step(100);
  backend_.Start("100");
  workers_["q/100"] = {1, AllocPolicy::DefaultSlots()};
  Advance(seconds(3));
  Step(100);
  ASSERT_EQ(Info().allocations.at(0).workers_seen, 1u);
  // when the broker restarts and the worker has not reconnected yet, while tasks wait,
  AllocPolicy restarted;
  restarted.Restore({Info()});
  policy_ = std::move(restarted);
  workers_.clear();
  for (int i = 0; i < 6; ++i, Advance(milliseconds(500))) Step(100);
  // then its worker still counts: nothing more is asked for, until Slurm says it ended.
  EXPECT_EQ(submits_, 1);
  backend_.Gone("100");
  Advance(seconds(3));
  Step(100);
  Step(100);
  EXPECT_EQ(submits_, 2);
}

TEST_F(AllocPolicyTest, PauseStopsSubmittingAndRemoveCancelsUnlessKept) {
  // Given two queues with an allocation each,
  ASSERT_TRUE(policy_.Add(Spec("a"), "/a.access"));
  ASSERT_TRUE(policy_.Add(Spec("b"), "/b.access"));
  Step(10, "a");
  Step(10, "b");
  ASSERT_EQ(submits_, 2);
  // when one is paused, it asks for nothing more;
  ASSERT_TRUE(policy_.Pause("a"));
  for (int i = 0; i < 4; ++i, Advance(milliseconds(500))) Step(10, "a");
  EXPECT_EQ(submits_, 2);
  EXPECT_TRUE(Info("a").paused);
  EXPECT_TRUE(Info("a").pause_reason.empty());
  // when one is removed, its allocation is cancelled; with --keep the other's is not.
  auto cancels = policy_.Remove("a", false);
  ASSERT_TRUE(cancels);
  ASSERT_EQ(cancels->size(), 1u);
  EXPECT_EQ(cancels->front().id, "100");
  // (A submit answered after its queue was removed is nobody's: the caller cancels it.)
  EXPECT_FALSE(policy_.Submitted("a", std::string("999"), now_, wall_));
  auto kept = policy_.Remove("b", true);
  ASSERT_TRUE(kept);
  EXPECT_TRUE(kept->empty());
  EXPECT_EQ(policy_.TakeRemoved(), (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(policy_.List("a"));
  EXPECT_EQ(policy_.List("a").error().code, ErrorCode::kUnknownId);
}

TEST_F(AllocPolicyTest, RefusesASpecThatCannotWorkNamingTheFlag) {
  AllocQueueSpec spec = Spec();
  spec.time_limit_s = 30;
  auto refused = policy_.Add(spec, "");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().sentence.find("--time-limit"), std::string::npos);
  spec = Spec();
  spec.workers_per_alloc = 5;
  spec.max_workers = 4;
  refused = policy_.Add(spec, "");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().sentence.find("--max-workers"), std::string::npos);
  ASSERT_TRUE(policy_.Add(Spec(), ""));
  refused = policy_.Add(Spec(), "");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().sentence.find("exists already"), std::string::npos);
  // A name is one directory's in $ORQ_HOME/alloc: never "..", ".", nor a path.
  for (const char* name : {"..", ".", ".hidden", "a/b", "../x", ""}) {
    spec = Spec();
    spec.name = name;
    refused = policy_.Add(spec, "");
    ASSERT_FALSE(refused) << name;
    EXPECT_NE(refused.error().sentence.find("--name"), std::string::npos) << name;
  }
}

TEST_F(AllocPolicyTest, KeepsTheLatestHundredAllocations) {
  // Given a queue whose allocations come and go, each ending at once,
  AllocQueueSpec spec = Spec();
  spec.backlog = 1;
  ASSERT_TRUE(policy_.Add(spec, ""));
  for (int i = 0; i < 150; ++i) {
    Step(1);
    backend_.Gone(std::to_string(100 + i));
    Advance(seconds(3));
    Step(0);
  }
  // then it remembers the latest kAllocHistory, oldest first.
  EXPECT_EQ(submits_, 150);
  ASSERT_EQ(Info().allocations.size(), kAllocHistory);
  EXPECT_EQ(Info().allocations.back().id, "249");
}

}  // namespace
}  // namespace orq

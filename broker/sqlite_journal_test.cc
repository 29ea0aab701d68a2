#include "broker/sqlite_journal.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

#include "broker/core/broker_core.h"
#include "broker/core/core_fixture.h"
#include "tests/temp_dir.h"

namespace orq {
namespace {

using std::chrono::milliseconds;

TaskSpec Sleep(double seconds, double delay = 0) {
  TaskSpec s;
  s.body = SleepTask{seconds, ""};
  s.delay = delay;
  return s;
}

// A broker core over a journal file, which is its result store too (as in the broker); a second
// one over the same file is the broker restarted.
struct Broker {
  explicit Broker(const std::string& path)
      : journal(SqliteJournal::Open(path)),
        store(*journal),
        core(BrokerOptions{}, store, *journal, outbox) {}
  std::vector<Outgoing> Send(const std::string& from, Message m, SteadyTime now) {
    Deliver(core, Peer{from, Role::kLocal, {}}, std::move(m), now);
    EXPECT_TRUE(journal->Commit().ok());
    return outbox.Take();
  }
  std::unique_ptr<SqliteJournal> journal;
  Store& store;
  Outbox outbox;
  BrokerCore core;
};

// Job j1: one task, run to completion by worker "w".
void RunOneTask(Broker& b, SteadyTime now) {
  b.Send("w", ReadyMessage{1, 1, {3, 1, 1}, {}}, now);
  auto out = b.Send("c", SubmitRequest{{Sleep(1)}}, now);
  for (const auto& o : out) {
    if (auto* t = std::get_if<TasksMessage>(&o.message)) {
      TaskOutcome ok;
      ok.id = t->tasks.at(0).id;
      ok.attempt = 1;
      b.Send("w", WorkerResultsMessage{{ok}}, now);
    }
  }
}

class JournalTest : public ::testing::Test {
 protected:
  JournalTest() : temp_("orq-journal"), dir_(temp_.path()), path_(dir_ + "/journal.db") {}
  testing::TempDir temp_;
  std::string dir_, path_;
  SteadyTime now_{std::chrono::seconds(100)};
};

std::vector<Assignment> Tasks(const std::vector<Outgoing>& out) {
  std::vector<Assignment> tasks;
  for (const auto& o : out) {
    if (auto* t = std::get_if<TasksMessage>(&o.message))
      tasks.insert(tasks.end(), t->tasks.begin(), t->tasks.end());
  }
  return tasks;
}

TEST_F(JournalTest, RestartKeepsResultsAndReschedulesTheRest) {
  {
    // Given a broker with: one finished task, one running, one queued, one delayed 1 h, and
    // a running one whose cancel was asked,
    Broker b(path_);
    b.Send("w", ReadyMessage{1, 1, {3, 1, 1}, {}}, now_);
    auto out = b.Send("c", SubmitRequest{{Sleep(1), Sleep(2), Sleep(3), Sleep(4)}}, now_);
    auto tasks = Tasks(out);
    ASSERT_EQ(tasks.size(), 3u);
    b.Send("c", SubmitRequest{{Sleep(5, 3600)}}, now_);
    TaskOutcome ok;
    ok.id = tasks[0].id;
    ok.attempt = 1;
    ok.result = "\"kept\"";
    b.Send("w", WorkerResultsMessage{{ok}}, now_);  // frees a slot: j1.3 starts
    b.Send("c", CancelRequest{{IdRef{1, 2}}}, now_);
    // When the broker dies (no shutdown) and a new one opens the journal,
  }
  Broker b(path_);
  auto jobs = b.journal->Load();
  ASSERT_EQ(jobs.size(), 2u);
  b.core.Restore(std::move(jobs), now_, 1e9);
  EXPECT_TRUE(b.journal->Commit().ok());
  // Then the finished task keeps its result, the cancelled one is cancelled,
  ASSERT_TRUE(b.store.Find({1, 0}).has_value());
  EXPECT_EQ(b.store.Find({1, 0})->result, "\"kept\"");
  ASSERT_TRUE(b.store.Find({1, 2}).has_value());
  EXPECT_EQ(b.store.Find({1, 2})->status, TaskStatus::kCancelled);
  // the ones that were running run again as attempt 2, the delayed one stays delayed,
  auto tasks = Tasks(b.Send("w2", ReadyMessage{2, 1, {10, 1, 1}, {}}, now_));
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].id, (TaskId{1, 1}));
  EXPECT_EQ(tasks[0].attempt, 2u);
  EXPECT_EQ(tasks[1].id, (TaskId{1, 3}));
  EXPECT_EQ(tasks[1].attempt, 2u);
  // and new jobs get new numbers.
  auto out = b.Send("c", SubmitRequest{{Sleep(1)}}, now_);
  EXPECT_EQ(std::get<SubmittedReply>(out[0].message).job, 3u);
}

TEST_F(JournalTest, RestartAgainDoesNotDuplicateOutcomes) {
  {
    Broker b(path_);
    RunOneTask(b, now_);
  }
  for (int i = 0; i < 3; ++i) {
    Broker b(path_);
    auto jobs = b.journal->Load();
    ASSERT_EQ(jobs.size(), 1u);
    // (A job whose every task ended comes back as counts; its outcomes stay on disk.)
    ASSERT_TRUE(jobs[0].ended.has_value());
    EXPECT_EQ(jobs[0].ended->by_status[static_cast<size_t>(TaskStatus::kOk)], 1u);
    EXPECT_TRUE(jobs[0].tasks.empty());
    b.core.Restore(std::move(jobs), now_, 1e9);
    EXPECT_TRUE(b.journal->Commit().ok());
    EXPECT_FALSE(b.journal->dirty());
  }
}

TEST_F(JournalTest, ForgottenJobsStayForgotten) {
  {
    Broker b(path_);
    RunOneTask(b, now_);
    b.Send("c", ForgetRequest{{1}}, now_);
  }
  Broker b(path_);
  EXPECT_TRUE(b.journal->Load().empty());
}

TEST_F(JournalTest, ASpecsWindowIsFoundBeforeAndAfterTheCommitAndForgottenWithItsJob) {
  auto journal = SqliteJournal::Open(path_);
  std::vector<TaskSpec> specs;
  for (uint32_t i = 0; i < kSpecWindow + 3; ++i) specs.push_back(Sleep(i));
  journal->AddJob(7, kSpecWindow + 3, EncodeWindows(specs), {}, "");
  auto second = journal->Specs(7, 1);  // from memory
  ASSERT_TRUE(second);
  EXPECT_EQ(*second, std::vector<TaskSpec>(specs.begin() + kSpecWindow, specs.end()));
  ASSERT_TRUE(journal->Commit().ok());
  auto first = journal->Specs(7, 0);  // from its row
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, std::vector<TaskSpec>(specs.begin(), specs.begin() + kSpecWindow));
  EXPECT_EQ(journal->Specs(7, 2), std::nullopt);
  EXPECT_EQ(journal->Specs(8, 0), std::nullopt);
  journal->Forget(7, kSpecWindow + 3);
  ASSERT_TRUE(journal->Commit().ok());
  EXPECT_EQ(journal->Specs(7, 0), std::nullopt);
}

TEST_F(JournalTest, AJobOfManyWindowsComesBackWholeAfterARestart) {
  constexpr uint32_t kTasks = 2 * kSpecWindow + 5;
  {
    std::vector<TaskSpec> specs;
    for (uint32_t i = 0; i < kTasks; ++i) specs.push_back(Sleep(i));
    Broker b(path_);
    b.Send("c", SubmitRequest{std::move(specs)}, now_);
  }
  Broker b(path_);
  auto jobs = b.journal->Load();
  ASSERT_EQ(jobs.size(), 1u);
  ASSERT_EQ(jobs[0].tasks.size(), kTasks);
  for (uint32_t i = 0; i < kTasks; ++i)
    ASSERT_EQ(jobs[0].tasks[i].spec.body, TaskBody(SleepTask{double(i), ""}));
  b.core.Restore(std::move(jobs), now_, WallNow());
  // Dispatched in order, each with its spec as submitted (read back from the journal).
  const auto sent = Tasks(b.Send("w", ReadyMessage{1, 1, {kTasks, 1, 1}, {}}, now_));
  ASSERT_EQ(sent.size(), kTasks);
  for (uint32_t i = 0; i < kTasks; ++i) {
    ASSERT_EQ(sent[i].id, (TaskId{1, i}));
    ASSERT_EQ(sent[i].spec.body, TaskBody(SleepTask{double(i), ""}));
  }
}

TEST_F(JournalTest, AllocationQueuesAndTimeRequestsSurviveARestart) {
  // Given a journal that kept two allocation queues (one then removed) and a task with a time
  // request,
  AllocQueueInfo queue;
  queue.spec.name = "gpu";
  queue.spec.time_limit_s = 3600;
  queue.spec.backend_args = {"-p", "long"};
  queue.access_file = "/h/alloc/gpu/worker.access";
  queue.allocations = {{"41", AllocState::kRunning, 2, 2, 1.5, 2.5, 0, ""}};
  {
    auto journal = SqliteJournal::Open(path_);
    journal->RecordAllocQueue("gpu", queue);
    AllocQueueInfo other = queue;
    other.spec.name = "cpu";
    journal->RecordAllocQueue("cpu", other);
    ASSERT_TRUE(journal->Commit().ok());
    journal->RecordAllocQueue("cpu", std::nullopt);
    ASSERT_TRUE(journal->Commit().ok());
  }
  {
    Broker b(path_);
    TaskSpec spec = Sleep(1);
    Needs needs;
    needs.time_request = 600;
    spec.needs = MakeNeeds(needs);
    b.Send("c", SubmitRequest{{spec}}, now_);
  }
  // when it is opened again, then the one queue left comes back as it was, and the task's need.
  Broker b(path_);
  EXPECT_EQ(b.journal->LoadAllocQueues(), std::vector<AllocQueueInfo>{queue});
  auto jobs = b.journal->Load();
  ASSERT_EQ(jobs.size(), 1u);
  ASSERT_TRUE(jobs[0].tasks.at(0).spec.needs);
  EXPECT_EQ(jobs[0].tasks[0].spec.needs->time_request, 600);
}

TEST_F(JournalTest, UnopenableJournalIsASentence) {
  try {
    SqliteJournal::Open(dir_ + "/no/such/dir/journal.db");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open the journal"), std::string::npos);
  }
}

TEST_F(JournalTest, AJobsContextSurvivesARestart) {
  const JobContext context{"/home/me/data", {{"HOME=/home/me", "LANG=C"}}};
  {
    Broker b(path_);
    TaskSpec shell;
    shell.body = ShellTask::In({"pwd"}, "sub", {"A=1"});
    b.Send("c", SubmitRequest{{shell}, context}, now_);
  }
  auto jobs = SqliteJournal::Open(path_)->Load();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].context, context);
  EXPECT_EQ(jobs[0].tasks.at(0).spec.body, TaskBody(ShellTask::In({"pwd"}, "sub", {"A=1"})));
  // The restarted broker hands the task out with its job's context.
  Broker b(path_);
  b.core.Restore(b.journal->Load(), now_, 0);  // (the journal admits one broker at a time)
  auto out = b.Send("w", ReadyMessage{1, 1, {3, 1, 1}, {}}, now_);
  bool sent = false;
  for (const auto& o : out) {
    if (auto* t = std::get_if<TasksMessage>(&o.message)) {
      ASSERT_EQ(t->tasks.size(), 1u);
      ASSERT_TRUE(t->tasks[0].context);
      EXPECT_EQ(*t->tasks[0].context, context);
      sent = true;
    }
  }
  EXPECT_TRUE(sent);
}

TEST_F(JournalTest, OneBrokerAtATimeHoldsAJournal) {
  // Given a journal in use, a second broker opening it is refused, and its outcomes are read back
  // by the first (the journal is the broker's result store).
  Broker a(path_);
  EXPECT_THROW(SqliteJournal::Open(path_), std::runtime_error);
  TaskOutcome outcome;
  outcome.id = {1, 0};
  outcome.result = "\"kept\"";
  a.journal->Put(outcome);
  EXPECT_EQ(a.journal->Find({1, 0})->result, "\"kept\"");  // before the commit
  EXPECT_TRUE(a.journal->Commit().ok());
  EXPECT_EQ(a.journal->Find({1, 0})->result, "\"kept\"");  // and after it, from SQLite
  std::vector<std::optional<TaskOutcome>> range;
  EXPECT_EQ(a.journal->FindRange(1, 0, 2, range, SIZE_MAX), 2u);
  ASSERT_EQ(range.size(), 2u);
  EXPECT_TRUE(range[0].has_value());
  EXPECT_FALSE(range[1].has_value());
}

TEST_F(JournalTest, ARangeReadStopsAtItsByteBudget) {
  // Given five outcomes of 400 KiB each, three committed and two recorded this turn,
  Broker a(path_);
  for (uint32_t i = 0; i < 5; ++i) {
    TaskOutcome outcome;
    outcome.id = {1, i};
    outcome.result = std::string(400 << 10, static_cast<char>('a' + i));
    a.journal->Put(outcome);
    if (i == 2) {
      EXPECT_TRUE(a.journal->Commit().ok());
    }
  }
  // when a range of them is read with a budget of 1 MiB, from the first and from the second,
  // then each read stops after the outcome that passes the budget (the third of them), in order,
  // committed or not.
  for (uint32_t first : {0u, 1u}) {
    std::vector<std::optional<TaskOutcome>> range;
    EXPECT_EQ(a.journal->FindRange(1, first, 5 - first, range, 1u << 20), 3u) << first;
    ASSERT_EQ(range.size(), 3u);
    for (uint32_t i = 0; i < 3; ++i) {
      ASSERT_TRUE(range[i].has_value()) << first << " " << i;
      EXPECT_EQ(range[i]->result[0], static_cast<char>('a' + first + i));
    }
  }
  // A budget never returns nothing.
  std::vector<std::optional<TaskOutcome>> one;
  EXPECT_EQ(a.journal->FindRange(1, 4, 1, one, 0), 1u);
  EXPECT_TRUE(one.at(0).has_value());
}

TEST_F(JournalTest, AJournalOfAnotherFormatIsRefusedNotMisread) {
  // Given a journal written by an orq before formats were numbered (user_version 0),
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE jobs(job INTEGER PRIMARY KEY, submitted REAL NOT NULL,"
                         " specs BLOB NOT NULL)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  // When it is opened, Then it is refused with a sentence naming the file and both formats.
  try {
    SqliteJournal::Open(path_);
    ADD_FAILURE() << "opened";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "the journal " + path_ + " is in format 1 and this orq reads format " +
                  std::to_string(kJournalFormat) +
                  ": gather its jobs with the orq that wrote it, or move it away");
  }
  // A journal of this format opens again.
  std::filesystem::remove(path_);
  SqliteJournal::Open(path_);
  EXPECT_NO_THROW(SqliteJournal::Open(path_));
}

TEST_F(JournalTest, ADependencyGraphAndItsProgressSurviveARestart) {
  auto after = [](TaskSpec spec, std::vector<Dependency> deps) {
    spec.needs = MakeNeeds(Needs{"", std::move(deps)});
    return spec;
  };
  {
    // Given j1 = a chain 0 <- 1 <- 2, and j2 after all of j1, with j1.0 done,
    Broker b(path_);
    b.Send("w", ReadyMessage{1, 1, {1, 1, 1}, {}}, now_);
    auto tasks = Tasks(b.Send("c",
                              SubmitRequest{{Sleep(1), after(Sleep(1), {{0, 0, false, false}}),
                                             after(Sleep(1), {{0, 1, false, false}})}},
                              now_));
    b.Send("c", SubmitRequest{{after(Sleep(1), {{1, 0, true, false}})}}, now_);
    ASSERT_EQ(tasks.size(), 1u);
    TaskOutcome ok;
    ok.id = tasks[0].id;
    ok.attempt = 1;
    b.Send("w", WorkerResultsMessage{{ok}}, now_);  // j1.1 starts
    // When the broker dies and a new one opens the journal,
  }
  Broker b(path_);
  b.core.Restore(b.journal->Load(), now_, 1e9);
  EXPECT_TRUE(b.journal->Commit().ok());
  // Then j1.1 runs again, and the rest follows in order, each after its dependency.
  std::vector<TaskId> order;
  auto out = b.Send("w2", ReadyMessage{2, 1, {1, 1, 1}, {}}, now_);
  for (auto tasks = Tasks(out); !tasks.empty();) {
    ASSERT_EQ(tasks.size(), 1u);
    order.push_back(tasks[0].id);
    TaskOutcome ok;
    ok.id = tasks[0].id;
    ok.attempt = tasks[0].attempt;
    tasks = Tasks(b.Send("w2", WorkerResultsMessage{{ok}}, now_));
  }
  EXPECT_EQ(order, (std::vector<TaskId>{{1, 1}, {1, 2}, {2, 0}}));
}

TEST_F(JournalTest, KeysAndLimitsSurviveARestart) {
  {
    Broker b(path_);
    b.Send("c", LimitRequest{LimitRequest::Op::kSet, {"dl", 3, 0.5, 2}}, now_);
    b.Send("c", LimitRequest{LimitRequest::Op::kSet, {"gone", 1}}, now_);
    b.Send("c", LimitRequest{LimitRequest::Op::kRemove, {"gone"}}, now_);
    b.Send("c", SubmitRequest{{Sleep(1)}, {}, "once"}, now_);
  }
  Broker b(path_);
  EXPECT_EQ(b.journal->LoadLimits(), (std::vector<LimitSpec>{{"dl", 3, 0.5, 2}}));
  b.core.Restore(b.journal->Load(), now_, 1e9);
  auto out = b.Send("c", SubmitRequest{{Sleep(1)}, {}, "once"}, now_);
  ASSERT_EQ(out.size(), 1u);
  const auto& reply = std::get<SubmittedReply>(out[0].message);
  EXPECT_EQ(reply.job, 1u);
  EXPECT_TRUE(reply.existing);
}

}  // namespace
}  // namespace orq

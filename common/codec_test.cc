#include "common/codec.h"

#include <gtest/gtest.h>

namespace orq {
namespace {

TaskSpec ShellSpec() {
  TaskSpec s;
  s.body = ShellTask::In({"sh", "-c", "echo hi"}, "sub", {"A=1", "B="});
  s.delay = 1.5;
  s.timeout = 3;
  s.priority = -7;
  return s;
}

TaskOutcome ShellOutcome() {
  TaskOutcome o;
  o.id = {42, 7};
  o.status = TaskStatus::kFailed;
  o.attempt = 2;
  o.worker_pid = 1234;
  o.started = 1.25;
  o.finished = 2.5;
  o.error = "exit code 3";
  o.shell = ShellOutput{3, std::string("out\0put", 7), "err", true,
                        std::make_shared<ShellOutput::More>(ShellOutput::More{
                            "/h/output/j42.7.2.out", "", "node7", {"sh", "-c", "exit 3"}})};
  return o;
}

bool SameOutcome(const TaskOutcome& a, const TaskOutcome& b) {
  auto same_more = [](const ShellOutput& x, const ShellOutput& y) {
    if (!x.more || !y.more) return !x.more && !y.more;
    return x.more->stdout_file == y.more->stdout_file &&
           x.more->stderr_file == y.more->stderr_file && x.more->host == y.more->host &&
           x.more->argv == y.more->argv;
  };
  return a.id == b.id && a.status == b.status && a.attempt == b.attempt &&
         a.worker_pid == b.worker_pid && a.started == b.started && a.finished == b.finished &&
         a.result == b.result && a.error == b.error && a.shell.has_value() == b.shell.has_value() &&
         (!a.shell || (a.shell->exit_code == b.shell->exit_code &&
                       a.shell->stdout_text == b.shell->stdout_text &&
                       a.shell->stderr_text == b.shell->stderr_text &&
                       a.shell->truncated == b.shell->truncated && same_more(*a.shell, *b.shell)));
}

std::vector<Message> OneOfEach() {
  TaskSpec sleep;
  sleep.body = SleepTask{2, "\"hello\""};
  TaskSpec cpu;
  cpu.body = CpuTask{10};
  TaskSpec echo;
  echo.body = EchoTask{"{\"a\":[1,2]}"};
  echo.needs = MakeNeeds(Needs{"load",
                               {{0, 2, false, false}, {7, 0, true, true}},
                               4,
                               3600,
                               {{"gpu", 2}, {"license", 1}},
                               "fast",
                               {"api", "download"},
                               {{"db", LockMode::kWrite}, {"logs", LockMode::kRead}}});
  TaskOutcome ok;
  ok.id = {1, 0};
  ok.result = "\"hello\"";
  return {
      SubmitRequest{{sleep, cpu, echo, ShellSpec()},
                    {"/home/me", {{"HOME=/home/me", "X=y"}}},
                    "k",
                    7,
                    {/*now=*/true, /*on_failure=*/false, /*percent=*/true, 12.5}},
      GatherRequest{{IdRef{1}, IdRef{2, 3}}, true},
      StatusRequest{},
      CancelRequest{{IdRef{5}}, false},
      ShutdownRequest{},
      PingRequest{},
      SubmittedReply{9, 1000},
      ResultsReply{{ok, ShellOutcome()}, false, {3, 1}},
      [] {
        StatusReply s;
        s.broker_pid = 42;
        s.endpoints = {"ipc:///h/broker.ipc", "tcp://0.0.0.0:5555"};
        s.workers = {{7, "node7", true, 4, 3, {16384, 8, 4}}, {8, "head", false, 1, 0, {1, 2, 3}}};
        s.tasks.queued = 1, s.tasks.worker_lost = 9;
        s.jobs = 3;
        s.counters.malformed = 5, s.counters.handshake_failed = 11;
        s.limits = {{"download", {"download", 2, 0.5, 3}, std::nullopt, {{1, 0}, {1, 1}}, 2, 7}};
        s.locks = {{"db", {}, LockMode::kWrite, {{2, 0}}, 1, 2}};
        s.workers[0].last_heard = 0.25, s.workers[0].done = 12, s.workers[0].failed = 1;
        return s;
      }(),
      StatusRequest{.metrics = true},
      [] {
        StatusReply s;
        s.metrics.emplace();
        s.metrics->submitted[3] = 10;
        s.metrics->finished[3 * kTaskStatusCount + 1] = 2;
        s.metrics->dispatch.Observe(0.003);
        s.metrics->end_to_end.Observe(700);
        s.metrics->commit.Observe(0.0001);
        s.metrics->journal_bytes = 1 << 20, s.metrics->events = 99, s.metrics->jobs_submitted = 3;
        return s;
      }(),
      EventsRequest{7, 1000, 10},
      EventsReply{{Event{.seq = 8,
                         .at = 12.5,
                         .kind = Event::Kind::kTaskEnded,
                         .task = {3, 1},
                         .count = 2,
                         .worker = 77,
                         .status = TaskStatus::kTimeout,
                         .task_kind = 3},
                   Event{.seq = 9, .kind = Event::Kind::kWorkerJoined, .worker = 78, .host = "n"}},
                  2,
                  9,
                  13.0},
      TasksRequest{3, TaskFilter::kFailed, 1000, 50},
      TasksReply{{TaskRow{.index = 4,
                          .state = TaskState::kFinished,
                          .status = TaskStatus::kFailed,
                          .attempt = 2,
                          .worker = 77,
                          .started = 1.5,
                          .finished = 2.5,
                          .label = "gzip a",
                          .after = {{3, 1}, {2, std::nullopt}},
                          .error = "exit code 1"}},
                 1000000,
                 65536},
      CancelledReply{3},
      ErrorReply{ErrorCode::kUnknownId, "unknown job j9"},
      ErrorReply{ErrorCode::kForbidden, "this key was revoked"},
      PongReply{77},
      ShutdownAck{},
      ReadyMessage{99, 4, {16384, 4, 4}, {{{3, 1}, 2}}, "node7"},
      ReadyMessage{99, 4, {16384, 4, 4}, {}, "node7", {{"gpu", 2}}, {"a"}, "gpu/41", 3600000},
      AllocRequest{
          AllocRequest::Op::kAdd,
          "gpu",
          {"gpu", "slurm", 3600, 2, 8, 3, 120, {"-t", "4"}, {"a"}, {{"gpu", 2}}, {"-p", "x"}},
          "/h/alloc/gpu/worker.access",
          false},
      AllocRequest{AllocRequest::Op::kRemove, "gpu", {}, "", true},
      AllocReply{{AllocQueueInfo{{"gpu"},
                                 true,
                                 "paused after 3 failed submissions in a row: x",
                                 "sbatch: error: x",
                                 3,
                                 7,
                                 3,
                                 "/h/alloc/gpu/worker.access",
                                 {{"41", AllocState::kEnded, 0, 2, 1.5, 2.5, 3.5, "TIMEOUT"},
                                  {"42", AllocState::kRunning, 2, 2, 4.5, 5.5, 0, ""}}}}},
      WorkerResultsMessage{{ShellOutcome(), ok}},
      HeartbeatMessage{},
      TasksMessage{{{{3, 1}, 2, ShellSpec(), std::make_shared<JobContext>(JobContext{"/d", {}})},
                    {{3, 2}, 1, sleep, nullptr}}},
      CancelTasksMessage{{{3, 1}, {4, 0}}},
      BrokerHeartbeatMessage{},
      StopMessage{},
      ForgetRequest{{1, 2}},
      ForgottenReply{2},
      GoodbyeMessage{},
      ReregisterMessage{},
      ReloadAccessRequest{},
      ReloadedReply{3, 1},
      JobsRequest{{1, 4}},
      JobsReply{{{4, 12.5, 100, 3, 10, 2, 8, 70, 7, 2, -1, "gzip a.txt"},
                 {5, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0.5, "sleep"}}},
      RetryRequest{4, true},
      ScaleRequest{3},
      ScaledReply{2, 3},
      LogsRequest{TaskId{1, 2}, true, true},
      LogsRequest{TaskId{1, 2}, false, false, true, 1u << 20},
      LogChunk{"out\n", false, "attempt 2 started", "/h/output/j1.2.1.out", "node7"},
      OutputMessage{{3, 1}, 2, 10, "more", 0, "err"},
      LimitRequest{LimitRequest::Op::kSet, {"api", 0, 10, 5}},
      LimitsReply{{{"api", {"api", 0, 10, 5}, std::nullopt, {}, 0, 3}}},
      ExplainRequest{TaskId{3, 1}},
      ResultsAck{},
      SubmitPartRequest{{sleep, echo}},
      DropOutputMessage{{{{3, 1}, 2}}},
      ReadOutputMessage{7, {{3, 1}, 2}, true, 1u << 20},
      OutputPieceMessage{7, true, false, "the rest"},
      ExplainedReply{TaskState::kWaiting,
                     std::nullopt,
                     {Reason{.kind = Reason::Kind::kDependency,
                             .id = {3, 0},
                             .state = TaskState::kRunning,
                             .any = true},
                      Reason{.kind = Reason::Kind::kLimitFull,
                             .name = "api",
                             .holders = {{2, 0}, {2, 1}},
                             .count = 2,
                             .max = 2}}},
      ExplainedReply{TaskState::kFinished, TaskStatus::kTimeout, {}, -1},
      WatchMessage{{{3, 1}, {4, 2}}}};
}

Expected<Message> RoundTrip(const Message& m) {
  EncodedMessage e = Encode(m);
  const char command = static_cast<char>(e.command);
  return Decode(kProtocolVersion, std::string_view(&command, 1), e.body);
}

// Every alternative of Message, default-constructed: generated, so a new message is covered the
// day it is added.
template <size_t... I> std::vector<Message> EveryAlternative(std::index_sequence<I...>) {
  return {Message(std::in_place_index<I>)...};
}

TEST(CodecTest, EveryAlternativeRoundTripsUnderItsOwnCommand) {
  for (const Message& m :
       EveryAlternative(std::make_index_sequence<std::variant_size_v<Message>>{})) {
    EncodedMessage e = Encode(m);
    EXPECT_EQ(e.command, CommandOf(m));
    auto decoded = RoundTrip(m);
    ASSERT_TRUE(decoded) << "index " << m.index();
    EXPECT_EQ(decoded->index(), m.index());
    EXPECT_EQ(Encode(*decoded).body, e.body) << "index " << m.index();
  }
}

TEST(CodecTest, OneOfEachCoversEveryMessage) {
  std::vector<bool> seen(std::variant_size_v<Message>);
  for (const Message& m : OneOfEach()) seen[m.index()] = true;
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_TRUE(seen[i]) << "no sample of alternative " << i;
}

TEST(CodecTest, EveryMessageRoundTrips) {
  for (const Message& m : OneOfEach()) {
    // Given any message, When it is encoded and decoded, Then the same message comes back.
    auto decoded = RoundTrip(m);
    ASSERT_TRUE(decoded) << "index " << m.index();
    const Message& back = *decoded;
    ASSERT_EQ(back.index(), m.index());
    // Re-encoding the decoded message gives the same bytes: every field survived.
    EXPECT_EQ(Encode(back).body, Encode(m).body) << "index " << m.index();
  }
}

TEST(CodecTest, OutcomeFieldsSurvive) {
  auto decoded = RoundTrip(WorkerResultsMessage{{ShellOutcome()}});
  const auto& results = std::get<WorkerResultsMessage>(*decoded);
  ASSERT_EQ(results.outcomes.size(), 1u);
  EXPECT_TRUE(SameOutcome(results.outcomes[0], ShellOutcome()));
}

TEST(CodecTest, SpecFieldsSurvive) {
  auto decoded = RoundTrip(SubmitRequest{{ShellSpec()}});
  const auto& submit = std::get<SubmitRequest>(*decoded);
  ASSERT_EQ(submit.tasks.size(), 1u);
  EXPECT_EQ(submit.tasks[0], ShellSpec());
}

TEST(CodecTest, AContextsNamedVariablesSurviveAndOldJournalsStillRead) {
  const JobContext named{"/w", {{"A=1", "SECRET=x"}}, {{"A"}}};
  EXPECT_EQ(DecodeContext(EncodeContext(named)), named);
  // A context as journals before named variables held it: no named list, every variable travels.
  const JobContext old{"/w", {{"A=1"}}, std::nullopt};
  const std::string bytes = EncodeContext(old);
  EXPECT_EQ(DecodeContext(bytes), old);
  std::string bad = EncodeContext(JobContext{"", std::nullopt, std::nullopt});
  bad.back() = 9;  // flags no journal ever wrote
  EXPECT_FALSE(DecodeContext(bad).has_value());
}

TEST(CodecTest, JobContextsSurvive) {
  const JobContext context{"/home/me", {{"HOME=/home/me", "EMPTY="}}};
  auto decoded = RoundTrip(SubmitRequest{{ShellSpec()}, context});
  EXPECT_EQ(std::get<SubmitRequest>(*decoded).context, context);
  // No environment (the worker's own) differs from an empty one (--clean-env).
  const JobContext clean{"", std::vector<std::string>{}};
  decoded = RoundTrip(SubmitRequest{{ShellSpec()}, clean});
  EXPECT_EQ(std::get<SubmitRequest>(*decoded).context, clean);
  decoded = RoundTrip(SubmitRequest{{ShellSpec()}, {}});
  EXPECT_FALSE(std::get<SubmitRequest>(*decoded).context.env.has_value());
  decoded = RoundTrip(TasksMessage{{{{3, 1}, 2, ShellSpec(), std::make_shared<JobContext>(context)},
                                    {{3, 2}, 1, ShellSpec(), nullptr}}});
  const auto& tasks = std::get<TasksMessage>(*decoded).tasks;
  ASSERT_EQ(tasks.size(), 2u);
  ASSERT_TRUE(tasks[0].context);
  EXPECT_EQ(*tasks[0].context, context);
  EXPECT_FALSE(tasks[1].context);
}

TEST(CodecTest, WrongVersionIsAnError) {
  EncodedMessage e = Encode(PingRequest{});
  const char command = static_cast<char>(e.command);
  auto decoded = Decode("ORQ0", std::string_view(&command, 1), e.body);
  EXPECT_FALSE(decoded);
}

TEST(CodecTest, UnknownCommandIsAnError) {
  auto decoded = Decode(kProtocolVersion, "\x7f", "");
  ASSERT_FALSE(decoded);
  EXPECT_NE(decoded.error().sentence.find("unknown command"), std::string::npos);
  EXPECT_FALSE((Decode(kProtocolVersion, "", "")));
  EXPECT_FALSE((Decode(kProtocolVersion, "ab", "")));
}

TEST(CodecTest, EveryTruncationIsAnError) {
  for (const Message& m : OneOfEach()) {
    EncodedMessage e = Encode(m);
    const char command = static_cast<char>(e.command);
    // Given a body cut short at any length, When it is decoded, Then it is an error (or, for an
    // empty body, the message that has no fields).
    for (size_t n = 0; n < e.body.size(); ++n) {
      auto decoded = Decode(kProtocolVersion, std::string_view(&command, 1), e.body.substr(0, n));
      EXPECT_FALSE(decoded) << "index " << m.index() << " n " << n;
    }
  }
}

TEST(CodecTest, TrailingBytesAreAnError) {
  EncodedMessage e = Encode(CancelledReply{3});
  const char command = static_cast<char>(e.command);
  auto decoded = Decode(kProtocolVersion, std::string_view(&command, 1), e.body + "x");
  EXPECT_FALSE(decoded);
}

TEST(CodecTest, HugeCountDoesNotAllocate) {
  // A count of 2^62 items in a 10-byte body: refused before any allocation.
  std::string body = "\xff\xff\xff\xff\xff\xff\xff\xff\x3f";
  const char command = static_cast<char>(Command::kSubmit);
  auto decoded = Decode(kProtocolVersion, std::string_view(&command, 1), body);
  EXPECT_FALSE(decoded);
}

TEST(CodecTest, BadEnumValuesAreErrors) {
  EncodedMessage e = Encode(WorkerResultsMessage{{ShellOutcome()}});
  // The status byte follows the count and the id varints (1, 42, 7): set it to 9.
  ASSERT_EQ(e.body[3], static_cast<char>(TaskStatus::kFailed));
  e.body[3] = 9;
  const char command = static_cast<char>(e.command);
  auto decoded = Decode(kProtocolVersion, std::string_view(&command, 1), e.body);
  EXPECT_FALSE(decoded);
}

}  // namespace
}  // namespace orq

#include "broker/core/telemetry.h"

#include <gtest/gtest.h>

#include "broker/core/core_fixture.h"

namespace orq {
namespace {

const EventsReply* EventsTo(const std::vector<Outgoing>& out, const std::string& peer) {
  for (const auto& o : out) {
    if (o.to == peer) {
      if (auto* e = std::get_if<EventsReply>(&o.message)) return e;
    }
  }
  return nullptr;
}

std::vector<Event::Kind> Kinds(const EventsReply& reply) {
  std::vector<Event::Kind> kinds;
  for (const Event& e : reply.events) kinds.push_back(e.kind);
  return kinds;
}

TEST(TelemetryTest, EventsAreNumberedInOrderAndKeptUpToTheBound) {
  // Given more events than are kept
  Outbox outbox;
  Telemetry t(outbox);
  const SteadyTime now{std::chrono::seconds(5)};
  for (size_t i = 0; i < kEventsKept + 10; ++i) t.WorkerJoined(int64_t(i), "h", now);
  // When a reader asks from the start
  std::vector<Outgoing> out;
  t.Read("r", EventsRequest{0, 0, 3}, now);
  out = Concat(std::move(out), outbox.Take());
  // Then it gets the oldest kept, told that the first ten are gone
  const EventsReply* reply = EventsTo(out, "r");
  ASSERT_NE(reply, nullptr);
  EXPECT_EQ(reply->first, 11u);
  EXPECT_EQ(reply->last, kEventsKept + 10);
  ASSERT_EQ(reply->events.size(), 3u);
  EXPECT_EQ(reply->events[0].seq, 11u);
  EXPECT_EQ(reply->events[0].worker, 10);
  EXPECT_EQ(reply->events[2].seq, 13u);
  EXPECT_DOUBLE_EQ(reply->now, 5.0);
}

TEST(TelemetryTest, AWaitingReaderIsAnsweredByTheNextEventOrItsDeadline) {
  Outbox outbox;
  Telemetry t(outbox);
  SteadyTime now{std::chrono::seconds(5)};
  std::vector<Outgoing> out;
  // Given a reader that has everything and waits
  t.Read("r", EventsRequest{0, 1000}, now);
  out = Concat(std::move(out), outbox.Take());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(t.NextDeadline(), now + milliseconds(1000));
  // When an event comes, Then the next Wake answers it with that event
  t.JobSubmitted(3, 10, {0, 10, 0, 0}, now);
  t.Wake(now);
  out = Concat(std::move(out), outbox.Take());
  ASSERT_NE(EventsTo(out, "r"), nullptr);
  EXPECT_EQ(Kinds(*EventsTo(out, "r")), std::vector{Event::Kind::kJobSubmitted});
  EXPECT_EQ(t.metrics().submitted[1], 10u);
  // Given it waits again, When nothing comes, Then its deadline answers it, empty
  out.clear();
  t.Read("r", EventsRequest{1, 1000}, now);
  out = Concat(std::move(out), outbox.Take());
  t.Wake(now + milliseconds(999));
  out = Concat(std::move(out), outbox.Take());
  EXPECT_TRUE(out.empty());
  t.Wake(now + milliseconds(1000));
  out = Concat(std::move(out), outbox.Take());
  ASSERT_NE(EventsTo(out, "r"), nullptr);
  EXPECT_TRUE(EventsTo(out, "r")->events.empty());
  EXPECT_EQ(t.NextDeadline(), SteadyTime::max());
}

TEST(TelemetryTest, AReaderAheadOfTheLastEventIsAnsweredAtOnce) {
  // Given a reader that knew a broker before its restart (number 500)
  Outbox outbox;
  Telemetry t(outbox);
  std::vector<Outgoing> out;
  t.WorkerJoined(1, "h", SteadyTime{});
  // When it asks to wait for more, Then it is answered at once: `last` tells it to start over
  t.Read("r", EventsRequest{500, 1000}, SteadyTime{});
  out = Concat(std::move(out), outbox.Take());
  ASSERT_NE(EventsTo(out, "r"), nullptr);
  EXPECT_EQ(EventsTo(out, "r")->last, 1u);
}

TEST(TelemetryTest, AGoneReaderIsForgotten) {
  Outbox outbox;
  Telemetry t(outbox);
  std::vector<Outgoing> out;
  t.Read("r", EventsRequest{0, 1000}, SteadyTime{});
  out = Concat(std::move(out), outbox.Take());
  t.ReaderGone("r");
  t.WorkerJoined(1, "h", SteadyTime{});
  t.Wake(SteadyTime{});
  out = Concat(std::move(out), outbox.Take());
  EXPECT_TRUE(out.empty());
}

TEST(TelemetryTest, HistogramsCountEachObservationInItsBucket) {
  Histogram h;
  h.Observe(0.001);  // on a bound: in that bucket (le is "less or equal")
  h.Observe(0.2);
  h.Observe(1e6);  // past the last bound
  EXPECT_EQ(h.counts[0], 1u);
  EXPECT_EQ(h.counts[7], 1u);  // le 0.25
  EXPECT_EQ(h.counts.back(), 1u);
  EXPECT_EQ(h.count(), 3u);
  EXPECT_DOUBLE_EQ(h.sum, 0.001 + 0.2 + 1e6);
}

TEST_F(BrokerCoreTest, TheCoreReportsTheLifeOfATaskAsEventsAndMetrics) {
  // Given a worker and a job of two echo tasks
  Register("w", {2, 0, 0}, 55);
  const uint64_t job = SubmitJob(Echoes(0, 2));
  now_ += milliseconds(30);
  // When one ends ok and the other fails
  auto out = Send("w", WorkerResultsMessage{{[&] {
                                               TaskOutcome o;
                                               o.id = {job, 0};
                                               return o;
                                             }(),
                                             [&] {
                                               TaskOutcome o;
                                               o.id = {job, 1};
                                               o.status = TaskStatus::kFailed;
                                               return o;
                                             }()}});
  // Then the events say so, in order
  out = Send("reader", EventsRequest{0, 0});
  const EventsReply* reply = EventsTo(out, "reader");
  ASSERT_NE(reply, nullptr);
  using K = Event::Kind;
  EXPECT_EQ(Kinds(*reply), (std::vector{K::kWorkerJoined, K::kJobSubmitted, K::kTaskStarted,
                                        K::kTaskStarted, K::kTaskEnded, K::kTaskEnded}));
  EXPECT_EQ(reply->events[2].worker, 55);
  EXPECT_EQ(reply->events[5].status, TaskStatus::kFailed);
  EXPECT_EQ(reply->events[5].task_kind, 1u);  // echo
  // And the metrics count them by kind and outcome, and their latencies
  out = Send("client", StatusRequest{.metrics = true});
  const auto& status = std::get<StatusReply>(out.at(0).message);
  ASSERT_TRUE(status.metrics);
  EXPECT_EQ(status.metrics->submitted[1], 2u);
  EXPECT_EQ(status.metrics->finished[1 * kTaskStatusCount + 0], 1u);
  EXPECT_EQ(status.metrics->finished[1 * kTaskStatusCount + 1], 1u);
  EXPECT_EQ(status.metrics->dispatch.count(), 2u);
  EXPECT_EQ(status.metrics->end_to_end.count(), 2u);
  EXPECT_NEAR(status.metrics->end_to_end.sum, 0.06, 1e-9);
  // And the worker's books
  ASSERT_EQ(status.workers.size(), 1u);
  EXPECT_EQ(status.workers[0].done, 1u);
  EXPECT_EQ(status.workers[0].failed, 1u);
}

TEST_F(BrokerCoreTest, ATaskQueuedLaterCountsItsDispatchLatencyFromThen) {
  // Given a delayed task, due in 5 s, and no worker until 2 s after that
  const uint64_t job = SubmitJob({Sleep(1, 0, 5)});
  Advance(milliseconds(5000));  // (it is queued when the broker's timer finds it due)
  Advance(milliseconds(2000));
  // When a worker comes
  Register("w", {1, 0, 0});
  // Then the task waited 2 s in the queue, not 7
  auto out = Send("client", StatusRequest{.metrics = true});
  const Histogram& dispatch = std::get<StatusReply>(out.at(0).message).metrics->dispatch;
  EXPECT_EQ(dispatch.count(), 1u);
  EXPECT_NEAR(dispatch.sum, 2.0, 0.01);
  (void)job;
}

TEST_F(BrokerCoreTest, AJobsTasksAreListedByStatePagedAndFiltered) {
  // Given a job of five tasks: two ran (one ok, one failed), three are queued
  Register("w", {2, 0, 0}, 55);
  const uint64_t job = SubmitJob(Echoes(0, 5));
  TaskOutcome failed;
  failed.id = {job, 1};
  failed.status = TaskStatus::kFailed;
  failed.error = "exit code 1";
  TaskOutcome ok;
  ok.id = {job, 0};
  Send("w", WorkerResultsMessage{{ok, failed}});
  // (two more were leased to the freed slots)
  auto list = [&](TaskFilter filter, uint32_t from, uint32_t limit) {
    auto out = Send("client", TasksRequest{job, filter, from, limit});
    return std::get<TasksReply>(out.at(0).message);
  };
  // When the failed ones are asked for, Then only j1.1, with its error and worker
  TasksReply failures = list(TaskFilter::kFailed, 0, 10);
  ASSERT_EQ(failures.tasks.size(), 1u);
  EXPECT_EQ(failures.tasks[0].index, 1u);
  EXPECT_EQ(failures.tasks[0].error, "exit code 1");
  EXPECT_EQ(failures.tasks[0].worker, 55);
  EXPECT_EQ(failures.tasks[0].label, "echo");
  EXPECT_EQ(failures.size, 5u);
  EXPECT_EQ(failures.next, 5u);
  // When all are asked for two at a time, Then the pages follow each other
  TasksReply page = list(TaskFilter::kAll, 0, 2);
  ASSERT_EQ(page.tasks.size(), 2u);
  EXPECT_EQ(page.next, 2u);
  page = list(TaskFilter::kAll, page.next, 2);
  ASSERT_EQ(page.tasks.size(), 2u);
  EXPECT_EQ(page.tasks[0].index, 2u);
  EXPECT_EQ(page.tasks[0].state, TaskState::kRunning);
  EXPECT_EQ(list(TaskFilter::kQueued, 0, 10).tasks.size(), 1u);
  // And an unknown job is an error naming it
  auto out = Send("client", TasksRequest{99});
  EXPECT_EQ(std::get<ErrorReply>(out.at(0).message).message, "unknown job j99");
}

TEST_F(BrokerCoreTest, AnEndedJobsTasksAreListedFromTheStore) {
  // Given a job whose every task ended, one of three failed (its tasks compacted away)
  Register("w", {3, 0, 0}, 55);
  const uint64_t job = SubmitJob(Echoes(0, 3));
  std::vector<TaskOutcome> outcomes(3);
  for (uint32_t i = 0; i < 3; ++i) outcomes[i].id = {job, i};
  outcomes[2].status = TaskStatus::kTimeout;
  Send("w", WorkerResultsMessage{outcomes});
  // When its failures are asked for, Then the store's outcomes answer
  auto out = Send("client", TasksRequest{job, TaskFilter::kFailed, 0, 10});
  const auto& reply = std::get<TasksReply>(out.at(0).message);
  ASSERT_EQ(reply.tasks.size(), 1u);
  EXPECT_EQ(reply.tasks[0].index, 2u);
  EXPECT_EQ(reply.tasks[0].status, TaskStatus::kTimeout);
  // And a filter nothing can match ends at once
  out = Send("client", TasksRequest{job, TaskFilter::kCancelled, 0, 10});
  EXPECT_TRUE(std::get<TasksReply>(out.at(0).message).tasks.empty());
  EXPECT_EQ(std::get<TasksReply>(out.at(0).message).next, 3u);
}

}  // namespace
}  // namespace orq

// What the broker tells those who watch it (the dashboard, /metrics, `orq events`): counters and
// latency histograms since it started, and a bounded log of events (jobs submitted, tasks started
// and ended, workers joined and gone) that readers page through by number, waiting for more with a
// deadline. The core reports each happening in one call; nothing here decides anything. Pure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "broker/core/outbox.h"
#include "common/clock.h"
#include "common/protocol.h"

namespace orq {

class Telemetry {
 public:
  explicit Telemetry(Outbox& out) : out_(out) {}

  // A job of `size` tasks, `per_kind` of each kind (TaskBody's index).
  void JobSubmitted(uint64_t job, uint32_t size, const std::vector<uint32_t>& per_kind,
                    SteadyTime now);
  // A task leased to worker `worker` (its pid) after `queued_for` in a ready queue.
  void TaskStarted(TaskId id, uint32_t attempt, int64_t worker, size_t kind,
                   SteadyTime::duration queued_for, SteadyTime now);
  // A task ended with `status`, `since_submission` after its job came.
  void TaskEnded(TaskId id, TaskStatus status, uint32_t attempt, int64_t worker, size_t kind,
                 SteadyTime::duration since_submission, SteadyTime now);
  void WorkerJoined(int64_t pid, const std::string& host, SteadyTime now);
  void WorkerLeft(int64_t pid, const std::string& host, bool lost, SteadyTime now);

  // A reader's request from `from`: answered at once when there is something newer
  // than it has, or it does not wait; else kept until there is, or its wait is over (Wake). One
  // request kept per reader (a newer one replaces it), kMaxReaders in all.
  void Read(const std::string& from, const EventsRequest& request, SteadyTime now);
  // Answers the readers kept that have something new, or whose wait is over.
  void Wake(SteadyTime now);
  // When the first kept reader's wait is over; max() when none is kept.
  SteadyTime NextDeadline() const;
  void ReaderGone(const std::string& peer);

  Metrics& metrics() { return metrics_; }
  const Metrics& metrics() const { return metrics_; }

  static constexpr size_t kMaxReaders = 256;

 private:
  void Add(Event event, SteadyTime now);
  EventsReply ReplyAfter(uint64_t after, uint32_t max, SteadyTime now) const;

  Outbox& out_;
  Metrics metrics_;
  // The last kEventsKept events: event n at (n - 1) % kEventsKept (a ring once full).
  std::vector<Event> events_;
  struct Reader {
    std::string peer;
    uint64_t after = 0;
    uint32_t max = 0;
    SteadyTime deadline;
  };
  std::vector<Reader> readers_;  // waiting for an event newer than `after`
};

}  // namespace orq

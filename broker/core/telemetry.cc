#include "broker/core/telemetry.h"

#include <algorithm>
#include <chrono>
#include <limits>

namespace orq {
namespace {

double Seconds(SteadyTime::duration d) { return std::chrono::duration<double>(d).count(); }
double At(SteadyTime now) { return Seconds(now.time_since_epoch()); }

}  // namespace

void Telemetry::JobSubmitted(uint64_t job, uint32_t size, const std::vector<uint32_t>& per_kind,
                             SteadyTime now) {
  for (size_t k = 0; k < per_kind.size() && k < metrics_.submitted.size(); ++k)
    metrics_.submitted[k] += per_kind[k];
  ++metrics_.jobs_submitted;
  Add({.kind = Event::Kind::kJobSubmitted, .task = {job, 0}, .count = size}, now);
}

void Telemetry::TaskStarted(TaskId id, uint32_t attempt, int64_t worker, size_t kind,
                            SteadyTime::duration queued_for, SteadyTime now) {
  metrics_.dispatch.Observe(Seconds(queued_for));
  Add({.kind = Event::Kind::kTaskStarted,
       .task = id,
       .count = attempt,
       .worker = worker,
       .task_kind = static_cast<uint8_t>(kind < kTaskKindCount ? kind : 0)},
      now);
}

void Telemetry::TaskEnded(TaskId id, TaskStatus status, uint32_t attempt, int64_t worker,
                          size_t kind, SteadyTime::duration since_submission, SteadyTime now) {
  if (kind < kTaskKindCount) ++metrics_.finished[kind * kTaskStatusCount + size_t(status)];
  metrics_.end_to_end.Observe(Seconds(since_submission));
  Add({.kind = Event::Kind::kTaskEnded,
       .task = id,
       .count = attempt,
       .worker = worker,
       .status = status,
       .task_kind = static_cast<uint8_t>(kind < kTaskKindCount ? kind : 0)},
      now);
}

void Telemetry::WorkerJoined(int64_t pid, const std::string& host, SteadyTime now) {
  Add({.kind = Event::Kind::kWorkerJoined, .worker = pid, .host = host}, now);
}

void Telemetry::WorkerLeft(int64_t pid, const std::string& host, bool lost, SteadyTime now) {
  Add({.kind = Event::Kind::kWorkerLeft,
       .worker = pid,
       .status = lost ? TaskStatus::kWorkerLost : TaskStatus::kOk,
       .host = host},
      now);
}

void Telemetry::Add(Event event, SteadyTime now) {
  event.seq = ++metrics_.events;
  event.at = At(now);
  // A ring: once full, each event takes the place of the oldest (nothing allocated per event).
  if (events_.size() < kEventsKept)
    events_.push_back(std::move(event));
  else
    events_[(event.seq - 1) % kEventsKept] = std::move(event);
}

EventsReply Telemetry::ReplyAfter(uint64_t after, uint32_t max, SteadyTime now) const {
  EventsReply reply;
  reply.last = metrics_.events;
  reply.first = reply.last - events_.size() + 1;
  reply.now = At(now);
  // Event number n is at (n - 1) % kEventsKept.
  const uint64_t from = std::max(after + 1, reply.first);
  max = std::clamp<uint32_t>(max, 1, kMaxEventsPerReply);
  for (uint64_t seq = from; seq <= reply.last && reply.events.size() < max; ++seq)
    reply.events.push_back(events_[(seq - 1) % kEventsKept]);
  return reply;
}

void Telemetry::Read(const std::string& from, const EventsRequest& request, SteadyTime now) {
  std::erase_if(readers_, [&](const Reader& r) { return r.peer == from; });
  // (A reader ahead of the last event knew a broker before a restart: told at once, by `last`.)
  if (request.after != metrics_.events || request.wait_ms == 0 || readers_.size() >= kMaxReaders)
    return out_.Send({from, ReplyAfter(request.after, request.max, now)});
  const auto wait = std::chrono::milliseconds(std::min(request.wait_ms, kMaxEventsWaitMs));
  readers_.push_back({from, request.after, request.max, now + wait});
}

void Telemetry::Wake(SteadyTime now) {
  std::erase_if(readers_, [&](const Reader& r) {
    if (r.after == metrics_.events && now < r.deadline) return false;
    out_.Send({r.peer, ReplyAfter(r.after, r.max, now)});
    return true;
  });
}

SteadyTime Telemetry::NextDeadline() const {
  SteadyTime next = SteadyTime::max();
  for (const Reader& r : readers_) next = std::min(next, r.deadline);
  return next;
}

void Telemetry::ReaderGone(const std::string& peer) {
  std::erase_if(readers_, [&](const Reader& r) { return r.peer == peer; });
}

}  // namespace orq

#include "broker/core/delivery.h"

#include <algorithm>
#include <optional>
#include <utility>

namespace orq {

void Delivery::Gather(Request request, const std::vector<bool>& finished) {
  Waiter waiter;
  std::vector<TaskId> done;  // for a stream: what it gets at once
  for (size_t i = 0; i < request.ids.size(); ++i) {
    if (!finished[i])
      ++waiter.remaining;
    else if (request.stream)
      done.push_back(request.ids[i]);
  }
  const std::string client = request.client;
  if (request.stream) {
    // The first chunk, always sent: the sizes of what was named, and what is done already.
    ResultsReply first;
    first.sizes = std::move(request.sizes);
    first.outcomes = Outcomes(done, 0, std::min(done.size(), kMaxResultsPerReply));
    const size_t head = first.outcomes.size();
    first.final = waiter.remaining == 0 && head == done.size();
    out_.Send({client, std::move(first)});
    if (waiter.remaining == 0 && head == done.size()) return;
    waiter.due = std::move(done);
    waiter.sent = head;
    waiter.inflight = 1;
  } else if (waiter.remaining == 0) {
    waiter.due = std::move(request.ids);
  }
  waiter.complete = waiter.remaining == 0;
  // Listed with its jobs until its last chunk is out, so that they are not forgotten meanwhile.
  const uint64_t waiter_id = next_waiter_++;
  auto add = [&](uint64_t job) {
    auto& list = by_job_[job];
    if (list.empty() || list.back() != waiter_id) list.push_back(waiter_id);
  };
  for (const auto& [job, n] : request.whole_jobs) add(job);
  for (const auto& [task, n] : request.single_tasks) add(task.job);
  waiter.request = std::move(request);
  waiters_.emplace(waiter_id, std::move(waiter));
  Pump(waiter_id);
}

void Delivery::Ended(TaskId id) {
  // The gathers listed with its job, in order. One that completes may be forgotten (and unlisted)
  // on the way: then position i holds the next, and the list may be gone.
  for (size_t i = 0;;) {
    auto listed = by_job_.find(id.job);
    if (listed == by_job_.end() || i >= listed->second.size()) return;
    const uint64_t waiter_id = listed->second[i];
    Waiter& waiter = waiters_.at(waiter_id);
    if (waiter.complete) {  // all in: sending the rest of its results (Pump)
      ++i;
      continue;
    }
    // The waiter counted this task once per mention, as part of its job or by itself.
    uint32_t mentions = 0;
    if (auto j = waiter.request.whole_jobs.find(id.job); j != waiter.request.whole_jobs.end())
      mentions += j->second;
    if (auto t = waiter.request.single_tasks.find(id); t != waiter.request.single_tasks.end())
      mentions += t->second;
    waiter.remaining -= mentions;
    if (waiter.request.stream && mentions > 0) {
      if (waiter.due.size() == waiter.sent) streams_due_.push_back(waiter_id);
      waiter.due.insert(waiter.due.end(), mentions, id);
    }
    if (waiter.remaining > 0) {
      ++i;
      continue;
    }
    waiter.complete = true;
    if (!waiter.request.stream) waiter.due = std::move(waiter.request.ids);  // not needed now
    Pump(waiter_id);
    if (waiters_.count(waiter_id)) ++i;
  }
}

void Delivery::Flush() {
  for (uint64_t waiter_id : streams_due_) Pump(waiter_id);
  streams_due_.clear();
}

void Delivery::Pump(uint64_t waiter_id) {
  auto it = waiters_.find(waiter_id);
  if (it == waiters_.end()) return;
  Waiter& w = it->second;
  while (w.inflight < kResultsWindow) {
    const size_t left = w.due.size() - w.sent;
    if (left == 0 && !w.complete) break;  // a stream: nothing new has finished
    ResultsReply chunk;
    chunk.outcomes = Outcomes(w.due, w.sent, std::min(left, kMaxResultsPerReply));
    w.sent += chunk.outcomes.size();
    chunk.final = w.complete && w.sent == w.due.size();
    ++w.inflight;
    out_.Send({w.request.client, std::move(chunk)});
    if (w.sent == w.due.size()) {
      w.due.clear();
      w.sent = 0;
      if (w.complete) return Forget(waiter_id);
    }
  }
}

void Delivery::Acknowledged(const std::string& client) {
  // The oldest of its gathers with a chunk in flight (a client reads its replies in order).
  uint64_t oldest = 0;
  for (auto& [waiter_id, w] : waiters_) {
    if (w.request.client == client && w.inflight > 0 && (oldest == 0 || waiter_id < oldest))
      oldest = waiter_id;
  }
  if (oldest == 0) return;  // a gather forgotten meanwhile, or a peer's noise
  --waiters_.at(oldest).inflight;
  Pump(oldest);
}

void Delivery::ClientGone(const std::string& client) {
  std::vector<uint64_t> gone;
  for (const auto& [id, waiter] : waiters_) {
    if (waiter.request.client == client) gone.push_back(id);
  }
  for (uint64_t id : gone) Forget(id);
}

void Delivery::Forget(uint64_t waiter_id) {
  auto it = waiters_.find(waiter_id);
  if (it == waiters_.end()) return;
  auto unlist = [&](uint64_t job) {
    auto j = by_job_.find(job);
    if (j == by_job_.end()) return;
    std::erase(j->second, waiter_id);
    if (j->second.empty()) by_job_.erase(j);
  };
  for (const auto& [job, n] : it->second.request.whole_jobs) unlist(job);
  for (const auto& [task, n] : it->second.request.single_tasks) unlist(task.job);
  waiters_.erase(it);
}

std::vector<TaskOutcome> Delivery::Outcomes(const std::vector<TaskId>& ids, size_t first,
                                            size_t n) const {
  std::vector<TaskOutcome> outcomes;
  std::vector<std::optional<TaskOutcome>> found;
  size_t bytes = 0;
  for (size_t j = first; j < first + n && bytes <= kResultsReplyBytes;) {
    // A run of consecutive tasks of one job (a whole job, named): read in one go.
    size_t run = 1;
    while (j + run < first + n && ids[j + run].job == ids[j].job &&
           ids[j + run].index == ids[j].index + run)
      ++run;
    found.clear();
    const size_t got = store_.FindRange(ids[j].job, ids[j].index, static_cast<uint32_t>(run), found,
                                        kResultsReplyBytes - bytes);
    for (size_t k = 0; k < got; ++k) {
      outcomes.push_back(found[k] ? std::move(*found[k]) : Missing(ids[j + k]));
      bytes += ApproxWireBytes(outcomes.back());
    }
    j += got;
  }
  return outcomes;
}

TaskOutcome Delivery::Stored(Store& store, TaskId id) {
  auto outcome = store.Find(id);
  return outcome ? std::move(*outcome) : Missing(id);
}

TaskOutcome Delivery::Missing(TaskId id) {
  TaskOutcome missing;
  missing.id = id;
  missing.status = TaskStatus::kWorkerLost;
  missing.error = "its outcome is missing from the journal";
  return missing;
}

}  // namespace orq

#include "alloc/policy.h"

#include <algorithm>

#include "common/task_spec.h"

namespace orq {

namespace {

Error Unknown(const std::string& name) {
  return {ErrorCode::kUnknownId,
          "there is no allocation queue '" + name + "' (orq alloc list shows them)"};
}

bool Active(const AllocationInfo& a) { return a.state != AllocState::kEnded; }

}  // namespace

Expected<void> CheckAllocSpec(const AllocQueueSpec& spec) {
  if (auto error = ValidateName(spec.name, "--name"); !error.ok()) return error;
  if (spec.name.front() == '.')  // "." and ".." are names too, of directories that exist
    return Fault("--name '" + spec.name +
                 "' may not start with '.': the queue keeps its files in a directory of that name");
  if (spec.backend != "slurm")
    return Fault("the backend '" + spec.backend + "' is not one orq has (slurm is)");
  if (spec.time_limit_s < 60)
    return Fault("--time-limit must be at least a minute (Slurm counts in minutes), not " +
                 std::to_string(spec.time_limit_s) + " s");
  if (spec.workers_per_alloc < 1 || spec.workers_per_alloc > 10000)
    return Fault("--workers-per-alloc must be from 1 to 10000");
  if (spec.max_workers < spec.workers_per_alloc)
    return Fault("--max-workers (" + std::to_string(spec.max_workers) +
                 ") must be at least --workers-per-alloc (" +
                 std::to_string(spec.workers_per_alloc) + "): no allocation would fit");
  if (spec.backlog < 1 || spec.backlog > 1000) return Fault("--backlog must be from 1 to 1000");
  if (spec.idle_timeout_s < 1) return Fault("--idle-timeout must be at least a second");
  for (const std::string& q : spec.queues) {
    if (auto error = ValidateName(q, "--queues"); !error.ok()) return error;
  }
  for (const ResourceNeed& r : spec.resources) {
    if (auto error = ValidateName(r.name, "--resources"); !error.ok()) return error;
  }
  return {};
}

Slots AllocPolicy::DefaultSlots() {
  Slots slots{};
  slots[static_cast<size_t>(TaskClass::kAsync)] = 16384;  // a worker's default --slots
  slots[static_cast<size_t>(TaskClass::kCpu)] = 2;        // twice one thread
  slots[static_cast<size_t>(TaskClass::kShell)] = 1;      // one thread
  slots[static_cast<size_t>(TaskClass::kPython)] = 8;     // kPythonPrefetch per interpreter
  return slots;
}

void AllocPolicy::Restore(std::vector<AllocQueueInfo> queues) {
  for (AllocQueueInfo& info : queues) {
    Queue& q = queues_[info.spec.name];
    q.info = std::move(info);
  }
}

AllocPolicy::Queue* AllocPolicy::Find(const std::string& name) {
  auto it = queues_.find(name);
  return it == queues_.end() ? nullptr : &it->second;
}

Expected<AllocQueueInfo> AllocPolicy::Add(AllocQueueSpec spec, std::string access_file) {
  if (auto error = CheckAllocSpec(spec); !error.ok())
    return Error{ErrorCode::kBadRequest, error.error().sentence};
  if (queues_.count(spec.name))
    return Error{ErrorCode::kBadRequest, "the allocation queue '" + spec.name +
                                             "' exists already (orq alloc rm " + spec.name +
                                             " first, or choose another --name)"};
  Queue& q = queues_[spec.name];
  q.info.spec = std::move(spec);
  q.info.access_file = std::move(access_file);
  q.polled = true;  // a new queue has no allocation anywhere yet
  Changed(q);
  return q.info;
}

Expected<AllocQueueInfo> AllocPolicy::Pause(const std::string& name) {
  Queue* q = Find(name);
  if (!q) return Unknown(name);
  q->info.paused = true;
  q->info.pause_reason.clear();
  Changed(*q);
  return q->info;
}

Expected<AllocQueueInfo> AllocPolicy::Resume(const std::string& name) {
  Queue* q = Find(name);
  if (!q) return Unknown(name);
  q->info.paused = false;
  q->info.pause_reason.clear();
  q->info.failures_in_row = 0;
  q->next_submit = {};
  Changed(*q);
  return q->info;
}

Expected<std::vector<AllocAction>> AllocPolicy::Remove(const std::string& name, bool keep) {
  Queue* q = Find(name);
  if (!q) return Unknown(name);
  std::vector<AllocAction> cancels;
  if (!keep) {
    for (const AllocationInfo& a : q->info.allocations) {
      if (Active(a)) cancels.push_back({AllocAction::Kind::kCancel, name, a.id});
    }
  }
  queues_.erase(name);
  std::erase(changed_, name);
  removed_.push_back(name);
  return cancels;
}

Expected<std::vector<AllocQueueInfo>> AllocPolicy::List(const std::string& name) const {
  if (name.empty()) return All();
  auto it = queues_.find(name);
  if (it == queues_.end()) return Unknown(name);
  return std::vector<AllocQueueInfo>{it->second.info};
}

std::vector<AllocQueueInfo> AllocPolicy::All() const {
  std::vector<AllocQueueInfo> all;
  for (const auto& [name, q] : queues_) all.push_back(q.info);
  return all;
}

std::vector<const AllocQueueSpec*> AllocPolicy::Specs() const {
  std::vector<const AllocQueueSpec*> specs;
  for (const auto& [name, q] : queues_) specs.push_back(&q.info.spec);
  return specs;
}

std::vector<AllocAction> AllocPolicy::Plan(
    const std::map<std::string, std::array<uint64_t, kTaskClassCount>>& demand,
    const std::map<std::string, AllocWorkerCount>& workers, SteadyTime now, double wall) {
  std::vector<AllocAction> actions;
  for (auto& [name, q] : queues_) {
    AllocQueueInfo& info = q.info;
    const AllocQueueSpec& spec = info.spec;
    // Each allocation's workers, and what the queue's workers offer. An allocation not ended may
    // bring all of its workers: those not registered (yet, or again after our restart) count as
    // coming until the batch system says it ended.
    uint32_t capacity = 0, coming = 0, queued = 0;
    bool any_active = false;
    for (AllocationInfo& a : info.allocations) {
      if (!Active(a)) continue;
      any_active = true;
      uint32_t count = 0;
      if (auto it = workers.find(AllocationName(name, a.id)); it != workers.end()) {
        count = it->second.count;
        for (size_t c = 0; c < kTaskClassCount; ++c)
          q.slots[c] = std::max(q.slots[c], it->second.slots[c]);
      }
      if (count != a.workers || count > a.workers_seen) {
        a.workers = count;
        a.workers_seen = std::max(a.workers_seen, count);
        // Workers registering mean it runs, whatever the last poll said.
        if (count > 0 && a.state == AllocState::kQueued) {
          a.state = AllocState::kRunning;
          a.started = wall;
        }
        Changed(q);
      }
      capacity += spec.workers_per_alloc;
      coming += spec.workers_per_alloc - std::min(count, spec.workers_per_alloc);
      if (a.state == AllocState::kQueued) ++queued;
    }
    if (!q.polling && (!q.polled || (any_active && now >= q.next_poll))) {
      q.polling = true;
      actions.push_back({AllocAction::Kind::kPoll, name, ""});
    }
    if (info.paused || q.submitting || !q.polled || now < q.next_submit) continue;
    // How many workers the tasks waiting need, at the slots the queue's workers offer.
    uint64_t needed = 0;
    if (auto it = demand.find(name); it != demand.end()) {
      const Slots defaults = DefaultSlots();
      for (size_t c = 0; c < kTaskClassCount; ++c) {
        const uint64_t per = std::max<uint64_t>(1, q.slots[c] ? q.slots[c] : defaults[c]);
        needed = std::max(needed, (it->second[c] + per - 1) / per);
      }
    }
    if (needed <= coming || queued >= spec.backlog ||
        capacity + spec.workers_per_alloc > spec.max_workers)
      continue;
    q.submitting = true;
    actions.push_back({AllocAction::Kind::kSubmit, name, ""});
  }
  return actions;
}

bool AllocPolicy::Submitted(const std::string& queue, const Expected<std::string>& id,
                            SteadyTime now, double wall) {
  Queue* q = Find(queue);
  if (!q) return false;  // removed meanwhile (orq alloc rm): its new allocation is nobody's
  q->submitting = false;
  AllocQueueInfo& info = q->info;
  if (id) {
    ++info.submits;
    info.failures_in_row = 0;
    q->next_submit = {};
    info.allocations.push_back({.id = *id, .state = AllocState::kQueued, .submitted = wall});
    Trim(info);
    q->next_poll = std::min(q->next_poll, now + kAllocPollInterval);
  } else {
    ++info.failures;
    ++info.failures_in_row;
    info.last_error = id.error().sentence;
    auto wait = kAllocRetryFirst * (1u << std::min<uint32_t>(info.failures_in_row - 1, 16));
    q->next_submit = now + std::min<std::chrono::milliseconds>(wait, kAllocRetryMax);
    if (info.failures_in_row >= kAllocFailuresToPause) {
      info.paused = true;
      info.pause_reason = "paused after " + std::to_string(info.failures_in_row) +
                          " failed submissions in a row: " + info.last_error +
                          " (fix it, then orq alloc resume " + queue + ")";
    }
  }
  Changed(*q);
  return true;
}

std::vector<std::string> AllocPolicy::Observed(const std::string& queue,
                                               const std::vector<BackendJob>& jobs, SteadyTime now,
                                               double wall) {
  std::vector<std::string> ended;
  Queue* q = Find(queue);
  if (!q) return ended;
  q->polling = false;
  q->polled = true;
  q->poll_error.clear();
  q->next_poll = now + kAllocPollInterval;
  AllocQueueInfo& info = q->info;
  std::map<std::string, const BackendJob*> listed;
  for (const BackendJob& job : jobs) listed[job.id] = &job;
  for (AllocationInfo& a : info.allocations) {
    auto it = listed.find(a.id);
    const BackendJob* job = it == listed.end() ? nullptr : it->second;
    if (job) listed.erase(it);
    if (!Active(a)) continue;
    if (!job) {
      End(a,
          a.workers_seen ? "gone from the batch system (its workers left)"
                         : "gone from the batch system",
          wall);
    } else if (job->state == AllocState::kEnded) {
      End(a, job->detail, wall);
    } else if (job->state == AllocState::kRunning && a.state == AllocState::kQueued) {
      a.state = AllocState::kRunning;
      a.started = wall;
    } else {
      continue;
    }
    if (a.state == AllocState::kEnded) ended.push_back(AllocationName(queue, a.id));
    Changed(*q);
  }
  // Allocations the batch system has that we do not know: submitted just before a crash, before
  // the journal kept them. They are ours (their job name says so): counted, not submitted again.
  for (const auto& [id, job] : listed) {
    if (job->state == AllocState::kEnded) continue;
    info.allocations.push_back({.id = id,
                                .state = job->state,
                                .submitted = wall,
                                .started = job->state == AllocState::kRunning ? wall : 0});
    Trim(info);
    Changed(*q);
  }
  return ended;
}

void AllocPolicy::PollFailed(const std::string& queue, const std::string& why, SteadyTime now) {
  Queue* q = Find(queue);
  if (!q) return;
  q->polling = false;
  q->next_poll = now + kAllocPollInterval;
  if (q->poll_error != why) {
    q->poll_error = why;
    q->info.last_error = why;
    Changed(*q);
  }
}

void AllocPolicy::End(AllocationInfo& a, std::string how, double wall) {
  a.state = AllocState::kEnded;
  a.ended = wall;
  a.workers = 0;
  a.end = std::move(how);
}

void AllocPolicy::Trim(AllocQueueInfo& info) {
  auto& all = info.allocations;
  while (all.size() > kAllocHistory) {
    auto first_ended =
        std::find_if(all.begin(), all.end(), [](const AllocationInfo& a) { return !Active(a); });
    if (first_ended == all.end()) break;  // every one still runs: kept, however many
    all.erase(first_ended);
  }
}

std::vector<AllocQueueInfo> AllocPolicy::TakeChanged() {
  std::sort(changed_.begin(), changed_.end());
  changed_.erase(std::unique(changed_.begin(), changed_.end()), changed_.end());
  std::vector<AllocQueueInfo> changed;
  for (const std::string& name : changed_) {
    if (Queue* q = Find(name)) changed.push_back(q->info);
  }
  changed_.clear();
  return changed;
}

}  // namespace orq

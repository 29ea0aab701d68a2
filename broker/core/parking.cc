#include "broker/core/parking.h"

#include <string>
#include <utility>

#include "common/ids.h"

namespace orq {

void Parking::Park(TaskId id, int32_t priority, const Needs* needs, const GateKey& gate) {
  Parked& parked = parked_[gate];
  WaitingFor waiting{gate, false, false};
  if (gate.kind == GateKey::Kind::kLock && needs) {
    for (const LockNeed& lock : needs->locks) {
      if (lock.name == gate.name) waiting.writer = lock.mode == LockMode::kWrite;
    }
  }
  (waiting.writer ? parked.writers : parked.tasks).push({priority, id});
  ++parked.count;
  if (waiting.writer) limits_.WriterWaits(gate.name, +1);  // readers now wait behind it
  waiting_for_[id] = std::move(waiting);
}

std::vector<TaskId> Parking::StopWaiting(TaskId id, SteadyTime now) {
  auto it = waiting_for_.find(id);
  if (it == waiting_for_.end()) return {};
  const WaitingFor waiting = std::move(it->second);
  waiting_for_.erase(it);
  Parked& parked = parked_.at(waiting.gate);
  --(waiting.candidate ? parked.candidates : parked.count);
  if (waiting.writer) limits_.WriterWaits(waiting.gate.name, -1);
  // Its stale entry stays in the heap until Unpark() meets it; the room it held goes to the next.
  // (Only a new worker opens the kWorker gate: its room is not a count that one task frees.)
  if (waiting.gate.kind == GateKey::Kind::kWorker) return {};
  return Unpark(waiting.gate, now);
}

std::vector<TaskId> Parking::Unpark(const GateKey& gate, SteadyTime now) {
  std::vector<TaskId> back;
  auto it = parked_.find(gate);
  if (it == parked_.end()) return back;
  Parked& parked = it->second;
  // Pops stale entries off `heap`; true when a task still parked on this gate is on top.
  auto top = [&](std::priority_queue<QueueEntry>& heap) {
    while (!heap.empty()) {
      auto w = waiting_for_.find(heap.top().id());
      if (w != waiting_for_.end() && w->second.gate == gate && !w->second.candidate) return true;
      heap.pop();
    }
    return false;
  };
  auto move_back = [&](std::priority_queue<QueueEntry>& heap) {
    const TaskId id = heap.top().id();
    heap.pop();
    waiting_for_.at(id).candidate = true;
    --parked.count;
    ++parked.candidates;
    back.push_back(id);
  };
  if (gate.kind == GateKey::Kind::kLock) {
    // A writer goes first, alone, once the lock is free; readers go only while no writer waits.
    if (top(parked.writers)) {
      if (parked.candidates == 0 && limits_.Room(gate, LockMode::kWrite, now) > 0)
        move_back(parked.writers);
    } else {
      while (top(parked.tasks) && limits_.Room(gate, LockMode::kRead, now) > 0)
        move_back(parked.tasks);
    }
  } else {
    while (top(parked.tasks)) {
      const uint32_t room = limits_.Room(gate, LockMode::kRead, now);
      if (room != UINT32_MAX && room <= parked.candidates) break;
      move_back(parked.tasks);
    }
  }
  if (parked.count == 0 && parked.candidates == 0 && parked.tasks.empty() && parked.writers.empty())
    parked_.erase(it);
  return back;
}

std::vector<TaskId> Parking::StopRunning(TaskId id, const Needs* needs, SteadyTime now) {
  if (!needs || (needs->locks.empty() && needs->limits.empty())) return {};
  limits_.Release(*needs, id);
  std::vector<TaskId> back;
  auto unpark = [&](const GateKey& gate) {
    for (TaskId t : Unpark(gate, now)) back.push_back(t);
  };
  for (const LockNeed& lock : needs->locks) unpark({GateKey::Kind::kLock, lock.name});
  for (const std::string& limit : needs->limits) unpark({GateKey::Kind::kLimit, limit});
  return back;
}

const Parking::WaitingFor* Parking::WaitingOf(TaskId id) const {
  auto it = waiting_for_.find(id);
  return it == waiting_for_.end() ? nullptr : &it->second;
}

std::vector<GateKey> Parking::ToRecheck(SteadyTime now, bool all) const {
  std::vector<GateKey> gates;
  for (const auto& [gate, parked] : parked_) {
    if (parked.count == 0 || gate.kind == GateKey::Kind::kWorker) continue;
    if (all || limits_.NextToken(gate.name, now).has_value()) gates.push_back(gate);
  }
  return gates;
}

std::optional<SteadyTime> Parking::NextToken(SteadyTime now) const {
  std::optional<SteadyTime> next;
  for (const auto& [gate, parked] : parked_) {
    if (parked.count == 0 || gate.kind != GateKey::Kind::kLimit) continue;
    if (auto token = limits_.NextToken(gate.name, now))
      next = next ? std::min(*next, *token) : *token;
  }
  return next;
}

uint32_t Parking::ParkedOn(const GateKey& gate) const {
  auto it = parked_.find(gate);
  return it == parked_.end() ? 0 : it->second.count;
}

namespace {
std::vector<TaskId> HolderIds(const std::set<TaskId>& ids) {
  std::vector<TaskId> some;
  for (TaskId id : ids) {
    if (some.size() == kMaxGateHolders) break;
    some.push_back(id);
  }
  return some;
}
}  // namespace

std::vector<GateInfo> Parking::LimitInfos() const {
  std::vector<GateInfo> infos;
  for (const auto& [name, limit] : limits_.limits()) {
    GateInfo info{.name = name,
                  .limit = limit.spec,
                  .holders = HolderIds(limit.holders),
                  .held = static_cast<uint32_t>(limit.holders.size())};
    info.waiting = ParkedOn({GateKey::Kind::kLimit, name});
    infos.push_back(std::move(info));
  }
  return infos;
}

std::vector<GateInfo> Parking::LockInfos() const {
  std::vector<GateInfo> infos;
  for (const auto& [name, lock] : limits_.locks()) {
    GateInfo info{.name = name, .waiting = lock.writers_waiting};
    if (lock.writer) {
      info.mode = LockMode::kWrite;
      info.holders = {*lock.writer};
      info.held = 1;
    } else if (!lock.readers.empty()) {
      info.mode = LockMode::kRead;
      info.holders = HolderIds(lock.readers);
      info.held = static_cast<uint32_t>(lock.readers.size());
    }
    if (auto it = parked_.find({GateKey::Kind::kLock, name}); it != parked_.end())
      info.waiting = it->second.count;
    infos.push_back(std::move(info));
  }
  return infos;
}

}  // namespace orq

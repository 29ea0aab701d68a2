#include "broker/core/limits.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/ids.h"

namespace orq {

Expected<void> CheckLimitSpec(const LimitSpec& spec) {
  if (auto named = ValidateName(spec.name, "the limit"); !named.ok()) return named;
  if (spec.max == 0 && !(spec.rate > 0))
    return Error{ErrorCode::kBadRequest,
                 "limit " + spec.name + " needs a number of tasks at once, or a rate"};
  if (!std::isfinite(spec.rate) || spec.rate < 0 || spec.rate > 1e6)
    return Error{ErrorCode::kBadRequest,
                 "the rate of limit " + spec.name + " must be above 0 and at most 1000000/s"};
  return {};
}
namespace {

uint32_t Burst(const LimitSpec& spec) { return std::max<uint32_t>(spec.burst, 1); }

}  // namespace

void Limits::SetLimit(const LimitSpec& spec, SteadyTime now) {
  LimitState& limit = limits_[spec.name];
  const bool fresh = limit.spec.name.empty();
  if (!fresh) limit.tokens = Tokens(limit, now);
  limit.spec = spec;
  if (fresh) limit.tokens = Burst(spec);  // a new bucket starts full
  limit.tokens = std::min<double>(limit.tokens, Burst(spec));
  limit.refilled = now;
}

bool Limits::RemoveLimit(const std::string& name) { return limits_.erase(name) > 0; }

std::vector<LimitSpec> Limits::Specs() const {
  std::vector<LimitSpec> specs;
  for (const auto& [name, limit] : limits_) specs.push_back(limit.spec);
  return specs;
}

double Limits::Tokens(const LimitState& limit, SteadyTime now) const {
  if (limit.spec.rate <= 0) return 0;
  const double elapsed = std::chrono::duration<double>(now - limit.refilled).count();
  return std::min<double>(Burst(limit.spec),
                          limit.tokens + std::max(0.0, elapsed) * limit.spec.rate);
}

uint32_t Limits::Room(const GateKey& gate, LockMode mode, SteadyTime now) const {
  if (gate.kind == GateKey::Kind::kWorker) return UINT32_MAX;  // opened when a worker comes
  if (gate.kind == GateKey::Kind::kLock) {
    auto it = locks_.find(gate.name);
    if (it == locks_.end()) return mode == LockMode::kWrite ? 1 : UINT32_MAX;
    const LockState& lock = it->second;
    if (lock.writer) return 0;
    if (mode == LockMode::kWrite) return lock.readers.empty() ? 1 : 0;
    return lock.writers_waiting > 0 ? 0 : UINT32_MAX;  // readers wait behind writers
  }
  auto it = limits_.find(gate.name);
  if (it == limits_.end()) return UINT32_MAX;
  const LimitState& limit = it->second;
  uint32_t room = UINT32_MAX;
  if (limit.spec.max > 0)
    room = limit.spec.max > limit.holders.size()
               ? limit.spec.max - static_cast<uint32_t>(limit.holders.size())
               : 0;
  if (limit.spec.rate > 0) room = std::min(room, static_cast<uint32_t>(Tokens(limit, now)));
  return room;
}

std::optional<Blocked> Limits::Check(const Needs& needs, SteadyTime now) const {
  auto holders = [](const std::set<TaskId>& ids) {
    std::vector<TaskId> some;
    for (TaskId id : ids) {
      if (some.size() == kMaxGateHolders) break;
      some.push_back(id);
    }
    return some;
  };
  for (const LockNeed& need : needs.locks) {
    auto it = locks_.find(need.name);
    if (it == locks_.end()) continue;  // free, and nobody waits for it
    const LockState& lock = it->second;
    const GateKey key{GateKey::Kind::kLock, need.name};
    Reason why{.name = need.name};
    if (lock.writer) {
      why.kind = Reason::Kind::kLockHeld;
      why.mode = LockMode::kWrite;
      why.holders = {*lock.writer};
      why.count = 1;
      return Blocked{key, std::move(why)};
    }
    if (need.mode == LockMode::kWrite && !lock.readers.empty()) {
      why.kind = Reason::Kind::kLockHeld;
      why.mode = LockMode::kRead;
      why.holders = holders(lock.readers);
      why.count = lock.readers.size();
      return Blocked{key, std::move(why)};
    }
    if (need.mode == LockMode::kRead && lock.writers_waiting > 0) {
      why.kind = Reason::Kind::kWritersWaiting;
      why.count = lock.writers_waiting;
      return Blocked{key, std::move(why)};
    }
  }
  for (const std::string& name : needs.limits) {
    auto it = limits_.find(name);
    if (it == limits_.end()) continue;
    const LimitState& limit = it->second;
    const GateKey key{GateKey::Kind::kLimit, name};
    if (limit.spec.max > 0 && limit.holders.size() >= limit.spec.max)
      return Blocked{key, Reason{.kind = Reason::Kind::kLimitFull,
                                 .name = name,
                                 .holders = holders(limit.holders),
                                 .count = limit.holders.size(),
                                 .max = limit.spec.max}};
    if (limit.spec.rate > 0 && Tokens(limit, now) < 1)
      return Blocked{key, Reason{.kind = Reason::Kind::kLimitRate,
                                 .name = name,
                                 .seconds = (1 - Tokens(limit, now)) / limit.spec.rate,
                                 .rate = limit.spec.rate}};
  }
  return std::nullopt;
}

void Limits::Acquire(const Needs& needs, TaskId id, SteadyTime now) {
  for (const LockNeed& need : needs.locks) {
    LockState& lock = locks_[need.name];
    if (need.mode == LockMode::kWrite)
      lock.writer = id;
    else
      lock.readers.insert(id);
  }
  for (const std::string& name : needs.limits) {
    auto it = limits_.find(name);
    if (it == limits_.end()) continue;
    LimitState& limit = it->second;
    limit.holders.insert(id);
    if (limit.spec.rate > 0) {
      limit.tokens = std::max(0.0, Tokens(limit, now) - 1);
      limit.refilled = now;
    }
  }
}

void Limits::Release(const Needs& needs, TaskId id) {
  for (const LockNeed& need : needs.locks) {
    auto it = locks_.find(need.name);
    if (it == locks_.end()) continue;
    LockState& lock = it->second;
    if (lock.writer == id) lock.writer.reset();
    lock.readers.erase(id);
    if (!lock.writer && lock.readers.empty() && lock.writers_waiting == 0) locks_.erase(it);
  }
  for (const std::string& name : needs.limits) {
    if (auto it = limits_.find(name); it != limits_.end()) it->second.holders.erase(id);
  }
}

void Limits::WriterWaits(const std::string& name, int delta) {
  LockState& lock = locks_[name];
  lock.writers_waiting = static_cast<uint32_t>(static_cast<int>(lock.writers_waiting) + delta);
  if (!lock.writer && lock.readers.empty() && lock.writers_waiting == 0) locks_.erase(name);
}

std::optional<SteadyTime> Limits::NextToken(const std::string& name, SteadyTime now) const {
  auto it = limits_.find(name);
  if (it == limits_.end() || it->second.spec.rate <= 0) return std::nullopt;
  const double missing = 1 - Tokens(it->second, now);
  if (missing <= 0) return now;
  return now +
         std::chrono::duration_cast<SteadyTime::duration>(
             std::chrono::duration<double>(missing / it->second.spec.rate)) +
         std::chrono::microseconds(1);  // past the instant, so the token is whole
}

}  // namespace orq

#include "broker/core/worker_pool.h"

#include <algorithm>
#include <cctype>
#include <tuple>

namespace orq {

uint32_t WorkerPool::Add(const std::string& identity, bool remote, const std::string& key,
                         const ReadyMessage& ready, SteadyTime now) {
  // Numbers fit in 31 bits (Task::Running keeps one so), and one still connected is skipped.
  uint32_t id = next_;
  while (workers_.count(id)) id = id % kMaxWorkerNumber + 1;
  next_ = id % kMaxWorkerNumber + 1;
  Worker& w = workers_[id];
  w.identity = identity;
  w.key = key;
  ++per_key_[key];
  w.pid = ready.pid;
  w.threads = ready.threads;
  w.host = ready.host;
  w.remote = remote;
  w.capacity = ready.slots;
  w.last_seen = now;
  w.cpus = ready.slots[static_cast<size_t>(TaskClass::kShell)];
  for (const ResourceNeed& r : ready.resources) {
    if (r.name == "cpus") {
      w.cpus = r.amount;
      continue;
    }
    const uint32_t n = std::min(r.amount, kMaxResourceUnits);  // the shell refuses more
    w.units[r.name] = Units{std::vector<bool>(n, false), n};
  }
  w.offered = {{"cpus", w.cpus}};
  for (const auto& [name, units] : w.units)
    w.offered.push_back({name, static_cast<uint32_t>(units.used.size())});
  w.queues = ready.queues;
  std::sort(w.queues.begin(), w.queues.end());
  w.allocation = ready.allocation;
  if (ready.lifetime_ms) w.ends_at = now + std::chrono::milliseconds(ready.lifetime_ms);
  ids_[identity] = id;
  return id;
}

Worker WorkerPool::Remove(uint32_t id) {
  auto it = workers_.find(id);
  Worker w = std::move(it->second);
  workers_.erase(it);
  ids_.erase(w.identity);
  if (auto key = per_key_.find(w.key); key != per_key_.end() && --key->second == 0)
    per_key_.erase(key);
  return w;
}

Worker* WorkerPool::Find(uint32_t id) {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

const Worker* WorkerPool::Find(uint32_t id) const {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

std::optional<uint32_t> WorkerPool::IdOf(const std::string& identity) const {
  auto it = ids_.find(identity);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

std::optional<uint32_t> WorkerPool::IdOfPid(int64_t pid) const {
  for (const auto& [id, w] : workers_) {
    if (w.pid == pid) return id;
  }
  return std::nullopt;
}

bool WorkerPool::Serves(const Worker& w, const std::string& queue) {
  return w.queues.empty() || std::binary_search(w.queues.begin(), w.queues.end(),
                                                queue.empty() ? kDefaultQueue : queue);
}

bool WorkerPool::HasTimeFor(const Worker& w, const TaskSpec& spec, SteadyTime now) {
  if (!spec.needs || spec.needs->time_request <= 0 || w.ends_at == SteadyTime::max()) return true;
  return now + std::chrono::seconds(spec.needs->time_request) <= w.ends_at;
}

bool WorkerPool::Fits(const Worker& w, const TaskSpec& spec, uint32_t cpus, SteadyTime now) {
  if (cpus > w.cpus - w.cpus_used) return false;
  if (!spec.needs) return true;
  if (!Serves(w, spec.needs->queue) || !HasTimeFor(w, spec, now)) return false;
  for (const ResourceNeed& r : spec.needs->resources) {
    auto it = w.units.find(r.name);
    if (it == w.units.end() || it->second.free < r.amount) return false;
  }
  return true;
}

bool WorkerPool::CouldRun(const Worker& w, const TaskSpec& spec, uint32_t cpus, SteadyTime now) {
  if (cpus > w.cpus) return false;
  if (!spec.needs) return true;
  // (A worker's time left only shrinks: one without enough now never will have it.)
  if (!Serves(w, spec.needs->queue) || !HasTimeFor(w, spec, now)) return false;
  for (const ResourceNeed& r : spec.needs->resources) {
    auto it = w.units.find(r.name);
    if (it == w.units.end() || it->second.used.size() < r.amount) return false;
  }
  return true;
}

bool WorkerPool::AnyCouldRun(const TaskSpec& spec, uint32_t cpus, SteadyTime now) const {
  return std::any_of(workers_.begin(), workers_.end(),
                     [&](const auto& w) { return CouldRun(w.second, spec, cpus, now); });
}

bool WorkerPool::AnyFits(const TaskSpec& spec, uint32_t cpus, SteadyTime now) const {
  return std::any_of(workers_.begin(), workers_.end(),
                     [&](const auto& w) { return Fits(w.second, spec, cpus, now); });
}

bool WorkerPool::AnyServesClass(size_t c) const {
  return std::any_of(workers_.begin(), workers_.end(),
                     [&](const auto& w) { return w.second.capacity[c] > 0; });
}

namespace {
// ORQ_RESOURCE_GPU for "gpu": upper case, '-' and '.' as '_'.
std::string ResourceVariable(const std::string& name) {
  std::string var = "ORQ_RESOURCE_";
  for (char ch : name)
    var += ch == '-' || ch == '.' ? '_'
                                  : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return var;
}
}  // namespace

void WorkerPool::Lease(Worker& w, TaskId id, std::shared_ptr<const TaskSpec> held_spec,
                       std::vector<std::string>& env) {
  const TaskSpec& spec = *w.leases.emplace(id, std::move(held_spec)).first->second;
  ++w.in_use[ClassIndex(spec)];
  w.cpus_used += Cpus(spec);
  if (!spec.needs || spec.needs->resources.empty()) return;
  auto& held = w.held[id];
  for (const ResourceNeed& r : spec.needs->resources) {
    Units& units = w.units.at(r.name);
    std::vector<uint32_t> given;
    std::string list;
    for (uint32_t i = 0; i < units.used.size() && given.size() < r.amount; ++i) {
      if (units.used[i]) continue;
      units.used[i] = true;
      given.push_back(i);
      list += (list.empty() ? "" : ",") + std::to_string(i);
    }
    units.free -= static_cast<uint32_t>(given.size());
    env.push_back(ResourceVariable(r.name) + "=" + list);
    if (r.name == "gpu") env.push_back("CUDA_VISIBLE_DEVICES=" + list);
    held.emplace_back(r.name, std::move(given));
  }
}

std::shared_ptr<const TaskSpec> WorkerPool::Return(Worker& w, TaskId id) {
  auto lease = w.leases.find(id);
  std::shared_ptr<const TaskSpec> spec = std::move(lease->second);
  w.leases.erase(lease);
  --w.in_use[ClassIndex(*spec)];
  w.cpus_used -= std::min(Cpus(*spec), w.cpus_used);
  auto it = w.held.find(id);
  if (it == w.held.end()) return spec;
  for (const auto& [name, given] : it->second) {
    Units& units = w.units.at(name);
    for (uint32_t i : given) units.used[i] = false;
    units.free += static_cast<uint32_t>(given.size());
  }
  w.held.erase(it);
  return spec;
}

Reason WorkerPool::NoWorkerReason(const TaskSpec& spec, SteadyTime now) const {
  const Needs& n = spec.need();
  if (workers_.empty()) return {.kind = Reason::Kind::kNoWorkers};
  if (!n.queue.empty() && std::none_of(workers_.begin(), workers_.end(),
                                       [&](const auto& w) { return Serves(w.second, n.queue); }))
    return {.kind = Reason::Kind::kNoQueueServer, .name = n.queue};
  if (n.time_request > 0 && std::none_of(workers_.begin(), workers_.end(), [&](const auto& w) {
        return Serves(w.second, n.queue) && HasTimeFor(w.second, spec, now);
      }))
    return {.kind = Reason::Kind::kNoTimeLeft, .seconds = static_cast<double>(n.time_request)};
  return {.kind = Reason::Kind::kNoWorkerOffers, .name = Wants(spec)};
}

std::string WorkerPool::Wants(const TaskSpec& spec) {
  std::string wants = "cpus=" + std::to_string(Cpus(spec));
  for (const ResourceNeed& r : spec.need().resources)
    wants += "," + r.name + "=" + std::to_string(r.amount);
  if (!spec.need().queue.empty()) wants += " in queue '" + spec.need().queue + "'";
  return wants;
}

std::vector<std::string> WorkerPool::RemoteOn(const std::string& host,
                                              const std::string& key) const {
  std::vector<std::string> identities;
  for (const auto& [id, w] : workers_) {
    if (w.remote && w.host == host && w.key == key) identities.push_back(w.identity);
  }
  return identities;
}

std::vector<uint32_t> WorkerPool::Readers(bool local, const std::string& host,
                                          const std::string& key) const {
  std::vector<uint32_t> readers;
  for (const auto& [number, w] : workers_) {
    if (local ? !w.remote : w.remote && w.host == host && w.key == key) readers.push_back(number);
  }
  std::sort(readers.begin(), readers.end());
  return readers;
}

std::vector<WorkerInfo> WorkerPool::Infos(SteadyTime now) const {
  std::vector<WorkerInfo> infos;
  for (const auto& [id, w] : workers_) {
    infos.push_back(
        {w.pid, w.host, w.remote, w.threads, static_cast<uint32_t>(w.leases.size()), w.capacity,
         w.offered, w.queues, std::chrono::duration<double>(now - w.last_seen).count(), w.done,
         w.failed, w.allocation,
         w.ends_at == SteadyTime::max()
             ? 0
             : std::max(0.001, std::chrono::duration<double>(w.ends_at - now).count())});
  }
  std::sort(infos.begin(), infos.end(), [](const auto& a, const auto& b) {
    return std::tie(a.host, a.pid) < std::tie(b.host, b.pid);
  });
  return infos;
}

}  // namespace orq

// The broker's workers: who registered, what each offers (slots per task class, cpus, units of
// named resources, queues), what each holds now (leases, slots, cpus and units in use), and when
// each was last heard. Pure and passive: BrokerCore decides who gets what; the pool keeps the
// books, answers whether a task fits a worker, and never calls back.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/protocol.h"

namespace orq {

inline size_t ClassIndex(const TaskSpec& spec) { return static_cast<size_t>(ClassOf(spec)); }

// A worker's units of one resource (gpu 0, gpu 1...): which are in use.
struct Units {
  std::vector<bool> used;
  uint32_t free = 0;
};

struct Worker {
  std::string identity;  // its ROUTER routing id
  int64_t pid = 0;
  uint32_t threads = 0;
  std::string host;
  bool remote = false;  // connected over TCP with a worker key (else over ipc, on this host)
  Slots capacity{};
  Slots in_use{};  // invariant: in_use[c] <= capacity[c], and equals leases of class c
  // Its leases, each with the spec its task runs (so that the task's end reads no window back).
  std::unordered_map<TaskId, std::shared_ptr<const TaskSpec>, TaskIdHash> leases;
  SteadyTime last_seen;
  uint32_t cpus = 0, cpus_used = 0;    // invariant: cpus_used = the leases' Cpus()
  std::map<std::string, Units> units;  // its other resources, by name
  std::vector<std::string> queues;     // sorted; empty: every queue
  // The units each lease holds (resources other than cpus), to give back when it ends.
  std::unordered_map<TaskId, std::vector<std::pair<std::string, std::vector<uint32_t>>>, TaskIdHash>
      held;
  std::vector<ResourceNeed> offered;       // as it registered, for status
  std::string key;                         // the key it authenticated with
  uint64_t done = 0, failed = 0;           // its tasks that ended ok, and otherwise
  std::string allocation;                  // "QUEUE/JOBID" when an allocation started it
  SteadyTime ends_at = SteadyTime::max();  // when it leaves (its --lifetime); max: never
};

class WorkerPool {
 public:
  using Map = std::unordered_map<uint32_t, Worker>;

  // A worker that registered from `identity` (the caller dropped an earlier registration of that
  // identity first); returns its number. Holds nothing yet.
  uint32_t Add(const std::string& identity, bool remote, const std::string& key,
               const ReadyMessage& ready, SteadyTime now);
  // Removes the worker and returns it, with the leases it held (its books are not given back:
  // the worker is gone with them).
  Worker Remove(uint32_t id);

  Worker* Find(uint32_t id);
  const Worker* Find(uint32_t id) const;
  Worker& at(uint32_t id) { return workers_.at(id); }
  const Worker& at(uint32_t id) const { return workers_.at(id); }
  // The worker registered from this routing id, or with this pid.
  std::optional<uint32_t> IdOf(const std::string& identity) const;
  std::optional<uint32_t> IdOfPid(int64_t pid) const;
  // Every worker, read only: a worker changes through at(), Lease() and Return().
  const Map& all() const { return workers_; }
  bool empty() const { return workers_.empty(); }
  size_t size() const { return workers_.size(); }
  // Workers registered with `key` (a ZAP User-Id; local workers share the empty one).
  size_t OfKey(const std::string& key) const {
    auto it = per_key_.find(key);
    return it == per_key_.end() ? 0 : it->second;
  }

  // Whether `w` serves the task's queue, has the time its time request asks for left at `now`,
  // and has its cpus and resources free now (Fits), or at all (CouldRun).
  static bool Serves(const Worker& w, const std::string& queue);
  static bool HasTimeFor(const Worker& w, const TaskSpec& spec, SteadyTime now);
  static bool Fits(const Worker& w, const TaskSpec& spec, uint32_t cpus, SteadyTime now);
  static bool CouldRun(const Worker& w, const TaskSpec& spec, uint32_t cpus, SteadyTime now);
  bool AnyCouldRun(const TaskSpec& spec, uint32_t cpus, SteadyTime now) const;
  bool AnyFits(const TaskSpec& spec, uint32_t cpus, SteadyTime now) const;
  // Whether some worker has slots for the task's class at all.
  bool AnyServesClass(size_t c) const;

  // `w` takes the task: a slot of its class, its cpus and its units (each unit's number goes into
  // `env` as ORQ_RESOURCE_<NAME>, and CUDA_VISIBLE_DEVICES for gpu), and keeps its spec until
  // Return() gives them back and returns it.
  static void Lease(Worker& w, TaskId id, std::shared_ptr<const TaskSpec> spec,
                    std::vector<std::string>& env);
  static std::shared_ptr<const TaskSpec> Return(Worker& w, TaskId id);

  // Why no registered worker can run the task, for explain.
  Reason NoWorkerReason(const TaskSpec& spec, SteadyTime now) const;
  static std::string Wants(const TaskSpec& spec);  // "cpus=4,gpu=1"

  // The identities of the remote workers connected from `host`.
  std::vector<std::string> RemoteOn(const std::string& host, const std::string& key) const;
  // The numbers of the workers that may read a spilled output file: local ones for a local file,
  // else the remote ones on `host` with `key` (the key of the worker that wrote it). Sorted.
  std::vector<uint32_t> Readers(bool local, const std::string& host, const std::string& key) const;
  // For status: each worker as WorkerInfo, by host, then pid.
  std::vector<WorkerInfo> Infos(SteadyTime now) const;

 private:
  Map workers_;
  std::unordered_map<std::string, uint32_t> ids_;    // ROUTER identity -> worker number
  std::unordered_map<std::string, size_t> per_key_;  // invariant: workers_ counted by key
  uint32_t next_ = 1;
  static constexpr uint32_t kMaxWorkerNumber = (1u << 31) - 1;
};

}  // namespace orq

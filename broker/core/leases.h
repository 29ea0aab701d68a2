// Granting and returning a lease, in one place. A lease is two parts' books taken together: the
// worker's slot, cpus and units (broker/core/worker_pool.h) and the task's limits and locks
// (broker/core/parking.h). Dispatch and a returning worker's adoption grant through Grant(); a
// result and a lost worker give back through Return() and ReturnLost(). Pure and passive, as the
// two books are: it never calls back.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "broker/core/parking.h"
#include "broker/core/worker_pool.h"

namespace orq {

class Leases {
 public:
  explicit Leases(Parking& parking) : parking_(parking) {}

  // Whether `w` has the room for `spec` now (its slot's class is the caller's): cpus, units, time.
  static bool Fits(const Worker& w, const TaskSpec& spec, SteadyTime now) {
    return WorkerPool::Fits(w, spec, Cpus(spec), now);
  }
  // The first of the task's gates in the way now; nullopt when all can be granted.
  std::optional<Blocked> Gated(const TaskSpec& spec, SteadyTime now) const {
    return spec.needs ? parking_.Check(*spec.needs, now) : std::nullopt;
  }
  // `w` takes the lease of `id` (the caller found that it fits and is not gated): the task's
  // gates, then the worker's slot, cpus and units; each unit's number goes into `env`.
  void Grant(Worker& w, TaskId id, std::shared_ptr<const TaskSpec> spec,
             std::vector<std::string>& env, SteadyTime now) {
    if (spec->needs) parking_.Acquire(*spec->needs, id, now);
    WorkerPool::Lease(w, id, std::move(spec), env);
  }
  // The lease of `id` on `w` ends (its result came). Returns its spec; `unparked` gets the tasks
  // the room it held lets back into the queue.
  std::shared_ptr<const TaskSpec> Return(Worker& w, TaskId id, SteadyTime now,
                                         std::vector<TaskId>& unparked) {
    auto spec = WorkerPool::Return(w, id);
    unparked = parking_.StopRunning(id, spec->needs.get(), now);
    return spec;
  }
  // A lease whose worker is gone (removed from the pool with its slots): its gates go back.
  // Returns the tasks their room lets back into the queue.
  [[nodiscard]] std::vector<TaskId> ReturnLost(TaskId id, const TaskSpec& spec, SteadyTime now) {
    return parking_.StopRunning(id, spec.needs.get(), now);
  }

 private:
  Parking& parking_;
};

}  // namespace orq

// What an allocation queue asks of a batch system (alloc/policy.h decides when): submit one
// allocation of workers, list the queue's allocations, cancel one. The broker's allocator thread
// (broker/allocator.h) makes these calls; each blocks, with a deadline of its own. Slurm is the
// implementation there is (alloc/slurm.h); PBS, or a cloud's instances, would be one more class
// here, and the policy would not change. Tests use a fake (alloc/policy_test.cc).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "alloc/policy.h"
#include "common/error.h"
#include "common/protocol.h"

namespace orq {

class AllocBackend {
 public:
  virtual ~AllocBackend() = default;
  // Submits one allocation for `queue`: its workers run orq worker with the queue's access file
  // and options. Returns the batch system's job id, or its refusal in its own words.
  virtual Expected<std::string> Submit(const AllocQueueInfo& queue) = 0;
  // Every allocation of `queue` the batch system still lists (recently ended ones with how they
  // ended); one it does not list is over.
  virtual Expected<std::vector<BackendJob>> Jobs(const AllocQueueInfo& queue) = 0;
  // Cancels allocation `id`; the batch system's words when it could not.
  virtual Expected<void> Cancel(const AllocQueueInfo& queue, const std::string& id) = 0;
};

}  // namespace orq

// A large job's first tasks, held until the SubmitRequest that ends it (common/protocol.h's
// SubmitPartRequest). Pure: the broker shell adds each part as it arrives and takes them all when
// the submit comes, so no message of any job needs to exceed kMaxRemoteMessageBytes. Each part is
// checked and encoded as it comes (JobBuilder): a job of millions is never held decoded.
//
// Bounded: one sender holds at most kMaxMessageBytes and max_tasks of parts (what one ipc submit
// could carry), at most kMaxPartSenders senders hold parts at once, and parts with no word from
// their sender for kRequestTimeout are dropped. A sender whose parts were dropped, or went past a
// bound, learns it when its submit comes: Take() says so, and nothing of the job is accepted.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/job_builder.h"
#include "common/clock.h"
#include "common/protocol.h"

namespace orq {

inline constexpr size_t kMaxPartSenders = 64;

class SubmitParts {
 public:
  explicit SubmitParts(size_t max_tasks = kMaxTasksPerJob) : max_tasks_(max_tasks) {}

  // Keeps `tasks` (`bytes` on the wire) after what `from` sent before.
  void Add(const std::string& from, std::vector<TaskSpec> tasks, size_t bytes, SteadyTime now);

  struct Taken {
    JobBuilder job;  // every part's tasks, in order
    size_t bytes = 0;
    // Set when the parts cannot make a job: the sentence for the submitter.
    std::string problem;
  };
  // The parts `from` sent, checked against `expected` (SubmitRequest::parted), and forgotten.
  Taken Take(const std::string& from, uint32_t expected);

  // Drops the parts of senders silent for kRequestTimeout.
  void Expire(SteadyTime now);
  size_t senders() const { return held_.size(); }

 private:
  struct Held {
    JobBuilder job;  // the parts so far
    size_t tasks = 0;
    size_t bytes = 0;
    SteadyTime last{};
    bool over = false;  // went past a bound: its tasks were dropped
  };
  size_t max_tasks_;
  std::unordered_map<std::string, Held> held_;
};

}  // namespace orq

// A large job's first tasks, held until the SubmitRequest that ends it (common/protocol.h's
// SubmitPartRequest). Pure: the broker shell adds each part as it arrives and takes them all when
// the submit comes, so no message of any job needs to exceed kMaxRemoteMessageBytes. Each part is
// checked and encoded as it comes (JobBuilder): a job of millions is never held decoded.
//
// Bounded: one sender holds at most kMaxMessageBytes and max_tasks of parts (what one ipc submit
// could carry); the senders of one key together at most kMaxPartBytesPerKey, and at most
// kMaxPartSendersPerKey of them; all senders together at most kMaxPartBytes, and at most
// kMaxPartSenders of them. Parts with no word from their sender for kRequestTimeout are dropped.
// A sender whose parts were dropped, or went past a bound, learns it when its submit comes:
// Take() says so, and nothing of the job is accepted.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/core/job_builder.h"
#include "common/clock.h"
#include "common/protocol.h"

namespace orq {

inline constexpr size_t kMaxPartSenders = 64;
inline constexpr size_t kMaxPartSendersPerKey = 8;
inline constexpr size_t kMaxPartBytesPerKey = kMaxMessageBytes;
inline constexpr size_t kMaxPartBytes = 2 * kMaxMessageBytes;

class SubmitParts {
 public:
  explicit SubmitParts(size_t max_tasks = kMaxTasksPerJob) : max_tasks_(max_tasks) {}

  // Keeps `tasks` (`bytes` on the wire) after what `from`, of key `key` (its ZAP User-Id), sent
  // before.
  void Add(const std::string& from, const std::string& key, std::vector<TaskSpec> tasks,
           size_t bytes, SteadyTime now);

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
  size_t bytes() const { return bytes_; }

 private:
  struct Held {
    std::string key;
    JobBuilder job;  // the parts so far
    size_t tasks = 0;
    size_t bytes = 0;  // invariant: 0 once over
    SteadyTime last{};
    std::string over;  // why it went past a bound (its tasks were dropped); empty: it did not
  };
  struct PerKey {
    size_t senders = 0;
    size_t bytes = 0;
  };
  void Release(const Held& held);  // its bytes and its place leave the counts
  void Drop(Held& held, std::string why);

  size_t max_tasks_;
  std::unordered_map<std::string, Held> held_;
  std::unordered_map<std::string, PerKey> keys_;  // invariant: the sums of held_ by key
  size_t bytes_ = 0;                              // invariant: the sum of held_'s bytes
};

}  // namespace orq

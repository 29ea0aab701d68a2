// The clients reading a task's output (`orq logs`, `-f` to follow it): where each is in the
// stream of which attempt. OutputReaders adds them and passes on what the worker holding the lease
// sends (OutputMessage); a follower gets each byte once, a note when an attempt starts again,
// and the rest with the outcome once the task ends. Pure: sends to the outbox.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/core/outbox.h"
#include "common/protocol.h"

namespace orq {

class Followers {
 public:
  explicit Followers(Outbox& out) : out_(out) {}

  struct Follower {
    std::string client;
    bool err = false;      // stderr
    bool follow = false;   // until the task ends; else one chunk of what it printed so far
    uint32_t attempt = 0;  // of the output read so far
    uint64_t offset = 0;   // bytes of it sent
  };
  void Add(TaskId id, Follower follower) { followers_[id].push_back(std::move(follower)); }
  bool empty() const { return followers_.empty(); }
  // Whether someone reads the task's output (its worker is to send it: WatchMessage).
  bool Watched(TaskId id) const { return followers_.count(id) > 0; }
  // Output of the attempt that holds the task's lease (the caller checked it does).
  void Output(const OutputMessage& output);
  // The task ended: its followers get the rest of its output, final.
  void End(TaskId id, const TaskOutcome& outcome);
  void ClientGone(const std::string& client);

 private:
  Outbox& out_;
  std::unordered_map<TaskId, std::vector<Follower>, TaskIdHash> followers_;
};

}  // namespace orq

// Result delivery: the clients waiting in `orq gather` (and `orq run`'s stream), what each has
// been sent and acknowledged, and the chunks of results to send next. Results are read from the
// Store in chunks of at most kResultsReplyBytes, and at most kResultsWindow chunks are in
// flight to one client, so a gather of millions of results costs a few chunks of memory however
// slowly the client reads. Pure: BrokerCore tells it what was asked and what ended; it appends
// what to send to the outbox and never calls back.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/core/outbox.h"
#include "broker/core/store.h"
#include "common/protocol.h"

namespace orq {

class Delivery {
 public:
  Delivery(Store& store, Outbox& out) : store_(store), out_(out) {}

  // A gather request, its ids resolved by the core.
  struct Request {
    std::string client;
    bool stream = false;      // GatherRequest::stream: results as they finish
    std::vector<TaskId> ids;  // in the order the client named them, jobs expanded
    // How often each job and each single task was named, so a finishing task updates what is
    // left in O(1) however long `ids` is.
    std::unordered_map<uint64_t, uint32_t> whole_jobs;
    std::unordered_map<TaskId, uint32_t, TaskIdHash> single_tasks;
    std::vector<uint32_t> sizes;  // a stream's first chunk: the size of each id named
  };
  // Starts delivering `request`; `finished` says which of its tasks have ended already.
  void Gather(Request request, const std::vector<bool>& finished);
  // A task ended (its outcome is in the store): the gathers that wait for it count it, a stream
  // sends it at the end of the turn (Flush), a gather now complete starts sending.
  void Ended(TaskId id);
  // Sends what streams got this turn (at the end of each entry point).
  void Flush();
  // A client took a chunk (ResultsAck): its oldest gather with a chunk in flight may send one
  // more.
  void Acknowledged(const std::string& client);
  // The client is gone: its gathers are forgotten.
  void ClientGone(const std::string& client);
  // Whether some gather still waits for, or sends, results of `job` (it may not be forgotten).
  bool Gathering(uint64_t job) const { return by_job_.count(job) > 0; }

  // The outcome of a finished task from the store; should the store have lost it (a journal
  // edited by hand), an outcome that says so rather than a crash.
  static TaskOutcome Stored(Store& store, TaskId id);
  static TaskOutcome Missing(TaskId id);

 private:
  struct Waiter {
    Request request;
    size_t remaining = 0;  // how many of request.ids are unfinished
    // Results to send, from due[sent]: a stream's as they finish, else all of ids at the end.
    std::vector<TaskId> due;
    size_t sent = 0;
    uint32_t inflight = 0;  // chunks sent, not yet acknowledged (kResultsWindow)
    bool complete = false;  // remaining reached 0: what is left is to send the rest of due
  };
  // Sends the waiter's next chunks while fewer than kResultsWindow are unacknowledged; forgets
  // the waiter once its final chunk is out.
  void Pump(uint64_t waiter_id);
  void Forget(uint64_t waiter_id);
  // The outcomes of ids[first, first + n) as replies carry them, read in runs: all n, or the
  // first of them up to about kResultsReplyBytes (at least one).
  std::vector<TaskOutcome> Outcomes(const std::vector<TaskId>& ids, size_t first, size_t n) const;

  Store& store_;
  Outbox& out_;
  std::unordered_map<uint64_t, Waiter> waiters_;
  uint64_t next_waiter_ = 1;
  // The gathers that name each job or one of its tasks, in the order they came.
  std::unordered_map<uint64_t, std::vector<uint64_t>> by_job_;
  std::vector<uint64_t> streams_due_;  // streaming waiters with results to send
};

}  // namespace orq

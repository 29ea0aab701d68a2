// The worker's protocol side as a pure state machine: registration with its slots, the leases it
// holds, batching of outcomes, heartbeats both ways and the broker's liveness. The shell
// (worker/worker.cc) feeds it messages, finished tasks and the time, and carries out the actions
// it returns: messages to send, tasks to start or cancel, reconnect or exit.
#pragma once

#include <chrono>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/protocol.h"

namespace orq {

struct WorkerOptions {
  int64_t pid = 0;
  std::string host;  // this host's name, for the broker's status
  uint32_t threads = 1;
  Slots slots{};
  std::vector<ResourceNeed> resources;  // what it offers (ReadyMessage::resources)
  std::vector<std::string> queues;      // the queues it serves; empty: every queue
  std::chrono::milliseconds heartbeat_interval = kHeartbeatInterval;
  int liveness = kHeartbeatLiveness;
  // Leaves (says goodbye and exits) after this long with no task; zero: never (orq alloc's
  // workers: --idle-timeout).
  std::chrono::milliseconds idle_timeout{0};
  // Leaves at this time, handing back what still runs (an allocation's time limit, less a
  // margin: --lifetime); the broker gives it no task whose time request ends later.
  SteadyTime ends_at = SteadyTime::max();
  std::string allocation;  // "QUEUE/JOBID" when an allocation started it (--allocation)
};

struct WorkerActions {
  std::vector<Message> send;
  std::vector<Assignment> start;
  std::vector<TaskId> cancel;
  std::vector<TaskId> watch;                   // send these running tasks' output as it comes
  std::vector<Lease> drop_output;              // delete these attempts' spill files (orq forget)
  std::vector<ReadOutputMessage> read_output;  // send these pieces of spill files (orq logs)
  bool reconnect = false;  // close the socket, open a new one, then call Connected()
  bool exit = false;       // kill what still runs, say goodbye, exit
  std::string leaving;     // why it leaves of its own accord (idle, out of time), for the log
  std::string refused;     // the broker refused this worker, saying this (then exit is set)
};

class WorkerCore {
 public:
  size_t pending() const { return pending_.size(); }  // results not yet sent
  explicit WorkerCore(WorkerOptions options);

  // A (new) connection to the broker: register with our slots and the leases we still hold.
  void Connected(SteadyTime now, WorkerActions& actions);
  // libzmq made the socket's connection again by itself (the broker restarted, or closed it): the
  // broker's silence so far is no reason to open a new socket, and a heartbeat goes at once, so
  // that a broker that does not know us asks us to register (ReregisterMessage) without delay.
  // (Not a Ready of our own: a second one could cross the tasks the first brought.)
  void Reconnected(SteadyTime now, WorkerActions& actions);
  void OnMessage(Message message, SteadyTime now, WorkerActions& actions);
  // A task finished (any status): its outcome waits for Flush().
  void OnDone(TaskOutcome outcome, SteadyTime now);
  // Sends the waiting outcomes, in as few messages as the size limit allows.
  void Flush(WorkerActions& actions);
  void Tick(SteadyTime now, WorkerActions& actions);
  SteadyTime NextWakeup() const;

  size_t running() const { return running_.size(); }
  bool stopping() const { return stopping_; }
  uint64_t unexpected() const { return unexpected_; }

 private:
  WorkerOptions options_;
  ReadyMessage Ready(SteadyTime now) const;

  std::unordered_map<TaskId, uint32_t, TaskIdHash> running_;  // leased to us, not yet reported:
                                                              // task -> attempt
  std::vector<TaskOutcome> pending_;                          // finished, not yet sent
  // Tasks leased to us again (a newer attempt) while an earlier execution of them still runs here
  // (the broker restarted, or took them back and gave them again): started once that one ends
  // without a result, or answered by its result. Keys are in running_, with the newer attempt.
  std::unordered_map<TaskId, Assignment, TaskIdHash> again_;
  std::vector<Assignment> starts_;  // of again_, to start at the next Flush
  SteadyTime last_heard_{};         // last message from the broker
  // When our last Ready left: a broker that asks again within a heartbeat (it answers each
  // message of a worker it does not know, and a worker coming back sends a few) gets that one,
  // not a second, which could cross the tasks the first brought and cost them an attempt.
  SteadyTime ready_sent_{};
  SteadyTime next_heartbeat_{};
  std::chrono::milliseconds backoff_ = kReconnectMin;
  uint64_t unexpected_ = 0;  // messages a broker should not send to a worker
  bool stopping_ = false;    // told to stop: no new tasks; exit once idle or at stop_deadline_
  SteadyTime stop_deadline_ = SteadyTime::max();
  SteadyTime idle_since_{};  // when it last held no task (a start counts); see idle_timeout
};

}  // namespace orq

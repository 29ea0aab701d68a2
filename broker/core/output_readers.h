// The clients reading tasks' output (`orq logs`): those following a task (Followers), and the
// fetches of output that spilled to files on a worker's host (SpillFetches). Pure: the core
// hands it the request with the task as the table has it, and what workers send; it appends
// what to send to the outbox and never calls back.
#pragma once

#include <string>
#include <vector>

#include "broker/core/followers.h"
#include "broker/core/outbox.h"
#include "broker/core/spill_fetch.h"
#include "broker/core/store.h"
#include "broker/core/task_table.h"
#include "broker/core/worker_pool.h"

namespace orq {

class OutputReaders {
 public:
  explicit OutputReaders(Outbox& out) : out_(out), followers_(out), fetches_(out) {}

  // An `orq logs` request for task `id` (`task` as the table has it).
  void Logs(const std::string& from, const LogsRequest& request, TaskId id, const TaskRecord& task,
            Store& store, const WorkerPool& workers, SteadyTime now);
  // What a worker printed: to the task's followers, if that worker holds `task`'s lease (a worker
  // that lost it may still send a little; anything else would restart the followers' stream).
  void Output(uint32_t worker, const OutputMessage& output, const TaskRecord* task);
  // A worker's piece of a spilled file; false when no fetch asked it for one (noise).
  bool Piece(uint32_t worker, OutputPieceMessage& piece, const WorkerPool& workers) {
    return fetches_.Piece(worker, piece, IdentityOf(workers));
  }
  // The task ended: its followers get the rest.
  void Ended(TaskId id, const TaskOutcome& outcome) {
    if (!followers_.empty()) followers_.End(id, outcome);
  }
  // Whether someone reads the task's output (its worker is to send it: WatchMessage).
  bool Watched(TaskId id) const { return !followers_.empty() && followers_.Watched(id); }
  void WorkerGone(uint32_t worker, const WorkerPool& workers) {
    fetches_.WorkerGone(worker, IdentityOf(workers));
  }
  void Expire(SteadyTime now) { fetches_.Expire(now); }
  void ClientGone(const std::string& client) {
    fetches_.ClientGone(client);
    followers_.ClientGone(client);
  }

 private:
  // The rest of an ended task's stream, from the file it spilled to (LogsRequest::rest).
  void Rest(const std::string& from, const LogsRequest& request, TaskId id, const TaskRecord& task,
            Store& store, const WorkerPool& workers, SteadyTime now);
  static SpillFetches::IdentityOf IdentityOf(const WorkerPool& workers);

  Outbox& out_;
  Followers followers_;
  SpillFetches fetches_;
};

}  // namespace orq

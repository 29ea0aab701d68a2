// The clients reading tasks' output (`orq logs`): those following a task (Followers), and the
// fetches of output that spilled to files on a worker's host (SpillFetches). Pure: the core
// hands it the request with the task as the table has it, and what workers send; it appends
// what to send to `out` and never calls back.
#pragma once

#include <string>
#include <vector>

#include "broker/followers.h"
#include "broker/outgoing.h"
#include "broker/spill_fetch.h"
#include "broker/store.h"
#include "broker/task_table.h"
#include "broker/worker_pool.h"

namespace orq {

class OutputReaders {
 public:
  // An `orq logs` request for task `id` (`task` as the table has it).
  void Logs(const std::string& from, const LogsRequest& request, TaskId id, const TaskRecord& task,
            Store& store, const WorkerPool& workers, SteadyTime now, std::vector<Outgoing>& out);
  // What a worker printed: to the task's followers, if that worker holds `task`'s lease (a worker
  // that lost it may still send a little; anything else would restart the followers' stream).
  void Output(uint32_t worker, const OutputMessage& output, const TaskRecord* task,
              std::vector<Outgoing>& out);
  // A worker's piece of a spilled file; false when no fetch asked it for one (noise).
  bool Piece(uint32_t worker, OutputPieceMessage& piece, const WorkerPool& workers,
             std::vector<Outgoing>& out) {
    return fetches_.Piece(worker, piece, IdentityOf(workers), out);
  }
  // The task ended: its followers get the rest.
  void Ended(TaskId id, const TaskOutcome& outcome, std::vector<Outgoing>& out) {
    if (!followers_.empty()) followers_.End(id, outcome, out);
  }
  // Whether someone reads the task's output (its worker is to send it: WatchMessage).
  bool Watched(TaskId id) const { return !followers_.empty() && followers_.Watched(id); }
  void WorkerGone(uint32_t worker, const WorkerPool& workers, std::vector<Outgoing>& out) {
    fetches_.WorkerGone(worker, IdentityOf(workers), out);
  }
  void Expire(SteadyTime now, std::vector<Outgoing>& out) { fetches_.Expire(now, out); }
  void ClientGone(const std::string& client) {
    fetches_.ClientGone(client);
    followers_.ClientGone(client);
  }

 private:
  // The rest of an ended task's stream, from the file it spilled to (LogsRequest::rest).
  void Rest(const std::string& from, const LogsRequest& request, TaskId id, const TaskRecord& task,
            Store& store, const WorkerPool& workers, SteadyTime now, std::vector<Outgoing>& out);
  static SpillFetches::IdentityOf IdentityOf(const WorkerPool& workers);

  Followers followers_;
  SpillFetches fetches_;
};

}  // namespace orq

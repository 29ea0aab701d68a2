#include "broker/core/output_readers.h"

#include "broker/core/delivery.h"
#include "common/ids.h"

namespace orq {

void OutputReaders::Logs(const std::string& from, const LogsRequest& request, TaskId id,
                         const TaskRecord& task, Store& store, const WorkerPool& workers,
                         SteadyTime now) {
  if (request.rest) return Rest(from, request, id, task, store, workers, now);
  const Followers::Follower follower{from, request.err, request.follow, task.attempt, 0};
  switch (task.state()) {
    case TaskState::kFinished:
      followers_.Add(id, follower);
      return followers_.End(id, Delivery::Stored(store, id));
    case TaskState::kWaiting:
    case TaskState::kQueued:
    case TaskState::kDelayed:
      if (!request.follow)
        return out_.Send(
            {from, LogChunk{"", true, FormatTaskId(id) + " has not started yet", "", ""}});
      followers_.Add(id, follower);  // told to its worker when it is leased (Watched)
      return;
    case TaskState::kRunning:
      followers_.Add(id, follower);
      // Its worker sends what it printed so far at once, then the rest as it comes.
      return out_.Send({workers.at(task.running().worker).identity, WatchMessage{{id}}});
  }
}

void OutputReaders::Rest(const std::string& from, const LogsRequest& request, TaskId id,
                         const TaskRecord& task, Store& store, const WorkerPool& workers,
                         SteadyTime now) {
  const std::string stream = request.err ? "stderr" : "stdout";
  if (task.state() != TaskState::kFinished)
    return out_.Send({from, LogChunk{"", true,
                                     FormatTaskId(id) + " runs again: its " + stream +
                                         " starts again (orq logs " + FormatTaskId(id) + ")"}});
  const TaskOutcome outcome = Delivery::Stored(store, id);
  const ShellOutput::More* more = outcome.shell ? outcome.shell->more.get() : nullptr;
  const std::string file = more ? (request.err ? more->stderr_file : more->stdout_file) : "";
  if (file.empty())
    return out_.Send({from, LogChunk{"", true, "its " + stream + " did not go to a file"}});
  // The broker named the file (absolute: a local worker's, in this host's $ORQ_HOME; else in the
  // $ORQ_HOME of the remote worker on its host), so every local worker can read a local one, and
  // the remote workers of that host may have a remote one.
  const bool local = file[0] == '/';
  std::vector<uint32_t> holders = workers.Readers(local, more->host, more->key);
  const std::string where =
      local ? file : file + " in the $ORQ_HOME of its worker on " + more->host;
  fetches_.Begin({from, {id, outcome.attempt}, request.err, request.offset, where},
                 std::move(holders), now, IdentityOf(workers));
}

void OutputReaders::Output(uint32_t worker, const OutputMessage& output, const TaskRecord* task) {
  if (followers_.empty() || !task || task->state() != TaskState::kRunning ||
      task->attempt != output.attempt || task->running().worker != worker)
    return;
  followers_.Output(output);
}

SpillFetches::IdentityOf OutputReaders::IdentityOf(const WorkerPool& workers) {
  return [&workers](uint32_t worker) -> const std::string* {
    const Worker* w = workers.Find(worker);
    return w ? &w->identity : nullptr;
  };
}

}  // namespace orq

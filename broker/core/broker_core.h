// The broker's scheduling logic as a pure state machine. The shell's route (broker/broker.cc)
// hands it each decoded message it owns with the time it arrived, and calls Tick() when
// NextWakeup() comes; what the core decides to send goes into the outbox it was given, which the
// shell takes once a turn. It owns no socket, reads no clock and starts no thread, so tests drive
// it with a fake clock (core_fixture.h), through the same entries.
//
// It keeps the lifecycle (submit, dispatch, finish, cancel, retry, a lease lost) and calls its
// parts, which own their state and never call back: the task table (broker/core/task_table.h), the
// tasks' specs read back from the store in windows (spec_windows.h; a job comes in through
// job_builder.h), the ready and delayed queues (queues.h), the worker pool (worker_pool.h), limits
// and locks with the tasks parked on them (parking.h), a lease's grant and return across the two
// (leases.h), the dependency graph (dependency_graph.h), result delivery (delivery.h, followers.h,
// spill_fetch.h) and the reports (reports.h). Dispatch is credit-based: a worker announces its
// slots when it registers and is never sent more tasks than it has free; each result frees one
// slot.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "broker/core/delivery.h"
#include "broker/core/dependency_graph.h"
#include "broker/core/job_builder.h"
#include "broker/core/journal.h"
#include "broker/core/leases.h"
#include "broker/core/outbox.h"
#include "broker/core/output_readers.h"
#include "broker/core/parking.h"
#include "broker/core/queues.h"
#include "broker/core/reports.h"
#include "broker/core/spec_windows.h"
#include "broker/core/store.h"
#include "broker/core/task_table.h"
#include "broker/core/telemetry.h"
#include "broker/core/worker_pool.h"
#include "common/clock.h"
#include "common/protocol.h"

namespace orq {

struct BrokerOptions {
  std::chrono::milliseconds heartbeat_interval = kHeartbeatInterval;
  int liveness = kHeartbeatLiveness;
  int64_t broker_pid = 0;           // for status and pong
  std::string endpoint;             // for status: the ipc:// endpoint local peers use
  std::vector<std::string> listen;  // for status: the TCP endpoints bound (CURVE)
  size_t max_tasks_per_job = kMaxTasksPerJob;
  // Finished jobs are forgotten this long after their last task finished; zero keeps them.
  std::chrono::seconds retention{0};
  // Past this many outcomes kept, the jobs that ended first are forgotten (for a store in memory:
  // the journal keeps them on disk). Zero: no bound.
  uint64_t memory_results = 0;
  uint64_t seed = 1;  // for retry jitter
};

// Who sent a message: its connection's routing id, what it authenticated as (common/protocol.h:
// Role) and its key (its ZAP User-Id; the same for every local peer).
struct Peer {
  const std::string& identity;
  Role role = Role::kLocal;
  const std::string& key;
};

class BrokerCore {
  struct Sender;  // (private, below)

 public:
  // Sends through `out` (the broker process's one outbox, broker/core/outbox.h), as do its parts.
  BrokerCore(BrokerOptions options, Store& store, Journal& journal, Outbox& out);

  // Loads jobs recovered from the journal, before any message: finished tasks keep their outcome,
  // the others are queued (delayed ones and retries at their time; running ones for a new attempt).
  void Restore(std::vector<RecoveredJob> jobs, SteadyTime now, double wall_now);
  // Sets the limits the journal kept (orq limit set), before Restore().
  void RestoreLimits(const std::vector<LimitSpec>& limits, SteadyTime now);

  // The route into the core (the broker process's one visit over what it receives is
  // BrokerShell::Route, broker/broker.cc). First Admit(), for every message from a peer: a
  // message not for the broker, or outside what the peer's role may send, is counted, and a
  // request so refused is answered with kForbidden. Then the message goes to its owner: for the
  // core, Handle() of the messages it owns (Owns<M>), Submit() of a job whose tasks the shell put
  // together, Status() with what only the shell knows. Tests come in the same way.
  bool Admit(const Peer& from, Command command);
  // Whether the core owns message type M: it has a handler for it (On).
  template <typename M, typename Core = BrokerCore>
  static constexpr bool Owns = requires(Core& core, const typename Core::Sender& from, M& m) {
    core.On(from, m);
  };
  // A message the core owns from an admitted peer, received at `now`.
  template <typename M>
  requires Owns<M>
  void Handle(const Peer& from, M message, SteadyTime now) {
    now_ = now;
    const Sender sender = Identify(from);
    if (sender.impostor) return;
    On(sender, message);
    EndTurn();
  }
  // A submit whose tasks are in `job` (put together by the shell from its parts, or made from the
  // request's own tasks: JobBuilder(std::move(request.tasks))).
  void Submit(const Peer& from, const SubmitRequest& request, JobBuilder job, SteadyTime now);
  // A status request; `allocs`: the allocation queues (the shell runs them).
  void Status(const Peer& from, const StatusRequest& request, std::vector<AllocQueueInfo> allocs,
              SteadyTime now);
  // A frame from `from` that did not decode: counted, and the sender is told if it is a client.
  void HandleMalformed(const std::string& from, const std::string& what);
  // Sending to `peer` failed (it is gone): forget its gather requests.
  void PeerUnreachable(const std::string& peer);
  // The key of `peer` was revoked and its connection dropped: a worker loses its leases as a lost
  // worker does, a client its gather requests.
  void PeerRevoked(const std::string& peer);
  // A worker process is known to be dead (its supervisor reaped it): its leases go back to the
  // queue now, without waiting for missed heartbeats.
  void WorkerExited(int64_t pid);
  // Tells the worker with this pid to take no more tasks, finish what it runs and leave (orq
  // scale down). False when no registered worker has that pid.
  bool RetireWorker(int64_t pid);
  // Allocation queues (orq alloc; the shell runs them, alloc/policy.h decides): the tasks waiting
  // at `now` that a worker of `shape` could run, by class (broker/core/reports.h: AllocDemand).
  std::array<uint64_t, kTaskClassCount> AllocDemand(const AllocQueueSpec& shape, uint64_t budget,
                                                    SteadyTime now);
  // The workers registered now by allocation ("QUEUE/JOBID"), with the most slots of each class
  // that one of them has.
  struct AllocWorkers {
    uint32_t count = 0;
    Slots slots{};
  };
  std::map<std::string, AllocWorkers> AllocationWorkers() const;
  // The batch system says the allocation is gone: its workers still registered lose their
  // leases now, as lost workers do (their heartbeats would stop within seconds anyway).
  void AllocationGone(const std::string& allocation, const std::string& why);
  // Stop accepting work and tell every worker to stop (SIGTERM to the broker, or `orq down`).
  void BeginShutdown();
  // Time has passed: delayed tasks come due, heartbeats go out, silent workers lose their leases.
  void Tick(SteadyTime now);
  // When Tick() next has something to do.
  SteadyTime NextWakeup() const;

  // The journal cannot be written (its disk is full): while `problem` is not empty, submits and
  // retries are refused with kDiskFull and no task starts (tasks running go on, and their results
  // wait in the journal's buffer); status shows it. Empty again: dispatch resumes.
  void SetJournalProblem(std::string problem);

  bool shutting_down() const { return shutting_down_; }
  // Attempts of forgotten jobs' tasks whose output spilled to files: the shell removes a local
  // worker's (in its own output directory) and asks the workers on a remote one's host to.
  struct SpilledOutput {
    Lease attempt;
    std::string host;
    std::string key;     // a remote worker's: the key of the worker that wrote it
    bool local = false;  // a local worker's: in this broker's $ORQ_HOME/output
  };
  std::vector<SpilledOutput> TakeForgottenOutput() { return std::exchange(forgotten_output_, {}); }
  // Workers registered with `key`, but for the one on connection `identity` (which registers
  // again in place of itself).
  size_t WorkersOfKey(const std::string& key, const std::string& identity) const;
  // The identities of the remote workers connected from `host` with `key`.
  std::vector<std::string> RemoteWorkersOn(const std::string& host, const std::string& key) const;
  const BrokerCounters& counters() const { return counters_; }
  // The TCP endpoints the shell bound, for status (it binds them after the journal is restored).
  void SetListening(std::vector<std::string> endpoints) { options_.listen = std::move(endpoints); }
  // The shell adds what only it sees (handshakes refused before any message).
  BrokerCounters& counters() { return counters_; }
  size_t worker_count() const { return workers_.size(); }
  // Counters, histograms and events for those who watch (the shell adds the journal's).
  Metrics& metrics() { return telemetry_.metrics(); }
  const Telemetry& telemetry() const { return telemetry_; }
  // For tests: the running tasks, and the leases that hold their specs (always as many).
  std::pair<uint64_t, size_t> running_and_held() const {
    size_t leases = 0;
    for (const auto& [id, w] : workers_.all()) leases += w.leases.size();
    return {tasks_.count(TaskState::kRunning), leases};
  }

 private:
  // A peer as the core knows it: a worker's number when it is a registered worker.
  struct Sender {
    const Peer& peer;
    const std::string& identity;
    Worker* worker = nullptr;  // null: not a registered worker (a client, or one not yet)
    uint32_t worker_id = 0;
    bool impostor = false;  // another key on a registered worker's routing id: dropped, counted
  };
  // Who `from` is; a registered worker's last_seen is now_.
  Sender Identify(const Peer& from);

  // The handlers of the messages the core owns (Owns<M>), one per message; broker/core/
  // broker_core.cc has the clients', broker/core/dispatch.cc the workers'.
  void On(const Sender& from, GatherRequest& m);
  void On(const Sender& from, CancelRequest& m);
  void On(const Sender& from, ShutdownRequest& m);
  void On(const Sender& from, PingRequest& m);
  void On(const Sender& from, ForgetRequest& m);
  void On(const Sender& from, JobsRequest& m);
  void On(const Sender& from, RetryRequest& m);
  void On(const Sender& from, LogsRequest& m);
  void On(const Sender& from, LimitRequest& m);
  void On(const Sender& from, ExplainRequest& m);
  void On(const Sender& from, EventsRequest& m);
  void On(const Sender& from, TasksRequest& m);
  void On(const Sender& from, ResultsAck& m);
  void On(const Sender& from, OutputMessage& m);
  void On(const Sender& from, OutputPieceMessage& m);
  void On(const Sender& from, ReadyMessage& m);
  void On(const Sender& from, WorkerResultsMessage& m);
  void On(const Sender& from, HeartbeatMessage& m);
  void On(const Sender& from, GoodbyeMessage& m);

  // A submit's checks, then its job added and dispatched (Submit() without the turn's end).
  void Accept(const std::string& from, const SubmitRequest& request, JobBuilder job);
  // Adds a job to the table and the store and places its tasks; returns its number.
  uint64_t AddJob(JobBuilder built, std::shared_ptr<const JobContext> context,
                  std::string key = "");
  // Ends the tasks of `ids` not yet finished as cancelled (`why`); running ones only when
  // `running`, by asking their workers to stop them. Returns how many.
  uint32_t CancelTasks(const std::vector<TaskId>& ids, bool running, const std::string& why);
  // Cancels what the jobs whose --halt decided still hold (halts_due_): run before any lease is
  // handed out, so none of their tasks starts after the decision.
  void Halt();
  // A registering worker's leases: those nobody took since it lost them are adopted (granted
  // again as they were), the others are stale (returned: it must drop them).
  std::vector<TaskId> Adopt(uint32_t worker_id, const Peer& from, const ReadyMessage& ready,
                            const std::unordered_set<TaskId, TaskIdHash>& held);
  // Whether a worker of `key` (and `role`) registering with a lease of `id` may keep it: a worker
  // of that key lost it, or (after our restart, when nobody knows who held it) it is local.
  bool MayAdopt(TaskId id, Role role, const std::string& key) const;
  // Forgets an ended job that no gather reads; false when it may not be forgotten.
  bool ForgetJob(uint64_t job);
  // Schedules a failed task's next attempt after its backoff; false when it has no retries left.
  bool ScheduleRetry(TaskId id, TaskRecord& task, const TaskSpec& spec, const TaskOutcome& failed);
  // The lease of a task whose worker is gone: back to the queue, or worker_lost, or cancelled
  // (`cancelled`: its worker had been told to stop it).
  void LeaseLost(TaskId id, TaskRecord& task, const std::string& why, bool cancelled);
  void Delay(TaskId id, TaskRecord& task, SteadyTime due);
  // A new task with dependencies (in kWaiting): waits for those that have not ended, is released
  // if none is left, or ends dependency_failed if one ended other than ok.
  void Wire(TaskId id, TaskRecord& task, const Needs& needs);
  // A task whose dependencies all ended as it needs: to the queue, or delayed until its delay.
  void Release(TaskId id, TaskRecord& task);
  // A dependency of `dependant` ended: one less to wait for, or the dependant ends
  // dependency_failed. `dependency` names it for people; `outcome` is how it ended (for a whole
  // job, how its first failed task ended), null when it ended ok.
  void DependencyEnded(const Dependant& dependant, const std::string& dependency,
                       const TaskOutcome* outcome);
  // A whole job as a dependency, once it has ended: its name and its first failure (null: none).
  std::pair<std::string, std::optional<TaskOutcome>> JobEnded(uint64_t job_number,
                                                              const JobRecord& job) const;
  // Tells the dependants of the tasks that ended (and of their jobs, once whole) that they ended.
  // Iterative, so that a failure down a chain of 10,000 tasks does not recurse 10,000 deep.
  void NotifyDependants();
  // The end of an entry point: what --halt decided, delivery_.Flush(), compaction, and past
  // BrokerOptions::memory_results, forgetting the jobs that ended first.
  void EndTurn();
  void Enqueue(TaskId id);
  void Enqueue(TaskId id, const TaskSpec& spec);
  // Records the task's one outcome, and tells whoever waits for it. `spec`: the task's, when the
  // caller has it at hand (else it is looked up if needed).
  void Finish(TaskId id, TaskRecord& task, TaskOutcome outcome,
              std::shared_ptr<const TaskSpec> spec = nullptr);
  void Dispatch();
  // Leases queued `task` to worker `w` as part of `message`.
  // A python task's inputs: the results of the tasks it runs after (Assignment::inputs), and
  // their size (a task's and a message's are at most kMaxCallInputBytes).
  std::vector<std::string> Inputs(TaskId id, const TaskSpec& spec);
  static size_t InputBytes(const std::vector<std::string>& inputs);
  // Fails the python tasks (id, input bytes) whose inputs are over kMaxCallInputBytes.
  void EndOverweightCalls(const std::vector<std::pair<TaskId, size_t>>& calls);
  void Assign(uint32_t worker_id, Worker& w, TaskId id, TaskRecord& task,
              std::shared_ptr<const TaskSpec> spec, std::vector<std::string> inputs,
              TasksMessage& message);
  // Queues again the tasks a gate lets back (Parking returns them).
  void Requeue(const std::vector<TaskId>& ids);
  // `lost`: it did not leave of its own accord (silent, or its process died).
  void DropWorker(uint32_t worker_id, const std::string& why, bool lost = false);
  // A task of job `id.job` queued now, as its Queued state records it.
  TaskRecord::Queued QueuedNow(TaskId id);
  // The parts a report reads.
  ReportSources Sources();

  BrokerOptions options_;
  Store& store_;
  Journal& journal_;
  Outbox& out_;  // what to send, in order: the process's one outbox
  std::mt19937_64 random_;
  std::unordered_map<TaskId, std::string, TaskIdHash> last_errors_;  // of retried tasks
  TaskTable tasks_;                                                  // jobs and their tasks
  SpecWindows specs_;     // their specs: read back from the store as dispatch reaches them
  ReadyQueues ready_;     // queued tasks, by named queue and class; may hold stale entries
  DelayedTasks delayed_;  // delayed tasks and retries, by due time; idem
  WorkerPool workers_;
  // Queued tasks whose last lease was lost (its worker dropped, or our restart), not leased since:
  // the key that held it ("" when unknown, after a restart). Only such a lease may be adopted.
  std::unordered_map<TaskId, std::string, TaskIdHash> orphans_;
  Delivery delivery_;  // gathers and streams: what each client was sent, what it took
  std::vector<SpilledOutput> forgotten_output_;
  OutputReaders readers_;  // clients reading tasks' output (orq logs), spilled output fetched
  // Tasks waiting for a task to end, and for every task of a job to end (after: ["j3"]).
  DependencyGraph graph_;
  Parking parking_;                  // limits, locks, and the tasks parked on them
  Leases leases_{parking_};          // granting and returning a lease: pool and parking together
  std::vector<uint64_t> halts_due_;  // jobs whose --halt decided (Finish), for Halt()
  bool notifying_ = false;           // NotifyDependants() is running: Finish() only tells graph_
  SteadyTime next_heartbeat_{};
  SteadyTime now_{};  // the time of the event being handled
  bool shutting_down_ = false;
  std::string journal_problem_;  // see SetJournalProblem(); empty: the journal is healthy
  BrokerCounters counters_;
  Telemetry telemetry_;  // metrics and events for the dashboard and `orq events`
};

}  // namespace orq

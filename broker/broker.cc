#include "broker/broker.h"

#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <utility>
#include <zmq.hpp>

#include "alloc/slurm.h"
#include "broker/admission.h"
#include "broker/allocator.h"
#include "broker/core/broker_core.h"
#include "broker/core/outbox.h"
#include "broker/durability.h"
#include "broker/local_workers.h"
#include "broker/peer_bounds.h"
#include "broker/submit_parts.h"
#include "common/clock.h"
#include "common/errors.h"
#include "common/ids.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/overloaded.h"
#include "common/paths.h"
#include "common/zmq_util.h"

namespace orq {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

volatile std::sig_atomic_t stop_signal = 0;
extern "C" void OnStopSignal(int signal) { stop_signal = signal; }

// After the grace for running tasks, how long workers get to say goodbye before they are killed.
constexpr milliseconds kWorkerExitGrace{3000};
// Messages handled per poll wake-up before the loop commits and sends what it owes: bounds reply
// latency while keeping batches (and group commits) large under load.
constexpr int kBatch = 512;
// How often the broker looks for allow-list edits nobody told it about (`orq access` on a broker
// it could not reach, a hand-deleted entry): revocation takes effect within this long at worst.
constexpr milliseconds kAccessCheckInterval{1000};
// Without a journal (--no-journal), outcomes kept in memory: about 250 MB's worth at most; past
// it, the jobs that ended first are forgotten.
constexpr uint64_t kMemoryResults = 1'000'000;
// Peers' messages over a bound logged one by one, at most; the counter keeps the rest.
constexpr uint64_t kLoggedOverBounds = 100;

// The broker process: the ROUTER socket and its poll loop, the one route by which every message
// reaches its owner (Route), and the parts around the core that own what is not pure: admission
// (ZAP, the allow-list), durability (the journal and its disk), the local workers, the allocation
// queues, large submits' parts, and the spilled output of forgotten jobs.
class BrokerShell {
 public:
  explicit BrokerShell(const BrokerConfig& config)
      : config_(config),
        socket_(MakeSocket(ctx_, zmq::socket_type::router)),
        admission_(
            ctx_, socket_,
            config.keys_dir.empty() ? std::nullopt : std::optional<KeyStore>(config.keys_dir)),
        local_bound_(BindLocal()),
        durability_(config.journal, config.journal_sync),
        core_(Options(config), durability_.store(), durability_.journal(), outbox_),
        local_({config.endpoints.front(), config.threads, config.worker_args, config.heartbeat},
               core_) {
    allocator_.Restore(durability_.Recover(core_));
    // TCP last, once the journal is restored: a remote peer's handshake needs the loop to answer
    // its ZAP request, and hundreds of workers coming back after a restart would otherwise wait
    // in their handshakes (and be closed past the doorman's bounds) while the journal loads.
    listening_ = BindRemote();
    core_.SetListening(listening_);
  }

  ExitCode Run() {
    if (!config_.pid_file.empty())
      WriteOwnerOnlyFile(config_.pid_file, std::to_string(::getpid()) + "\n");
    local_.Start(config_.workers);
    std::printf("ready %s\n", config_.endpoints.front().c_str());
    std::fflush(stdout);
    std::string where = config_.endpoints.front();
    for (const auto& e : listening_) where += " and " + e + " (CURVE)";
    Log("listening on " + where + " with " + std::to_string(config_.workers) + " local workers");
    while (!Stopped()) Turn();
    local_.Stop();
    durability_.Close();
    if (!config_.pid_file.empty()) ::unlink(config_.pid_file.c_str());
    for (const auto& endpoint : config_.endpoints) {
      if (endpoint.rfind("ipc://", 0) == 0) ::unlink(endpoint.substr(6).c_str());
    }
    Log("stopped");
    return ExitCode::kOk;
  }

 private:
  // A signal starts the shutdown; it ends once every worker is gone, or at its deadline.
  bool Stopped() {
    if (stop_signal && !core_.shutting_down()) {
      Log("signal " + std::to_string(stop_signal) + ": shutting down");
      core_.BeginShutdown();
    }
    if (!core_.shutting_down()) return false;
    if (stop_deadline_ == Clock::time_point::max()) {
      stop_deadline_ = Clock::now() + kShutdownGrace + kWorkerExitGrace;
      Log("shutting down: running tasks get " + std::to_string(kShutdownGrace.count()) + " ms");
    }
    return local_.AllGone() || Clock::now() >= stop_deadline_;
  }

  // One loop turn: wait for the socket, ZAP, a child or the next wake-up; take in up to kBatch
  // messages; let time pass; commit and send.
  void Turn() {
    auto now = Clock::now();
    auto wait = std::chrono::duration_cast<milliseconds>(
        std::min(core_.NextWakeup(), allocator_.NextWakeup()) - now);
    wait = std::clamp(wait, milliseconds(0), milliseconds(core_.shutting_down() ? 50 : 1000));
    zmq::pollitem_t items[5] = {{socket_.handle(), 0, ZMQ_POLLIN, 0},
                                {admission_.zap_socket().handle(), 0, ZMQ_POLLIN, 0},
                                {admission_.monitor_socket().handle(), 0, ZMQ_POLLIN, 0},
                                {nullptr, allocator_.wake_fd(), ZMQ_POLLIN, 0},
                                {nullptr, local_.child_fd(), ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, local_.child_fd() >= 0 ? 5 : 4, wait);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    durability_.CheckSpace(Clock::now(), core_);
    if (items[1].revents & ZMQ_POLLIN) admission_.ServeZap(core_.counters());
    if (items[2].revents & ZMQ_POLLIN) admission_.ReadMonitor(core_.counters());
    for (int i = 0; i < kBatch; ++i) {
      auto received = ReceiveMessage(socket_, /*router=*/true);
      if (!received) break;
      Receive(*received, Clock::now());
    }
    now = Clock::now();
    if (now >= next_access_check_) Housekeeping(now);
    // Allocation queues: the backend's answers, and the policy every kAllocStep.
    if (!core_.shutting_down()) allocator_.Step(core_, now, WallNow());
    if (items[4].revents & ZMQ_POLLIN) local_.ChildExited(now);
    if (now >= core_.NextWakeup()) {
      core_.Tick(now);
      local_.Supervise(now);
    }
    Flush();
  }

  void Receive(Received& received, Clock::time_point now) {
    // (Before the message is read: a connection that carried any message is known to the
    // doorman as authenticated.)
    const Role role = admission_.RoleOf(received.identity, received.user_id, received.fd);
    if (!received.message) {
      const std::string& why = received.message.error().sentence;
      Log("malformed message: " + why);
      return core_.HandleMalformed(received.identity, why);
    }
    Route(Peer{received.identity, role, received.user_id}, *received.message, received.bytes, now);
  }

  // The one route into the broker process: every message it receives, each with its owner. A
  // message for the broker without an arm here, or without a handler in the core (On), fails to
  // compile (the last arm).
  void Route(const Peer& from, Message& message, size_t bytes, Clock::time_point now) {
    if (!core_.Admit(from, CommandOf(message))) return;
    std::visit(Overloaded{
                   // Admission: the allow-list, read again.
                   [&](ReloadAccessRequest&) { ReloadAccess(from.identity); },
                   // The local workers.
                   [&](ScaleRequest& m) { outbox_.Send(from.identity, local_.Scale(m.workers)); },
                   // The allocation queues.
                   [&](AllocRequest& m) {
                     outbox_.Send(from.identity, allocator_.Handle(m));
                     allocator_.Step(core_, now, WallNow(), /*plan_now=*/true);
                   },
                   // Submit parts: a large job's first tasks, kept until its submit.
                   [&](SubmitPartRequest& m) {
                     parts_.Add(from.identity, from.key, std::move(m.tasks), bytes, now);
                   },
                   // Submit parts and the journal's disk, then the core.
                   [&](SubmitRequest& m) { Submit(from, m, bytes, now); },
                   // The core, with the allocator's queues.
                   [&](StatusRequest& m) { core_.Status(from, m, allocator_.Infos(), now); },
                   // The peer bounds, then the core.
                   [&](ReadyMessage& m) {
                     if (WorkerWithinBounds(from, m)) core_.Handle(from, std::move(m), now);
                   },
                   [&](WorkerResultsMessage& m) {
                     BoundOutcomes(from, m);
                     core_.Handle(from, std::move(m), now);
                   },
                   // The core: the rest of the broker's messages.
                   [&]<typename M>(M& m) {
                     if constexpr (BrokerCore::Owns<M>) {
                       core_.Handle(from, std::move(m), now);
                     } else {
                       static_assert(!ToBroker(M::kCommand),
                                     "a message for the broker needs an owner: an arm in "
                                     "BrokerShell::Route (broker/broker.cc) or a BrokerCore::On");
                     }
                   },
               },
               message);
  }

  // Binds the ipc endpoints through the gate (the ZAP handler is bound already).
  bool BindLocal() {
    socket_.set(zmq::sockopt::router_mandatory, 1);
    if (config_.max_message_bytes)
      socket_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(config_.max_message_bytes));
    socket_.set(zmq::sockopt::sndhwm, 0);  // replies are bounded by requests: never drop one
    for (const auto& endpoint : config_.endpoints) admission_.Bind(endpoint);
    return true;
  }
  // Then the TCP ones (CURVE). Returns the TCP endpoints bound, which the key store keeps for
  // `orq access add`.
  std::vector<std::string> BindRemote() {
    std::vector<std::string> bound;
    for (const auto& endpoint : config_.listen) bound.push_back(admission_.Bind(endpoint));
    if (!bound.empty()) KeyStore(config_.keys_dir).SaveEndpoints(bound);
    return bound;
  }

  // Every kAccessCheckInterval: submit parts that waited too long go, freed memory goes back
  // to the system, and `orq access` edits made while no one told us take effect.
  void Housekeeping(Clock::time_point now) {
    next_access_check_ = now + kAccessCheckInterval;
    parts_.Expire(now);
    // What ended jobs freed goes back to the system (glibc keeps freed pages in the middle of
    // its heap otherwise): a broker's memory follows its live work, not its history.
    ::malloc_trim(0);
    for (const auto& peer : admission_.ReloadIfChanged()) {
      core_.PeerRevoked(peer);
      ++dropped_untold_;
    }
  }

  // `orq access add/revoke` changed the allow-list: read it again, drop the revoked keys'
  // peers.
  void ReloadAccess(const std::string& from) {
    uint32_t dropped = std::exchange(dropped_untold_, 0);
    for (const auto& peer : admission_.Reload()) {
      core_.PeerRevoked(peer);
      ++dropped;
    }
    outbox_.Send(from, ReloadedReply{static_cast<uint32_t>(admission_.allowed_keys()), dropped});
  }

  // A submit: its parts (if it came in parts) put back in front, then the core decides,
  // unless the parts are incomplete or the journal's disk has no room for the job.
  void Submit(const Peer& from, SubmitRequest& request, size_t bytes, Clock::time_point now) {
    SubmitParts::Taken parts = parts_.Take(from.identity, request.parted);
    if (!parts.problem.empty())
      return outbox_.Send(from.identity, Error{ErrorCode::kBadRequest, parts.problem});
    if (auto room = durability_.RoomFor(bytes + parts.bytes, core_); !room.ok())
      return outbox_.Send(from.identity, std::move(room.error()));
    parts.job.Add(std::exchange(request.tasks, {}));
    core_.Submit(from, request, std::move(parts.job), now);
    allocator_.Hurry(now);  // waiting tasks may want an allocation
  }

  // A worker's registration over a bound (broker/peer_bounds.h), outside its key's scope, or
  // past its key's count of workers is refused with the sentence (the worker logs it and
  // exits).
  bool WorkerWithinBounds(const Peer& from, const ReadyMessage& ready) {
    Expected<void> fits = WorkerFits(from, ready);
    if (fits.ok()) return true;
    const std::string& why = fits.error().sentence;
    OverBound("refused a worker's registration: " + why);
    outbox_.Send(from.identity,
                 Error{ErrorCode::kBadRequest, "the broker refused this worker: " + why});
    return false;
  }
  Expected<void> WorkerFits(const Peer& from, const ReadyMessage& ready) {
    if (auto within = CheckReady(ready); !within.ok()) return within;
    const AccessEntry* entry = admission_.EntryOf(from.key);
    if (entry) {
      if (auto scoped = CheckScope(ready, entry->queues, entry->resources); !scoped.ok())
        return scoped;
    }
    if (const size_t n = core_.WorkersOfKey(from.key, from.identity);
        from.role == Role::kWorker && n >= config_.max_workers_per_key)
      return Fault("its key has " + std::to_string(n) +
                   " workers registered already, the most one key may (orq broker "
                   "--max-workers-per-key)");
    if (!ready.allocation.empty() && from.role != Role::kLocal) {
      const std::string queue = ready.allocation.substr(0, ready.allocation.find('/'));
      if (!entry || entry->name != AllocationKeyName(queue))
        return Fault("it says allocation " + ready.allocation +
                     " started it, but only a worker with that queue's own key (" +
                     AllocationKeyName(queue) + ") may");
    }
    return {};
  }

  // A worker's outcomes over a bound are recorded as the failures they are; the files a
  // task's output spilled to are named here.
  void BoundOutcomes(const Peer& from, WorkerResultsMessage& results) {
    for (TaskOutcome& outcome : results.outcomes) {
      if (auto within = CheckOutcome(outcome); !within.ok()) {
        const std::string& why = within.error().sentence;
        OverBound("a worker's outcome of " + FormatTaskId(outcome.id) + " is over a bound: " + why);
        outcome = OverBounds(outcome, why);
      }
      NameSpills(outcome, from.role == Role::kLocal, from.key);
    }
  }

  // A peer's message over a bound: counted, and logged (the first kLoggedOverBounds).
  void OverBound(const std::string& what) {
    uint64_t& count = core_.counters().over_bounds;
    if (++count <= kLoggedOverBounds)
      Log(what + (count == kLoggedOverBounds ? " (further ones are counted, not logged)" : ""));
  }

  // A worker says which of a task's streams spilled to files, never where: the broker names
  // them from the task and the attempt alone (common/paths.h): in its own output directory
  // for a local worker, in the worker's for a remote one. Nobody opens, prints or deletes a
  // path a peer sent, and a remote worker's file is read and deleted only by workers of
  // `key`, the key that sent it.
  void NameSpills(TaskOutcome& outcome, bool local, const std::string& key) {
    if (!outcome.shell || !outcome.shell->more) return;
    auto more = std::make_shared<ShellOutput::More>(*outcome.shell->more);
    for (bool err : {false, true}) {
      std::string& file = err ? more->stderr_file : more->stdout_file;
      if (file.empty()) continue;
      const std::string name = SpillName(outcome.id.job, outcome.id.index, outcome.attempt, err);
      file = local ? spill_dir_ + "/" + name : "output/" + name;
    }
    more->key = local ? "" : key;
    outcome.shell->more = std::move(more);
  }

  // Forgotten jobs' spilled output, once the forget is committed (a crash before that brings
  // the jobs back, with their files): a local worker's files are removed here (named, not
  // read from anywhere), the workers connected from a remote one's host are asked to remove
  // theirs.
  void ForgetOutput() {
    for (const auto& spilled : forgotten_) {
      const Lease& a = spilled.attempt;
      if (spilled.local) {
        for (bool err : {false, true})
          UnlinkBeneath(spill_dir_ + "/" + SpillName(a.id.job, a.id.index, a.attempt, err));
        continue;
      }
      for (const std::string& worker : core_.RemoteWorkersOn(spilled.host, spilled.key))
        Send({worker, DropOutputMessage{std::vector<Lease>{a}}});
    }
    forgotten_.clear();
  }

  // Sends what the turn produced. Work for workers leaves at once (a lease that a crash loses
  // before the commit is simply leased again); replies to clients leave when durability says
  // (after the journal commit that makes them true).
  void Flush() {
    for (auto& spilled : core_.TakeForgottenOutput()) forgotten_.push_back(std::move(spilled));
    std::vector<Outgoing> replies;
    for (Outgoing& o : outbox_.Take()) {
      if (ToWorker(CommandOf(o.message)))
        Send(o);
      else
        replies.push_back(std::move(o));
    }
    Durability::Committed turn = durability_.Commit(std::move(replies), Clock::now(), core_);
    if (turn.written) ForgetOutput();
    for (const Outgoing& o : turn.replies) Send(o);
  }

  void Send(const Outgoing& o) {
    if (!SendMessage(socket_, o.message, o.to, zmq::send_flags::dontwait))
      core_.PeerUnreachable(o.to);
  }

  static BrokerOptions Options(const BrokerConfig& c) {
    BrokerOptions o;
    o.heartbeat_interval = c.heartbeat;
    o.broker_pid = ::getpid();
    o.endpoint = c.endpoints.front();
    o.retention = c.retention;
    if (c.journal.empty()) o.memory_results = kMemoryResults;
    if (c.max_tasks_per_job) o.max_tasks_per_job = c.max_tasks_per_job;
    o.seed = static_cast<uint64_t>(::getpid()) ^ static_cast<uint64_t>(WallNow() * 1e6);
    return o;
  }

  const BrokerConfig& config_;
  zmq::context_t ctx_;
  zmq::socket_t socket_;
  Admission admission_;                 // made before any bind: its ZAP handler guards them all
  bool local_bound_ = false;            // the ipc endpoints are bound (before the journal loads)
  std::vector<std::string> listening_;  // the TCP endpoints bound (after it is restored)
  Durability durability_;               // the journal, its commits and its disk
  Outbox outbox_;                       // everything the broker sends, taken once a turn (Flush)
  BrokerCore core_;
  LocalWorkers local_;
  SubmitParts parts_;  // large jobs' first tasks, until their submit
  // The allocation queues (orq alloc) and the thread that calls the batch system.
  Allocator allocator_{std::make_unique<SlurmBackend>(SlurmSetup{SelfExecutable(), OrqHome()}),
                       durability_.sqlite()};
  // Where this host's local workers spill output ($ORQ_HOME/output: they share our home).
  const std::string spill_dir_ = SpillDirectory(OrqHome());
  std::vector<BrokerCore::SpilledOutput> forgotten_;  // spilled output of forgotten jobs
  Clock::time_point next_access_check_{};
  Clock::time_point stop_deadline_ = Clock::time_point::max();
  // Connections the access check dropped since `orq access` last told us of a change: the
  // check may see a revoke before the CLI's message arrives, and the CLI reports them as its
  // own.
  uint32_t dropped_untold_ = 0;
};  // namespace orq

}  // namespace

ExitCode RunBroker(const BrokerConfig& config) {
  SetLogComponent("broker");
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // Every descriptor the hard limit allows: strangers' connections are shed before they
  // reach the reserve kept for local peers and the journal (broker/doorman.h).
  RaiseDescriptorLimit();
  try {
    BrokerShell shell(config);
    return shell.Run();
  } catch (const UsageError& e) {
    Log(std::string("cannot serve: ") + e.what());
    return ExitCode::kUsage;
  } catch (const std::exception& e) {  // zmq::error_t, a journal it cannot open
    Log(std::string("cannot serve: ") + e.what());
    return ExitCode::kFailed;
  }
}

}  // namespace orq

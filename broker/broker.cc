#include "broker/broker.h"

#include <malloc.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <utility>
#include <zmq.hpp>

#include "alloc/slurm.h"
#include "broker/admission.h"
#include "broker/allocator.h"
#include "broker/broker_core.h"
#include "broker/journal.h"
#include "broker/journal_space.h"
#include "broker/peer_bounds.h"
#include "broker/restart.h"
#include "broker/submit_parts.h"
#include "common/clock.h"
#include "common/errors.h"
#include "common/ids.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/process.h"
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
// How often the journal's free space is looked at (a statvfs), and how little is "full": below
// it the broker refuses work before a commit fails; it accepts again once the reserve fits and
// twice this is free.
constexpr milliseconds kSpaceCheckInterval{200};
// How long a journal without fsync gathers turns into one commit (see Flush).
constexpr milliseconds kStoreCommitInterval{20};
constexpr uint64_t kLowSpace = 1ull << 20;
// Without a journal (--no-journal), outcomes kept in memory: about 250 MB's worth at most; past
// it, the jobs that ended first are forgotten.
constexpr uint64_t kMemoryResults = 1'000'000;
// Peers' messages over a bound logged one by one, at most; the counter keeps the rest.
constexpr uint64_t kLoggedOverBounds = 100;

struct LocalWorker {
  Process process;
  Clock::time_point started;
  Clock::time_point restart_at;  // when dead: when to start it again
  RestartBackoff backoff;
  bool retiring = false;  // orq scale down: it finishes its tasks and is not started again
};

class BrokerShell {
 public:
  explicit BrokerShell(const BrokerConfig& config)
      : config_(config),
        socket_(MakeSocket(ctx_, zmq::socket_type::router)),
        admission_(
            ctx_, socket_,
            config.keys_dir.empty() ? std::nullopt : std::optional<KeyStore>(config.keys_dir)),
        local_bound_(BindLocal()),
        sqlite_(config.journal.empty() ? nullptr
                                       : SqliteJournal::Open(config.journal, config.journal_sync)),
        core_(Options(config, {}), sqlite_ ? static_cast<Store&>(*sqlite_) : memory_store_,
              sqlite_ ? static_cast<Journal&>(*sqlite_) : null_journal_) {
    if (sqlite_) {
      space_ = std::make_unique<JournalSpace>(config.journal);
      if (!space_->Reserve())
        Log("no room for the journal's reserve of " + Mib(space_->reserve_bytes()) + " beside " +
            config.journal + ": a full disk will be noticed only when a commit fails");
      auto jobs = sqlite_->Load();
      size_t tasks = 0;
      for (const auto& j : jobs) tasks += j.tasks.size();
      core_.RestoreLimits(sqlite_->LoadLimits(), Clock::now());
      core_.Restore(std::move(jobs), Clock::now(), WallNow());
      if (tasks) Log("recovered " + std::to_string(tasks) + " tasks from " + config.journal);
      auto queues = sqlite_->LoadAllocQueues();
      if (!queues.empty())
        Log("recovered " + std::to_string(queues.size()) +
            " allocation queues; asking the batch system how their allocations are");
      allocator_.Restore(std::move(queues));
      // Outcomes decided while restoring (worker_lost, cancelled).
      if (auto failure = sqlite_->Commit()) throw std::runtime_error(*failure);
    }
    // TCP last, once the journal is restored: a remote peer's handshake needs the loop to answer
    // its ZAP request, and hundreds of workers coming back after a restart would otherwise wait
    // in their handshakes (and be closed past the doorman's bounds) while the journal loads.
    listening_ = BindRemote();
    core_.SetListening(listening_);
    // SIGCHLD through a signalfd in the poll set: a dead local worker is noticed at once.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    child_fd_ = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  }
  ~BrokerShell() {
    if (child_fd_ >= 0) ::close(child_fd_);
  }

  ExitCode Run() {
    if (!config_.pid_file.empty())
      WriteOwnerOnlyFile(config_.pid_file, std::to_string(::getpid()) + "\n");
    for (int i = 0; i < config_.workers; ++i) workers_.push_back(StartWorker());
    std::printf("ready %s\n", config_.endpoints.front().c_str());
    std::fflush(stdout);
    std::string where = config_.endpoints.front();
    for (const auto& e : listening_) where += " and " + e + " (CURVE)";
    Log("listening on " + where + " with " + std::to_string(config_.workers) + " local workers");

    Clock::time_point stop_deadline = Clock::time_point::max();
    for (;;) {
      if (stop_signal && !core_.shutting_down()) {
        Log("signal " + std::to_string(stop_signal) + ": shutting down");
        core_.BeginShutdown();
        core_.DrainOutbox(out_);
      }
      if (core_.shutting_down()) {
        if (stop_deadline == Clock::time_point::max()) {
          stop_deadline = Clock::now() + kShutdownGrace + kWorkerExitGrace;
          Log("shutting down: running tasks get " + std::to_string(kShutdownGrace.count()) + " ms");
        }
        if (AllWorkersGone() || Clock::now() >= stop_deadline) break;
      }
      auto now = Clock::now();
      auto wait = std::chrono::duration_cast<milliseconds>(
          std::min(core_.NextWakeup(), allocator_.NextWakeup()) - now);
      wait = std::clamp(wait, milliseconds(0), milliseconds(core_.shutting_down() ? 50 : 1000));
      zmq::pollitem_t items[5] = {{socket_.handle(), 0, ZMQ_POLLIN, 0},
                                  {admission_.zap_socket().handle(), 0, ZMQ_POLLIN, 0},
                                  {admission_.monitor_socket().handle(), 0, ZMQ_POLLIN, 0},
                                  {nullptr, allocator_.wake_fd(), ZMQ_POLLIN, 0},
                                  {nullptr, child_fd_, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, child_fd_ >= 0 ? 5 : 4, wait);
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      CheckSpace(Clock::now());
      if (items[1].revents & ZMQ_POLLIN) admission_.ServeZap(core_.counters());
      if (items[2].revents & ZMQ_POLLIN) admission_.ReadMonitor(core_.counters());
      for (int i = 0; i < kBatch; ++i) {
        auto received = ReceiveMessage(socket_, /*router=*/true);
        if (!received) break;
        now = Clock::now();
        const Role role = admission_.RoleOf(received->identity, received->user_id, received->fd);
        if (!received->message) {
          const std::string& why = received->message.error().sentence;
          Log("malformed message: " + why);
          core_.HandleMalformed(received->identity, why);
          core_.DrainOutbox(out_);
        } else if (std::holds_alternative<ReloadAccessRequest>(*received->message) &&
                   MaySend(role, Command::kReloadAccess)) {
          ReloadAccess(received->identity);
        } else if (auto* scale = std::get_if<ScaleRequest>(&*received->message);
                   scale && MaySend(role, Command::kScale)) {
          Scale(received->identity, scale->workers);
        } else if (auto* alloc = std::get_if<AllocRequest>(&*received->message);
                   alloc && MaySend(role, Command::kAlloc)) {
          out_.push_back({received->identity, allocator_.Handle(*alloc)});
          allocator_.Step(core_, now, WallNow(), /*plan_now=*/true);
          core_.DrainOutbox(out_);
        } else if (auto* part = std::get_if<SubmitPartRequest>(&*received->message);
                   part && MaySend(role, Command::kSubmitPart)) {
          parts_.Add(received->identity, received->user_id, std::move(part->tasks), received->bytes,
                     now);
        } else if (auto* submit = std::get_if<SubmitRequest>(&*received->message);
                   submit && MaySend(role, Command::kSubmit)) {
          Submit(received->identity, std::move(*submit), received->bytes, now);
        } else if (WithinBounds(received->identity, *received->message, role, received->user_id)) {
          core_.Handle(received->identity, std::move(*received->message), now, role,
                       received->user_id);
          core_.DrainOutbox(out_);
        }
      }
      now = Clock::now();
      if (now >= next_access_check_) {  // `orq access` edits made while no one told us
        next_access_check_ = now + kAccessCheckInterval;
        parts_.Expire(now);
        // What ended jobs freed goes back to the system (glibc keeps freed pages in the middle
        // of its heap otherwise): a broker's memory follows its live work, not its history.
        ::malloc_trim(0);
        for (const auto& peer : admission_.ReloadIfChanged()) {
          core_.PeerRevoked(peer);
          core_.DrainOutbox(out_);
          ++dropped_untold_;
        }
      }
      // Allocation queues: the backend's answers, and the policy every kAllocStep.
      if (!core_.shutting_down()) {
        allocator_.Step(core_, now, WallNow());
        core_.DrainOutbox(out_);
      }
      if (items[4].revents & ZMQ_POLLIN) {
        signalfd_siginfo info;
        while (::read(child_fd_, &info, sizeof info) == sizeof info) {
        }
        Supervise(now);
      }
      if (now >= core_.NextWakeup()) {
        core_.Tick(now);
        core_.DrainOutbox(out_);
        Supervise(now);
      }
      Flush();
    }
    StopWorkers();
    if (sqlite_) {
      if (auto failure = sqlite_->Commit())
        Log("stopping without writing the last results (" + *failure +
            "): their tasks run again after a restart");
    }
    if (!config_.pid_file.empty()) ::unlink(config_.pid_file.c_str());
    for (const auto& endpoint : config_.endpoints) {
      if (endpoint.rfind("ipc://", 0) == 0) ::unlink(endpoint.substr(6).c_str());
    }
    Log("stopped");
    return ExitCode::kOk;
  }

 private:
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

  // `orq access add/revoke` changed the allow-list: read it again, drop the revoked keys' peers.
  void ReloadAccess(const std::string& from) {
    uint32_t dropped = std::exchange(dropped_untold_, 0);
    for (const auto& peer : admission_.Reload()) {
      core_.PeerRevoked(peer);
      core_.DrainOutbox(out_);
      ++dropped;
    }
    out_.push_back(
        {from, ReloadedReply{static_cast<uint32_t>(admission_.allowed_keys()), dropped}});
  }

  // A worker's fields over their bounds (broker/peer_bounds.h): its registration is refused with
  // the sentence (the worker logs it and exits), an outcome is recorded as the failure it is.
  // Logged (the first hundred) and counted.
  bool WithinBounds(const std::string& from, Message& message, Role role,
                    const std::string& user_id) {
    uint64_t& count = core_.counters().over_bounds;
    auto note = [&](const std::string& what) {
      if (++count <= kLoggedOverBounds)
        Log(what + (count == kLoggedOverBounds ? " (further ones are counted, not logged)" : ""));
    };
    if (auto* ready = std::get_if<ReadyMessage>(&message);
        ready && MaySend(role, Command::kReady)) {
      auto why = CheckReady(*ready);
      const AccessEntry* entry = admission_.EntryOf(user_id);
      if (!why && entry) why = CheckScope(*ready, entry->queues, entry->resources);
      if (const size_t n = core_.WorkersOfKey(user_id, from);
          !why && role == Role::kWorker && n >= config_.max_workers_per_key)
        why = "its key has " + std::to_string(n) +
              " workers registered already, the most one key may (orq broker "
              "--max-workers-per-key)";
      if (!why && !ready->allocation.empty() && role != Role::kLocal) {
        const std::string queue = ready->allocation.substr(0, ready->allocation.find('/'));
        if (!entry || entry->name != AllocationKeyName(queue))
          why = "it says allocation " + ready->allocation + " started it, but only a worker with " +
                "that queue's own key (" + AllocationKeyName(queue) + ") may";
      }
      if (why) {
        note("refused a worker's registration: " + *why);
        out_.push_back(
            {from, ErrorReply{ErrorCode::kBadRequest, "the broker refused this worker: " + *why}});
        return false;
      }
    } else if (auto* results = std::get_if<WorkerResultsMessage>(&message);
               results && MaySend(role, Command::kWorkerResults)) {
      for (TaskOutcome& outcome : results->outcomes) {
        if (auto why = CheckOutcome(outcome)) {
          note("a worker's outcome of " + FormatTaskId(outcome.id) + " is over a bound: " + *why);
          outcome = OverBounds(outcome, *why);
        }
        NameSpills(outcome, role == Role::kLocal, user_id);
      }
    }
    return true;
  }

  // A worker says which of a task's streams spilled to files, never where: the broker names them
  // from the task and the attempt alone (common/paths.h): in its own output directory for a local
  // worker, in the worker's for a remote one. Nobody opens, prints or deletes a path a peer sent,
  // and a remote worker's file is read and deleted only by workers of `key`, the key that sent it.
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
  // the jobs back, with their files): a local worker's files are removed here (named, not read
  // from anywhere), the workers connected from a remote one's host are asked to remove theirs.
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

  // A submit: its parts (if it came in parts) put back in front, then the core decides, unless
  // the parts are incomplete or the journal's disk has no room for the job.
  void Submit(const std::string& from, SubmitRequest request, size_t bytes, Clock::time_point now) {
    SubmitParts::Taken parts = parts_.Take(from, request.parted);
    if (!parts.problem.empty())
      return out_.push_back({from, ErrorReply{ErrorCode::kBadRequest, parts.problem}});
    if (!RoomFor(from, bytes + parts.bytes)) return;
    parts.job.Add(std::exchange(request.tasks, {}));
    core_.HandleSubmit(from, request, std::move(parts.job), now);
    core_.DrainOutbox(out_);
    allocator_.Hurry(now);  // waiting tasks may want an allocation
  }

  // orq scale: start workers up to `target`, or retire the newest extra ones (they finish their
  // running tasks first).
  void Scale(const std::string& from, uint32_t target) {
    uint32_t active = 0;
    for (const auto& w : workers_) active += !w.retiring;
    const uint32_t before = active;
    if (!core_.shutting_down()) {
      while (active < target) {
        workers_.push_back(StartWorker());
        ++active;
      }
      for (auto it = workers_.rbegin(); it != workers_.rend() && active > target; ++it) {
        if (it->retiring) continue;
        it->retiring = true;
        --active;
        // Not registered yet (or dead): stop it now; else let it finish what it runs.
        if (it->process.pid() > 0 && !core_.RetireWorker(it->process.pid()))
          it->process.Stop(milliseconds(2000));
        core_.DrainOutbox(out_);
      }
    }
    Log("scaled from " + std::to_string(before) + " to " + std::to_string(active) +
        " local workers");
    out_.push_back({from, ScaledReply{before, active}});
  }

  static BrokerOptions Options(const BrokerConfig& c, const std::vector<std::string>& listening) {
    BrokerOptions o;
    o.heartbeat_interval = c.heartbeat;
    o.broker_pid = ::getpid();
    o.endpoint = c.endpoints.front();
    o.listen = listening;
    o.retention = c.retention;
    if (c.journal.empty()) o.memory_results = kMemoryResults;
    if (c.max_tasks_per_job) o.max_tasks_per_job = c.max_tasks_per_job;
    o.seed = static_cast<uint64_t>(::getpid()) ^ static_cast<uint64_t>(WallNow() * 1e6);
    return o;
  }

  LocalWorker StartWorker() {
    SpawnOptions options;
    options.args = {"worker",
                    "--connect",
                    config_.endpoints.front(),
                    "--threads",
                    std::to_string(config_.threads),
                    "--supervised",
                    "--heartbeat-ms",
                    std::to_string(config_.heartbeat.count())};
    options.args.insert(options.args.end(), config_.worker_args.begin(), config_.worker_args.end());
    options.die_with_parent = true;
    options.new_session = true;  // so whatever it leaves behind can be found (KillSession)
    return LocalWorker{Process::SpawnSelf(options), Clock::now(), {}, {}};
  }

  // Keeps the local workers alive: a dead one is started again, with backoff when it dies young.
  // While shutting down, the dead stay dead; a retired one (orq scale) is forgotten once gone.
  void Supervise(Clock::time_point now) {
    for (auto& w : workers_) {
      if (w.process.pid() > 0) {
        const pid_t pid = w.process.pid();
        if (w.process.Running()) continue;
        if (int orphans = KillSession(pid))
          Log("killed " + std::to_string(orphans) + " processes left by worker " +
              std::to_string(pid));
        core_.WorkerExited(pid);
        core_.DrainOutbox(out_);
        if (core_.shutting_down() || w.retiring) continue;
        const milliseconds wait = w.backoff.Died(w.started, now);
        w.restart_at = now + wait;
        Log("worker " + std::to_string(pid) + " " + Describe(*w.process.exit()) +
            "; starting another in " + std::to_string(wait.count()) + " ms");
      } else if (!core_.shutting_down() && !w.retiring && now >= w.restart_at) {
        const auto backoff = w.backoff;
        w = StartWorker();
        w.backoff = backoff;
      }
    }
    std::erase_if(workers_,
                  [](const LocalWorker& w) { return w.retiring && w.process.pid() <= 0; });
  }

  bool AllWorkersGone() {
    for (auto& w : workers_) {
      if (w.process.Running()) return false;
    }
    return core_.worker_count() == 0;
  }

  void StopWorkers() {
    for (auto& w : workers_) {
      if (w.process.Running()) {
        const pid_t pid = w.process.pid();
        Log("worker " + std::to_string(pid) + " did not stop in time; killing it");
        w.process.Stop(milliseconds(0));
        KillSession(pid);
      }
    }
  }

  // Sends what the turn produced. Work for workers leaves at once (a lease that a crash loses
  // before the commit is simply leased again); every reply to a client leaves only after the
  // journal commit, so nothing a client was told can be lost. Replies whose commit failed wait
  // (held_) for one that succeeds. A journal without fsync (orq run's own broker: a store for
  // the run's results that promises nothing past it) is committed every kStoreCommitInterval
  // instead, and replies leave at once: a commit per turn was a tenth of a short shell task's cost.
  void Flush() {
    for (auto& spilled : core_.TakeForgottenOutput()) forgotten_.push_back(std::move(spilled));
    for (auto& o : out_) {
      if (ToWorker(CommandOf(o.message))) Send(o);
      // The allocation queues are the shell's: it adds them to the core's status.
      if (auto* status = std::get_if<StatusReply>(&o.message)) status->allocs = allocator_.Infos();
    }
    const bool store_only = sqlite_ && !config_.journal_sync && held_.empty();
    const auto now = Clock::now();
    bool durable = true;
    if (!store_only || now >= next_commit_) {
      durable = CommitJournal();
      if (durable) ForgetOutput();
      next_commit_ = now + kStoreCommitInterval;
    }
    for (auto& o : out_) {
      if (ToWorker(CommandOf(o.message))) continue;
      if (durable) {
        Send(o);
      } else {
        held_.push_back(std::move(o));
      }
    }
    out_.clear();
  }

  // Commits the journal; false when it cannot. A first failure releases the reserve and tries
  // again, so the turn's commit fits; from then on the broker is in disk trouble (SetProblem).
  bool CommitJournal() {
    if (!sqlite_) return true;
    const bool dirty = sqlite_->dirty();
    const auto started = Clock::now();
    auto failure = sqlite_->Commit();
    if (dirty && !failure)
      core_.metrics().commit.Observe(std::chrono::duration<double>(Clock::now() - started).count());
    if (failure && space_->Release()) {
      Log("the journal could not be written (" + *failure + "); released its reserve of " +
          Mib(space_->reserve_bytes()));
      SetProblem();
      failure = sqlite_->Commit();
    }
    if (failure) {
      if (held_.empty()) Log("the journal cannot be written (" + *failure + "); replies wait");
      SetProblem();
      return false;
    }
    for (auto& o : held_) Send(o);  // decided in earlier turns: before this turn's replies
    held_.clear();
    return true;
  }

  // Every 200 ms, and at once while in trouble: a disk nearly full puts the broker in disk
  // trouble before a commit fails; room for the reserve again ends it.
  void CheckSpace(Clock::time_point now) {
    if (!space_ || now < next_space_check_) return;
    next_space_check_ = now + kSpaceCheckInterval;
    uint64_t bytes = 0;  // the journal and its write-ahead log
    for (const char* suffix : {"", "-wal"}) {
      std::error_code error;
      const auto size = std::filesystem::file_size(config_.journal + suffix, error);
      if (!error) bytes += size;
    }
    core_.metrics().journal_bytes = bytes;
    if (problem_.empty()) {
      if (space_->FreeBytes() < kLowSpace) SetProblem();
      return;
    }
    if (!held_.empty() || sqlite_->dirty() || !space_->Reserve()) return;
    if (space_->FreeBytes() < 2 * kLowSpace) {
      space_->Release();
      return;
    }
    problem_.clear();
    Log("the journal's disk has room again (" + Mib(space_->FreeBytes()) +
        " free): accepting work");
    core_.SetJournalProblem("");
    core_.DrainOutbox(out_);
  }

  void SetProblem() {
    const std::string problem =
        "the journal's disk is full (" + Mib(space_->FreeBytes()) + " free for " + config_.journal +
        "): submits are refused and no new task starts until space is freed";
    if (problem_.empty()) Log(problem);
    problem_ = problem;
    core_.SetJournalProblem(problem);
    core_.DrainOutbox(out_);
  }

  // Whether a submit of `bytes` on the wire from `client` fits in the journal (its specs take
  // about as much again); the reserve is not counted, it is for commits already decided. When it
  // does not, the client is told so (the core does, once the disk is full).
  bool RoomFor(const std::string& client, size_t bytes) {
    if (!space_ || !problem_.empty()) return true;
    const uint64_t free = space_->FreeBytes();
    if (free >= 2 * bytes + kLowSpace) return true;
    if (free < kLowSpace) {
      SetProblem();
      return true;
    }
    out_.push_back({client, ErrorReply{ErrorCode::kDiskFull,
                                       "nothing was accepted: this job needs about " +
                                           Mib(2 * bytes) + " of journal, and its disk has " +
                                           Mib(free) + " free for " + config_.journal}});
    return false;
  }

  static std::string Mib(uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f MiB", bytes / 1048576.0);
    return text;
  }

  void Send(const Outgoing& o) {
    if (!SendMessage(socket_, o.message, o.to, zmq::send_flags::dontwait))
      core_.PeerUnreachable(o.to);
  }

  const BrokerConfig& config_;
  zmq::context_t ctx_;
  zmq::socket_t socket_;
  Admission admission_;                 // made before any bind: its ZAP handler guards them all
  bool local_bound_ = false;            // the ipc endpoints are bound (before the journal loads)
  std::vector<std::string> listening_;  // the TCP endpoints bound (after it is restored)
  MemoryStore memory_store_;            // without a journal (else the journal is the store)
  NullJournal null_journal_;
  std::unique_ptr<SqliteJournal> sqlite_;  // null without a journal
  std::unique_ptr<JournalSpace> space_;    // the journal's disk; null without a journal
  std::string problem_;                    // the disk trouble the core was told of; empty: none
  std::vector<Outgoing> held_;             // client replies whose commit failed, in order
  std::vector<BrokerCore::SpilledOutput> forgotten_;  // spilled output of forgotten jobs
  Clock::time_point next_space_check_{};
  Clock::time_point next_commit_{};  // a journal without fsync: when to commit next (Flush)
  BrokerCore core_;
  Clock::time_point next_access_check_{};
  // Connections the access check dropped since `orq access` last told us of a change: the check
  // may see a revoke before the CLI's message arrives, and the CLI reports them as its own.
  uint32_t dropped_untold_ = 0;
  SubmitParts parts_;  // large jobs' first tasks, until their submit
  // The allocation queues (orq alloc) and the thread that calls the batch system.
  Allocator allocator_{std::make_unique<SlurmBackend>(SlurmSetup{SelfExecutable(), OrqHome()}),
                       sqlite_.get()};
  int child_fd_ = -1;  // signalfd for SIGCHLD
  std::vector<LocalWorker> workers_;
  // Where this host's local workers spill output ($ORQ_HOME/output: they share our home).
  const std::string spill_dir_ = SpillDirectory(OrqHome());
  std::vector<Outgoing> out_;
};

}  // namespace

ExitCode RunBroker(const BrokerConfig& config) {
  SetLogComponent("broker");
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // Every descriptor the hard limit allows: strangers' connections are shed before they reach
  // the reserve kept for local peers and the journal (broker/doorman.h).
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

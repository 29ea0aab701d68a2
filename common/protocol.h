// The orq wire protocol: every message that crosses a socket, in one place.
//
// Peers: clients (the CLI, a DEALER), workers (a DEALER with a routing id of their own) and the
// broker (one ROUTER). Peers on ipc:// are local (the socket lives in the owner's 0700 $ORQ_HOME);
// peers on TCP are always CURVE-encrypted and authenticated, and each has a Role from its key (see
// Role and MaySend below). Every message is three frames after the ROUTER's identity frame:
//
//   frame 0: kProtocolVersion ("ORQ14")
//   frame 1: one byte, a Command below
//   frame 2: the body, encoded by common/codec.h (a compact binary form, no JSON on hot paths)
//
// The codec turns frames into the typed messages below and back; nothing else indexes frames.
// Malformed frames become an Error value (common/error.h), never undefined behaviour.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/error.h"
#include "common/id_ref.h"
#include "common/task_spec.h"

namespace orq {

inline constexpr std::string_view kProtocolVersion = "ORQ14";

// One-byte command codes. Client -> broker requests are 0x1x, broker -> client replies 0x2x,
// worker -> broker 0x3x, broker -> worker 0x4x, local administration (ipc only) 0x5x.
enum class Command : uint8_t {
  kSubmit = 0x10,  // [TaskSpec...]                      -> kSubmitted or kError
  kGather = 0x11,  // [IdRef...] (a job, or one task)     -> kResults... (last has final) or kError
  kStatus = 0x12,  // metrics flag                       -> kStatusReply
  kCancel = 0x13,  // [IdRef...]                         -> kCancelled or kError
  kShutdown = 0x14,    //                                    -> kShutdownAck, then the broker stops
  kPing = 0x15,        //                                    -> kPong
  kForget = 0x16,      // [job...]                           -> kForgotten or kError
  kJobs = 0x17,        // [job...] (none: every job)         -> kJobsReply or kError
  kRetry = 0x18,       // job, all                           -> kSubmitted or kError
  kLogs = 0x19,        // task, stderr, follow (or the rest) -> kLogChunk... (last final) or kError
  kLimit = 0x1a,       // set/remove/list limits              -> kLimits or kError
  kExplain = 0x1b,     // task                               -> kExplained or kError
  kResultsAck = 0x1c,  // a gather's chunk was taken: the broker may send one more (no reply)
  kSubmitPart = 0x1d,  // [TaskSpec...]: the first tasks of the sender's next kSubmit (no reply)
  kEvents = 0x1e,      // after, wait ms, max               -> kEventsReply
  kTaskList = 0x1f,    // job, filter, from, limit           -> kTasksReply or kError

  kSubmitted = 0x20,    // job number, task count
  kResults = 0x21,      // [TaskOutcome...], final flag (gather replies are chunked)
  kStatusReply = 0x22,  // the broker, its workers, task counts and counters
  kCancelled = 0x23,    // how many tasks were cancelled or asked to stop
  kError = 0x24,        // ErrorCode, one sentence for the user
  kPong = 0x25,         // broker pid
  kShutdownAck = 0x26,  //
  kForgotten = 0x27,    // how many jobs were removed
  kReloaded = 0x28,     // keys now on the allow-list, connections of revoked keys dropped
  kJobsReply = 0x29,    // [JobInfo...]
  kScaled = 0x2a,       // local workers before and after
  kLogChunk = 0x2b,     // a task's output: its next bytes, final flag, a note for people
  kLimits = 0x2c,       // [LimitInfo...]: every limit, with holders and waiters
  kExplained = 0x2d,    // a task's state and why it does not run yet, as sentences
  kEventsReply = 0x2e,  // [Event...] after the asked one, the first still kept, the broker's time
  kTasksReply = 0x2f,   // [TaskRow...] of a job, where to go on from

  kReady = 0x30,          // pid, threads, slots per TaskClass (its credits), [Lease...] it runs,
                          // host name
  kWorkerResults = 0x31,  // [TaskOutcome...]: each frees one slot of its task's class
  kHeartbeat = 0x32,      //
  kGoodbye = 0x33,        // the worker is leaving; what it still held is handed back
  kOutput = 0x34,         // a watched task's output: new bytes of stdout and stderr, with offsets
  kOutputPiece = 0x35,    // the bytes of a spill file kReadOutput asked for (or that it has none)

  kTasks = 0x40,        // [Assignment...]: never more than the worker's free slots
  kCancelTasks = 0x41,  // [TaskId...]: stop these if still running, report them cancelled
  kBrokerHeartbeat = 0x42,
  kStop = 0x43,        // grace ms: take no more tasks, let running ones finish within the grace,
                       // kill the rest, say goodbye, exit
  kReregister = 0x44,  // the broker does not know this worker (it was dropped): send kReady again
  kWatch = 0x45,  // [TaskId...]: send these tasks' output as it comes (kOutput), from the start
  kDropOutput = 0x46,  // [Lease...]: delete the files these attempts' output spilled to
  kReadOutput = 0x47,  // fetch, attempt, stream, offset: send a piece of its spill file

  kReloadAccess = 0x50,  // the allow-list in $ORQ_HOME/keys changed (orq access) -> kReloaded
  kScale = 0x51,         // local workers to keep                            -> kScaled
  kAlloc = 0x52,         // add/list/pause/resume/remove allocation queues   -> kAllocReply

  // Replies, continued (0x2x is full).
  kAllocReply = 0x60,  // [AllocQueueInfo...]: the queues, with their allocations
};

// Who a peer is, decided by how its connection was authenticated (broker/zap.h), never by what it
// sends. Local: it came over ipc://, which only the owner of $ORQ_HOME can reach. Client and
// worker: it came over TCP with a CURVE key on that role's allow-list. Revoked: its key was taken
// off the allow-list after it connected; it may send nothing.
enum class Role : uint8_t { kLocal, kClient, kWorker, kRevoked };

// Where a command goes, from its range. The broker takes requests, worker messages and
// administration, and never replies or broker-to-worker messages.
constexpr bool ToBroker(Command c) {
  const auto v = static_cast<uint8_t>(c);
  return (v >= 0x10 && v <= 0x1f) || (v >= 0x30 && v <= 0x3f) || (v >= 0x50 && v <= 0x5f);
}
constexpr bool ToWorker(Command c) {
  const auto v = static_cast<uint8_t>(c);
  return v >= 0x40 && v <= 0x4f;
}
// A request: its sender waits for a reply (an ErrorReply when it is refused).
constexpr bool IsRequest(Command c) {
  const auto v = static_cast<uint8_t>(c);
  return ((v >= 0x10 && v <= 0x1f) || (v >= 0x50 && v <= 0x5f)) && c != Command::kResultsAck &&
         c != Command::kSubmitPart;
}

// What each role may send to the broker. A client key submits, gathers, cancels, asks for status,
// forgets and shuts down; a worker key registers, reports results, heartbeats and says goodbye.
// Neither may do the other's part, and only a local peer administers access.
constexpr bool MaySend(Role role, Command c) {
  const auto v = static_cast<uint8_t>(c);
  switch (role) {
    case Role::kLocal:
      return ToBroker(c);
    case Role::kClient:
      return v >= 0x10 && v <= 0x1f;
    case Role::kWorker:
      return v >= 0x30 && v <= 0x3f;
    case Role::kRevoked:
      return false;
  }
  return false;
}

// Why MaySend() refuses a request of `role` that it refuses (the kForbidden reply says it).
constexpr const char* RefusalOf(Role role) {
  switch (role) {
    case Role::kRevoked:
      return "this key was revoked";
    case Role::kWorker:
      return "a worker key may only register and report results";
    case Role::kClient:
      return "a client key may not administer access; do that on the broker's host";
    case Role::kLocal:
      return "not allowed";
  }
  return "not allowed";
}

std::string_view RoleName(Role role);

// Heartbeats (the ZeroMQ Guide's Paranoid Pirate). The interval is short enough that a lost peer
// is noticed within a few seconds, long enough to cost nothing. Liveness: missed intervals before
// a peer counts as gone.
inline constexpr std::chrono::milliseconds kHeartbeatInterval{1000};
inline constexpr int kHeartbeatLiveness = 3;

// How long running tasks get to finish when the broker shuts down (orq down, SIGTERM) before
// their workers kill them; what is not finished then is handed back in the journal.
inline constexpr std::chrono::milliseconds kShutdownGrace{5000};

// A worker that hears nothing from its broker for kHeartbeatLiveness intervals connects again,
// after this backoff: 1 s doubling to 32 s (Paranoid Pirate), so a broker that is down for long
// is not hammered, and one that comes back is found within half a minute.
inline constexpr std::chrono::milliseconds kReconnectMin{1000};
inline constexpr std::chrono::milliseconds kReconnectMax{32000};

// The CLI: while it waits for a reply (a long gather), it pings the broker every second, and
// counts it gone after 5 s without a word (a broker busy with a large batch answers well within
// that); a request that is not a gather gets its reply within kRequestTimeout or fails.
inline constexpr std::chrono::milliseconds kClientPingInterval{1000};
inline constexpr std::chrono::milliseconds kClientSilenceLimit{5000};
inline constexpr std::chrono::milliseconds kRequestTimeout{30000};

// A TCP peer that has not finished its CURVE handshake within this long is dropped
// (ZMQ_HANDSHAKE_IVL), so half-open handshakes cannot pile up; a slow link still makes it in time.
inline constexpr std::chrono::milliseconds kHandshakeTimeout{5000};
// A TCP connect that has not succeeded within this long is abandoned and retried
// (ZMQ_CONNECT_TIMEOUT): after a cut link, a worker finds its broker again within seconds of the
// link's return instead of waiting out the kernel's SYN backoff.
inline constexpr std::chrono::milliseconds kConnectTimeout{2000};

// Limits on what a peer may send (bounded input). A message over kMaxMessageBytes makes zmq drop
// the connection of its sender; the others are checked where a task spec is validated.
inline constexpr size_t kMaxMessageBytes = 256u << 20;  // ZMQ_MAXMSGSIZE on every socket
// ZMQ_MAXMSGSIZE of the broker's TCP listeners. libzmq reads a whole frame before CURVE looks at
// it, so this is what one stranger's connection can make the broker hold; with
// kMaxPendingHandshakes it bounds what strangers cost together. Everything a TCP peer sends fits
// it: a job goes in parts (kSubmitPart) of about kSubmitPartBytes, a worker's results in batches
// of about kResultBatchBytes, and one task's outcome (two streams of kMaxOutputBytes, its
// command) or spec (kMaxArgvBytes, kMaxEnvBytes) is smaller.
inline constexpr size_t kMaxRemoteMessageBytes = 4u << 20;
inline constexpr size_t kSubmitPartBytes = 1u << 20;
inline constexpr size_t kResultBatchBytes = 1u << 20;
// TCP connections still in their handshake, at most: in all, and from one address. Past either,
// the one that has waited longest (of all, or of that address) is closed and counted (`shed`);
// an honest handshake takes a round trip or two, so it is rarely the oldest.
inline constexpr size_t kMaxPendingHandshakes = 32;
inline constexpr size_t kMaxPendingPerAddress = 8;
// Descriptors the broker keeps free for its ipc clients, local workers and journal: a TCP
// connection accepted into this reserve is closed at once and counted (`shed`). At least
// kMinDescriptorReserve, else an eighth of RLIMIT_NOFILE (which the broker raises to its hard
// limit when it starts).
inline constexpr size_t kMinDescriptorReserve = 64;
// Remote workers one worker key may have registered at once (orq broker --max-workers-per-key);
// past it a registration is refused with the sentence. A key is one trust unit: a node, or a
// cluster's nodes that share it.
inline constexpr size_t kMaxWorkersPerKey = 1024;
inline constexpr size_t kMaxTasksPerMessage = 1024;  // tasks in one TasksMessage
// One gather reply: results up to about kResultsReplyBytes (then one more, always at least one)
// and at most kMaxResultsPerReply of them: large enough to amortise a message, small enough that
// what the broker reads from its journal for one reply, and any reply, is a few MiB whatever the
// outputs (each under 2 * kMaxOutputBytes inline). The CLI prints each chunk as it comes.
inline constexpr size_t kResultsReplyBytes = 1u << 20;
inline constexpr size_t kMaxResultsPerReply = 4096;
// Chunks of a gather's results in flight to one client: the client acknowledges each (kResultsAck)
// and the broker sends no more than this ahead, so a gather of millions of results costs the
// broker, zmq and the client a few chunks of memory, not the whole job, however slowly it reads.
inline constexpr uint32_t kResultsWindow = 8;
inline constexpr size_t kMaxOutputBytes = 1u << 20;  // per stream of a shell task; rest dropped
inline constexpr uint32_t kMaxResourceUnits = 4096;  // units of one resource a worker offers

// A task is named by its job and its index in the job: "j7.2" is job 7, task 2.
struct TaskId {
  uint64_t job = 0;
  uint32_t index = 0;
  friend bool operator==(const TaskId&, const TaskId&) = default;
  friend auto operator<=>(const TaskId&, const TaskId&) = default;
};
struct TaskIdHash {
  size_t operator()(const TaskId& id) const noexcept {
    return std::hash<uint64_t>()(id.job * 0x9E3779B97F4A7C15ull ^ id.index);
  }
};

// How a task ended. Stable numbers: they are on the wire and (issue 3) in the journal.
enum class TaskStatus : uint8_t {
  kOk = 0,
  kFailed = 1,
  kTimeout = 2,
  kCancelled = 3,
  kWorkerLost = 4,
  kDependencyFailed = 5,  // a task it runs after did not end ok (or was cancelled): it never ran
};
// How many TaskStatus values there are: the size of an array indexed by one.
inline constexpr size_t kTaskStatusCount = 6;
static_assert(static_cast<size_t>(TaskStatus::kDependencyFailed) + 1 == kTaskStatusCount,
              "a new TaskStatus: update kTaskStatusCount");

// What a shell task's process left behind.
struct ShellOutput {
  int32_t exit_code = -1;  // its exit code, or 128+signal when a signal killed it
  std::string stdout_text;
  std::string stderr_text;
  bool truncated = false;  // a stream was over kMaxOutputBytes: the rest is in a file, or dropped
  // What few outcomes need, kept out of line so that every outcome stays small.
  struct More {
    // Whether the rest of each stream went to a file on the worker's host, as the broker names
    // it: never a path the worker sent (common/paths.h's SpillName, from the task and attempt
    // alone). Absolute ($ORQ_HOME/output/j7.2.1.out on the broker's host) for a local worker;
    // relative (output/j7.2.1.out, in that worker's $ORQ_HOME) for a remote one. Empty: none.
    // Readers and the broker's clean-up use it only to tell which: they build the path
    // themselves.
    std::string stdout_file, stderr_file;
    std::string host;               // the worker's host, set with a file
    std::vector<std::string> argv;  // the task's command: the broker adds it to gather replies
    // A remote worker's file: the key (Z85) of the worker that held the attempt's lease, set by
    // the broker. Only workers of that key on that host are asked for it, or told to delete it:
    // another key cannot answer for it, whatever host name it registered under.
    std::string key;
  };
  std::shared_ptr<const More> more;  // null: none of it
};

// The outcome of one task, reported by a worker and kept by the broker.
struct TaskOutcome {
  TaskId id;
  TaskStatus status = TaskStatus::kOk;
  uint32_t attempt = 1;
  int64_t worker_pid = 0;
  double started = 0;      // wall-clock seconds since the epoch, for display only
  double finished = 0;     // idem
  std::string result;      // JSON text of the result (empty for shell tasks: the result is stdout)
  std::string error;       // one sentence when status is not ok
  std::string last_error;  // the error of the previous attempt, when it was retried
  std::optional<ShellOutput> shell;  // a shell task that started (or could not start)
};

// A task a worker holds: which task, which attempt (the lease).
struct Lease {
  TaskId id;
  uint32_t attempt = 0;
  friend bool operator==(const Lease&, const Lease&) = default;
};

// Where a job's shell tasks run and with what environment: the submitter's, recorded at submit
// (as pueue does), so `cd /data; orq submit -- ls` lists /data. Kept once per job, never per task:
// an environment is kilobytes, a job may hold millions of tasks. A task's own `cwd` and `env`
// (ShellTask) come on top.
struct JobContext {
  std::string cwd;                              // absolute; empty: the worker's own directory
  std::optional<std::vector<std::string>> env;  // "K=V"; nullopt: the worker's own environment
  // The variables the submitter named (--env, a task file's env): the only ones of `env` that
  // travel to a remote worker, which runs the task in its own environment with these on top (as
  // GNU parallel's --env does for remote hosts). Nullopt: all of `env` travels (--env-all).
  std::optional<std::vector<std::string>> named;
  friend bool operator==(const JobContext&, const JobContext&) = default;
};

// A task handed to a worker: what to run and which attempt this is.
struct Assignment {
  TaskId id;
  uint32_t attempt = 1;
  TaskSpec spec;
  std::shared_ptr<const JobContext> context;  // shell tasks: their job's; null otherwise
  // "K=V" set on top for a shell task: the units of resources it was given
  // (ORQ_RESOURCE_GPU=0,1 and CUDA_VISIBLE_DEVICES=0,1).
  std::vector<std::string> env;
  // A python task's inputs: the result of each task it runs after, in the order of its `after`
  // ("" for a whole job, or a dependency whose outcome is no longer kept).
  std::vector<std::string> inputs;
};

// Every message names its command (kCommand): the codec writes it and dispatches on it, and the
// static_assert after Message proves no two messages share one. A message without a kCommand does
// not compile.

// --- client -> broker (0x1x), and local administration (0x5x) ---
// GNU parallel's --halt, kept by the broker with the job (orq run): once `threshold` of its tasks
// (or that percentage of those ended, once at least 3 have) ended failed (on_failure) or ok, the
// broker cancels the job's tasks that have not started, in the same step, so no task of the job
// starts after the decision; `now` stops its running tasks too ("soon" lets them finish).
// threshold 0: never.
struct HaltPolicy {
  bool now = false;
  bool on_failure = true;
  bool percent = false;
  double threshold = 0;
  bool operator==(const HaltPolicy&) const = default;
};
// Whether the policy has decided, given the job's tasks ended so far.
bool HaltDecided(const HaltPolicy& halt, uint64_t failed, uint64_t succeeded);
// Why a policy from the wire cannot be one (a threshold not finite, negative, a fraction of a
// count, or over 100 %); nullopt when it can.
Expected<void> ValidateHalt(const HaltPolicy& halt);

struct SubmitRequest {  // -> SubmittedReply, or ErrorReply
  static constexpr Command kCommand = Command::kSubmit;
  std::vector<TaskSpec> tasks;
  JobContext context;  // for its shell tasks
  // Idempotency (orq submit --key): while a job submitted with this key is kept, the same key
  // gets that job's id back and submits nothing. Empty: none.
  std::string key;
  // Tasks sent before this in SubmitPartRequests: they come first in the job. The broker checks
  // it got exactly this many, so a lost part never makes a shorter job.
  uint32_t parted = 0;
  HaltPolicy halt;  // (not journaled: orq run's own broker is the one that gets it)
};
inline constexpr size_t kMaxKeyBytes = 256;
// The first tasks of the sender's next SubmitRequest, so that no message of a large job exceeds
// kMaxRemoteMessageBytes: the CLI sends parts of about kSubmitPartBytes, then the SubmitRequest
// with the rest, the context and the key. The broker keeps parts for kRequestTimeout after the
// last; nothing of them is accepted until the SubmitRequest is.
struct SubmitPartRequest {  // no reply
  static constexpr Command kCommand = Command::kSubmitPart;
  std::vector<TaskSpec> tasks;
};
struct GatherRequest {  // -> ResultsReply... (the last one final), or ErrorReply
  static constexpr Command kCommand = Command::kGather;
  std::vector<IdRef> ids;  // jobs and tasks, in the order to print
  // false: every result at once, in the order named, when the last is done. true: results as they
  // finish (those already done first), in finishing order, a chunk per broker loop turn; the
  // client puts them in order (each outcome has its id).
  bool stream = false;
};
struct StatusRequest {  // -> StatusReply
  static constexpr Command kCommand = Command::kStatus;
  bool metrics = false;  // with StatusReply::metrics (the dashboard's /metrics)
};
struct CancelRequest {  // -> CancelledReply, or ErrorReply
  static constexpr Command kCommand = Command::kCancel;
  std::vector<IdRef> ids;  // jobs and tasks
  bool running = true;     // false: cancel only what has not started (GNU parallel's --halt soon)
};
struct ShutdownRequest {  // -> ShutdownAck, then the broker stops
  static constexpr Command kCommand = Command::kShutdown;
};
struct PingRequest {  // -> PongReply
  static constexpr Command kCommand = Command::kPing;
};
struct ForgetRequest {  // -> ForgottenReply, or ErrorReply
  static constexpr Command kCommand = Command::kForget;
  std::vector<uint64_t> jobs;
};
struct LogsRequest {  // -> LogChunk... (the last final), or ErrorReply
  static constexpr Command kCommand = Command::kLogs;
  TaskId task;
  bool err = false;     // its stderr, not its stdout
  bool follow = false;  // until it ends; else what it printed so far
  // The rest of an ended task's stream, which spilled to a file on its worker's host (the final
  // LogChunk named it): from byte `offset` of that file, one LogChunk of at most
  // kOutputPieceBytes, final when the file ends or cannot be had (its note says where it is).
  // The broker fetches it from a connected worker on that host; the client asks for the next
  // piece when it has this one, so nothing piles up anywhere.
  bool rest = false;
  uint64_t offset = 0;
};
inline constexpr size_t kOutputPieceBytes = 1u << 20;
struct LogChunk {
  static constexpr Command kCommand = Command::kLogChunk;
  std::string text;  // the next bytes of the stream
  bool final = true;
  std::string note;  // for people: "j7.2 has not started yet", "attempt 2 started"
  // The final chunk of a stream over kMaxOutputBytes: where the rest is (on the worker's host),
  // as the broker names it (ShellOutput::More), and the attempt whose output it is.
  std::string file, host;
  uint32_t attempt = 0;
};
struct ScaleRequest {  // -> ScaledReply (local peers only; the broker's shell answers it)
  static constexpr Command kCommand = Command::kScale;
  uint32_t workers = 0;  // local worker processes to keep: more are started, extra ones retire
};
struct ScaledReply {
  static constexpr Command kCommand = Command::kScaled;
  uint32_t before = 0, after = 0;
};
struct JobsRequest {  // -> JobsReply, or ErrorReply
  static constexpr Command kCommand = Command::kJobs;
  std::vector<uint64_t> jobs;  // none: every job the broker has
};
struct RetryRequest {  // -> SubmittedReply (the new job), or ErrorReply
  static constexpr Command kCommand = Command::kRetry;
  uint64_t job = 0;
  bool all = false;  // every task, not only those that did not end ok
};
// A limit (orq limit set): at most `max` tasks taking it run at once in the whole cluster (the
// seed's semaphore), and/or at most `rate` of them start per second, with bursts of `burst`.
struct LimitSpec {
  std::string name;
  uint32_t max = 0;    // 0: no bound on how many run at once
  double rate = 0;     // starts per second; 0: no bound on the rate
  uint32_t burst = 0;  // starts at once after a quiet spell (the token bucket's size); 0: 1
  friend bool operator==(const LimitSpec&, const LimitSpec&) = default;
};
struct LimitRequest {  // -> LimitsReply (every limit after the change), or ErrorReply
  static constexpr Command kCommand = Command::kLimit;
  enum class Op : uint8_t { kList = 0, kSet = 1, kRemove = 2 };
  Op op = Op::kList;
  LimitSpec limit;  // kSet: the limit; kRemove: its name
};
// A limit or a lock as `orq limit list` and `orq status` show it.
struct GateInfo {
  std::string name;
  LimitSpec limit;               // a limit: its spec (name empty for a lock)
  std::optional<LockMode> mode;  // a lock: how it is held; nullopt when free
  std::vector<TaskId> holders;   // at most kMaxGateHolders
  uint32_t held = 0;             // all holders
  uint32_t waiting = 0;          // tasks waiting for it (writers, for a lock)
};
inline constexpr size_t kMaxGateHolders = 20;
struct LimitsReply {
  static constexpr Command kCommand = Command::kLimits;
  std::vector<GateInfo> limits;
};
struct ResultsAck {  // no reply: one more chunk of results may come (kResultsWindow)
  static constexpr Command kCommand = Command::kResultsAck;
};
struct ExplainRequest {  // -> ExplainedReply, or ErrorReply
  static constexpr Command kCommand = Command::kExplain;
  TaskId task;
};
// Where a task is in its life. kWaiting: for its dependencies. kQueued: in a ready queue, or
// parked at a gate. kDelayed: for its delay or retry backoff. kRunning: leased to a worker.
// kFinished: its one outcome is stored.
enum class TaskState : uint8_t { kWaiting, kQueued, kDelayed, kRunning, kFinished };
inline constexpr size_t kTaskStateCount = 5;

// One reason why a task does not run yet (`orq explain`), as data: the CLI words it
// (common/words.h), a program reads the fields. Each kind uses the fields its comment names.
struct Reason {
  enum class Kind : uint8_t {
    kDependency,        // for `id` (a task in `state`, or a whole job with `count` tasks
                        // unfinished); `any`: however it ends
    kMoreDependencies,  // and for `count` more
    kDelay,             // its delay; it is eligible in `seconds` (-1: not known)
    kBackoff,           // its retry backoff; it is eligible in `seconds` (-1: not known)
    kRunning,           // attempt `count` runs on worker `pid` on host `name`
    kLockHeld,          // lock `name` is held for `mode` by `holders` (`count` in all)
    kWritersWaiting,    // lock `name` has `count` writers waiting; readers wait behind writers
    kLimitFull,         // limit `name` is at `count`/`max`, held by `holders`
    kLimitRate,         // limit `name` allows `rate` starts a second; the next in `seconds`
    kNoWorkers,         // no worker is registered
    kNoQueueServer,     // no worker serves queue `name`
    kNoWorkerOffers,    // no worker offers `name` (what it wants: "cpus=4,gpu=1")
    kNoRoom,            // every worker that could run it is using `name` (what it wants)
    kNoSlots,           // no worker has slots for `name` (its kind) tasks
    kBehind,            // `count` queued tasks go first (higher priority, or submitted earlier)
    kNextInLine,        // it starts when a worker has a free `name` (its kind) slot
    kNoTimeLeft,        // no worker that serves it has `seconds` (its time request) left
  };
  static constexpr uint8_t kLastKind = static_cast<uint8_t>(Kind::kNoTimeLeft);
  Kind kind = Kind::kNextInLine;
  std::string name;
  IdRef id;
  TaskState state = TaskState::kQueued;
  std::vector<TaskId> holders;  // at most kMaxGateHolders
  uint64_t count = 0;
  uint64_t max = 0;
  double seconds = -1;
  double rate = 0;
  int64_t pid = 0;
  bool any = false;
  LockMode mode = LockMode::kRead;
  bool operator==(const Reason&) const = default;
};
struct ExplainedReply {
  static constexpr Command kCommand = Command::kExplained;
  TaskState state = TaskState::kQueued;
  std::optional<TaskStatus> status;  // kFinished: how it ended
  std::vector<Reason> reasons;       // why it does not run yet; empty: it runs, or it ended
  double eligible_in = -1;           // delayed: seconds until it may start; -1: not delayed
};
struct ReloadAccessRequest {  // -> ReloadedReply (local peers only)
  static constexpr Command kCommand = Command::kReloadAccess;
};

// --- What the dashboard (web/) and `orq events` read ---

// Bounds of the latency histograms' buckets, in seconds (Prometheus' `le`); one more bucket
// counts what is over the last.
inline constexpr std::array<double, 14> kLatencyBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 600};
struct Histogram {
  std::vector<uint64_t> counts = std::vector<uint64_t>(kLatencyBuckets.size() + 1);  // per bucket
  double sum = 0;                                                                    // seconds
  void Observe(double seconds);
  uint64_t count() const;
};
// Counters and histograms since the broker started (`/metrics`; Prometheus takes their rates).
struct Metrics {
  // Tasks submitted, by kind (TaskBody's index).
  std::vector<uint64_t> submitted = std::vector<uint64_t>(kTaskKindCount);
  // Tasks that ended, by kind and status: [kind * kTaskStatusCount + status].
  std::vector<uint64_t> finished = std::vector<uint64_t>(kTaskKindCount * kTaskStatusCount);
  Histogram dispatch;          // from queued (ready to start) to leased to a worker
  Histogram end_to_end;        // from its job's submission to its end
  Histogram commit;            // the journal's commits (the shell measures them)
  uint64_t journal_bytes = 0;  // the journal's files on disk; 0 without one
  uint64_t events = 0;         // events so far (the last one's number)
  uint64_t jobs_submitted = 0;
};

// Something that happened, as `orq events` and the dashboard's task stream see it. Each kind
// uses the fields its comment names.
struct Event {
  enum class Kind : uint8_t {
    kJobSubmitted,  // job `task.job` of `count` tasks
    kTaskStarted,   // `task`'s attempt `count` on worker `worker`; `kind` is its TaskBody index
    kTaskEnded,     // `task` ended `status` (attempt `count`, worker `worker`: 0 if it never ran)
    kWorkerJoined,  // worker `worker` on `host`
    kWorkerLeft,  // worker `worker` on `host` is gone (it left, or was lost: `status` kWorkerLost)
  };
  static constexpr uint8_t kLastKind = static_cast<uint8_t>(Kind::kWorkerLeft);
  uint64_t seq = 0;  // 1, 2, ...: its number
  double at = 0;     // seconds on the broker's monotonic clock (EventsReply::now is on it too)
  Kind kind = Kind::kTaskStarted;
  TaskId task;
  uint32_t count = 0;
  int64_t worker = 0;  // pid
  TaskStatus status = TaskStatus::kOk;
  uint8_t task_kind = 0;
  std::string host;
  bool operator==(const Event&) const = default;
};
std::string_view EventKindName(Event::Kind kind);
// Events the broker keeps for readers who come back for more: a reader further behind misses
// the oldest (EventsReply::first says so).
inline constexpr size_t kEventsKept = 16384;
inline constexpr uint32_t kMaxEventsPerReply = 4096;
inline constexpr uint32_t kMaxEventsWaitMs = 30000;
struct EventsRequest {  // -> EventsReply
  static constexpr Command kCommand = Command::kEvents;
  uint64_t after = 0;    // the last event the reader has; 0: from the oldest kept
  uint32_t wait_ms = 0;  // none newer yet: answer when one comes, or after this long (at most
                         // kMaxEventsWaitMs)
  uint32_t max = kMaxEventsPerReply;
};
struct EventsReply {
  static constexpr Command kCommand = Command::kEventsReply;
  std::vector<Event> events;  // after `after`, in order
  uint64_t first = 0;         // the oldest event kept: events before it are lost to this reader
  uint64_t last = 0;          // the newest event so far
  double now = 0;             // the broker's monotonic clock (Event::at)
};

// Which of a job's tasks `orq tasks` and the dashboard's job page list.
enum class TaskFilter : uint8_t {
  kAll,
  kWaiting,
  kQueued,
  kDelayed,
  kRunning,
  kFinished,
  kOk,
  kFailed,
  kCancelled
};
inline constexpr uint8_t kLastTaskFilter = static_cast<uint8_t>(TaskFilter::kCancelled);
std::string_view TaskFilterName(TaskFilter filter);
std::optional<TaskFilter> TaskFilterNamed(std::string_view name);
struct TasksRequest {  // -> TasksReply, or ErrorReply
  static constexpr Command kCommand = Command::kTaskList;
  uint64_t job = 0;
  TaskFilter filter = TaskFilter::kAll;
  uint32_t from = 0;     // the first task (index) to look at
  uint32_t limit = 100;  // rows at most (kMaxTaskRows)
};
inline constexpr uint32_t kMaxTaskRows = 1000;
// Tasks one TasksRequest looks at, at most, so that a filter over a job of millions costs the
// broker a bounded turn: the reply says where to go on from.
inline constexpr uint32_t kTaskScanBudget = 65536;
struct TaskRow {
  uint32_t index = 0;
  TaskState state = TaskState::kQueued;
  std::optional<TaskStatus> status;  // kFinished: how it ended
  uint32_t attempt = 0;
  int64_t worker = 0;        // running, or the attempt that ended: its worker's pid
  double started = 0;        // wall-clock seconds (0: not known)
  double finished = 0;       // idem
  std::string label;         // its command ("gzip a.txt"), or its kind
  std::vector<IdRef> after;  // what it runs after
  std::string error;         // how it failed, when it did
  bool operator==(const TaskRow&) const = default;
};
struct TasksReply {
  static constexpr Command kCommand = Command::kTasksReply;
  std::vector<TaskRow> tasks;  // those matching, from `from` on
  uint32_t size = 0;           // the job's tasks
  uint32_t next = 0;           // where to go on from: size when the job was looked at to its end
};

// --- broker -> client (0x2x) ---
struct SubmittedReply {
  static constexpr Command kCommand = Command::kSubmitted;
  uint64_t job = 0;
  uint32_t count = 0;
  bool existing = false;  // the key named a job submitted before: nothing new was submitted
};
struct ResultsReply {
  static constexpr Command kCommand = Command::kResults;
  std::vector<TaskOutcome> outcomes;
  bool final = true;  // the last chunk of this gather
  // A stream's first chunk: how many tasks each id named stands for (a job: all of its tasks),
  // so the client can put results in order. Empty in every other chunk.
  std::vector<uint32_t> sizes;
};

// What `orq status` shows.
struct WorkerInfo {
  int64_t pid = 0;
  std::string host;
  bool remote = false;  // connected over TCP with a worker key
  uint32_t threads = 0;
  uint32_t running = 0;
  Slots slots{};                        // capacity per task class
  std::vector<ResourceNeed> resources;  // what it offers, cpus first
  std::vector<std::string> queues;      // the queues it serves; empty: every queue
  double last_heard = 0;                // seconds since it last spoke
  uint64_t done = 0, failed = 0;        // its tasks that ended ok, and otherwise
  std::string allocation;               // "QUEUE/JOBID" when an allocation started it
  double ends_in = 0;                   // seconds it has left; 0: no end
};
struct TaskCounts {
  uint64_t waiting = 0, queued = 0, delayed = 0, running = 0;  // waiting: for its dependencies
  uint64_t done = 0, failed = 0, timeout = 0, cancelled = 0, worker_lost = 0;  // by final status
  uint64_t dependency_failed = 0;
  // Each count with its name in `orq status`, in the order it prints them.
  template <typename Self, typename F> static void ForEach(Self& self, F&& f) {
    f("waiting", self.waiting), f("queued", self.queued), f("delayed", self.delayed),
        f("running", self.running), f("done", self.done), f("failed", self.failed),
        f("timeout", self.timeout), f("cancelled", self.cancelled),
        f("worker_lost", self.worker_lost), f("dependency_failed", self.dependency_failed);
  }
};
struct BrokerCounters {
  uint64_t malformed = 0;         // frames that did not decode
  uint64_t unexpected = 0;        // well-formed messages the broker never takes (replies)
  uint64_t stale_results = 0;     // results for a task not leased to that worker (any more)
  uint64_t workers_lost = 0;      // workers dropped for missing heartbeats
  uint64_t retries = 0;           // failed attempts scheduled to run again
  uint64_t requeued = 0;          // leases handed back to the queue (worker lost, goodbye, restart)
  uint64_t adopted = 0;           // leases a re-registering worker kept
  uint64_t forbidden = 0;         // messages outside the sender's role (a worker key submitting...)
  uint64_t revoked = 0;           // connections dropped because their key was revoked
  uint64_t auth_refused = 0;      // TCP handshakes refused by the ZAP handler (key not allowed)
  uint64_t handshake_failed = 0;  // TCP handshakes that failed before ZAP (no CURVE, garbage)
  // TCP connections closed to keep the broker's bounds: too many handshakes at once (from one
  // address, or in all), or accepted into the descriptor reserve.
  uint64_t shed = 0;
  // Authenticated TCP connections that closed: a remote peer left, lost its link or was revoked.
  // The broker never closes one to keep a bound; in a steady cluster this stays 0.
  uint64_t remote_closed = 0;
  // Messages from peers with a field over its bound (broker/peer_bounds.h): a worker's
  // registration refused, or an outcome recorded as a failure instead.
  uint64_t over_bounds = 0;
  // Messages on a registered worker's routing id over a connection of another key: refused (the
  // routing id is 128 random bits; the key is what a worker is).
  uint64_t impostors = 0;
  // Each counter with its name in `orq status --json`.
  template <typename Self, typename F> static void ForEach(Self& self, F&& f) {
    f("malformed", self.malformed), f("unexpected", self.unexpected),
        f("stale_results", self.stale_results), f("workers_lost", self.workers_lost),
        f("retries", self.retries), f("requeued", self.requeued), f("adopted", self.adopted),
        f("forbidden", self.forbidden), f("revoked", self.revoked),
        f("auth_refused", self.auth_refused), f("handshake_failed", self.handshake_failed),
        f("shed", self.shed), f("remote_closed", self.remote_closed),
        f("over_bounds", self.over_bounds), f("impostors", self.impostors);
  }
};
// An allocation queue (orq alloc add): how the broker asks a batch system for workers while tasks
// that they could run wait, and lets them go when the work is done (alloc/policy.h).
struct AllocQueueSpec {
  std::string name;
  std::string backend = "slurm";         // the batch system: "slurm" is the one there is
  uint64_t time_limit_s = 0;             // each allocation's time limit (sbatch --time)
  uint32_t workers_per_alloc = 1;        // workers each allocation starts (sbatch -n, one srun)
  uint32_t max_workers = 4;              // workers of all its allocations at once, at most
  uint32_t backlog = 1;                  // allocations waiting in the batch system's queue, at most
  uint64_t idle_timeout_s = 120;         // a worker with nothing to do this long leaves
  std::vector<std::string> worker_args;  // more options for each worker (-t 4)
  std::vector<std::string> queues;       // its workers' --queues; empty: every queue
  std::vector<ResourceNeed> resources;   // its workers' --resources
  std::vector<std::string> backend_args;  // the batch system's own (sbatch -p PARTITION ...)
  friend bool operator==(const AllocQueueSpec&, const AllocQueueSpec&) = default;
};
enum class AllocState : uint8_t {
  kQueued,   // submitted; waiting in the batch system's queue
  kRunning,  // the batch system started it
  kEnded,    // gone from the batch system (ended, cancelled, failed, out of time)
};
inline constexpr uint8_t kAllocStateCount = 3;
struct AllocationInfo {
  std::string id;  // the batch system's job id
  AllocState state = AllocState::kQueued;
  uint32_t workers = 0;                          // registered now
  uint32_t workers_seen = 0;                     // that ever registered
  double submitted = 0, started = 0, ended = 0;  // wall-clock seconds; 0: not (yet)
  std::string end;  // how it ended, for people: "its workers left", "cancelled (CANCELLED)"...
  friend bool operator==(const AllocationInfo&, const AllocationInfo&) = default;
};
struct AllocQueueInfo {
  AllocQueueSpec spec;
  bool paused = false;
  std::string pause_reason;      // why it paused itself; empty when paused by orq alloc pause
  std::string last_error;        // the batch system's words on the last submit that failed
  uint32_t failures_in_row = 0;  // submits that failed since the last that did not
  uint64_t submits = 0, failures = 0;
  std::string access_file;                  // the worker access file its workers use
  std::vector<AllocationInfo> allocations;  // the latest kAllocHistory, oldest first
  friend bool operator==(const AllocQueueInfo&, const AllocQueueInfo&) = default;
};
// Allocations an allocation queue remembers (those that ended go first).
inline constexpr size_t kAllocHistory = 100;

struct StatusReply {
  static constexpr Command kCommand = Command::kStatusReply;
  int64_t broker_pid = 0;
  std::vector<std::string> endpoints;  // the first is the ipc:// one; then TCP (CURVE)
  std::vector<WorkerInfo> workers;     // by host, then pid
  TaskCounts tasks;
  uint64_t jobs = 0;
  BrokerCounters counters;
  std::vector<GateInfo> limits;  // every limit
  std::vector<GateInfo> locks;   // locks held or waited for
  // Why the journal cannot be written (its disk is full), while it cannot: submits are refused and
  // no new task starts. Empty: it is healthy.
  std::string journal_problem;
  std::optional<Metrics> metrics;      // when StatusRequest::metrics asked
  std::vector<AllocQueueInfo> allocs;  // the allocation queues (orq alloc), added by the shell
};
struct AllocRequest {  // -> AllocReply, or ErrorReply (local peers only; the broker's shell
                       // answers)
  static constexpr Command kCommand = Command::kAlloc;
  enum class Op : uint8_t { kAdd, kList, kPause, kResume, kRemove };
  Op op = Op::kList;
  std::string name;         // the queue (every queue for kList when empty)
  AllocQueueSpec spec;      // kAdd's
  std::string access_file;  // kAdd's: the worker access file its workers use
  bool keep = false;        // kRemove: leave its allocations running
};
struct AllocReply {
  static constexpr Command kCommand = Command::kAllocReply;
  std::vector<AllocQueueInfo> queues;
};
// One job as `orq jobs` and `orq status JOB` show it.
struct JobInfo {
  uint64_t job = 0;
  double age = 0;  // seconds since it was submitted
  uint32_t tasks = 0;
  uint32_t waiting = 0;                           // for its dependencies
  uint32_t queued = 0, delayed = 0, running = 0;  // delayed: waiting for its delay or a retry
  uint32_t ok = 0, failed = 0;                    // failed: every final status but ok and cancelled
  uint32_t cancelled = 0;
  double finished_age = -1;  // seconds since its last task finished; -1 while it runs
  std::string label;         // its first task, for people: "gzip a.txt", "sleep"
};
struct JobsReply {
  static constexpr Command kCommand = Command::kJobsReply;
  std::vector<JobInfo> jobs;  // in job order
};
struct CancelledReply {
  static constexpr Command kCommand = Command::kCancelled;
  uint32_t count = 0;  // tasks cancelled, or asked to stop
};
struct ErrorReply {
  static constexpr Command kCommand = Command::kError;
  ErrorCode code = ErrorCode::kBadRequest;
  std::string message;  // one sentence for the user
};
struct PongReply {
  static constexpr Command kCommand = Command::kPong;
  int64_t broker_pid = 0;
};
struct ShutdownAck {
  static constexpr Command kCommand = Command::kShutdownAck;
};
struct ForgottenReply {
  static constexpr Command kCommand = Command::kForgotten;
  uint32_t count = 0;  // jobs removed
};
struct ReloadedReply {
  static constexpr Command kCommand = Command::kReloaded;
  uint32_t keys = 0;     // keys now on the allow-list
  uint32_t dropped = 0;  // connections of revoked keys dropped since the broker was last told
                         // (its once-a-second check may have seen the change first)
};

// --- worker -> broker (0x3x) ---
struct ReadyMessage {
  static constexpr Command kCommand = Command::kReady;
  int64_t pid = 0;
  uint32_t threads = 0;
  Slots slots;                 // capacity per task class: its credits
  std::vector<Lease> running;  // on re-registration: the tasks it still runs
  std::string host;            // the worker's host name, for status
  // Resources it offers (orq worker --resources gpu=2): units tasks take while they run. "cpus"
  // among them sets its cpus; else it has as many as shell slots.
  std::vector<ResourceNeed> resources;
  std::vector<std::string> queues;  // the queues it takes tasks from; empty: every queue
  // Started by an allocation (orq alloc): "QUEUE/JOBID", so the broker counts it as that
  // allocation's and drops it at once when Slurm says the allocation is gone. Empty: none.
  std::string allocation;
  // Milliseconds it has left (its allocation's time limit, less a margin) when it registered:
  // the broker gives it no task whose --time-request is longer than the time it has left.
  // 0: no end.
  uint64_t lifetime_ms = 0;
};
struct WorkerResultsMessage {  // each outcome frees one slot of its task's class
  static constexpr Command kCommand = Command::kWorkerResults;
  std::vector<TaskOutcome> outcomes;
};
struct HeartbeatMessage {
  static constexpr Command kCommand = Command::kHeartbeat;
};
struct GoodbyeMessage {  // the worker is leaving; what it still held is handed back
  static constexpr Command kCommand = Command::kGoodbye;
};

// The answer to a ReadOutputMessage: at most kOutputPieceBytes from its offset; `end` when the
// file ends there. found = false: this worker has no such file.
struct OutputPieceMessage {
  static constexpr Command kCommand = Command::kOutputPiece;
  uint64_t fetch = 0;
  bool found = false;
  bool end = true;
  std::string text;
};

struct OutputMessage {  // a watched task's output since the last one
  static constexpr Command kCommand = Command::kOutput;
  TaskId id;
  uint32_t attempt = 0;
  uint64_t out_offset = 0;  // where `out` starts in the task's stdout
  std::string out;
  uint64_t err_offset = 0;
  std::string err;
};

// --- broker -> worker (0x4x) ---
struct TasksMessage {  // never more than the worker's free slots
  static constexpr Command kCommand = Command::kTasks;
  std::vector<Assignment> tasks;
};
struct CancelTasksMessage {  // stop these if still running, report them cancelled
  static constexpr Command kCommand = Command::kCancelTasks;
  std::vector<TaskId> ids;
};
struct BrokerHeartbeatMessage {
  static constexpr Command kCommand = Command::kBrokerHeartbeat;
};
struct StopMessage {  // take no more tasks, finish within the grace, kill the rest, say goodbye
  static constexpr Command kCommand = Command::kStop;
  uint32_t grace_ms = 0;
};
struct ReregisterMessage {  // the broker does not know this worker: send ReadyMessage again
  static constexpr Command kCommand = Command::kReregister;
};
// `orq forget` of a job whose output spilled to files on this worker's host: delete them
// (common/paths.h's SpillName in the worker's own output directory; nothing else).
struct DropOutputMessage {
  static constexpr Command kCommand = Command::kDropOutput;
  std::vector<Lease> attempts;
};
// `orq logs` of the rest of an ended task's stream, spilled to a file on this worker's host: send
// up to kOutputPieceBytes of it from `offset` (OutputPieceMessage, with this fetch). The file is
// named by the worker from the attempt alone (SpillName, in its own output directory).
struct ReadOutputMessage {
  static constexpr Command kCommand = Command::kReadOutput;
  uint64_t fetch = 0;
  Lease attempt;
  bool err = false;
  uint64_t offset = 0;
};
struct WatchMessage {  // someone follows these tasks' output: send it as it comes (OutputMessage)
  static constexpr Command kCommand = Command::kWatch;
  std::vector<TaskId> ids;
};

using Message =
    std::variant<SubmitRequest, GatherRequest, StatusRequest, CancelRequest, ShutdownRequest,
                 PingRequest, ForgetRequest, SubmittedReply, ResultsReply, StatusReply,
                 CancelledReply, ErrorReply, PongReply, ShutdownAck, ForgottenReply, ReadyMessage,
                 WorkerResultsMessage, HeartbeatMessage, GoodbyeMessage, TasksMessage,
                 CancelTasksMessage, BrokerHeartbeatMessage, StopMessage, ReregisterMessage,
                 ReloadAccessRequest, ReloadedReply, JobsRequest, JobsReply, RetryRequest,
                 ScaleRequest, ScaledReply, LogsRequest, LogChunk, OutputMessage, WatchMessage,
                 LimitRequest, LimitsReply, ExplainRequest, ExplainedReply, ResultsAck,
                 SubmitPartRequest, DropOutputMessage, ReadOutputMessage, OutputPieceMessage,
                 EventsRequest, EventsReply, TasksRequest, TasksReply, AllocRequest, AllocReply>;

namespace detail {
template <size_t... I> constexpr bool CommandsAreUnique(std::index_sequence<I...>) {
  constexpr Command commands[] = {std::variant_alternative_t<I, Message>::kCommand...};
  for (size_t i = 0; i < sizeof...(I); ++i) {
    for (size_t j = i + 1; j < sizeof...(I); ++j) {
      if (commands[i] == commands[j]) return false;
    }
  }
  return true;
}
}  // namespace detail
static_assert(detail::CommandsAreUnique(std::make_index_sequence<std::variant_size_v<Message>>{}),
              "two messages share a command code");

// The command a message travels under.
inline Command CommandOf(const Message& message) {
  return std::visit([](const auto& m) { return std::decay_t<decltype(m)>::kCommand; }, message);
}

}  // namespace orq

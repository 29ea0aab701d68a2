// The orq wire protocol: every message that crosses a socket, in one place.
//
// Peers: clients (the CLI, a DEALER), workers (a DEALER with a routing id of their own) and the
// broker (one ROUTER). Peers on ipc:// are local (the socket lives in the owner's 0700 $ORQ_HOME);
// peers on TCP are always CURVE-encrypted and authenticated, and each has a Role from its key (see
// Role and MaySend below). Every message is three frames after the ROUTER's identity frame:
//
//   frame 0: kProtocolVersion ("ORQ1")
//   frame 1: one byte, a Command below
//   frame 2: the body, encoded by common/codec.h (a compact binary form, no JSON on hot paths)
//
// The codec turns frames into the typed messages below and back; nothing else indexes frames.
// Malformed frames become a DecodeError value, never undefined behaviour.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/task_spec.h"

namespace orq {

inline constexpr std::string_view kProtocolVersion = "ORQ2";

// One-byte command codes. Client -> broker requests are 0x1x, broker -> client replies 0x2x,
// worker -> broker 0x3x, broker -> worker 0x4x, local administration (ipc only) 0x5x.
enum class Command : uint8_t {
  kSubmit = 0x10,    // [TaskSpec...]                      -> kSubmitted or kError
  kGather = 0x11,    // [id...] (job "j7" or task "j7.2")  -> kResults... (last has final) or kError
  kStatus = 0x12,    //                                    -> kStatusReply
  kCancel = 0x13,    // [id...]                            -> kCancelled or kError
  kShutdown = 0x14,  //                                    -> kShutdownAck, then the broker stops
  kPing = 0x15,      //                                    -> kPong
  kForget = 0x16,    // [id...] (whole jobs)               -> kForgotten or kError

  kSubmitted = 0x20,     // job number, task count
  kResults = 0x21,       // [TaskOutcome...], final flag (gather replies are chunked)
  kStatusReply = 0x22,   // JSON text (not a hot path; the CLI prints it)
  kCancelled = 0x23,     // how many tasks were cancelled or asked to stop
  kError = 0x24,         // ErrorCode, one sentence for the user
  kPong = 0x25,          // broker pid
  kShutdownAck = 0x26,   //
  kForgotten = 0x27,     // how many jobs were removed
  kReloaded = 0x28,      // keys now on the allow-list, connections of revoked keys dropped

  kReady = 0x30,          // pid, threads, slots per TaskClass (its credits), [Lease...] it runs,
                          // host name
  kWorkerResults = 0x31,  // [TaskOutcome...]: each frees one slot of its task's class
  kHeartbeat = 0x32,      //
  kGoodbye = 0x33,        // the worker is leaving; what it still held is handed back

  kTasks = 0x40,        // [Assignment...]: never more than the worker's free slots
  kCancelTasks = 0x41,  // [TaskId...]: stop these if still running, report them cancelled
  kBrokerHeartbeat = 0x42,
  kStop = 0x43,        // grace ms: take no more tasks, let running ones finish within the grace,
                       // kill the rest, say goodbye, exit
  kReregister = 0x44,  // the broker does not know this worker (it was dropped): send kReady again

  kReloadAccess = 0x50,  // the allow-list in $ORQ_HOME/keys changed (orq access) -> kReloaded
};

// Who a peer is, decided by how its connection was authenticated (broker/zap.h), never by what it
// sends. Local: it came over ipc://, which only the owner of $ORQ_HOME can reach. Client and worker:
// it came over TCP with a CURVE key on that role's allow-list. Revoked: its key was taken off the
// allow-list after it connected; it may send nothing.
enum class Role : uint8_t { kLocal, kClient, kWorker, kRevoked };

// Whether a command goes to the broker at all (requests, worker messages, administration); the
// others are replies and broker-to-worker messages, which the broker never accepts.
constexpr bool ToBroker(Command c) {
  const auto v = static_cast<uint8_t>(c);
  return (v >= 0x10 && v <= 0x1f) || (v >= 0x30 && v <= 0x3f) || (v >= 0x50 && v <= 0x5f);
}

// What each role may send to the broker. A client key submits, gathers, cancels, asks for status,
// forgets and shuts down; a worker key registers, reports results, heartbeats and says goodbye.
// Neither may do the other's part, and only a local peer administers access.
constexpr bool MaySend(Role role, Command c) {
  const auto v = static_cast<uint8_t>(c);
  switch (role) {
    case Role::kLocal: return ToBroker(c);
    case Role::kClient: return v >= 0x10 && v <= 0x1f;
    case Role::kWorker: return v >= 0x30 && v <= 0x3f;
    case Role::kRevoked: return false;
  }
  return false;
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
inline constexpr size_t kMaxTasksPerJob = 5'000'000;
inline constexpr size_t kMaxTasksPerMessage = 1024;     // dispatch and gather chunks
inline constexpr size_t kMaxOutputBytes = 1u << 20;     // per stream of a shell task; rest dropped
inline constexpr size_t kMaxArgvBytes = 128u << 10;     // a shell task's argv, all strings together
inline constexpr size_t kMaxArgs = 4096;                // a shell task's argv entries
inline constexpr size_t kMaxValueBytes = 1u << 20;      // an echo value or a sleep result (JSON)

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
};

// The outcome of one task, reported by a worker and kept by the broker.
struct TaskOutcome {
  TaskId id;
  TaskStatus status = TaskStatus::kOk;
  uint32_t attempt = 1;
  int64_t worker_pid = 0;
  double started = 0;   // wall-clock seconds since the epoch, for display only
  double finished = 0;  // idem
  std::string result;   // JSON text of the result (empty for shell tasks: the result is stdout)
  std::string error;    // one sentence when status is not ok
  std::string last_error;  // the error of the previous attempt, when it was retried
  bool is_shell = false;
  int32_t exit_code = -1;     // shell only: exit code, or 128+signal when killed
  std::string stdout_text;    // shell only
  std::string stderr_text;    // shell only
  bool output_truncated = false;
};

// A task a worker holds: which task, which attempt (the lease).
struct Lease {
  TaskId id;
  uint32_t attempt = 0;
  friend bool operator==(const Lease&, const Lease&) = default;
};

// A task handed to a worker: what to run and which attempt this is.
struct Assignment {
  TaskId id;
  uint32_t attempt = 1;
  TaskSpec spec;
};

enum class ErrorCode : uint8_t {
  kBadRequest = 1,  // malformed or over a limit
  kUnknownId = 2,   // gather/cancel named a job or task the broker does not have
  kShuttingDown = 3,
  kForbidden = 4,   // the peer's key may not send this (a worker key submitting, a revoked key)
};

// --- client -> broker ---
struct SubmitRequest { std::vector<TaskSpec> tasks; };
struct GatherRequest { std::vector<std::string> ids; };
struct StatusRequest {};
struct CancelRequest { std::vector<std::string> ids; };
struct ShutdownRequest {};
struct PingRequest {};
struct ForgetRequest { std::vector<std::string> ids; };
struct ReloadAccessRequest {};
// --- broker -> client ---
struct SubmittedReply { uint64_t job = 0; uint32_t count = 0; };
struct ResultsReply { std::vector<TaskOutcome> outcomes; bool final = true; };
struct StatusReply { std::string json; };
struct CancelledReply { uint32_t count = 0; };
struct ErrorReply { ErrorCode code = ErrorCode::kBadRequest; std::string message; };
struct PongReply { int64_t broker_pid = 0; };
struct ShutdownAck {};
struct ForgottenReply { uint32_t count = 0; };
struct ReloadedReply { uint32_t keys = 0; uint32_t dropped = 0; };
// --- worker -> broker ---
struct ReadyMessage {
  int64_t pid = 0;
  uint32_t threads = 0;
  Slots slots;  // capacity per task class
  std::vector<Lease> running;  // on re-registration: the tasks it still runs
  std::string host;            // the worker's host name, for status
};
struct WorkerResultsMessage { std::vector<TaskOutcome> outcomes; };
struct HeartbeatMessage {};
struct GoodbyeMessage {};
// --- broker -> worker ---
struct TasksMessage { std::vector<Assignment> tasks; };
struct CancelTasksMessage { std::vector<TaskId> ids; };
struct BrokerHeartbeatMessage {};
struct StopMessage { uint32_t grace_ms = 0; };
struct ReregisterMessage {};

using Message =
    std::variant<SubmitRequest, GatherRequest, StatusRequest, CancelRequest, ShutdownRequest,
                 PingRequest, ForgetRequest, SubmittedReply, ResultsReply, StatusReply,
                 CancelledReply, ErrorReply, PongReply, ShutdownAck, ForgottenReply, ReadyMessage,
                 WorkerResultsMessage, HeartbeatMessage, GoodbyeMessage, TasksMessage,
                 CancelTasksMessage, BrokerHeartbeatMessage, StopMessage, ReregisterMessage,
                 ReloadAccessRequest, ReloadedReply>;

}  // namespace orq

// The worker process: the Asio shell around WorkerCore and TaskRunner. One io_context thread is
// the async loop; it alone touches the DEALER socket (watched through ZMQ_FD), runs the timers of
// sleep tasks and heartbeats, and receives the completions of cpu and shell tasks.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/zmq_util.h"

namespace orq {

struct WorkerConfig {
  std::vector<std::string> endpoints;  // the broker's; each (re)connect tries the next one
  std::optional<CurveClient> curve;    // for tcp:// (from an access file); ipc:// needs none
  std::string workdir;                 // where shell tasks run; empty: where the worker started
  int threads = 1;        // cpu thread pool size
  int async_slots = 0;    // sleep/echo tasks at once; 0 = the default
  int shell_slots = 0;    // shell tasks at once; 0 = threads
  bool supervised = false;
  std::chrono::milliseconds heartbeat{1000};
};

inline constexpr int kDefaultAsyncSlots = 16384;

// Exit code of a worker whose key the broker refused (revoked, or never added), or whose handshakes
// keep failing (the access file holds another broker's key): retrying cannot help.
inline constexpr int kWorkerRefusedExit = 4;

// Runs until the broker says stop (or, when supervised, is gone), SIGTERM or SIGINT; returns 0, or
// kWorkerRefusedExit.
int RunWorker(const WorkerConfig& config);

}  // namespace orq

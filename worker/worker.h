// The worker process: the Asio shell around WorkerCore and TaskRunner. One io_context thread is
// the async loop; it alone touches the DEALER socket (watched through ZMQ_FD), runs the timers of
// sleep tasks and heartbeats, and receives the completions of cpu and shell tasks.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/errors.h"
#include "common/task_spec.h"
#include "common/zmq_util.h"
#include "worker/python_pool.h"

namespace orq {

struct WorkerConfig {
  std::vector<std::string> endpoints;   // the broker's; each (re)connect tries the next one
  std::optional<CurveClient> curve;     // for tcp:// (from an access file); ipc:// needs none
  std::string workdir;                  // where shell tasks run; empty: where the worker started
  int threads = 1;                      // cpu thread pool size
  int async_slots = 0;                  // sleep/echo tasks at once; 0 = the default
  int shell_slots = 0;                  // shell tasks at once; 0 = threads
  std::vector<ResourceNeed> resources;  // --resources gpu=2,license=4 (cpus=N: its cpus)
  std::vector<std::string> queues;      // --queues a,b; empty: every queue
  bool supervised = false;
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds idle_timeout{0};  // leave after this long with no task; 0: never
  std::chrono::milliseconds lifetime{0};      // leave this long after starting; 0: never
  std::string allocation;                     // "QUEUE/JOBID": started by an allocation
  PythonPoolOptions python;  // python tasks' interpreters (keep: set from the shell slots)
};

inline constexpr int kDefaultAsyncSlots = 16384;
inline constexpr uint32_t kPythonPrefetch = 8;  // python calls held per interpreter

// Runs until the broker says stop (or, when supervised, is gone), SIGTERM or SIGINT. Returns kOk;
// kRefused when the broker refused its key (revoked, or never added) or its handshakes keep failing
// (the access file holds another broker's key): retrying cannot help; kFailed when its socket
// cannot be made.
ExitCode RunWorker(const WorkerConfig& config);

}  // namespace orq

// The worker process: the Asio shell around WorkerCore and TaskRunner. One io_context thread is
// the async loop; it alone touches the DEALER socket (watched through ZMQ_FD), runs the timers of
// sleep tasks and heartbeats, and receives the completions of cpu and shell tasks.
#pragma once

#include <chrono>
#include <string>

namespace orq {

struct WorkerConfig {
  std::string endpoint;
  int threads = 1;        // cpu thread pool size
  int async_slots = 0;    // sleep/echo tasks at once; 0 = the default
  int shell_slots = 0;    // shell tasks at once; 0 = threads
  bool supervised = false;
  std::chrono::milliseconds heartbeat{1000};
};

inline constexpr int kDefaultAsyncSlots = 16384;

// Runs until the broker says stop (or, when supervised, is gone), SIGTERM or SIGINT.
int RunWorker(const WorkerConfig& config);

}  // namespace orq

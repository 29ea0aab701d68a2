// The broker's own worker processes (`orq broker --workers N`, `orq up`): started with the broker,
// kept alive (a dead one is started again, with backoff when it dies young), scaled (`orq
// scale`), and stopped at the end. Their registrations and leases are the core's; this part keeps
// the processes, and tells the core when one is gone so that its leases go back at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "broker/core/broker_core.h"
#include "broker/restart.h"
#include "common/process.h"

namespace orq {

struct LocalWorkerOptions {
  std::string endpoint;           // the ipc:// endpoint they connect to
  int threads = 1;                // -t for each
  std::vector<std::string> args;  // more options for each (--resources...)
  std::chrono::milliseconds heartbeat{1000};
};

class LocalWorkers {
 public:
  LocalWorkers(LocalWorkerOptions options, BrokerCore& core);
  ~LocalWorkers();

  // Starts `count` workers.
  void Start(int count);
  // The signalfd that becomes readable when a child exits (SIGCHLD), for the poll set; -1 when
  // none could be made (then Supervise() at each Tick notices).
  int child_fd() const { return child_fd_; }
  // A child exited (child_fd() was readable): reads the signals and supervises.
  void ChildExited(SteadyTime now);
  // Keeps the workers alive: a dead one is reported to the core and started again (after its
  // backoff); while shutting down the dead stay dead; a retired one is forgotten once gone.
  void Supervise(SteadyTime now);
  // orq scale: starts workers up to `target`, or retires the newest extra ones (they finish their
  // running tasks first). Returns the count before and after.
  ScaledReply Scale(uint32_t target);
  // Whether every worker process has exited and the core has no worker registered.
  bool AllGone();
  // Kills the workers still running (after the shutdown's grace) and whatever they left behind.
  void Stop();

 private:
  struct Worker {
    Process process;
    SteadyTime started;
    SteadyTime restart_at;  // when dead: when to start it again
    RestartBackoff backoff;
    bool retiring = false;  // orq scale down: it finishes its tasks and is not started again
  };
  Worker Spawn();

  LocalWorkerOptions options_;
  BrokerCore& core_;
  std::vector<Worker> workers_;
  int child_fd_ = -1;  // signalfd for SIGCHLD
};

}  // namespace orq

// The broker process: the shell around BrokerCore. It owns the ROUTER socket(s), the poll loop,
// the clock and the worker processes it supervises; BrokerCore decides everything else.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/errors.h"

namespace orq {

struct BrokerConfig {
  std::vector<std::string> endpoints;    // ipc:// endpoints; the first is the one local workers use
  std::vector<std::string> listen;       // tcp:// endpoints, always CURVE (needs keys_dir)
  std::string keys_dir;                  // the key store (common/keys.h); empty: no TCP
  int workers = 0;                       // local worker processes to start and keep alive
  int threads = 1;                       // -t for each local worker
  std::vector<std::string> worker_args;  // more options for each local worker (--resources...)
  std::string pid_file;                  // written once bound, removed on exit; empty: none
  std::string journal;                   // SQLite journal path; empty: results in memory only
  bool journal_sync = true;              // false: no fsync per commit (orq run's own broker)
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::seconds retention{0};  // forget finished jobs after this long; 0 = keep
  size_t max_tasks_per_job = 0;       // 0 = kMaxTasksPerJob
  size_t max_message_bytes = 0;       // ZMQ_MAXMSGSIZE of the broker's socket; 0 = kMaxMessageBytes
  size_t max_workers_per_key = kMaxWorkersPerKey;  // remote workers of one key at once
};

// Binds the ZAP handler, then the ipc:// endpoints, then the tcp:// ones (CURVE with the broker's
// key, created on first use; their bound endpoints are saved in the key store for access files).
// Recovers the journal, then runs until `orq down` (a shutdown request), SIGTERM or SIGINT; then
// gives running tasks kShutdownGrace to finish, stops the workers and returns the exit code.
// Prints "ready ENDPOINT" on stdout once it accepts requests.
// Returns kOk; kUsage for a bad option (a key store it may not use); kFailed when it cannot serve
// (an endpoint in use, a journal it cannot open).
ExitCode RunBroker(const BrokerConfig& config);

}  // namespace orq

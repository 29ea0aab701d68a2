// A broker and its workers started for one command (`orq run`, `orq bench`): a private directory
// for the socket and journal, the broker spawned to die with us, and an orderly stop.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "client/connection.h"
#include "common/process.h"

namespace orq {

struct EmbeddedOptions {
  int workers = 1;
  int threads = 1;
  bool journal = true;
  bool listen = false;  // also on listen_endpoint (CURVE), keys in dir()/keys
  std::string listen_endpoint = "tcp://127.0.0.1:*";
  // false: the journal is a store on disk for this run's results, not fsynced each turn (orq
  // run: its directory and the run end together; orq bench measures a durable broker).
  bool sync = true;
  bool dashboard = false;  // also serve the dashboard on 127.0.0.1 (a free port): dashboard_url()
};

class EmbeddedBroker {
 public:
  explicit EmbeddedBroker(const EmbeddedOptions& options);
  ~EmbeddedBroker();  // stops the broker (if Stop() was not called) and removes the directory

  Connection& client() { return *client_; }
  pid_t pid() const { return broker_.pid(); }
  const std::string& log() const { return log_; }
  const std::string& dir() const { return dir_; }
  // The dashboard's login URL (with its token), once the broker serves it (waits for it); empty
  // without one.
  std::string dashboard_url();
  // Asks the broker to shut down and waits for it (it stops its workers first).
  void Stop();
  // Kills the broker (-9) and starts it again with the same directory, journal, keys and
  // endpoints (TCP: the port it had bound); returns once it answers, at most 30 s.
  void Restart();

 private:
  EmbeddedOptions options_;
  std::string dir_;
  std::string log_;
  bool dashboard_ = false;
  Process broker_;
  std::unique_ptr<Connection> client_;
};

}  // namespace orq

#include "cli/embedded.h"

#include <signal.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "common/keys.h"
#include "common/paths.h"

namespace orq {
namespace {
SpawnOptions BrokerSpawn(const EmbeddedOptions& o, const std::string& dir) {
  SpawnOptions spawn;
  spawn.args = {"broker",
                "--endpoint",
                "ipc://" + dir + "/broker.ipc",
                "--workers",
                std::to_string(o.workers),
                "--threads",
                std::to_string(o.threads)};
  if (o.listen)
    spawn.args.insert(spawn.args.end(), {"--listen", o.listen_endpoint, "--keys", dir + "/keys"});
  if (o.dashboard) spawn.args.insert(spawn.args.end(), {"--http", "127.0.0.1:0"});
  if (o.journal) {
    spawn.args.insert(spawn.args.end(), {"--journal", dir + "/journal.db"});
    if (!o.sync) spawn.args.push_back("--no-journal-sync");
  } else
    spawn.args.push_back("--no-journal");
  spawn.die_with_parent = true;  // a killed CLI takes its broker (and so its workers) along
  spawn.output_file = dir + "/broker.log";
  return spawn;
}
}  // namespace

EmbeddedBroker::EmbeddedBroker(const EmbeddedOptions& options)
    : options_(options),
      dir_(MakeRunDirectory(OrqHome())),
      log_(dir_ + "/broker.log"),
      dashboard_(options.dashboard),
      broker_(Process::SpawnSelf(BrokerSpawn(options, dir_))),
      client_(
          std::make_unique<Connection>(BrokerAddress{"ipc://" + dir_ + "/broker.ipc", {}, ""})) {}

EmbeddedBroker::~EmbeddedBroker() {
  Stop();
  if (!RemoveTree(dir_))
    std::fprintf(stderr, "orq: could not remove the run's directory %s: remove it by hand\n",
                 dir_.c_str());
}

std::string EmbeddedBroker::dashboard_url() {
  if (!dashboard_) return "";
  // The broker prints "dashboard URL" before it binds (cli/serve.cc).
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < deadline && broker_.Running()) {
    std::ifstream log(log_);
    for (std::string line; std::getline(log, line);) {
      if (line.rfind("dashboard ", 0) == 0) return line.substr(10);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  throw std::runtime_error("the broker did not start its dashboard; its log: " + log_);
}

void EmbeddedBroker::Restart() {
  if (options_.listen) {
    const std::vector<std::string> bound = KeyStore(dir_ + "/keys").Endpoints();
    if (!bound.empty()) options_.listen_endpoint = bound.front();
  }
  ::kill(broker_.pid(), SIGKILL);
  broker_.WaitUntil(Clock::now() + std::chrono::seconds(10));
  broker_ = Process::SpawnSelf(BrokerSpawn(options_, dir_));
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  for (;;) {
    client_ = std::make_unique<Connection>(BrokerAddress{"ipc://" + dir_ + "/broker.ipc", {}, ""});
    try {
      client_->Request(PingRequest{}, std::chrono::milliseconds(1000));
      return;
    } catch (const std::exception& e) {
      if (Clock::now() >= deadline || !broker_.Running()) {
        // (The run's directory goes with this object: what the log said goes with the error.)
        std::ifstream in(log_);
        std::string line, last;
        while (std::getline(in, line)) last = line;
        throw std::runtime_error("the broker did not come back (" + std::string(e.what()) +
                                 "); the last line of its log: " + last);
      }
    }
  }
}

void EmbeddedBroker::Stop() {
  if (broker_.pid() <= 0) return;
  try {
    client_->Request(ShutdownRequest{}, std::chrono::milliseconds(5000));
  } catch (const std::exception&) {
    // Not answering: the signals below still stop it.
  }
  if (!broker_.WaitUntil(Clock::now() + std::chrono::seconds(15)))
    broker_.Stop(std::chrono::milliseconds(2000));
}

}  // namespace orq

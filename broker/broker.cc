#include "broker/broker.h"

#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <zmq.hpp>

#include "broker/broker_core.h"
#include "common/log.h"
#include "common/spawn.h"
#include "common/zmq_util.h"

namespace orq {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

volatile std::sig_atomic_t stop_signal = 0;
extern "C" void OnStopSignal(int signal) { stop_signal = signal; }

// How long workers get to finish after a Stop before they are killed.
constexpr milliseconds kWorkerStopGrace{5000};
// A local worker that exits is started again after this long (doubling while it keeps dying
// within kRestartWindow of its start, up to kRestartMax).
constexpr milliseconds kRestartMin{200};
constexpr milliseconds kRestartMax{10000};
constexpr milliseconds kRestartWindow{5000};
// Messages handled per poll wake-up before the loop sends what it owes: bounds reply latency.
constexpr int kBatch = 256;

struct LocalWorker {
  Process process;
  Clock::time_point started;
  Clock::time_point restart_at;  // when dead: when to start it again
  milliseconds backoff = kRestartMin;
};

class BrokerShell {
 public:
  explicit BrokerShell(const BrokerConfig& config)
      : config_(config),
        core_(BrokerOptions{config.heartbeat, kHeartbeatLiveness, ::getpid(),
                            config.endpoints.front()},
              store_),
        socket_(MakeSocket(ctx_, zmq::socket_type::router)) {
    socket_.set(zmq::sockopt::router_mandatory, 1);
    socket_.set(zmq::sockopt::sndhwm, 0);  // replies are bounded by requests: never drop one
    for (const auto& endpoint : config.endpoints) socket_.bind(endpoint);
  }

  int Run() {
    if (!config_.pid_file.empty()) std::ofstream(config_.pid_file) << ::getpid() << "\n";
    for (int i = 0; i < config_.workers; ++i) workers_.push_back(StartWorker());
    std::printf("ready %s\n", config_.endpoints.front().c_str());
    std::fflush(stdout);
    Log("listening on " + config_.endpoints.front() + " with " +
        std::to_string(config_.workers) + " local workers");

    while (!core_.shutting_down()) {
      if (stop_signal) {
        Log("signal " + std::to_string(stop_signal) + ": shutting down");
        core_.BeginShutdown(out_);
        Flush();
        break;
      }
      auto now = Clock::now();
      auto wait = std::chrono::duration_cast<milliseconds>(core_.NextWakeup() - now);
      wait = std::clamp(wait, milliseconds(0), milliseconds(1000));
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      try {
        zmq::poll(&item, 1, wait);
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      for (int i = 0; i < kBatch; ++i) {
        auto received = ReceiveMessage(socket_, /*router=*/true);
        if (!received) break;
        now = Clock::now();
        if (auto* error = std::get_if<DecodeError>(&received->message)) {
          Log("malformed message: " + error->what);
          core_.HandleMalformed(received->identity, error->what, out_);
        } else {
          core_.Handle(received->identity, std::move(std::get<Message>(received->message)), now,
                       out_);
        }
      }
      now = Clock::now();
      if (now >= core_.NextWakeup()) {
        core_.Tick(now, out_);
        Supervise(now);
      }
      Flush();
    }
    StopWorkers();
    if (!config_.pid_file.empty()) ::unlink(config_.pid_file.c_str());
    Log("stopped");
    return 0;
  }

 private:
  LocalWorker StartWorker() {
    SpawnOptions options;
    options.args = {"worker", "--connect", config_.endpoints.front(), "--threads",
                    std::to_string(config_.threads), "--supervised",
                    "--heartbeat-ms", std::to_string(config_.heartbeat.count())};
    options.die_with_parent = true;
    LocalWorker w{Process::SpawnSelf(options), Clock::now(), {}, kRestartMin};
    return w;
  }

  // Keeps the local workers alive: a dead one is started again, with backoff when it dies young.
  void Supervise(Clock::time_point now) {
    for (auto& w : workers_) {
      if (w.process.pid() > 0) {
        const pid_t pid = w.process.pid();
        if (w.process.Running()) continue;
        Log("worker " + std::to_string(pid) + " " + w.process.how_it_ended() +
            "; starting another");
        core_.WorkerExited(pid, out_);
        w.backoff = now - w.started < kRestartWindow ? std::min(w.backoff * 2, kRestartMax)
                                                     : kRestartMin;
        w.restart_at = now + w.backoff;
      } else if (now >= w.restart_at) {
        const auto backoff = w.backoff;
        w = StartWorker();
        w.backoff = backoff;
      }
    }
  }

  void StopWorkers() {
    const auto deadline = Clock::now() + kWorkerStopGrace;
    for (auto& w : workers_) {
      // They were sent Stop; the ones that do not exit in time are killed.
      if (!w.process.WaitUntil(deadline)) {
        Log("worker " + std::to_string(w.process.pid()) + " did not stop in time; killing it");
        w.process.Stop(milliseconds(0));
      }
    }
  }

  void Flush() {
    for (auto& o : out_) {
      if (!SendMessage(socket_, o.message, o.to, zmq::send_flags::dontwait))
        core_.PeerUnreachable(o.to);
    }
    out_.clear();
  }

  const BrokerConfig& config_;
  MemoryResultStore store_;
  BrokerCore core_;
  zmq::context_t ctx_;
  zmq::socket_t socket_;
  std::vector<LocalWorker> workers_;
  std::vector<Outgoing> out_;
};

}  // namespace

int RunBroker(const BrokerConfig& config) {
  SetLogComponent("broker");
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    BrokerShell shell(config);
    return shell.Run();
  } catch (const zmq::error_t& e) {
    Log(std::string("cannot serve: ") + e.what());
    return 3;
  }
}

}  // namespace orq

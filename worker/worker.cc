#include "worker/worker.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <random>
#include <utility>  // before Asio under C++20 with Boost 1.74
#include <zmq.hpp>

#include "common/keys.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/process.h"
#include "common/zmq_util.h"
#include "worker/task_runner.h"
#include "worker/worker_core.h"

namespace asio = boost::asio;

namespace orq {
namespace {

using Clock = std::chrono::steady_clock;

// Handshakes that fail in a row (not refusals: those end the worker at once) before a worker gives
// up: a few, so one that a link cut broke mid-way is not mistaken for a wrong key.
constexpr int kHandshakeFailuresToExit = 5;
// A remote worker's first reconnect interval, drawn in this range (ms); libzmq doubles it up to
// 2 s and adds jitter of up to the first interval each time.
constexpr int kReconnectJitterMin = 50;
constexpr int kReconnectJitterMax = 300;

class WorkerShell {
 public:
  explicit WorkerShell(const WorkerConfig& config)
      : config_(config),
        core_(Options(config)),
        runner_(loop_, RunnerOptionsOf(config),
                [this](TaskOutcome outcome) { OnDone(std::move(outcome)); }),
        timer_(loop_),
        signals_(loop_, SIGTERM, SIGINT),
        children_(loop_, SIGCHLD) {}

  ExitCode Run() {
    Connect();
    signals_.async_wait([this](const boost::system::error_code& ec, int signal) {
      if (ec) return;
      Log("signal " + std::to_string(signal) + ": stopping");
      WorkerActions actions;
      core_.Flush(actions);  // results already in hand still count
      actions.exit = true;
      Apply(actions);
    });
    WatchChildren();
    loop_.run();
    runner_.KillAll();
    if (fd_) fd_->release();  // the fd belongs to zmq
    if (watch_fd_) watch_fd_->release();
    return exit_code_;
  }

 private:
  static RunnerOptions RunnerOptionsOf(const WorkerConfig& c) {
    RunnerOptions o;
    o.threads = c.threads;
    o.output_limit = kMaxOutputBytes;
    o.pid = ::getpid();
    o.workdir = c.workdir;
    // Output over the limit goes to $ORQ_HOME/output on this host; without a home of our own
    // (it cannot be made), it is dropped as before.
    try {
      o.spill_dir = SpillDirectory(OrqHome());
      MakePrivateDirectory(o.spill_dir, "the output directory");
    } catch (const std::exception& e) {
      Log(std::string("output over ") + std::to_string(kMaxOutputBytes) +
          " bytes per stream will be dropped: " + e.what());
      o.spill_dir.clear();
    }
    o.host = HostName();
    o.python = c.python;
    o.python.keep = static_cast<size_t>(c.shell_slots > 0 ? c.shell_slots : c.threads);
    return o;
  }

  static WorkerOptions Options(const WorkerConfig& c) {
    WorkerOptions o;
    o.pid = ::getpid();
    o.host = HostName();
    o.threads = static_cast<uint32_t>(c.threads);
    o.slots[static_cast<size_t>(TaskClass::kAsync)] =
        static_cast<uint32_t>(c.async_slots > 0 ? c.async_slots : kDefaultAsyncSlots);
    // Twice the pool: while T tasks run, T more wait in the pool's queue, so a thread never idles
    // for the round trip to the broker between two tasks.
    o.slots[static_cast<size_t>(TaskClass::kCpu)] = static_cast<uint32_t>(2 * c.threads);
    o.slots[static_cast<size_t>(TaskClass::kShell)] =
        static_cast<uint32_t>(c.shell_slots > 0 ? c.shell_slots : c.threads);
    // Python calls: as many run as there are shell slots (an interpreter each); 8 times that
    // may be here, so that an interpreter that ends a call starts the next one without waiting
    // for the broker.
    o.slots[static_cast<size_t>(TaskClass::kPython)] =
        kPythonPrefetch * o.slots[static_cast<size_t>(TaskClass::kShell)];
    o.resources = c.resources;
    o.queues = c.queues;
    o.heartbeat_interval = c.heartbeat;
    o.idle_timeout = c.idle_timeout;
    if (c.lifetime.count() > 0) o.ends_at = Clock::now() + c.lifetime;
    o.allocation = c.allocation;
    return o;
  }

  void Connect() {
    for (auto* fd : {&fd_, &watch_fd_}) {
      if (!*fd) continue;
      (*fd)->cancel();
      (*fd)->release();  // zmq's
      fd->reset();
    }
    // What the old socket's monitor still holds (a refusal ends the worker here).
    if (watch_ && !CheckHandshakes(/*reregister=*/false)) return;
    watch_.reset();
    handshakes_ = 0;
    link_down_ = false;
    // Linger: the last results and the goodbye still leave when the worker exits.
    socket_ = MakeSocket(ctx_, zmq::socket_type::dealer, std::chrono::milliseconds(2000));
    std::random_device rd;
    // Random (128 bits): a routing id says nothing a peer could guess or reuse.
    std::string identity = "w" + std::to_string(::getpid());
    for (int i = 0; i < 4; ++i) identity += "-" + std::to_string(rd());
    socket_.set(zmq::sockopt::routing_id, identity);
    socket_.set(zmq::sockopt::sndhwm, 0);
    socket_.set(zmq::sockopt::reconnect_ivl, 10);  // at start the broker may be binding right now
    socket_.set(zmq::sockopt::reconnect_ivl_max, 1000);
    if (config_.curve) {
      // Remote workers retry at intervals of their own (libzmq adds up to one interval of jitter
      // to each): after a broker restart, hundreds of them arrive spread over a second, not in
      // the same millisecond.
      socket_.set(zmq::sockopt::reconnect_ivl, ReconnectInterval());
      socket_.set(zmq::sockopt::reconnect_ivl_max, 2000);
      SetCurveClient(socket_, *config_.curve);
      watch_.emplace(ctx_, socket_);
      watch_fd_.emplace(loop_, watch_->socket().get(zmq::sockopt::fd));
      WaitHandshakes();
    }
    // Alternatives for the same broker (an access file may name several): one per connection.
    const std::string& endpoint = config_.endpoints[connects_++ % config_.endpoints.size()];
    if (connects_ > 1) Log("connecting to " + endpoint);
    socket_.connect(endpoint);
    fd_.emplace(loop_, socket_.get(zmq::sockopt::fd));
    WorkerActions actions;
    core_.Connected(Clock::now(), actions);
    Apply(actions);
    WaitReadable();
  }

  static int ReconnectInterval() {
    std::random_device rd;
    return std::uniform_int_distribution<int>(kReconnectJitterMin, kReconnectJitterMax)(rd);
  }

  // A handshake result is read as soon as it comes: a refusal ends the worker, and a connection
  // libzmq made again by itself (the broker restarted, or closed it) says so to the broker at
  // once (WorkerCore::Reconnected), before its silence would make the worker open a new socket.
  void WaitHandshakes() {
    watch_fd_->async_wait(asio::posix::stream_descriptor::wait_read,
                          [this, fd = &*watch_fd_](const boost::system::error_code& ec) {
                            if (ec || !watch_fd_ || fd != &*watch_fd_ || exiting_) return;
                            if (!CheckHandshakes()) return;
                            if (watch_fd_ && fd == &*watch_fd_) WaitHandshakes();
                          });
  }

  void WaitReadable() {
    fd_->async_wait(asio::posix::stream_descriptor::wait_read,
                    [this, fd = &*fd_](const boost::system::error_code& ec) {
                      if (ec || !fd_ || fd != &*fd_) return;
                      Drain();
                      WaitReadable();
                    });
  }

  // Reads every message waiting. ZMQ_FD is edge-triggered: after any send, the loop drains again.
  void Drain() {
    if (exiting_) return;
    WorkerActions actions;
    for (int i = 0; i < 1024; ++i) {
      auto received = ReceiveMessage(socket_, /*router=*/false);
      if (!received) break;
      if (!received->message) {
        Log("malformed message from the broker: " + received->message.error().sentence);
        continue;
      }
      core_.OnMessage(std::move(*received->message), Clock::now(), actions);
    }
    Apply(actions);
  }

  void OnDone(TaskOutcome outcome) {
    core_.OnDone(std::move(outcome), Clock::now());
    if (flush_posted_) {
      if (core_.pending() >= kCoalescedResults) flush_timer_.cancel();  // enough: go now
      return;
    }
    flush_posted_ = true;
    auto flush = [this] {
      flush_posted_ = false;
      WorkerActions actions;
      core_.Flush(actions);
      Apply(actions);
    };
    // Completions that land in the same loop turn leave in one message. While python calls wait
    // here for an interpreter (so none idles), results wait up to kCoalesceFor for more: a
    // message (and a turn of the broker) per call was most of what a call cost.
    if (runner_.python_waiting() == 0) return asio::post(loop_, std::move(flush));
    flush_timer_.expires_after(kCoalesceFor);
    flush_timer_.async_wait([flush](const boost::system::error_code&) { flush(); });
  }

  void Apply(WorkerActions& actions) {
    if (!actions.leaving.empty()) Log(actions.leaving);
    if (!actions.refused.empty()) {
      Log(actions.refused + "; exiting");
      exit_code_ = ExitCode::kRefused;
    }
    for (Assignment& a : actions.start) runner_.Start(a);
    for (TaskId id : actions.cancel) runner_.Cancel(id);
    for (TaskId id : actions.watch) runner_.Watch(id);
    for (const Lease& l : actions.drop_output) DropOutput(l);
    for (const ReadOutputMessage& m : actions.read_output) Send(ReadOutput(m));
    if (!actions.watch.empty()) SendOutput();
    if (!actions.send.empty()) {
      for (const Message& m : actions.send) Send(m);
      if (actions.exit) return Exit();
      // A send may have consumed the fd's edge: look for input again from the loop.
      asio::post(loop_, [this] { Drain(); });
    }
    if (actions.exit) return Exit();
    if (actions.reconnect) {
      // A connection that closed is being made again by libzmq already (with its backoff): a new
      // socket would only close the one it may have just made. A new socket is for a connection
      // that stays up but silent (a cut link), or to try the access file's next endpoint.
      if (link_down_ && config_.endpoints.size() == 1) {
        if (!waiting_logged_) Log("the broker closed the connection; waiting for it to come back");
        waiting_logged_ = true;
      } else {
        Log("no word from the broker; reconnecting");
        Connect();
      }
    }
    ArmTimer();
  }

  // orq forget: the files an attempt's output spilled to, named here from the task and the
  // attempt alone, in this worker's own output directory.
  void DropOutput(const Lease& lease) {
    if (runner_.spill_dir().empty()) return;
    for (bool err : {false, true})
      UnlinkBeneath(runner_.spill_dir() + "/" +
                    SpillName(lease.id.job, lease.id.index, lease.attempt, err));
  }

  // orq logs of the rest of an ended task's stream: a piece of the file it spilled to, named here
  // from the attempt alone, in this worker's own output directory; never a path from the wire.
  OutputPieceMessage ReadOutput(const ReadOutputMessage& m) const {
    OutputPieceMessage piece{m.fetch};
    if (runner_.spill_dir().empty()) return piece;
    const std::string path =
        runner_.spill_dir() + "/" +
        SpillName(m.attempt.id.job, m.attempt.id.index, m.attempt.attempt, m.err);
    const int fd = OpenBeneath(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return piece;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      const auto size = static_cast<uint64_t>(st.st_size);
      const uint64_t from = std::min(m.offset, size);
      piece.text.resize(std::min<uint64_t>(kOutputPieceBytes, size - from));
      const ssize_t n = ::pread(fd, piece.text.data(), piece.text.size(), static_cast<off_t>(from));
      if (n >= 0) {
        piece.found = true;
        piece.text.resize(static_cast<size_t>(n));
        piece.end = from + static_cast<uint64_t>(n) >= size;
      } else {
        piece.text.clear();
      }
    }
    ::close(fd);
    return piece;
  }

  // Followed tasks' output goes out as it comes, five times a second while any is followed.
  void SendOutput() {
    for (OutputMessage& m : runner_.Output()) Send(m);
    if (!runner_.watching() || output_armed_) return;
    output_armed_ = true;
    output_timer_.expires_after(std::chrono::milliseconds(200));
    output_timer_.async_wait([this](const boost::system::error_code& ec) {
      output_armed_ = false;
      if (!ec && !exiting_) SendOutput();
    });
  }

  void ArmTimer() {
    timer_.expires_at(core_.NextWakeup());
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || exiting_) return;
      if (config_.supervised && ::getppid() != parent_) {
        Log("the broker that started this worker is gone; exiting");
        return Exit();
      }
      if (watch_ && !CheckHandshakes()) return;
      Drain();  // what waits in the socket first: after a pause, the broker's word is there
      WorkerActions actions;
      core_.Tick(Clock::now(), actions);
      Apply(actions);
    });
  }

  void WatchChildren() {
    children_.async_wait([this](const boost::system::error_code& ec, int) {
      if (ec) return;
      runner_.ReapChildren();
      WatchChildren();
    });
  }

  // Reads the handshake monitor of a CURVE connection. A refused key, or handshakes that keep
  // failing, end the worker: no retry can fix them. A handshake that succeeds after the socket's
  // first (libzmq connected again by itself) is Reconnected(), when `reregister`.
  // Returns false when it is exiting.
  bool CheckHandshakes(bool reregister = true) {
    switch (watch_->Read()) {
      case HandshakeWatch::Event::kNone:
        return true;
      case HandshakeWatch::Event::kDisconnected:
        link_down_ = true;
        return true;
      case HandshakeWatch::Event::kSucceeded:
        failed_handshakes_ = 0;
        authenticated_once_ = true;
        link_down_ = false;
        waiting_logged_ = false;
        if (++handshakes_ > 1 && reregister) {
          WorkerActions actions;
          core_.Reconnected(Clock::now(), actions);
          Apply(actions);
        }
        return !exiting_;
      case HandshakeWatch::Event::kRefused:
        Log("the broker refused this worker's key: it was revoked, or never added; exiting");
        break;
      case HandshakeWatch::Event::kFailed:
        // Once a handshake succeeded, the key and the broker are right: a failure is the broker
        // closing the connection (restarting, too busy), and the worker keeps trying.
        if (authenticated_once_ || ++failed_handshakes_ < kHandshakeFailuresToExit) return true;
        Log("the CURVE handshake with the broker failed " + std::to_string(failed_handshakes_) +
            " times: the access file holds another broker's key, or no orq broker listens there;"
            " exiting");
        break;
    }
    exit_code_ = ExitCode::kRefused;
    Exit();
    return false;
  }

  // Never blocks the loop: with the send high-water mark off, a send only fails when the socket has
  // no pipe at all (its handshake was refused); what it held is then lost, and the broker re-leases
  // any task whose result it was.
  void Send(const Message& m) {
    if (!SendMessage(socket_, m, {}, zmq::send_flags::dontwait) && ++unsent_ == 1)
      Log("a message to the broker could not be queued (no connection); dropped");
  }

  // Kills what still runs (the broker requeues it: the lease ends with our goodbye) and stops.
  void Exit() {
    if (exiting_) return;
    exiting_ = true;
    runner_.KillAll();
    Send(GoodbyeMessage{});
    loop_.stop();
  }

  const WorkerConfig& config_;
  asio::io_context loop_{1};
  zmq::context_t ctx_{1};
  zmq::socket_t socket_;
  std::optional<asio::posix::stream_descriptor> fd_;  // ZMQ_FD of socket_, not owned
  WorkerCore core_;
  TaskRunner runner_;
  asio::steady_timer timer_;
  asio::steady_timer output_timer_{loop_};
  bool output_armed_ = false;
  asio::signal_set signals_;
  asio::signal_set children_;
  std::optional<HandshakeWatch> watch_;                     // CURVE connections only
  std::optional<asio::posix::stream_descriptor> watch_fd_;  // ZMQ_FD of watch_'s socket, not owned
  int handshakes_ = 0;                                      // that succeeded on this socket
  bool link_down_ = false;           // the connection closed and has not been made again yet
  bool waiting_logged_ = false;      // said once per outage that it waits
  int failed_handshakes_ = 0;        // in a row
  bool authenticated_once_ = false;  // a handshake with this broker succeeded
  size_t connects_ = 0;              // picks the endpoint of the next connection
  ExitCode exit_code_ = ExitCode::kOk;
  uint64_t unsent_ = 0;  // messages dropped by Send()
  bool flush_posted_ = false;
  asio::steady_timer flush_timer_{loop_};
  static constexpr auto kCoalesceFor = std::chrono::microseconds(1000);
  static constexpr size_t kCoalescedResults = 64;
  bool exiting_ = false;
  const pid_t parent_ = ::getppid();  // a supervised worker exits when its broker is gone
};

}  // namespace

ExitCode RunWorker(const WorkerConfig& config) {
  SetLogComponent("worker");
  std::signal(SIGPIPE, SIG_IGN);
  try {
    WorkerShell shell(config);
    return shell.Run();
  } catch (const zmq::error_t& e) {
    Log(std::string("cannot run: ") + e.what());
    return ExitCode::kFailed;
  }
}

}  // namespace orq

#include "cli/swarm.h"

#include <unistd.h>

#include <algorithm>
#include <memory>
#include <random>
#include <stdexcept>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/log.h"
#include "common/process.h"
#include "common/zmq_util.h"
#include "worker/worker_core.h"

namespace orq {
namespace {

using Clock = std::chrono::steady_clock;

// One simulated worker: its core and its connection.
struct Member {
  WorkerCore core;
  zmq::socket_t socket;
  std::string source;  // "127.0.H.N": its host's address
};

WorkerOptions MemberOptions(const SwarmOptions& o, int host) {
  WorkerOptions w;
  w.pid = ::getpid();
  w.host = "swarm-host-" + std::to_string(host);
  w.threads = 1;
  w.slots = {o.async_slots, 0, 0};
  return w;
}

// Host h dials from 127.0.(h / 250 + 1).(h % 250 + 1): loopback, one address per host.
std::string HostAddress(int host) {
  return "127.0." + std::to_string(host / 250 + 1) + "." + std::to_string(host % 250 + 1);
}

}  // namespace

Swarm::Swarm(SwarmOptions options) : options_(std::move(options)) {
  // Two descriptors a worker (its connection and its socket's mailbox), and a third while a
  // socket replaced after a restart is reaped: up to the hard limit (the brokers this process
  // starts begin with the limit it had).
  const size_t limit = RaiseDescriptorLimit();
  const size_t needed = 3 * static_cast<size_t>(std::max(0, options_.workers)) + 128;
  if (limit < needed)
    throw std::runtime_error(
        std::to_string(options_.workers) + " simulated workers need about " +
        std::to_string(needed) + " open descriptors and this process may open " +
        std::to_string(limit) + ": raise the hard limit (e.g. prlimit --nofile=" +
        std::to_string(needed) + " orq bench swarm ...) or ask for fewer");
  thread_ = std::thread([this] {
    try {
      Run();
    } catch (const std::exception& e) {
      error_ = e.what();
      failed_ = true;
    }
  });
}

void Swarm::Check() const {
  if (failed_) throw std::runtime_error("the simulated workers stopped: " + error_);
}

Swarm::~Swarm() {
  stop_ = true;
  thread_.join();
}

void Swarm::Run() {
  zmq::context_t ctx(2);
  // A member silent too long replaces its socket; libzmq reaps the old one later, so after a
  // broker restart nearly every member has two for a moment (past the limit, zmq_socket fails
  // with EMFILE).
  ctx.set(zmq::ctxopt::max_sockets, 2 * options_.workers + 64);
  std::mt19937 random(std::random_device{}());
  std::vector<std::unique_ptr<Member>> members;
  const std::string port = options_.endpoint.substr(options_.endpoint.rfind(':') + 1);
  auto connect = [&](Member& m, int host) {
    m.socket = MakeSocket(ctx, zmq::socket_type::dealer);
    m.socket.set(zmq::sockopt::sndhwm, 0);
    m.socket.set(zmq::sockopt::routing_id, "s" + std::to_string(random()) + "-" +
                                               std::to_string(random()) + "-" +
                                               std::to_string(random()));
    // As a remote worker does (worker/worker.cc): intervals of its own, so a restart's
    // reconnections spread.
    m.socket.set(zmq::sockopt::reconnect_ivl, std::uniform_int_distribution<int>(50, 300)(random));
    m.socket.set(zmq::sockopt::reconnect_ivl_max, 2000);
    const KeyPair& key = options_.host_keys[static_cast<size_t>(host) % options_.host_keys.size()];
    SetCurveClient(m.socket, {options_.broker_public_key, key.public_key, key.secret_key});
    m.socket.connect("tcp://" + m.source + ":0;127.0.0.1:" + port);
  };
  for (int i = 0; i < options_.workers; ++i) {
    const int host = i / std::max(1, options_.workers_per_host);
    members.push_back(std::make_unique<Member>(
        Member{WorkerCore(MemberOptions(options_, host)), zmq::socket_t(), HostAddress(host)}));
    connect(*members.back(), host);
    WorkerActions ignored;  // Ready waits in the socket until the handshake is done
    members.back()->core.Connected(Clock::now(), ignored);
    for (const Message& m : ignored.send)
      SendMessage(members.back()->socket, m, {}, zmq::send_flags::dontwait);
  }
  std::vector<zmq::pollitem_t> items(members.size());
  auto refresh = [&](size_t i) { items[i] = {members[i]->socket.handle(), 0, ZMQ_POLLIN, 0}; };
  for (size_t i = 0; i < members.size(); ++i) refresh(i);
  auto apply = [&](size_t i, WorkerActions& actions, Clock::time_point now) {
    Member& m = *members[i];
    for (Assignment& a : actions.start) {
      TaskOutcome outcome;
      outcome.id = a.id;
      outcome.attempt = a.attempt;
      outcome.worker_pid = ::getpid();
      outcome.started = outcome.finished = WallNow();
      if (auto* echo = std::get_if<EchoTask>(&a.spec.body)) {
        outcome.result = echo->value;
      } else {
        outcome.status = TaskStatus::kFailed;
        outcome.error = "a simulated worker runs echo tasks only";
      }
      m.core.OnDone(std::move(outcome), now);
      answered_.fetch_add(1, std::memory_order_relaxed);
    }
    if (!actions.start.empty()) m.core.Flush(actions);
    for (const Message& message : actions.send)
      SendMessage(m.socket, message, {}, zmq::send_flags::dontwait);
    if (actions.reconnect) {
      connect(m, static_cast<int>(i) / std::max(1, options_.workers_per_host));
      refresh(i);
      WorkerActions again;
      m.core.Connected(now, again);
      for (const Message& message : again.send)
        SendMessage(m.socket, message, {}, zmq::send_flags::dontwait);
    }
  };
  while (!stop_) {
    auto now = Clock::now();
    auto next = now + std::chrono::milliseconds(100);  // stop_ is looked at this often
    for (const auto& m : members) next = std::min(next, m->core.NextWakeup());
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now);
    try {
      zmq::poll(items.data(), items.size(), std::max(wait, std::chrono::milliseconds(0)));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    now = Clock::now();
    for (size_t i = 0; i < members.size(); ++i) {
      Member& m = *members[i];
      WorkerActions actions;
      if (items[i].revents & ZMQ_POLLIN) {
        for (int n = 0; n < 256; ++n) {
          auto received = ReceiveMessage(m.socket, /*router=*/false);
          if (!received) break;
          if (received->message) m.core.OnMessage(std::move(*received->message), now, actions);
        }
      }
      if (now >= m.core.NextWakeup()) m.core.Tick(now, actions);
      apply(i, actions, now);
    }
  }
  for (auto& m : members) m->socket.set(zmq::sockopt::linger, 0);
}

}  // namespace orq

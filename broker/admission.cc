#include "broker/admission.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "broker/zap.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/paths.h"

namespace orq {
namespace {

constexpr int kMonitorEvents = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_DISCONNECTED;
// At most this many refusals are logged one by one; the counters keep the rest.
constexpr uint64_t kLoggedRefusals = 100;

bool StartsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

Admission::Admission(zmq::context_t& ctx, zmq::socket_t& router, std::optional<KeyStore> keys)
    : router_(router),
      keys_(std::move(keys)),
      zap_(ctx, zmq::socket_type::rep),
      doorman_(ctx, router, kMonitorEvents) {
  zap_.set(zmq::sockopt::linger, 0);
  zap_.bind("inproc://zeromq.zap.01");
  Reload();
}

std::string Admission::Bind(const std::string& endpoint) {
  if (StartsWith(endpoint, "ipc://")) {
    // The socket file and its directory are what protect local peers (Role::kLocal).
    if (auto problem = IpcEndpointProblem(endpoint); !problem.ok())
      throw UsageError("cannot listen: " + problem.error().sentence);
    router_.set(zmq::sockopt::curve_server, 0);  // back to NULL, whatever was bound before
    router_.set(zmq::sockopt::zap_domain, std::string(kIpcDomain));
    // The socket file is made by bind() in this thread: owner-only from its first moment.
    const mode_t old = ::umask(0177);
    try {
      router_.bind(endpoint);
    } catch (...) {
      ::umask(old);
      throw;
    }
    ::umask(old);
    return endpoint;
  }
  if (!StartsWith(endpoint, "tcp://"))
    throw UsageError("cannot listen on '" + endpoint + "': orq listens on ipc:// and tcp:// only");
  if (!keys_) throw UsageError("cannot listen on " + endpoint + " without a keys directory");
  const KeyPair key = keys_->BrokerKey();
  router_.set(zmq::sockopt::curve_server, 1);
  router_.set(zmq::sockopt::curve_secretkey, key.secret_key);
  router_.set(zmq::sockopt::zap_domain, std::string(kTcpDomain));
  router_.set(zmq::sockopt::handshake_ivl, static_cast<int>(kHandshakeTimeout.count()));
  if (router_.get(zmq::sockopt::mechanism) != ZMQ_CURVE)  // fail closed, never plain TCP
    throw std::runtime_error("CURVE could not be enabled on " + endpoint);
  // A stranger's frame is read whole before CURVE judges it: TCP listeners take small frames.
  const int64_t local_max = router_.get(zmq::sockopt::maxmsgsize);
  const auto remote_max = static_cast<int64_t>(kMaxRemoteMessageBytes);
  router_.set(zmq::sockopt::maxmsgsize,
              local_max < 0 ? remote_max : std::min(local_max, remote_max));
  router_.bind(endpoint);
  router_.set(zmq::sockopt::maxmsgsize, local_max);  // the listener keeps its copy
  return router_.get(zmq::sockopt::last_endpoint);
}

void Admission::ServeZap(BrokerCounters& counters) {
  for (;;) {
    std::vector<std::string> request;
    zmq::message_t frame;
    if (!zap_.recv(frame, zmq::recv_flags::dontwait)) return;
    request.push_back(frame.to_string());
    while (frame.more()) {
      (void)zap_.recv(frame, zmq::recv_flags::none);  // the rest of a multipart is already here
      request.push_back(frame.to_string());
    }
    std::vector<std::string> reply;
    const ZapDecision decision = DecideZap(request, allowed_, reply);
    if (!decision.allowed) {
      if (++counters.auth_refused <= kLoggedRefusals) Log("handshake refused: " + decision.reason);
    }
    for (size_t i = 0; i < reply.size(); ++i) {
      zap_.send(zmq::buffer(reply[i]),
                i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
}

void Admission::ReadMonitor(BrokerCounters& counters) {
  counters.shed = doorman_.shed();
  if (const uint64_t unfinished = doorman_.TakeUnfinished()) {
    if (counters.handshake_failed < kLoggedRefusals)
      Log("TCP connections closed in their handshake: " + std::to_string(unfinished) +
          " (a frame over " + std::to_string(kMaxRemoteMessageBytes >> 20) +
          " MiB, or the peer hung up)");
    counters.handshake_failed += unfinished;
  }
  while (auto event = ReceiveMonitorEvent(doorman_.events())) {
    const uint16_t id = event->id;
    const uint32_t value = event->value;
    if (id == ZMQ_EVENT_DISCONNECTED) {
      if (peers_.erase(static_cast<int>(value))) ++counters.remote_closed;
    } else if (++counters.handshake_failed <= kLoggedRefusals) {
      Log("handshake failed on " + event->endpoint +
          (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? " (protocol error: no CURVE, a wrong broker "
                                                       "key, or not ZeroMQ)"
                                                     : ""));
    }
  }
}

Role Admission::RoleOf(const std::string& identity, const std::string& user_id, int fd) {
  if (user_id == kLocalUserId) return Role::kLocal;  // only the ipc listener's ZAP gives this
  auto it = allowed_.find(user_id);
  if (it == allowed_.end()) {  // revoked since it connected (or, impossibly, never checked)
    Drop(fd);
    return Role::kRevoked;
  }
  if (fd >= 0) {
    auto [peer, first] = peers_.try_emplace(fd);
    if (first) doorman_.Authenticated(fd);  // settled: never shed
    if (peer->second.identity != identity) peer->second = {identity, user_id};
  }
  return it->second.role;
}

std::vector<std::string> Admission::Reload() {
  if (!keys_) return {};
  return Use(keys_->Load());
}

std::vector<std::string> Admission::ReloadIfChanged() {
  if (!keys_) return {};
  AllowList now = keys_->Load();
  if (now == allowed_) return {};
  return Use(std::move(now));
}

std::vector<std::string> Admission::Use(AllowList allowed) {
  std::vector<std::string> revoked;
  allowed_ = std::move(allowed);
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (allowed_.count(it->second.user_id)) {
      ++it;
      continue;
    }
    Log("key " + it->second.user_id + " was revoked: dropping its connection");
    revoked.push_back(it->second.identity);
    Drop(it->first);
    it = peers_.erase(it);
  }
  return revoked;
}

void Admission::Drop(int fd) {
  // shutdown(), not close(): the descriptor stays zmq's; its I/O thread sees the connection end
  // and cleans up. The peer reconnects, and its handshake is refused.
  if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
}

}  // namespace orq

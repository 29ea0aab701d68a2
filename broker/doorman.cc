#include "broker/doorman.h"

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "common/log.h"
#include "common/protocol.h"
#include "common/zmq_util.h"

namespace orq {
namespace {

constexpr const char* kMonitorEndpoint = "inproc://orq-broker-monitor";
constexpr const char* kEventsEndpoint = "inproc://orq-broker-doorman";
constexpr int kFailedEvents = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                              ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
constexpr int kDoormanEvents = ZMQ_EVENT_ACCEPTED | kFailedEvents | ZMQ_EVENT_DISCONNECTED;
// A connection still open this long after its handshake timeout is settled: libzmq's close of a
// handshake that timed out may reach the monitor a little late.
constexpr std::chrono::milliseconds kSettleMargin{1000};
// At most this many sheddings are logged one by one; the counter keeps the rest.
constexpr uint64_t kLoggedSheddings = 20;

// The peer of socket `fd`: the whole address (with the port), and the host's address alone.
bool PeerOf(int fd, std::string& whole, std::string& host) {
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0) return false;
  whole.assign(reinterpret_cast<const char*>(&peer), length);
  if (peer.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(peer);
    host.assign(reinterpret_cast<const char*>(&in.sin_addr), sizeof in.sin_addr);
  } else if (peer.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(peer);
    host.assign(reinterpret_cast<const char*>(&in6.sin6_addr), sizeof in6.sin6_addr);
  } else {
    return false;
  }
  return true;
}

size_t DescriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 1 << 20;
  return static_cast<size_t>(limit.rlim_cur);
}

}  // namespace

size_t DescriptorReserve(size_t limit) { return std::max(kMinDescriptorReserve, limit / 8); }

std::vector<int> DoormanRules::Accepted(int fd, const std::string& address, size_t limit,
                                        TimePoint now) {
  handshaking_.insert(fd);
  const size_t reserve = DescriptorReserve(limit);
  if (static_cast<size_t>(fd) + reserve >= limit) return {fd};
  Expire(now);
  pending_.push_back({fd, address, now});
  std::vector<int> shed;
  if (++per_address_[address] > kMaxPendingPerAddress) {
    auto oldest = std::find_if(pending_.begin(), pending_.end(),
                               [&](const Pending& p) { return p.address == address; });
    shed.push_back(oldest->fd);
    Remove(oldest);
  }
  if (pending_.size() > kMaxPendingHandshakes) {
    shed.push_back(pending_.front().fd);
    Remove(pending_.begin());
  }
  return shed;
}

void DoormanRules::Expire(TimePoint now) {
  // Still open past the handshake timeout: authenticated (libzmq would have closed it), so no
  // longer counted against the bounds. It stays in handshaking_ until a message proves it: on a
  // loaded machine libzmq's close of a stranger's handshake can come later than the margin, and
  // that close must still count as a failure.
  while (!pending_.empty() && now - pending_.front().since > kHandshakeTimeout + kSettleMargin)
    Remove(pending_.begin());
}

void DoormanRules::Authenticated(int fd) {
  if (!handshaking_.erase(fd)) return;  // known already (or no longer open)
  Forget(fd);
}

bool DoormanRules::Closed(int fd) {
  Forget(fd);
  if (!handshaking_.erase(fd)) return false;
  // A close in the handshake follows the event of its result, if libzmq reported one: that event
  // counted it. Which result was whose cannot be told; the totals can.
  // (A connection authenticated but closed before the broker read its first message counts as
  // unfinished too: rare, and a stranger's close must never hide behind another's success.)
  bool unfinished = false;
  if (failures_unclaimed_ > 0)
    --failures_unclaimed_;
  else
    unfinished = true;
  failures_unclaimed_ = std::min(failures_unclaimed_, handshaking_.size());
  return unfinished;
}

void DoormanRules::Shed(int fd) { Forget(fd); }

void DoormanRules::Forget(int fd) {
  auto it =
      std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.fd == fd; });
  if (it != pending_.end()) Remove(it);
}

void DoormanRules::Remove(std::deque<Pending>::iterator it) {
  auto count = per_address_.find(it->address);
  if (--count->second == 0) per_address_.erase(count);
  pending_.erase(it);
}

Doorman::Doorman(zmq::context_t& ctx, zmq::socket_t& router, int forwarded_events)
    : router_(router.handle()),
      monitor_(ctx, zmq::socket_type::pair),
      out_(ctx, zmq::socket_type::pair),
      events_(ctx, zmq::socket_type::pair),
      forwarded_events_(forwarded_events) {
  if (zmq_socket_monitor(router.handle(), kMonitorEndpoint, kDoormanEvents | forwarded_events) != 0)
    throw zmq::error_t();
  for (zmq::socket_t* s : {&monitor_, &out_, &events_}) s->set(zmq::sockopt::linger, 0);
  monitor_.connect(kMonitorEndpoint);
  out_.set(zmq::sockopt::sndhwm, 0);  // the broker loop reads them all; never drop one
  events_.bind(kEventsEndpoint);
  out_.connect(kEventsEndpoint);
  thread_ = std::thread([this] { Run(); });
}

Doorman::~Doorman() {
  // The router's monitor stops first, while its reader is still open: libzmq 4.3.4 can leak an
  // event left in flight to a monitor socket closed before the monitor is stopped.
  zmq_socket_monitor(router_, nullptr, 0);
  events_.send(zmq::str_buffer("stop"), zmq::send_flags::dontwait);
  thread_.join();
}

void Doorman::Authenticated(int fd) {
  std::lock_guard<std::mutex> lock(authenticated_mutex_);
  authenticated_.push_back(fd);
}

void Doorman::TakeAuthenticated() {
  std::vector<int> fds;
  {
    std::lock_guard<std::mutex> lock(authenticated_mutex_);
    fds.swap(authenticated_);
  }
  for (int fd : fds) rules_.Authenticated(fd);
}

void Doorman::Run() {
  zmq::pollitem_t items[2] = {{monitor_.handle(), 0, ZMQ_POLLIN, 0},
                              {out_.handle(), 0, ZMQ_POLLIN, 0}};
  for (;;) {
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(-1));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      return;
    }
    if (items[1].revents & ZMQ_POLLIN) return;  // the broker is stopping
    TakeAuthenticated();
    while (auto event = ReceiveMonitorEvent(monitor_)) {
      const uint16_t id = event->id;
      // ipc connections are local: never shed, never counted.
      const bool tcp = event->endpoint.rfind("tcp://", 0) == 0;
      if (tcp && id == ZMQ_EVENT_ACCEPTED) {
        Admit(static_cast<int>(event->value));
      } else if (tcp && (id & kFailedEvents)) {
        rules_.HandshakeFailed();  // its value is an error code, not the descriptor
      } else if (id == ZMQ_EVENT_DISCONNECTED) {
        const int fd = static_cast<int>(event->value);
        if (rules_.Closed(fd)) unfinished_.fetch_add(1, std::memory_order_relaxed);
        peers_.erase(fd);
      }
      if (id & forwarded_events_) SendMonitorEvent(out_, *event);
    }
  }
}

void Doorman::Admit(int fd) {
  std::string whole, host;
  // libzmq may have closed it already (a frame over the limit read before this event was): it
  // still counts, under no address, so that the close that follows is counted as a failure.
  if (PeerOf(fd, whole, host)) peers_[fd] = whole;
  for (int closing : rules_.Accepted(fd, host, DescriptorLimit(), std::chrono::steady_clock::now()))
    Shed(closing);
}

void Doorman::Shed(int fd) {
  // libzmq may have closed this descriptor since, and handed its number to another connection:
  // only a socket still connected to the same peer is shut down. shutdown(), not close(): the
  // descriptor stays libzmq's, whose I/O thread sees the connection end and cleans up.
  rules_.Shed(fd);
  auto it = peers_.find(fd);
  std::string whole, host;
  if (it == peers_.end() || !PeerOf(fd, whole, host) || whole != it->second) return;
  ::shutdown(fd, SHUT_RDWR);
  const uint64_t n = shed_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n <= kLoggedSheddings)
    Log("closed a TCP connection still in its handshake: too many at once, or too few "
        "descriptors left" +
        std::string(n == kLoggedSheddings ? " (further ones are counted, not logged)" : ""));
}

}  // namespace orq

#include "common/zmq_util.h"

#include <atomic>
#include <cstring>
#include <vector>

namespace orq {

zmq::socket_t MakeSocket(zmq::context_t& ctx, zmq::socket_type type,
                         std::chrono::milliseconds linger) {
  zmq::socket_t socket(ctx, type);
  socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxMessageBytes));
  socket.set(zmq::sockopt::linger, static_cast<int>(linger.count()));
  return socket;
}

void SetCurveClient(zmq::socket_t& socket, const CurveClient& curve) {
  socket.set(zmq::sockopt::curve_serverkey, curve.server_public_key);
  socket.set(zmq::sockopt::curve_publickey, curve.public_key);
  socket.set(zmq::sockopt::curve_secretkey, curve.secret_key);
  socket.set(zmq::sockopt::connect_timeout, static_cast<int>(kConnectTimeout.count()));
}

HandshakeWatch::HandshakeWatch(zmq::context_t& ctx, zmq::socket_t& watched)
    : watched_(watched.handle()), monitor_(ctx, zmq::socket_type::pair) {
  static std::atomic<int> next{0};
  const std::string endpoint = "inproc://orq-handshakes-" + std::to_string(next++);
  if (zmq_socket_monitor(watched.handle(), endpoint.c_str(),
                         ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                             ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_DISCONNECTED) != 0)
    throw zmq::error_t();
  monitor_.set(zmq::sockopt::linger, 0);
  monitor_.connect(endpoint);
}

HandshakeWatch::~HandshakeWatch() { zmq_socket_monitor(watched_, nullptr, 0); }

std::optional<MonitorEvent> ReceiveMonitorEvent(zmq::socket_t& monitor) {
  for (;;) {
    zmq::message_t event, address;
    if (!monitor.recv(event, zmq::recv_flags::dontwait)) return std::nullopt;
    if (event.more()) (void)monitor.recv(address, zmq::recv_flags::none);
    if (event.size() < 6) continue;
    MonitorEvent e;
    std::memcpy(&e.id, event.data(), 2);
    std::memcpy(&e.value, static_cast<const char*>(event.data()) + 2, 4);
    e.endpoint = address.to_string();
    return e;
  }
}

void SendMonitorEvent(zmq::socket_t& socket, const MonitorEvent& event) {
  char head[6];
  std::memcpy(head, &event.id, 2);
  std::memcpy(head + 2, &event.value, 4);
  socket.send(zmq::buffer(head, sizeof head), zmq::send_flags::sndmore);
  socket.send(zmq::buffer(event.endpoint), zmq::send_flags::none);
}

HandshakeWatch::Event HandshakeWatch::Read() {
  Event worst = Event::kNone;  // what the caller is told
  while (auto event = ReceiveMonitorEvent(monitor_)) {
    Event e = event->id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED     ? Event::kSucceeded
              : event->id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? Event::kRefused
              : event->id == ZMQ_EVENT_DISCONNECTED          ? Event::kDisconnected
                                                             : Event::kFailed;
    // The latest, except that a refusal sticks, and that the close after a failed handshake
    // (libzmq reports both) leaves the failure.
    if (worst == Event::kRefused) continue;
    if (e == Event::kDisconnected && worst == Event::kFailed) continue;
    worst = e;
  }
  return worst;
}

bool SendMessage(zmq::socket_t& socket, const Message& message, std::string_view identity,
                 zmq::send_flags flags) {
  EncodedMessage encoded = Encode(message);
  const char command = static_cast<char>(encoded.command);
  try {
    // Only the first frame can fail to queue (would block, or no such peer); once it is in, the
    // rest of a multipart message always follows.
    if (!identity.empty()) {
      if (!socket.send(zmq::buffer(identity.data(), identity.size()),
                       flags | zmq::send_flags::sndmore))
        return false;
      flags = zmq::send_flags::none;
    }
    if (!socket.send(zmq::buffer(kProtocolVersion.data(), kProtocolVersion.size()),
                     flags | zmq::send_flags::sndmore))
      return false;
    socket.send(zmq::buffer(&command, 1), zmq::send_flags::sndmore);
    zmq::message_t body(encoded.body.data(), encoded.body.size());
    socket.send(body, zmq::send_flags::none);
    return true;
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH || e.num() == EAGAIN) return false;
    throw;
  }
}

std::optional<Received> ReceiveMessage(zmq::socket_t& socket, bool router, zmq::recv_flags flags) {
  std::vector<zmq::message_t> frames;
  zmq::message_t frame;
  if (!socket.recv(frame, flags)) return std::nullopt;
  frames.push_back(std::move(frame));
  while (frames.back().more()) {
    zmq::message_t next;
    (void)socket.recv(next, zmq::recv_flags::none);  // the rest of a multipart is already here
    frames.push_back(std::move(next));
  }
  Received received;
  for (const auto& f : frames) received.bytes += f.size();
  size_t first = 0;
  if (router) {
    received.identity = frames[0].to_string();
    first = 1;
  }
  if (frames.size() > first) {
    // Connection metadata rides on the frames that came from the peer, not on the identity frame
    // the ROUTER adds.
    if (const char* user = zmq_msg_gets(frames[first].handle(), "User-Id")) received.user_id = user;
    received.fd = zmq_msg_get(frames[first].handle(), ZMQ_SRCFD);
  }
  if (frames.size() != first + 3) {
    received.message = Error{ErrorCode::kBadRequest,
                             "expected 3 frames, got " + std::to_string(frames.size() - first)};
    return received;
  }
  received.message = Decode(frames[first].to_string_view(), frames[first + 1].to_string_view(),
                            frames[first + 2].to_string_view());
  return received;
}

}  // namespace orq

// The one bridge between zmq::message_t and orq's typed messages (common/codec.h). Sockets are
// made here with orq's options (bounded message size, linger), so every socket has the same limits.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <zmq.hpp>

#include "common/codec.h"

namespace orq {

// A socket with kMaxMessageBytes as ZMQ_MAXMSGSIZE and the given linger.
zmq::socket_t MakeSocket(zmq::context_t& ctx, zmq::socket_type type,
                         std::chrono::milliseconds linger = std::chrono::milliseconds(0));

// Sends one message; on a ROUTER, `identity` names the peer. Returns false when the message could
// not be queued (peer gone under ZMQ_ROUTER_MANDATORY, or high-water mark with dontwait).
bool SendMessage(zmq::socket_t& socket, const Message& message, std::string_view identity = {},
                 zmq::send_flags flags = zmq::send_flags::none);

// What a CURVE client needs (from an access file, common/keys.h).
struct CurveClient {
  std::string server_public_key;
  std::string public_key;
  std::string secret_key;
};
// Makes the socket's next connects CURVE clients of that server with that key pair, with
// kConnectTimeout on TCP connects.
void SetCurveClient(zmq::socket_t& socket, const CurveClient& curve);

// One event from a libzmq socket monitor (ZMQ_EVENT_*, its value: a descriptor for most, and the
// endpoint it happened on).
struct MonitorEvent {
  uint16_t id = 0;
  uint32_t value = 0;
  std::string endpoint;
};
// The next event waiting on a monitor's PAIR socket; nullopt when none is. A malformed one is
// skipped.
std::optional<MonitorEvent> ReceiveMonitorEvent(zmq::socket_t& monitor);
// Sends `event` as libzmq does (two frames), to pass it on.
void SendMonitorEvent(zmq::socket_t& socket, const MonitorEvent& event);

// Watches one socket's handshakes (a libzmq socket monitor), so a CURVE client can tell "the broker
// refused my key" and "the handshake fails: wrong broker key, or no orq broker there" from silence.
// The watched socket must outlive the watch: the watch stops the socket's monitor before it
// closes its reader, since libzmq's I/O thread blocks for good on an event sent to a monitor
// nobody reads (and with it every socket of the context).
class HandshakeWatch {
 public:
  // kDisconnected: an established connection closed (libzmq connects again by itself).
  enum class Event { kNone, kSucceeded, kRefused, kFailed, kDisconnected };
  HandshakeWatch(zmq::context_t& ctx, zmq::socket_t& watched);
  ~HandshakeWatch();
  HandshakeWatch(const HandshakeWatch&) = delete;
  HandshakeWatch& operator=(const HandshakeWatch&) = delete;
  // Reads every waiting event; returns the latest, except that a refusal among them wins.
  Event Read();
  zmq::socket_t& socket() { return monitor_; }

 private:
  void* watched_;          // the watched socket's handle
  zmq::socket_t monitor_;  // PAIR connected to the watched socket's monitor endpoint
};

struct Received {
  std::string identity;  // set on a ROUTER
  std::string user_id;   // the User-Id its connection's ZAP handler gave; empty when none
  int fd = -1;           // the connection it came on (ZMQ_SRCFD), to drop a revoked peer
  size_t bytes = 0;      // its frames' size on the wire
  Expected<Message> message = Message{};  // or why it did not decode (kBadRequest)
};

// Receives one whole multipart message. Nullopt when nothing is waiting (with dontwait).
std::optional<Received> ReceiveMessage(zmq::socket_t& socket, bool router,
                                       zmq::recv_flags flags = zmq::recv_flags::dontwait);

}  // namespace orq

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

struct Received {
  std::string identity;  // set on a ROUTER
  std::variant<Message, DecodeError> message;
};

// Receives one whole multipart message. Nullopt when nothing is waiting (with dontwait).
std::optional<Received> ReceiveMessage(zmq::socket_t& socket, bool router,
                                       zmq::recv_flags flags = zmq::recv_flags::dontwait);

}  // namespace orq

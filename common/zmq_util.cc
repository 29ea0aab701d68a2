#include "common/zmq_util.h"

#include <vector>

namespace orq {

zmq::socket_t MakeSocket(zmq::context_t& ctx, zmq::socket_type type,
                         std::chrono::milliseconds linger) {
  zmq::socket_t socket(ctx, type);
  socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxMessageBytes));
  socket.set(zmq::sockopt::linger, static_cast<int>(linger.count()));
  return socket;
}

bool SendMessage(zmq::socket_t& socket, const Message& message, std::string_view identity,
                 zmq::send_flags flags) {
  EncodedMessage encoded = Encode(message);
  const char command = static_cast<char>(encoded.command);
  try {
    if (!identity.empty() &&
        !socket.send(zmq::buffer(identity.data(), identity.size()), flags | zmq::send_flags::sndmore))
      return false;
    // Once the first frame is queued, the rest of a multipart message always follows.
    socket.send(zmq::buffer(kProtocolVersion.data(), kProtocolVersion.size()),
                zmq::send_flags::sndmore);
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
  size_t first = 0;
  if (router) {
    received.identity = frames[0].to_string();
    first = 1;
  }
  if (frames.size() != first + 3) {
    received.message = DecodeError{"expected 3 frames, got " + std::to_string(frames.size() - first)};
    return received;
  }
  received.message = Decode(frames[first].to_string_view(), frames[first + 1].to_string_view(),
                            frames[first + 2].to_string_view());
  return received;
}

}  // namespace orq

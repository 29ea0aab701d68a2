// The CLI's connection to a broker: one DEALER socket, requests out, replies in, every wait with
// a deadline. A broker that stops answering is noticed (pings during long waits), never waited on
// forever.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <zmq.hpp>

#include "common/protocol.h"

namespace orq {

using Clock = std::chrono::steady_clock;

// The broker cannot be reached (exit code 3); what() is the sentence for the user.
struct Unreachable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Client {
 public:
  explicit Client(std::string endpoint);

  void Send(const Message& message);
  // The next reply, or nullopt when `deadline` passes first. Throws Unreachable when the broker
  // stays silent for kSilenceLimit (it is pinged every second while a wait goes on), and
  // std::runtime_error on a malformed reply.
  std::optional<Message> Receive(Clock::time_point deadline);
  // Send, then the first reply within `timeout`; Unreachable if none comes.
  Message Request(const Message& message, std::chrono::milliseconds timeout);

  const std::string& endpoint() const { return endpoint_; }

 private:
  std::string endpoint_;
  zmq::context_t ctx_{1};
  zmq::socket_t socket_;
  Clock::time_point last_heard_;
};

// The broker's endpoint for this user: $ORQ_ENDPOINT, else the one in $ORQ_HOME. Throws Unreachable
// with a sentence when no broker runs there.
std::string LocalEndpoint();

}  // namespace orq

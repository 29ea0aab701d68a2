// What the broker sends: one outbox for the whole broker process. The shell makes it and gives
// it to the core, and the core to each part that sends (result delivery, log readers, telemetry),
// when they are made; each appends its messages in the order it decides them, and the shell takes
// them all once a turn (broker/broker.cc: Flush) to send, after the journal commit for replies
// to clients. Nobody passes messages back up a call chain.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/protocol.h"

namespace orq {

// One message for the shell to send: `to` is the peer's ROUTER identity.
struct Outgoing {
  std::string to;
  Message message;
};

class Outbox {
 public:
  void Send(Outgoing o) { out_.push_back(std::move(o)); }
  void Send(const std::string& to, Message message) { out_.push_back({to, std::move(message)}); }
  // A request refused: the client gets the error's code and sentence.
  void Send(const std::string& to, Error error) {
    out_.push_back({to, ErrorReply{error.code, std::move(error.sentence)}});
  }
  // A reply, or the error that stands in for it.
  template <typename T> void Send(const std::string& to, Expected<T> reply) {
    if (reply) return Send(to, Message(std::move(*reply)));
    Send(to, std::move(reply.error()));
  }

  // Everything sent since the last Take(), in order.
  std::vector<Outgoing> Take() { return std::exchange(out_, {}); }
  bool empty() const { return out_.empty(); }

 private:
  std::vector<Outgoing> out_;
};

}  // namespace orq

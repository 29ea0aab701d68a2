// What the broker's pure parts return for its shell to send.
#pragma once

#include <string>

#include "common/protocol.h"

namespace orq {

// One message for the shell to send: `to` is the peer's ROUTER identity.
struct Outgoing {
  std::string to;
  Message message;
};

}  // namespace orq

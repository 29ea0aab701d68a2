// The broker's ZAP handler (ZeroMQ RFC 27) as a pure function: a ZAP request's frames and the
// allow-list in, the reply's frames out. The broker's Admission (broker/admission.h) owns the REP
// socket on inproc://zeromq.zap.01 and calls this for every handshake on its ROUTER.
//
// The broker's listeners carry one of two ZAP domains, set before each bind:
//   kIpcDomain: ipc:// with the NULL mechanism; admitted as the local user (kLocalUserId)
//   kTcpDomain: TCP with CURVE; admitted only with a public key on the allow-list, whose Z85 text
//               becomes the connection's User-Id (the broker maps it to a Role per message)
// Everything else (another domain or mechanism, an unknown key, a malformed request) gets 400:
// the handler fails closed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/keys.h"

namespace orq {

inline constexpr std::string_view kIpcDomain = "orq-ipc";
inline constexpr std::string_view kTcpDomain = "orq-tcp";
inline constexpr std::string_view kLocalUserId = "local";

struct ZapDecision {
  bool allowed = false;
  std::string user_id;  // kLocalUserId, or the client's public key (Z85)
  std::string reason;   // why not, for the log
};

// Decides on one request (its frames as received). `reply` receives the six reply frames.
ZapDecision DecideZap(const std::vector<std::string>& request, const AllowList& allowed,
                      std::vector<std::string>& reply);

}  // namespace orq

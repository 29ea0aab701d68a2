#include "broker/zap.h"

#include <zmq.h>

namespace orq {
namespace {

// Frames of a ZAP request (RFC 27).
enum Frame : size_t {
  kVersion,
  kRequestId,
  kDomain,
  kAddress,
  kIdentity,
  kMechanism,
  kCredentials
};

ZapDecision Decide(const std::vector<std::string>& request, const AllowList& allowed) {
  if (request.size() < kCredentials) return {false, "", "malformed ZAP request"};
  if (request[kVersion] != "1.0") return {false, "", "unknown ZAP version " + request[kVersion]};
  const std::string& domain = request[kDomain];
  const std::string& mechanism = request[kMechanism];
  if (domain == kIpcDomain) {
    if (mechanism == "NULL" && request.size() == kCredentials)
      return {true, std::string(kLocalUserId), ""};
    return {false, "", "mechanism " + mechanism + " on the ipc listener"};
  }
  if (domain != kTcpDomain) return {false, "", "unknown ZAP domain '" + domain + "'"};
  if (mechanism != "CURVE")
    return {false, "", "mechanism " + mechanism + " from " + request[kAddress]};
  if (request.size() != kCredentials + 1 || request[kCredentials].size() != 32)
    return {false, "", "malformed CURVE credentials from " + request[kAddress]};
  char z85[41] = {};
  zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(request[kCredentials].data()), 32);
  std::string key(z85, 40);
  auto it = allowed.find(key);
  if (it == allowed.end())
    return {false, "", "key " + key + " from " + request[kAddress] + " is not on the allow-list"};
  return {true, std::move(key), ""};
}

}  // namespace

ZapDecision DecideZap(const std::vector<std::string>& request, const AllowList& allowed,
                      std::vector<std::string>& reply) {
  ZapDecision decision = Decide(request, allowed);
  reply = {"1.0",
           request.size() > kRequestId ? request[kRequestId] : std::string(),
           decision.allowed ? "200" : "400",
           decision.allowed ? "OK" : "Access denied",
           decision.allowed ? decision.user_id : std::string(),
           ""};
  return decision;
}

}  // namespace orq

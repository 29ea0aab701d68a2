#include "broker/zap.h"

#include <gtest/gtest.h>
#include <zmq.h>

namespace orq {
namespace {

// The 32 raw bytes of a Z85 public key, as a CURVE ZAP request carries them.
std::string Raw(const std::string& z85) {
  uint8_t raw[32];
  EXPECT_NE(zmq_z85_decode(raw, z85.c_str()), nullptr);
  return std::string(reinterpret_cast<char*>(raw), 32);
}

std::vector<std::string> Request(std::string_view domain, std::string mechanism,
                                 std::vector<std::string> credentials = {}) {
  std::vector<std::string> r = {"1.0",      "id-7", std::string(domain),
                                "10.0.0.9", "peer", std::move(mechanism)};
  r.insert(r.end(), credentials.begin(), credentials.end());
  return r;
}

class ZapTest : public ::testing::Test {
 protected:
  ZapTest() {
    allowed_.emplace(worker_.public_key,
                     AccessEntry{"node7", Role::kWorker, worker_.public_key, 0});
  }
  ZapDecision Decide(const std::vector<std::string>& request) {
    return DecideZap(request, allowed_, reply_);
  }
  KeyPair worker_ = NewKeyPair();
  AllowList allowed_;
  std::vector<std::string> reply_;
};

TEST_F(ZapTest, IpcPeersAreLocal) {
  ZapDecision d = Decide(Request(kIpcDomain, "NULL"));
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(reply_, (std::vector<std::string>{"1.0", "id-7", "200", "OK", "local", ""}));
}

TEST_F(ZapTest, AnAllowedCurveKeyBecomesTheUserId) {
  ZapDecision d = Decide(Request(kTcpDomain, "CURVE", {Raw(worker_.public_key)}));
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(reply_[2], "200");
  EXPECT_EQ(reply_[4], worker_.public_key);
}

TEST_F(ZapTest, EverythingElseIsRefused) {
  const std::vector<std::vector<std::string>> refused = {
      Request(kTcpDomain, "CURVE", {Raw(NewKeyPair().public_key)}),  // a key not on the list
      Request(kTcpDomain, "NULL"),                                   // TCP without CURVE
      Request(kTcpDomain, "PLAIN", {"user", "password"}),
      Request(kIpcDomain, "CURVE", {Raw(worker_.public_key)}),  // a mechanism ipc does not use
      Request("", "NULL"),                                      // a listener without a domain
      Request("other", "CURVE", {Raw(worker_.public_key)}),
      Request(kTcpDomain, "CURVE", {"short"}),  // malformed credentials
      Request(kTcpDomain, "CURVE"),
      {"1.0", "id-7", std::string(kIpcDomain)},                    // too few frames
      {"2.0", "id-7", std::string(kIpcDomain), "a", "p", "NULL"},  // another ZAP version
  };
  for (const auto& request : refused) {
    ZapDecision d = Decide(request);
    EXPECT_FALSE(d.allowed) << (request.size() > 5 ? request[5] : "short request");
    EXPECT_FALSE(d.reason.empty());
    ASSERT_EQ(reply_.size(), 6u);
    EXPECT_EQ(reply_[2], "400");
    EXPECT_EQ(reply_[4], "");  // no User-Id: nothing to be mistaken for a role
  }
}

}  // namespace
}  // namespace orq

#include "client/connection.h"

#include <gtest/gtest.h>

#include <thread>
#include <zmq.hpp>

#include "common/zmq_util.h"
#include "tests/temp_dir.h"

namespace orq {
namespace {

// A broker stand-in on ipc: a ROUTER that answers every ping with a pong, and a status request
// with a pong first (as the answer to a keepalive ping would come) and then a status; it stops
// after the status, or after 10 s without a request.
class FakeBroker {
 public:
  FakeBroker() : temp_("orq-connection"), endpoint_("ipc://" + temp_.path() + "/broker.ipc") {
    router_.set(zmq::sockopt::rcvtimeo, 10000);
    router_.set(zmq::sockopt::linger, 0);
    router_.bind(endpoint_);
    thread_ = std::thread([this] {
      for (;;) {
        auto received = ReceiveMessage(router_, /*router=*/true, zmq::recv_flags::none);
        if (!received) return;  // 10 s of silence: the test's own assertions say what failed
        if (!received->message) continue;
        SendMessage(router_, PongReply{}, received->identity);
        if (std::holds_alternative<StatusRequest>(*received->message)) {
          StatusReply status;
          status.broker_pid = 42;
          SendMessage(router_, status, received->identity);
          return;
        }
      }
    });
  }
  ~FakeBroker() { thread_.join(); }
  const std::string& endpoint() const { return endpoint_; }

 private:
  testing::TempDir temp_;
  std::string endpoint_;
  zmq::context_t ctx_;
  zmq::socket_t router_{ctx_, zmq::socket_type::router};
  std::thread thread_;
};

TEST(ConnectionTest, APingIsAnsweredByItsPongAndOtherRequestsWaitPastKeepalivePongs) {
  // Given a broker that answers a ping with a pong, and a status request with a pong and then
  // the status,
  FakeBroker broker;
  Connection connection({broker.endpoint(), {}, ""});
  // then a ping's reply is its pong (it used to be taken for a keepalive and waited past, so a
  // PingRequest never had an answer),
  EXPECT_TRUE(std::holds_alternative<PongReply>(
      connection.Request(PingRequest{}, std::chrono::milliseconds(5000))));
  // and a status request's reply is the status, not the pong before it.
  Message status = connection.Request(StatusRequest{}, std::chrono::milliseconds(5000));
  ASSERT_TRUE(std::holds_alternative<StatusReply>(status));
  EXPECT_EQ(std::get<StatusReply>(status).broker_pid, 42);
}

}  // namespace
}  // namespace orq

// A peer's garbage is logged and counted by the broker, never a crash, and never stops it from
// serving others.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/protocol.h"
#include "tests/harness.h"

namespace orq::testing {
namespace {

TEST(GarbageTest, BrokerCountsMalformedFramesAndKeepsServing) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  // Given a peer that sends junk: wrong frame counts, wrong version, unknown commands, bad bodies,
  zmq::context_t ctx;
  zmq::socket_t junk(ctx, zmq::socket_type::dealer);
  junk.set(zmq::sockopt::linger, 1000);
  junk.connect("ipc://" + env.home() + "/broker.ipc");
  const std::string v(kProtocolVersion);
  const std::vector<std::vector<std::string>> messages = {
      {"hello"},
      {v},
      {"XXXX", "\x10", ""},
      {v, "\x7f", ""},
      {v, "\x10", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"},
      {v, "\x11", std::string(1000, '\x01')},
      {v, "\x25", "\x02"},  // well-formed, but a reply: the broker takes no replies
      {v, "\x10", "", "extra"},
  };
  for (const auto& frames : messages) {
    for (size_t i = 0; i < frames.size(); ++i) {
      junk.send(zmq::buffer(frames[i]),
                i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  // When a real client then uses the broker,
  RunResult submit = env.Run({"submit", "--echo", "still here"});
  ASSERT_TRUE(Exits(submit, 0));
  RunResult gather = env.Run({"gather", JobId(submit)});
  // Then it is served, and the garbage was counted.
  EXPECT_EQ(gather.out, "still here\n");
  auto status = nlohmann::json::parse(env.Run({"status", "--json"}).out);
  EXPECT_EQ(status["counters"]["malformed"], 7);
  EXPECT_EQ(status["counters"]["unexpected"], 1);
  // The junk peer was told, once per malformed request (the reply it sent is only counted).
  int replies = 0;
  junk.set(zmq::sockopt::rcvtimeo, 5000);
  zmq::message_t reply;
  while (replies < 7 && junk.recv(reply)) replies += reply.more() ? 0 : 1;
  junk.set(zmq::sockopt::rcvtimeo, 200);
  while (junk.recv(reply)) replies += reply.more() ? 0 : 1;  // and nothing more
  EXPECT_EQ(replies, 7);
}

// Waits for `event` (ZMQ_EVENT_*) on a socket monitor; false after `timeout`.
bool WaitEvent(zmq::socket_t& monitor, uint16_t event, std::chrono::milliseconds timeout) {
  monitor.set(zmq::sockopt::rcvtimeo, static_cast<int>(timeout.count()));
  for (;;) {
    zmq::message_t head, address;
    if (!monitor.recv(head) || !monitor.recv(address)) return false;
    uint16_t got = 0;
    std::memcpy(&got, head.data(), sizeof got);
    if (got == event) return true;
  }
}

TEST(GarbageTest, HugeFrameDropsOnlyItsSender) {
  OrqEnv env;
  // Given a broker that takes messages of at most 64 KiB,
  env.Start({"broker", "-w", "1", "-t", "1", "--max-message-bytes", "65536"});
  ASSERT_TRUE(env.WaitProcesses(2, std::chrono::seconds(20)));
  // and a peer connected to it (its connection watched),
  zmq::context_t ctx;
  zmq::socket_t junk(ctx, zmq::socket_type::dealer);
  junk.set(zmq::sockopt::linger, 1000);
  junk.set(zmq::sockopt::reconnect_ivl, -1);  // a dropped connection stays dropped
  ASSERT_EQ(zmq_socket_monitor(junk.handle(), "inproc://junk-monitor",
                               ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED),
            0);
  zmq::socket_t monitor(ctx, zmq::socket_type::pair);
  monitor.connect("inproc://junk-monitor");
  junk.connect("ipc://" + env.home() + "/broker.ipc");
  ASSERT_TRUE(WaitEvent(monitor, ZMQ_EVENT_CONNECTED, std::chrono::seconds(20)));
  // When the peer sends a 1 MiB frame,
  std::string huge(1 << 20, 'x');
  junk.send(zmq::buffer(std::string(kProtocolVersion)), zmq::send_flags::sndmore);
  junk.send(zmq::buffer(std::string("\x10")), zmq::send_flags::sndmore);
  junk.send(zmq::buffer(huge), zmq::send_flags::none);
  // Then the broker drops that connection (the frame arrived, and was too big),
  EXPECT_TRUE(WaitEvent(monitor, ZMQ_EVENT_DISCONNECTED, std::chrono::seconds(20)))
      << "the broker kept the connection of a peer that sent 1 MiB";
  // and goes on serving everyone else.
  RunResult submit = env.Run({"submit", "--echo", "fine"});
  ASSERT_TRUE(Exits(submit, 0));
  EXPECT_EQ(env.Run({"gather", JobId(submit)}).out, "fine\n");
  auto status = nlohmann::json::parse(env.Run({"status", "--json"}).out);
  EXPECT_EQ(status["jobs"], 1);
  EXPECT_EQ(status["counters"]["malformed"], 0);  // zmq refused it before the broker saw it
}

}  // namespace
}  // namespace orq::testing

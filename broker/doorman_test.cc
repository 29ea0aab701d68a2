#include "broker/doorman.h"

#include <gtest/gtest.h>

#include "common/protocol.h"

namespace orq {
namespace {

constexpr size_t kLimit = 1024;
const DoormanRules::TimePoint kStart{};

TEST(DoormanRulesTest, AConnectionAcceptedIntoTheReserveIsClosedAtOnce) {
  DoormanRules rules;
  const size_t reserve = DescriptorReserve(kLimit);
  EXPECT_EQ(reserve, 128u);
  const int last_free = static_cast<int>(kLimit - reserve) - 1;
  EXPECT_TRUE(rules.Accepted(last_free, "a", kLimit, kStart).empty());
  EXPECT_EQ(rules.Accepted(last_free + 1, "b", kLimit, kStart), std::vector<int>{last_free + 1});
  EXPECT_EQ(rules.pending(), 1u);  // the one closed was never pending
  EXPECT_EQ(DescriptorReserve(100), kMinDescriptorReserve);
}

TEST(DoormanRulesTest, OneAddressHoldsAtMostItsShareOfHandshakesTheOldestGoesFirst) {
  DoormanRules rules;
  for (int fd = 10; fd < 10 + static_cast<int>(kMaxPendingPerAddress); ++fd)
    EXPECT_TRUE(rules.Accepted(fd, "attacker", kLimit, kStart).empty());
  EXPECT_TRUE(rules.Accepted(100, "honest", kLimit, kStart).empty());
  // One more from the attacker: its own oldest goes, not the honest peer.
  EXPECT_EQ(rules.Accepted(50, "attacker", kLimit, kStart), std::vector<int>{10});
  EXPECT_EQ(rules.Accepted(51, "attacker", kLimit, kStart), std::vector<int>{11});
  EXPECT_EQ(rules.pending(), kMaxPendingPerAddress + 1);
  // A connection that closed frees its place.
  rules.Closed(12);
  EXPECT_TRUE(rules.Accepted(52, "attacker", kLimit, kStart).empty());
}

TEST(DoormanRulesTest, HandshakesInProgressAreBoundedTheOldestGoesFirst) {
  DoormanRules rules;
  int fd = 10;
  for (size_t i = 0; i < kMaxPendingHandshakes; ++i)
    EXPECT_TRUE(rules.Accepted(fd++, "a" + std::to_string(i), kLimit, kStart).empty());
  EXPECT_EQ(rules.Accepted(fd, "late", kLimit, kStart), std::vector<int>{10});
  EXPECT_EQ(rules.pending(), kMaxPendingHandshakes);
  rules.Closed(11);
  rules.Closed(11);   // twice: no harm
  rules.Closed(999);  // never pending
  EXPECT_EQ(rules.pending(), kMaxPendingHandshakes - 1);
}

TEST(DoormanRulesTest, AnAuthenticatedConnectionIsNeverCountedNorShed) {
  DoormanRules rules;
  // Given many more connections from one address (a NAT, one big node) than it may hold in its
  // handshake, each authenticated once its handshake is over,
  std::vector<int> shed;
  for (int fd = 10; fd < 410; ++fd) {
    for (int s : rules.Accepted(fd, "nat", kLimit, kStart)) shed.push_back(s);
    rules.Authenticated(fd);
  }
  // then none of them was closed and none is pending,
  EXPECT_TRUE(shed.empty());
  EXPECT_EQ(rules.pending(), 0u);
  // and strangers from that address still get only their share: the oldest stranger goes.
  for (int fd = 500; fd < 500 + static_cast<int>(kMaxPendingPerAddress); ++fd)
    EXPECT_TRUE(rules.Accepted(fd, "nat", kLimit, kStart).empty());
  EXPECT_EQ(rules.Accepted(600, "nat", kLimit, kStart), std::vector<int>{500});
}

TEST(DoormanRulesTest, AConnectionOpenPastTheHandshakeTimeoutIsSettled) {
  DoormanRules rules;
  // Given a connection whose first message the broker has not read yet,
  EXPECT_TRUE(rules.Accepted(10, "quiet", kLimit, kStart).empty());
  // when it is still open well past the handshake timeout (libzmq closes unfinished ones),
  const auto later = kStart + kHandshakeTimeout + std::chrono::seconds(5);
  // then a crowd from its address sheds only the crowd.
  std::vector<int> shed;
  for (int fd = 11; fd < 11 + 2 * static_cast<int>(kMaxPendingPerAddress); ++fd)
    for (int s : rules.Accepted(fd, "quiet", kLimit, later)) shed.push_back(s);
  EXPECT_EQ(shed.size(), kMaxPendingPerAddress);
  EXPECT_EQ(std::count(shed.begin(), shed.end(), 10), 0);
}

TEST(DoormanRulesTest, AStrangersCloseLaterThanTheTimeoutStillCountsAsAFailure) {
  DoormanRules rules;
  // Given a stranger whose close libzmq reports only after the handshake timeout (a loaded
  // machine), so that it stopped counting against the bounds,
  EXPECT_TRUE(rules.Accepted(10, "slow", kLimit, kStart).empty());
  const auto later = kStart + kHandshakeTimeout + std::chrono::seconds(5);
  EXPECT_TRUE(rules.Accepted(11, "other", kLimit, later).empty());
  EXPECT_EQ(rules.pending(), 1u);
  // when it closes with no message read, it is a handshake that never finished.
  EXPECT_TRUE(rules.Closed(10));
}

TEST(DoormanRulesTest, AHandshakeClosedWithNoResultIsCountedOnce) {
  DoormanRules rules;
  for (int fd = 10; fd < 14; ++fd) rules.Accepted(fd, "a", kLimit, kStart);
  // A failure libzmq reported explains the next close in a handshake;
  rules.HandshakeFailed();
  EXPECT_FALSE(rules.Closed(10));
  // a close nothing explains is a handshake that never finished (a frame over the limit);
  EXPECT_TRUE(rules.Closed(11));
  EXPECT_TRUE(rules.Closed(12));
  // and an authenticated connection's close is no handshake's.
  rules.Authenticated(13);
  EXPECT_FALSE(rules.Closed(13));
  EXPECT_EQ(rules.pending(), 0u);
}

}  // namespace
}  // namespace orq

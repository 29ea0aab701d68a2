#include "broker/doorman.h"

#include <gtest/gtest.h>

#include "common/protocol.h"

namespace orq {
namespace {

constexpr size_t kLimit = 1024;

TEST(DoormanRulesTest, AConnectionAcceptedIntoTheReserveIsClosedAtOnce) {
  DoormanRules rules;
  const size_t reserve = DescriptorReserve(kLimit);
  EXPECT_EQ(reserve, 128u);
  const int last_free = static_cast<int>(kLimit - reserve) - 1;
  EXPECT_TRUE(rules.Accepted(last_free, "a", kLimit).empty());
  EXPECT_EQ(rules.Accepted(last_free + 1, "b", kLimit), std::vector<int>{last_free + 1});
  EXPECT_EQ(rules.pending(), 1u);  // the one closed was never pending
  EXPECT_EQ(DescriptorReserve(100), kMinDescriptorReserve);
}

TEST(DoormanRulesTest, OneAddressHoldsAtMostItsShareOfHandshakesTheOldestGoesFirst) {
  DoormanRules rules;
  for (int fd = 10; fd < 10 + static_cast<int>(kMaxPendingPerAddress); ++fd)
    EXPECT_TRUE(rules.Accepted(fd, "attacker", kLimit).empty());
  EXPECT_TRUE(rules.Accepted(100, "honest", kLimit).empty());
  // One more from the attacker: its own oldest goes, not the honest peer.
  EXPECT_EQ(rules.Accepted(50, "attacker", kLimit), std::vector<int>{10});
  EXPECT_EQ(rules.Accepted(51, "attacker", kLimit), std::vector<int>{11});
  EXPECT_EQ(rules.pending(), kMaxPendingPerAddress + 1);
  // A connection whose handshake ended frees its place.
  rules.Settled(12);
  EXPECT_TRUE(rules.Accepted(52, "attacker", kLimit).empty());
}

TEST(DoormanRulesTest, HandshakesInProgressAreBoundedTheOldestGoesFirst) {
  DoormanRules rules;
  int fd = 10;
  for (size_t i = 0; i < kMaxPendingHandshakes; ++i)
    EXPECT_TRUE(rules.Accepted(fd++, "a" + std::to_string(i), kLimit).empty());
  EXPECT_EQ(rules.Accepted(fd, "late", kLimit), std::vector<int>{10});
  EXPECT_EQ(rules.pending(), kMaxPendingHandshakes);
  rules.Settled(11);
  rules.Settled(11);   // twice (a failed handshake, then its close): no harm
  rules.Settled(999);  // never pending
  EXPECT_EQ(rules.pending(), kMaxPendingHandshakes - 1);
}

}  // namespace
}  // namespace orq

#include "broker/submit_parts.h"

#include <gtest/gtest.h>

#include "broker/core/core_fixture.h"
#include "common/codec.h"

namespace orq {
namespace {

// What a builder holds, decoded again from its windows.
std::vector<TaskSpec> Decoded(JobBuilder& job) {
  std::vector<TaskSpec> specs;
  for (const std::string& window : job.TakeWindows()) {
    auto decoded = DecodeSpecs(window);
    EXPECT_TRUE(decoded);
    if (decoded) specs.insert(specs.end(), decoded->begin(), decoded->end());
  }
  return specs;
}

TEST(SubmitPartsTest, PartsComeBackInOrderOnceAndOnlyToTheirSender) {
  SubmitParts parts;
  const SteadyTime t0{};
  parts.Add("alice", "k", Echoes(0, 2), 100, t0);
  parts.Add("bob", "k", Echoes(10, 1), 50, t0);
  parts.Add("alice", "k", Echoes(2, 2), 100, t0);
  SubmitParts::Taken alice = parts.Take("alice", 4);
  EXPECT_EQ(alice.problem, "");
  EXPECT_EQ(alice.bytes, 200u);
  ASSERT_EQ(alice.job.size(), 4u);
  const std::vector<TaskSpec> specs = Decoded(alice.job);
  ASSERT_EQ(specs.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(std::get<EchoTask>(specs[i].body).value, std::to_string(i));
  EXPECT_EQ(parts.Take("alice", 0).job.size(), 0u);  // taken: gone
  EXPECT_EQ(parts.Take("bob", 1).job.size(), 1u);
  EXPECT_EQ(parts.senders(), 0u);
}

TEST(SubmitPartsTest, AMissingPartMakesNoShorterJob) {
  SubmitParts parts;
  parts.Add("alice", "k", Echoes(0, 2), 100, SteadyTime{});
  SubmitParts::Taken taken = parts.Take("alice", 3);
  EXPECT_EQ(taken.job.size(), 0u);
  EXPECT_NE(taken.problem.find("did not all reach the broker (2 did)"), std::string::npos)
      << taken.problem;
  EXPECT_NE(parts.Take("carol", 5).problem, "");  // none at all
}

TEST(SubmitPartsTest, PartsOfASilentSenderExpire) {
  SubmitParts parts;
  const SteadyTime t0{};
  parts.Add("alice", "k", Echoes(0, 1), 100, t0);
  parts.Add("bob", "k", Echoes(0, 1), 100, t0 + kRequestTimeout / 2);
  parts.Expire(t0 + kRequestTimeout);
  EXPECT_EQ(parts.senders(), 1u);
  EXPECT_NE(parts.Take("alice", 1).problem, "");
  EXPECT_EQ(parts.Take("bob", 1).problem, "");
}

TEST(SubmitPartsTest, PartsPastABoundAreDroppedAndTheSubmitIsRefused) {
  SubmitParts parts(/*max_tasks=*/3);
  const SteadyTime t0{};
  parts.Add("alice", "k", Echoes(0, 2), 100, t0);
  parts.Add("alice", "k", Echoes(2, 2), 100, t0);  // 4 > 3
  parts.Add("alice", "k", Echoes(4, 1), 100, t0);  // still over: ignored
  SubmitParts::Taken taken = parts.Take("alice", 5);
  EXPECT_EQ(taken.job.size(), 0u);
  EXPECT_NE(taken.problem.find("at most 3 tasks"), std::string::npos) << taken.problem;
  parts.Add("bob", "k", Echoes(0, 1), kMaxMessageBytes + 1, t0);  // too many bytes
  EXPECT_NE(parts.Take("bob", 1).problem, "");
  // At most kMaxPartSenders senders hold parts at once; the next is told when it submits.
  for (size_t i = 0; i < kMaxPartSenders; ++i)
    parts.Add("s" + std::to_string(i), "k" + std::to_string(i), Echoes(0, 1), 10, t0);
  parts.Add("late", "k", Echoes(0, 1), 10, t0);
  EXPECT_EQ(parts.senders(), kMaxPartSenders);
  EXPECT_NE(parts.Take("late", 1).problem, "");
}

TEST(SubmitPartsTest, OneKeysSendersAndAllSendersTogetherHoldABoundedAmount) {
  SubmitParts parts;
  const SteadyTime t0{};
  const size_t mib = 1u << 20;
  // Given one key's senders each under the bound of one job,
  for (int i = 0; i < 2; ++i)
    parts.Add("a" + std::to_string(i), "key-a", Echoes(0, 1), 100 * mib, t0);
  // when one more of that key would take the key past its share, its parts go, not the others',
  parts.Add("a2", "key-a", Echoes(0, 1), 100 * mib, t0);
  EXPECT_NE(parts.Take("a2", 1).problem.find("with this key hold 256 MiB at most"),
            std::string::npos);
  EXPECT_EQ(parts.bytes(), 200 * mib);
  // and other keys hold their own, until all together reach the broker's bound.
  parts.Add("b0", "key-b", Echoes(0, 1), 200 * mib, t0);
  parts.Add("c0", "key-c", Echoes(0, 1), 200 * mib, t0);
  EXPECT_NE(parts.Take("c0", 1).problem.find("hold 512 MiB of the broker at most"),
            std::string::npos);
  EXPECT_EQ(parts.bytes(), 400 * mib);
  EXPECT_EQ(parts.Take("a0", 1).problem, "");
  EXPECT_EQ(parts.bytes(), 300 * mib);
  // One key has at most kMaxPartSendersPerKey senders holding parts.
  for (size_t i = 0; i < kMaxPartSendersPerKey + 1; ++i)
    parts.Add("m" + std::to_string(i), "many", Echoes(0, 1), 10, t0);
  EXPECT_NE(parts.Take("m" + std::to_string(kMaxPartSendersPerKey), 1).problem, "");
  // Taken or expired, what they held leaves the counts.
  parts.Expire(t0 + kRequestTimeout);
  EXPECT_EQ(parts.bytes(), 0u);
  EXPECT_EQ(parts.senders(), 0u);
}

}  // namespace
}  // namespace orq

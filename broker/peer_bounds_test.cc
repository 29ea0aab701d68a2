#include "broker/peer_bounds.h"

#include <gtest/gtest.h>

#include <functional>
#include <utility>
#include <vector>

#include "common/text.h"

namespace orq {
namespace {

ReadyMessage Honest() {
  ReadyMessage r;
  r.pid = 7;
  r.threads = 4;
  r.slots = {1000, 4, 4};
  r.host = "node7.example.org";
  r.resources = {{"cpus", 4}, {"gpu", 2}};
  r.queues = {"gpu", "default"};
  return r;
}

TEST(PeerBoundsTest, TextIsPrintableUtf8OrEscaped) {
  EXPECT_TRUE(IsPrintableUtf8("node-7 ünïcødé 日本"));
  EXPECT_FALSE(IsPrintableUtf8("\xff\xfe"));
  EXPECT_FALSE(IsPrintableUtf8("a\x1b]0;pwned\x07"));
  EXPECT_FALSE(
      IsPrintableUtf8("\xc2\x9b"
                      "31m"));                    // C1 CSI
  EXPECT_FALSE(IsPrintableUtf8("\xc0\xaf"));      // overlong '/'
  EXPECT_FALSE(IsPrintableUtf8("\xed\xa0\x80"));  // a surrogate
  EXPECT_EQ(EscapeControls("ok\tline\n\x1b[2Jgone\xff"), "ok\tline\n\\x1b[2Jgone\\xff");
  EXPECT_EQ(EscapeControls("日本"), "日本");
}

TEST(PeerBoundsTest, AnHonestRegistrationPassesAndEachBoundIsNamed) {
  EXPECT_TRUE(CheckReady(Honest()).ok());
  // Each change to an honest registration, and what the refusal's sentence names.
  const std::vector<std::pair<std::function<void(ReadyMessage&)>, std::string>> cases = {
      {[](ReadyMessage& r) { r.host = "\xff\xfe"; }, "host name"},
      {[](ReadyMessage& r) { r.host = "a\x1b[31m"; }, "host name"},
      {[](ReadyMessage& r) { r.host = std::string(256, 'h'); }, "host name"},
      {[](ReadyMessage& r) {
         r.resources.clear();
         for (int i = 0; i < 65; ++i) r.resources.push_back({"r" + std::to_string(i), 1});
       },
       "resources has 65 entries; the limit is 64"},
      {[](ReadyMessage& r) {
         r.resources = {{"gpu", 4097}};
       },
       "4097 units"},
      {[](ReadyMessage& r) {
         r.resources = {{"gpu", 1}, {"gpu", 1}};
       },
       "twice"},
      {[](ReadyMessage& r) {
         r.resources = {{"a b", 1}};
       },
       "not a name"},
      {[](ReadyMessage& r) { r.queues = {"$(rm)"}; }, "not a name"},
      {[](ReadyMessage& r) { r.slots[0] = kMaxSlots + 1; }, "slots"},
      {[](ReadyMessage& r) {
         r.slots = {0, 0, 1};
         r.running = {{{1, 0}, 1}, {{1, 1}, 1}};
       },
       "running tasks"},
      {[](ReadyMessage& r) { r.allocation = "no-slash"; }, "QUEUE/JOBID"},
      {[](ReadyMessage& r) { r.allocation = "q/1\n2"; }, "QUEUE/JOBID"},
      {[](ReadyMessage& r) { r.allocation = "q/" + std::string(200, '1'); }, "QUEUE/JOBID"},
      {[](ReadyMessage& r) { r.lifetime_ms = ~0ull; }, "lifetime"},
  };
  {
    ReadyMessage r = Honest();
    r.allocation = "gpu/41";
    r.lifetime_ms = 3600000;
    EXPECT_TRUE(CheckReady(r).ok());
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    ReadyMessage r = Honest();
    cases[i].first(r);
    const std::string refusal = SentenceOf(CheckReady(r));
    EXPECT_NE(refusal.find(cases[i].second), std::string::npos) << "case " << i << ": " << refusal;
  }
}

TEST(PeerBoundsTest, AScopedKeyOffersNoMoreThanItsScope) {
  const std::vector<std::string> queues = {"gpu", "default"};
  const std::vector<ResourceNeed> most = {{"gpu", 2}};
  EXPECT_TRUE(CheckScope(Honest(), std::nullopt, std::nullopt).ok());
  EXPECT_TRUE(CheckScope(Honest(), queues, most).ok());  // cpus: not named, not limited
  ReadyMessage r = Honest();
  r.queues = {};  // every queue: more than its scope
  EXPECT_NE(SentenceOf(CheckScope(r, queues, most)).find("queues gpu,default only"),
            std::string::npos);
  r = Honest();
  r.resources.push_back({"license", 1});  // not named: none allowed
  EXPECT_EQ(SentenceOf(CheckScope(r, queues, most)),
            "this key may offer at most 0 license; it offered 1");
  r = Honest();
  r.resources = {{"gpu", 3}};
  EXPECT_FALSE(CheckScope(r, std::nullopt, most).ok());
}

TEST(PeerBoundsTest, AnOutcomeOverABoundBecomesAFailureThatSaysWhy) {
  TaskOutcome honest;
  honest.id = {3, 1};
  honest.attempt = 2;
  honest.shell = ShellOutput{0, std::string(kMaxOutputBytes, 'o'), "err", true, nullptr};
  EXPECT_TRUE(CheckOutcome(honest).ok());
  TaskOutcome big = honest;
  big.shell->stdout_text += "!";
  const std::string why = SentenceOf(CheckOutcome(big));
  EXPECT_EQ(why, "its stdout has 1048577 bytes; the limit is 1048576");
  const TaskOutcome failed = OverBounds(big, why);
  EXPECT_EQ(failed.id, big.id);
  EXPECT_EQ(failed.attempt, 2u);
  EXPECT_EQ(failed.status, TaskStatus::kFailed);
  EXPECT_FALSE(failed.shell);
  EXPECT_NE(failed.error.find(why), std::string::npos);
  TaskOutcome result;
  result.result = std::string(kMaxValueBytes + 1, '1');
  EXPECT_FALSE(CheckOutcome(result).ok());
  TaskOutcome host = honest;
  host.shell->more =
      std::make_shared<ShellOutput::More>(ShellOutput::More{"", "", "\x1b]0;x\x07", {}});
  EXPECT_FALSE(CheckOutcome(host).ok());
}

}  // namespace
}  // namespace orq

#include "broker/core/spill_fetch.h"

#include <gtest/gtest.h>

#include <map>

namespace orq {
namespace {

class SpillFetchesTest : public ::testing::Test {
 protected:
  // Workers 1, 2 and 3 are connected as "w1", "w2" and "w3" unless a test says otherwise.
  std::map<uint32_t, std::string> connected_{{1, "w1"}, {2, "w2"}, {3, "w3"}};
  SpillFetches::IdentityOf identity_of_ = [this](uint32_t worker) -> const std::string* {
    auto it = connected_.find(worker);
    return it == connected_.end() ? nullptr : &it->second;
  };
  Outbox outbox_;
  SpillFetches fetches_{outbox_};
  SteadyTime now_{};

  std::vector<Outgoing> Begin(std::vector<uint32_t> workers, uint64_t offset = 0) {
    fetches_.Begin({"client", {{7, 2}, 1}, false, offset, "output/j7.2.1.out on node3"},
                   std::move(workers), now_, identity_of_);
    return outbox_.Take();
  }
  // The ReadOutputMessage in `out`, and to whom.
  static std::pair<std::string, ReadOutputMessage> Asked(const std::vector<Outgoing>& out) {
    EXPECT_EQ(out.size(), 1u);
    if (out.size() != 1 || !std::holds_alternative<ReadOutputMessage>(out[0].message)) return {};
    return {out[0].to, std::get<ReadOutputMessage>(out[0].message)};
  }
  static LogChunk Told(const std::vector<Outgoing>& out) {
    EXPECT_EQ(out.size(), 1u);
    if (out.size() != 1 || !std::holds_alternative<LogChunk>(out[0].message)) return {};
    EXPECT_EQ(out[0].to, "client");
    return std::get<LogChunk>(out[0].message);
  }
  std::vector<Outgoing> Answer(uint32_t worker, OutputPieceMessage piece, bool expected = true) {
    EXPECT_EQ(fetches_.Piece(worker, piece, identity_of_), expected);
    return outbox_.Take();
  }
};

TEST_F(SpillFetchesTest, TheFirstWorkerThatHasTheFileSendsThePieceToTheClient) {
  // Given a fetch from byte 1 MiB over workers 2 and 1 of the file's host,
  auto [to, ask] = Asked(Begin({2, 1}, 1u << 20));
  // the first is asked for that attempt's stream from that byte,
  EXPECT_EQ(to, "w2");
  EXPECT_EQ(ask.attempt, (Lease{{7, 2}, 1}));
  EXPECT_FALSE(ask.err);
  EXPECT_EQ(ask.offset, 1u << 20);
  // when it has no such file, the next is asked,
  auto [next, again] = Asked(Answer(2, {ask.fetch, false, true, ""}));
  EXPECT_EQ(next, "w1");
  // and its piece goes to the client, final when the file ends there.
  LogChunk chunk = Told(Answer(1, {again.fetch, true, false, "more"}));
  EXPECT_EQ(chunk.text, "more");
  EXPECT_FALSE(chunk.final);
  EXPECT_TRUE(chunk.note.empty());
  EXPECT_EQ(fetches_.size(), 0u);
}

TEST_F(SpillFetchesTest, WithNoWorkerLeftTheClientIsToldWhereTheFileIs) {
  // No worker on that host: the client is told at once.
  LogChunk none = Told(Begin({}));
  EXPECT_TRUE(none.final);
  EXPECT_EQ(none.note,
            "the rest of its output is in output/j7.2.1.out on node3, which no connected worker "
            "has");
  // A worker that is gone before it is asked is passed over; one that leaves before it answers
  // hands the fetch to the next; when the last does not have the file, the client is told.
  connected_.erase(1);
  auto [to, ask] = Asked(Begin({1, 2, 3}));
  EXPECT_EQ(to, "w2");
  connected_.erase(2);
  fetches_.WorkerGone(2, identity_of_);
  auto [next, again] = Asked(outbox_.Take());
  EXPECT_EQ(next, "w3");
  EXPECT_EQ(Told(Answer(3, {again.fetch, false, true, ""})).note, none.note);
  EXPECT_EQ(fetches_.size(), 0u);
}

TEST_F(SpillFetchesTest, APieceFromAWorkerNotAskedIsNoiseAndASilentOneTimesOut) {
  auto [to, ask] = Asked(Begin({1}));
  // A piece from another worker, or for another fetch, is refused (the caller counts it),
  EXPECT_TRUE(Answer(2, {ask.fetch, true, true, "forged"}, false).empty());
  EXPECT_TRUE(Answer(1, {ask.fetch + 1, true, true, "forged"}, false).empty());
  // and a worker that never answers ends the fetch at its deadline, telling the client.
  fetches_.Expire(now_ + kRequestTimeout - std::chrono::milliseconds(1));
  EXPECT_TRUE(outbox_.empty());
  fetches_.Expire(now_ + kRequestTimeout);
  LogChunk late = Told(outbox_.Take());
  EXPECT_TRUE(late.final);
  EXPECT_NE(late.note.find("whose worker did not send it within 30 s"), std::string::npos)
      << late.note;
  // Its answer, coming later, is noise too.
  EXPECT_TRUE(Answer(1, {ask.fetch, true, true, "late"}, false).empty());
}

TEST_F(SpillFetchesTest, AClientThatIsGoneLeavesNoFetchBehind) {
  auto [to, ask] = Asked(Begin({1}));
  fetches_.ClientGone("client");
  EXPECT_EQ(fetches_.size(), 0u);
  EXPECT_TRUE(Answer(1, {ask.fetch, true, true, "x"}, false).empty());
}

}  // namespace
}  // namespace orq

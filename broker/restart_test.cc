#include "broker/restart.h"

#include <gtest/gtest.h>

namespace orq {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = RestartBackoff::Clock;

TEST(RestartBackoffTest, DoublesWhileWorkersDieYoungAndResetsAfterOneLivesLong) {
  RestartBackoff backoff;
  Clock::time_point t{};  // a fake clock: only differences matter
  // A worker that dies at once, again and again, waits 100 ms, then twice as long each time,
  std::vector<long> waits;
  for (int i = 0; i < 10; ++i) {
    const auto started = t;
    t += milliseconds(10);
    const auto wait = backoff.Died(started, t);
    waits.push_back(static_cast<long>(wait.count()));
    t += wait;
  }
  EXPECT_EQ(waits, (std::vector<long>{100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000}));
  // up to 10 s; one that lived longer than the window is replaced after 100 ms again,
  const auto started = t;
  t += seconds(6);
  EXPECT_EQ(backoff.Died(started, t), milliseconds(100));
  // and the next young death starts the doubling from there.
  EXPECT_EQ(backoff.Died(t, t + milliseconds(1)), milliseconds(200));
}

TEST(RestartBackoffTest, TheWindowIsMeasuredFromTheWorkersOwnStart) {
  RestartBackoff backoff;
  const Clock::time_point t{};
  EXPECT_EQ(backoff.Died(t, t + milliseconds(4999)), milliseconds(100));  // young
  EXPECT_EQ(backoff.Died(t, t + milliseconds(4999)), milliseconds(200));
  EXPECT_EQ(backoff.Died(t, t + milliseconds(5000)), milliseconds(100));  // lived the window out
}

}  // namespace
}  // namespace orq

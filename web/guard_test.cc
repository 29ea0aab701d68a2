#include "web/guard.h"

#include <gtest/gtest.h>

namespace orq::web {
namespace {

RequestFacts Get(std::string_view host) { return {.method = "GET", .host = host}; }

TEST(GuardTest, ANonLoopbackAddressNeedsTlsAndAToken) {
  EXPECT_TRUE(CheckListen({"127.0.0.1", 80}).ok());
  EXPECT_TRUE(CheckListen({"::1", 80}).ok());
  EXPECT_FALSE(CheckListen({"0.0.0.0", 80}).ok());
  EXPECT_FALSE(CheckListen({"10.1.2.3", 80, true, ""}).ok());
  EXPECT_FALSE(CheckListen({"10.1.2.3", 80, false, "0123456789abcdef"}).ok());
  EXPECT_TRUE(CheckListen({"10.1.2.3", 80, true, "0123456789abcdef"}).ok());
  EXPECT_TRUE(IsLoopback("127.9.9.9"));
  EXPECT_FALSE(IsLoopback("localhost"));  // a name is not an address
}

TEST(GuardTest, AWrongHostIsRefused) {
  // Given a dashboard on 127.0.0.1:8080
  const Guard guard({"127.0.0.1", 8080}, "csrf", "node1");
  // Then its own names pass, and any other (a rebound DNS name) is refused with 421
  EXPECT_EQ(guard.Check(Get("127.0.0.1:8080"), Access::kRead), std::nullopt);
  EXPECT_EQ(guard.Check(Get("localhost:8080"), Access::kRead), std::nullopt);
  EXPECT_EQ(guard.Check(Get("[::1]:8080"), Access::kRead), std::nullopt);
  for (std::string_view host : {"evil.example:8080", "127.0.0.1:9090", "", "node1:8080"}) {
    auto refusal = guard.Check(Get(host), Access::kAsset);
    ASSERT_TRUE(refusal) << host;
    EXPECT_EQ(refusal->status, 421);
  }
}

TEST(GuardTest, WithATokenEveryReadNeedsIt) {
  const Guard guard({"10.0.0.5", 8443, true, "0123456789abcdef"}, "csrf", "node1");
  // The page's files are public (they hold no data); the Host may be the host's name
  EXPECT_EQ(guard.Check(Get("node1:8443"), Access::kAsset), std::nullopt);
  // A read without the token is refused; with it (cookie or bearer) it passes
  EXPECT_EQ(guard.Check(Get("10.0.0.5:8443"), Access::kRead)->status, 401);
  RequestFacts cookie = Get("10.0.0.5:8443");
  cookie.cookie = "a=b; orq_token=0123456789abcdef";
  EXPECT_EQ(guard.Check(cookie, Access::kRead), std::nullopt);
  RequestFacts bearer = Get("10.0.0.5:8443");
  bearer.authorization = "Bearer 0123456789abcdef";
  EXPECT_EQ(guard.Check(bearer, Access::kRead), std::nullopt);
  bearer.authorization = "Bearer 0123456789abcdeX";
  EXPECT_EQ(guard.Check(bearer, Access::kRead)->status, 401);
}

TEST(GuardTest, AnActionNeedsItsOwnOriginAndTheCsrfHeader) {
  const Guard guard({"127.0.0.1", 8080}, "s3cret", "");
  RequestFacts post{.method = "POST",
                    .host = "127.0.0.1:8080",
                    .origin = "http://127.0.0.1:8080",
                    .csrf = "s3cret"};
  EXPECT_EQ(guard.Check(post, Access::kAction), std::nullopt);
  // A cross-origin POST (a page elsewhere posting a form to the dashboard) is refused
  RequestFacts cross = post;
  cross.origin = "https://evil.example";
  EXPECT_EQ(guard.Check(cross, Access::kAction)->status, 403);
  RequestFacts no_origin = post;
  no_origin.origin = "";
  EXPECT_EQ(guard.Check(no_origin, Access::kAction)->status, 403);
  // So is one without the anti-CSRF header, or with a wrong one
  RequestFacts no_csrf = post;
  no_csrf.csrf = "";
  EXPECT_EQ(guard.Check(no_csrf, Access::kAction)->status, 403);
  no_csrf.csrf = "s3creX";
  EXPECT_EQ(guard.Check(no_csrf, Access::kAction)->status, 403);
  // And an action is never a GET
  RequestFacts get = post;
  get.method = "GET";
  EXPECT_EQ(guard.Check(get, Access::kAction)->status, 405);
}

TEST(GuardTest, CookiesAreFoundByName) {
  EXPECT_EQ(CookieValue("orq_token=abc", "orq_token"), "abc");
  EXPECT_EQ(CookieValue("x=1; orq_token=abc; y=2", "orq_token"), "abc");
  EXPECT_EQ(CookieValue("xorq_token=abc", "orq_token"), "");
  EXPECT_EQ(CookieValue("", "orq_token"), "");
}

TEST(GuardTest, RatesAreBoundedPerAddress) {
  Rates rates(10, 20);
  const Rates::Time t0{};
  int allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += rates.Allow("a", t0);
  EXPECT_EQ(allowed, 20);             // a burst
  EXPECT_TRUE(rates.Allow("b", t0));  // another address has its own bucket
  EXPECT_TRUE(rates.Allow("a", t0 + std::chrono::milliseconds(100)));  // one more token
  EXPECT_FALSE(rates.Allow("a", t0 + std::chrono::milliseconds(100)));
}

TEST(ConnectionsTest, IdleStrangersGoFirstAndTheOwnersConnectionsStay) {
  Connections c(/*total=*/4, /*unproven_per_address=*/2);
  // Given the owner's connection, proven by a request with the token,
  const uint64_t owner = c.Open("127.0.0.1").id;
  c.Proven(owner);
  // when a stranger's address opens more than its share, its own oldest goes,
  const uint64_t s1 = c.Open("127.0.0.9").id;
  EXPECT_TRUE(c.Open("127.0.0.9").close.empty());
  EXPECT_EQ(c.Open("127.0.0.9").close, std::vector<uint64_t>{s1});
  // and when all are taken, the oldest unproven goes for a newcomer, never the owner's;
  const uint64_t s2 = s1 + 1;
  EXPECT_TRUE(c.Open("127.0.0.5").close.empty());
  EXPECT_EQ(c.Open("127.0.0.6").close, std::vector<uint64_t>{s2});
  EXPECT_TRUE(c.contains(owner));
  EXPECT_EQ(c.size(), 4u);
  // with every other one proven, the newcomer itself is refused.
  Connections full(2, 2);
  for (int i = 0; i < 2; ++i) full.Proven(full.Open("a").id);
  const auto late = full.Open("b");
  EXPECT_EQ(late.close, std::vector<uint64_t>{late.id});
  EXPECT_FALSE(full.contains(late.id));
}

}  // namespace
}  // namespace orq::web

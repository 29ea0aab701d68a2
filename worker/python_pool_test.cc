#include "worker/python_pool.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <boost/asio/signal_set.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "tests/temp_dir.h"

namespace orq {
namespace {

using std::chrono::milliseconds;

// A stand-in for `python -m orq.serve` that speaks its framing: each request says what to do
// ("what": answer, die, hang) and is answered with the interpreter's pid and whether the request
// carried the function.
constexpr const char* kFake = R"(#!/usr/bin/env python3
import json, os, struct, sys, time
i, o = sys.stdin.buffer, sys.stdout.buffer
while True:
    h = i.read(4)
    if len(h) < 4:
        break
    req = json.loads(i.read(struct.unpack(">I", h)[0]))
    if req["what"] == "die":
        os._exit(3)
    if req["what"] == "hang":
        time.sleep(60)
    ans = json.dumps({"pid": os.getpid(), "fn": req["fn"], "forget": req["forget"],
                      "slot": req["slot"]}).encode()
    o.write(struct.pack(">I", len(ans)) + ans)
    o.flush()
)";

class PythonPoolTest : public ::testing::Test {
 protected:
  PythonPoolTest() : children_(loop_, SIGCHLD) {
    const std::string path = dir_.path() + "/fake-python";
    std::ofstream(path) << kFake;
    ::chmod(path.c_str(), 0755);
    options_.python = path;
    WatchChildren();
  }
  void WatchChildren() {
    children_.async_wait([this](const boost::system::error_code& ec, int) {
      if (ec) return;
      if (pool_) pool_->Reap();
      WatchChildren();
    });
  }
  PythonPool& Pool() {
    if (!pool_) pool_.emplace(loop_, options_);
    return *pool_;
  }
  // Starts a call of function `fn` that does `what`; its reply lands in replies_[n].
  uint64_t Call(const std::string& what, const std::string& fn = "f") {
    const size_t n = replies_.size();
    replies_.emplace_back();
    PythonCall call;
    call.cwd = dir_.path();
    call.env = {"PATH=/usr/bin:/bin"};
    call.function_id = fn;
    call.request = [what](int slot, bool send, bool forget) {
      return nlohmann::json{{"what", what}, {"slot", slot}, {"fn", send}, {"forget", forget}}
          .dump();
    };
    return Pool().Call(std::move(call), [this, n](PythonReply r) { replies_[n] = std::move(r); });
  }
  // Steps the loop until replies_[n] is in (or 20 s pass).
  const PythonReply& Reply(size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!replies_[n] && std::chrono::steady_clock::now() < deadline)
      loop_.run_one_for(milliseconds(50));
    EXPECT_TRUE(replies_[n].has_value()) << "no reply to call " << n;
    static const PythonReply kNone;
    return replies_[n] ? *replies_[n] : kNone;
  }
  nlohmann::json Answer(size_t n) {
    const PythonReply& r = Reply(n);
    EXPECT_TRUE(r.answered) << r.error;
    return r.answered ? nlohmann::json::parse(r.body) : nlohmann::json::object();
  }

  testing::TempDir dir_{"orq-python-pool"};
  boost::asio::io_context loop_;
  boost::asio::signal_set children_;
  PythonPoolOptions options_;
  std::optional<PythonPool> pool_;
  std::vector<std::optional<PythonReply>> replies_;
};

TEST_F(PythonPoolTest, AWarmInterpreterServesCallsAndIsSentAFunctionOnce) {
  Call("answer");
  const auto first = Answer(0);
  Call("answer");
  const auto second = Answer(1);
  Call("answer", "g");
  const auto third = Answer(2);
  EXPECT_EQ(first["pid"], second["pid"]);
  EXPECT_EQ(second["pid"], third["pid"]);
  EXPECT_TRUE(first["fn"]);
  EXPECT_FALSE(second["fn"]);  // it has f
  EXPECT_TRUE(third["fn"]);    // g is new to it
  EXPECT_EQ(Pool().started(), 1u);
}

TEST_F(PythonPoolTest, CallsBeyondKeepWaitAndTakeTheNextFreeSlot) {
  options_.keep = 1;
  Call("answer");
  Call("answer");
  EXPECT_EQ(Pool().waiting(), 1u);
  EXPECT_EQ(Answer(0)["slot"], 0);
  EXPECT_EQ(Answer(1)["slot"], 0);
  EXPECT_EQ(Pool().waiting(), 0u);
}

TEST_F(PythonPoolTest, AnInterpreterThatDiesFailsItsCallAndTheNextCallGetsANewOne) {
  Call("answer");
  const auto before = Answer(0);
  Call("die");
  const PythonReply& died = Reply(1);
  EXPECT_FALSE(died.answered);
  EXPECT_NE(died.error.find("ended during the call: exited with code 3"), std::string::npos)
      << died.error;
  Call("answer");
  EXPECT_NE(Answer(2)["pid"], before["pid"]);
  EXPECT_EQ(Pool().started(), 2u);
}

TEST_F(PythonPoolTest, AnAbortedCallEndsItsInterpreterNotThePool) {
  const uint64_t hanging = Call("hang");
  loop_.run_for(milliseconds(200));
  Pool().Abort(hanging);
  Call("answer");
  EXPECT_TRUE(Reply(1).answered);
  EXPECT_FALSE(replies_[0].has_value());  // an aborted call is never answered
  EXPECT_EQ(Pool().started(), 2u);
  EXPECT_EQ(Pool().size(), 1u);
}

TEST_F(PythonPoolTest, AnInterpreterIsReplacedAfterMaxCalls) {
  options_.max_calls = 2;
  Call("answer");
  const auto a = Answer(0);
  Call("answer");
  const auto b = Answer(1);
  Call("answer");
  const auto c = Answer(2);
  EXPECT_EQ(a["pid"], b["pid"]);
  EXPECT_NE(b["pid"], c["pid"]);
  EXPECT_TRUE(c["fn"]);  // a new interpreter is sent the function again
}

TEST_F(PythonPoolTest, AnInterpreterThatCannotStartFailsTheCallWithWhy) {
  options_.python = dir_.path() + "/no-such-python";
  Call("answer");
  const PythonReply& r = Reply(0);
  EXPECT_FALSE(r.answered);
  EXPECT_NE(r.error.find("could not start: cannot run"), std::string::npos) << r.error;
}

}  // namespace
}  // namespace orq

// Many hosts: a broker, remote workers and remote clients over TCP, always CURVE. Every case runs
// twice: over loopback, and across network namespaces the test makes (tests/netns.h): the broker
// in one, the client in another, workers in a third and fourth. A cut link runs across namespaces
// only (loopback cannot be cut for one worker).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/checker.h"
#include "tests/cluster.h"

namespace orq::testing {
namespace {

class RemoteTest : public ClusterTest {};

TEST_P(RemoteTest, EveryKindRunsOnceOnRemoteWorkersForARemoteClient) {
  Cluster& c = *cluster_;
  // Given a broker with no local workers, two workers on another host and a client on a third,
  c.Up();
  const std::string w1 = c.Access("worker", "node1", 0), w2 = c.Access("worker", "node2", 0);
  const std::string alice = c.Access("client", "alice", -1);
  const std::string workdir = c.broker().home();
  c.StartWorker(0, w1, {"--workdir", workdir});
  c.StartWorker(0, w2, {"--workdir", workdir});
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 2; }));
  const nlohmann::json status = c.status();  // kept: the loop reads into it
  for (const auto& w : status["workers"]) {
    EXPECT_EQ(w["remote"], true);
    EXPECT_EQ(w["host"], HostName());
  }
  // When the client submits tasks of every kind,
  std::string lines;
  std::vector<nlohmann::json> expected;
  for (int i = 0; i < 10; ++i) {
    lines += R"({"kind": "sleep", "seconds": 0.1, "result": "s)" + std::to_string(i) + "\"}\n";
    expected.push_back("s" + std::to_string(i));
    lines += R"({"kind": "echo", "value": {"n": )" + std::to_string(i) + "}}\n";
    expected.push_back({{"n", i}});
    lines += R"({"kind": "cpu", "ms": 5})"
             "\n";
    expected.push_back(5);
    lines += R"({"kind": "shell", "cmd": "echo $((6 * )" + std::to_string(i) + "))\"}\n";
    expected.push_back(std::to_string(6 * i) + "\n");
  }
  // A shell task runs in the submitter's directory (the filesystem is shared here), or its own.
  lines += R"({"kind": "shell", "argv": ["pwd"]})"
           "\n";
  expected.push_back(std::filesystem::current_path().string() + "\n");
  lines += R"({"kind": "shell", "argv": ["pwd"], "cwd": ")" + workdir + "\"}\n";
  expected.push_back(workdir + "\n");
  RunResult submit = c.Client(alice, {"submit", "-f", c.client().WriteFile("job.jsonl", lines)});
  ASSERT_TRUE(Exits(submit, 0));
  const std::string job = JobId(submit);
  // Then every task ends ok exactly once, in order, run by the remote workers.
  RunResult gather = c.Client(alice, {"gather", "--json", job});
  EXPECT_TRUE(Exits(gather, 0));
  CheckReport report = CheckResults(job, expected, gather.out);
  EXPECT_TRUE(report.ok()) << report.Describe();
  // and every client verb works over TCP.
  EXPECT_TRUE(Exits(c.Client(alice, {"status"}), 0));
  RunResult cancel = c.Client(alice, {"cancel", job});
  EXPECT_EQ(cancel.out, "cancelled 0 tasks\n");
  EXPECT_EQ(c.Client(alice, {"forget", job}).out, "forgot 1 job\n");
  RunResult down = c.Client(alice, {"down"});
  EXPECT_TRUE(Exits(down, 0));
  EXPECT_TRUE(c.broker().WaitNoProcesses(seconds(20)));
}

TEST_P(RemoteTest, StrangersOnTheTcpPortRunNothingAndTheBrokerKeepsServing) {
  Cluster& c = *cluster_;
  c.Up();
  const std::string alice = c.Access("client", "alice", -1);
  c.StartWorker(0, c.Access("worker", "node1", 0));
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 1; }));
  const std::string endpoint = c.EndpointFor(-1);
  const CurveClient keys = KeysOf(alice);
  const SubmitRequest evil{{[] {
    TaskSpec s;
    s.body = ShellTask{{"sh", "-c", "id"}};
    return s;
  }()}};
  std::vector<Message> no_key, unknown_key, wrong_broker;
  // Each peer stays until the broker has counted its refusal.
  auto counted = [&](const char* counter) {
    const int before = c.status()["counters"][counter].get<int>();
    return [&c, counter, before](const std::vector<Message>&) {
      return c.status()["counters"][counter].get<int>() > before;
    };
  };
  c.InClientNet([&] {
    // Given peers without a key, with a key the broker never allowed, and with the wrong broker
    // key, each sending a submit and a worker registration,
    const std::vector<Message> attempts = {evil, ReadyMessage{1, 1, {8, 8, 8}, {}, "evil"}};
    no_key = RawPeer(endpoint, std::nullopt, attempts, counted("handshake_failed"));
    KeyPair stranger = NewKeyPair();
    unknown_key = RawPeer(
        endpoint, CurveClient{keys.server_public_key, stranger.public_key, stranger.secret_key},
        attempts, counted("auth_refused"));
    wrong_broker =
        RawPeer(endpoint, CurveClient{NewKeyPair().public_key, keys.public_key, keys.secret_key},
                attempts, counted("handshake_failed"));
    // and a peer that writes 2000 frames of noise over 20 connections,
    TcpNoise(endpoint, 20, 100);
  });
  // Then none of them got an answer,
  EXPECT_TRUE(no_key.empty());
  EXPECT_TRUE(unknown_key.empty());
  EXPECT_TRUE(wrong_broker.empty());
  // the broker still serves its real client,
  RunResult submit = c.Client(alice, {"submit", "--echo", "still here"});
  ASSERT_TRUE(Exits(submit, 0));
  EXPECT_EQ(c.Client(alice, {"gather", JobId(submit)}).out, "still here\n");
  // and nothing else was submitted or registered; the refusals were counted.
  auto status = c.status();
  EXPECT_EQ(status["jobs"], 1);
  EXPECT_EQ(status["workers"].size(), 1u);
  EXPECT_GE(status["counters"]["auth_refused"].get<int>(), 1);      // the unknown key
  EXPECT_GE(status["counters"]["handshake_failed"].get<int>(), 3);  // no key, wrong broker, noise
  EXPECT_EQ(status["counters"]["malformed"], 0);  // nothing unauthenticated reached the broker
}

TEST_P(RemoteTest, EachKeyMayOnlyPlayItsRole) {
  Cluster& c = *cluster_;
  c.Up();
  const std::string worker = c.Access("worker", "node1", -1);  // dialled from the client's host
  const std::string alice = c.Access("client", "alice", -1);
  const std::string endpoint = c.EndpointFor(-1);
  std::vector<Message> as_worker, as_client;
  c.InClientNet([&] {
    // Given a worker key used to submit, and a client key used to register as a worker,
    SubmitRequest submit{{TaskSpec{}}};
    as_worker = RawPeer(endpoint, KeysOf(worker), {submit, ShutdownRequest{}},
                        [](const std::vector<Message>& replies) { return replies.size() >= 2; });
    // (the peer stays until the broker has refused its registration)
    as_client = RawPeer(
        endpoint, KeysOf(alice), {ReadyMessage{1, 1, {8, 8, 8}, {}, "evil"}},
        [&](const std::vector<Message>&) { return c.status()["counters"]["forbidden"] == 3; });
  });
  // Then the worker key's requests are refused with a reason, and the client key gets no work,
  ASSERT_EQ(as_worker.size(), 2u);
  for (const Message& m : as_worker) {
    ASSERT_TRUE(std::holds_alternative<ErrorReply>(m));
    EXPECT_EQ(std::get<ErrorReply>(m).code, ErrorCode::kForbidden);
  }
  EXPECT_TRUE(as_client.empty());
  auto status = c.status();
  EXPECT_EQ(status["jobs"], 0);
  EXPECT_EQ(status["workers"].size(), 0u);
  EXPECT_EQ(status["counters"]["forbidden"], 3);
  // The CLI says so in a sentence, with exit code 4 (a forged client file holding worker keys).
  AccessFile forged = ReadAccessFile(worker);
  forged.role = Role::kClient;
  const std::string forged_file = c.broker().home() + "/forged.access";
  WritePrivateFile(forged_file, FormatAccessFile(forged), true);
  RunResult r = c.Client(forged_file, {"submit", "--echo", "1"});
  EXPECT_TRUE(Exits(r, 4));
  EXPECT_NE(r.err.find("a worker key may only register"), std::string::npos) << r.err;
  EXPECT_FALSE(c.broker().home().empty());
  EXPECT_EQ(c.status()["jobs"], 0);
}

TEST_P(RemoteTest, RevokedKeysAreRefusedAndTheirWorkersLeasesRunElsewhere) {
  Cluster& c = *cluster_;
  c.Up();
  const std::string w1 = c.Access("worker", "node1", 0), w2 = c.Access("worker", "node2", 1);
  const std::string alice = c.Access("client", "alice", -1);
  // Given two remote workers running one task each,
  pid_t first = c.StartWorker(0, w1, {"--slots", "1"});
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 1; }));
  c.StartWorker(1, w2, {"--slots", "1"});
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 2; }));
  RunResult submit = c.Client(
      alice, {"submit", "-f",
              c.client().WriteFile("two.jsonl", R"({"kind": "sleep", "seconds": 2, "result": "a"})"
                                                "\n"
                                                R"({"kind": "sleep", "seconds": 2, "result": "b"})"
                                                "\n")});
  ASSERT_TRUE(Exits(submit, 0));
  const std::string job = JobId(submit);
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["tasks"]["running"] == 2; }));
  // When the first worker's key is revoked,
  RunResult revoke = c.broker().Run({"access", "revoke", "node1"});
  ASSERT_TRUE(Exits(revoke, 0));
  EXPECT_NE(revoke.out.find("dropped 1 connection"), std::string::npos) << revoke.out;
  // Then that worker is refused on its next handshake and exits with code 4,
  EXPECT_EQ(WaitExit(first, seconds(15)), 4);
  // its task runs again on the other worker, and each task has exactly one result.
  RunResult gather = c.Client(alice, {"gather", "--json", job});
  EXPECT_TRUE(Exits(gather, 0));
  CheckReport report = CheckResults(job, {"a", "b"}, gather.out);
  EXPECT_TRUE(report.ok()) << report.Describe();
  auto status = c.status();
  EXPECT_EQ(status["workers"].size(), 1u);
  EXPECT_EQ(status["counters"]["revoked"], 1);
  EXPECT_GE(status["counters"]["auth_refused"].get<int>(), 1);
  EXPECT_EQ(c.broker().Run({"access", "list", "--json"}).out.find("node1"), std::string::npos);
  // A revoked client is told so, with exit code 4.
  ASSERT_TRUE(Exits(c.broker().Run({"access", "revoke", "alice"}), 0));
  RunResult refused = c.Client(alice, {"status"});
  EXPECT_TRUE(Exits(refused, 4));
  EXPECT_NE(refused.err.find("revoked, or never added"), std::string::npos) << refused.err;
}

// Loopback cannot be cut for one worker (a paused worker, the nearest thing, is in fault_test.cc).
TEST(RemoteCutTest, CutLinksLeasesRunElsewhereAndItsLateResultsAreStale) {
  if (auto can = Netns::Unavailable(); !can.ok())
    FAIL() << "cannot make test hosts: " << can.error().sentence;
  Cluster c(Net::kNamespaces);
  c.Up();
  const std::string alice = c.Access("client", "alice", -1);
  // Given 500 tasks running on two workers on two hosts, 250 each,
  pid_t cut_off = c.StartWorker(0, c.Access("worker", "a", 0), {"--slots", "250"});
  c.StartWorker(1, c.Access("worker", "b", 1), {"--slots", "250"});
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 2; }));
  std::string lines;
  std::vector<nlohmann::json> expected;
  for (int i = 0; i < 500; ++i) {
    // Long enough that the cut-off worker still runs its share when it is back.
    lines += R"({"kind": "sleep", "seconds": 25, "result": "r)" + std::to_string(i) + "\"}\n";
    expected.push_back("r" + std::to_string(i));
  }
  RunResult submit = c.Client(alice, {"submit", "-f", c.client().WriteFile("job.jsonl", lines)});
  ASSERT_TRUE(Exits(submit, 0));
  const std::string job = JobId(submit);
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["tasks"]["running"] == 500; }));
  c.StartWorker(1, c.Access("worker", "spare", 1), {"--slots", "1000"});  // room to re-run them
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 3; }));
  // When the first worker's link is cut for 10 s,
  c.worker_ns(0).SetLink("b0", false);
  const auto cut_at = Clock::now();
  // Then its leases expire and its tasks run again elsewhere,
  EXPECT_TRUE(c.WaitStatus([](const nlohmann::json& s) {
    return s["workers"].size() == 2 && s["counters"]["requeued"] >= 250;
  }));
  std::this_thread::sleep_until(cut_at + seconds(10));  // the cut's length, not a synchronisation
  c.worker_ns(0).SetLink("b0", true);
  // and once the link is back, the worker registers again and what it still reports is refused
  // as stale (the broker tells it to drop the tasks others took, and it reports them cancelled).
  EXPECT_TRUE(c.WaitStatus(
      [](const nlohmann::json& s) {
        return s["workers"].size() == 3 && s["counters"]["stale_results"] >= 1;
      },
      seconds(40)));
  // Every task has exactly one result, ok, in order; and the cut-off worker is still alive.
  RunResult gather = c.Client(alice, {"gather", "--json", job}, seconds(90));
  EXPECT_TRUE(Exits(gather, 0));
  CheckReport report = CheckResults(job, expected, gather.out);
  EXPECT_TRUE(report.ok()) << report.Describe();
  auto status = c.status();
  EXPECT_EQ(status["tasks"]["done"], 500);
  EXPECT_GE(status["counters"]["workers_lost"].get<int>(), 1);
  EXPECT_EQ(WaitExit(cut_off, seconds(0)), -1);
}

INSTANTIATE_TEST_SUITE_P(Hosts, RemoteTest, ::testing::Values(Net::kLoopback, Net::kNamespaces),
                         [](const auto& info) {
                           return info.param == Net::kLoopback ? "Loopback" : "Namespaces";
                         });

}  // namespace
}  // namespace orq::testing

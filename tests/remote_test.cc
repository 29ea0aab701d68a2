// Many hosts: a broker, remote workers and remote clients over TCP, always CURVE. Every case runs
// twice: over loopback, and across network namespaces the test makes (tests/netns.h): the broker
// in one, the client in another, workers in a third and fourth. A cut link runs across namespaces
// only (loopback cannot be cut for one worker).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <zmq.hpp>

#include "common/keys.h"
#include "common/zmq_util.h"
#include "tests/checker.h"
#include "tests/harness.h"
#include "tests/netns.h"

namespace orq::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

enum class Net { kLoopback, kNamespaces };

constexpr const char* kBrokerAddress[] = {"198.18.0.1", "198.18.1.1", "198.18.2.1"};
constexpr int kPort = 5555;  // each namespace has its own ports: no clash between parallel tests

// A broker host, a client host and two worker hosts. Over loopback they are one host with four
// $ORQ_HOMEs; across namespaces each is a namespace joined to the broker's by its own veth pair
// (client: 198.18.0.0/30, worker host i: 198.18.(i+1).0/30).
class Cluster {
 public:
  explicit Cluster(Net net) : net_(net) {
    if (net == Net::kNamespaces) {
      broker_ns_ = std::make_unique<Netns>("b");
      client_ns_ = std::make_unique<Netns>("c");
      Connect(*broker_ns_, "c0", std::string(kBrokerAddress[0]) + "/30", *client_ns_, "b0",
              "198.18.0.2/30");
      for (int i = 0; i < 2; ++i) {
        worker_ns_[i] = std::make_unique<Netns>("w" + std::to_string(i + 1));
        Connect(*broker_ns_, "w" + std::to_string(i + 1),
                std::string(kBrokerAddress[i + 1]) + "/30", *worker_ns_[i], "b0",
                "198.18." + std::to_string(i + 1) + ".2/30");
      }
    }
    broker_ = std::make_unique<OrqEnv>(Wrap(broker_ns_.get()));
    client_ = std::make_unique<OrqEnv>(Wrap(client_ns_.get()));
    for (int i = 0; i < 2; ++i) workers_[i] = std::make_unique<OrqEnv>(Wrap(worker_ns_[i].get()));
  }

  // `orq up` on the broker host with no local workers, listening on TCP; returns its endpoint.
  void Up(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"up", "-w", "0", "--listen", Listen()};
    args.insert(args.end(), extra.begin(), extra.end());
    RunResult up = broker_->Run(args);
    ASSERT_TRUE(Exits(up, 0));
  }
  std::string Listen() const {
    return net_ == Net::kLoopback ? "tcp://127.0.0.1:*" : "tcp://0.0.0.0:" + std::to_string(kPort);
  }
  // The endpoint a host dials: host -1 is the client's, 0 and 1 the worker hosts'.
  std::string EndpointFor(int host) const {
    if (net_ == Net::kLoopback) return status()["endpoints"][1];
    return "tcp://" + std::string(kBrokerAddress[host + 1]) + ":" + std::to_string(kPort);
  }
  // `orq access add` on the broker's host; returns the access file.
  std::string Access(const std::string& role, const std::string& name, int host) {
    const std::string file = broker_->home() + "/" + name + ".access";
    RunResult r =
        broker_->Run({"access", "add", "--" + role, file, "--endpoint", EndpointFor(host)});
    EXPECT_TRUE(Exits(r, 0));
    return file;
  }
  pid_t StartWorker(int host, const std::string& access, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"worker", "--access", access, "-t", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return workers_[host]->Start(args);
  }
  RunResult Client(const std::string& access, std::vector<std::string> args,
                   seconds timeout = seconds(60)) {
    args.insert(args.begin(), {"--access", access});
    return client_->Run(args, "", timeout);
  }
  // Runs `fn` with the client host's network (raw sockets a test makes itself).
  void InClientNet(const std::function<void()>& fn) {
    if (client_ns_)
      client_ns_->Run(fn);
    else
      fn();
  }
  nlohmann::json status() const { return broker_->Status(); }
  bool WaitStatus(const std::function<bool(const nlohmann::json&)>& done,
                  seconds timeout = seconds(30)) const {
    return broker_->WaitStatus(done, timeout);
  }
  Netns& worker_ns(int host) { return *worker_ns_[host]; }
  OrqEnv& broker() { return *broker_; }
  OrqEnv& client() { return *client_; }
  Net net() const { return net_; }

 private:
  static std::vector<std::string> Wrap(const Netns* ns) {
    return ns ? ns->Exec() : std::vector<std::string>{};
  }
  Net net_;
  // Namespaces outlive the hosts' processes (members are destroyed in reverse order).
  std::unique_ptr<Netns> broker_ns_, client_ns_, worker_ns_[2];
  std::unique_ptr<OrqEnv> broker_, client_, workers_[2];
};

// A raw ZeroMQ peer, as a stranger or a holder of some key would write one: sends `messages` and
// collects what comes back until `done(replies)` holds (the broker answered, or counted what it
// refused), then for `settle` more, so a reply that should not come has a chance to. Fails the
// test when `done` never holds (within the harness's scaled 30 s).
std::vector<Message> RawPeer(const std::string& endpoint, const std::optional<CurveClient>& curve,
                             const std::vector<Message>& messages,
                             const std::function<bool(const std::vector<Message>&)>& done,
                             milliseconds settle = milliseconds(100)) {
  zmq::context_t ctx;
  zmq::socket_t socket = MakeSocket(ctx, zmq::socket_type::dealer);
  if (curve) SetCurveClient(socket, *curve);
  socket.connect(endpoint);
  for (const Message& m : messages) SendMessage(socket, m, {}, zmq::send_flags::dontwait);
  std::vector<Message> replies;
  auto receive = [&] {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, milliseconds(20));
    while (auto r = ReceiveMessage(socket, /*router=*/false)) {
      if (auto* m = std::get_if<Message>(&r->message)) replies.push_back(std::move(*m));
    }
  };
  EXPECT_TRUE(WaitUntil(
      [&] {
        receive();
        return done(replies);
      },
      seconds(30), milliseconds(0)))
      << "the broker never did what the peer waited for (" << replies.size() << " replies)";
  const auto until = Clock::now() + settle;
  while (Clock::now() < until) receive();
  return replies;
}

// Opens `connections` TCP connections to `endpoint` and writes `frames` chunks of random bytes on
// each: no ZMTP greeting, no CURVE, nothing but noise.
void TcpNoise(const std::string& endpoint, int connections, int frames) {
  const auto colon = endpoint.rfind(':');
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(std::stoi(endpoint.substr(colon + 1))));
  ASSERT_EQ(::inet_pton(AF_INET, endpoint.substr(6, colon - 6).c_str(), &address.sin_addr), 1);
  std::mt19937 random(7);
  for (int c = 0; c < connections; ++c) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    for (int f = 0; f < frames; ++f) {
      char bytes[64];
      for (char& b : bytes) b = static_cast<char>(random());
      if (::send(fd, bytes, sizeof bytes, MSG_NOSIGNAL) < 0) break;  // the broker hung up: fine
    }
    ::close(fd);
  }
}

CurveClient KeysOf(const std::string& access_file) {
  AccessFile a = ReadAccessFile(access_file);
  return {a.broker_public_key, a.keys.public_key, a.keys.secret_key};
}

class RemoteTest : public ::testing::TestWithParam<Net> {
 protected:
  void SetUp() override {
    if (GetParam() == Net::kNamespaces) {
      if (auto why = Netns::Unavailable()) FAIL() << "cannot make test hosts: " << *why;
    }
    cluster_ = std::make_unique<Cluster>(GetParam());
  }
  std::unique_ptr<Cluster> cluster_;
};

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
  if (auto why = Netns::Unavailable()) FAIL() << "cannot make test hosts: " << *why;
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

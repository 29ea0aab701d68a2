// A cluster of test hosts for the tests of remote workers and clients (remote_test.cc) and of
// hostile peers (hostile_test.cc): a broker, a client host and two worker hosts, over loopback or
// across network namespaces; and the raw peers an attacker would write.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <zmq.hpp>

#include "common/keys.h"
#include "common/zmq_util.h"
#include "tests/harness.h"
#include "tests/netns.h"

namespace orq::testing {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

enum class Net { kLoopback, kNamespaces };

inline constexpr const char* kBrokerAddress[] = {"198.18.0.1", "198.18.1.1", "198.18.2.1"};
inline constexpr int kPort =
    5555;  // each namespace has its own ports: no clash between parallel tests

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
  OrqEnv& worker_host(int host) { return *workers_[host]; }
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
inline std::vector<Message> RawPeer(const std::string& endpoint,
                                    const std::optional<CurveClient>& curve,
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
      if (r->message) replies.push_back(std::move(*r->message));
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
inline void TcpNoise(const std::string& endpoint, int connections, int frames) {
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

inline CurveClient KeysOf(const std::string& access_file) {
  AccessFile a = ReadAccessFile(access_file);
  return {a.broker_public_key, a.keys.public_key, a.keys.secret_key};
}

// A test of both networks: the cluster is made in SetUp (a test host that cannot be made fails the
// test with the reason).
class ClusterTest : public ::testing::TestWithParam<Net> {
 protected:
  void SetUp() override {
    if (GetParam() == Net::kNamespaces) {
      if (auto can = Netns::Unavailable(); !can.ok())
        FAIL() << "cannot make test hosts: " << can.error().sentence;
    }
    cluster_ = std::make_unique<Cluster>(GetParam());
  }
  std::unique_ptr<Cluster> cluster_;
};

}  // namespace orq::testing

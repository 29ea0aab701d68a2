// A swarm: hundreds of real remote workers (`orq worker` processes) on five test hosts (network
// namespaces), fifty of them behind one address, a job of 20,000 tasks through five kills (-9)
// and restarts of the broker, and strangers flooding its TCP port all the while.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/checker.h"
#include "tests/harness.h"
#include "tests/netns.h"

namespace orq::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kPort = 5555;
// Workers per test host: the first host's fifty share its one address (a NAT, one big node).
constexpr int kWorkersPerHost[] = {50, 40, 40, 40, 40};
constexpr int kHosts = 5;
constexpr int kWorkers = 210;
constexpr int kTasks = 20000;
constexpr int kRounds = 5;

std::string BrokerAddress(int link) { return "198.18." + std::to_string(20 + link) + ".1"; }
std::string HostAddress(int link) { return "198.18." + std::to_string(20 + link) + ".2"; }

// Strangers on the broker's TCP port from a host of their own, for as long as they live: every
// 20 ms a connection that says nothing, one whose ZMTP greeting stops half-way, and one that
// sends a CURVE greeting and then 64 KiB of a handshake frame claiming 1 MiB; at most kOpen open
// at once (the oldest closed for each new one). While the broker is down they are refused.
class StrangerFlood {
 public:
  StrangerFlood(const Netns& ns, const std::string& address) {
    to_.sin_family = AF_INET;
    to_.sin_port = htons(kPort);
    ::inet_pton(AF_INET, address.c_str(), &to_.sin_addr);
    thread_ = std::thread([this, &ns] { ns.Run([this] { Flood(); }); });
  }
  ~StrangerFlood() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t opened() const { return opened_; }

 private:
  static constexpr size_t kOpen = 48;

  void Flood() {
    std::deque<int> open;
    std::string greeting(64, '\0');  // signature, version 3.0, CURVE, as-client
    greeting[0] = '\xff';
    greeting[9] = '\x7f';
    greeting[10] = 3;
    greeting.replace(12, 5, "CURVE");
    std::string junk = greeting + '\x06';  // a command frame with an 8-byte size: 1 MiB
    for (int shift = 56; shift >= 0; shift -= 8) junk += static_cast<char>((1ull << 20) >> shift);
    junk += std::string(64 << 10, 'x');
    while (!stop_) {
      const std::string* payloads[] = {nullptr, &greeting, &junk};
      for (const std::string* payload : payloads) {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&to_), sizeof to_) != 0) {
          ::close(fd);  // the broker is down
          continue;
        }
        ++opened_;
        if (payload == &greeting)
          ::send(fd, greeting.data(), 10, MSG_NOSIGNAL | MSG_DONTWAIT);
        else if (payload)
          ::send(fd, payload->data(), payload->size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        open.push_back(fd);
        if (open.size() > kOpen) {
          ::close(open.front());
          open.pop_front();
        }
      }
      std::this_thread::sleep_for(milliseconds(20));  // the flood's pace, not a synchronisation
    }
    for (int fd : open) ::close(fd);
  }

  sockaddr_in to_{};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> opened_{0};
  std::thread thread_;
};

uint64_t Counter(const nlohmann::json& status, const char* name) {
  return status["counters"].value(name, uint64_t{0});
}

TEST(SwarmTest, HundredsOfRemoteWorkersLoseNothingThroughBrokerRestartsAndAFlood) {
  if (auto can = Netns::Unavailable(); !can.ok())
    FAIL() << "cannot make test hosts: " << can.error().sentence;
  // AddressSanitizer keeps up to 256 MiB of what each process frees from reuse: 210 workers
  // would fill the machine with it. A small quarantine keeps each near what it holds.
  const char* asan = std::getenv("ASAN_OPTIONS");
  ScopedEnv quarantine("ASAN_OPTIONS",
                       std::string(asan ? asan : "") + ":quarantine_size_mb=4:max_redzone=256");
  // Given a broker host, five worker hosts and a stranger's host, each joined to the broker's
  // by a link of its own,
  Netns broker_ns("b");
  std::vector<std::unique_ptr<Netns>> hosts;
  for (int i = 0; i <= kHosts; ++i) {
    hosts.push_back(std::make_unique<Netns>(i < kHosts ? "h" + std::to_string(i) : "s"));
    Connect(broker_ns, "l" + std::to_string(i), BrokerAddress(i) + "/30", *hosts.back(), "b0",
            HostAddress(i) + "/30");
  }
  OrqEnv broker(broker_ns.Exec());
  struct LogOnFailure {  // what the broker said, when the test fails (however it ends)
    const OrqEnv& broker;
    ~LogOnFailure() {
      if (!::testing::Test::HasFailure()) return;
      const std::string log = ReadFile(broker.home() + "/broker.log");
      std::cout << "--- the end of the broker's log:\n"
                << log.substr(log.size() > 20000 ? log.size() - 20000 : 0);
    }
  } log_on_failure{broker};
  const std::vector<std::string> up = {"up", "-w", "0", "--listen",
                                       "tcp://0.0.0.0:" + std::to_string(kPort)};
  ASSERT_TRUE(Exits(broker.Run(up), 0));
  // and 210 workers on the worker hosts, each host with a key of its own,
  std::vector<std::unique_ptr<OrqEnv>> host_envs;
  for (int i = 0; i < kHosts; ++i) {
    const std::string access = broker.home() + "/host" + std::to_string(i) + ".access";
    ASSERT_TRUE(Exits(broker.Run({"access", "add", "--worker", access, "--endpoint",
                                  "tcp://" + BrokerAddress(i) + ":" + std::to_string(kPort)}),
                      0));
    host_envs.push_back(std::make_unique<OrqEnv>(hosts[i]->Exec()));
    for (int w = 0; w < kWorkersPerHost[i]; ++w)
      host_envs.back()->Start({"worker", "--access", access, "-t", "1", "--slots", "2"});
  }
  ASSERT_TRUE(broker.WaitStatus(
      [](const nlohmann::json& s) { return s["workers"].size() == kWorkers; }, seconds(120)))
      << broker.Status()["workers"].size() << " of " << kWorkers << " workers registered";
  // and strangers flooding the broker's port throughout,
  StrangerFlood flood(*hosts[kHosts], BrokerAddress(kHosts));
  // when a job of 20,000 one-second tasks runs (each may lose its worker as often as the broker
  // is killed while it runs: at-least-once, with attempts to spare),
  std::string lines;
  std::vector<nlohmann::json> expected;
  for (int i = 0; i < kTasks; ++i) {
    lines +=
        R"({"kind": "sleep", "seconds": 1, "attempts": 10, "result": )" + std::to_string(i) + "}\n";
    expected.push_back(i);
  }
  RunResult submit = broker.Run({"submit", "-f", broker.WriteFile("swarm.jsonl", lines)});
  ASSERT_TRUE(Exits(submit, 0));
  const std::string job = JobId(submit);
  nlohmann::json before = broker.Status();
  for (int round = 1; round <= kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // and the broker is killed (-9) each time another sixth of it is done,
    const int done = kTasks * round / (kRounds + 1);
    ASSERT_TRUE(broker.WaitStatus(
        [done](const nlohmann::json& s) { return s["tasks"]["done"].get<int>() >= done; },
        seconds(120)));
    // (no authenticated connection was closed meanwhile, whatever the strangers did;)
    nlohmann::json status = broker.Status();
    EXPECT_EQ(Counter(status, "remote_closed"), Counter(before, "remote_closed"))
        << status["counters"].dump();
    EXPECT_EQ(status["workers"].size(), size_t{kWorkers});
    EXPECT_GT(Counter(status, "shed") + Counter(status, "handshake_failed"), 0u)
        << "the strangers were not turned away: " << status["counters"].dump();
    const pid_t pid = status["broker"]["pid"].get<pid_t>();
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    ASSERT_TRUE(WaitGone(pid));
    // and started again,
    ASSERT_TRUE(Exits(broker.Run(up), 0));
    const auto restarted = Clock::now();
    // then every worker is registered again within 30 s,
    EXPECT_TRUE(broker.WaitStatus(
        [](const nlohmann::json& s) { return s["workers"].size() == kWorkers; }, seconds(30)))
        << broker.Status()["workers"].size() << " of " << kWorkers << " workers came back";
    std::cout << "restart " << round << ": all " << kWorkers << " workers back "
              << std::chrono::duration<double>(Clock::now() - restarted).count() << " s after it; "
              << flood.opened() << " stranger connections so far\n";
    before = broker.Status();
  }
  // and every task ended ok exactly once: none lost, none twice.
  RunResult gather = broker.Run({"gather", "--json", job}, "", seconds(300));
  EXPECT_TRUE(Exits(gather, 0));
  CheckReport report = CheckResults(job, expected, gather.out);
  EXPECT_TRUE(report.ok()) << report.Describe();
  flood.Stop();
}

}  // namespace
}  // namespace orq::testing

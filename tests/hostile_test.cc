// Hostile peers: each case plays an attacker with real sockets (raw TCP for strangers) and checks
// that the attack is refused and counted, that a legitimate client and worker are served during
// and after it, and that the broker's memory and descriptors come back near where they started.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/cluster.h"

namespace orq::testing {
namespace {

class HostileTest : public ClusterTest {
 protected:
  // The stage of an attack with a stolen worker key: the broker up, a client key (alice), and
  // the worker key the attacker holds (rogue), used from the client's host (endpoint).
  struct Stage {
    std::string alice;
    CurveClient rogue;
    std::string endpoint;
  };
  Stage UpWithARogueWorkerKey() {
    Cluster& c = *cluster_;
    c.Up();
    Stage stage;
    stage.alice = c.Access("client", "alice", -1);
    stage.rogue = KeysOf(c.Access("worker", "rogue", -1));
    stage.endpoint = c.EndpointFor(-1);
    return stage;
  }
  // A remote worker on host 0 with the access file `access`, working in the broker's home, once
  // the broker has it registered.
  pid_t StartRemoteWorker(const std::string& access) {
    Cluster& c = *cluster_;
    const pid_t pid = c.StartWorker(0, access, {"--workdir", c.broker().home()});
    // This worker itself: another (one that went without a goodbye) may still be counted.
    EXPECT_TRUE(c.WaitStatus([pid](const nlohmann::json& s) {
      for (const auto& w : s["workers"])
        if (w["pid"] == pid) return true;
      return false;
    })) << "the remote worker did not register";
    return pid;
  }
};

// A line of a process's /proc/PID/status in bytes (0 when it is gone): VmRSS, the memory it is
// resident in now; VmHWM, the most it has been.
size_t StatusBytes(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1)) * 1024;
  }
  return 0;
}
size_t Rss(pid_t pid) { return StatusBytes(pid, "VmRSS"); }
size_t PeakRss(pid_t pid) { return StatusBytes(pid, "VmHWM"); }

size_t OpenDescriptors(pid_t pid) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

sockaddr_in AddressOf(const std::string& endpoint) {
  const auto colon = endpoint.rfind(':');
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(std::stoi(endpoint.substr(colon + 1))));
  EXPECT_EQ(::inet_pton(AF_INET, endpoint.substr(6, colon - 6).c_str(), &address.sin_addr), 1);
  return address;
}

// Closes its descriptors when it goes.
struct Sockets {
  std::vector<int> fds;
  ~Sockets() {
    for (int fd : fds) ::close(fd);
  }
};

// A stranger as the issue found one: a ZMTP 3.0 greeting asking for CURVE, then a command frame
// whose header claims `claimed` bytes, then up to `sent` bytes of it, as fast as the broker takes
// them (a broker that hangs up ends it early). The connection is left open, in `keep`.
void HugeFrame(const sockaddr_in& to, uint64_t claimed, size_t sent, Sockets& keep) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  keep.fds.push_back(fd);
  timeval two_seconds{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &two_seconds, sizeof two_seconds);
  ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
  std::string header(64, '\0');  // signature, version 3.0, mechanism, as-server, filler
  header[0] = '\xff';
  header[9] = '\x7f';
  header[10] = 3;
  header.replace(12, 5, "CURVE");
  header += '\x06';  // a command frame with an 8-byte size
  for (int shift = 56; shift >= 0; shift -= 8) header += static_cast<char>(claimed >> shift);
  if (::send(fd, header.data(), header.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(header.size()))
    return;
  const std::string chunk(64 << 10, 'x');
  for (size_t done = 0; done < sent;) {
    const ssize_t w = ::send(fd, chunk.data(), std::min(chunk.size(), sent - done), MSG_NOSIGNAL);
    if (w <= 0) return;  // the broker hung up, or stopped reading for 2 s
    done += static_cast<size_t>(w);
  }
}

TEST_P(HostileTest, StrangersClaimingHugeFramesCostTheBrokerLittle) {
  Cluster& c = *cluster_;
  // Given a broker with a remote client and a remote worker,
  c.Up();
  const std::string alice = c.Access("client", "alice", -1);
  c.StartWorker(0, c.Access("worker", "node1", 0));
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 1; }));
  const pid_t broker = c.status()["broker"]["pid"].get<pid_t>();
  const size_t rss_before = Rss(broker);
  const sockaddr_in to = AddressOf(c.EndpointFor(-1));
  // when 16 strangers each send a handshake frame claiming 250 MiB and push 32 MiB of it,
  Sockets strangers;
  c.InClientNet([&] {
    for (int i = 0; i < 16; ++i) HugeFrame(to, 250ull << 20, 32u << 20, strangers);
  });
  // then, while they are still connected, the broker holds a few MiB more, not 512,
  const size_t rss_during = Rss(broker);
  EXPECT_LT(rss_during, rss_before + (48u << 20))
      << "before " << (rss_before >> 20) << " MiB, during " << (rss_during >> 20) << " MiB";
  // its real client and worker are served,
  RunResult submit = c.Client(alice, {"submit", "--", "echo", "served"});
  ASSERT_TRUE(Exits(submit, 0));
  RunResult gather = c.Client(alice, {"gather", JobId(submit)});
  EXPECT_TRUE(Exits(gather, 0));
  EXPECT_EQ(gather.out, "served\n");
  // and each stranger's handshake is counted as failed.
  EXPECT_TRUE(c.WaitStatus([](const nlohmann::json& s) {
    return s["counters"]["handshake_failed"].get<int>() >= 16;
  })) << c.status()["counters"].dump();
}

TEST_P(HostileTest, AJobLargerThanATcpMessageGoesInParts) {
  Cluster& c = *cluster_;
  // Given a remote client and worker,
  c.Up();
  const std::string alice = c.Access("client", "alice", -1);
  StartRemoteWorker(c.Access("worker", "node1", 0));
  // when the client submits 3,000 tasks of 3 KiB each (9 MiB, twice what one TCP message may
  // carry),
  std::string lines;
  const std::string pad(3000, 'p');
  for (int i = 0; i < 3000; ++i)
    lines += R"({"kind": "echo", "value": ")" + std::to_string(i) + pad + "\"}\n";
  const std::string file = c.client().WriteFile("big.jsonl", lines);
  RunResult submit = c.Client(alice, {"submit", "-f", file});
  ASSERT_TRUE(Exits(submit, 0));
  // then every task ran once, in order.
  RunResult gather = c.Client(alice, {"gather", "--json", JobId(submit)}, seconds(120));
  ASSERT_TRUE(Exits(gather, 0));
  const std::vector<std::string> results = Lines(gather.out);
  ASSERT_EQ(results.size(), 3000u);
  for (int i : {0, 1, 1500, 2999}) {
    const auto r = nlohmann::json::parse(results[i]);
    EXPECT_EQ(r["result"], std::to_string(i) + pad) << results[i].substr(0, 200);
  }
}

ReadyMessage Registration(std::string host) {
  ReadyMessage ready;
  ready.pid = 4242;
  ready.threads = 1;
  ready.slots = {0, 0, 1};
  ready.host = std::move(host);
  return ready;
}

TEST_P(HostileTest, AWorkerKeyOverABoundIsRefusedCountedAndNeverShown) {
  Cluster& c = *cluster_;
  const auto [alice, rogue, endpoint] = UpWithARogueWorkerKey();
  // Given a worker key that registers with a host name that is not UTF-8, with one that holds
  // terminal escape sequences, with 65 resources, and as a worker an allocation of a queue
  // started (only that queue's own key may say so),
  std::vector<ReadyMessage> readys = {Registration("\xff\xfe"),
                                      Registration("n\x1b]0;pwned\x07\x1b[2J")};
  readys.push_back(Registration("many"));
  for (int i = 0; i < 65; ++i) readys.back().resources.push_back({"r" + std::to_string(i), 1});
  readys.push_back(Registration("claims"));
  readys.back().allocation = "gpu/41";
  for (const ReadyMessage& ready : readys) {
    std::vector<Message> replies;
    c.InClientNet([&] {
      replies = RawPeer(endpoint, rogue, {ready},
                        [](const std::vector<Message>& r) { return !r.empty(); });
    });
    // then each is refused with a sentence,
    ASSERT_EQ(replies.size(), 1u);
    const auto* error = std::get_if<ErrorReply>(&replies[0]);
    ASSERT_TRUE(error);
    EXPECT_EQ(error->message.rfind("the broker refused this worker: ", 0), 0u) << error->message;
  }
  // none became a worker, everything is counted, and status is valid JSON and plain text.
  RunResult json = c.broker().Run({"status", "--json"});
  ASSERT_TRUE(Exits(json, 0));
  const nlohmann::json status = nlohmann::json::parse(json.out);
  EXPECT_TRUE(status["workers"].empty());
  EXPECT_GE(status["counters"].value("over_bounds", 0), 4);
  RunResult text = c.broker().Run({"status"});
  ASSERT_TRUE(Exits(text, 0));
  EXPECT_EQ(text.out.find('\x1b'), std::string::npos);
}

TEST_P(HostileTest, OneWorkerKeyRegistersAtMostItsBoundOfWorkers) {
  Cluster& c = *cluster_;
  // Given a broker that lets one worker key have 2 workers at once,
  c.Up({"--max-workers-per-key", "2"});
  const std::string node = c.Access("worker", "node", 0);
  c.StartWorker(0, node);
  c.StartWorker(0, node);
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 2; }));
  // when a third worker of that key comes, it is refused with the sentence and exits (code 4),
  const pid_t third = c.StartWorker(0, node);
  EXPECT_EQ(WaitExit(third, seconds(30)), 4);
  // and the first two work on; another key is not held back by it.
  c.StartWorker(0, c.Access("worker", "other", 0));
  EXPECT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 3; }));
  EXPECT_GE(c.status()["counters"].value("over_bounds", 0), 1);
}

// A worker key's raw peer that registers, takes the first task it is given, and reports the
// outcome `forge` makes of it; it stays connected until the broker has recorded a result.
void RogueReports(Cluster& c, const CurveClient& rogue, const std::string& endpoint,
                  const std::function<void(TaskOutcome&)>& forge) {
  c.InClientNet([&] {
    zmq::context_t ctx;
    zmq::socket_t socket = MakeSocket(ctx, zmq::socket_type::dealer);
    SetCurveClient(socket, rogue);
    socket.connect(endpoint);
    SendMessage(socket, Registration("rogue"));
    bool reported = false;
    EXPECT_TRUE(WaitUntil([&] {
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, milliseconds(20));
      while (auto r = ReceiveMessage(socket, /*router=*/false)) {
        auto* tasks = std::get_if<TasksMessage>(&*r->message);
        if (!tasks) continue;
        for (const Assignment& a : tasks->tasks) {
          TaskOutcome o;
          o.id = a.id;
          o.attempt = a.attempt;
          forge(o);
          SendMessage(socket, WorkerResultsMessage{{o}});
          reported = true;
        }
      }
      return reported;
    })) << "the rogue worker was never given the task";
    EXPECT_TRUE(c.WaitStatus([](const nlohmann::json& s) {
      return s["tasks"]["done"].get<int>() + s["tasks"]["failed"].get<int>() >= 1;
    }));
  });
}

TEST_P(HostileTest, AnOutcomeOverABoundIsRecordedAsTheFailureItIs) {
  Cluster& c = *cluster_;
  const auto [alice, rogue, endpoint] = UpWithARogueWorkerKey();
  RunResult submit = c.Client(alice, {"submit", "--", "echo", "hi"});
  ASSERT_TRUE(Exits(submit, 0));
  // Given a worker key that takes the task and reports 2 MiB of stdout (the bound is 1 MiB),
  RogueReports(c, rogue, endpoint, [](TaskOutcome& o) {
    o.shell = ShellOutput{0, std::string(2u << 20, 'x'), "", false, nullptr};
  });
  // (it stays until the broker has judged its result)
  EXPECT_TRUE(c.WaitStatus(
      [](const nlohmann::json& s) { return s["counters"].value("over_bounds", 0) >= 1; }));
  // then the task failed with the reason, and none of the 2 MiB was kept.
  RunResult gather = c.Client(alice, {"gather", "--json", JobId(submit)});
  const nlohmann::json outcome = nlohmann::json::parse(gather.out);
  EXPECT_EQ(outcome["status"], "failed");
  EXPECT_NE(outcome["error"].get<std::string>().find(
                "its stdout has 2097152 bytes; the limit is 1048576"),
            std::string::npos)
      << gather.out.substr(0, 400);
  EXPECT_LT(gather.out.size(), 4096u);
}

TEST_P(HostileTest, AWorkerKeyCannotAdoptATaskItWasNeverGiven) {
  Cluster& c = *cluster_;
  const auto [alice, rogue, endpoint] = UpWithARogueWorkerKey();
  // Given a queued task no worker was ever given,
  RunResult submit = c.Client(alice, {"submit", "--", "echo", "real"});
  ASSERT_TRUE(Exits(submit, 0));
  const uint64_t job = std::stoull(JobId(submit).substr(1));
  // when a worker key registers claiming it runs it (attempt 0) and reports a forged result,
  ReadyMessage claim = Registration("rogue");
  claim.running = {{{job, 0}, 0}};
  TaskOutcome forged;
  forged.id = {job, 0};
  forged.attempt = 0;
  forged.shell = ShellOutput{0, "forged\n", "", false, nullptr};
  std::vector<Message> replies;
  const int stale = c.status()["counters"]["stale_results"].get<int>();
  c.InClientNet([&] {
    replies = RawPeer(endpoint, rogue, {claim, WorkerResultsMessage{{forged}}},
                      [&](const std::vector<Message>&) {
                        return c.status()["counters"]["stale_results"].get<int>() > stale;
                      });
  });
  // then it is told to drop the task, its result is stale, nothing was adopted,
  bool dropped = false;
  for (const Message& m : replies) {
    if (const auto* cancel = std::get_if<CancelTasksMessage>(&m))
      dropped = dropped || (cancel->ids.size() == 1 && cancel->ids[0] == TaskId{job, 0});
  }
  EXPECT_TRUE(dropped);
  EXPECT_EQ(c.status()["counters"]["adopted"].get<int>(), 0);
  // and a real worker runs it: the result is the real one (the rogue, given the task honestly once
  // it was told to drop its claim, never reported that attempt: its lease ran out with it).
  c.StartWorker(0, c.Access("worker", "node1", 0), {"--workdir", c.broker().home()});
  RunResult gather = c.Client(alice, {"gather", "--json", JobId(submit)});
  ASSERT_TRUE(Exits(gather, 0));
  const nlohmann::json outcome = nlohmann::json::parse(gather.out);
  EXPECT_EQ(outcome["stdout"], "real\n") << gather.out;
  EXPECT_GE(outcome["attempts"].get<int>(), 1) << gather.out;
}

TEST_P(HostileTest, ASpillPathFromAWorkerIsNeverOpenedPrintedOrDeleted) {
  Cluster& c = *cluster_;
  const auto [alice, rogue, endpoint] = UpWithARogueWorkerKey();
  // Given a file of the test's own on the broker's host,
  const std::string victim = c.broker().WriteFile("victim.txt", "secret\n");
  RunResult submit = c.Client(alice, {"submit", "--", "echo", "hi"});
  ASSERT_TRUE(Exits(submit, 0));
  // when a worker key reports that a task's output spilled to that file, on the broker's host,
  const std::string host = Lines(Command({"hostname"})).at(0);
  RogueReports(c, rogue, endpoint, [&](TaskOutcome& o) {
    o.shell = ShellOutput{0, "head\n", "", true,
                          std::make_shared<ShellOutput::More>(
                              ShellOutput::More{victim, victim, host, {"echo", "hi"}})};
  });
  // then neither gather nor logs (here, or on the broker's host) prints that path or the file,
  const std::string job = JobId(submit);
  RunResult gather = c.Client(alice, {"gather", "--json", job});
  ASSERT_TRUE(Exits(gather, 0));
  EXPECT_EQ(gather.out.find(victim), std::string::npos) << gather.out;
  for (RunResult logs :
       {c.Client(alice, {"logs", job + ".0"}), c.broker().Run({"logs", job + ".0"})}) {
    EXPECT_EQ((logs.out + logs.err).find("secret"), std::string::npos) << logs.out << logs.err;
    EXPECT_EQ((logs.out + logs.err).find(victim), std::string::npos) << logs.err;
  }
  // and forgetting the job leaves the file where it was.
  ASSERT_TRUE(Exits(c.Client(alice, {"forget", job}), 0));
  EXPECT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["jobs"].get<int>() == 0; }));
  std::string output;
  EXPECT_EQ(RunProgram({"cat", victim}, output), 0);
  EXPECT_EQ(output, "secret\n");
}

TEST_P(HostileTest, ARemoteWorkersSpilledOutputComesThroughTheBrokerAndGoesWhenForgotten) {
  Cluster& c = *cluster_;
  c.Up();
  const std::string alice = c.Access("client", "alice", -1);
  const std::string node1 = c.Access("worker", "node1", 0);
  const pid_t worker = StartRemoteWorker(node1);
  // Given a remote worker's task that printed 2.9 MB (the rest over 1 MiB spills on its host),
  RunResult submit = c.Client(alice, {"submit", "--", "seq", "420000"});
  ASSERT_TRUE(Exits(submit, 0));
  const std::string job = JobId(submit);
  RunResult gather = c.Client(alice, {"gather", "--json", job});
  ASSERT_TRUE(Exits(gather, 0));
  EXPECT_EQ(nlohmann::json::parse(gather.out)["stdout_file"], "output/" + job + ".0.1.out");
  const std::string file = c.worker_host(0).home() + "/output/" + job + ".0.1.out";
  ASSERT_TRUE(std::filesystem::exists(file));
  const std::string all = Command({"seq", "420000"});
  // when a remote client, or one on the broker's host, asks for its output, then all of it comes
  // (through the broker, from that worker, a MiB at a time),
  for (RunResult logs :
       {c.Client(alice, {"logs", job + ".0"}), c.broker().Run({"logs", job + ".0"})}) {
    EXPECT_TRUE(Exits(logs, 0));
    EXPECT_EQ(logs.out.size(), all.size());
    EXPECT_TRUE(logs.out == all);
  }
  // and when that worker is gone, the first MiB comes and a sentence says where the rest is (exit
  // 5: not all of it could be had);
  ::kill(worker, SIGTERM);
  ASSERT_EQ(WaitExit(worker, seconds(30)), 0);
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].empty(); }));
  // (even with a worker of another key registered under that host's name, which would answer
  // for the file with text of its own: it is never asked),
  const CurveClient impostor = KeysOf(c.Access("worker", "impostor", -1));
  std::atomic<bool> stop{false};
  std::atomic<int> asked{0};
  std::thread rogue([&] {
    c.InClientNet([&] {
      zmq::context_t ctx;
      zmq::socket_t socket = MakeSocket(ctx, zmq::socket_type::dealer);
      SetCurveClient(socket, impostor);
      socket.connect(c.EndpointFor(-1));
      SendMessage(socket, ReadyMessage{1, 1, {0, 0, 0}, {}, HostName()});
      while (!stop) {
        zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, milliseconds(100));
        while (auto r = ReceiveMessage(socket, /*router=*/false)) {
          if (auto* read = r->message ? std::get_if<ReadOutputMessage>(&*r->message) : nullptr) {
            ++asked;
            SendMessage(socket, OutputPieceMessage{read->fetch, true, true, "forged\n"});
          }
        }
        SendMessage(socket, HeartbeatMessage{});
      }
    });
  });
  // (Joined however this test ends: a failed assertion returns early.)
  const std::unique_ptr<std::thread, void (*)(std::thread*)> joined(&rogue, [](std::thread* t) {
    if (t->joinable()) t->join();
  });
  struct StopFlag {
    std::atomic<bool>& stop;
    ~StopFlag() { stop = true; }
  } stopping{stop};
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 1; }));
  RunResult gone = c.Client(alice, {"logs", job + ".0"});
  stop = true;
  rogue.join();
  EXPECT_EQ(asked, 0);
  EXPECT_EQ(gone.out.find("forged"), std::string::npos);
  EXPECT_TRUE(Exits(gone, 5));
  EXPECT_TRUE(gone.out == all.substr(0, 1u << 20));
  EXPECT_NE(gone.err.find("the rest of its output is in output/" + job +
                          ".0.1.out in the $ORQ_HOME of its worker on "),
            std::string::npos)
      << gone.err;
  EXPECT_NE(gone.err.find("which no connected worker has"), std::string::npos) << gone.err;
  // when the job is forgotten while the worker is back, the worker deletes that file.
  StartRemoteWorker(node1);
  ASSERT_TRUE(Exits(c.Client(alice, {"forget", job}), 0));
  EXPECT_TRUE(WaitUntil([&] { return !std::filesystem::exists(file); })) << file;
}

TEST_P(HostileTest, AScopedWorkerKeyOffersNoMoreThanItsScope) {
  Cluster& c = *cluster_;
  c.Up();
  // Given a worker key that may take tasks from queue "a" only and offer at most 2 gpus,
  const std::string file = c.broker().home() + "/scoped.access";
  ASSERT_TRUE(Exits(c.broker().Run({"access", "add", "--worker", file, "--queues", "a",
                                    "--resources", "gpu=2", "--endpoint", c.EndpointFor(0)}),
                    0));
  RunResult list = c.broker().Run({"access", "list"});
  EXPECT_NE(list.out.find("queues a at most gpu=2"), std::string::npos) << list.out;
  // a worker of it claiming another queue, or more gpus, is refused, says why and exits 4,
  const std::string log = c.worker_host(0).home() + "/started.err";
  pid_t other_queue = c.StartWorker(0, file, {"--queues", "b"});
  EXPECT_EQ(WaitExit(other_queue, seconds(30)), 4);
  pid_t more_gpus = c.StartWorker(0, file, {"--queues", "a", "--resources", "gpu=4096"});
  EXPECT_EQ(WaitExit(more_gpus, seconds(30)), 4);
  std::string said;
  RunProgram({"cat", log}, said);
  EXPECT_NE(said.find("this key may take tasks from the queues a only"), std::string::npos) << said;
  EXPECT_NE(said.find("this key may offer at most 2 gpu; it offered 4096"), std::string::npos)
      << said;
  EXPECT_TRUE(c.status()["workers"].empty());
  // and one within it is a worker.
  c.StartWorker(0, file, {"--queues", "a", "--resources", "gpu=2"});
  EXPECT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 1; }));
}

TEST_P(HostileTest, ARemoteWorkerGetsOnlyTheVariablesAJobNames) {
  Cluster& c = *cluster_;
  c.Up();
  const std::string alice = c.Access("client", "alice", -1);
  // Given a remote worker started without the submitter's secret in its environment,
  StartRemoteWorker(c.Access("worker", "node1", 0));
  // and a submitter whose environment holds one (set after the worker started),
  ScopedEnv secret("ORQ_TEST_SECRET_TOKEN", "hunter2");
  auto run = [&](std::vector<std::string> flags) {
    std::vector<std::string> args = {"submit"};
    args.insert(args.end(), flags.begin(), flags.end());
    args.insert(args.end(), {"--", "sh", "-c", "echo \"[$ORQ_TEST_SECRET_TOKEN|$NAMED]\""});
    RunResult submit = c.Client(alice, args);
    EXPECT_TRUE(Exits(submit, 0));
    RunResult gather = c.Client(alice, {"gather", JobId(submit)});
    EXPECT_TRUE(Exits(gather, 0));
    return gather.out;
  };
  // then a job's task there sees only the variable it named,
  const std::string named = run({"--env", "NAMED=yes"});
  // and the whole environment only when the submitter says --env-all.
  const std::string all = run({"--env", "NAMED=yes", "--env-all"});
  EXPECT_EQ(named, "[|yes]\n");
  EXPECT_EQ(all, "[hunter2|yes]\n");
}

// What one gather holds is a matter of its own memory, not of the network: over loopback only (it
// took three minutes more across namespaces, for nothing the other tests do not cover there).
TEST(HostileMemoryTest, AGatherOf300MiBStreamsInBoundedMemory) {
  // AddressSanitizer keeps what a process frees from reuse until 256 MiB more is freed: with a
  // small quarantine, a process's peak memory is what it held at once, as without ASan.
  const char* asan = std::getenv("ASAN_OPTIONS");
  ScopedEnv quarantine("ASAN_OPTIONS",
                       std::string(asan ? asan : "") + ":quarantine_size_mb=8:max_redzone=256");
  Cluster c(Net::kLoopback);
  c.Up();
  const std::string alice = c.Access("client", "alice", -1);
  c.StartWorker(0, c.Access("worker", "node1", 0),
                {"--shell-slots", "2", "--workdir", c.broker().home()});
  ASSERT_TRUE(c.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 1; }));
  const pid_t broker = c.status()["broker"]["pid"].get<pid_t>();
  const size_t broker_before = PeakRss(broker);
  // Given a job of 315 tasks that print 1 MB each (300 MiB in all), the first of which waits for
  // a file, so that all the others finish before it,
  const std::string gate = c.broker().home() + "/gate";
  constexpr int kTasks = 315;
  RunResult submit = c.Client(
      alice, {"submit", "--array", "0-" + std::to_string(kTasks - 1), "--", "sh", "-c",
              "if [ {} = 0 ]; then while [ ! -e " + gate +
                  " ]; do sleep 0.05; done; fi; echo {}; head -c 1000000 /dev/zero | tr '\\0' x;"
                  " echo"});
  ASSERT_TRUE(Exits(submit, 0));
  const std::string job = JobId(submit);
  // when a client gathers it while they run, and the first ends last,
  const pid_t gather = c.client().Start({"--access", alice, "gather", job});
  ASSERT_TRUE(c.WaitStatus(
      [](const nlohmann::json& s) { return s["tasks"]["done"].get<int>() == kTasks - 1; },
      seconds(300)))
      << c.status()["tasks"].dump();
  std::ofstream{gate};
  // then the gather prints every result, in order,
  size_t gather_peak = 0;
  ASSERT_EQ(WaitExit(gather, seconds(300), &gather_peak), 0)
      << ReadFile(c.client().home() + "/started.err");
  const std::vector<std::string> lines = Lines(ReadFile(c.client().home() + "/started.out"));
  ASSERT_EQ(lines.size(), 2u * kTasks);
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_EQ(lines[2 * i], std::to_string(i));
    ASSERT_EQ(lines[2 * i + 1], std::string(1000000, 'x')) << i;
  }
  // holding a bounded part of them at once (64 MiB waiting for the first, the rest in a file);
  EXPECT_LT(gather_peak, 224u << 20) << (gather_peak >> 20) << " MiB";
  // a gather of the finished job prints them all too,
  RunResult again = c.Client(alice, {"gather", job}, seconds(60));
  ASSERT_TRUE(Exits(again, 0));
  EXPECT_EQ(again.out.size(), kTasks * (1000000 + 2) + 10 * 1 + 90 * 2 + 215 * 3);
  EXPECT_EQ(again.out.substr(0, 3), "0\nx");
  EXPECT_EQ(again.out.rfind("\n314\n"), again.out.size() - 1000001 - 5);
  // and the broker sent them in replies of a few MiB (it never held the job's results at once).
  const size_t broker_peak = PeakRss(broker);
  EXPECT_LT(broker_peak, broker_before + (96u << 20))
      << "before " << (broker_before >> 20) << " MiB, at most " << (broker_peak >> 20) << " MiB";
}

// Half-open TCP connections from many addresses, more than the broker's descriptors: loopback
// only, where every 127.0.0.0/8 address is this host's.
TEST(HostileLimitsTest, HalfOpenConnectionsPastTheDescriptorLimitNeverStopLocalPeers) {
  OrqEnv env;
  // Given a broker with a local worker, listening on TCP, allowed 256 descriptors,
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "--listen", "tcp://127.0.0.1:*"}), 0));
  ASSERT_TRUE(env.WaitStatus([](const nlohmann::json& s) { return s["workers"].size() == 1; }));
  const nlohmann::json status = env.Status();
  const pid_t broker = status["broker"]["pid"].get<pid_t>();
  const sockaddr_in to = AddressOf(status["endpoints"][1].get<std::string>());
  rlimit low{256, 256};
  ASSERT_EQ(::prlimit(broker, RLIMIT_NOFILE, &low, nullptr), 0) << std::strerror(errno);
  const size_t fds_before = OpenDescriptors(broker);
  rlimit mine{};
  ::getrlimit(RLIMIT_NOFILE, &mine);
  mine.rlim_cur = mine.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &mine);
  // when 600 connections from 60 addresses open and say nothing,
  Sockets strangers;
  for (int i = 0; i < 600; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    strangers.fds.push_back(fd);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(0x7f000002 + i % 60);  // 127.0.0.2 ...
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from), 0)
        << std::strerror(errno);
    const int r = ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to);
    ASSERT_TRUE(r == 0 || errno == EINPROGRESS) << std::strerror(errno);
  }
  // then local clients and the local worker are served, again and again,
  for (int i = 0; i < 3; ++i) {
    RunResult submit = env.Run({"submit", "--", "echo", "local"});
    ASSERT_TRUE(Exits(submit, 0));
    RunResult gather = env.Run({"gather", JobId(submit)});
    ASSERT_TRUE(Exits(gather, 0));
    EXPECT_EQ(gather.out, "local\n");
  }
  // the broker closed strangers' connections to keep its bounds, and counted them,
  EXPECT_EQ(::kill(broker, 0), 0) << "the broker is gone";
  EXPECT_TRUE(env.WaitStatus([](const nlohmann::json& s) {
    return s["counters"].value("shed", 0) > 0;
  })) << env.Status()["counters"].dump();
  // and once they leave, its descriptors are back near where they were.
  for (int fd : strangers.fds) ::close(fd);
  strangers.fds.clear();
  size_t fds_after = 0;
  EXPECT_TRUE(WaitUntil([&] { return (fds_after = OpenDescriptors(broker)) <= fds_before + 4; }))
      << "before " << fds_before << ", after " << fds_after;
}

// Strangers that each send a whole handshake frame just under the listener's limit, from many
// addresses at once: the broker holds at most the frames of the handshakes it lets wait
// (loopback only, where every 127.0.0.0/8 address is this host's).
TEST(HostileLimitsTest, StrangersSendingWholeFramesFromManyAddressesHoldABoundedAmount) {
  const char* asan = std::getenv("ASAN_OPTIONS");  // see AGatherOf300MiBStreamsInBoundedMemory
  ScopedEnv quarantine("ASAN_OPTIONS",
                       std::string(asan ? asan : "") + ":quarantine_size_mb=8:max_redzone=256");
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "0", "--listen", "tcp://127.0.0.1:*"}), 0));
  const nlohmann::json status = env.Status();
  const pid_t broker = status["broker"]["pid"].get<pid_t>();
  const sockaddr_in to = AddressOf(status["endpoints"][1].get<std::string>());
  const size_t before = PeakRss(broker);
  // Given 160 strangers from 40 addresses, each with a CURVE greeting and a handshake frame
  // header claiming 4 MiB less 1 KiB,
  constexpr size_t kFrame = (4u << 20) - 1024;
  std::string head(64, '\0');
  head[0] = '\xff';
  head[9] = '\x7f';
  head[10] = 3;
  head.replace(12, 5, "CURVE");
  head += '\x06';
  for (int shift = 56; shift >= 0; shift -= 8) head += static_cast<char>(uint64_t{kFrame} >> shift);
  Sockets strangers;
  std::vector<size_t> sent;
  for (int i = 0; i < 160; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    strangers.fds.push_back(fd);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(0x7f000002 + i % 40);  // 127.0.0.2 ...
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from), 0);
    ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
    ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
    sent.push_back(0);
  }
  // when all of them push their frames at once, whole,
  const std::string chunk(64 << 10, 'x');
  const auto deadline = Clock::now() + Scaled(seconds(60));
  for (bool busy = true; busy && Clock::now() < deadline;) {
    busy = false;
    for (size_t i = 0; i < strangers.fds.size(); ++i) {
      if (sent[i] >= kFrame) continue;
      const ssize_t w =
          ::send(strangers.fds[i], chunk.data(), std::min(chunk.size(), kFrame - sent[i]),
                 MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) sent[i] += static_cast<size_t>(w);
      if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) sent[i] = kFrame;  // closed on it
      busy = busy || sent[i] < kFrame;
    }
  }
  // then the broker held at most the frames of the 32 handshakes it lets wait (128 MiB), and
  // closed the others: what the threat model (docs/REMOTE.md) says a crowd of strangers costs.
  const size_t peak = PeakRss(broker);
  EXPECT_LT(peak, before + kMaxPendingHandshakes * kMaxRemoteMessageBytes + (16u << 20))
      << "before " << (before >> 20) << " MiB, at most " << (peak >> 20) << " MiB";
  EXPECT_TRUE(env.WaitStatus([](const nlohmann::json& s) { return s["counters"]["shed"] > 0; }));
  EXPECT_EQ(::kill(broker, 0), 0) << "the broker is gone";
}

INSTANTIATE_TEST_SUITE_P(Hosts, HostileTest, ::testing::Values(Net::kLoopback, Net::kNamespaces),
                         [](const auto& info) {
                           return info.param == Net::kLoopback ? "Loopback" : "Namespaces";
                         });

}  // namespace
}  // namespace orq::testing

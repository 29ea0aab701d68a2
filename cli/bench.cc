// `orq bench`: the performance workloads against an embedded broker and workers, reported as
// figures (tasks/s, per-task overhead, latency percentiles, peak RSS). Benchmarks report numbers;
// they assert nothing.

#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "broker/core/broker_core.h"
#include "cli/embedded.h"
#include "cli/format.h"
#include "cli/swarm.h"
#include "cli/verbs.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/keys.h"
#include "common/paths.h"
#include "worker/worker.h"

namespace orq {
namespace {

struct BenchOptions {
  int workers = 0;  // 0: the workload's own (2; swarm: 1000)
  int threads = 0;  // 0 = cores
  bool json = false;
  bool dashboard = false;              // each broker serves its dashboard, and a page is open on it
  std::vector<std::string> workloads;  // empty = all
};

using std::chrono::milliseconds;

bool with_dashboard = false;  // orq bench --dashboard

// What an open dashboard page asks of its broker: its status and jobs every second (over HTTP,
// a connection each, as a browser without keep-alive would), and the event stream followed.
class OpenPage {
 public:
  explicit OpenPage(const std::string& login_url) {
    // "http://127.0.0.1:PORT/?token=TOKEN"
    const std::string url = login_url.substr(0, login_url.find('?'));
    token_ = login_url.substr(login_url.find("?token=") + 7);
    const std::string host = url.substr(7, url.size() - 8);
    port_ = std::stoi(host.substr(host.rfind(':') + 1));
    host_ = host;
    poll_ = std::thread([this] {
      while (!stop_) {
        for (const char* path : {"/api/v1/status", "/api/v1/jobs"}) Get(path, false);
        for (int i = 0; i < 10 && !stop_; ++i) std::this_thread::sleep_for(milliseconds(100));
      }
    });
    stream_ = std::thread([this] { Get("/api/v1/stream", true); });
  }
  ~OpenPage() {
    stop_ = true;
    poll_.join();
    stream_.join();
  }
  size_t bytes() const { return bytes_; }

 private:
  // One request on a connection of its own; reads its answer to the end (a stream: until stop).
  void Get(const char* path, bool stream) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval wait{0, 100000};  // reads wake every 100 ms to look at stop_
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      const std::string request = std::string("GET ") + path + " HTTP/1.1\r\nHost: " + host_ +
                                  "\r\nCookie: orq_token=" + token_ +
                                  "\r\nConnection: close\r\n\r\n";
      if (::write(fd, request.data(), request.size()) == ssize_t(request.size())) {
        char buf[65536];
        for (;;) {
          const ssize_t n = ::read(fd, buf, sizeof buf);
          if (n > 0) bytes_ += size_t(n);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || stop_) break;
          if (n < 0 && !stream) continue;
        }
      }
    }
    ::close(fd);
  }

  std::string host_;
  std::string token_;
  int port_ = 0;
  std::atomic<bool> stop_ = false;
  std::atomic<size_t> bytes_ = 0;
  std::thread poll_, stream_;
};

// The bench's broker: with --dashboard, it serves its dashboard and a page is open on it.
class BenchBroker : public EmbeddedBroker {
 public:
  explicit BenchBroker(EmbeddedOptions options)
      : EmbeddedBroker([&] {
          options.dashboard = with_dashboard;
          return options;
        }()) {
    if (with_dashboard) page_.emplace(dashboard_url());
  }

 private:
  std::optional<OpenPage> page_;
};

struct Figures {
  std::string workload;
  std::string what;
  size_t tasks = 0;
  double wall = 0;  // seconds, end to end (broker and workers started inside)
  double p50_ms = -1, p99_ms = -1;
  size_t broker_rss = 0;   // peak, bytes
  size_t workers_rss = 0;  // peak of the largest worker, bytes
  std::string note;
  nlohmann::json extra = nlohmann::json::object();  // a workload's own figures, for --json
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

uint64_t SubmitJob(Connection& client, std::vector<TaskSpec> specs) {
  Message reply = client.Submit(SubmitRequest{std::move(specs)}, milliseconds(120000));
  if (auto* s = std::get_if<SubmittedReply>(&reply)) return s->job;
  throw std::runtime_error("the broker refused the benchmark job");
}

// Waits for every result of `job`; returns how many ended ok.
size_t GatherJob(Connection& client, uint64_t job) {
  client.Send(GatherRequest{{IdRef{job}}});
  size_t ok = 0;
  for (;;) {
    auto reply = client.Receive(Clock::time_point::max());
    auto* results = reply ? std::get_if<ResultsReply>(&*reply) : nullptr;
    if (!results) throw std::runtime_error("unexpected reply while gathering");
    if (!results->final) client.Send(ResultsAck{});
    for (const auto& o : results->outcomes) ok += o.status == TaskStatus::kOk;
    if (results->final) return ok;
  }
}

void ReadRss(EmbeddedBroker& broker, Figures& f) {
  f.broker_rss = PeakRss(broker.pid());
  Message reply = broker.client().Request(StatusRequest{}, milliseconds(10000));
  if (auto* status = std::get_if<StatusReply>(&reply)) {
    for (const WorkerInfo& w : status->workers)
      f.workers_rss = std::max(f.workers_rss, PeakRss(static_cast<pid_t>(w.pid)));
  }
}

// One job of `specs` on a fresh broker with `workers` x `threads`, start to last result.
Figures Job(const std::string& name, const std::string& what, std::vector<TaskSpec> specs,
            int workers, int threads) {
  Figures f{name, what, specs.size()};
  const auto start = Clock::now();
  BenchBroker broker({.workers = workers, .threads = threads});
  const uint64_t job = SubmitJob(broker.client(), std::move(specs));
  const size_t ok = GatherJob(broker.client(), job);
  f.wall = Seconds(Clock::now() - start);
  ReadRss(broker, f);
  if (ok != f.tasks) f.note = std::to_string(f.tasks - ok) + " tasks not ok";
  return f;
}

std::vector<TaskSpec> Many(size_t n, const std::function<TaskSpec(size_t)>& make) {
  std::vector<TaskSpec> specs;
  specs.reserve(n);
  for (size_t i = 0; i < n; ++i) specs.push_back(make(i));
  return specs;
}

TaskSpec Echo(size_t i) {
  TaskSpec s;
  s.body = EchoTask{std::to_string(i)};
  return s;
}

Figures Noop(int workers, int threads) {
  return Job("noop", "100,000 echo tasks, one job, end to end", Many(100000, Echo), workers,
             threads);
}

TaskSpec EchoAfter(size_t i, std::vector<Dependency> after) {
  TaskSpec s = Echo(i);
  s.needs = MakeNeeds(Needs{"", std::move(after)});
  return s;
}

// Dependencies (issue 10), end to end: one task, 100,000 after it, one after all of those; and
// 10,000 tasks each after the one before (one at a time, by definition).
std::vector<TaskSpec> FanoutSpecs(uint32_t wide);
std::vector<TaskSpec> ChainSpecs(size_t n);
Figures Fanout(int workers, int threads) {
  return Job("fanout", "1 echo task, 100,000 after it, 1 after all of them", FanoutSpecs(100000),
             workers, threads);
}
Figures Chain(int workers, int threads) {
  return Job("chain", "10,000 echo tasks, each after the one before", ChainSpecs(10000), workers,
             threads);
}

// The broker's core alone (no sockets, no journal, a fake worker answering at once): the time to
// schedule a graph, at two sizes, so the ratio shows how it grows.
double CoreSeconds(std::vector<TaskSpec> specs) {
  MemoryStore store;
  NullJournal journal;
  Outbox outbox;
  BrokerCore core(BrokerOptions{}, store, journal, outbox);
  const std::string worker = "w", client = "c", key;
  const auto start = Clock::now();
  core.Handle(Peer{worker, Role::kLocal, key}, ReadyMessage{1, 1, {1u << 20, 1, 1}, {}, "bench"},
              Clock::now());
  outbox.Take();
  core.Submit(Peer{client, Role::kLocal, key}, SubmitRequest{}, JobBuilder(std::move(specs)),
              Clock::now());
  std::vector<Outgoing> out = outbox.Take();
  while (!out.empty()) {
    WorkerResultsMessage results;
    for (const Outgoing& o : out) {
      if (const auto* tasks = std::get_if<TasksMessage>(&o.message)) {
        for (const Assignment& a : tasks->tasks) {
          TaskOutcome ok;
          ok.id = a.id;
          ok.attempt = a.attempt;
          results.outcomes.push_back(std::move(ok));
        }
      }
    }
    if (results.outcomes.empty()) break;
    core.Handle(Peer{worker, Role::kLocal, key}, std::move(results), Clock::now());
    out = outbox.Take();
  }
  return Seconds(Clock::now() - start);
}

std::vector<TaskSpec> FanoutSpecs(uint32_t wide) {
  std::vector<Dependency> all;
  all.reserve(wide);
  for (uint32_t i = 1; i <= wide; ++i) all.push_back({Dependency::kSameJob, i, false, false});
  std::vector<TaskSpec> specs = Many(wide + 1, [](size_t i) {
    return i == 0 ? Echo(0) : EchoAfter(i, {{Dependency::kSameJob, 0, false, false}});
  });
  specs.push_back(EchoAfter(wide + 1, std::move(all)));
  return specs;
}

std::vector<TaskSpec> ChainSpecs(size_t n) {
  return Many(n, [](size_t i) {
    return i == 0
               ? Echo(0)
               : EchoAfter(i, {{Dependency::kSameJob, static_cast<uint32_t>(i - 1), false, false}});
  });
}

Figures GraphCore(int, int) {
  Figures f{"graphcore",
            "the broker's core alone: fan-out/in of 100k and 200k, chains of 10k and 20k"};
  const double fan1 = CoreSeconds(FanoutSpecs(100000)), fan2 = CoreSeconds(FanoutSpecs(200000));
  const double chain1 = CoreSeconds(ChainSpecs(10000)), chain2 = CoreSeconds(ChainSpecs(20000));
  f.tasks = 2 + 100000 + 2 + 200000 + 10000 + 20000;
  f.wall = fan1 + fan2 + chain1 + chain2;
  char note[200];
  std::snprintf(note, sizeof note,
                "fanout 100k %.3f s, 200k %.3f s (x%.2f); chain 10k %.3f s, 20k %.3f s (x%.2f)",
                fan1, fan2, fan2 / fan1, chain1, chain2, chain2 / chain1);
  f.note = note;
  return f;
}

Figures Sleep(int workers, int threads) {
  return Job("sleep", "10,000 sleep 1 s tasks",
             Many(10000,
                  [](size_t) {
                    TaskSpec s;
                    s.body = SleepTask{1, ""};
                    return s;
                  }),
             workers, threads);
}

Figures Shell(int workers, int threads) {
  return Job("shell", "2,000 shell `true`",
             Many(2000,
                  [](size_t) {
                    TaskSpec s;
                    s.body = ShellTask{{"true"}};
                    return s;
                  }),
             workers, threads);
}

Figures Cpu(int workers, int) {
  Figures f = Job("cpu", "400 cpu 10 ms tasks, -t 1",
                  Many(400,
                       [](size_t) {
                         TaskSpec s;
                         s.body = CpuTask{10};
                         return s;
                       }),
                  workers, 1);
  const double ideal = 400 * 0.010 / workers;
  char note[64];
  std::snprintf(note, sizeof note, "%.1f %% of the ideal %.2f s", 100 * ideal / f.wall, ideal);
  if (f.note.empty()) f.note = note;
  return f;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

Figures Cold(int, int) {
  // The whole CLI: `orq run -w 1` of one echo task, as a user types it.
  Figures f{"cold", "orq run -w 1 of one echo task (the whole command)", 1};
  const std::string dir = MakeRunDirectory(OrqHome());
  const std::string file = dir + "/one.jsonl";
  std::FILE* out = std::fopen(file.c_str(), "w");
  std::fputs("{\"kind\": \"echo\", \"value\": 1}\n", out);
  std::fclose(out);
  std::vector<double> times;
  for (int i = 0; i < 7; ++i) {
    const auto start = Clock::now();
    SpawnOptions spawn;
    spawn.args = {"run", "-w", "1", file};
    spawn.output_file = dir + "/out.txt";
    Process run = Process::SpawnSelf(spawn);
    run.WaitUntil(Clock::now() + std::chrono::seconds(30));
    times.push_back(Seconds(Clock::now() - start));
  }
  RemoveTree(dir);
  f.wall = Percentile(times, 0.5);
  f.p50_ms = f.wall * 1000;
  f.p99_ms = Percentile(times, 1.0) * 1000;
  f.note = "median of 7";
  return f;
}

Figures Latency(int, int threads) {
  // One task at a time on an idle broker with one worker: submit to result.
  Figures f{"latency", "one echo task at a time, submit to result", 1000};
  BenchBroker broker({.workers = 1, .threads = threads});
  std::vector<double> times;
  for (int i = 0; i < 1000 + 50; ++i) {
    const auto start = Clock::now();
    const uint64_t job = SubmitJob(broker.client(), {Echo(i)});
    GatherJob(broker.client(), job);
    if (i >= 50) times.push_back(Seconds(Clock::now() - start) * 1000);  // after warm-up
  }
  double sum = 0;
  for (double t : times) sum += t;
  f.wall = sum / 1000;
  f.p50_ms = Percentile(times, 0.5);
  f.p99_ms = Percentile(times, 0.99);
  ReadRss(broker, f);
  return f;
}

Figures Million(int, int) {
  // 1,000,000 tasks queued in one job on a broker with no workers, against 10,000.
  Figures f{"million", "1,000,000 tasks queued in one job (no workers)", 1000000};
  BenchBroker broker({.workers = 0, .threads = 1});
  auto rate = [&](size_t n) {
    auto specs = Many(n, Echo);
    const auto start = Clock::now();
    SubmitJob(broker.client(), std::move(specs));
    return n / Seconds(Clock::now() - start);
  };
  const double small = rate(10000);
  const auto start = Clock::now();
  const double large = rate(1000000);
  f.wall = Seconds(Clock::now() - start);
  ReadRss(broker, f);
  char note[96];
  std::snprintf(note, sizeof note, "accepted %.0f tasks/s at 1M vs %.0f at 10k (%.0f %%)", large,
                small, 100 * large / small);
  f.note = note;
  return f;
}

// Seconds until the broker `client` talks to lists `n` workers; `check` (when given) throws if
// they cannot come.
double WaitWorkers(Connection& client, size_t n,
                   std::chrono::seconds limit = std::chrono::seconds(30),
                   const std::function<void()>& check = {}) {
  const auto start = Clock::now();
  while (Clock::now() < start + limit) {
    if (check) check();
    Message reply = client.Request(StatusRequest{}, milliseconds(10000));
    if (auto* status = std::get_if<StatusReply>(&reply)) {
      if (status->workers.size() >= n) return Seconds(Clock::now() - start);
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  throw std::runtime_error("the benchmark's workers did not register within " +
                           std::to_string(limit.count()) + " s");
}

// Runs `argv` (stdout and stderr to /dev/null) and waits for it: its wall time in seconds.
double TimeCommand(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  const auto start = Clock::now();
  pid_t pid = -1;
  const int error = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + strerror(error));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const double seconds = Seconds(Clock::now() - start);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(CLI::detail::join(argv, " ") + " failed");
  return seconds;
}

Figures Cli(int, int threads) {
  // What a CLI call costs: `orq --version` against /usr/bin/true (alternating, so both see the
  // same machine), then 1,000 one-by-one `orq submit` to a broker with its journal on, then
  // submit + gather pairs as a shell loop runs them.
  Figures f{"cli", "1,000 one-by-one orq submit calls (journal on)", 1000};
  const std::string self = std::filesystem::read_symlink("/proc/self/exe");
  std::vector<double> version, truth;
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 50; ++i) truth.push_back(TimeCommand({"/usr/bin/true"}));
    for (int i = 0; i < 50; ++i) version.push_back(TimeCommand({self, "--version"}));
  }
  BenchBroker broker({.workers = 1, .threads = threads});
  WaitWorkers(broker.client(), 1);
  setenv("ORQ_ENDPOINT", ("ipc://" + broker.dir() + "/broker.ipc").c_str(), 1);
  std::vector<double> submits;
  const auto start = Clock::now();
  for (size_t i = 0; i < f.tasks; ++i)
    submits.push_back(TimeCommand({self, "submit", "--echo", std::to_string(i)}) * 1000);
  f.wall = Seconds(Clock::now() - start);
  std::vector<double> pairs;
  for (int i = 0; i < 100; ++i) {
    const auto pair_start = Clock::now();
    TimeCommand({self, "submit", "--echo", std::to_string(i)});
    // (The broker numbers jobs in order: the 1,000 above were j1 to j1000. gather fails, and
    // the benchmark with it, if this one is not the job just submitted.)
    TimeCommand({self, "gather", FormatJobId(f.tasks + 1 + i)});
    pairs.push_back(Seconds(Clock::now() - pair_start) * 1000);
  }
  unsetenv("ORQ_ENDPOINT");
  f.p50_ms = Percentile(submits, 0.5);
  f.p99_ms = Percentile(submits, 0.99);
  ReadRss(broker, f);
  const double v = Percentile(version, 0.5) * 1000, t = Percentile(truth, 0.5) * 1000;
  char note[200];
  std::snprintf(note, sizeof note,
                "orq --version %.2f ms vs /usr/bin/true %.2f ms (x%.2f); submit + gather pair "
                "%.2f ms (medians)",
                v, t, v / t, Percentile(pairs, 0.5));
  f.note = note;
  return f;
}

// Seconds from submitting `n` echo tasks to their last result, through `client`.
double TimeNoop(Connection& client, size_t n) {
  const auto start = Clock::now();
  const uint64_t job = SubmitJob(client, Many(n, Echo));
  if (GatherJob(client, job) != n) throw std::runtime_error("benchmark tasks failed");
  return Seconds(Clock::now() - start);
}

Figures Tcp(int workers, int threads) {
  // The noop job with the workers and the client over loopback TCP + CURVE, each with its own key,
  // against the same job over ipc, measured the same way (registered workers, submit to last
  // result) in the same run.
  constexpr size_t kTasks = 100000;
  Figures f{"tcp", "100,000 echo, workers and client over TCP+CURVE, vs ipc", kTasks};
  double ipc = 0;
  {
    BenchBroker broker({.workers = workers, .threads = threads});
    WaitWorkers(broker.client(), static_cast<size_t>(workers));
    ipc = TimeNoop(broker.client(), kTasks);
  }
  BenchBroker broker({.workers = 0, .threads = threads, .listen = true});
  WaitWorkers(broker.client(), 0);  // bound, and its TCP endpoint recorded
  const KeyStore keys(broker.dir() + "/keys");
  const std::string endpoint = keys.Endpoints().at(0);
  auto access = [&](Role role, const std::string& name) {
    AccessFile a{role, name, {endpoint}, keys.BrokerKey().public_key, NewKeyPair()};
    const std::string file = broker.dir() + "/" + name + ".access";
    WritePrivateFile(file, FormatAccessFile(a), /*exclusive=*/true);
    keys.Add({name, role, a.keys.public_key, WallNow()});
    return std::make_pair(file, a);
  };
  std::vector<std::string> worker_files;
  for (int i = 0; i < workers; ++i)
    worker_files.push_back(access(Role::kWorker, "worker" + std::to_string(i)).first);
  const auto [client_file, client_access] = access(Role::kClient, "bench");
  broker.client().Request(ReloadAccessRequest{}, milliseconds(10000));  // before anyone dials
  std::vector<Process> remote;
  for (const auto& file : worker_files) {
    SpawnOptions spawn;
    spawn.args = {"worker", "--access", file, "--threads", std::to_string(threads)};
    spawn.die_with_parent = true;
    spawn.output_file = broker.dir() + "/workers.log";
    remote.push_back(Process::SpawnSelf(spawn));
  }
  Connection client({endpoint,
                     CurveClient{client_access.broker_public_key, client_access.keys.public_key,
                                 client_access.keys.secret_key},
                     client_file});
  WaitWorkers(client, static_cast<size_t>(workers));
  f.wall = TimeNoop(client, kTasks);
  ReadRss(broker, f);
  char note[96];
  std::snprintf(note, sizeof note, "ipc %.0f tasks/s in the same run; TCP+CURVE is %.0f %% of it",
                kTasks / ipc, 100 * ipc / f.wall);
  f.note = note;
  broker.Stop();  // tells the workers to stop; they exit before their Process objects reap them
  for (auto& w : remote) w.WaitUntil(Clock::now() + std::chrono::seconds(10));
  return f;
}

// What the broker pays per remote worker: `workers` simulated ones (cli/swarm.h), 25 to a host
// and a key, against 2, on the same broker build: its memory and heartbeat CPU per worker, the
// dispatch rate of 200,000 echo tasks, and how long all of them take to register again after
// the broker is killed (-9) and started again.
Figures SwarmWorkload(int workers, int) {
  constexpr size_t kTasks = 200000;
  constexpr int kPerHost = 25;
  constexpr auto kIdle = std::chrono::seconds(10);
  Figures f{"swarm",
            std::to_string(workers) + " simulated remote workers vs 2: 200,000 echo; a restart",
            kTasks};
  struct Run {
    double register_s = 0, rss_per_worker = 0, heartbeat_us = 0, rate = 0, back_s = 0;
    size_t rss = 0;
  };
  auto run = [&](int n, bool restart) {
    Run r;
    BenchBroker broker({.workers = 0, .threads = 1, .listen = true});
    WaitWorkers(broker.client(), 0);  // bound, and its TCP endpoint recorded
    const KeyStore keys(broker.dir() + "/keys");
    SwarmOptions o;
    o.endpoint = keys.Endpoints().at(0);
    o.broker_public_key = keys.BrokerKey().public_key;
    o.workers = n;
    o.workers_per_host = kPerHost;
    o.async_slots = kDefaultAsyncSlots;
    for (int h = 0; h * kPerHost < n; ++h) {
      o.host_keys.push_back(NewKeyPair());
      keys.Add({"swarm-host-" + std::to_string(h), Role::kWorker, o.host_keys.back().public_key,
                WallNow()});
    }
    broker.client().Request(ReloadAccessRequest{}, milliseconds(10000));
    const size_t rss_before = CurrentRss(broker.pid());
    Swarm swarm(o);
    auto check = [&] { swarm.Check(); };
    r.register_s =
        WaitWorkers(broker.client(), static_cast<size_t>(n), std::chrono::seconds(120), check);
    const auto cpu_before = ReadProcStat(broker.pid());
    std::this_thread::sleep_for(kIdle);  // idle: heartbeats only (a measurement, not a wait)
    const auto cpu_after = ReadProcStat(broker.pid());
    r.rss = CurrentRss(broker.pid());
    r.rss_per_worker = (static_cast<double>(r.rss) - static_cast<double>(rss_before)) / n;
    if (cpu_before && cpu_after)
      r.heartbeat_us = (cpu_after->cpu_seconds - cpu_before->cpu_seconds) * 1e6 /
                       std::chrono::duration<double>(kIdle).count() / n;
    r.rate = kTasks / TimeNoop(broker.client(), kTasks);
    swarm.Check();
    if (restart) {
      broker.Restart();
      r.back_s =
          WaitWorkers(broker.client(), static_cast<size_t>(n), std::chrono::seconds(120), check);
    }
    f.broker_rss = std::max(f.broker_rss, PeakRss(broker.pid()));
    return r;
  };
  const auto start = Clock::now();
  const Run few = run(2, false);
  const Run many = run(workers, true);
  f.wall = Seconds(Clock::now() - start);
  char note[400];
  std::snprintf(note, sizeof note,
                "%d workers: registered in %.2f s, %.1f KiB of broker memory and %.2f us of "
                "broker CPU a second each (idle, heartbeats), %.0f echo/s (2 workers: %.0f/s, "
                "%.0f %%), all back %.2f s after a kill -9 and restart",
                workers, many.register_s, many.rss_per_worker / 1024, many.heartbeat_us, many.rate,
                few.rate, 100 * many.rate / few.rate, many.back_s);
  f.note = note;
  f.extra = {{"workers", workers},
             {"register_s", many.register_s},
             {"broker_kib_per_worker", many.rss_per_worker / 1024},
             {"heartbeat_cpu_us_per_worker_s", many.heartbeat_us},
             {"echo_per_s", many.rate},
             {"echo_per_s_2_workers", few.rate},
             {"back_after_restart_s", many.back_s}};
  return f;
}

Figures History(int workers, int threads) {
  // A broker that has run many tasks holds no more than one that has run few: 10 jobs of
  // 1,000,000 echo tasks, each submitted and gathered in turn; the broker's resident set after
  // each job, and its peak over the whole run.
  constexpr size_t kJobs = 10, kTasks = 1000000;
  Figures f{"history", "10 jobs x 1,000,000 echo, submitted and gathered in turn", kJobs * kTasks};
  const auto start = Clock::now();
  BenchBroker broker({.workers = workers, .threads = threads});
  std::string after;
  for (size_t j = 0; j < kJobs; ++j) {
    const uint64_t job = SubmitJob(broker.client(), Many(kTasks, Echo));
    if (GatherJob(broker.client(), job) != kTasks) throw std::runtime_error("tasks failed");
    char text[16];
    std::snprintf(text, sizeof text, "%s%.0f", j ? " " : "", CurrentRss(broker.pid()) / 1048576.0);
    after += text;
  }
  f.wall = Seconds(Clock::now() - start);
  ReadRss(broker, f);
  f.note = "broker MiB after each job: " + after;
  return f;
}

const std::vector<std::pair<std::string, Figures (*)(int, int)>> kWorkloads = {
    {"noop", Noop},       {"sleep", Sleep},        {"shell", Shell},         {"cpu", Cpu},
    {"cold", Cold},       {"latency", Latency},    {"million", Million},     {"tcp", Tcp},
    {"fanout", Fanout},   {"chain", Chain},        {"graphcore", GraphCore}, {"cli", Cli},
    {"history", History}, {"swarm", SwarmWorkload}};

nlohmann::json ToJson(const Figures& f) {
  nlohmann::json j = {{"workload", f.workload},
                      {"what", f.what},
                      {"tasks", f.tasks},
                      {"wall_s", f.wall},
                      {"tasks_per_s", f.wall > 0 ? f.tasks / f.wall : 0},
                      {"per_task_us", f.tasks ? f.wall * 1e6 / f.tasks : 0},
                      {"broker_peak_rss_mib", f.broker_rss / 1048576.0},
                      {"worker_peak_rss_mib", f.workers_rss / 1048576.0}};
  if (f.p50_ms >= 0) j["p50_ms"] = f.p50_ms;
  if (f.p99_ms >= 0) j["p99_ms"] = f.p99_ms;
  if (!f.note.empty()) j["note"] = f.note;
  j.update(f.extra);
  return j;
}

ExitCode Bench(const BenchOptions& options) {
  with_dashboard = options.dashboard;
  std::vector<std::string> names = options.workloads;
  if (names.empty())  // all but swarm, which is a study of its own (minutes, a thousand sockets)
    for (const auto& [name, fn] : kWorkloads)
      if (name != "swarm") names.push_back(name);
  const int threads = options.threads > 0 ? options.threads : Cores();
  if (!options.json)
    std::printf("%-8s %9s %9s %11s %10s %8s %8s %10s %10s  %s\n", "workload", "tasks", "wall s",
                "tasks/s", "us/task", "p50 ms", "p99 ms", "broker MiB", "worker MiB", "note");
  for (const auto& name : names) {
    auto fn = std::find_if(kWorkloads.begin(), kWorkloads.end(), [&](const auto& w) {
                return w.first == name;
              })->second;  // there: IsMember checked the name
    Figures f = fn(options.workers > 0 ? options.workers : name == "swarm" ? 1000 : 2, threads);
    if (options.json) {
      std::printf("%s\n", JsonLine(ToJson(f)).c_str());
    } else {
      auto ms = [](double v) { return v >= 0 ? std::to_string(v).substr(0, 6) : std::string("-"); };
      std::printf("%-8s %9zu %9.3f %11.0f %10.2f %8s %8s %10.1f %10.1f  %s\n", f.workload.c_str(),
                  f.tasks, f.wall, f.wall > 0 ? f.tasks / f.wall : 0,
                  f.tasks ? f.wall * 1e6 / f.tasks : 0, ms(f.p50_ms).c_str(), ms(f.p99_ms).c_str(),
                  f.broker_rss / 1048576.0, f.workers_rss / 1048576.0, f.note.c_str());
    }
    std::fflush(stdout);
  }
  return ExitCode::kOk;
}

}  // namespace

Verb RegisterBench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  std::vector<std::string> names;
  for (const auto& [name, fn] : kWorkloads) names.push_back(name);
  auto* cmd = app.add_subcommand("bench", "Run the performance workloads and print figures");
  cmd->add_option("workloads", o->workloads,
                  "some of: " + CLI::detail::join(names, ", ") + " (default: all but swarm)")
      ->check(CLI::IsMember(names));
  cmd->add_option("-w,--workers", o->workers,
                  "worker processes (default 2); for swarm, simulated remote workers (default "
                  "1000)")
      ->check(MoreThanZero());
  cmd->add_option("-t,--threads", o->threads, "threads per worker (default: cores)")
      ->check(MoreThanZero());
  cmd->add_flag("--json", o->json, "one JSON object per workload");
  cmd->add_flag("--dashboard", o->dashboard,
                "each broker serves its dashboard, with a page open on it (its status and jobs "
                "every second, its event stream followed): what watching costs");
  return {cmd, [o] { return Bench(*o); }};
}

}  // namespace orq

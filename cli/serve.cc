// The verbs that run orq's own processes: `up` and `down` (a broker and its workers in the
// background of this host), and `broker` and `worker` (one of each in the foreground).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "broker/broker.h"
#include "cli/verbs.h"
#include "client/connection.h"
#include "common/keys.h"
#include "common/paths.h"
#include "common/process.h"
#include "web/server.h"
#include "worker/worker.h"

namespace orq {
// --resources NAME=N,...: checked, one sentence for a mistake (cli/verbs.h).
std::vector<ResourceNeed> ParseResources(const std::vector<std::string>& items) {
  std::vector<ResourceNeed> resources;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    const std::string name = item.substr(0, eq);
    char* end = nullptr;
    const long n = eq == std::string::npos ? 0 : std::strtol(item.c_str() + eq + 1, &end, 10);
    if (n < 1 || n > kMaxResourceUnits || *end)
      throw UsageError("--resources " + item + ": give NAME=N, N from 1 to " +
                       std::to_string(kMaxResourceUnits) + " (e.g. gpu=2)");
    if (auto error = ValidateName(name, "--resources"); !error.ok())
      throw UsageError(error.error().sentence);
    for (const ResourceNeed& r : resources) {
      if (r.name == name) throw UsageError("--resources names " + name + " twice");
    }
    resources.push_back({name, static_cast<uint32_t>(n)});
  }
  return resources;
}

namespace {

using std::chrono::milliseconds;

constexpr milliseconds kStartTimeout{15000};
constexpr milliseconds kStopTimeout{15000};

// CLI11 checks for endpoints: TCP is always CURVE, so each option takes one scheme only.
CLI::Validator Scheme(const std::string& scheme, const std::string& why) {
  return CLI::Validator(
      [scheme, why](std::string& value) {
        return value.rfind(scheme, 0) == 0
                   ? std::string()
                   : "must be a" + std::string(scheme[0] == 'i' ? "n " : " ") + scheme +
                         " endpoint, not '" + value + "'" + why;
      },
      scheme + "...");
}
const CLI::Validator kIpc = Scheme("ipc://", "; TCP goes through --listen, always CURVE-encrypted");
const CLI::Validator kTcp = Scheme("tcp://", "");

CLI::Option* AddHeartbeat(CLI::App* command, int& ms) {
  return command->add_option("--heartbeat-ms", ms, "heartbeat interval (liveness is 3 of them)")
      ->check(CLI::Range(10, 60000));
}

// ---- orq up
// ---------------------------------------------------------------------------------------

// The web dashboard (orq broker, orq up): where, and its TLS and token.
struct HttpOptions {
  std::string address, cert, key, token_file;
};

void AddHttp(CLI::App* cmd, HttpOptions& o) {
  const CLI::Validator address(
      [](std::string& text) -> std::string {
        web::ServerOptions parsed;
        if (web::ParseHttpAddress(text, parsed)) return "";
        return "write it ADDRESS:PORT (127.0.0.1:8080, [::1]:8080) or PORT (on 127.0.0.1)";
      },
      "ADDRESS:PORT");
  auto* http = cmd->add_option("--http", o.address,
                               "serve the web dashboard, /metrics and /api/v1 on ADDRESS:PORT (or "
                               "PORT, on 127.0.0.1); an address that is not loopback needs "
                               "--http-cert, --http-key and --http-token-file")
                   ->check(address);
  cmd->add_option("--http-cert", o.cert, "the dashboard's TLS certificate chain (PEM)")
      ->check(CLI::ExistingFile)
      ->needs(http);
  cmd->add_option("--http-key", o.key, "the dashboard's TLS private key (PEM)")
      ->check(CLI::ExistingFile)
      ->needs(http);
  cmd->add_option("--http-token-file", o.token_file,
                  "a file whose first line is the token every request must carry (at least 16 "
                  "characters)")
      ->check(CLI::ExistingFile)
      ->needs(http);
}

// The same options for the broker `orq up` starts (files made absolute: it runs elsewhere).
std::vector<std::string> HttpArgs(const HttpOptions& o) {
  std::vector<std::string> args;
  if (o.address.empty()) return args;
  args = {"--http", o.address};
  const auto add = [&](const char* flag, const std::string& file) {
    if (!file.empty()) args.insert(args.end(), {flag, std::filesystem::absolute(file).string()});
  };
  add("--http-cert", o.cert);
  add("--http-key", o.key);
  add("--http-token-file", o.token_file);
  return args;
}

struct UpOptions {
  int workers = -1;  // -1: cores
  int threads = 0;   // 0: cores
  int heartbeat_ms = 1000;
  std::vector<std::string> listen;
  std::vector<std::string> resources, queues;  // for the local workers
  HttpOptions http;
  size_t max_workers_per_key = kMaxWorkersPerKey;
};

// --resources gpu=2,license=4 and --queues a,b: what a worker offers and whence it takes tasks.
void AddWorkerOffer(CLI::App* cmd, std::vector<std::string>& resources,
                    std::vector<std::string>& queues, const std::string& whose) {
  cmd->add_option("--resources", resources,
                  "NAME=N units " + whose +
                      " offer(s) (gpu=2,license=4; cpus=N: its cpus, "
                      "default: shell slots)")
      ->delimiter(',');
  cmd->add_option("--queues", queues, "the queues " + whose + " take(s) tasks from (default: all)")
      ->delimiter(',');
}

// The options that pass --resources and --queues on to local workers.
std::vector<std::string> WorkerOfferArgs(const std::vector<std::string>& resources,
                                         const std::vector<std::string>& queues) {
  std::vector<std::string> args;
  ParseResources(resources);  // a mistake is the user's, said here, not by every worker
  for (const std::string& q : queues) {
    if (auto error = ValidateName(q, "--queues"); !error.ok())
      throw UsageError(error.error().sentence);
  }
  if (!resources.empty()) args.insert(args.end(), {"--resources", CLI::detail::join(resources)});
  if (!queues.empty()) args.insert(args.end(), {"--queues", CLI::detail::join(queues)});
  return args;
}

// The local workers the running broker has registered.
int LocalWorkers(const StatusReply& status) {
  int n = 0;
  for (const WorkerInfo& w : status.workers) n += !w.remote;
  return n;
}

// orq scale -w N (and orq up -w N while up): asks the broker, then waits until N local workers are
// registered (scaling down returns at once: the retired ones finish their tasks, then leave).
ExitCode Scale(int workers) {
  if (UsingAccessFile())
    throw UsageError(
        "orq scale changes the workers of the broker on this host; --access is for "
        "reaching a remote one");
  const std::string home = OrqHome();
  if (!ReadLivePid(PidFile(home)))
    throw Unreachable("orq is not running; start it with 'orq up -w " + std::to_string(workers) +
                      "'");
  Connection client({DefaultEndpoint(home), {}, ""});
  const Message answer =
      client.Request(ScaleRequest{static_cast<uint32_t>(workers)}, milliseconds(5000));
  if (!std::holds_alternative<ScaledReply>(answer))
    throw std::runtime_error("orq scale: the broker sent an unexpected reply");
  const ScaledReply* scaled = &std::get<ScaledReply>(answer);
  if (scaled->after != static_cast<uint32_t>(workers))
    throw Refused("orq scale: the broker is shutting down; it kept " +
                  std::to_string(scaled->after) + " workers");
  if (scaled->after > scaled->before) {
    const auto deadline = Clock::now() + kStartTimeout;
    for (;;) {
      const Message reply = client.Request(StatusRequest{}, milliseconds(5000));
      const auto* status = std::get_if<StatusReply>(&reply);
      if (status && LocalWorkers(*status) >= workers) break;
      if (Clock::now() >= deadline)
        throw std::runtime_error("orq scale: the new workers did not register within 15 s; see " +
                                 LogFile(home));
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
  if (scaled->before == scaled->after) {
    Say("orq is already up with " + std::to_string(scaled->after) + " local worker" +
        (scaled->after == 1 ? "" : "s"));
    return ExitCode::kOk;
  }
  std::printf("orq scaled from %u to %u local worker%s\n", scaled->before, scaled->after,
              scaled->after == 1 ? "" : "s");
  return ExitCode::kOk;
}

ExitCode Up(const UpOptions& o) {
  if (UsingAccessFile())
    throw UsageError(
        "orq up starts a broker on this host; --access (or $ORQ_ACCESS) is for reaching a remote "
        "one");
  const std::string home = OrqHome();
  if (long pid = ReadLivePid(PidFile(home))) {
    if (o.workers >= 0) return Scale(o.workers);  // `orq up -w N` while up: scale to N
    Say("orq is already up (broker pid " + std::to_string(pid) + ", " + DefaultEndpoint(home) +
        ")");
    return ExitCode::kOk;
  }
  const int workers = o.workers >= 0 ? o.workers : Cores();
  SpawnOptions spawn;
  spawn.args = {"broker",
                "--workers",
                std::to_string(workers),
                "--threads",
                std::to_string(o.threads > 0 ? o.threads : Cores()),
                "--heartbeat-ms",
                std::to_string(o.heartbeat_ms)};
  for (const auto& endpoint : o.listen) spawn.args.insert(spawn.args.end(), {"--listen", endpoint});
  spawn.args.insert(spawn.args.end(),
                    {"--max-workers-per-key", std::to_string(o.max_workers_per_key)});
  for (std::string& arg : WorkerOfferArgs(o.resources, o.queues)) spawn.args.push_back(arg);
  for (std::string& arg : HttpArgs(o.http)) spawn.args.push_back(arg);
  spawn.new_session = true;
  spawn.output_file = LogFile(home);
  WriteOwnerOnlyFile(LogFile(home), "");  // owner-only before anything is logged
  Process broker = Process::SpawnSelf(spawn);
  const pid_t pid = broker.pid();

  Connection client({DefaultEndpoint(home), {}, ""});
  const auto deadline = Clock::now() + kStartTimeout;
  while (Clock::now() < deadline) {
    if (!broker.Running()) {
      const std::string why = "the broker " + Describe(*broker.exit()) +
                              " while starting; its log (" + LogFile(home) + "):\n" +
                              Tail(LogFile(home), 10);
      // It refused what it was given (exit 2: a link, a bad endpoint): so does `orq up`.
      if (*broker.exit() == ExitStatus{Exited{static_cast<int>(ExitCode::kUsage)}})
        throw UsageError(why);
      throw Unreachable(why);
    }
    try {
      Message reply = client.Request(StatusRequest{}, milliseconds(2000));
      if (auto* status = std::get_if<StatusReply>(&reply)) {
        if (static_cast<int>(status->workers.size()) >= workers) {
          broker.Release();  // it runs on after we exit
          std::string where = DefaultEndpoint(home);
          for (const auto& e : status->endpoints) {
            if (e != where) where += ", " + e + " (CURVE)";
          }
          std::printf("orq is up: broker pid %d, %d worker%s, %s\n", pid, workers,
                      workers == 1 ? "" : "s", where.c_str());
          if (std::ifstream url(DashboardFile(home)); url && !o.http.address.empty()) {
            std::string line;
            std::getline(url, line);
            std::printf("dashboard: %s\n", line.c_str());
          }
          return ExitCode::kOk;
        }
      }
    } catch (const Unreachable&) {
      // Not bound yet: try again.
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  broker.Stop(milliseconds(2000));
  throw Unreachable("the broker did not become ready within 15 s and was stopped. Log: " +
                    LogFile(home));
}

// ---- orq down
// -------------------------------------------------------------------------------------

ExitCode Down() {
  if (UsingAccessFile()) {  // a remote broker: ask it to stop; its host sees to the rest
    Connection client(FindBroker());
    client.Request(ShutdownRequest{}, milliseconds(5000));
    std::printf("the broker at %s is shutting down (running tasks get %lld s to finish)\n",
                client.endpoint().c_str(), static_cast<long long>(kShutdownGrace.count() / 1000));
    return ExitCode::kOk;
  }
  const std::string home = OrqHome();
  const long pid = ReadLivePid(PidFile(home));
  if (!pid) {
    ::unlink(PidFile(home).c_str());
    Say("orq is not running");
    return ExitCode::kOk;
  }
  bool asked = true;
  try {
    Connection client({DefaultEndpoint(home), {}, ""});
    client.Request(ShutdownRequest{}, milliseconds(5000));
  } catch (const Unreachable&) {
    Say("orq: the broker (pid " + std::to_string(pid) + ") did not answer; sending SIGTERM");
    asked = false;
  }
  // Asked, it stops by itself; otherwise it gets TERM. Either way it has kStopTimeout, then KILL.
  const pid_t broker = static_cast<pid_t>(pid);
  if (!asked) ::kill(broker, SIGTERM);
  if (!WaitForExit(broker, Clock::now() + kStopTimeout)) {
    Say("orq: the broker (pid " + std::to_string(pid) + ") did not stop within 15 s; killing it");
    StopProcess(broker, milliseconds(0));
  }
  std::printf("orq is down (broker pid %ld stopped)\n", pid);
  return ExitCode::kOk;
}

// ---- orq broker
// -----------------------------------------------------------------------------------

struct BrokerOptions {
  BrokerConfig config;
  std::string endpoint;
  std::vector<std::string> listen;
  std::string keys_dir;
  int workers = 0, threads = 0, heartbeat_ms = 1000;
  std::vector<std::string> resources, queues;  // for the local workers
  std::string journal;
  bool no_journal = false;
  double retention_hours = 0;
  HttpOptions http;
};

ExitCode Broker(BrokerOptions& o) {
  BrokerConfig& broker = o.config;
  const std::string home = OrqHome();
  std::string endpoint = o.endpoint, journal = o.journal;
  if (endpoint.empty()) {
    if (long pid = ReadLivePid(PidFile(home)))
      throw UsageError("a broker is already running in " + home + " (pid " + std::to_string(pid) +
                       ")");
    endpoint = DefaultEndpoint(home);
    broker.pid_file = PidFile(home);
    if (journal.empty()) journal = home + "/journal.db";
  }
  if (!o.no_journal) broker.journal = journal;
  broker.retention = std::chrono::seconds(static_cast<int64_t>(o.retention_hours * 3600));
  broker.endpoints = {endpoint};
  broker.listen = o.listen;
  if (!o.listen.empty()) broker.keys_dir = o.keys_dir.empty() ? KeysDir(home) : o.keys_dir;
  broker.workers = o.workers;
  broker.threads = o.threads > 0 ? o.threads : Cores();
  broker.heartbeat = milliseconds(o.heartbeat_ms);
  broker.worker_args = WorkerOfferArgs(o.resources, o.queues);
  // The dashboard: a client of this broker, on threads of its own, started before the broker
  // binds (its requests wait for it) and stopped after the broker's loop ends.
  std::unique_ptr<web::Server> dashboard;
  if (!o.http.address.empty()) {
    web::ServerOptions http{.cert_file = o.http.cert,
                            .key_file = o.http.key,
                            .token_file = o.http.token_file,
                            .broker_endpoint = endpoint};
    web::ParseHttpAddress(o.http.address, http);  // (checked by the option)
    dashboard = web::Server::Start(http);
    // The login URL carries the token: it is kept where only the owner reads ($ORQ_HOME, 0600),
    // and said on the broker's own output (its log in $ORQ_HOME, or the owner's terminal).
    if (!broker.pid_file.empty())
      WriteOwnerOnlyFile(DashboardFile(home), dashboard->login_url() + "\n");
    std::printf("dashboard %s\n", dashboard->login_url().c_str());
    std::fflush(stdout);
  }
  const ExitCode code = RunBroker(broker);
  if (dashboard && !broker.pid_file.empty()) ::unlink(DashboardFile(home).c_str());
  return code;
}

// ---- orq worker
// -----------------------------------------------------------------------------------

struct WorkerVerbOptions {
  WorkerConfig config;
  std::string connect;
  int heartbeat_ms = 1000;
  std::vector<std::string> resources;
  uint64_t idle_timeout_s = 0, lifetime_s = 0;
  uint64_t python_idle_s = 60, python_max_memory_mib = 0;
};

ExitCode Worker(WorkerVerbOptions& o) {
  WorkerConfig& worker = o.config;
  if (!o.connect.empty() && UsingAccessFile())
    throw UsageError(
        "give --connect ipc://... (a broker on this host) or --access FILE (a broker "
        "over TCP), not both");
  if (!o.connect.empty()) {
    worker.endpoints = {o.connect};
  } else if (!UsingAccessFile()) {
    worker.endpoints = {FindBroker().endpoint};  // $ORQ_HOME's broker, as every command finds it
  } else {
    const std::string& path = AccessFilePath();
    AccessFile file = ReadAccessFile(path);
    if (file.role != Role::kWorker)
      throw UsageError(path + " is a " + std::string(RoleName(file.role)) +
                       " access file; a worker needs one from 'orq access add --worker FILE'");
    worker.endpoints = file.endpoints;
    worker.curve = CurveClient{file.broker_public_key, file.keys.public_key, file.keys.secret_key};
  }
  if (!worker.workdir.empty()) worker.workdir = std::filesystem::absolute(worker.workdir);
  if (worker.threads <= 0) worker.threads = Cores();
  worker.heartbeat = milliseconds(o.heartbeat_ms);
  worker.idle_timeout = std::chrono::seconds(o.idle_timeout_s);
  worker.lifetime = std::chrono::seconds(o.lifetime_s);
  worker.python.idle = std::chrono::seconds(o.python_idle_s);
  worker.python.max_memory = static_cast<size_t>(o.python_max_memory_mib) << 20;
  worker.resources = ParseResources(o.resources);
  for (const std::string& q : worker.queues) {
    if (auto error = ValidateName(q, "--queues"); !error.ok())
      throw UsageError(error.error().sentence);
  }
  return RunWorker(worker);
}

}  // namespace

Verb RegisterScale(CLI::App& app) {
  auto workers = std::make_shared<int>(0);
  auto* cmd = app.add_subcommand(
      "scale",
      "Change how many local workers the running broker keeps (those retired finish "
      "their tasks first)");
  cmd->add_option("-w,--workers", *workers, "local worker processes to keep")
      ->required()
      ->check(ZeroOrMore());
  return {cmd, [workers] { return Scale(*workers); }};
}

Verb RegisterUp(CLI::App& app) {
  auto o = std::make_shared<UpOptions>();
  auto* up = app.add_subcommand("up", "Start the broker and workers in the background");
  up->add_option("-w,--workers", o->workers, "worker processes (default: cores)")
      ->check(ZeroOrMore());
  up->add_option("-t,--threads", o->threads, "threads per worker pool (default: cores)")
      ->check(MoreThanZero());
  AddHeartbeat(up, o->heartbeat_ms);
  AddWorkerOffer(up, o->resources, o->queues, "each worker");
  up->add_option("--listen", o->listen,
                 "also listen on tcp://HOST:PORT (always CURVE; see 'orq access')")
      ->check(kTcp);
  up->add_option("--max-workers-per-key", o->max_workers_per_key,
                 "remote workers one worker key may have registered at once (default " +
                     std::to_string(kMaxWorkersPerKey) + ")")
      ->check(MoreThanZero());
  AddHttp(up, o->http);
  return {up, [o] { return Up(*o); }};
}

Verb RegisterDown(CLI::App& app) {
  auto* down = app.add_subcommand("down", "Stop the background broker and its workers");
  return {down, [] { return Down(); }};
}

Verb RegisterBroker(CLI::App& app) {
  auto o = std::make_shared<BrokerOptions>();
  auto* cmd = app.add_subcommand("broker", "Run the broker in the foreground");
  cmd->add_option("--endpoint", o->endpoint,
                  "endpoint to bind (default: ipc://$ORQ_HOME/broker.ipc)")
      ->check(kIpc);
  cmd->add_option("--listen", o->listen,
                  "also listen on tcp://HOST:PORT, e.g. tcp://0.0.0.0:5555 (always CURVE: only "
                  "keys added with 'orq access add' get in)")
      ->check(kTcp);
  cmd->add_option("--keys", o->keys_dir, "the keys directory (default $ORQ_HOME/keys)");
  cmd->add_option("-w,--workers", o->workers, "local workers to start and keep alive")
      ->check(ZeroOrMore());
  cmd->add_option("-t,--threads", o->threads, "threads per local worker (default: cores)")
      ->check(MoreThanZero());
  AddHeartbeat(cmd, o->heartbeat_ms);
  AddWorkerOffer(cmd, o->resources, o->queues, "each local worker");
  auto* journal = cmd->add_option("--journal", o->journal,
                                  "SQLite journal (default: $ORQ_HOME/journal.db with the default "
                                  "endpoint)");
  cmd->add_flag("--no-journal", o->no_journal, "keep results in memory only")->excludes(journal);
  cmd->add_flag("--journal-sync,!--no-journal-sync", o->config.journal_sync,
                "--no-journal-sync: the journal only stores results on disk, as orq run's own "
                "broker has it: no fsync, a commit every 20 ms, replies not waiting for it (a "
                "crash may lose what clients were told); default: --journal-sync")
      ->needs(journal);
  cmd->add_option("--retention-hours", o->retention_hours,
                  "forget finished jobs this long after they finish (default: keep)")
      ->check(ZeroOrMore());
  cmd->add_option("--max-job-tasks", o->config.max_tasks_per_job, "tasks one job may hold")
      ->check(MoreThanZero());
  cmd->add_option("--max-message-bytes", o->config.max_message_bytes,
                  "largest message a peer may send (default 256 MiB; over TCP at most 4 MiB)")
      ->check(CLI::Range(size_t{1024}, kMaxMessageBytes));
  cmd->add_option("--max-workers-per-key", o->config.max_workers_per_key,
                  "remote workers one worker key may have registered at once (default " +
                      std::to_string(kMaxWorkersPerKey) + ")")
      ->check(MoreThanZero());
  AddHttp(cmd, o->http);
  return {cmd, [o] { return Broker(*o); }};
}

Verb RegisterWorker(CLI::App& app) {
  auto o = std::make_shared<WorkerVerbOptions>();
  o->config.threads = 0;  // cores, unless -t says
  auto* cmd = app.add_subcommand("worker", "Run a worker in the foreground");
  cmd->add_option("--connect", o->connect,
                  "a local broker's ipc:// endpoint (default: $ORQ_HOME's; a remote one: "
                  "--access FILE)")
      ->check(Scheme("ipc://",
                     "; over TCP a worker needs --access FILE from 'orq access add "
                     "--worker'"));
  cmd->add_option("--workdir", o->config.workdir,
                  "where shell tasks of jobs that bring no directory run (default: here)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("-t,--threads", o->config.threads, "cpu threads (default: cores)")
      ->check(MoreThanZero());
  cmd->add_option("--slots", o->config.async_slots, "sleep/echo tasks at once")
      ->check(MoreThanZero());
  cmd->add_option("--shell-slots", o->config.shell_slots, "shell tasks at once (default: threads)")
      ->check(MoreThanZero());
  AddWorkerOffer(cmd, o->resources, o->config.queues, "this worker");
  cmd->add_option("--idle-timeout", o->idle_timeout_s,
                  "leave after this long with no task (2m, 90s; default: never)")
      ->transform(DurationCheck());
  cmd->add_option("--lifetime", o->lifetime_s,
                  "leave this long after starting, handing back what still runs; the broker "
                  "gives it no task whose --time-request is longer than the time it has left "
                  "(default: no end)")
      ->transform(DurationCheck());
  cmd->add_option("--python", o->config.python.python,
                  "the Python interpreter for python tasks (default: the one each client runs, "
                  "as sys.executable names it)");
  cmd->add_option("--python-idle", o->python_idle_s,
                  "end a Python interpreter idle this long (default: 60s)")
      ->transform(DurationCheck());
  cmd->add_option("--python-max-calls", o->config.python.max_calls,
                  "replace a Python interpreter after this many calls (default: no limit)")
      ->check(MoreThanZero());
  cmd->add_option("--python-max-memory", o->python_max_memory_mib,
                  "replace a Python interpreter whose resident memory is over this many MiB "
                  "after a call (default: no limit)")
      ->check(MoreThanZero());
  cmd->add_option("--allocation", o->config.allocation,
                  "the allocation that started it, QUEUE/JOBID (set by orq alloc's workers)");
  cmd->add_flag("--supervised", o->config.supervised,
                "exit when the broker is gone instead of reconnecting");
  AddHeartbeat(cmd, o->heartbeat_ms);
  return {cmd, [o] { return Worker(*o); }};
}

}  // namespace orq

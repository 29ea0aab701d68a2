#include "cli/commands.h"

#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <tuple>

#include "cli/client.h"
#include "cli/embedded.h"
#include "cli/format.h"
#include "common/ids.h"
#include "common/paths.h"
#include "common/process.h"

namespace orq {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kStartTimeout{15000};
constexpr milliseconds kStopTimeout{15000};

volatile std::sig_atomic_t interrupted = 0;
extern "C" void OnInterrupt(int) { interrupted = 1; }

void Say(const std::string& sentence) { std::fprintf(stderr, "%s\n", sentence.c_str()); }

int Threads(int threads) {
  return threads > 0 ? threads
                     : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

std::string Tail(const std::string& file, size_t lines) {
  std::ifstream in(file);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += "  " + all[i] + "\n";
  return out;
}

struct Tally {
  size_t total = 0, ok = 0, failed = 0;
};

// Waits for the results of `ids` and prints them in order as the chunks arrive.
int GatherAndPrint(Client& client, const std::vector<std::string>& ids, bool json,
                   Clock::time_point deadline, Tally& tally) {
  client.Send(GatherRequest{ids});
  std::vector<std::string> failures;
  for (;;) {
    auto reply = client.Receive(deadline);
    if (!reply) return kExitTimeout;
    if (auto* error = std::get_if<ErrorReply>(&*reply)) {
      Say("orq: " + error->message);
      return error->code == ErrorCode::kUnknownId ? kExitUsage : kExitUnreachable;
    }
    auto* results = std::get_if<ResultsReply>(&*reply);
    if (!results) throw std::runtime_error("unexpected reply from the broker");
    for (const TaskOutcome& o : results->outcomes) {
      ++tally.total;
      if (o.status == TaskStatus::kOk) {
        ++tally.ok;
      } else {
        ++tally.failed;
        failures.push_back(FailureSentence(o));
      }
      if (json) {
        std::string line = ToJson(o).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        line += '\n';
        std::fwrite(line.data(), 1, line.size(), stdout);
      } else {
        PrintText(o, stdout);
      }
    }
    if (results->final) break;
  }
  std::fflush(stdout);
  constexpr size_t kShown = 20;
  for (size_t i = 0; i < failures.size() && i < kShown; ++i) Say(failures[i]);
  if (failures.size() > kShown)
    Say("orq: ... and " + std::to_string(failures.size() - kShown) + " more tasks did not end ok");
  return tally.failed ? kExitTaskFailed : kExitOk;
}

uint64_t Submit(Client& client, std::vector<TaskSpec> specs) {
  Message reply = client.Request(SubmitRequest{std::move(specs)}, kRequestTimeout);
  if (auto* error = std::get_if<ErrorReply>(&reply)) throw std::invalid_argument(error->message);
  auto* submitted = std::get_if<SubmittedReply>(&reply);
  if (!submitted) throw std::runtime_error("unexpected reply from the broker");
  return submitted->job;
}

void InstallInterruptHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
}

}  // namespace

std::optional<std::vector<TaskSpec>> LoadTaskFile(const std::string& file) {
  std::variant<std::vector<TaskSpec>, SpecError> parsed;
  if (file == "-") {
    parsed = ParseTaskFile(std::cin, "<stdin>");
  } else {
    std::ifstream in(file);
    if (!in) {
      Say("orq: cannot read " + file + ": " + std::strerror(errno));
      return std::nullopt;
    }
    parsed = ParseTaskFile(in, file);
  }
  if (auto* error = std::get_if<SpecError>(&parsed)) {
    Say("orq: " + error->message + "; nothing was submitted");
    return std::nullopt;
  }
  auto& specs = std::get<std::vector<TaskSpec>>(parsed);
  if (specs.size() > kMaxTasksPerJob) {
    Say("orq: " + file + " has " + std::to_string(specs.size()) +
        " tasks; a job may hold at most " + std::to_string(kMaxTasksPerJob));
    return std::nullopt;
  }
  return std::move(specs);
}

int RunCommand(const RunOptions& options) {
  const auto start = Clock::now();
  auto specs = LoadTaskFile(options.file);
  if (!specs) return kExitUsage;
  InstallInterruptHandlers();
  EmbeddedBroker broker({options.workers > 0 ? options.workers : Threads(0),
                         Threads(options.threads), !options.no_journal});
  int code = kExitOk;
  Tally tally;
  uint64_t job = 0;
  try {
    job = Submit(broker.client(), std::move(*specs));
    code = GatherAndPrint(broker.client(), {FormatJobId(job)}, options.json,
                          Clock::time_point::max(), tally);
  } catch (const Unreachable& e) {
    if (interrupted) {
      Say("orq: interrupted; stopping the broker and its workers");
      code = 130;
      // Cancel first, so running tasks are stopped now rather than given the shutdown's grace.
      if (job) {
        try {
          broker.client().Request(CancelRequest{{FormatJobId(job)}}, milliseconds(2000));
        } catch (const std::exception&) {
          // Stop() below ends everything in any case.
        }
      }
    } else {
      Say(std::string("orq: ") + e.what() + "\n" + Tail(broker.log(), 10));
      code = kExitUnreachable;
    }
  }
  broker.Stop();
  if (code == 130) return code;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::fprintf(stderr, "%zu task%s: %zu ok, %zu failed in %.2f s\n", tally.total,
               tally.total == 1 ? "" : "s", tally.ok, tally.failed, elapsed);
  return code;
}

int UpCommand(int workers, int threads, int heartbeat_ms, const std::vector<std::string>& listen) {
  if (UsingAccessFile()) {
    Say("orq up: starts a broker on this host; --access (or $ORQ_ACCESS) is for reaching a remote "
        "one");
    return kExitUsage;
  }
  const std::string home = OrqHome();
  if (long pid = ReadLivePid(PidFile(home))) {
    Say("orq is already up (broker pid " + std::to_string(pid) + ", " + DefaultEndpoint(home) +
        ")");
    return kExitOk;
  }
  workers = workers >= 0 ? workers : Threads(0);
  SpawnOptions spawn;
  spawn.args = {"broker",
                "--workers",
                std::to_string(workers),
                "--threads",
                std::to_string(Threads(threads)),
                "--heartbeat-ms",
                std::to_string(heartbeat_ms)};
  for (const auto& endpoint : listen) spawn.args.insert(spawn.args.end(), {"--listen", endpoint});
  spawn.new_session = true;
  spawn.output_file = LogFile(home);
  WriteOwnerOnlyFile(LogFile(home), "");  // owner-only before anything is logged
  Process broker = Process::SpawnSelf(spawn);
  const pid_t pid = broker.pid();

  Client client({DefaultEndpoint(home), {}, ""});
  const auto deadline = Clock::now() + kStartTimeout;
  while (Clock::now() < deadline) {
    if (!broker.Running()) {
      Say("orq: the broker " + Describe(*broker.exit()) + " while starting; its log (" +
          LogFile(home) + "):\n" + Tail(LogFile(home), 10));
      return kExitUnreachable;
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
          return kExitOk;
        }
      }
    } catch (const Unreachable&) {
      // Not bound yet: try again.
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  Say("orq: the broker did not become ready within 15 s; stopping it. Log: " + LogFile(home));
  broker.Stop(milliseconds(2000));
  return kExitUnreachable;
}

int DownCommand() {
  if (UsingAccessFile()) {  // a remote broker: ask it to stop; its host sees to the rest
    Client client(FindBroker());
    client.Request(ShutdownRequest{}, milliseconds(5000));
    std::printf("the broker at %s is shutting down (running tasks get %lld s to finish)\n",
                client.endpoint().c_str(), static_cast<long long>(kShutdownGrace.count() / 1000));
    return kExitOk;
  }
  const std::string home = OrqHome();
  const long pid = ReadLivePid(PidFile(home));
  if (!pid) {
    ::unlink(PidFile(home).c_str());
    Say("orq is not running");
    return kExitOk;
  }
  bool asked = true;
  try {
    Client client({DefaultEndpoint(home), {}, ""});
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
  return kExitOk;
}

int SubmitCommand(const SubmitOptions& o) {
  const int modes = !o.command.empty() + !o.file.empty() + o.sleep.has_value() + o.cpu.has_value() +
                    o.echo.has_value();
  if (modes != 1) {
    Say("orq submit: give exactly one of -- CMD ARGS..., --sleep SECONDS, --cpu MS, --echo VALUE "
        "or -f FILE");
    return kExitUsage;
  }
  if (o.result && !o.sleep) {
    Say("orq submit: --result goes with --sleep");
    return kExitUsage;
  }
  std::vector<TaskSpec> specs;
  if (!o.file.empty()) {
    auto loaded = LoadTaskFile(o.file);
    if (!loaded) return kExitUsage;
    specs = std::move(*loaded);
  } else {
    TaskSpec spec;
    if (!o.command.empty()) {
      spec.body = ShellTask{o.command};
    } else if (o.sleep) {
      spec.body = SleepTask{*o.sleep, o.result ? nlohmann::json(*o.result).dump() : ""};
    } else if (o.cpu) {
      spec.body = CpuTask{*o.cpu};
    } else {
      auto value = nlohmann::json::parse(*o.echo, nullptr, false);
      spec.body = EchoTask{(value.is_discarded() ? nlohmann::json(*o.echo) : value).dump()};
    }
    specs.push_back(std::move(spec));
  }
  std::optional<std::pair<double, double>> backoff;
  if (o.retry_backoff) {
    double base = 0, max = 0;
    char comma = 0;
    std::istringstream in(*o.retry_backoff);
    if (!(in >> base >> comma >> max) || comma != ',' || !in.eof()) {
      Say("orq submit: --retry-backoff takes BASE,MAX in seconds (e.g. 1,60), not '" +
          *o.retry_backoff + "'");
      return kExitUsage;
    }
    backoff = {base, max};
  }
  for (TaskSpec& spec : specs) {  // options given on the command line apply to every task
    if (o.delay) spec.delay = *o.delay;
    if (o.timeout) spec.timeout = *o.timeout;
    if (o.priority) spec.priority = *o.priority;
    if (o.attempts) spec.attempts = static_cast<uint32_t>(*o.attempts);
    if (o.retries) spec.retries = static_cast<uint32_t>(*o.retries);
    if (backoff) std::tie(spec.backoff_base, spec.backoff_max) = *backoff;
    if (auto error = ValidateSpec(spec)) {
      Say("orq submit: " + *error);
      return kExitUsage;
    }
  }
  Client client(FindBroker());
  try {
    std::printf("%s\n", FormatJobId(Submit(client, std::move(specs))).c_str());
  } catch (const std::invalid_argument& e) {
    Say(std::string("orq submit: ") + e.what());
    return kExitUsage;
  }
  return kExitOk;
}

int GatherCommand(const std::vector<std::string>& ids, bool json, std::optional<double> timeout) {
  for (const auto& id : ids) {
    if (!ParseId(id)) {
      Say("orq gather: '" + id + "' is not a job or task id (expected j7 or j7.2)");
      return kExitUsage;
    }
  }
  Client client(FindBroker());
  auto deadline = Clock::time_point::max();
  if (timeout)
    deadline = Clock::now() +
               std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*timeout));
  Tally tally;
  int code = GatherAndPrint(client, ids, json, deadline, tally);
  if (code == kExitTimeout)
    Say("orq gather: not finished after " + nlohmann::json(*timeout).dump() + " s");
  return code;
}

int StatusCommand(bool json) {
  Client client(FindBroker());
  Message reply = client.Request(StatusRequest{}, kRequestTimeout);
  auto* status = std::get_if<StatusReply>(&reply);
  if (!status) throw std::runtime_error("unexpected reply from the broker");
  if (json)
    std::printf("%s\n", StatusJson(*status).dump().c_str());
  else
    PrintStatus(*status, stdout);
  return kExitOk;
}

int ForgetCommand(const std::vector<std::string>& ids) {
  Client client(FindBroker());
  Message reply = client.Request(ForgetRequest{ids}, kRequestTimeout);
  if (auto* error = std::get_if<ErrorReply>(&reply)) {
    Say("orq forget: " + error->message);
    return kExitUsage;
  }
  auto* forgotten = std::get_if<ForgottenReply>(&reply);
  if (!forgotten) throw std::runtime_error("unexpected reply from the broker");
  std::printf("forgot %u job%s\n", forgotten->count, forgotten->count == 1 ? "" : "s");
  return kExitOk;
}

int CancelCommand(const std::vector<std::string>& ids) {
  Client client(FindBroker());
  Message reply = client.Request(CancelRequest{ids}, kRequestTimeout);
  if (auto* error = std::get_if<ErrorReply>(&reply)) {
    Say("orq cancel: " + error->message);
    return kExitUsage;
  }
  auto* cancelled = std::get_if<CancelledReply>(&reply);
  if (!cancelled) throw std::runtime_error("unexpected reply from the broker");
  std::printf("cancelled %u task%s\n", cancelled->count, cancelled->count == 1 ? "" : "s");
  return kExitOk;
}

}  // namespace orq

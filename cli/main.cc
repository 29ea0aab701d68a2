// orq: asyncio.gather for processes. One executable, one subcommand per verb.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include <unistd.h>

#include <filesystem>

#include "broker/broker.h"
#include "cli/access.h"
#include "cli/bench.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "common/errors.h"
#include "common/keys.h"
#include "common/protocol.h"
#include "common/paths.h"
#include "worker/worker.h"

using namespace orq;

int main(int argc, char** argv) {
  CLI::App app{"orq: submit tasks from the shell, gather their results; orq runs them across "
               "worker processes.",
               "orq"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "orq 0.1.0");
  app.fallthrough();  // `orq submit --access FILE ...` as well as `orq --access FILE submit ...`
  std::string access_file;
  app.add_option("--access", access_file,
                 "reach a broker over TCP with this access file (from 'orq access add')")
      ->envname("ORQ_ACCESS");

  RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "Run every task of FILE on a broker and workers started "
                                            "for this run; print results in order");
  run_cmd->add_option("file", run.file, "task file, JSON lines ('-' = stdin)")->required();
  run_cmd->add_option("-w,--workers", run.workers, "worker processes (default: cores)")
      ->check(CLI::PositiveNumber);
  run_cmd->add_option("-t,--threads", run.threads, "threads per worker pool (default: cores)")
      ->check(CLI::PositiveNumber);
  run_cmd->add_flag("--json", run.json, "one JSON object per task instead of text");
  run_cmd->add_flag("--no-journal", run.no_journal, "keep the run's results in memory only");

  int up_workers = -1, up_threads = 0;
  auto* up_cmd = app.add_subcommand("up", "Start the broker and workers in the background");
  up_cmd->add_option("-w,--workers", up_workers, "worker processes (default: cores)")
      ->check(CLI::NonNegativeNumber);
  up_cmd->add_option("-t,--threads", up_threads, "threads per worker pool (default: cores)")
      ->check(CLI::PositiveNumber);

  int up_heartbeat_ms = 1000;
  up_cmd->add_option("--heartbeat-ms", up_heartbeat_ms, "heartbeat interval (liveness is 3 of them)")
      ->check(CLI::Range(10, 60000));
  std::vector<std::string> up_listen;
  up_cmd->add_option("--listen", up_listen,
                     "also listen on tcp://HOST:PORT (always CURVE; see 'orq access')");

  auto* down_cmd = app.add_subcommand("down", "Stop the background broker and its workers");

  BrokerConfig broker;
  std::string broker_endpoint;
  std::vector<std::string> listen;
  int broker_workers = 0, broker_threads = 0, heartbeat_ms = 1000;
  auto* broker_cmd = app.add_subcommand("broker", "Run the broker in the foreground");
  broker_cmd->add_option("--endpoint", broker_endpoint,
                         "endpoint to bind (default: ipc://$ORQ_HOME/broker.ipc)");
  broker_cmd->add_option("--listen", listen,
                         "also listen on tcp://HOST:PORT, e.g. tcp://0.0.0.0:5555 (always CURVE: "
                         "only keys added with 'orq access add' get in)");
  std::string keys_dir;
  broker_cmd->add_option("--keys", keys_dir, "the keys directory (default $ORQ_HOME/keys)");
  broker_cmd->add_option("-w,--workers", broker_workers, "local workers to start and keep alive")
      ->check(CLI::NonNegativeNumber);
  broker_cmd->add_option("-t,--threads", broker_threads, "threads per local worker (default: cores)")
      ->check(CLI::PositiveNumber);
  broker_cmd->add_option("--heartbeat-ms", heartbeat_ms, "heartbeat interval")
      ->check(CLI::Range(10, 60000));
  std::string journal;
  bool no_journal = false;
  double retention_hours = 0;
  broker_cmd->add_option("--journal", journal,
                         "SQLite journal (default: $ORQ_HOME/journal.db with the default endpoint)");
  broker_cmd->add_flag("--no-journal", no_journal, "keep results in memory only");
  broker_cmd->add_option("--retention-hours", retention_hours,
                         "forget finished jobs this long after they finish (default: keep)")
      ->check(CLI::NonNegativeNumber);
  broker_cmd->add_option("--max-job-tasks", broker.max_tasks_per_job, "tasks one job may hold")
      ->check(CLI::PositiveNumber);
  broker_cmd->add_option("--max-message-bytes", broker.max_message_bytes,
                         "largest message a peer may send (default 256 MiB)")
      ->check(CLI::Range(size_t{1024}, kMaxMessageBytes));

  WorkerConfig worker;
  auto* worker_cmd = app.add_subcommand("worker", "Run a worker in the foreground");
  std::string connect;
  worker_cmd->add_option("--connect", connect,
                         "the local broker's ipc:// endpoint (a remote one: --access FILE)");
  worker_cmd->add_option("--workdir", worker.workdir,
                         "directory shell tasks run in (default: where the worker starts)")
      ->check(CLI::ExistingDirectory);
  worker_cmd->add_option("-t,--threads", worker.threads, "cpu threads (default: cores)")
      ->check(CLI::PositiveNumber);
  worker_cmd->add_option("--slots", worker.async_slots, "sleep/echo tasks at once")
      ->check(CLI::PositiveNumber);
  worker_cmd->add_option("--shell-slots", worker.shell_slots, "shell tasks at once (default: threads)")
      ->check(CLI::PositiveNumber);
  worker_cmd->add_flag("--supervised", worker.supervised,
                       "exit when the broker is gone instead of reconnecting");
  worker_cmd->add_option("--heartbeat-ms", heartbeat_ms, "heartbeat interval")
      ->check(CLI::Range(10, 60000));

  SubmitOptions submit;
  auto* submit_cmd = app.add_subcommand("submit", "Submit a job; prints its id once accepted");
  submit_cmd->add_option("command", submit.command, "a shell task: -- CMD ARGS...");
  submit_cmd->add_option("-f,--file", submit.file, "every task of a task file ('-' = stdin)");
  submit_cmd->add_option("--sleep", submit.sleep, "a sleep task of SECONDS")
      ->check(CLI::NonNegativeNumber);
  submit_cmd->add_option("--result", submit.result, "the sleep task's result");
  submit_cmd->add_option("--cpu", submit.cpu, "a cpu task of MS milliseconds")
      ->check(CLI::NonNegativeNumber);
  submit_cmd->add_option("--echo", submit.echo, "an echo task returning VALUE (JSON or text)");
  submit_cmd->add_option("--delay", submit.delay, "seconds before the task is eligible")
      ->check(CLI::NonNegativeNumber);
  submit_cmd->add_option("--timeout", submit.timeout, "seconds the task may run")
      ->check(CLI::PositiveNumber);
  submit_cmd->add_option("--priority", submit.priority, "higher runs first (default 0)");
  submit_cmd->add_option("--attempts", submit.attempts,
                         "executions that may be lost with their worker (default 3)")
      ->check(CLI::Range(1, 1000000));
  submit_cmd->add_option("--retries", submit.retries,
                         "re-runs after the task fails on its own (default 0)")
      ->check(CLI::Range(0, 1000000));
  submit_cmd->add_option("--retry-backoff", submit.retry_backoff,
                         "BASE,MAX seconds of exponential backoff between retries (default 1,60)");

  std::vector<std::string> gather_ids;
  bool gather_json = false;
  std::optional<double> gather_timeout;
  auto* gather_cmd = app.add_subcommand("gather", "Wait for jobs or tasks; print results in order");
  gather_cmd->add_option("ids", gather_ids, "job ids (j7) or task ids (j7.2)")->required();
  gather_cmd->add_flag("--json", gather_json, "one JSON object per task");
  gather_cmd->add_option("--timeout", gather_timeout, "give up after SECONDS (exit 124)")
      ->check(CLI::NonNegativeNumber);

  bool status_json = false;
  auto* status_cmd = app.add_subcommand("status", "Show the broker, workers and task counts");
  status_cmd->add_flag("--json", status_json, "as a JSON object");

  std::vector<std::string> cancel_ids;
  auto* cancel_cmd = app.add_subcommand("cancel", "Cancel tasks not yet finished");
  cancel_cmd->add_option("ids", cancel_ids, "job ids (j7) or task ids (j7.2)")->required();

  BenchOptions bench;
  auto* bench_cmd = app.add_subcommand("bench", "Run the performance workloads and print figures");
  bench_cmd->add_option("workloads", bench.workloads,
                        "noop, sleep, shell, cpu, cold, latency, million, tcp (default: all)");
  bench_cmd->add_option("-w,--workers", bench.workers, "worker processes (default 2)")
      ->check(CLI::PositiveNumber);
  bench_cmd->add_option("-t,--threads", bench.threads, "threads per worker (default: cores)")
      ->check(CLI::PositiveNumber);
  bench_cmd->add_flag("--json", bench.json, "one JSON object per workload");

  AccessOptions access;
  auto* access_cmd = AddAccessCommand(app, access);

  std::vector<std::string> forget_ids;
  auto* forget_cmd = app.add_subcommand("forget", "Remove finished jobs and their results");
  forget_cmd->add_option("ids", forget_ids, "job ids (j7)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  auto cores = [] { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); };
  if (auto problem = CheckRunningLibzmq()) {
    std::fprintf(stderr, "orq: %s\n", problem->c_str());
    return kExitUnreachable;
  }
  try {
    if (!access_file.empty()) UseAccessFile(access_file);
    if (*access_cmd) return AccessCommand(access);
    if (*run_cmd) return RunCommand(run);
    if (*up_cmd) return UpCommand(up_workers, up_threads, up_heartbeat_ms, up_listen);
    if (*down_cmd) return DownCommand();
    if (*submit_cmd) return SubmitCommand(submit);
    if (*gather_cmd) return GatherCommand(gather_ids, gather_json, gather_timeout);
    if (*status_cmd) return StatusCommand(status_json);
    if (*cancel_cmd) return CancelCommand(cancel_ids);
    if (*forget_cmd) return ForgetCommand(forget_ids);
    if (*bench_cmd) return BenchCommand(bench);
    if (*broker_cmd) {
      const std::string home = OrqHome();
      if (!broker_endpoint.empty() && broker_endpoint.rfind("ipc://", 0) != 0)
        throw UsageError("--endpoint must be an ipc:// endpoint, not '" + broker_endpoint +
                         "'; TCP goes through --listen, which is always CURVE-encrypted");
      for (const auto& e : listen) {
        if (e.rfind("tcp://", 0) != 0)
          throw UsageError("--listen takes tcp://HOST:PORT, not '" + e + "'");
      }
      if (broker_endpoint.empty()) {
        if (long pid = ReadLivePid(PidFile(home))) {
          std::fprintf(stderr, "orq broker: a broker is already running in %s (pid %ld)\n",
                       home.c_str(), pid);
          return kExitUsage;
        }
        broker_endpoint = DefaultEndpoint(home);
        broker.pid_file = PidFile(home);
        if (journal.empty()) journal = home + "/journal.db";
      }
      if (!no_journal) broker.journal = journal;
      broker.retention = std::chrono::seconds(static_cast<int64_t>(retention_hours * 3600));
      broker.endpoints = {broker_endpoint};
      broker.listen = listen;
      if (!listen.empty()) broker.keys_dir = keys_dir.empty() ? KeysDir(home) : keys_dir;
      broker.workers = broker_workers;
      broker.threads = broker_threads > 0 ? broker_threads : cores();
      broker.heartbeat = std::chrono::milliseconds(heartbeat_ms);
      return RunBroker(broker);
    }
    if (*worker_cmd) {
      if (!connect.empty() == !access_file.empty())
        throw UsageError("orq worker: give --connect ipc://... (a broker on this host) or --access "
                         "FILE (a broker over TCP), not both or neither");
      if (!connect.empty()) {
        if (connect.rfind("ipc://", 0) != 0)
          throw UsageError("--connect takes the broker's ipc:// endpoint, not '" + connect +
                           "'; over TCP a worker needs --access FILE from 'orq access add --worker'");
        worker.endpoints = {connect};
      } else {
        AccessFile file = ReadAccessFile(access_file);
        if (file.role != Role::kWorker)
          throw UsageError(access_file + " is a " + std::string(RoleName(file.role)) +
                           " access file; a worker needs one from 'orq access add --worker FILE'");
        worker.endpoints = file.endpoints;
        worker.curve = CurveClient{file.broker_public_key, file.keys.public_key, file.keys.secret_key};
      }
      if (!worker.workdir.empty()) worker.workdir = std::filesystem::absolute(worker.workdir);
      if (worker.threads <= 0) worker.threads = cores();
      worker.heartbeat = std::chrono::milliseconds(heartbeat_ms);
      return RunWorker(worker);
    }
  } catch (const UsageError& e) {
    std::fprintf(stderr, "orq: %s\n", e.what());
    return kExitUsage;
  } catch (const Refused& e) {
    std::fprintf(stderr, "orq: %s\n", e.what());
    return kExitRefused;
  } catch (const Unreachable& e) {
    std::fprintf(stderr, "orq: %s\n", e.what());
    return kExitUnreachable;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "orq: %s\n", e.what());
    return kExitUnreachable;
  }
  return kExitUsage;
}

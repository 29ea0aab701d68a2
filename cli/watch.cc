// `orq events` (what happens on the broker, as it happens: for scripts) and `orq dashboard` (where
// the running broker's web dashboard is).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>

#include "cli/format.h"
#include "cli/verbs.h"
#include "client/connection.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/paths.h"
#include "common/text.h"

namespace orq {
namespace {

volatile std::sig_atomic_t interrupted = 0;
extern "C" void OnEventsInterrupt(int) { interrupted = 1; }

// How long one request waits for a new event: the broker answers as soon as one comes.
constexpr uint32_t kFollowWaitMs = 1000;

std::string EventLine(const Event& e, double wall_offset) {
  const double wall = e.at + wall_offset;
  const std::time_t seconds = static_cast<std::time_t>(wall);
  char clock[32];
  std::strftime(clock, sizeof clock, "%H:%M:%S", std::localtime(&seconds));
  std::string line = std::string(clock) + "." +
                     std::to_string(static_cast<int>((wall - static_cast<double>(seconds)) * 10)) +
                     " " + std::string(EventKindName(e.kind));
  switch (e.kind) {
    case Event::Kind::kJobSubmitted:
      return line + " " + FormatJobId(e.task.job) + " (" + std::to_string(e.count) + " tasks)";
    case Event::Kind::kTaskStarted:
      return line + " " + FormatTaskId(e.task) + " " + std::string(KindNameAt(e.task_kind)) +
             " attempt " + std::to_string(e.count) + " on worker " + std::to_string(e.worker);
    case Event::Kind::kTaskEnded:
      line += " " + FormatTaskId(e.task) + " " + std::string(StatusName(e.status));
      if (e.worker) line += " on worker " + std::to_string(e.worker);
      return line;
    case Event::Kind::kWorkerJoined:
    case Event::Kind::kWorkerLeft:
      line += " " + std::to_string(e.worker) + " on " + EscapeControls(e.host);
      if (e.status == TaskStatus::kWorkerLost) line += " (lost)";
      return line;
  }
  return line;
}

ExitCode EventsVerb(bool follow, bool json) {
  Connection client(FindBroker());
  std::signal(SIGINT, OnEventsInterrupt);
  std::signal(SIGTERM, OnEventsInterrupt);
  uint64_t after = 0;
  bool first = true;
  while (!interrupted) {
    const auto reply = Expect<EventsReply>(
        client.Request(EventsRequest{after, follow && !first ? kFollowWaitMs : 0}, kRequestTimeout),
        "orq events");
    if (reply.last < after) after = 0;  // the broker restarted: its numbers start again
    if (reply.first > after + 1 && !first)
      Say("orq events: " + std::to_string(reply.first - after - 1) +
          " events were missed (the broker keeps the last " + std::to_string(kEventsKept) + ")");
    const double offset = WallNow() - reply.now;
    for (const Event& e : reply.events) {
      std::printf("%s\n",
                  json ? JsonLine(EventJson(e, offset)).c_str() : EventLine(e, offset).c_str());
      after = e.seq;
    }
    std::fflush(stdout);
    first = false;
    if (reply.events.empty() && reply.last > after) after = reply.last;
    if (!follow && reply.events.size() < kMaxEventsPerReply) break;
  }
  return ExitCode::kOk;
}

ExitCode DashboardVerb(bool open) {
  if (UsingAccessFile())
    throw UsageError(
        "orq dashboard names the dashboard of the broker on this host; for a remote one, tunnel "
        "to its host (ssh -L 8080:127.0.0.1:8080 HOST) and open http://127.0.0.1:8080/");
  const std::string home = OrqHome();
  if (!ReadLivePid(PidFile(home)))
    throw Unreachable("orq is not running (no broker in " + home +
                      "); start it with 'orq up --http 8080'");
  std::ifstream file(DashboardFile(home));
  std::string url;
  if (!file || !std::getline(file, url) || url.empty())
    throw Unreachable("the broker in " + home +
                      " serves no dashboard; start it with 'orq up --http 8080' (after orq down)");
  std::printf("%s\n", url.c_str());
  std::fflush(stdout);
  if (!open) return ExitCode::kOk;
  const int code = std::system(("xdg-open '" + url + "' >/dev/null 2>&1").c_str());
  if (code != 0) Say("orq dashboard: could not open a browser here (xdg-open); open the URL above");
  return ExitCode::kOk;
}

}  // namespace

Verb RegisterDashboard(CLI::App& app) {
  auto open = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("dashboard",
                                 "Print the login URL of the running broker's web dashboard, "
                                 "with its token (orq up --http PORT)");
  cmd->add_flag("--open", *open, "also open it in a browser (xdg-open)");
  return {cmd, [open] { return DashboardVerb(*open); }};
}

Verb RegisterEvents(CLI::App& app) {
  struct Options {
    bool follow = false, json = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "events",
      "Print what happens on the broker: jobs submitted, tasks started and ended, "
      "workers joined and gone");
  cmd->add_flag("-f,--follow", o->follow, "go on printing events as they happen, until Ctrl-C");
  cmd->add_flag("--json", o->json, "one JSON object per event");
  return {cmd, [o] { return EventsVerb(o->follow, o->json); }};
}

}  // namespace orq

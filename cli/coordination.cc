// `orq limit` (cluster-wide semaphores and rate limits) and `orq explain` (why a task does not run
// yet): the verbs of issue 10's coordination, against the running broker.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>

#include "broker/core/limits.h"
#include "cli/format.h"
#include "cli/verbs.h"
#include "client/connection.h"
#include "common/ids.h"
#include "common/words.h"

namespace orq {
namespace {

struct LimitOptions {
  std::string name;
  int max = 0;
  std::string rate;  // "10/s", "10/s,burst=5"
  int burst = 0;
  bool json = false;
};

LimitSpec ParseLimit(const LimitOptions& o) {
  LimitSpec spec{o.name, static_cast<uint32_t>(o.max), 0, static_cast<uint32_t>(o.burst)};
  if (!o.rate.empty()) {
    std::string rate = o.rate;
    if (const size_t comma = rate.find(','); comma != std::string::npos) {
      const std::string burst = rate.substr(comma + 1);
      char* end = nullptr;
      const long n = burst.rfind("burst=", 0) == 0 ? std::strtol(burst.c_str() + 6, &end, 10) : 0;
      if (n < 1 || n > 1000000 || *end)
        throw UsageError("--rate " + o.rate + ": write the burst as RATE,burst=N (N from 1)");
      spec.burst = static_cast<uint32_t>(n);
      rate.resize(comma);
    }
    auto per_second = ParseRate(rate);
    if (!per_second)
      throw UsageError("--rate " + o.rate + ": write it as N/s, N/m or N/h (e.g. 10/s)");
    spec.rate = *per_second;
  }
  if (spec.max == 0 && spec.rate == 0)
    throw UsageError("orq limit set " + o.name +
                     ": give how many may run at once (orq limit set NAME N), a --rate, or both");
  return spec;
}

void PrintLimits(const std::vector<GateInfo>& limits, bool json) {
  if (json) {
    for (const GateInfo& l : limits) std::printf("%s\n", JsonLine(LimitJson(l)).c_str());
    return;
  }
  if (limits.empty()) {
    std::printf("no limits (orq limit set NAME N)\n");
    return;
  }
  for (const GateInfo& l : limits) std::printf("%s\n", LimitLine(l).c_str());
}

ExitCode LimitVerb(LimitRequest request, bool json) {
  Connection client(FindBroker());
  const auto reply = Expect<LimitsReply>(client.Request(request, kRequestTimeout), "orq limit");
  if (request.op == LimitRequest::Op::kList || json) {
    PrintLimits(reply.limits, json);
  } else if (request.op == LimitRequest::Op::kRemove) {
    std::printf("removed limit %s\n", request.limit.name.c_str());
  } else {
    for (const GateInfo& l : reply.limits) {
      if (l.name == request.limit.name) std::printf("%s\n", LimitLine(l).c_str());
    }
  }
  return ExitCode::kOk;
}

ExitCode ExplainVerb(const std::string& task, bool json) {
  Connection client(FindBroker());
  const auto reply = Expect<ExplainedReply>(
      client.Request(ExplainRequest{ToTask(task)}, kRequestTimeout), "orq explain");
  // A delayed task's wall-clock time, which only this side knows.
  std::string at;
  if (reply.eligible_in >= 0) {
    const std::time_t when = std::time(nullptr) + static_cast<std::time_t>(reply.eligible_in + 0.5);
    char text[32];
    std::strftime(text, sizeof text, "%H:%M:%S", std::localtime(&when));
    at = text;
  }
  const std::string state(reply.status ? StatusName(*reply.status) : StateName(reply.state));
  std::vector<std::string> reasons;
  for (const Reason& reason : reply.reasons) reasons.push_back(Sentence(reason));
  if (json) {
    nlohmann::json j{{"task", task}, {"state", state}, {"reasons", reasons}};
    if (!at.empty()) j["eligible_in"] = reply.eligible_in, j["eligible_at"] = at;
    std::printf("%s\n", JsonLine(j).c_str());
    return ExitCode::kOk;
  }
  std::printf("%s: %s%s\n", task.c_str(), state.c_str(),
              at.empty() ? "" : (" until " + at).c_str());
  for (const std::string& reason : reasons) std::printf("  %s\n", reason.c_str());
  return ExitCode::kOk;
}

}  // namespace

Verb RegisterLimit(CLI::App& app) {
  auto o = std::make_shared<LimitOptions>();
  auto op = std::make_shared<LimitRequest::Op>(LimitRequest::Op::kList);
  auto* cmd = app.add_subcommand(
      "limit", "Cluster-wide limits: at most N tasks taking one run at once, or a start rate");
  cmd->require_subcommand(1);
  auto* set = cmd->add_subcommand("set", "Set a limit (tasks take it with --limit NAME)");
  set->add_option("name", o->name, "its name")->required();
  set->add_option("max", o->max, "how many tasks taking it may run at once")
      ->check(CLI::Range(1, 1000000));
  set->add_option("--rate", o->rate, "at most RATE starts: N/s, N/m or N/h, and ',burst=N'");
  set->add_option("--burst", o->burst, "starts allowed at once after a quiet spell (default 1)")
      ->check(CLI::Range(1, 1000000));
  set->add_flag("--json", o->json, "print every limit as JSON afterwards");
  set->callback([op] { *op = LimitRequest::Op::kSet; });
  auto* list = cmd->add_subcommand("list", "Every limit: how many hold it and how many wait");
  list->add_flag("--json", o->json, "one JSON object per limit");
  auto* rm = cmd->add_subcommand("rm", "Remove a limit: its tasks are no longer limited");
  rm->add_option("name", o->name, "its name")->required();
  rm->callback([op] { *op = LimitRequest::Op::kRemove; });
  return {cmd, [o, op] {
            LimitRequest request;
            request.op = *op;
            request.limit.name = o->name;
            if (*op == LimitRequest::Op::kSet) request.limit = ParseLimit(*o);
            return LimitVerb(std::move(request), o->json);
          }};
}

Verb RegisterExplain(CLI::App& app) {
  auto task = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand(
      "explain", "Why a task is not running yet: its dependencies, locks, limits, queue");
  cmd->add_option("task", *task, "the task (j7.2)")->required()->check(TaskIdCheck());
  cmd->add_flag("--json", *json, "as one JSON object");
  return {cmd, [task, json] { return ExplainVerb(*task, *json); }};
}

}  // namespace orq

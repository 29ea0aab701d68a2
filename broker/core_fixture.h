// The fixture of the broker core's unit tests: a BrokerCore driven by a fake clock, with helpers
// to submit, register workers and pick out what was sent to whom.
#pragma once

#include <gtest/gtest.h>

#include "broker/broker_core.h"
#include "common/ids.h"
#include "common/words.h"

namespace orq {

using std::chrono::milliseconds;

inline TaskSpec Sleep(double seconds, int priority = 0, double delay = 0) {
  TaskSpec s;
  s.body = SleepTask{seconds, ""};
  s.priority = priority;
  s.delay = delay;
  return s;
}

// Echo tasks whose values count from `first`.
inline std::vector<TaskSpec> Echoes(uint32_t first, uint32_t n) {
  std::vector<TaskSpec> specs(n);
  for (uint32_t i = 0; i < n; ++i) specs[i].body = EchoTask{std::to_string(first + i)};
  return specs;
}

inline TaskSpec Cpu(double ms) {
  TaskSpec s;
  s.body = CpuTask{ms};
  return s;
}

// Drives a BrokerCore with a fake clock and collects what it sends, per peer.
class BrokerCoreTest : public ::testing::Test {
 protected:
  BrokerCoreTest()
      : core_(BrokerOptions{.heartbeat_interval = milliseconds(1000),
                            .liveness = 3,
                            .broker_pid = 1,
                            .endpoint = "ipc://test"},
              store_, journal_) {}

  std::vector<Outgoing> Send(const std::string& from, Message m) {
    std::vector<Outgoing> out;
    core_.Handle(from, std::move(m), now_, Role::kLocal);
    core_.DrainOutbox(out);
    return out;
  }
  std::vector<Outgoing> Advance(milliseconds d) {
    now_ += d;
    std::vector<Outgoing> out;
    core_.Tick(now_);
    core_.DrainOutbox(out);
    return out;
  }
  // Why task "j1.4" does not run, as `orq explain` says it.
  std::vector<std::string> Explain(const std::string& task) {
    const auto ref = ParseId(task);
    for (auto& o : Send("client", ExplainRequest{{ref->job, ref->index.value()}})) {
      if (auto* e = std::get_if<ExplainedReply>(&o.message)) {
        std::vector<std::string> said;  // as `orq explain` says them
        for (const Reason& reason : e->reasons) said.push_back(Sentence(reason));
        return said;
      }
    }
    return {"no reply"};
  }
  uint64_t SubmitJob(std::vector<TaskSpec> specs) {
    auto out = Send("client", SubmitRequest{std::move(specs)});
    for (auto& o : out) {
      if (auto* s = std::get_if<SubmittedReply>(&o.message)) return s->job;
    }
    ADD_FAILURE() << "no SubmittedReply";
    return 0;
  }
  std::vector<Outgoing> Register(const std::string& worker, Slots slots, int64_t pid = 100) {
    return Send(worker, ReadyMessage{pid, 1, slots});
  }
  // All tasks sent to `peer` in `out`.
  static std::vector<Assignment> TasksTo(const std::vector<Outgoing>& out,
                                         const std::string& peer) {
    std::vector<Assignment> tasks;
    for (const auto& o : out) {
      if (o.to != peer) continue;
      if (auto* t = std::get_if<TasksMessage>(&o.message))
        tasks.insert(tasks.end(), t->tasks.begin(), t->tasks.end());
    }
    return tasks;
  }
  static TaskOutcome Ok(const Assignment& a, std::string result) {
    TaskOutcome o;
    o.id = a.id;
    o.attempt = a.attempt;
    o.result = std::move(result);
    return o;
  }
  static const ResultsReply* ResultsFor(const std::vector<Outgoing>& out, const std::string& peer) {
    for (const auto& o : out) {
      if (o.to == peer) {
        if (auto* r = std::get_if<ResultsReply>(&o.message)) return r;
      }
    }
    return nullptr;
  }

  MemoryStore store_;
  NullJournal journal_;
  BrokerCore core_;
  SteadyTime now_{std::chrono::seconds(1000)};
};

}  // namespace orq

// The fixture of the broker core's unit tests: a BrokerCore driven by a fake clock, with helpers
// to submit, register workers and pick out what was sent to whom.
#pragma once

#include <gtest/gtest.h>

#include "broker/core/broker_core.h"
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

// `a`, then `b`.
inline std::vector<Outgoing> Concat(std::vector<Outgoing> a, std::vector<Outgoing> b) {
  if (a.empty()) return b;
  for (Outgoing& o : b) a.push_back(std::move(o));
  return a;
}

// Sends `m` from `from` to `core` as the broker process's route does (BrokerShell::Route):
// Admit, then the message to its owner in the core. The messages other owners keep (the
// allow-list, local workers, allocation queues, submit parts) are not the core's to take.
inline void Deliver(BrokerCore& core, const Peer& from, Message m, SteadyTime now) {
  if (!core.Admit(from, CommandOf(m))) return;
  std::visit(
      [&]<typename M>(M& message) {
        if constexpr (BrokerCore::Owns<M>) {
          core.Handle(from, std::move(message), now);
        } else if constexpr (std::is_same_v<M, SubmitRequest>) {
          JobBuilder job(std::exchange(message.tasks, {}));
          core.Submit(from, message, std::move(job), now);
        } else if constexpr (std::is_same_v<M, StatusRequest>) {
          core.Status(from, message, {}, now);
        } else {
          ADD_FAILURE() << "the core was sent a message it does not own (command "
                        << static_cast<int>(M::kCommand) << ")";
        }
      },
      m);
}

// Drives a BrokerCore with a fake clock and collects what it sends, per peer.
class BrokerCoreTest : public ::testing::Test {
 protected:
  BrokerCoreTest()
      : core_(BrokerOptions{.heartbeat_interval = milliseconds(1000),
                            .liveness = 3,
                            .broker_pid = 1,
                            .endpoint = "ipc://test"},
              store_, journal_, outbox_) {}

  // What `from` (of `role`, with `key`) sending `m` made the core send.
  std::vector<Outgoing> Send(const std::string& from, Message m, Role role = Role::kLocal,
                             const std::string& key = {}) {
    Deliver(core_, Peer{from, role, key}, std::move(m), now_);
    return outbox_.Take();
  }
  std::vector<Outgoing> Advance(milliseconds d) {
    now_ += d;
    core_.Tick(now_);
    return outbox_.Take();
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
  Outbox outbox_;
  BrokerCore core_;
  SteadyTime now_{std::chrono::seconds(1000)};
};

}  // namespace orq

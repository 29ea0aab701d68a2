// A randomized model test of the broker's core (issue 10): thousands of random schedules of
// submits (random dependencies, limits, rates and locks), completions, failures, retries, cancels,
// worker deaths and broker restarts from the journal, on a fake clock. After every step it checks
// what the core sent against the rules:
//   - a write lock never overlaps any other holder; a limit is never exceeded;
//   - a rate is never exceeded over any window (at most burst + rate * window starts);
//   - no task starts before its dependencies ended as it needs (ok, or any way for after_any);
//   - no task starts again once it ended, and every task ends in exactly one final state;
//   - nothing waits forever once its cause is gone: after the schedule, with workers, time and
//     every running task ending, every task ends.
//   - a worker's resource units go to one running task at a time, and only to tasks of queues it
//     serves.
// Seeds: ORQ_MODEL_SEEDS (how many, default 300) from ORQ_MODEL_SEED (default 1);
// scripts/model.sh runs more.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "broker/core/broker_core.h"
#include "broker/core/core_fixture.h"
#include "broker/sqlite_journal.h"
#include "common/ids.h"
#include "common/words.h"

namespace orq {
namespace {

using std::chrono::milliseconds;

std::vector<std::string> Split(const std::string& list) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    if (comma > start) items.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return items;
}

constexpr int kLimitMax = 2;    // limit "n": at most 2 at once
constexpr double kRate = 4;     // limit "r": 4 starts a second,
constexpr uint32_t kBurst = 2;  // in bursts of 2

struct Running {
  std::string worker;
  uint32_t attempt;
  std::string gpus;  // the units it was given: ORQ_RESOURCE_GPU
};
struct WorkerModel {
  int64_t pid = 0;
  uint32_t gpus = 0;    // units it offers
  bool only_q = false;  // serves queue "q" alone (else every queue)
};

class Model {
 public:
  Model(uint64_t seed, const std::string& dir)
      : random_(seed), path_(dir + "/journal-" + std::to_string(seed) + ".db") {
    std::filesystem::remove(path_);
    Start();
    Step([&](std::vector<Outgoing>& out) {
      Deliver(*core_, Peer{"c", Role::kLocal, {}},
              LimitRequest{LimitRequest::Op::kSet, {"n", kLimitMax}}, now_);
      out = Concat(std::move(out), outbox_.Take());
      Deliver(*core_, Peer{"c", Role::kLocal, {}},
              LimitRequest{LimitRequest::Op::kSet, {"r", 0, kRate, kBurst}}, now_);
      out = Concat(std::move(out), outbox_.Take());
    });
    for (int i = 0; i < 2; ++i) AddWorker();
  }
  ~Model() {
    core_.reset();
    journal_.reset();
    std::filesystem::remove(path_);
    std::filesystem::remove(path_ + "-wal");
    std::filesystem::remove(path_ + "-shm");
  }

  // One random event. Returns the first broken rule, or "".
  std::string RandomStep() {
    const int pick = Uniform(0, 99);
    if (pick < 25) return Submit();
    if (pick < 55) return EndOne();
    if (pick < 65) return Advance(milliseconds(Uniform(1, 400)));
    if (pick < 72) return CancelOne();
    if (pick < 77) return KillWorker();
    if (pick < 80) return Restart();
    if (pick < 84) return AddWorker();
    return EndOne();
  }

  // Ends everything: workers, time, and every running task ending ok, until all tasks ended.
  std::string Drain() {
    AddWorker(/*any=*/true);
    for (int round = 0; round < 2000; ++round) {
      if (Unfinished() == 0) return "";
      std::string broken = running_.empty() ? Advance(milliseconds(100)) : EndOne(/*ok=*/true);
      if (!broken.empty()) return broken;
    }
    std::string stuck;
    for (const auto& [id, spec] : specs_) {
      if (!store().Find(id)) {
        stuck += " " + FormatTaskId(id);
        for (auto& o : Explain(id)) stuck += " [" + o + "]";
      }
    }
    return "tasks wait forever:" + stuck;
  }

  const std::string& log() const { return log_; }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(random_); }
  // The journal is the store, as in the broker: outcomes are read back from it (uncommitted ones
  // from memory, the rest from SQLite), and a restart keeps none in memory.
  Store& store() { return *journal_; }

  void Start() {
    core_.reset();
    journal_.reset();  // it holds the journal's lock
    journal_ = SqliteJournal::Open(path_);
    BrokerOptions options;
    options.heartbeat_interval = std::chrono::hours(1);  // no safety net: Unpark must do it all
    options.seed = 7;
    core_ = std::make_unique<BrokerCore>(options, *journal_, *journal_, outbox_);
  }

  // Runs `f` as one loop turn of the broker's shell, then takes in what it sent.
  template <typename F> std::string Step(F&& f) {
    std::vector<Outgoing> out;
    f(out);
    EXPECT_TRUE(journal_->Commit().ok());
    return Take(out);
  }

  std::string Take(std::vector<Outgoing>& out) {
    for (Outgoing& o : out) {
      if (auto* tasks = std::get_if<TasksMessage>(&o.message)) {
        for (const Assignment& a : tasks->tasks) {
          if (auto broken = Started(o.to, a); !broken.empty()) return broken;
        }
      } else if (auto* cancel = std::get_if<CancelTasksMessage>(&o.message)) {
        for (TaskId id : cancel->ids) to_cancel_.push_back({o.to, id});
      }
    }
    return Check();
  }

  std::string Started(const std::string& worker, const Assignment& a) {
    const std::string id = FormatTaskId(a.id);
    log_ += " start " + id + "@" + worker;
    if (store().Find(a.id)) return id + " started after it ended";
    if (running_.count(a.id)) return id + " started twice at once";
    for (const Dependency& d : a.spec.need().after) {
      const uint64_t job = d.job == Dependency::kSameJob ? a.id.job : d.job;
      std::vector<TaskId> deps;
      if (d.whole_job) {
        for (const auto& [other, spec] : specs_) {
          if (other.job == job) deps.push_back(other);
        }
      } else {
        deps.push_back({job, d.index});
      }
      for (TaskId dep : deps) {
        const auto o = store().Find(dep);
        if (!o) return id + " started before its dependency " + FormatTaskId(dep) + " ended";
        if (!d.any && o->status != TaskStatus::kOk)
          return id + " started though its dependency " + FormatTaskId(dep) + " ended " +
                 std::string(StatusName(o->status));
      }
    }
    std::string gpus;
    for (const std::string& e : a.env) {
      if (e.rfind("ORQ_RESOURCE_GPU=", 0) == 0) gpus = e.substr(17);
    }
    const Needs& n = a.spec.need();
    const WorkerModel& w = workers_.at(worker);
    if (w.only_q && n.queue != "q") return id + " of queue '" + n.queue + "' went to " + worker;
    uint32_t wanted = 0;
    for (const ResourceNeed& r : n.resources) wanted += r.name == "gpu" ? r.amount : 0;
    if (std::count(gpus.begin(), gpus.end(), ',') + (gpus.empty() ? 0 : 1) != wanted)
      return id + " wanted " + std::to_string(wanted) + " gpus and got '" + gpus + "'";
    for (const auto& [other, run] : running_) {
      if (run.worker != worker || run.gpus.empty() || gpus.empty()) continue;
      for (const std::string& unit : Split(gpus)) {
        for (const std::string& held : Split(run.gpus)) {
          if (unit == held)
            return id + " got gpu " + unit + " of " + worker + ", held by " + FormatTaskId(other);
        }
      }
    }
    for (const std::string& unit : Split(gpus)) {
      if (std::stoul(unit) >= w.gpus) return id + " got gpu " + unit + " of " + worker;
    }
    running_[a.id] = {worker, a.attempt, gpus};
    for (const std::string& limit : a.spec.need().limits) {
      if (limit == "r") rate_starts_.push_back(now_);
    }
    return "";
  }

  std::string Check() {
    std::map<std::string, int> readers, writers, limits;
    for (const auto& [id, run] : running_) {
      const Needs& n = specs_.at(id).need();
      for (const LockNeed& l : n.locks) ++(l.mode == LockMode::kWrite ? writers : readers)[l.name];
      for (const std::string& l : n.limits) ++limits[l];
    }
    for (const auto& [lock, w] : writers) {
      if (w > 1 || (w == 1 && readers[lock] > 0))
        return "lock " + lock + " has " + std::to_string(w) + " writers and " +
               std::to_string(readers[lock]) + " readers";
    }
    if (limits["n"] > kLimitMax) return "limit n exceeded: " + std::to_string(limits["n"]);
    if (const auto [running, held] = core_->running_and_held(); running != held)
      return std::to_string(running) + " tasks run but " + std::to_string(held) +
             " hold their spec";
    for (size_t i = 0; i < rate_starts_.size(); ++i) {
      for (size_t j = i; j < rate_starts_.size(); ++j) {
        const double window =
            std::chrono::duration<double>(rate_starts_[j] - rate_starts_[i]).count();
        if (static_cast<double>(j - i + 1) > kBurst + kRate * window + 1e-9)
          return "rate r exceeded: " + std::to_string(j - i + 1) + " starts in " +
                 std::to_string(window) + " s";
      }
    }
    return "";
  }

  TaskSpec RandomSpec(uint64_t job, uint32_t index) {
    TaskSpec spec;
    spec.body = SleepTask{1, ""};
    spec.priority = Uniform(0, 2);
    if (Uniform(0, 4) == 0) spec.retries = 1, spec.backoff_base = 0.1, spec.backoff_max = 0.2;
    if (Uniform(0, 9) == 0) spec.delay = 0.3;
    Needs n;
    if (index > 0 && Uniform(0, 2) == 0)
      n.after.push_back({Dependency::kSameJob, static_cast<uint32_t>(Uniform(0, index - 1)), false,
                         Uniform(0, 3) == 0});
    if (job > 1 && Uniform(0, 4) == 0) {
      const uint64_t other = static_cast<uint64_t>(Uniform(1, static_cast<int>(job - 1)));
      if (job_sizes_.count(other))
        n.after.push_back({other, static_cast<uint32_t>(Uniform(0, job_sizes_[other] - 1)),
                           Uniform(0, 2) == 0, Uniform(0, 3) == 0});
    }
    if (Uniform(0, 2) == 0) n.limits.push_back("n");
    if (Uniform(0, 4) == 0) n.limits.push_back("r");
    if (Uniform(0, 4) == 0) n.resources.push_back({"gpu", static_cast<uint32_t>(Uniform(1, 2))});
    if (Uniform(0, 4) == 0) n.queue = "q";
    for (const char* lock : {"a", "b"}) {
      if (Uniform(0, 2) == 0)
        n.locks.push_back({lock, Uniform(0, 2) == 0 ? LockMode::kWrite : LockMode::kRead});
    }
    if (n != Needs{}) spec.needs = MakeNeeds(std::move(n));
    return spec;
  }

  std::string Submit() {
    const uint64_t job = next_job_;
    const int size = Uniform(1, 6);
    std::vector<TaskSpec> specs;
    for (int i = 0; i < size; ++i) specs.push_back(RandomSpec(job, static_cast<uint32_t>(i)));
    log_ += " submit j" + std::to_string(job) + "x" + std::to_string(size);
    for (int i = 0; i < size; ++i) specs_[{job, static_cast<uint32_t>(i)}] = specs[i];
    job_sizes_[job] = size;
    ++next_job_;
    bool accepted = false;
    std::string broken = Step([&](std::vector<Outgoing>& out) {
      Deliver(*core_, Peer{"c", Role::kLocal, {}}, SubmitRequest{specs}, now_);
      out = Concat(std::move(out), outbox_.Take());
      for (const auto& o : out) accepted |= std::holds_alternative<SubmittedReply>(o.message);
    });
    return accepted ? broken : "a valid job was refused";
  }

  std::string EndOne(bool ok = false) {
    if (!to_cancel_.empty()) {  // a worker reports the tasks it was told to stop
      auto [worker, id] = to_cancel_.back();
      to_cancel_.pop_back();
      auto it = running_.find(id);
      if (it == running_.end() || it->second.worker != worker) return "";
      return Report(id, TaskStatus::kCancelled);
    }
    if (running_.empty()) return "";
    auto it = running_.begin();
    std::advance(it, Uniform(0, static_cast<int>(running_.size()) - 1));
    return Report(it->first, ok || Uniform(0, 4) > 0 ? TaskStatus::kOk : TaskStatus::kFailed);
  }

  std::string Report(TaskId id, TaskStatus status) {
    const Running run = running_.at(id);
    running_.erase(id);
    log_ += " end " + FormatTaskId(id) + "=" + std::string(StatusName(status));
    TaskOutcome o;
    o.id = id;
    o.attempt = run.attempt;
    o.status = status;
    return Step([&](std::vector<Outgoing>& out) {
      Deliver(*core_, Peer{run.worker, Role::kLocal, {}}, WorkerResultsMessage{{o}}, now_);
      out = Concat(std::move(out), outbox_.Take());
    });
  }

  std::string Advance(milliseconds d) {
    now_ += d;
    // Workers heartbeat as the broker expects of live ones.
    return Step([&](std::vector<Outgoing>& out) {
      for (const auto& [name, w] : workers_) {
        Deliver(*core_, Peer{name, Role::kLocal, {}}, HeartbeatMessage{}, now_);
        out = Concat(std::move(out), outbox_.Take());
      }
      core_->Tick(now_);
      out = Concat(std::move(out), outbox_.Take());
    });
  }

  std::string CancelOne() {
    if (specs_.empty()) return "";
    auto it = specs_.begin();
    std::advance(it, Uniform(0, static_cast<int>(specs_.size()) - 1));
    log_ += " cancel " + FormatTaskId(it->first);
    return Step([&](std::vector<Outgoing>& out) {
      Deliver(*core_, Peer{"c", Role::kLocal, {}},
              CancelRequest{{IdRef{it->first.job, it->first.index}}}, now_);
      out = Concat(std::move(out), outbox_.Take());
    });
  }

  // A worker with random slots, gpus and queues; `any`: one that can run every task.
  std::string AddWorker(bool any = false) {
    const std::string name = "w" + std::to_string(next_worker_);
    WorkerModel w{next_worker_++, static_cast<uint32_t>(any ? 2 : Uniform(0, 2)),
                  !any && Uniform(0, 3) == 0};
    workers_[name] = w;
    log_ += " worker " + name + "(gpu=" + std::to_string(w.gpus) + (w.only_q ? ",q)" : ")");
    const uint32_t slots = static_cast<uint32_t>(Uniform(1, 4));
    ReadyMessage ready{w.pid, 1, {slots, slots, slots}, {}, "host"};
    if (w.gpus > 0) ready.resources.push_back({"gpu", w.gpus});
    if (w.only_q) ready.queues = {"q"};
    return Step([&](std::vector<Outgoing>& out) {
      Deliver(*core_, Peer{name, Role::kLocal, {}}, ready, now_);
      out = Concat(std::move(out), outbox_.Take());
    });
  }

  std::string KillWorker() {
    if (workers_.size() <= 1) return "";
    auto it = workers_.begin();
    std::advance(it, Uniform(0, static_cast<int>(workers_.size()) - 1));
    const std::string name = it->first;
    const int64_t pid = it->second.pid;
    workers_.erase(it);
    log_ += " kill " + name;
    std::erase_if(running_, [&](const auto& r) { return r.second.worker == name; });
    return Step([&](std::vector<Outgoing>& out) {
      core_->WorkerExited(pid);
      out = Concat(std::move(out), outbox_.Take());
    });
  }

  std::string Restart() {
    log_ += " restart";
    core_.reset();
    journal_.reset();
    running_.clear();  // the workers went with the broker
    to_cancel_.clear();
    workers_.clear();
    rate_starts_.clear();  // the bucket starts again (documented)
    Start();
    core_->RestoreLimits(journal_->LoadLimits(), now_);
    core_->Restore(journal_->Load(), now_, WallNow());
    // The restored store has every outcome the journal kept.
    EXPECT_TRUE(journal_->Commit().ok());
    return AddWorker();
  }

  size_t Unfinished() {
    size_t n = 0;
    for (const auto& [id, spec] : specs_) n += !store().Find(id);
    return n;
  }

  std::vector<std::string> Explain(TaskId id) {
    std::vector<Outgoing> out;
    Deliver(*core_, Peer{"c", Role::kLocal, {}}, ExplainRequest{id}, now_);
    out = Concat(std::move(out), outbox_.Take());
    for (auto& o : out) {
      if (auto* e = std::get_if<ExplainedReply>(&o.message)) {
        std::vector<std::string> said{
            std::string(e->status ? StatusName(*e->status) : StateName(e->state))};
        for (const Reason& reason : e->reasons) said.push_back(Sentence(reason));
        return said;
      }
    }
    return {};
  }

  std::mt19937 random_;
  std::string path_;
  std::unique_ptr<SqliteJournal> journal_;
  Outbox outbox_;  // (before the core, which sends through it)
  std::unique_ptr<BrokerCore> core_;
  SteadyTime now_{std::chrono::seconds(1000)};
  std::map<TaskId, TaskSpec> specs_;
  std::map<uint64_t, int> job_sizes_;
  std::map<TaskId, Running> running_;
  std::vector<std::pair<std::string, TaskId>> to_cancel_;
  std::map<std::string, WorkerModel> workers_;
  std::vector<SteadyTime> rate_starts_;
  uint64_t next_job_ = 1;
  int next_worker_ = 1;
  std::string log_;
};

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* text = std::getenv(name);
  return text && *text ? std::strtoull(text, nullptr, 10) : fallback;
}

TEST(ModelTest, RandomSchedulesKeepEveryRule) {
  const std::string dir =
      std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
  char name[] = "orq-model-XXXXXX";
  const std::string base = dir + "/" + name;
  std::vector<char> buf(base.begin(), base.end());
  buf.push_back('\0');
  ASSERT_NE(::mkdtemp(buf.data()), nullptr);
  const std::string tmp = buf.data();
  struct Cleanup {  // also when an assertion ends the test early
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{tmp};
  const uint64_t first = EnvNumber("ORQ_MODEL_SEED", 1);
  const uint64_t seeds = EnvNumber("ORQ_MODEL_SEEDS", 300);
  for (uint64_t seed = first; seed < first + seeds; ++seed) {
    Model model(seed, tmp);
    std::string broken;
    for (int step = 0; step < 150 && broken.empty(); ++step) broken = model.RandomStep();
    if (broken.empty()) broken = model.Drain();
    ASSERT_EQ(broken, "") << "seed " << seed << " (ORQ_MODEL_SEED=" << seed
                          << " ORQ_MODEL_SEEDS=1 replays it); events:" << model.log();
  }
}

}  // namespace
}  // namespace orq

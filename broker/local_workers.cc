#include "broker/local_workers.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>

#include "common/log.h"

namespace orq {

using std::chrono::milliseconds;

LocalWorkers::LocalWorkers(LocalWorkerOptions options, BrokerCore& core)
    : options_(std::move(options)), core_(core) {
  // SIGCHLD through a signalfd in the poll set: a dead local worker is noticed at once.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  child_fd_ = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

LocalWorkers::~LocalWorkers() {
  if (child_fd_ >= 0) ::close(child_fd_);
}

void LocalWorkers::Start(int count) {
  for (int i = 0; i < count; ++i) workers_.push_back(Spawn());
}

LocalWorkers::Worker LocalWorkers::Spawn() {
  SpawnOptions spawn;
  spawn.args = {"worker",
                "--connect",
                options_.endpoint,
                "--threads",
                std::to_string(options_.threads),
                "--supervised",
                "--heartbeat-ms",
                std::to_string(options_.heartbeat.count())};
  spawn.args.insert(spawn.args.end(), options_.args.begin(), options_.args.end());
  spawn.die_with_parent = true;
  spawn.new_session = true;  // so whatever it leaves behind can be found (KillSession)
  return Worker{Process::SpawnSelf(spawn), SteadyTime::clock::now(), {}, {}};
}

void LocalWorkers::ChildExited(SteadyTime now) {
  signalfd_siginfo info;
  while (::read(child_fd_, &info, sizeof info) == sizeof info) {
  }
  Supervise(now);
}

void LocalWorkers::Supervise(SteadyTime now) {
  for (auto& w : workers_) {
    if (w.process.pid() > 0) {
      const pid_t pid = w.process.pid();
      if (w.process.Running()) continue;
      if (int orphans = KillSession(pid))
        Log("killed " + std::to_string(orphans) + " processes left by worker " +
            std::to_string(pid));
      core_.WorkerExited(pid);
      if (core_.shutting_down() || w.retiring) continue;
      const milliseconds wait = w.backoff.Died(w.started, now);
      w.restart_at = now + wait;
      Log("worker " + std::to_string(pid) + " " + Describe(*w.process.exit()) +
          "; starting another in " + std::to_string(wait.count()) + " ms");
    } else if (!core_.shutting_down() && !w.retiring && now >= w.restart_at) {
      const auto backoff = w.backoff;
      w = Spawn();
      w.backoff = backoff;
    }
  }
  std::erase_if(workers_, [](const Worker& w) { return w.retiring && w.process.pid() <= 0; });
}

ScaledReply LocalWorkers::Scale(uint32_t target) {
  uint32_t active = 0;
  for (const auto& w : workers_) active += !w.retiring;
  const uint32_t before = active;
  if (!core_.shutting_down()) {
    while (active < target) {
      workers_.push_back(Spawn());
      ++active;
    }
    for (auto it = workers_.rbegin(); it != workers_.rend() && active > target; ++it) {
      if (it->retiring) continue;
      it->retiring = true;
      --active;
      // Not registered yet (or dead): stop it now; else let it finish what it runs.
      if (it->process.pid() > 0 && !core_.RetireWorker(it->process.pid()))
        it->process.Stop(milliseconds(2000));
    }
  }
  Log("scaled from " + std::to_string(before) + " to " + std::to_string(active) + " local workers");
  return ScaledReply{before, active};
}

bool LocalWorkers::AllGone() {
  for (auto& w : workers_) {
    if (w.process.Running()) return false;
  }
  return core_.worker_count() == 0;
}

void LocalWorkers::Stop() {
  for (auto& w : workers_) {
    if (!w.process.Running()) continue;
    const pid_t pid = w.process.pid();
    Log("worker " + std::to_string(pid) + " did not stop in time; killing it");
    w.process.Stop(milliseconds(0));
    KillSession(pid);
  }
}

}  // namespace orq

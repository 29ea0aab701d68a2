#include "common/spawn.h"

#include <utility>  // before Asio under C++20 with Boost 1.74
#include <boost/process.hpp>
#include <boost/process/extend.hpp>
#include <dirent.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace bp = boost::process;

namespace orq {

std::string SelfExecutable() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot find the orq executable (/proc/self/exe)");
  return std::string(buf, static_cast<size_t>(n));
}

Process Process::SpawnSelf(const SpawnOptions& options) {
  const pid_t parent = ::getpid();
  const bool die_with_parent = options.die_with_parent;
  const bool new_session = options.new_session;
  auto setup = bp::extend::on_exec_setup([=](auto&) {
    sigset_t none;  // the parent may block signals (the broker blocks SIGCHLD for its signalfd)
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (new_session) ::setsid();
    if (die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);  // the parent died before prctl took effect
    }
  });
  std::error_code ec;
  bp::child child;
  const std::string exe = SelfExecutable();
  if (options.output_file.empty()) {
    child = bp::child(bp::exe = exe, bp::args = options.args, bp::std_in < bp::null, setup, ec);
  } else {
    child = bp::child(bp::exe = exe, bp::args = options.args, bp::std_in < bp::null,
                      (bp::std_out & bp::std_err) > options.output_file, setup, ec);
  }
  if (ec) throw std::runtime_error("cannot start " + exe + ": " + ec.message());
  const pid_t pid = child.id();
  child.detach();  // from here on this object reaps it with waitpid
  return Process(pid);
}

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), ended_(std::move(other.ended_)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) Stop(std::chrono::milliseconds(0));
    pid_ = std::exchange(other.pid_, -1);
    ended_ = std::move(other.ended_);
  }
  return *this;
}

Process::~Process() {
  if (pid_ > 0) Stop(std::chrono::milliseconds(0));
}

void Process::Reaped(int status) {
  pid_ = -1;
  if (WIFEXITED(status))
    ended_ = "exited with code " + std::to_string(WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    ended_ = "killed by signal " + std::to_string(WTERMSIG(status));
  else
    ended_ = "ended";
}

bool Process::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    Reaped(status);
    return false;
  }
  if (r < 0 && errno == ECHILD) {  // reaped elsewhere: it is gone all the same
    pid_ = -1;
    ended_ = "ended";
    return false;
  }
  return true;
}

void Process::Signal(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

bool Process::WaitUntil(std::chrono::steady_clock::time_point deadline) {
  if (!Running()) return true;
  // A pidfd turns "wait with a deadline" into one poll(); without one, wait in short steps.
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  while (Running()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    } else {
      ::usleep(static_cast<useconds_t>(std::min<int64_t>(left.count(), 10) * 1000));
    }
  }
  if (fd >= 0) ::close(fd);
  return pid_ <= 0;
}

int KillSession(pid_t sid) {
  int killed = 0;
  DIR* proc = ::opendir("/proc");
  if (!proc) return 0;
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::ifstream stat(std::string("/proc/") + entry->d_name + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // Fields after "(comm)": state ppid pgrp session ...
    auto paren = line.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(line.substr(paren + 2));
    char state;
    long ppid, pgrp, session;
    if (!(fields >> state >> ppid >> pgrp >> session) || session != sid || state == 'Z') continue;
    if (::kill(static_cast<pid_t>(pid), SIGKILL) == 0) ++killed;
  }
  ::closedir(proc);
  return killed;
}

bool WaitForExit(pid_t pid, std::chrono::steady_clock::time_point deadline) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  auto alive = [&] { return ::kill(pid, 0) == 0 || errno != ESRCH; };
  bool gone = false;
  while (!(gone = !alive())) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000))) > 0) {
        gone = true;  // readable pidfd: it has exited (a zombie of someone else's is gone to us)
        break;
      }
    } else {
      ::usleep(static_cast<useconds_t>(std::min<int64_t>(left.count(), 10) * 1000));
    }
  }
  if (fd >= 0) ::close(fd);
  return gone;
}

void Process::Stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return;
  if (grace.count() > 0) {
    Signal(SIGTERM);
    if (WaitUntil(std::chrono::steady_clock::now() + grace)) return;
  }
  Signal(SIGKILL);
  int status = 0;
  if (::waitpid(pid_, &status, 0) == pid_) Reaped(status);
  pid_ = -1;
}

}  // namespace orq

// The blocking half of common/process.h: ExitStatus, /proc, the stop sequence, Process.
#include "common/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process.hpp>
#include <boost/process/extend.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <utility>  // before Asio under C++20 with Boost 1.74

#include "common/overloaded.h"

namespace bp = boost::process;

namespace orq {

// ---- How a child ended
// ---------------------------------------------------------------------------

ExitStatus FromWaitStatus(int status) {
  if (WIFSIGNALED(status)) return Killed{WTERMSIG(status)};
  return Exited{WIFEXITED(status) ? WEXITSTATUS(status) : 0};
}

int ShellCode(const ExitStatus& status) {
  return std::visit(Overloaded{
                        [](const Exited& e) { return e.code; },
                        [](const Killed& k) { return 128 + k.signal; },
                        [](const TimedOut& t) { return t.code; },
                        [](const NotStarted&) { return 127; },
                    },
                    status);
}

std::string Describe(const ExitStatus& status) {
  return std::visit(
      Overloaded{
          [](const Exited& e) { return "exited with code " + std::to_string(e.code); },
          [](const Killed& k) {
            const char* name = sigabbrev_np(k.signal);
            return "killed by signal " + std::to_string(k.signal) +
                   (name ? std::string(" (SIG") + name + ")" : std::string());
          },
          [](const TimedOut& t) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "timed out after %g s", t.seconds);
            return std::string(buf);
          },
          [](const NotStarted& n) { return n.why; },
      },
      status);
}

// ---- /proc
// ---------------------------------------------------------------------------------------

std::optional<ProcStat> ParseProcStat(std::string_view line) {
  // "PID (COMM) STATE PPID PGRP SESSION ...": COMM may hold anything, so parse after the last ')'.
  const size_t paren = line.rfind(')');
  if (paren == std::string_view::npos || line.find('(') > paren) return std::nullopt;
  std::string rest(line.substr(paren + 1));
  ProcStat s;
  long ppid = 0, pgrp = 0, session = 0;
  unsigned long utime = 0, stime = 0;  // fields 14 and 15, in clock ticks
  const int n = std::sscanf(rest.c_str(), " %c %ld %ld %ld %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                            &s.state, &ppid, &pgrp, &session, &utime, &stime);
  if (n < 4) return std::nullopt;
  if (n == 6)
    s.cpu_seconds =
        static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  s.ppid = static_cast<pid_t>(ppid);
  s.pgrp = static_cast<pid_t>(pgrp);
  s.session = static_cast<pid_t>(session);
  return s;
}

std::string ReadProcFile(pid_t pid, const char* name) {
  // Plain read(2): a process may exit while its file is read (then read fails with ESRCH), and
  // libstdc++'s filebuf throws on a read error.
  const std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      text.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      if (n < 0) text.clear();  // gone while being read: as if it were gone before
      break;
    }
  }
  ::close(fd);
  return text;
}

std::optional<ProcStat> ReadProcStat(pid_t pid) { return ParseProcStat(ReadProcFile(pid, "stat")); }

std::vector<std::string> SplitNul(std::string_view text) {
  std::vector<std::string> parts;
  while (!text.empty()) {
    const size_t end = text.find('\0');
    parts.emplace_back(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return parts;
}

std::vector<pid_t> ListPids() {
  std::vector<pid_t> pids;
  DIR* proc = ::opendir("/proc");
  if (!proc) return pids;
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (*end == '\0' && pid > 0) pids.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(proc);
  return pids;
}

namespace {
size_t StatusKib(pid_t pid, const char* field) {  // field: "\nVmHWM:"
  const std::string status = ReadProcFile(pid, "status");
  const size_t at = status.find(field);
  if (at == std::string::npos) return 0;
  return std::strtoull(status.c_str() + at + std::strlen(field), nullptr, 10) * 1024;
}
}  // namespace

size_t PeakRss(pid_t pid) { return StatusKib(pid, "\nVmHWM:"); }
size_t CurrentRss(pid_t pid) { return StatusKib(pid, "\nVmRSS:"); }

namespace {
// The directory of `path`, opened without following a link there; -1 when it cannot be.
int OpenParent(const std::string& path, std::string& name) {
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : path.substr(0, std::max<size_t>(slash, 1));
  name = slash == std::string::npos ? path : path.substr(slash + 1);
  return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}
}  // namespace

int OpenBeneath(const std::string& path, int flags, mode_t mode) {
  std::string name;
  const int dir = OpenParent(path, name);
  if (dir < 0) return -1;
  const int fd = ::openat(dir, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
  const int error = errno;
  ::close(dir);
  errno = error;
  return fd;
}

bool UnlinkBeneath(const std::string& path) {
  std::string name;
  const int dir = OpenParent(path, name);
  if (dir < 0) return false;
  const bool done = ::unlinkat(dir, name.c_str(), 0) == 0;  // a link itself goes, not its target
  ::close(dir);
  return done;
}

std::string SelfExecutable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot find the orq executable (/proc/self/exe)");
  return std::string(buf, static_cast<size_t>(n));
}

// ---- Stopping and waiting
// ------------------------------------------------------------------------

namespace {

// Waits until gone() holds, at most until `deadline`. A pidfd for `pid` turns the wait into one
// poll() that wakes when the process exits; without one (old kernels), it checks every 10 ms.
bool WaitUntilGone(pid_t pid, ProcessClock::time_point deadline,
                   const std::function<bool()>& gone) {
  if (gone()) return true;
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  bool done = false;
  while (!(done = gone())) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - ProcessClock::now());
    if (left.count() <= 0) break;
    const int step = static_cast<int>(std::min<int64_t>(left.count(), fd >= 0 ? 1000 : 10));
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, step);
    } else {
      ::usleep(static_cast<useconds_t>(step) * 1000);
    }
  }
  if (fd >= 0) ::close(fd);
  return done;
}

// Exited, as seen by anyone: no such process, or a zombie waiting for its parent.
bool HasExited(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  const auto stat = ReadProcStat(pid);
  return !stat || stat->state == 'Z';
}

}  // namespace

bool WaitForExit(pid_t pid, ProcessClock::time_point deadline) {
  return WaitUntilGone(pid, deadline, [pid] { return HasExited(pid); });
}

bool StopProcess(pid_t pid, std::chrono::milliseconds grace) {
  if (pid <= 0 || HasExited(pid)) return true;
  if (grace.count() > 0) {
    ::kill(pid, SIGTERM);
    if (WaitForExit(pid, ProcessClock::now() + grace)) return true;
  }
  ::kill(pid, SIGKILL);
  return WaitForExit(pid, ProcessClock::now() + kKillWait);
}

int KillSession(pid_t sid) {
  int killed = 0;
  for (pid_t pid : ListPids()) {
    const auto stat = ReadProcStat(pid);
    if (!stat || stat->session != sid || stat->state == 'Z') continue;
    if (::kill(pid, SIGKILL) == 0) ++killed;
  }
  return killed;
}

// ---- Process
// -------------------------------------------------------------------------------------

namespace {
// The soft RLIMIT_NOFILE this process started with, when RaiseDescriptorLimit() raised it.
rlimit started_nofile{};
bool nofile_raised = false;
}  // namespace

size_t RaiseDescriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (!nofile_raised && limit.rlim_cur < limit.rlim_max) {
    started_nofile = limit;
    rlimit raised = limit;
    raised.rlim_cur = raised.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      nofile_raised = true;
      limit = raised;
    }
  }
  return static_cast<size_t>(limit.rlim_cur);
}

Process Process::SpawnSelf(const SpawnOptions& options) {
  const pid_t parent = ::getpid();
  const bool restore_nofile = nofile_raised;
  const rlimit nofile = started_nofile;
  const bool die_with_parent = options.die_with_parent;
  const bool new_session = options.new_session;
  auto setup = bp::extend::on_exec_setup([=](auto&) {
    sigset_t none;  // the parent may block signals (the broker blocks SIGCHLD for its signalfd)
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (restore_nofile) ::setrlimit(RLIMIT_NOFILE, &nofile);  // children start as we did
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
    child =
        bp::child(bp::exe = exe, bp::args = options.args,
                  bp::std_in<bp::null, (bp::std_out & bp::std_err)> options.output_file, setup, ec);
  }
  if (ec) throw std::runtime_error("cannot start " + exe + ": " + ec.message());
  const pid_t pid = child.id();
  child.detach();  // from here on this object reaps it with waitpid
  return Process(pid);
}

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), exit_(std::move(other.exit_)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) Stop(std::chrono::milliseconds(0));
    pid_ = std::exchange(other.pid_, -1);
    exit_ = std::move(other.exit_);
  }
  return *this;
}

Process::~Process() {
  if (pid_ > 0) Stop(std::chrono::milliseconds(0));
}

void Process::Reaped(int status) {
  pid_ = -1;
  exit_ = FromWaitStatus(status);
}

bool Process::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    Reaped(status);
    return false;
  }
  if (r < 0 && errno == ECHILD) {  // reaped elsewhere: it is gone all the same, how is unknown
    pid_ = -1;
    exit_ = Exited{0};
    return false;
  }
  return true;
}

bool Process::WaitUntil(ProcessClock::time_point deadline) {
  const pid_t pid = pid_;
  return pid <= 0 || WaitUntilGone(pid, deadline, [this] { return !Running(); });
}

ExitStatus Process::Stop(std::chrono::milliseconds grace) {
  if (pid_ > 0) {
    StopProcess(pid_, grace);
    int status = 0;
    if (::waitpid(pid_, &status, 0) == pid_)
      Reaped(status);
    else
      Running();  // reaped elsewhere
  }
  return exit_.value_or(Exited{0});
}

}  // namespace orq

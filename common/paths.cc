#include "common/paths.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "common/errors.h"
#include "common/process.h"

namespace orq {

std::string FormatMode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

void MakePrivateDirectory(const std::string& dir, const std::string& what, bool link_ok) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    if (!link_ok)
      throw UsageError(what + " " + dir +
                       " is a symbolic link, and orq follows none under $ORQ_HOME: make it a "
                       "directory");
    // A link to it must be the user's own too: whoever owns the link chooses where it points.
    if (st.st_uid != ::geteuid())
      throw UsageError(what + " " + dir + " is a symbolic link that belongs to another user (uid " +
                       std::to_string(st.st_uid) + "), who could point it elsewhere at any time");
  }
  if (::stat(dir.c_str(), &st) != 0) {
    std::error_code ec;
    const auto parent = std::filesystem::path(dir).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      throw std::runtime_error("cannot create " + what + " " + dir + ": " + std::strerror(errno));
    if (::stat(dir.c_str(), &st) != 0)
      throw std::runtime_error("cannot create " + what + " " + dir + ": " + std::strerror(errno));
  }
  if (auto problem = DirectoryProblem(st, ::geteuid(), dir, what); !problem.ok())
    throw UsageError(problem.error().sentence);
}

Expected<void> DirectoryProblem(const struct stat& st, uid_t me, const std::string& dir,
                                const std::string& what) {
  if (!S_ISDIR(st.st_mode)) return Fault(what + " " + dir + " is not a directory");
  if (st.st_uid != me)
    return Fault(what + " " + dir + " belongs to another user (uid " + std::to_string(st.st_uid) +
                 "); orq keeps its socket and journal only in a directory of your own");
  if (st.st_mode & 022)
    return Fault(what + " " + dir + " may be written by others (mode " + FormatMode(st.st_mode) +
                 "), who could replace its socket, journal or keys; run 'chmod 700 " + dir + "'");
  return {};
}

std::string OrqHome() {
  std::string home;
  if (const char* env = std::getenv("ORQ_HOME"); env && *env) {
    home = env;
  } else if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg) {
    home = std::string(xdg) + "/orq";
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    home = std::string(h) + "/.local/state/orq";
  } else {
    throw std::runtime_error("cannot find a state directory: set ORQ_HOME or HOME");
  }
  MakePrivateDirectory(home, "$ORQ_HOME", /*link_ok=*/true);
  return home;
}

std::string DefaultEndpoint(const std::string& home) { return "ipc://" + home + "/broker.ipc"; }
std::string PidFile(const std::string& home) { return home + "/broker.pid"; }
std::string LogFile(const std::string& home) { return home + "/broker.log"; }
std::string DashboardFile(const std::string& home) { return home + "/dashboard"; }
std::string SpillDirectory(const std::string& home) { return home + "/output"; }
std::string SpillName(uint64_t job, uint32_t index, uint32_t attempt, bool err) {
  return "j" + std::to_string(job) + "." + std::to_string(index) + "." + std::to_string(attempt) +
         (err ? ".err" : ".out");
}

std::string MakeRunDirectory(const std::string& home) {
  // ipc:// paths must fit in sockaddr_un (108 bytes); fall back to the temp dir if home is deep.
  std::string base = home.size() <= 70 ? home : "/tmp";
  std::string pattern = base + "/run.XXXXXX";
  if (!::mkdtemp(pattern.data()))
    throw std::runtime_error("cannot create a run directory in " + base + ": " +
                             std::strerror(errno));
  return pattern;
}

bool RemoveTree(const std::string& dir) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    if (!std::filesystem::exists(std::filesystem::symlink_status(dir, ec))) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

long ReadLivePid(const std::string& pid_file) {
  std::ifstream in(pid_file);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  // Alive means: running (a zombie is dead, only not yet reaped) and still an orq broker (the
  // pid may have been reused since the file was written).
  const auto stat = ReadProcStat(static_cast<pid_t>(pid));
  if (!stat || stat->state == 'Z') return 0;
  const auto args = SplitNul(ReadProcFile(static_cast<pid_t>(pid), "cmdline"));
  if (args.size() < 2 || args[1] != "broker") return 0;
  return pid;
}

std::string LinkRefused(const std::string& path) {
  return path + " is a symbolic link; orq does not follow links among its own files: remove it";
}

Expected<void> IpcEndpointProblem(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) != 0) return Fault(endpoint + " is not an ipc:// endpoint");
  const std::string path = endpoint.substr(6);
  if (!path.empty() && path[0] == '@')
    return Fault(endpoint +
                 " is an abstract socket: it has no file permissions, so any local user "
                 "could connect as its owner; give a path in $ORQ_HOME");
  if (path.empty() || path[0] != '/')
    return Fault(endpoint + ": give the socket's absolute path (ipc:///...)");
  const std::string dir = std::filesystem::path(path).parent_path();
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0)
    return Fault(endpoint + ": its directory " + dir + " cannot be read: " + std::strerror(errno));
  if (S_ISLNK(st.st_mode)) return Fault(endpoint + ": its directory " + LinkRefused(dir));
  if (auto problem = DirectoryProblem(st, ::geteuid(), dir, "the socket's directory");
      !problem.ok())
    return Fault(endpoint + ": " + problem.error().sentence);
  return {};
}

void WriteOwnerOnlyFile(const std::string& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0 && errno == ELOOP) throw UsageError(LinkRefused(path));
  if (fd < 0) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  ::fchmod(fd, 0600);  // an older file may have been made with a looser mode
  const bool ok =
      ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
}

}  // namespace orq

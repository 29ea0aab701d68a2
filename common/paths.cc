#include "common/paths.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace orq {
namespace {

void MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create the state directory " + dir + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
}

}  // namespace

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
  MakeDirs(home);
  return home;
}

std::string DefaultEndpoint(const std::string& home) { return "ipc://" + home + "/broker.ipc"; }
std::string PidFile(const std::string& home) { return home + "/broker.pid"; }
std::string LogFile(const std::string& home) { return home + "/broker.log"; }

std::string MakeRunDirectory(const std::string& home) {
  // ipc:// paths must fit in sockaddr_un (108 bytes); fall back to the temp dir if home is deep.
  std::string base = home.size() <= 70 ? home : "/tmp";
  std::string pattern = base + "/run.XXXXXX";
  if (!::mkdtemp(pattern.data()))
    throw std::runtime_error("cannot create a run directory in " + base + ": " + std::strerror(errno));
  return pattern;
}

void RemoveTree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

long ReadLivePid(const std::string& pid_file) {
  std::ifstream in(pid_file);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return 0;
  return pid;
}

}  // namespace orq

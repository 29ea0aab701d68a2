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
  // Alive means: running (a zombie is dead, only not yet reaped) and still an orq broker (the
  // pid may have been reused since the file was written).
  const std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream stat(proc + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return 0;
  auto paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] == 'Z') return 0;
  std::ifstream cmdline_file(proc + "/cmdline");
  std::string cmdline((std::istreambuf_iterator<char>(cmdline_file)), std::istreambuf_iterator<char>());
  auto first_nul = cmdline.find('\0');
  if (first_nul == std::string::npos) return 0;
  auto second_nul = cmdline.find('\0', first_nul + 1);
  if (cmdline.substr(first_nul + 1, second_nul - first_nul - 1) != "broker") return 0;
  return pid;
}

}  // namespace orq

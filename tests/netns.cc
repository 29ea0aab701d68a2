#include "tests/netns.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <thread>

namespace orq::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kPrefix = "orqt-";
constexpr std::chrono::seconds kCommandTimeout{30};

// Runs argv; returns its exit code (-1 at the deadline) and what it printed.
int RunCommand(const std::vector<std::string>& argv, std::string& output) {
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::close(out[0]);
    ::close(out[1]);
    std::vector<char*> args;
    std::vector<std::string> copy = argv;
    for (auto& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(out[1]);
  const auto deadline = Clock::now() + kCommandTimeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

// Removes namespaces a killed test run left ("orqt-<pid>-..." whose pid is gone).
void SweepLeftovers() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/run/netns", ec)) {
    const std::string name = entry.path().filename();
    if (name.rfind(kPrefix, 0) != 0) continue;
    const pid_t owner = static_cast<pid_t>(std::atol(name.c_str() + std::strlen(kPrefix)));
    if (owner > 0 && owner != ::getpid() && !Alive(owner)) {
      std::string ignored;
      RunCommand({"ip", "netns", "del", name}, ignored);
    }
  }
}

}  // namespace

void Command(const std::vector<std::string>& argv) {
  std::string output;
  if (RunCommand(argv, output) != 0) {
    std::string line;
    for (const auto& a : argv) line += a + " ";
    throw std::runtime_error("'" + line + "' failed: " + output);
  }
}

std::optional<std::string> Netns::Unavailable() {
  if (::geteuid() != 0)
    return "network namespaces need root (CI runs as root); this test runs as uid " +
           std::to_string(::geteuid());
  std::string output;
  const std::string probe = std::string(kPrefix) + std::to_string(::getpid()) + "-probe";
  if (RunCommand({"ip", "netns", "add", probe}, output) != 0)
    return "'ip netns add' does not work here (is iproute2 installed? "
           "scripts/setup.sh installs it): " +
           output;
  RunCommand({"ip", "netns", "del", probe}, output);
  return std::nullopt;
}

Netns::Netns(const std::string& tag) {
  static std::atomic<int> next{0};
  SweepLeftovers();
  name_ = kPrefix + std::to_string(::getpid()) + "-" + std::to_string(next++) + "-" + tag;
  Command({"ip", "netns", "add", name_});
  Command({"ip", "-n", name_, "link", "set", "lo", "up"});
}

Netns::~Netns() {
  std::string ignored;
  RunCommand({"ip", "netns", "del", name_}, ignored);  // its veth ends go with it
}

std::vector<std::string> Netns::Exec() const { return {"ip", "netns", "exec", name_}; }

void Netns::Run(const std::function<void()>& fn) const {
  std::exception_ptr error;
  std::thread thread([&] {
    try {
      const int fd = ::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0)
        throw std::runtime_error("cannot enter " + name_ + ": " + std::strerror(errno));
      ::close(fd);
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  });
  thread.join();
  if (error) std::rethrow_exception(error);
}

void Netns::SetLink(const std::string& device, bool up) const {
  Command({"ip", "-n", name_, "link", "set", device, up ? "up" : "down"});
}

void Connect(const Netns& a, const std::string& a_device, const std::string& a_address,
             const Netns& b, const std::string& b_device, const std::string& b_address) {
  // Made inside `a`, so the name need only be unique there; the peer end goes straight into `b`.
  Command({"ip", "-n", a.name(), "link", "add", a_device, "type", "veth", "peer", "name", b_device,
           "netns", b.name()});
  Command({"ip", "-n", a.name(), "addr", "add", a_address, "dev", a_device});
  Command({"ip", "-n", b.name(), "addr", "add", b_address, "dev", b_device});
  a.SetLink(a_device, true);
  b.SetLink(b_device, true);
}

}  // namespace orq::testing

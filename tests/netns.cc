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

#include "tests/harness.h"

namespace orq::testing {
namespace {

constexpr const char* kPrefix = "orqt-";

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
      RunProgram({"ip", "netns", "del", name}, ignored);
    }
  }
}

}  // namespace

Expected<void> Netns::Unavailable() {
  if (::geteuid() != 0)
    return Fault("network namespaces need root (CI runs as root); this test runs as uid " +
                 std::to_string(::geteuid()));
  std::string output;
  const std::string probe = std::string(kPrefix) + std::to_string(::getpid()) + "-probe";
  if (RunProgram({"ip", "netns", "add", probe}, output) != 0)
    return Fault(
        "'ip netns add' does not work here (is iproute2 installed? "
        "scripts/setup.sh installs it): " +
        output);
  RunProgram({"ip", "netns", "del", probe}, output);
  return {};
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
  RunProgram({"ip", "netns", "del", name_}, ignored);  // its veth ends go with it
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

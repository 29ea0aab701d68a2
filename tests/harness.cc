#include "tests/harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/process.h"

namespace orq::testing {
namespace {

using Clock = std::chrono::steady_clock;

#ifndef ORQ_TEST_TIME_SCALE
#define ORQ_TEST_TIME_SCALE 1
#endif

double ReadTimeScale() {
  const char* text = std::getenv("ORQ_TEST_TIME_SCALE");
  if (!text || !*text) return ORQ_TEST_TIME_SCALE;
  char* end = nullptr;
  const double scale = std::strtod(text, &end);
  if (*end != '\0' || !(scale >= 1) || scale > 100) {
    std::fprintf(stderr, "ORQ_TEST_TIME_SCALE=%s is not a number from 1 to 100\n", text);
    std::exit(2);
  }
  return scale;
}

}  // namespace

double TimeScale() {
  static const double scale = ReadTimeScale();
  return scale;
}

std::chrono::milliseconds Scaled(std::chrono::milliseconds planned) {
  return std::chrono::milliseconds(static_cast<int64_t>(planned.count() * TimeScale()));
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
               std::chrono::milliseconds poll) {
  // The pause grows by half up to a quarter of a second: a condition met soon is seen soon, and
  // a long wait does not spend the machine on checks (an `orq status` a check may run costs a
  // tenth of a CPU-second under AddressSanitizer; at every 20 ms it was a test's main load).
  const auto deadline = Clock::now() + Scaled(timeout);
  const std::chrono::milliseconds longest = std::max(poll, std::chrono::milliseconds(250));
  for (auto pause = poll;;
       pause = std::min(longest, pause + std::max(pause / 2, std::chrono::milliseconds(1)))) {
    if (condition()) return true;
    const auto now = Clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - now));
  }
}

namespace {

// The verb of an orq command line: its first word that is neither an option nor --access's file.
std::string VerbOf(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--access") {
      ++i;
    } else if (args[i].rfind('-', 0) != 0) {
      return args[i];
    }
  }
  return "";
}

}  // namespace

// Child side of a spawn: environment with ORQ_HOME, then exec orq (under the wrapper, if any).
void OrqEnv::Exec(const std::vector<std::string>& args) const {
  ::setenv("ORQ_HOME", home_.c_str(), 1);
  // Under AddressSanitizer, the leak check at exit was nearly half the CPU of the integration
  // tests (a short command's whole life is its start and its exit). It stays on for the commands
  // that run brokers and workers (they pass it on) and for `orq run`, whose one process is also
  // the client that submits and gathers; the other client commands skip it.
  static const std::set<std::string> kLongLived = {"up", "run", "broker", "worker", "bench"};
  if (!kLongLived.count(VerbOf(args))) {
    const char* asan = std::getenv("ASAN_OPTIONS");
    ::setenv("ASAN_OPTIONS", (std::string(asan ? asan : "") + ":detect_leaks=0").c_str(), 1);
  }
  if (!directory_.empty() && ::chdir(directory_.c_str()) != 0) ::_exit(126);
  ::unsetenv("ORQ_ENDPOINT");
  ::unsetenv("ORQ_ACCESS");
  std::vector<std::string> all = wrapper_;
  all.push_back(ORQ_BINARY);
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  ::_exit(127);
}

OrqEnv::OrqEnv(std::vector<std::string> wrapper)
    : home_dir_("orqt"), home_(home_dir_.path()), wrapper_(std::move(wrapper)) {}

OrqEnv::~OrqEnv() {
  Run({"down"}, "", std::chrono::seconds(30));
  for (pid_t pid : Processes()) ::kill(pid, SIGKILL);
}

std::string WhereItWaits(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
      info.si_pid == pid)  // (not reaped: the caller's wait does that)
    return "it had exited (status " + std::to_string(info.si_status) +
           "), but a process it started holds its output open";
  std::string where = "still running; its threads (name, state, kernel wait, syscall):";
  std::error_code error;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", error)) {
    const pid_t tid = std::atoi(task.path().filename().c_str());  // /proc/TID is the thread's
    auto text = [tid](const char* name) {
      std::string t = ReadProcFile(tid, name);
      while (!t.empty() && (t.back() == '\n' || t.back() == '\0')) t.pop_back();
      return t;
    };
    const std::string stat = text("stat");
    const size_t paren = stat.rfind(')');
    where +=
        " [" + text("comm") + " " +
        (paren != std::string::npos && paren + 2 < stat.size() ? stat.substr(paren + 2, 1) : "?") +
        " " + text("wchan") + " " + text("syscall") + "]";
  }
  return where;
}

RunResult OrqEnv::Run(const std::vector<std::string>& args, const std::string& input,
                      std::chrono::seconds timeout) const {
  int in[2], out[2], err[2];
  // Close-on-exec: a process another thread starts meanwhile must not hold these pipes open.
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC))
    throw std::runtime_error("pipe failed");
  const auto start = Clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    // No input: stdin is /dev/null, which orq does not read as an input source (a pipe it would).
    const int null = input.empty() ? ::open("/dev/null", O_RDONLY) : -1;
    ::dup2(null >= 0 ? null : in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) ::close(fd);
    Exec(args);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  signal(SIGPIPE, SIG_IGN);
  if (!input.empty()) (void)!::write(in[1], input.data(), input.size());
  ::close(in[1]);

  RunResult result;
  result.command = "orq";
  for (const auto& a : args) result.command += " " + a;
  const auto deadline = start + Scaled(timeout);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open = 2;
  bool timed_out = false;
  while (open > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      result.err += "\n[the test's deadline: " + WhereItWaits(pid) + "]\n";
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left.count())) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[65536];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.code = timed_out ? -1 : ShellCode(FromWaitStatus(status));
  return result;
}

pid_t OrqEnv::Start(const std::vector<std::string>& args) const {
  pid_t pid = ::fork();
  if (pid == 0) {
    int out = ::open((home_ + "/started.out").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    int err = ::open((home_ + "/started.err").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    Exec(args);
  }
  return pid;
}

std::vector<pid_t> OrqEnv::Processes() const {
  std::vector<pid_t> pids;
  const std::string needle = "ORQ_HOME=" + home_;
  for (pid_t pid : ListPids()) {
    if (pid == ::getpid()) continue;
    const auto env = SplitNul(ReadProcFile(pid, "environ"));
    if (std::find(env.begin(), env.end(), needle) == env.end()) continue;
    const auto stat = ReadProcStat(pid);
    if (!stat || stat->state == 'Z') continue;  // gone, or exited and waiting for its parent
    pids.push_back(pid);
  }
  return pids;
}

bool OrqEnv::WaitProcesses(size_t n, std::chrono::seconds timeout) const {
  return WaitUntil([&] { return Processes().size() >= n; }, timeout);
}

bool OrqEnv::WaitNoProcesses(std::chrono::seconds timeout) const {
  return WaitUntil([&] { return Processes().empty(); }, timeout);
}

nlohmann::json OrqEnv::Status() const {
  RunResult r = Run({"status", "--json"});
  EXPECT_TRUE(Exits(r, 0));
  return nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
}

bool OrqEnv::WaitStatus(const std::function<bool(const nlohmann::json&)>& done,
                        std::chrono::seconds timeout) const {
  return WaitUntil(
      [&] {
        // (A failed `orq status` is already a test failure; its error document is not a status.)
        const nlohmann::json s = Status();
        return s.is_object() && !s.contains("error") && done(s);
      },
      timeout);
}

std::string OrqEnv::WriteFile(const std::string& name, const std::string& content) const {
  std::string path = home_ + "/" + name;
  std::ofstream(path) << content;
  return path;
}

int RunProgram(const std::vector<std::string>& argv, std::string& output,
               std::chrono::seconds timeout) {
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDONLY);  // never the test runner's stdin
    ::dup2(null, 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::close(out[0]);
    ::close(out[1]);
    std::vector<std::string> copy = argv;
    std::vector<char*> args;
    for (auto& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(out[1]);
  const auto deadline = Clock::now() + Scaled(timeout);
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
  return std::holds_alternative<Exited>(FromWaitStatus(status)) ? WEXITSTATUS(status) : -1;
}

std::string Command(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  std::string output;
  if (RunProgram(argv, output, timeout) != 0) {
    std::string line;
    for (const auto& a : argv) line += a + " ";
    throw std::runtime_error("'" + line + "' failed: " + output);
  }
  return output;
}

bool WaitGone(pid_t pid, std::chrono::seconds timeout) {
  return WaitUntil(
      [&] {
        const auto stat = ReadProcStat(pid);
        return !stat || stat->state == 'Z';
      },
      timeout);
}

int WaitExit(pid_t pid, std::chrono::seconds timeout, size_t* peak_rss) {
  int code = -1;
  WaitUntil(
      [&] {
        int status = 0;
        rusage usage{};
        const pid_t r = ::wait4(pid, &status, WNOHANG, &usage);
        if (r == pid) {
          code = ShellCode(FromWaitStatus(status));
          if (peak_rss) *peak_rss = static_cast<size_t>(usage.ru_maxrss) * 1024;
        }
        return r != 0;  // ended, or not our child (-1)
      },
      timeout);
  return code;
}

ScopedEnv::ScopedEnv(const char* name, const std::string& value) : name_(name) {
  if (const char* was = std::getenv(name)) before_ = was;
  ::setenv(name, value.c_str(), 1);
}

ScopedEnv::~ScopedEnv() {
  if (before_)
    ::setenv(name_.c_str(), before_->c_str(), 1);
  else
    ::unsetenv(name_.c_str());
}

::testing::AssertionResult Exits(const RunResult& result, int code) {
  if (result.code == code) return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure() << "'" << result.command << "' ";
  if (result.code == -1)
    failure << "hit its deadline after " << result.seconds << " s";
  else
    failure << "exited " << result.code;
  failure << ", not " << code << "\n--- its stderr:\n" << result.err;
  if (!result.out.empty()) failure << "--- its stdout:\n" << result.out;
  return failure;
}

std::string Example(const std::string& name) {
  return std::string(ORQ_SOURCE_DIR) + "/examples/" + name;
}

std::string JobId(const RunResult& submit) {
  const auto lines = Lines(submit.out);
  if (submit.code != 0 || lines.empty() || lines[0].empty() || lines[0][0] != 'j')
    throw std::runtime_error("orq submit failed (exit " + std::to_string(submit.code) +
                             "): " + submit.err);
  return lines[0];
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace orq::testing

#include "common/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>  // before Asio under C++20 with Boost 1.74

#include "tests/temp_dir.h"

namespace orq {
namespace {

using std::chrono::milliseconds;

// A child that runs `body` and exits 0. Its pid; the caller reaps it.
template <typename F> pid_t Fork(F body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    body();
    ::_exit(0);
  }
  return pid;
}

ExitStatus Reap(pid_t pid) {
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return FromWaitStatus(status);
}

TEST(ProcStatTest, FieldsComeAfterTheLastParenthesisWhateverTheCommandName) {
  auto s = ParseProcStat("4242 (a) b (c) d) S 1 4242 4000 0 -1 4194560 ...");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->state, 'S');
  EXPECT_EQ(s->ppid, 1);
  EXPECT_EQ(s->pgrp, 4242);
  EXPECT_EQ(s->session, 4000);
  EXPECT_EQ(ParseProcStat("1 (init) Z 0 1 1")->state, 'Z');
  EXPECT_FALSE(ParseProcStat(""));
  EXPECT_FALSE(ParseProcStat("no parenthesis at all"));
  EXPECT_FALSE(ParseProcStat("1 (x) S 1 2"));  // too few fields
}

TEST(ProcStatTest, ReadsCpuTimeWhenTheLineHasIt) {
  auto s = ParseProcStat("7 (x) S 1 7 7 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 1 0");
  ASSERT_TRUE(s);
  EXPECT_DOUBLE_EQ(s->cpu_seconds, 300.0 / static_cast<double>(::sysconf(_SC_CLK_TCK)));
  EXPECT_EQ(ParseProcStat("1 (init) Z 0 1 1")->cpu_seconds, 0);
}

TEST(FilesBeneathTest, NeitherTheDirectoryNorTheFileMayBeALink) {
  testing::TempDir tmp("beneath");
  const std::string dir = tmp.path() + "/output", elsewhere = tmp.path() + "/elsewhere";
  std::filesystem::create_directory(dir);
  std::filesystem::create_directory(elsewhere);
  std::ofstream(elsewhere + "/j1.0.1.out") << "not orq's";
  // A file in a real directory is opened and removed;
  const int fd = OpenBeneath(dir + "/j1.0.1.out", O_WRONLY | O_CREAT, 0600);
  EXPECT_GE(fd, 0);
  ::close(fd);
  EXPECT_TRUE(UnlinkBeneath(dir + "/j1.0.1.out"));
  // a directory that is a link is neither written nor read through, nor is anything unlinked;
  std::filesystem::create_directory_symlink(elsewhere, tmp.path() + "/linked");
  EXPECT_LT(OpenBeneath(tmp.path() + "/linked/j1.0.1.out", O_RDONLY), 0);
  EXPECT_LT(OpenBeneath(tmp.path() + "/linked/j2.0.1.out", O_WRONLY | O_CREAT, 0600), 0);
  EXPECT_FALSE(UnlinkBeneath(tmp.path() + "/linked/j1.0.1.out"));
  EXPECT_TRUE(std::filesystem::exists(elsewhere + "/j1.0.1.out"));
  EXPECT_FALSE(std::filesystem::exists(elsewhere + "/j2.0.1.out"));
  // and a file that is a link is not opened.
  std::filesystem::create_symlink(elsewhere + "/j1.0.1.out", dir + "/j3.0.1.out");
  EXPECT_LT(OpenBeneath(dir + "/j3.0.1.out", O_RDONLY), 0);
}

TEST(ProcStatTest, ReadsThisProcess) {
  auto s = ReadProcStat(::getpid());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->ppid, ::getppid());
  EXPECT_EQ(s->session, ::getsid(0));
  EXPECT_FALSE(ReadProcStat(0));
  EXPECT_GT(PeakRss(::getpid()), 0u);
  EXPECT_EQ(SplitNul(std::string("a\0bc\0", 5)), (std::vector<std::string>{"a", "bc"}));
}

TEST(ExitStatusTest, SaysHowAChildEnded) {
  EXPECT_EQ(Reap(Fork([] { ::_exit(3); })), ExitStatus(Exited{3}));
  EXPECT_EQ(Reap(Fork([] { ::raise(SIGKILL); })), ExitStatus(Killed{SIGKILL}));
  EXPECT_EQ(ShellCode(Exited{3}), 3);
  EXPECT_EQ(ShellCode(Killed{9}), 137);
  EXPECT_EQ(ShellCode(TimedOut{1, 143}), 143);
  EXPECT_EQ(ShellCode(NotStarted{"no"}), 127);
  EXPECT_EQ(Describe(Exited{1}), "exited with code 1");
  EXPECT_EQ(Describe(Killed{9}), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(Describe(TimedOut{0.5}), "timed out after 0.5 s");
  EXPECT_EQ(Describe(NotStarted{"cannot run 'x': command not found"}),
            "cannot run 'x': command not found");
}

TEST(StopProcessTest, TermIsEnoughForAProcessThatHonoursIt) {
  const pid_t pid = Fork([] { ::pause(); });
  EXPECT_TRUE(StopProcess(pid, milliseconds(10000)));
  EXPECT_EQ(Reap(pid), ExitStatus(Killed{SIGTERM}));
}

TEST(StopProcessTest, KillFollowsTermAfterTheGrace) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = Fork([&] {
    ::signal(SIGTERM, SIG_IGN);
    (void)!::write(ready[1], "r", 1);  // TERM is ignored from here on
    for (;;) ::pause();
  });
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  EXPECT_TRUE(StopProcess(pid, milliseconds(200)));
  EXPECT_EQ(Reap(pid), ExitStatus(Killed{SIGKILL}));
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST(StopProcessTest, WaitForExitHasADeadline) {
  const pid_t pid = Fork([] { ::pause(); });
  EXPECT_FALSE(WaitForExit(pid, ProcessClock::now() + milliseconds(50)));
  ::kill(pid, SIGKILL);
  EXPECT_TRUE(WaitForExit(pid, ProcessClock::now() + milliseconds(10000)));  // a zombie has exited
  EXPECT_EQ(Reap(pid), ExitStatus(Killed{SIGKILL}));
  EXPECT_TRUE(StopProcess(pid, milliseconds(0)));  // gone already
}

// Subprocesses on a real loop, reaped on SIGCHLD as the worker does.
class SubprocessTest : public ::testing::Test {
 protected:
  SubprocessTest() : children_(loop_, SIGCHLD) { Watch(); }
  void Watch() {
    children_.async_wait([this](const boost::system::error_code& ec, int) {
      if (ec) return;
      if (child_) child_->Poll();
      Watch();
    });
  }
  SubprocessResult Run(SubprocessOptions options) {
    std::optional<SubprocessResult> result;
    child_ = Subprocess::Start(loop_, std::move(options),
                               [&](SubprocessResult r) { result = std::move(r); });
    const auto deadline = ProcessClock::now() + std::chrono::seconds(20);
    while (!result && ProcessClock::now() < deadline) loop_.run_one_for(milliseconds(50));
    EXPECT_TRUE(result) << "no result within 20 s";
    return result.value_or(SubprocessResult{NotStarted{"(no result)"}, {}, {}, false});
  }

  boost::asio::io_context loop_;
  boost::asio::signal_set children_;
  std::shared_ptr<Subprocess> child_;
};

TEST_F(SubprocessTest, CapturesBothStreamsAndTheExit) {
  auto r = Run({{"/bin/sh", "-c", "echo out; echo err >&2; exit 4"}, "", 1024});
  EXPECT_EQ(r.status, ExitStatus(Exited{4}));
  EXPECT_EQ(r.stdout_text, "out\n");
  EXPECT_EQ(r.stderr_text, "err\n");
  EXPECT_FALSE(r.truncated);
}

TEST_F(SubprocessTest, OutputOverTheLimitIsSpilledToAFileOrDropped) {
  const testing::TempDir dir("orq-spill-test");
  SubprocessOptions o{{"/bin/sh", "-c", "printf abcdefgh; printf 12345 >&2"}, "", 4};
  o.spill = dir.path() + "/t";
  auto r = Run(std::move(o));
  EXPECT_EQ(r.stdout_text, "abcd");
  EXPECT_EQ(r.stderr_text, "1234");
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.stdout_file, dir.path() + "/t.out");
  std::ifstream out(r.stdout_file), err(r.stderr_file);
  std::string rest_out((std::istreambuf_iterator<char>(out)), {});
  std::string rest_err((std::istreambuf_iterator<char>(err)), {});
  EXPECT_EQ(rest_out, "efgh");
  EXPECT_EQ(rest_err, "5");
  // Under the limit, no file; without a spill path, the rest is dropped.
  r = Run({{"/bin/sh", "-c", "printf ab"}, "", 4});
  EXPECT_TRUE(r.stdout_file.empty());
  r = Run({{"/bin/sh", "-c", "printf abcdefgh"}, "", 4});
  EXPECT_TRUE(r.truncated);
  EXPECT_TRUE(r.stdout_file.empty());
}

TEST_F(SubprocessTest, AProgramThatCannotStartSaysWhy) {
  auto r = Run({{"orq-no-such-program"}, "", 1024});
  EXPECT_EQ(r.status,
            ExitStatus(NotStarted{"cannot run 'orq-no-such-program': command not found"}));
  r = Run({{"/bin/true"}, "/nonexistent/dir", 1024});
  EXPECT_TRUE(std::holds_alternative<NotStarted>(r.status));
}

TEST_F(SubprocessTest, ATimeoutStopsAChildThatIgnoresTermWithKill) {
  // The child ignores TERM, says so, and would sleep for a minute. (Its time limit leaves a
  // loaded machine's shell two seconds to get to its trap: sooner, TERM still ends it.)
  SubprocessOptions o{
      {"/bin/sh", "-c", "trap '' TERM; echo ready; sleep 60"}, "", 1024, 2.0, milliseconds(200)};
  auto r = Run(std::move(o));
  EXPECT_EQ(r.status, ExitStatus(TimedOut{2.0, 128 + SIGKILL}));
  EXPECT_EQ(r.stdout_text, "ready\n");  // the output so far is kept
}

TEST_F(SubprocessTest, TerminateEndsTheWholeGroup) {
  const testing::TempDir dir("orq-process-test");
  const std::string pid_file = dir.path() + "/grandchild";
  std::optional<SubprocessResult> result;
  child_ = Subprocess::Start(loop_,
                             {{"/bin/sh", "-c",
                               "sleep 60 & echo $! > " + pid_file + ".tmp; mv " + pid_file +
                                   ".tmp " + pid_file + "; wait"},
                              "",
                              1024},
                             [&](SubprocessResult r) { result = std::move(r); });
  // When the grandchild runs (its pid is in the file),
  const auto deadline = ProcessClock::now() + std::chrono::seconds(20);
  pid_t grandchild = 0;
  while (!grandchild && ProcessClock::now() < deadline) {
    loop_.run_one_for(milliseconds(10));
    FILE* f = std::fopen(pid_file.c_str(), "r");
    if (f && std::fscanf(f, "%d", &grandchild) != 1) grandchild = 0;
    if (f) std::fclose(f);
  }
  ASSERT_GT(grandchild, 0) << "the shell never started its child";
  // Terminate() ends the shell and its child with it.
  child_->Terminate();
  while (!result && ProcessClock::now() < deadline) loop_.run_one_for(milliseconds(50));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, ExitStatus(Killed{SIGTERM}));
  EXPECT_TRUE(WaitForExit(grandchild, ProcessClock::now() + std::chrono::seconds(10)));
}

}  // namespace
}  // namespace orq

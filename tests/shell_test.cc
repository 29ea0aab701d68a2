// Shell users first (issue 9): commands with GNU parallel's input sources and replacement strings,
// --lines and --array, tasks in the submitter's directory and environment, ORQ_* variables. Through
// the real binary; the replacement strings against GNU parallel itself.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <set>

#include "tests/harness.h"

namespace orq::testing {
namespace {

using Words = std::vector<std::string>;

Words Concat(Words a, const Words& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// GNU parallel's output for the same arguments (it must be installed: scripts/setup.sh does).
std::string Parallel(const Words& args) {
  std::string out;
  const int code = RunProgram(Concat({"parallel", "--will-cite", "-k"}, args), out);
  if (code != 0)
    throw std::runtime_error(
        "GNU parallel is needed for this test (apt-get install parallel; "
        "scripts/setup.sh installs it) and it failed with " +
        std::to_string(code) + ": " + out);
  return out;
}

// Values that exercise every replacement string and GNU parallel's quoting.
const Words kValues = {"a b.c",     "x'y", "d/e.f.g", "",        "we$ird", "/a/b.c",
                       "c",         "d/",  "./e.x",   ".bashrc", "a//b",   "..",
                       "tab\there", "/",   "semi;co", "a.b/c",   "*.txt",  "~"};

TEST(ShellTest, ReplacementStringsAgreeWithGnuParallelsDryRun) {
  OrqEnv env;
  const std::string file = env.WriteFile("args.txt", "l1\n\nl 3.x\n");
  const std::vector<Words> cases = {
      // one word with shell syntax: sh -c, values quoted
      Concat({"echo {} {.} {/} {//} {/.} {#}", ":::"}, kValues),
      Concat({"echo {1} {1.} {1/} {1//} {1/.}", ":::"}, kValues),
      Concat({"echo x", ":::"}, kValues),  // no replacement string: appended
      // several words: argv
      Concat({"echo", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}", ":::"}, kValues),
      // several sources: cross product, linked, files
      {"echo {2} {1.} {}", ":::", "a.x", "b", ":::", "c d", "e"},
      {"echo", "{}", ":::", "a", "b", ":::", "1", "2", "3", ":::+", "x", "y"},
      {"echo", ":::", "a", "b", "::::", file},
      {"echo {1/} {2.}", "::::", file, file},
      {":::", "echo a", "ls -l /"},  // no command: each argument is a command line
  };
  for (const Words& c : cases) {
    RunResult orq = env.Run(Concat({"run", "--dry-run", "--"}, c));
    ASSERT_EQ(orq.code, 0) << orq.err;
    EXPECT_EQ(orq.out, Parallel(Concat({"--dry-run"}, c))) << c[0];
  }
}

TEST(ShellTest, CommandsRunAsUnderGnuParallel) {
  OrqEnv env;
  // argv words: a value with spaces or quotes stays one argument, as with parallel -q.
  const Words command = {"printf", "[%s|%s|%s]\\n", "{}", "{.}", "{/}", ":::"};
  RunResult r = env.Run(Concat(Concat({"run", "-w", "1", "--"}, command), kValues));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, Parallel(Concat(Concat({"-q"}, command), kValues)));
  // One word with shell syntax runs under sh, as parallel runs it.
  const Words line = {"printf '<%s>' {} && echo {#}", ":::"};
  r = env.Run(Concat(Concat({"run", "-w", "1", "--"}, line), kValues));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, Parallel(Concat(line, kValues)));
}

// setenv for the scope of a test: orq (and the submitter's environment it records) sees it.
struct ScopedEnv {
  ScopedEnv(const char* name, const char* value) : name(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name); }
  const char* name;
};

TEST(ShellTest, TasksRunInTheSubmittersDirectoryWithItsEnvironment) {
  OrqEnv env;
  namespace fs = std::filesystem;
  const fs::path work = fs::path(env.home()) / "work";
  fs::create_directories(work / "sub");
  fs::create_directories(fs::path(env.home()) / "other");
  // Given a broker and worker started elsewhere, before the variable is set,
  ASSERT_EQ(env.Run({"up", "-w", "1", "-t", "2"}).code, 0);
  ScopedEnv greeting("ORQ_TEST_GREETING", "hi");
  env.set_directory(work.string());
  auto submit_and_gather = [&](const Words& args) {
    RunResult s = env.Run(Concat({"submit"}, args));
    RunResult g = env.Run({"gather", JobId(s)});
    return g;
  };
  const char* home_var = getenv("HOME");
  const std::string home = home_var ? home_var : "unset";
  const std::string show = "pwd; echo \"${ORQ_TEST_GREETING-unset} ${A-unset} ${HOME-unset}\"";
  // When a task is submitted from `work`, it runs there with the submitter's environment;
  RunResult r = submit_and_gather({"--", show});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, work.string() + "\nhi unset " + home + "\n");
  // --cwd (absolute or relative to here) and --env change that;
  r = submit_and_gather(
      {"--cwd", "../other", "--env", "A=1", "--env", "ORQ_TEST_GREETING=yo", "--", show});
  EXPECT_EQ(r.out, env.home() + "/other\nyo 1 " + home + "\n");
  // --clean-env keeps only --env (and ORQ_*);
  r = submit_and_gather({"--clean-env", "--env", "A=2", "--", show});
  EXPECT_EQ(r.out, work.string() + "\nunset 2 unset\n");
  r = submit_and_gather({"--clean-env", "--", "sh", "-c", "env | cut -d= -f1 | sort"});
  EXPECT_EQ(r.out, "ORQ_ATTEMPT\nORQ_JOB_ID\nORQ_SLOT\nORQ_TASK_ID\nORQ_TASK_INDEX\nPWD\n");
  // a task file's cwd (relative to the submitter's) and env apply to their task;
  const std::string tasks = env.WriteFile(
      "tasks.jsonl", "{\"kind\": \"shell\", \"cmd\": \"" + std::string("pwd; echo $A") +
                         "\", \"cwd\": \"sub\", \"env\": {\"A\": \"3\"}}\n");
  r = submit_and_gather({"-f", tasks});
  EXPECT_EQ(r.out, (work / "sub").string() + "\n3\n");
  // and a directory that does not exist on the worker fails the task, saying so.
  r = submit_and_gather({"--cwd", "/nonexistent/dir", "--", "true"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("the directory /nonexistent/dir does not exist"), std::string::npos)
      << r.err;
}

TEST(ShellTest, EachTaskKnowsItsJobTaskAttemptAndSlot) {
  OrqEnv env;
  // Two tasks that fail on their first attempt, on one worker with two shell slots, both running
  // at once for a moment (each waits for the other's file).
  const std::string dir = env.home();
  const std::string line =
      "echo $ORQ_JOB_ID $ORQ_TASK_ID $ORQ_TASK_INDEX $ORQ_ATTEMPT; echo $ORQ_SLOT > " + dir +
      "/slot.$ORQ_TASK_INDEX.$ORQ_ATTEMPT; for i in $(seq 100); do [ $(ls " + dir +
      "/slot.*.$ORQ_ATTEMPT | wc -l) = 2 ] && break; sleep 0.05; done; [ $ORQ_ATTEMPT = 2 ]\n";
  RunResult r = env.Run({"run", "-w", "1", "-t", "2", "--retries", "1", "--retry-backoff",
                         "0.01,0.01", "--lines", "-"},
                        line + line);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "j1 j1.0 0 2\nj1 j1.1 1 2\n");
  for (const char* attempt : {"1", "2"}) {
    std::set<std::string> slots;
    for (const char* index : {"0", "1"}) {
      auto text = Command({"cat", dir + "/slot." + index + "." + attempt});
      slots.insert(text);
    }
    EXPECT_EQ(slots, (std::set<std::string>{"0\n", "1\n"})) << "attempt " << attempt;
  }
}

TEST(ShellTest, LinesAndArrays) {
  OrqEnv env;
  RunResult r =
      env.Run({"run", "-w", "1", "--lines", "-"}, "echo one\n\n  \necho two | tr a-z A-Z\r\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "one\nTWO\n");
  r = env.Run(
      {"run", "-w", "1", "--array", "1-5:2,10", "--", "sh", "-c", "echo $0 $ORQ_ARRAY_ID", "{}"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "1 1\n3 3\n5 5\n10 10\n");
  // A lone word with shell syntax runs under sh.
  r = env.Run({"run", "-w", "1", "--", "echo a && echo b"});
  EXPECT_EQ(r.out, "a\nb\n");
}

TEST(ShellTest, MistakesNameTheFlagOrFileAndSubmitNothing) {
  OrqEnv env;
  auto refused = [&](const Words& args, const std::string& says, const std::string& input = "") {
    RunResult r = env.Run(args, input);
    EXPECT_EQ(r.code, 2) << args.back();
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  };
  const std::string commands = env.WriteFile("commands.txt", "\necho hello\n");
  refused({"run", commands}, commands + ":2: not JSON");
  refused({"run", commands}, "use --lines " + commands);
  refused({"run", env.home()}, env.home() + " is a directory");
  refused({"run"}, "give what to run");
  refused({"run", "--array", "5-1", "--", "true"}, "--array takes ranges");
  refused({"run", "--", "echo", "{3}", ":::", "a"}, "{3} names input source 3");
  refused({"run", "--", "echo", ":::"}, "::: needs at least one argument");
  refused({"run", "--env", "ORQ_TEST_SURELY_UNSET", "--", "true"},
          "ORQ_TEST_SURELY_UNSET is not set here");
  refused({"run", "--lines", "-"}, "no commands", "\n\n");
  refused({"submit", "--", "echo", "{%}", ":::", "a"}, "use $ORQ_SLOT");
}

}  // namespace
}  // namespace orq::testing

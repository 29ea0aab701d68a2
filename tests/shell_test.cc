// Shell users first (issue 9): commands with GNU parallel's input sources and replacement strings,
// --lines and --array, tasks in the submitter's directory and environment, ORQ_* variables. Through
// the real binary; the replacement strings against GNU parallel itself.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "tests/harness.h"

namespace orq::testing {
namespace {

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
    ASSERT_TRUE(Exits(orq, 0));
    EXPECT_EQ(orq.out, Parallel(Concat({"--dry-run"}, c))) << c[0];
  }
}

TEST(ShellTest, CommandsRunAsUnderGnuParallel) {
  OrqEnv env;
  // Words without shell syntax are exec'ed: a value with spaces or quotes stays one argument,
  // as parallel's shell gets it quoted.
  const Words command = {"printf", "%s:%s:%s.", "{}", "{.}", "{/}", ":::"};
  RunResult r = env.Run(Concat(Concat({"run", "-w", "1", "--"}, command), kValues));
  ASSERT_TRUE(Exits(r, 0));
  EXPECT_EQ(r.out, Parallel(Concat(command, kValues)));
  // One word with shell syntax, or several words of which one has it (as the tutorial writes
  // `sleep 0.1\; echo x`), or a builtin (exit): one shell line, as parallel runs it.
  for (const Words& line : {Words{"printf '<%s>' {} && echo {#}", ":::"},
                            Words{"printf", "%s.", "{}", "&&", "echo", "{#}", ":::"},
                            Words{"sleep", "0.01;", "echo", "x", ":::"}}) {
    r = env.Run(Concat(Concat({"run", "-w", "1", "--"}, line), kValues));
    ASSERT_TRUE(Exits(r, 0)) << line[0];
    EXPECT_EQ(r.out, Parallel(Concat(line, kValues))) << line[0];
  }
  // exit is the shell's: parallel's exit code is the number of tasks that failed, and orq's too.
  const Words exits = {"exit", "{}", ":::", "0", "3"};
  r = env.Run(Concat({"run", "-w", "1", "--"}, exits));
  std::string out;
  EXPECT_EQ(RunProgram(Concat({"parallel", "--will-cite", "-k"}, exits), out), 1);
  EXPECT_EQ(r.code, 1) << r.err;
}

TEST(ShellTest, OutputIsExactlyWhatTheTasksPrintedAsUnderGnuParallel) {
  OrqEnv env;
  // Tasks that print nothing, a line, and text without a final newline: nothing is added,
  // with --tag or without (a pipeline such as `| wc -l` counts the tasks' own lines).
  const Words line = {
      "[ {} = 1 ] && echo one; [ {} = 2 ] && printf two; true", ":::", "0", "1", "2", "3"};
  for (const Words& flags : {Words{}, Words{"--tag"}}) {
    RunResult r = env.Run(Concat(Concat(Concat({"run", "-w", "1"}, flags), {"--"}), line));
    ASSERT_TRUE(Exits(r, 0));
    EXPECT_EQ(r.out, Parallel(Concat(flags, line))) << (flags.empty() ? "" : flags[0]);
  }
}

TEST(ShellTest, TasksRunInTheSubmittersDirectoryWithItsEnvironment) {
  OrqEnv env;
  namespace fs = std::filesystem;
  const fs::path work = fs::path(env.home()) / "work";
  fs::create_directories(work / "sub");
  fs::create_directories(fs::path(env.home()) / "other");
  // Given a broker and worker started elsewhere, before the variable is set,
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "2"}), 0));
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
  EXPECT_TRUE(Exits(r, 0));
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
  EXPECT_TRUE(Exits(r, 1));
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
  RunResult r = env.Run({"run", "-w", "1", "-t", "2", "--retries", "2", "--retry-backoff",
                         "0.01,0.01", "--lines", "-"},
                        line + line);
  ASSERT_TRUE(Exits(r, 0));
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
  ASSERT_TRUE(Exits(r, 0));
  EXPECT_EQ(r.out, "one\nTWO\n");
  r = env.Run(
      {"run", "-w", "1", "--array", "1-5:2,10", "--", "sh", "-c", "echo $0 $ORQ_ARRAY_ID", "{}"});
  ASSERT_TRUE(Exits(r, 0));
  EXPECT_EQ(r.out, "1 1\n3 3\n5 5\n10 10\n");
  // A lone word with shell syntax runs under sh.
  r = env.Run({"run", "-w", "1", "--", "echo a && echo b"});
  EXPECT_EQ(r.out, "a\nb\n");
}

TEST(ShellTest, MistakesNameTheFlagOrFileAndSubmitNothing) {
  OrqEnv env;
  auto refused = [&](const Words& args, const std::string& says, const std::string& input = "") {
    RunResult r = env.Run(args, input);
    EXPECT_TRUE(Exits(r, 2)) << args.back();
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  };
  const std::string commands = env.WriteFile("commands.txt", "\necho hello\n");
  refused({"run", "-f", commands}, commands + ":2: not JSON");
  refused({"run", "-f", commands}, "use --lines " + commands);
  // One word naming a file that is not a program: the ways to say what was meant.
  refused({"run", commands}, commands + " is a file and not a program: -f " + commands +
                                 " runs a task file (JSON lines), --lines " + commands +
                                 " runs each line as a shell command, and orq run -- " + commands +
                                 " runs it as a program");
  refused({"run", env.home()}, env.home() + " is a directory, not a program or a file");
  refused({"run"}, "give what to run");
  // A command and another way to say what to run: not both.
  refused({"submit", "--sleep", "1", "true"},
          "give a command or one of -f, --lines, --sleep, --cpu, --echo; not both");
  refused({"run", "--lines", commands, "echo"},
          "--lines " + commands + " gives the commands; drop the command (echo)");
  refused({"run", "--array", "5-1", "--", "true"}, "--array takes ranges");
  refused({"run", "--", "echo", "{3}", ":::", "a"}, "{3} names input source 3");
  refused({"run", "--", "echo", ":::"}, "::: needs at least one argument");
  refused({"run", "--env", "ORQ_TEST_SURELY_UNSET", "--", "true"},
          "ORQ_TEST_SURELY_UNSET is not set here");
  refused({"run", "--lines", "-"}, "no commands", "\n\n");
  refused({"submit", "--", "echo", "{%}", ":::", "a"}, "use $ORQ_SLOT");
}

// The README's block of GNU parallel command lines: each runs with orq run as with parallel,
// same stdout, both exit 0 or neither (issue 19's acceptance: the section is true line by line).
TEST(ShellTest, TheReadmesParallelLinesRunTheSameWithOrq) {
  OrqEnv env;
  const std::string readme = ReadFile(std::string(ORQ_SOURCE_DIR) + "/README.md");
  const size_t intro = readme.find("GNU parallel's command lines run as they are with `orq run`");
  ASSERT_NE(intro, std::string::npos) << "the README lost its block of parallel lines";
  const size_t open = readme.find("```sh\n", intro), close = readme.find("```\n", open + 6);
  ASSERT_NE(close, std::string::npos);
  const auto lines = Lines(readme.substr(open + 6, close - open - 6));
  ASSERT_GE(lines.size(), 10u);
  const std::string dir = env.home() + "/lines";
  std::filesystem::create_directories(dir + "/d");
  std::ofstream(dir + "/names.txt") << "a b.txt\nc\nd/e.tar.gz\n";
  std::ofstream(dir + "/a b.txt") << "hello\n";
  std::ofstream(dir + "/c");
  std::ofstream(dir + "/d/e.tar.gz") << "gz";
  const std::string bin = std::filesystem::path(ORQ_BINARY).parent_path();
  for (const std::string& line : lines) {
    ASSERT_NE(line.find("orq run "), std::string::npos) << line;
    std::string with_parallel = line;
    with_parallel.replace(line.find("orq run "), 8, "parallel --will-cite -k ");
    auto run = [&](const std::string& command, std::string& out) {
      return RunProgram({"sh", "-c",
                         "cd '" + dir + "' && export PATH='" + bin + "':$PATH ORQ_HOME='" +
                             env.home() + "' SHELL=/bin/sh && (" + command + ") 2>/dev/null"},
                        out);
    };
    std::string orq, parallel;
    const int orq_code = run(line, orq), parallel_code = run(with_parallel, parallel);
    EXPECT_EQ(orq, parallel) << line;
    EXPECT_EQ(orq_code == 0, parallel_code == 0)
        << line << ": " << orq_code << " " << parallel_code;
  }
}

// As GNU parallel reads its command line: every word from the command on belongs to the command or
// to its input sources, never to orq, with or without "--" (issue 19).
TEST(ShellTest, WordsAfterTheCommandAreNeverOrqsOptions) {
  OrqEnv env;
  // Values that look like orq's options (files named so, as `gzip ::: *` would pass them).
  const Words values = {"--dry-run", "--help", "--version", "-q", "--json", "--tag", "-w", "--"};
  const Words command = {"printf", "%s,"};  // (parallel runs it through a shell: no \\n)
  RunResult r = env.Run(Concat(Concat({"run", "-w", "1"}, command), Concat({":::"}, values)));
  ASSERT_TRUE(Exits(r, 0)) << r.err;
  EXPECT_EQ(r.out, Parallel(Concat(command, Concat({":::"}, values))));
  EXPECT_EQ(r.out, "--dry-run,--help,--version,-q,--json,--tag,-w,--,");
  // The command's own options stay its own: grep keeps -q (nothing printed; one file fails),
  // lame keeps -o.
  const std::string has = env.WriteFile("has", "hello\n"), lacks = env.WriteFile("lacks", "bye\n");
  r = env.Run({"run", "-w", "1", "grep", "-q", "hello", ":::", has, lacks});
  EXPECT_TRUE(Exits(r, 1)) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("2 tasks: 1 ok, 1 failed"), std::string::npos) << r.err;
  r = env.Run({"run", "--dry-run", "lame", "{}", "-o", "{.}.mp3", ":::", "a.wav", "b.wav"});
  EXPECT_TRUE(Exits(r, 0)) << r.err;
  EXPECT_EQ(r.out, "lame a.wav -o a.mp3\nlame b.wav -o b.mp3\n");
  // orq's options after the command are the command's; "--" is still accepted, and a "--" after
  // the command is the command's too.
  r = env.Run({"run", "-w", "1", "echo", "--tag", "-w", "2", ":::", "a"});
  EXPECT_EQ(r.out, "--tag -w 2 a\n");
  r = env.Run({"run", "-w", "1", "--tag", "--", "echo", "--", ":::", "a"});
  EXPECT_EQ(r.out, "a\t-- a\n");
  // orq submit reads its command line the same way.
  r = env.Run(
      {"submit", "--dry-run", "--timeout", "5", "sh", "-c", "echo $0", "--json", ":::", "--help"});
  EXPECT_TRUE(Exits(r, 0)) << r.err;
  EXPECT_EQ(r.out, "sh -c 'echo $0' --json --help\n");
  // A word before the command that is not orq's option is still refused, with its hint.
  r = env.Run({"run", "-k", "echo", ":::", "a"});
  EXPECT_TRUE(Exits(r, 2));
  EXPECT_NE(r.err.find("unknown option -k; results print in the order"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.out, "");
}

// With no ::: / :::: / --lines / task file, lines piped in are the input source, GNU parallel's
// most common use (`find ... | parallel gzip`); a terminal or /dev/null is not read (issue 19).
TEST(ShellTest, PipedLinesAreTheInputWhenNoSourceIsGiven) {
  OrqEnv env;
  const std::string dir = env.home() + "/logs";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  std::string names;
  for (const char* name : {"a.log", "b c.log", "-q.log"}) {
    std::ofstream(dir + "/" + name) << "log " << name << "\n";
    names += std::string("./") + name + "\n";
  }
  env.set_directory(dir);
  RunResult r = env.Run({"run", "-w", "1", "gzip"}, names);  // find . -name '*.log' | orq run gzip
  env.set_directory("");
  ASSERT_TRUE(Exits(r, 0)) << r.err;
  EXPECT_EQ(r.out, "");
  for (const char* name : {"a.log", "b c.log", "-q.log"}) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + name + ".gz")) << name;
    EXPECT_FALSE(std::filesystem::exists(dir + "/" + name)) << name;
  }
  // Each line is one value, in the replacement strings too; with no command, each a command.
  r = env.Run({"run", "-w", "1", "echo", "got", "{.}"}, "a b.x\nc\n");
  EXPECT_EQ(r.out, "got a b\ngot c\n");
  r = env.Run({"run", "-w", "1"}, "echo one\necho two | tr a-z A-Z\n");
  EXPECT_EQ(r.out, "one\nTWO\n");
  // A source given: stdin is not read.
  r = env.Run({"run", "-w", "1", "echo", ":::", "a"}, "b\n");
  EXPECT_EQ(r.out, "a\n");
  // /dev/null (the harness's stdin when no input is given): the command runs once.
  r = env.Run({"run", "-w", "1", "echo", "once"});
  EXPECT_EQ(r.out, "once\n");
  // An empty pipe: nothing to run, as with parallel; exit 0.
  std::string out;
  EXPECT_EQ(
      RunProgram({"sh", "-c", ": | ORQ_HOME=" + env.home() + " " + ORQ_BINARY + " run -w 1 echo x"},
                 out),
      0);
  EXPECT_EQ(out, "orq: nothing to run: no lines on stdin\n");
  // orq submit too.
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1"}), 0));
  const std::string job = JobId(env.Run({"submit", "echo"}, "x\ny\n"));
  r = env.Run({"gather", job});
  EXPECT_EQ(r.out, "x\ny\n");
}

// Waits until `path` holds `text`; false at the deadline.
bool WaitForText(const std::string& path, const std::string& text, std::chrono::seconds timeout) {
  return WaitUntil([&] { return ReadFile(path).find(text) != std::string::npos; }, timeout);
}

TEST(ShellTest, RunPrintsEachResultAsSoonAsItAndEveryEarlierOneAreDone) {
  OrqEnv env;
  // Given a run whose second task waits for a file the test makes only once the first task's
  // result is printed,
  const std::string go = env.home() + "/go";
  pid_t run = env.Start({"run", "-w", "1", "-t", "2", "--", "sh", "-c",
                         "[ $0 = 1 ] && echo first || { while [ ! -e " + go +
                             " ]; do sleep 0.02; done; echo second; }",
                         ":::", "1", "2"});
  // Then the first result is printed while the second task still runs,
  ASSERT_TRUE(WaitForText(env.home() + "/started.out", "first\n", std::chrono::seconds(30)))
      << ReadFile(env.home() + "/started.err");
  EXPECT_EQ(ReadFile(env.home() + "/started.out"), "first\n");
  // and the second once it is done.
  std::ofstream(go).put('\n');
  EXPECT_EQ(WaitExit(run, std::chrono::seconds(30)), 0);
  EXPECT_EQ(ReadFile(env.home() + "/started.out"), "first\nsecond\n");
}

TEST(ShellTest, UnorderedPrintsInFinishingOrderAndJsonCarriesIndexAndCommand) {
  OrqEnv env;
  // Task 0 finishes only after task 1's line is out: it waits for a file the test makes then.
  const std::string mark = env.home() + "/go", out = env.home() + "/started.out";
  const pid_t run = env.Start(
      {"run", "-w", "1", "-t", "2", "--unordered", "--json", "--", "sh", "-c",
       "if [ $0 = 0 ]; then while [ ! -e " + mark + " ]; do sleep 0.02; done; fi; echo $0",
       ":::", "0", "1"});
  ASSERT_TRUE(WaitUntil([&] { return Lines(ReadFile(out)).size() == 1; }))
      << ReadFile(env.home() + "/started.err");
  std::ofstream{mark};
  ASSERT_EQ(WaitExit(run, std::chrono::seconds(60)), 0) << ReadFile(env.home() + "/started.err");
  auto lines = Lines(ReadFile(out));
  ASSERT_EQ(lines.size(), 2u);
  auto first = nlohmann::json::parse(lines[0]), second = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(first["index"], 1);
  EXPECT_EQ(first["stdout"], "1\n");
  EXPECT_EQ(first["seq"], 2);
  EXPECT_EQ(first["argv"].back(), "1");
  EXPECT_EQ(second["index"], 0);
  RunResult r = env.Run({"run", "-w", "1", "--json", "--lines", "-"}, "echo a | tr a b\n");
  EXPECT_EQ(nlohmann::json::parse(r.out)["cmd"], "echo a | tr a b");
}

TEST(ShellTest, TagPrefixesEachLineWithTheTasksArguments) {
  OrqEnv env;
  // The backslashes are the shell's to read (a word with one runs under sh), as in parallel.
  RunResult r =
      env.Run({"run", "-w", "1", "--tag", "--", "printf", "x\\\\ny\\\\n", ":::", "a", "b c"});
  ASSERT_TRUE(Exits(r, 0));
  EXPECT_EQ(r.out, "a\tx\na\ty\nb c\tx\nb c\ty\n");
  // The same as GNU parallel.
  std::string parallel;
  ASSERT_EQ(RunProgram({"parallel", "--will-cite", "-k", "--tag", "printf", "x\\\\ny\\\\n",
                        ":::", "a", "b c"},
                       parallel),
            0)
      << parallel;
  EXPECT_EQ(parallel, r.out);
  // --lines: the tag is the command line.
  r = env.Run({"run", "-w", "1", "--tag", "--lines", "-"}, "echo hi\n");
  EXPECT_EQ(r.out, "echo hi\thi\n");
}

TEST(ShellTest, HaltNowCancelsWhatRunsAndHaltSoonLetsItFinish) {
  OrqEnv env;
  // now: the failure cancels the task still running;
  const std::string started = env.home() + "/started-long";
  RunResult r = env.Run({"run", "-w", "1", "-t", "2", "--halt", "now,fail=1", "--lines", "-"},
                        "touch " + started + "; sleep 60; echo late\n" + "while [ ! -e " + started +
                            " ]; do sleep 0.02; done; exit 3\n");
  EXPECT_TRUE(Exits(r, 1));
  EXPECT_EQ(r.out.find("late"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("1 failed, 1 cancelled: halted at a failure (--halt now,fail=1)"),
            std::string::npos)
      << r.err;
  // soon: the running task finishes; what had not started is not started.
  // (The first runs until 2 s after the second is about to fail, so its slot is not the one
  // freed first, even on a loaded machine.)
  const std::string failing = env.home() + "/failing";
  std::string lines = "touch " + started + "2; while [ ! -e " + failing +
                      " ]; do sleep 0.02; done; sleep 2; echo late\n" + "while [ ! -e " + started +
                      "2 ]; do sleep 0.02; done; touch " + failing + "; exit 3\n";
  for (int i = 0; i < 20; ++i) lines += "sleep 0.5; echo queued\n";
  r = env.Run({"run", "-w", "1", "-t", "2", "--halt", "soon,fail=1", "--lines", "-"}, lines);
  EXPECT_TRUE(Exits(r, 1));
  EXPECT_NE(r.out.find("late\n"), std::string::npos) << r.out;
  size_t queued = 0;  // both slots were busy until the failure: none of them ever started
  for (const auto& l : Lines(r.out)) queued += l == "queued";
  EXPECT_EQ(queued, 0u) << r.out;
  EXPECT_NE(r.err.find("halted at a failure (--halt soon,fail=1)"), std::string::npos) << r.err;
  // success=N halts once that many ended ok, and exits 0.
  r = env.Run({"run", "-w", "1", "-t", "1", "--halt", "now,success=1", "--", "sh", "-c",
               "[ $0 = 1 ] || sleep 60", ":::", "1", "2", "3"});
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_NE(r.err.find("halted at a success"), std::string::npos) << r.err;
}

// GNU parallel's tutorial: `parallel -j1 --halt soon,fail=1 echo {}\; exit {} ::: 0 0 1 2 3`
// prints 0 0 1. The broker decides the halt in the step that records the failure, so the slot it
// frees starts nothing; the joblog has the tasks that ran, and --resume runs the rest (issue 19).
TEST(ShellTest, AHaltStartsNothingMoreAndResumeRunsTheRest) {
  OrqEnv env;
  const std::string log = env.home() + "/log";
  const Words values = {":::", "0", "0", "1", "2", "3"};
  const Words command = {"sh", "-c", "echo $0; exit $0"};
  RunResult r = env.Run(Concat(
      Concat({"run", "-w", "1", "-t", "1", "--halt", "soon,fail=1", "--joblog", log}, command),
      values));
  EXPECT_TRUE(Exits(r, 1));
  EXPECT_EQ(r.out, "0\n0\n1\n");
  std::string parallel;  // (parallel exits 1: it halted)
  EXPECT_EQ(RunProgram(Concat({"sh", "-c",
                               "parallel --will-cite -j1 --halt soon,fail=1 \"$@\" 2>/dev/null",
                               "sh", "echo {}; exit {}"},
                              values),
                       parallel),
            1);
  EXPECT_EQ(r.out, parallel);
  EXPECT_NE(r.err.find("5 tasks: 2 ok, 1 failed, 2 cancelled: halted at a failure"),
            std::string::npos)
      << r.err;
  ASSERT_EQ(Lines(ReadFile(log)).size(), 4u);  // the header and the three that ran
  // --resume: the two that never ran, now.
  r = env.Run(
      Concat(Concat({"run", "-w", "1", "-t", "1", "--resume", "--joblog", log}, command), values));
  EXPECT_TRUE(Exits(r, 1));
  EXPECT_EQ(r.out, "2\n3\n");
  EXPECT_EQ(Lines(ReadFile(log)).size(), 6u);
  // Ctrl-C: what was running and what had not started are not in the joblog; --resume runs them.
  const std::string ran = env.home() + "/ran", log2 = env.home() + "/log2";
  const Words slow = {
      "sh", "-c", "echo $0 >> " + ran + "; [ $0 = b ] && sleep 60; echo $0", ":::", "a", "b", "c"};
  const pid_t cli = env.Start(Concat({"run", "-w", "1", "-t", "1", "--joblog", log2}, slow));
  // (Task a's line in the joblog, b running.)
  ASSERT_TRUE(
      WaitUntil([&] { return Lines(ReadFile(log2)).size() == 2 && ReadFile(ran) == "a\nb\n"; },
                std::chrono::seconds(30)))
      << ReadFile(ran);
  ::kill(cli, SIGINT);
  EXPECT_EQ(WaitExit(cli, std::chrono::seconds(30)), 130);
  auto lines = Lines(ReadFile(log2));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1].substr(0, 2), "1\t");
  r = env.Run(Concat({"run", "-w", "1", "-t", "1", "--resume", "--joblog", log2},
                     {"sh", "-c", "echo $0", ":::", "a", "b", "c"}));
  EXPECT_TRUE(Exits(r, 0)) << r.err;
  EXPECT_EQ(r.out, "b\nc\n");
}

TEST(ShellTest, JoblogInGnuParallelsColumnsAndRetryingWhatFailed) {
  OrqEnv env;
  const std::string log = env.home() + "/log", marker = env.home() + "/fixed";
  const Words job = {"--", "sh", "-c", "[ -e " + marker + " ] || exit $0", ":::", "0", "1", "2"};
  RunResult r = env.Run(Concat({"run", "-w", "1", "--joblog", log}, job));
  EXPECT_TRUE(Exits(r, 1));
  auto lines = Lines(ReadFile(log));
  ASSERT_EQ(lines.size(), 4u);
  // The header is GNU parallel's.
  std::string parallel_log = env.home() + "/parallel.log", ignored;
  ASSERT_EQ(RunProgram({"parallel", "--will-cite", "--joblog", parallel_log, "true", ":::", "x"},
                       ignored),
            0);
  EXPECT_EQ(lines[0], Lines(ReadFile(parallel_log))[0]);
  std::set<std::string> exits;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> columns;
    std::stringstream in(lines[i]);
    for (std::string c; std::getline(in, c, '\t');) columns.push_back(c);
    ASSERT_EQ(columns.size(), 9u) << lines[i];
    exits.insert(columns[0] + ":" + columns[6]);
  }
  EXPECT_EQ(exits, (std::set<std::string>{"1:0", "2:1", "3:2"}));
  // --retry-failed runs the failed commands again, from the joblog alone.
  std::ofstream(marker).put('\n');
  r = env.Run({"run", "-w", "1", "--retry-failed", "--joblog", log});
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_NE(r.err.find("2 tasks: 2 ok"), std::string::npos) << r.err;
  EXPECT_EQ(Lines(ReadFile(log)).size(), 6u);
  // --resume-failed: nothing is left to run.
  r = env.Run(Concat({"run", "-w", "1", "--resume-failed", "--joblog", log}, job));
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_NE(r.err.find("nothing to run"), std::string::npos) << r.err;
}

TEST(ShellTest, GatherStreamsFiltersAndStopsEarly) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "2"}), 0));
  const std::string job =
      JobId(env.Run({"submit", "--", "sh", "-c", "echo $0; exit $0", ":::", "0", "1", "0"}));
  RunResult r = env.Run({"gather", "--status", "failed", job});
  EXPECT_TRUE(Exits(r, 1));
  EXPECT_EQ(r.out, "1\n");
  r = env.Run({"gather", "--tag", job});
  EXPECT_EQ(r.out, job + ".0\t0\n" + job + ".1\t1\n" + job + ".2\t0\n");
  r = env.Run({"gather", "--as-completed", "--json", job});
  std::set<int> indices;
  for (const auto& l : Lines(r.out)) {
    auto result = nlohmann::json::parse(l);
    indices.insert(result["index"].get<int>());
    // each result carries its command
    EXPECT_EQ(result["argv"], nlohmann::json({"sh", "-c", "echo $0; exit $0",
                                              result["stdout"] == "1\n" ? "1" : "0"}));
  }
  EXPECT_EQ(indices, (std::set<int>{0, 1, 2}));
  r = env.Run({"gather", "--fail-fast", job});
  EXPECT_TRUE(Exits(r, 1));
  EXPECT_EQ(r.out, "1\n");
  // --first: the first task to finish, while another never does.
  const std::string slow =
      JobId(env.Run({"submit", "--", "sh", "-c", "[ $0 = fast ] && echo fast || sleep 60",
                     ":::", "slow", "fast"}));
  r = env.Run({"gather", "--first", slow});
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_EQ(r.out, "fast\n");
  env.Run({"cancel", slow});
}

TEST(ShellTest, CommandLineMistakesSayWhatIsAccepted) {
  OrqEnv env;
  auto said = [&](const Words& args, const std::string& sentence) {
    RunResult r = env.Run(args);
    EXPECT_TRUE(Exits(r, 2)) << args[0];
    EXPECT_EQ(r.err, sentence + "\n");
  };
  said({"submit", "--timeout", "-5", "--", "true"}, "orq: --timeout must be more than 0, not -5");
  said({"run", "--timeout", "0", "--", "true"}, "orq: --timeout must be more than 0, not 0");
  said({"submit", "--attempts", "0", "--", "x"},
       "orq: --attempts must be from 1 to 1000000, not 0");
  said({"sbumit"}, "orq: unknown command 'sbumit'; did you mean submit? (orq --help lists them)");
  // (main() registers only the verb a command line names; these name none, or a wrong one.)
  RunResult version = env.Run({"--version"});
  EXPECT_TRUE(Exits(version, 0));
  EXPECT_EQ(version.out, "orq 0.1.0\n");
  said({"--access", "submit", "sbumit"},
       "orq: unknown command 'sbumit'; did you mean submit? (orq --help lists them)");
  said({"run", "--timout", "5", "--", "true"},
       "orq: run: unknown option --timout; did you mean --timeout?");
  said({"run", "--bogus", "sh", "-c", "exit 1"},
       "orq: run: unknown option --bogus; orq's options go before the command, and every word "
       "after the command is the command's (orq run --help lists orq's)");
  // GNU parallel's options that orq spells otherwise: the way to say them here.
  said({"submit", "-j", "4", "echo", ":::", "a"},
       "orq: submit: unknown option -j; submitted tasks run as many at once as the broker's "
       "workers have slots: orq up -w N -t T starts N workers of T slots, orq scale -w N changes "
       "how many (orq run takes -j)");
  said({"run", "-j", "x", "echo"},
       "orq: -j takes a number of tasks at once: N, N% of the cores, +N or -N cores; not 'x'");
  said({"run", "-w", "2", "-j", "3", "echo"},
       "orq: -j 3 tasks at once do not split evenly among -w 2 worker processes; give a -j that "
       "-w divides, or -w T -t S for T x S");
  said({"run", "-k", "--", "echo", ":::", "a"},
       "orq: run: unknown option -k; results print in the order of their tasks already "
       "(--unordered prints them as they finish)");
  said({"submit", "--link", "--", "echo", ":::", "a", ":::", "b"},
       "orq: submit: unknown option --link; link input sources with :::+ (or ::::+) instead of "
       ":::");
  said({"gather"}, "orq: gather: name the jobs or tasks (j7, j7.2); 'orq jobs' lists them");
  said({"run", "--halt", "sometimes", "--", "true"},
       "orq: --halt takes now,fail=N, soon,fail=N, now,success=N, soon,success=N (N a count or a "
       "percentage, as 10%), or 0, 1, 2; not 'sometimes'");
  // Bare orq prints its help.
  RunResult r = env.Run({});
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_NE(r.out.find("Usage: orq"), std::string::npos);
}

TEST(ShellTest, ProgressShowsOnATerminalAndCanBeForcedOrSilenced) {
  OrqEnv env;
  // On a terminal (script(1) gives the run a pseudo-terminal, and copies what it shows to a
  // file as it goes), the progress line is drawn in place: each task waits until it has been
  // (at most a minute).
  std::string out;
  const std::string typescript = env.home() + "/typescript";
  const std::string line = "ORQ_HOME=" + env.home() + " " + ORQ_BINARY +
                           " run -w 1 -t 2 -- sh -c 'i=0; until grep -q running " + typescript +
                           " || [ $i -gt 3000 ]; do i=$((i+1)); sleep 0.02; done' ::: 1 2 3 4";
  ASSERT_EQ(RunProgram({"script", "-qfec", line, typescript}, out), 0) << out;
  EXPECT_NE(out.find("/4 ok "), std::string::npos) << out;
  EXPECT_NE(out.find("running "), std::string::npos) << out;
  EXPECT_NE(out.find("\x1b[K"), std::string::npos) << out;
  EXPECT_NE(out.find("4 tasks: 4 ok, 0 failed"), std::string::npos) << out;
  // Not on a terminal: none, unless --progress; --quiet: nothing on stderr at all.
  RunResult r = env.Run({"run", "-w", "1", "--", "sh", "-c", "sleep 0.3", ":::", "1", "2"});
  EXPECT_EQ(r.err.find("\x1b[K"), std::string::npos) << r.err;
  r = env.Run({"run", "-w", "1", "--progress", "--", "sh", "-c", "sleep 0.3", ":::", "1", "2"});
  EXPECT_NE(r.err.find("/2 ok "), std::string::npos) << r.err;
  r = env.Run({"run", "-w", "1", "-q", "--", "true", ":::", "1", "2"});
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(Exits(r, 0));
}

// orq jobs: each task in one column, queued, waiting, running, ok, failed, cancelled; a cancelled
// task is not a failed one (issue 19).
// orq run runs as many tasks at once as the machine has cores, in all (it was cores workers of
// cores slots each); -j N sets that total, as GNU parallel's -j (issue 19).
TEST(ShellTest, RunRunsCoresTasksAtOnceOrWhatJSays) {
  OrqEnv env;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // The first `want` tasks wait (at most 10 s) until `want` tasks run; each task writes how many
  // run (its own file counted), then runs 0.3 s more. Returns the most seen and whether any saw
  // more than `want`.
  auto peak = [&](const Words& options, int want, int tasks) {
    const std::string dir =
        env.home() + "/at-once-" + std::to_string(want) + "-" + std::to_string(options.size());
    std::filesystem::create_directories(dir);
    const std::string n = std::to_string(want);
    const std::string script = "cd " + dir + "; touch r.$0; if [ $0 -lt " + n +
                               " ]; then i=0; while [ $(ls | grep -c " + "'^r[.]') -lt " + n +
                               " ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; fi; " +
                               "ls | grep -c '^r[.]' >> seen; sleep 0.3; rm r.$0";
    Words args = Concat(Concat({"run", "-q"}, options), {"sh", "-c", script, ":::"});
    for (int i = 0; i < tasks; ++i) args.push_back(std::to_string(i));
    RunResult r = env.Run(args, "", std::chrono::seconds(120));
    EXPECT_TRUE(Exits(r, 0)) << r.err;
    int most = 0;
    for (const auto& l : Lines(ReadFile(dir + "/seen"))) most = std::max(most, std::stoi(l));
    return most;
  };
  EXPECT_EQ(peak({"-j", "3"}, 3, 6), 3);
  EXPECT_EQ(peak({"-w", "2", "-j", "4"}, 4, 8), 4);  // 2 x 2
  EXPECT_EQ(peak({}, cores, 2 * cores), cores);
}

TEST(ShellTest, JobsCountsEveryStateInItsColumn) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "2"}), 0));
  const std::string sleeps = JobId(env.Run({"submit", "sleep", "60", ":::", "1", "2", "3"}));
  const std::string after = JobId(env.Run({"submit", "--after", sleeps, "true"}));
  ASSERT_TRUE(env.WaitStatus([](const nlohmann::json& s) { return s["tasks"]["running"] == 2; }));
  RunResult r = env.Run({"jobs"});
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  auto columns = [](const std::string& line) {
    std::vector<std::string> c;
    std::istringstream in(line);
    for (std::string w; in >> w;) c.push_back(w);
    return c;
  };
  EXPECT_EQ(columns(lines[0]), (Words{"JOB", "AGE", "TASKS", "QUEUED", "WAITING", "RUNNING", "OK",
                                      "FAILED", "CANCELLED", "COMMAND"}));
  auto row = columns(lines[1]);
  ASSERT_GE(row.size(), 9u);
  EXPECT_EQ(Words(row.begin() + 2, row.begin() + 9), (Words{"3", "1", "0", "2", "0", "0", "0"}));
  row = columns(lines[2]);
  ASSERT_GE(row.size(), 9u);
  EXPECT_EQ(Words(row.begin() + 2, row.begin() + 9), (Words{"1", "0", "1", "0", "0", "0", "0"}));
  // Cancelled: counted so, not as failed (the dependant then ends dependency_failed: failed).
  ASSERT_TRUE(Exits(env.Run({"cancel", sleeps}), 0));
  ASSERT_TRUE(Exits(env.Run({"gather", "-q", sleeps, after}), 1));
  lines = Lines(env.Run({"jobs"}).out);
  ASSERT_EQ(lines.size(), 3u);
  row = columns(lines[1]);
  EXPECT_EQ(Words(row.begin() + 2, row.begin() + 9), (Words{"3", "0", "0", "0", "0", "0", "3"}));
  row = columns(lines[2]);
  EXPECT_EQ(Words(row.begin() + 2, row.begin() + 9), (Words{"1", "0", "0", "0", "0", "1", "0"}));
  auto info = nlohmann::json::parse(env.Run({"status", "--json", sleeps}).out);
  EXPECT_EQ(info["failed"], 0);
  EXPECT_EQ(info["cancelled"], 3);
}

TEST(ShellTest, JobsStatusRetryAndLogs) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "2"}), 0));
  const std::string marker = env.home() + "/fixed";
  const std::string job =
      JobId(env.Run({"submit", "--", "sh", "-c", "[ -e " + marker + " ] || exit $0; echo ok $0",
                     ":::", "0", "1", "2"}));
  EXPECT_TRUE(Exits(env.Run({"gather", "-q", job}), 1));
  // jobs lists it, status JOB counts it,
  RunResult r = env.Run({"jobs"});
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_NE(r.out.find(job + " "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sh -c [ -e"), std::string::npos) << r.out;
  r = env.Run({"status", job});
  EXPECT_EQ(r.out.rfind(job + ": 3/3 done (1 ok, 2 failed), 0 running, 0 queued; finished ", 0), 0u)
      << r.out;
  auto info = nlohmann::json::parse(env.Run({"status", "--json", job}).out);
  EXPECT_EQ(info["ok"], 1);
  EXPECT_EQ(info["failed"], 2);
  EXPECT_EQ(info["finished"], true);
  // retry submits the two that failed as a new job, in the same directory and environment;
  std::ofstream(marker).put('\n');
  const std::string retried = JobId(env.Run({"retry", job}));
  r = env.Run({"gather", retried});
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_EQ(r.out, "ok 1\nok 2\n");
  // --all: every task, from the journal.
  const std::string all = JobId(env.Run({"retry", "--all", job}));
  EXPECT_EQ(env.Run({"gather", all}).out, "ok 0\nok 1\nok 2\n");
  EXPECT_TRUE(Exits(env.Run({"retry", retried}), 2));  // nothing failed: nothing to retry
  // logs: a finished task's output; a running one's so far, or as it comes with --follow.
  EXPECT_EQ(env.Run({"logs", retried + ".1"}).out, "ok 2\n");
  const std::string go = env.home() + "/go";
  const std::string slow = JobId(
      env.Run({"submit", "--", "sh", "-c",
               "echo first >&2; while [ ! -e " + go + " ]; do sleep 0.02; done; echo second >&2"}));
  pid_t follow = env.Start({"logs", "--follow", "--stderr", slow + ".0"});
  ASSERT_TRUE(WaitForText(env.home() + "/started.out", "first\n", std::chrono::seconds(30)))
      << ReadFile(env.home() + "/started.err");
  EXPECT_EQ(env.Run({"logs", "--stderr", slow + ".0"}).out, "first\n");  // so far
  std::ofstream(go).put('\n');
  EXPECT_EQ(WaitExit(follow, std::chrono::seconds(30)), 0);
  EXPECT_EQ(ReadFile(env.home() + "/started.out"), "first\nsecond\n");
  // With the broker down, status --json still prints JSON (and exits 3).
  env.Run({"down"});
  r = env.Run({"status", "--json"});
  EXPECT_TRUE(Exits(r, 3));
  EXPECT_EQ(nlohmann::json::parse(r.out)["running"], false);
}

TEST(ShellTest, ScaleChangesTheLocalWorkersAndRetiredOnesFinishTheirTasks) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  auto local_workers = [&] {
    auto status = nlohmann::json::parse(env.Run({"status", "--json"}).out);
    return status["workers"].size();
  };
  // `orq up -w 3` while up scales to 3, and returns once they are registered;
  RunResult r = env.Run({"up", "-w", "3"});
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_EQ(r.out, "orq scaled from 1 to 3 local workers\n");
  EXPECT_EQ(local_workers(), 3u);
  // scaling down retires workers: a task running on one finishes ok, and nothing restarts them.
  const std::string started = env.home() + "/started";
  const std::string job =
      JobId(env.Run({"submit", "--", "sh", "-c", "touch " + started + "; sleep 1; echo done"}));
  ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(started); }))
      << "the task did not start";
  r = env.Run({"scale", "-w", "0"});
  EXPECT_EQ(r.out, "orq scaled from 3 to 0 local workers\n");
  r = env.Run({"gather", job});
  EXPECT_TRUE(Exits(r, 0));
  EXPECT_EQ(r.out, "done\n");
  EXPECT_TRUE(WaitUntil([&] { return local_workers() == 0; })) << local_workers() << " left";
  EXPECT_EQ(env.Run({"scale", "-w", "1"}).out, "orq scaled from 0 to 1 local worker\n");
  EXPECT_EQ(local_workers(), 1u);
  env.Run({"down"});
  EXPECT_TRUE(Exits(env.Run({"scale", "-w", "1"}), 3));
}

TEST(ShellTest, CompletionManPageAndExamplesComeFromTheCommandLine) {
  OrqEnv env;
  RunResult bash = env.Run({"completion", "bash"});
  ASSERT_TRUE(Exits(bash, 0));
  EXPECT_NE(bash.out.find("submit) opts=\""), std::string::npos);
  EXPECT_NE(bash.out.find("--halt"), std::string::npos);
  const std::string script = env.WriteFile("orq.bash", bash.out);
  std::string out;
  EXPECT_EQ(RunProgram({"bash", "-n", script}, out), 0) << out;  // it parses
  // In a bash that sourced it, completing "orq sub" offers submit.
  EXPECT_EQ(RunProgram({"bash", "-c",
                        "source " + script +
                            "; COMP_WORDS=(orq sub); COMP_CWORD=1; _orq; echo ${COMPREPLY[@]}"},
                       out),
            0);
  EXPECT_EQ(out, "submit\n");
  EXPECT_NE(env.Run({"completion", "fish"}).out.find("-l halt"), std::string::npos);
  EXPECT_NE(env.Run({"completion", "zsh"}).out.find("bashcompinit"), std::string::npos);
  RunResult man = env.Run({"manpage"});
  EXPECT_EQ(man.out.rfind(".TH ORQ 1", 0), 0u);
  for (const char* verb : {"run", "submit", "gather", "jobs", "retry", "logs", "scale"})
    EXPECT_NE(man.out.find(std::string(".SS orq ") + verb + "\n"), std::string::npos) << verb;
  // Every verb's --help ends with examples.
  for (const char* verb : {"run", "submit", "gather", "status", "jobs", "retry", "up", "scale"}) {
    RunResult help = env.Run({verb, "--help"});
    EXPECT_NE(help.out.find("Examples:\n  orq " + std::string(verb)), std::string::npos) << verb;
  }
}

TEST(ShellTest, OutputOverTheLimitGoesToAFileThatLogsPrintsAndForgetRemoves) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  // A task printing 3 MB (the in-memory limit is 1 MiB per stream),
  const std::string job = JobId(
      env.Run({"submit", "--", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo end"}));
  RunResult r = env.Run({"gather", "--json", job});
  ASSERT_TRUE(Exits(r, 0));
  auto result = nlohmann::json::parse(r.out);
  EXPECT_EQ(result["stdout"].get<std::string>().size(), 1u << 20);
  EXPECT_EQ(result["truncated"], true);
  const std::string file = result["stdout_file"];
  EXPECT_EQ(file, env.home() + "/output/" + job + ".0.1.out");
  // keeps the rest in a file on its worker's host, which orq logs prints after the rest;
  r = env.Run({"logs", job + ".0"});
  EXPECT_EQ(r.out.size(), 3000004u);
  EXPECT_EQ(r.out.substr(r.out.size() - 4), "end\n");
  // and forgetting the job removes it.
  ASSERT_TRUE(std::filesystem::exists(file));
  EXPECT_TRUE(Exits(env.Run({"forget", job}), 0));
  EXPECT_TRUE(WaitUntil([&] { return !std::filesystem::exists(file); })) << file;
}

TEST(ShellTest, CtrlCOnRunPrintsWhatFinishedBehindTheTaskStillRunning) {
  OrqEnv env;
  // Task 0 runs long; task 1 finishes at once, but prints only after task 0 (in order).
  pid_t cli = env.Start({"run", "-w", "1", "-t", "2", "--progress", "--", "sh", "-c",
                         "[ $0 = 1 ] && echo second || sleep 60", ":::", "0", "1"});
  // Its result reaches the CLI (the progress line counts it), held behind task 0 ...
  ASSERT_TRUE(WaitForText(env.home() + "/started.err", "1/2 ok 1 ", std::chrono::seconds(30)))
      << ReadFile(env.home() + "/started.err");
  EXPECT_EQ(ReadFile(env.home() + "/started.out"), "");
  // ... until Ctrl-C, which prints it before stopping everything.
  ::kill(cli, SIGINT);
  EXPECT_EQ(WaitExit(cli, std::chrono::seconds(30)), 130);
  EXPECT_EQ(ReadFile(env.home() + "/started.out"), "second\n");
  EXPECT_TRUE(env.WaitNoProcesses(std::chrono::seconds(15)));
}

}  // namespace
}  // namespace orq::testing

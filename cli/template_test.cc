#include "cli/template.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "cli/format.h"
#include "cli/job_input.h"
#include "cli/progress.h"
#include "cli/results.h"
#include "common/errors.h"

namespace orq {
namespace {

using Words = std::vector<std::string>;

// The expected values are what GNU parallel 20221122 prints with --dry-run for the same input
// (tests/shell_test.cc checks the two agree through the real binaries).
TEST(TemplateTest, PathReplacementsFollowGnuParallel) {
  struct Case {
    std::string in, no_ext, base, dir, base_no_ext;
  };
  const Case cases[] = {
      {"a.", "a", "a.", ".", "a"},
      {".bashrc", "", ".bashrc", ".", ""},
      {"/", "/", "", "/", ""},
      {"a//b", "a//b", "b", "a", "b"},
      {"/a", "/a", "a", "/", "a"},
      {"", "", "", ".", ""},
      {"a/b/", "a/b/", "", "a", ""},
      {"./x", "./x", "x", ".", "x"},
      {"//x", "//x", "x", "/", "x"},
      {"a.b/c", "a.b/c", "c", "a.b", "c"},
      {"a.b/c.d", "a.b/c", "c.d", "a.b", "c"},
      {".", "", ".", ".", ""},
      {"..", ".", "..", ".", "."},
      {"a/.b", "a/", ".b", "a", ""},
      {"/a/b.c", "/a/b", "b.c", "/a", "b"},
      {"d/", "d/", "", ".", ""},
      {"./e.x.y", "./e.x", "e.x.y", ".", "e.x"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(RemoveExtension(c.in), c.no_ext) << c.in;
    EXPECT_EQ(Basename(c.in), c.base) << c.in;
    EXPECT_EQ(Dirname(c.in), c.dir) << c.in;
    EXPECT_EQ(RemoveExtension(Basename(c.in)), c.base_no_ext) << c.in;
  }
}

TEST(TemplateTest, QuotesAsGnuParallelDoes) {
  EXPECT_EQ(ShellQuote("a-b_c.d+e/f9"), "a-b_c.d+e/f9");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("a b"), "'a b'");
  EXPECT_EQ(ShellQuote("x'y"), "'x'\"'\"'y'");
  EXPECT_EQ(ShellQuote("we$ird"), "'we$ird'");
  // A quote at either end: no empty '' left there (GNU parallel's --dry-run, byte for byte).
  EXPECT_EQ(ShellQuote("'ab"), "\"'\"'ab'");
  EXPECT_EQ(ShellQuote("ab'"), "'ab'\"'\"");
  EXPECT_EQ(ShellQuote("'"), "\"'\"");
  EXPECT_EQ(ShellQuote("''"), "\"'\"''\"'\"");
  EXPECT_EQ(ShellQuote("'a'"), "\"'\"'a'\"'\"");
  EXPECT_EQ(ShellQuote("a''b"), "'a'\"'\"''\"'\"'b'");
  for (const char* s : {"a,b", "a:b", "a=b", "a@b", "a%b", "a~b", "a*b", "a;b", "a|b", "a\\b"})
    EXPECT_EQ(ShellQuote(s), "'" + std::string(s) + "'");
  EXPECT_EQ(ShellLine({"gzip", "-9", "b c.txt"}), "gzip -9 'b c.txt'");
  EXPECT_EQ(ShellLine({"/bin/sh", "-c", "echo a && echo b"}), "echo a && echo b");
}

TEST(TemplateTest, SourcesMakeACrossProductLastFastestAndLinkedOnesPairUp) {
  const std::vector<InputSource> sources = {
      {{"a", "b"}, false, ""}, {{"1", "2", "3"}, false, ""}, {{"x", "y"}, true, ""}};
  EXPECT_EQ(
      CombineSources(sources, 100),
      (std::vector<Words>{{"a", "1", "x"}, {"a", "2", "y"}, {"b", "1", "x"}, {"b", "2", "y"}}));
  EXPECT_EQ(CombineSources({{{"a", "b"}, false, ""}, {{"1", "2"}, false, ""}}, 100),
            (std::vector<Words>{{"a", "1"}, {"a", "2"}, {"b", "1"}, {"b", "2"}}));
  EXPECT_THROW(CombineSources({{{"a", "b", "c"}, false, ""}, {{"1", "2"}, false, ""}}, 5),
               UsageError);
}

TEST(TemplateTest, ArgumentsAreAppendedOnlyWhenNoReplacementStringIsUsed) {
  EXPECT_EQ(ExpandCommand({"gzip", "-9"}, {"a b.txt"}, 1), (Words{"gzip", "-9", "a b.txt"}));
  EXPECT_EQ(ExpandCommand({"echo", "{#}"}, {"a"}, 7), (Words{"echo", "7"}));
  EXPECT_EQ(ExpandCommand({"convert", "{}", "{.}.png"}, {"d/x.jpg"}, 1),
            (Words{"convert", "d/x.jpg", "d/x.png"}));
  EXPECT_EQ(ExpandCommand({"cp", "{1}", "{2//}/{1/}"}, {"a/f", "b/g"}, 1),
            (Words{"cp", "a/f", "b/f"}));
  // {} alone with two sources is two arguments (the shell splits GNU parallel's line so too).
  EXPECT_EQ(ExpandCommand({"echo", "{}"}, {"a", "c d"}, 1), (Words{"echo", "a", "c d"}));
  // Text around it: split likewise, the text before with the first value, after with the last.
  EXPECT_EQ(ExpandCommand({"echo", "x{}y"}, {"a", "b"}, 1), (Words{"echo", "xa", "by"}));
  EXPECT_EQ(ExpandCommand({"echo", "{}{#}"}, {"a", "b"}, 3), (Words{"echo", "a", "b3"}));
  EXPECT_EQ(ExpandCommand({"echo", "{2}{//}"}, {"d/a", "e/b"}, 1), (Words{"echo", "e/bd", "e"}));
  EXPECT_EQ(ExpandCommand({"echo", "x{}"}, {"", "b"}, 1), (Words{"echo", "x", "b"}));
  // {-N}: the N-th source from the last.
  EXPECT_EQ(ExpandCommand({"echo", "{-1}", "{-2.}"}, {"a.x", "b.y"}, 1),
            (Words{"echo", "b.y", "a"}));
  // A value that holds a replacement string is not expanded again.
  EXPECT_EQ(ExpandCommand({"echo", "{}"}, {"{.}"}, 1), (Words{"echo", "{.}"}));
  EXPECT_EQ(ExpandCommand({"echo", "{}"}, {"x"}, 1, /*append=*/false), (Words{"echo", "x"}));
  EXPECT_EQ(ExpandCommand({"run.sh"}, {"x"}, 1, /*append=*/false), (Words{"run.sh"}));
}

TEST(TemplateTest, OneWordWithShellSyntaxRunsUnderShWithQuotedValues) {
  EXPECT_EQ(ExpandCommand({"echo {} && echo {.}"}, {"a b.c"}, 1),
            (Words{"/bin/sh", "-c", "echo 'a b.c' && echo 'a b'"}));
  EXPECT_EQ(ExpandCommand({"wc -l"}, {"x'y", ""}, 1),
            (Words{"/bin/sh", "-c", "wc -l 'x'\"'\"'y' ''"}));
  // No command: each argument is a command line.
  EXPECT_EQ(ExpandCommand({}, {"ls -l"}, 1), (Words{"/bin/sh", "-c", "ls -l"}));
  EXPECT_TRUE(NeedsShell({"a && b"}));
  EXPECT_TRUE(NeedsShell({"ls|wc"}));
  EXPECT_FALSE(NeedsShell({"./run.sh"}));
}

// GNU parallel runs every command line through a shell; orq only those a shell would read
// otherwise than as their words (GNU parallel's tutorial examples among them).
TEST(TemplateTest, TheShellRuleAsGnuParallelReadsTheWords) {
  // Shell syntax in any word, not just a lone one.
  EXPECT_TRUE(NeedsShell({"sleep", "0.1;", "echo", "x"}));
  EXPECT_TRUE(NeedsShell({"test", "$VAR"}));
  EXPECT_TRUE(NeedsShell({"cmd", ">", "{}.out"}));
  EXPECT_TRUE(NeedsShell({"echo", "'quoted'"}));
  EXPECT_TRUE(NeedsShell({"echo", "\\n"}));
  EXPECT_TRUE(NeedsShell({"ls", "*.log"}));
  EXPECT_TRUE(NeedsShell({"echo", "~/x"}));
  EXPECT_TRUE(NeedsShell({"echo", "#", "x"}));
  EXPECT_TRUE(NeedsShell({"echo", "{a,b}"}));
  EXPECT_TRUE(NeedsShell({"echo", "{1..3}"}));
  EXPECT_TRUE(NeedsShell({"FOO=1", "env"}));
  // A keyword or a builtin no program can stand in for.
  for (const char* word : {"exit", "cd", "export", "if", "for", "source", ".", ":", "eval",
                           "ulimit", "umask", "set", "wait", "time", "!"})
    EXPECT_TRUE(NeedsShell({word, "x"})) << word;
  // The rest is exec'ed: plain words, options with '=', replacement strings (their values are
  // quoted), and the builtins that programs print and exit as (echo, true, test, printf).
  EXPECT_FALSE(NeedsShell({"true"}));
  EXPECT_FALSE(NeedsShell({"echo", "{}"}));
  EXPECT_FALSE(NeedsShell({"gzip", "-9", "--suffix=.z", "{}"}));
  EXPECT_FALSE(NeedsShell({"convert", "{1}", "{2/}/{1.}.png", "{#}", "{%}"}));
  EXPECT_FALSE(NeedsShell({"test", "-f", "{}"}));
  EXPECT_FALSE(NeedsShell({"printf", "%s-x", "{}"}));
  EXPECT_FALSE(NeedsShell({"echo", "{x}", "{0}", "{", "a=b"}));
  // A word with a space among several is one argument (orq's difference: parallel splits it),
  // so `sh -c 'script' {}` keeps its script.
  EXPECT_FALSE(NeedsShell({"echo", "a b"}));
  EXPECT_FALSE(NeedsShell({"sh", "-c", "[ $0 = 1 ] || exit 3", "{}"}));
}

TEST(TemplateTest, ACommandOfSeveralWordsWithShellSyntaxIsOneShellLine) {
  // As GNU parallel: the words joined by spaces, each value quoted, the arguments appended.
  EXPECT_EQ(ExpandCommand({"sleep", "0.1;", "echo", "{}"}, {"a b"}, 1),
            (Words{"/bin/sh", "-c", "sleep 0.1; echo 'a b'"}));
  EXPECT_EQ(ExpandCommand({"exit", "{}"}, {"3"}, 1), (Words{"/bin/sh", "-c", "exit 3"}));
  EXPECT_EQ(ExpandCommand({"cmd", ">", "{.}.out"}, {"x.txt"}, 1),
            (Words{"/bin/sh", "-c", "cmd > x.out"}));
  EXPECT_EQ(ExpandCommand({"test", "-n", "$X", "&&", "echo"}, {"v w"}, 1),
            (Words{"/bin/sh", "-c", "test -n $X && echo 'v w'"}));
  EXPECT_EQ(ExpandCommand({"printf", "%s %s\\n", "{}", ">", "out"}, {"v w"}, 1),
            (Words{"/bin/sh", "-c", "printf '%s %s\\n' 'v w' > out"}));
  EXPECT_EQ(ExpandCommand({"sh", "-c", "echo $0; exit 1", "{}"}, {"v"}, 1),
            (Words{"sh", "-c", "echo $0; exit 1", "v"}));
}

TEST(TemplateTest, ReplacementStringsThatCannotBeFilledAreRefused) {
  EXPECT_THROW(ExpandCommand({"echo", "{3}"}, {"a", "b"}, 1), UsageError);
  EXPECT_THROW(ExpandCommand({"echo", "{%}"}, {"a"}, 1), UsageError);
  EXPECT_THROW(ExpandCommand({"echo", "{-3}"}, {"a", "b"}, 1), UsageError);
  // {= perl =}: refused with a sentence, not passed on as text.
  EXPECT_THROW(ParseCommandTemplate({"echo", "{=uc=}", ":::", "a"}, nullptr), UsageError);
  EXPECT_THROW(ParseCommandTemplate({"echo", "{=", "s/a/b/", "=}", ":::", "a"}, nullptr),
               UsageError);
  EXPECT_THROW(ParseCommandTemplate({"echo", "{=s/a/b/", "=}", ":::", "a"}, nullptr), UsageError);
  // Not replacement strings: left as they are.
  EXPECT_EQ(ExpandCommand({"echo", "{x}", "{0}", "{"}, {"a"}, 1),
            (Words{"echo", "{x}", "{0}", "{", "a"}));
}

TEST(TemplateTest, SeparatorsSplitTheCommandFromItsSources) {
  auto read = [](const std::string& file) { return Words{file + ":1", file + ":2"}; };
  auto t = ParseCommandTemplate(
      {"echo", "{}", ":::", "a", "b", ":::+", "1", "2", "::::", "f", "g", "::::+", "h"}, read);
  EXPECT_EQ(t.command, (Words{"echo", "{}"}));
  ASSERT_EQ(t.sources.size(), 5u);
  EXPECT_EQ(t.sources[0].values, (Words{"a", "b"}));
  EXPECT_TRUE(t.sources[1].linked);
  EXPECT_EQ(t.sources[2].values, (Words{"f:1", "f:2"}));
  EXPECT_FALSE(t.sources[3].linked);  // each file after :::: is a source of its own
  EXPECT_EQ(t.sources[3].values, (Words{"g:1", "g:2"}));
  EXPECT_TRUE(t.sources[4].linked);
  EXPECT_THROW(ParseCommandTemplate({"echo", ":::"}, read), UsageError);
  EXPECT_THROW(ParseCommandTemplate({"echo", ":::", "a", "::::"}, read), UsageError);
  // ::::+ links each file after it to the one before; first, it is the first source.
  t = ParseCommandTemplate({"echo", "::::+", "f", "g"}, read);
  ASSERT_EQ(t.sources.size(), 2u);
  EXPECT_FALSE(t.sources[0].linked);
  EXPECT_TRUE(t.sources[1].linked);
}

TEST(TemplateTest, ArraysAreRangesStepsAndLists) {
  EXPECT_EQ(ParseArray("1-5"), (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(ParseArray("0-9:4"), (std::vector<int64_t>{0, 4, 8}));
  EXPECT_EQ(ParseArray("1,4,9"), (std::vector<int64_t>{1, 4, 9}));
  EXPECT_EQ(ParseArray("1-2,10-20:10"), (std::vector<int64_t>{1, 2, 10, 20}));
  for (const char* bad : {"", "x", "5-1", "1-5:0", "1-5:-1", "1-", "1-5x", "1,,2", "0-99999999"})
    EXPECT_THROW(ParseArray(bad), UsageError) << bad;
}

TEST(ProgressTest, TheLineHasCountsRateEtaAndABarThatFits) {
  ProgressState s{100, 43, 2, 4, 10};
  EXPECT_EQ(FormatProgress(s, 200),
            "[==================>                     ] 45/100 ok 43 failed 2 running 4 4.5/s ETA "
            "0:12");
  EXPECT_EQ(FormatProgress(s, 60), "[====>      ] 45/100 ok 43 failed 2 running 4 4.5/s ETA 0:12");
  EXPECT_EQ(FormatProgress(s, 55), "45/100 ok 43 failed 2 running 4 4.5/s ETA 0:12");
  EXPECT_EQ(FormatProgress(ProgressState{0, 0, 0, 0, 0}, 80), "0/0 ok 0 failed 0 running 0");
  EXPECT_EQ(FormatProgress(ProgressState{10, 10, 0, 0, 1}, 20), "10/10 ok 10 failed 0");
}

TEST(HaltTest, RulesAsGnuParallelWritesThem) {
  auto now1 = ParseHalt("now,fail=1");
  ASSERT_TRUE(now1);
  EXPECT_TRUE(now1->now && now1->on_failure && !now1->percent);
  EXPECT_FALSE(HaltDecided(*now1, 0, 10));
  EXPECT_TRUE(HaltDecided(*now1, 1, 0));
  auto soon = ParseHalt("soon,success=50%");
  ASSERT_TRUE(soon);
  EXPECT_FALSE(soon->now || soon->on_failure);
  EXPECT_FALSE(HaltDecided(*soon, 0, 2));  // fewer than 3 ended
  EXPECT_TRUE(HaltDecided(*soon, 1, 2));
  EXPECT_FALSE(HaltDecided(*soon, 2, 1));
  EXPECT_TRUE(ParseHalt("2")->now);
  EXPECT_FALSE(ParseHalt("1")->now);
  EXPECT_FALSE(ParseHalt("never"));
  for (const char* bad : {"now", "now,fail", "later,fail=1", "now,fail=0", "now,fail=1.5",
                          "now,fail=101%", "now,oops=1", "now,fail=x"})
    EXPECT_THROW(ParseHalt(bad), UsageError) << bad;
}

TEST(ResultOrderTest, ResultsComeOutInTheOrderNamedWhateverOrderTheyArrive) {
  ResultOrder order({"j1", "j2.1", "j1.0"}, {3, 1, 1});
  auto outcome = [](uint64_t job, uint32_t index) {
    TaskOutcome o;
    o.id = {job, index};
    return o;
  };
  order.Put(outcome(1, 1));
  EXPECT_FALSE(order.Pop());
  order.Put(outcome(1, 0));
  EXPECT_EQ(order.Pop()->id, (TaskId{1, 0}));
  EXPECT_EQ(order.Pop()->id, (TaskId{1, 1}));
  EXPECT_FALSE(order.Pop());
  order.Put(outcome(1, 0));  // named twice: its second place
  order.Put(outcome(2, 1));
  order.Put(outcome(1, 2));
  EXPECT_EQ(order.Pop()->id, (TaskId{1, 2}));
  EXPECT_EQ(order.Pop()->id, (TaskId{2, 1}));
  EXPECT_EQ(order.Pop()->id, (TaskId{1, 0}));
  EXPECT_FALSE(order.Pop());
}

TEST(ResultOrderTest, WhatWaitsPastItsMemoryWaitsInAFileAndComesBackWhole) {
  // Given an order that holds 4 KiB in memory,
  const char* tmp = std::getenv("TMPDIR");
  ResultOrder order({"j1"}, {100}, 4 << 10);
  auto outcome = [](uint32_t index) {
    TaskOutcome o;
    o.id = {1, index};
    o.result = std::string(1000, static_cast<char>('a' + index % 26));
    o.shell = ShellOutput{0, "out " + std::to_string(index), "err", false};
    return o;
  };
  // when 99 results of 1 KiB come in reverse order, behind the first,
  for (uint32_t i = 99; i >= 1; --i) order.Put(outcome(i));
  // then at most 4 KiB of them wait in memory and the rest in a file (never linked: nothing is
  // left in $TMPDIR),
  EXPECT_LE(order.held_bytes(), 4u << 10);
  EXPECT_GE(order.spilled(), 94u);
  EXPECT_FALSE(order.Pop());
  if (tmp && *tmp) {
    for (const auto& entry : std::filesystem::directory_iterator(tmp))
      EXPECT_EQ(entry.path().filename().string().rfind("orq-gather-", 0), std::string::npos)
          << entry.path();
  }
  // and once the first is in, all come out in order, as they were.
  order.Put(outcome(0));
  for (uint32_t i = 0; i < 50; ++i) {
    auto o = order.Pop();
    ASSERT_TRUE(o) << i;
    EXPECT_EQ(o->id, (TaskId{1, i}));
    EXPECT_EQ(o->result, outcome(i).result);
    EXPECT_EQ(o->shell->stdout_text, "out " + std::to_string(i));
  }
  // What is left comes out in order too (an interrupted gather prints it).
  uint32_t next = 50;
  order.Rest([&](const TaskOutcome& o) {
    EXPECT_EQ(o.id, (TaskId{1, next}));
    EXPECT_EQ(o.result, outcome(next).result);
    ++next;
  });
  EXPECT_EQ(next, 100u);
  EXPECT_EQ(order.spilled(), 0u);
  EXPECT_EQ(order.held_bytes(), 0u);
}

// What PrintText writes for `o` (with `tag`).
std::string Printed(const TaskOutcome& o, std::string_view tag = "") {
  char* buffer = nullptr;
  size_t size = 0;
  std::FILE* out = ::open_memstream(&buffer, &size);
  PrintText(o, out, tag);
  std::fclose(out);
  std::string text(buffer, size);
  std::free(buffer);
  return text;
}

TEST(PrintTextTest, AShellTasksOutputExactlyAsItWroteItAValueAsALine) {
  TaskOutcome shell;
  shell.shell = ShellOutput{0, "", "", false};
  // A shell task that printed nothing prints nothing; no newline is added to its last line,
  EXPECT_EQ(Printed(shell), "");
  EXPECT_EQ(Printed(shell, "a"), "");
  shell.shell->stdout_text = "one\ntwo";
  EXPECT_EQ(Printed(shell), "one\ntwo");
  EXPECT_EQ(Printed(shell, "a"), "a\tone\na\ttwo");
  shell.shell->stdout_text = "one\n";
  EXPECT_EQ(Printed(shell, "a"), "a\tone\n");
  // while a value (an echo, a sleep's result) is a line, even when empty.
  TaskOutcome value;
  value.result = "\"hi\"";
  EXPECT_EQ(Printed(value), "hi\n");
  value.result = "[1,2]";
  EXPECT_EQ(Printed(value, "t"), "t\t[1,2]\n");
  value.result = "";
  EXPECT_EQ(Printed(value), "\n");
  EXPECT_EQ(Printed(value, "t"), "t\t\n");
}

TEST(JoblogTest, LinesInGnuParallelsColumns) {
  TaskOutcome o;
  o.started = 1700000000.5;
  o.finished = 1700000001.75;
  o.status = TaskStatus::kFailed;
  o.shell = ShellOutput{3, "abc", "", false};
  EXPECT_EQ(JoblogLine(7, o, "gzip 'a b'"),
            "7\t:\t1700000000.500\t     1.250\t0\t3\t3\t0\tgzip 'a b'\n");
  o.error = "killed by signal 9 (SIGKILL)";
  o.shell->exit_code = 137;
  EXPECT_EQ(JoblogLine(7, o, "x"), "7\t:\t1700000000.500\t     1.250\t0\t3\t-1\t9\tx\n");
}

}  // namespace
}  // namespace orq

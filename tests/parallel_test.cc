// orq against the real GNU parallel (installed by scripts/setup.sh), on generated cases: a seeded
// random generator of values (quotes, $, ;, backslashes, tabs, unicode, leading dashes, empty,
// dots, slashes) and of templates (every replacement string, text around them, one to three
// sources, ::: and :::: files, linked with :::+ / ::::+), in both of orq's ways of running a
// command (words without shell syntax, exec'ed as argv, compared with parallel -q; one word with
// shell syntax, run by sh, compared with parallel as it is). Each case compares the --dry-run text;
// the first of each seed also run, comparing stdout, in which printf shows the argv each task
// received.
//
// Fixed seeds in the test command; any other by hand:
//   ORQ_DIFF_SEED=12345 ORQ_DIFF_CASES=200 ORQ_DIFF_RUNS=20
//       build-asan/tests/integration_test --gtest_filter='ParallelDiffTest.*'
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>

#include "tests/harness.h"

namespace orq::testing {
namespace {

// GNU parallel's output for `args` (stderr dropped: its notes and warnings), with /bin/sh as
// the shell orq uses.
std::string Parallel(const Words& args, int* code = nullptr) {
  std::string out;
  const int c = RunProgram(Concat({"env", "SHELL=/bin/sh", "sh", "-c",
                                   "parallel --will-cite -k \"$@\" 2>/dev/null", "sh"},
                                  args),
                           out);
  if (code) *code = c;
  return out;
}

struct Case {
  Words command;  // printf's format first: the rest is what the task got
  Words sources;  // ::: a b :::+ c d :::: FILE...
  bool shell = false;
  std::string text;  // for failure messages: the whole command line
};

class Generator {
 public:
  Generator(uint32_t seed, std::string dir) : random_(seed), dir_(std::move(dir)) {}

  Case Next() {
    Case c;
    const int sources = Pick(1, 3);
    for (int s = 0; s < sources; ++s) AddSource(c, s);
    Words words;
    const int count = Pick(0, 3);
    for (int w = 0; w < count; ++w) words.push_back(Word(sources));
    c.shell = Pick(0, 2) == 0;
    if (c.shell) {
      std::string line = "printf '[%s]\\n'";
      for (const std::string& w : words) line += " " + w;
      c.command = {line};
    } else {
      c.command = Concat({"printf", "%s:"}, words);  // no shell syntax: exec'ed
    }
    for (const std::string& w : Concat(c.command, c.sources)) c.text += " " + w;
    return c;
  }

 private:
  int Pick(int low, int high) { return std::uniform_int_distribution<int>(low, high)(random_); }
  template <typename T> const T& One(const std::vector<T>& from) {
    return from[static_cast<size_t>(Pick(0, static_cast<int>(from.size()) - 1))];
  }

  std::string Value() {
    static const Words kPieces = {"a",  "b.c",   "x y", "'",        "\"", "$HOME", ";",
                                  "\\", "\t",    "é",   "日本",     "-x", "--y",   ".",
                                  "..", "/",     "d/",  "/abs/p.q", "*",  "~",     "a.tar.gz",
                                  "&",  "$(id)", "`",   "  ",       "#",  "!",     "x'y"};
    if (Pick(0, 9) == 0) return "";
    std::string v;
    for (int n = Pick(1, 3); n > 0; --n) v += One(kPieces);
    return v;
  }

  void AddSource(Case& c, int index) {
    const bool file = Pick(0, 3) == 0;
    const bool linked = index > 0 && Pick(0, 2) == 0;
    Words values;
    for (int n = Pick(1, 3); n > 0; --n) values.push_back(Value());
    if (!file) {
      c.sources.push_back(linked ? ":::+" : ":::");
      c.sources.insert(c.sources.end(), values.begin(), values.end());
      return;
    }
    const std::string path = dir_ + "/source" + std::to_string(files_++);
    std::ofstream out(path);
    for (const std::string& v : values) out << v << "\n";
    c.sources.push_back(linked ? "::::+" : "::::");
    c.sources.push_back(path);
  }

  // A word: replacement strings and text around them, or (now and then) plain text.
  std::string Word(int sources) {
    static const Words kOps = {"", ".", "/", "//", "/."};
    static const Words kText = {"x", "-", ".", "/", "=", "_"};
    std::string word;
    for (int n = Pick(1, 3); n > 0; --n) {
      switch (Pick(0, 4)) {
        case 0:
          word += One(kText);
          break;
        case 1:
          word += "{" + One(kOps) + "}";
          break;
        case 2:
          word += "{" + std::to_string(Pick(1, sources)) + One(kOps) + "}";
          break;
        case 3:
          word += "{-" + std::to_string(Pick(1, sources)) + One(kOps) + "}";
          break;
        default:
          word += "{#}";
      }
    }
    return word;
  }

  std::mt19937 random_;
  std::string dir_;
  int files_ = 0;
};

struct Counts {
  int dry_runs = 0, runs = 0, differ = 0;
};

// Runs `cases` cases of `seed`; the first `runs` also run, comparing stdout.
Counts Compare(uint32_t seed, int cases, int runs) {
  OrqEnv env;
  Generator generate(seed, env.home());
  Counts counts;
  for (int i = 0; i < cases; ++i) {
    const Case c = generate.Next();
    SCOPED_TRACE("seed " + std::to_string(seed) + ", case " + std::to_string(i) + ":" + c.text);
    const Words quote = c.shell ? Words{} : Words{"-q"};
    RunResult orq = env.Run(Concat(Concat({"run", "--dry-run"}, c.command), c.sources));
    EXPECT_TRUE(Exits(orq, 0)) << orq.err;
    const std::string dry =
        Parallel(Concat(Concat(Concat(quote, {"--dry-run"}), c.command), c.sources));
    EXPECT_EQ(orq.out, dry);
    ++counts.dry_runs;
    counts.differ += orq.out != dry;
    if (i >= runs) continue;
    orq = env.Run(Concat(Concat({"run", "-w", "1", "-t", "2", "-q"}, c.command), c.sources));
    EXPECT_TRUE(Exits(orq, 0)) << orq.err;
    const std::string ran = Parallel(Concat(Concat(quote, c.command), c.sources));
    EXPECT_EQ(orq.out, ran);
    ++counts.runs;
    counts.differ += orq.out != ran;
  }
  return counts;
}

int FromEnv(const char* name, int otherwise) {
  const char* value = std::getenv(name);
  return value && *value ? std::atoi(value) : otherwise;
}

TEST(ParallelDiffTest, GeneratedCasesAgreeWithGnuParallel) {
  std::vector<uint32_t> seeds = {19, 20261202};
  if (const int seed = FromEnv("ORQ_DIFF_SEED", 0)) seeds = {static_cast<uint32_t>(seed)};
  for (const uint32_t seed : seeds) {
    const Counts counts = Compare(seed, FromEnv("ORQ_DIFF_CASES", 40), FromEnv("ORQ_DIFF_RUNS", 6));
    std::printf("seed %u: compared %d --dry-run texts and %d runs' stdout; %d differ\n", seed,
                counts.dry_runs, counts.runs, counts.differ);
  }
}

}  // namespace
}  // namespace orq::testing

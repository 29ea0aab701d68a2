#include "cli/verbs.h"

#include <gtest/gtest.h>

namespace orq {
namespace {

// The whole command line as main() registers it, parsed without running anything.
class VerbsTest : public ::testing::Test {
 protected:
  VerbsTest() {
    app_.require_subcommand(1);
    app_.fallthrough();  // as main() has it
    for (const VerbEntry& entry : AllVerbs()) verbs_.push_back(entry.registrar(app_));
  }
  // "" when `args` parse; else CLI11's sentence. As main() does, the options only, for run and
  // submit: the words from their command on are not orq's.
  std::string Parse(std::vector<std::string> args) {
    args.insert(args.begin(), "orq");
    if (auto split = SplitAtCommand(app_, args)) args.resize(split->options_end);
    args.erase(args.begin());
    std::reverse(args.begin(), args.end());  // CLI11 takes them last-first
    try {
      app_.parse(args);
      return "";
    } catch (const CLI::ParseError& e) {
      return e.what();
    }
  }
  CLI::App app_{"orq"};
  std::vector<Verb> verbs_;
};

TEST_F(VerbsTest, EveryVerbRegistersOneSubcommand) {
  std::set<std::string> names;
  for (const auto& v : verbs_) names.insert(v.command->get_name());
  // main() registers only the verb a command line names, found by the name it is listed under.
  for (size_t i = 0; i < verbs_.size(); ++i)
    EXPECT_EQ(verbs_[i].command->get_name(), AllVerbs()[i].name);
  EXPECT_EQ(names, (std::set<std::string>{"run",    "submit",     "gather",  "status", "cancel",
                                          "forget", "up",         "down",    "broker", "worker",
                                          "access", "bench",      "jobs",    "retry",  "logs",
                                          "scale",  "completion", "manpage", "limit",  "explain",
                                          "events", "dashboard",  "alloc"}));
}

TEST_F(VerbsTest, GoodCommandLinesParse) {
  EXPECT_EQ(Parse({"submit", "--sleep", "1", "--result", "x", "--retry-backoff", "0.5,10"}), "");
  EXPECT_EQ(Parse({"submit", "--retries", "2", "--", "sh", "-c", "exit 1"}), "");
  EXPECT_EQ(Parse({"gather", "j7", "j7.2", "8"}), "");
  EXPECT_EQ(Parse({"up", "--http", "8080"}), "");
  EXPECT_EQ(Parse({"broker", "--http", "[::1]:0"}), "");
  EXPECT_EQ(Parse({"events", "--follow", "--json"}), "");
  EXPECT_EQ(Parse({"run", "--", "echo", "{}", ":::", "a", "b", "::::", "f"}), "");
  EXPECT_EQ(Parse({"run", "--env", "A=1", "--env", "B", "--", "sh", "-c", "echo $A"}), "");
  EXPECT_EQ(Parse({"submit", "--array", "1-3", "--cwd", "/tmp", "--clean-env", "--", "x"}), "");
  EXPECT_EQ(Parse({"submit", "--lines", "-", "--timeout", "5"}), "");
  EXPECT_EQ(Parse({"bench", "noop", "tcp"}), "");
  EXPECT_EQ(Parse({"broker", "--endpoint", "ipc:///tmp/x", "--listen", "tcp://0.0.0.0:5555"}), "");
  EXPECT_EQ(Parse({"access", "add", "--worker", "w.json"}), "");
  EXPECT_EQ(Parse({"alloc", "add", "slurm", "--time-limit", "30m", "--max-workers", "8",
                   "--worker-args", "-t 4", "--queues", "a,b"}),
            "");
  EXPECT_EQ(Parse({"alloc", "add", "slurm", "--time-limit", "30m", "--", "-p", "long"}), "");
  EXPECT_EQ(Parse({"alloc", "dry-run", "slurm", "--time-limit", "1:00:00"}), "");
  EXPECT_EQ(Parse({"alloc", "rm", "slurm", "--keep"}), "");
  EXPECT_EQ(Parse({"worker", "--idle-timeout", "2m", "--lifetime", "1h30m"}), "");
  EXPECT_EQ(Parse({"submit", "--time-request", "10m", "--", "x"}), "");
}

TEST(DurationTest, ReadsUnitsAndSlurmsClock) {
  EXPECT_EQ(ParseDuration("90"), 90u);
  EXPECT_EQ(ParseDuration("90s"), 90u);
  EXPECT_EQ(ParseDuration("2m"), 120u);
  EXPECT_EQ(ParseDuration("1h30m"), 5400u);
  EXPECT_EQ(ParseDuration("1d2h"), 93600u);
  EXPECT_EQ(ParseDuration("1:30:00"), 5400u);
  EXPECT_EQ(ParseDuration("05:00"), 300u);
  EXPECT_EQ(ParseDuration("1-00:00:00"), 86400u);
  for (const char* bad : {"", "m", "2x", "1m2h", "1:2:3:4", "-1", "1.5h", "h1", "2mm"})
    EXPECT_EQ(ParseDuration(bad), std::nullopt) << bad;
}

TEST_F(VerbsTest, TheCommandBeginsAfterOrqsOptions) {
  auto split = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "orq");
    auto s = SplitAtCommand(app_, args);
    return s ? std::to_string(s->options_end) + "," + std::to_string(s->command_at) +
                   (s->dashes ? " --" : "")
             : "none";
  };
  EXPECT_EQ(split({"run", "--tag", "echo", "--tag", ":::", "-w"}), "3,3");
  EXPECT_EQ(split({"run", "-w", "2", "-t1", "--timeout=5", "--env", "A=1", "gzip"}), "8,8");
  EXPECT_EQ(split({"submit", "--timeout", "5", "--", "ls", "--", "x"}), "4,5 --");
  EXPECT_EQ(split({"run", "--bogus", "x"}), "3,3");  // CLI11 sees --bogus, refuses it
  EXPECT_EQ(split({"run", "-", "x"}), "2,2");
  EXPECT_EQ(split({"run", "--dry-run"}), "3,3");
  EXPECT_EQ(split({"gather", "j1"}), "none");
}

// Each mistake is refused by CLI11's own checks (a command given with another task option is
// refused by the verb: CLI11 never sees the command, see tests/shell_test.cc), in a sentence that
// names the flag or value.
TEST_F(VerbsTest, MistakesAreRefusedNamingTheFlag) {
  EXPECT_NE(Parse({"submit", "--sleep", "1", "--cpu", "2"}).find("--sleep"), std::string::npos);
  EXPECT_EQ(Parse({"submit", "--echo", "1", "--result", "2"}), "--result requires --sleep");
  EXPECT_NE(Parse({"submit", "--sleep", "1", "--retry-backoff", "1,x"}).find("--retry-backoff"),
            std::string::npos);
  EXPECT_NE(Parse({"submit", "--sleep", "-1"}).find("--sleep"), std::string::npos);
  EXPECT_NE(Parse({"gather", "x7"}).find("'x7' is not a job or task id"), std::string::npos);
  EXPECT_NE(Parse({"forget", "j7.1"}).find("'j7.1' is not a job id"), std::string::npos);
  EXPECT_NE(Parse({"bench", "nope"}).find("nope not in"), std::string::npos);
  EXPECT_NE(Parse({"broker", "--endpoint", "tcp://h:1"}).find("--endpoint: must be an ipc://"),
            std::string::npos);
  EXPECT_NE(Parse({"up", "--listen", "udp://h:1"}).find("--listen: must be a tcp://"),
            std::string::npos);
  EXPECT_NE(Parse({"worker", "--connect", "tcp://h:1"}).find("--connect"), std::string::npos);
  EXPECT_NE(Parse({"broker", "--journal", "j.db", "--no-journal"}).find("excludes"),
            std::string::npos);
  EXPECT_NE(Parse({"access", "add", "--worker", "a", "--client", "b"}).find("--worker"),
            std::string::npos);
  EXPECT_NE(Parse({"access", "add"}).find("--worker"), std::string::npos);
  EXPECT_NE(Parse({"run", "--lines", "f", "-f", "t.jsonl"}).find("excludes"), std::string::npos);
  EXPECT_NE(Parse({"submit", "--lines", "f", "--sleep", "1"}).find("excludes"), std::string::npos);
  EXPECT_NE(Parse({"up", "--http", "localhost:80"}).find("--http"), std::string::npos);
  EXPECT_NE(Parse({"up", "--http", "127.0.0.1:99999"}).find("ADDRESS:PORT"), std::string::npos);
  EXPECT_NE(Parse({"broker", "--http-cert", "/etc/hostname"}).find("requires --http"),
            std::string::npos);
  EXPECT_NE(Parse({"alloc", "add", "slurm"}).find("--time-limit"), std::string::npos);
  EXPECT_NE(Parse({"alloc", "add", "pbs", "--time-limit", "1h"}).find("pbs"), std::string::npos);
  EXPECT_NE(Parse({"alloc", "add", "slurm", "--time-limit", "soon"}).find("not a length of time"),
            std::string::npos);
  EXPECT_NE(Parse({"submit", "--time-request", "x", "--", "y"}).find("--time-request"),
            std::string::npos);
}

TEST(ExitCodeTest, EveryBrokerErrorHasItsCode) {
  EXPECT_EQ(ExitCodeOf(ErrorCode::kBadRequest), ExitCode::kUsage);
  EXPECT_EQ(ExitCodeOf(ErrorCode::kUnknownId), ExitCode::kUsage);
  EXPECT_EQ(ExitCodeOf(ErrorCode::kShuttingDown), ExitCode::kUnreachable);
  EXPECT_EQ(ExitCodeOf(ErrorCode::kForbidden), ExitCode::kRefused);
  EXPECT_EQ(ExitCodeOf(ErrorCode::kDiskFull), ExitCode::kDiskFull);
}

}  // namespace
}  // namespace orq

#include "common/task_spec.h"

#include <gtest/gtest.h>

#include <sstream>

#include "common/protocol.h"

namespace orq {
namespace {

TaskSpec Parse(const std::string& line) {
  auto parsed = ParseTaskJson(line, "t:1");
  if (!parsed) {
    ADD_FAILURE() << parsed.error().sentence;
    return {};
  }
  return *parsed;
}

std::string LineError(const std::string& line) {
  auto parsed = ParseTaskJson(line, "tasks.jsonl:3");
  if (parsed) return "(no error)";
  return parsed.error().sentence;
}

TEST(TaskSpecTest, ParsesEachKind) {
  TaskSpec sleep = Parse(R"({"kind": "sleep", "seconds": 1.5, "result": "hello"})");
  EXPECT_EQ(sleep.body, TaskBody(SleepTask{1.5, "\"hello\""}));
  EXPECT_EQ(KindName(sleep), "sleep");
  EXPECT_EQ(ClassOf(sleep), TaskClass::kAsync);

  TaskSpec echo = Parse(R"({"kind": "echo", "value": {"a": [1, 2]}})");
  EXPECT_EQ(echo.body, TaskBody(EchoTask{R"({"a":[1,2]})"}));

  TaskSpec cpu = Parse(R"({"kind": "cpu", "ms": 10})");
  EXPECT_EQ(cpu.body, TaskBody(CpuTask{10}));
  EXPECT_EQ(ClassOf(cpu), TaskClass::kCpu);

  TaskSpec argv = Parse(R"({"kind": "shell", "argv": ["echo", "hi"]})");
  EXPECT_EQ(argv.body, TaskBody(ShellTask{{"echo", "hi"}}));
  EXPECT_EQ(ClassOf(argv), TaskClass::kShell);

  TaskSpec cmd = Parse(R"({"kind": "shell", "cmd": "echo hi | tr a-z A-Z"})");
  EXPECT_EQ(cmd.body, TaskBody(ShellTask{{"/bin/sh", "-c", "echo hi | tr a-z A-Z"}}));
}

TEST(TaskSpecTest, ParsesCommonFields) {
  TaskSpec s =
      Parse(R"({"kind": "sleep", "seconds": 0, "delay": 2, "timeout": 5, "priority": -3})");
  EXPECT_EQ(s.delay, 2);
  EXPECT_EQ(s.timeout, 5);
  EXPECT_EQ(s.priority, -3);
  EXPECT_EQ(std::get<SleepTask>(s.body).result, "");  // none: the worker returns the seconds
}

TEST(TaskSpecTest, EachBadInputNamesLineAndField) {
  EXPECT_EQ(LineError("{not json").rfind("tasks.jsonl:3: malformed JSON: ", 0), 0u);
  // Found by the fuzzer: a number too large for a double is an error, not an exception.
  EXPECT_EQ(LineError("4E6161").rfind("tasks.jsonl:3: malformed JSON: number overflow", 0), 0u);
  EXPECT_EQ(LineError("[1]"), "tasks.jsonl:3: a task must be a JSON object, not array");
  EXPECT_EQ(LineError(R"({"seconds": 1})"),
            "tasks.jsonl:3: missing field 'kind' (sleep, echo, cpu, shell or python)");
  EXPECT_EQ(LineError(R"({"kind": "nap"})"),
            "tasks.jsonl:3: unknown kind 'nap' (expected sleep, echo, cpu, shell or python)");
  EXPECT_EQ(LineError(R"({"kind": 3})"), "tasks.jsonl:3: field 'kind' must be a string");
  EXPECT_EQ(LineError(R"({"kind": "sleep"})"), "tasks.jsonl:3: missing field 'seconds'");
  EXPECT_EQ(LineError(R"({"kind": "sleep", "seconds": -1})"),
            "tasks.jsonl:3: field 'seconds' must be zero or more, not -1");
  EXPECT_EQ(LineError(R"({"kind": "sleep", "seconds": "1"})"),
            "tasks.jsonl:3: field 'seconds' must be a number, not string");
  EXPECT_EQ(LineError(R"({"kind": "sleep", "seconds": 1, "secnds": 1})"),
            "tasks.jsonl:3: unknown field 'secnds' for a sleep task");
  EXPECT_EQ(LineError(R"({"kind": "echo"})"), "tasks.jsonl:3: missing field 'value'");
  EXPECT_EQ(LineError(R"({"kind": "cpu", "ms": null})"),
            "tasks.jsonl:3: field 'ms' must be a number, not null");
  EXPECT_EQ(LineError(R"({"kind": "shell", "argv": []})"),
            "tasks.jsonl:3: field 'argv' must not be empty");
  EXPECT_EQ(LineError(R"({"kind": "shell", "argv": ["ls", 1]})"),
            "tasks.jsonl:3: field 'argv' item 1 must be a string, not number");
  EXPECT_EQ(LineError(R"({"kind": "shell", "argv": "ls"})"),
            "tasks.jsonl:3: field 'argv' must be an array of strings");
  EXPECT_EQ(LineError(R"({"kind": "shell"})"),
            "tasks.jsonl:3: a shell task needs exactly one of 'argv' or 'cmd'");
  EXPECT_EQ(LineError(R"({"kind": "shell", "cmd": ""})"),
            "tasks.jsonl:3: field 'cmd' must not be empty");
  EXPECT_EQ(LineError(R"({"kind": "echo", "value": 1, "timeout": 0})"),
            "tasks.jsonl:3: field 'timeout' must be more than zero, not 0");
  EXPECT_EQ(LineError(R"({"kind": "echo", "value": 1, "delay": -2})"),
            "tasks.jsonl:3: field 'delay' must be zero or more, not -2");
  EXPECT_EQ(LineError(R"({"kind": "echo", "value": 1, "priority": 1.5})"),
            "tasks.jsonl:3: field 'priority' must be an integer");
}

TEST(TaskSpecTest, ShellTasksTakeACwdAndAnEnv) {
  TaskSpec s = Parse(R"({"kind": "shell", "cmd": "make", "cwd": "src", "env": {"CC": "clang"}})");
  EXPECT_EQ(s.body, TaskBody(ShellTask::In({"/bin/sh", "-c", "make"}, "src", {"CC=clang"})));
  EXPECT_EQ(LineError(R"({"kind": "shell", "cmd": "ls", "cwd": 3})"),
            "tasks.jsonl:3: field 'cwd' must be a directory's path (a string)");
  EXPECT_EQ(LineError(R"({"kind": "shell", "cmd": "ls", "env": ["A=1"]})"),
            "tasks.jsonl:3: field 'env' must be an object of strings: {\"NAME\": \"value\"}");
  EXPECT_EQ(LineError(R"({"kind": "shell", "cmd": "ls", "env": {"A": 1}})"),
            "tasks.jsonl:3: field 'env' item 'A' must be a string, not number");
  EXPECT_EQ(LineError(R"({"kind": "shell", "cmd": "ls", "env": {"A=B": "1"}})"),
            "tasks.jsonl:3: field 'env' has the name 'A=B'; a name is not empty and has no '='");
  EXPECT_EQ(LineError(R"({"kind": "sleep", "seconds": 1, "cwd": "/"})"),
            "tasks.jsonl:3: unknown field 'cwd' for a sleep task");
  EXPECT_EQ(SentenceOf(ValidateEnv({"A=1", "B"}, "--env")), "--env item 'B' must be NAME=VALUE");
  EXPECT_EQ(SentenceOf(ValidateEnv({"=1"}, "--env")), "--env item '=1' must be NAME=VALUE");
  EXPECT_EQ(SentenceOf(ValidateEnv({std::string(kMaxEnvBytes, 'x') + "=1"}, "--env")),
            "--env is " + std::to_string(kMaxEnvBytes + 3) + " bytes; the limit is " +
                std::to_string(kMaxEnvBytes));
}

TEST(TaskSpecTest, FileWithOneBadLineIsRefusedWhole) {
  // Given a file whose third line is bad, When it is parsed, Then no task comes back, only the
  // error naming line 3.
  std::istringstream in(
      "{\"kind\": \"echo\", \"value\": 1}\n\n{\"kind\": \"sleep\", \"seconds\": -1}\n"
      "{\"kind\": \"echo\", \"value\": 2}\n");
  auto parsed = ParseTaskFile(in, "f.jsonl");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().sentence, "f.jsonl:3: field 'seconds' must be zero or more, not -1");
}

TEST(TaskSpecTest, FileSkipsBlankLinesAndKeepsOrder) {
  std::istringstream in(
      "{\"kind\": \"echo\", \"value\": 1}\n  \n{\"kind\": \"echo\", \"value\": 2}\n");
  auto parsed = ParseTaskFile(in, "f");
  ASSERT_TRUE(parsed);
  const auto& specs = *parsed;
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(std::get<EchoTask>(specs[0].body).value, "1");
  EXPECT_EQ(std::get<EchoTask>(specs[1].body).value, "2");
}

TEST(TaskSpecTest, EmptyFileIsRefused) {
  std::istringstream in("\n\n");
  auto parsed = ParseTaskFile(in, "empty.jsonl");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().sentence, "empty.jsonl: no tasks in the file");
}

TEST(TaskSpecTest, ArgvLimitsAtNAndNPlusOne) {
  TaskSpec s;
  // kMaxArgvBytes counts each string with its terminating NUL.
  s.body = ShellTask{{"echo", std::string(kMaxArgvBytes - 5 - 1, 'x')}};
  auto& argv = std::get<ShellTask>(s.body).argv;
  EXPECT_TRUE(ValidateSpec(s).ok());
  argv[1].push_back('x');
  ASSERT_FALSE(ValidateSpec(s).ok());
  EXPECT_EQ(SentenceOf(ValidateSpec(s)), "field 'argv' is " + std::to_string(kMaxArgvBytes + 1) +
                                             " bytes; the limit is " +
                                             std::to_string(kMaxArgvBytes));
  argv.assign(kMaxArgs, "a");
  EXPECT_TRUE(ValidateSpec(s).ok());
  argv.push_back("a");
  EXPECT_EQ(SentenceOf(ValidateSpec(s)), "field 'argv' has " + std::to_string(kMaxArgs + 1) +
                                             " items; the limit is " + std::to_string(kMaxArgs));
}

TEST(TaskSpecTest, ValueLimitAtNAndNPlusOne) {
  const std::string at_limit = "\"" + std::string(kMaxValueBytes - 2, 'v') + "\"";
  auto parsed = ParseTaskJson("{\"kind\": \"echo\", \"value\": " + at_limit + "}", "f:1");
  EXPECT_TRUE(parsed);
  const std::string over = "\"" + std::string(kMaxValueBytes - 1, 'v') + "\"";
  parsed = ParseTaskJson("{\"kind\": \"echo\", \"value\": " + over + "}", "f:1");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().sentence, "f:1: the task's value is " +
                                         std::to_string(kMaxValueBytes + 1) +
                                         " bytes; the limit is " + std::to_string(kMaxValueBytes));
}

TEST(TaskSpecTest, AttemptsRetriesAndBackoff) {
  TaskSpec s =
      Parse(R"({"kind": "cpu", "ms": 1, "attempts": 5, "retries": 2, "retry_backoff": [0.5, 10]})");
  EXPECT_EQ(s.attempts, 5u);
  EXPECT_EQ(s.retries, 2u);
  EXPECT_EQ(s.backoff_base, 0.5);
  EXPECT_EQ(s.backoff_max, 10);
  EXPECT_EQ(LineError(R"({"kind": "cpu", "ms": 1, "attempts": 0})"),
            "tasks.jsonl:3: field 'attempts' must be an integer of at least 1");
  EXPECT_EQ(LineError(R"({"kind": "cpu", "ms": 1, "retry_backoff": [5, 1]})"),
            "tasks.jsonl:3: field 'retry_backoff' must be [BASE, MAX] with 0 <= BASE <= MAX");
  EXPECT_EQ(LineError(R"({"kind": "cpu", "ms": 1, "retry_backoff": [-1, 1]})"),
            "tasks.jsonl:3: field 'retry_backoff' must be [BASE, MAX] with 0 <= BASE <= MAX");
  // [0, 0]: the next run at once (what the command line's --retries gives).
  EXPECT_EQ(Parse(R"({"kind": "cpu", "ms": 1, "retry_backoff": [0, 0]})").backoff_max, 0);
}

TEST(TaskSpecTest, ValidateSpecChecksCommandLineValues) {
  TaskSpec s;
  s.body = ShellTask{};
  EXPECT_FALSE(ValidateSpec(s).ok());
  s.body = ShellTask{{"true"}};
  EXPECT_TRUE(ValidateSpec(s).ok());
  s.delay = -1;
  EXPECT_EQ(SentenceOf(ValidateSpec(s)), "field 'delay' must be zero or more, not -1.0");
}

Expected<std::vector<TaskSpec>> ParseText(const std::string& text) {
  std::istringstream in(text);
  return ParseTaskFile(in, "t.jsonl");
}
std::string ErrorOf(const std::string& text) {
  auto parsed = ParseText(text);
  return parsed ? "parsed" : parsed.error().sentence;
}

TEST(TaskSpecTest, NamesInAFileBecomeDependenciesOnTasksOfTheJob) {
  auto parsed = ParseText(
      R"({"kind": "sleep", "seconds": 0, "after": ["load"]})"
      "\n"
      R"({"kind": "sleep", "seconds": 0, "name": "load", "after_any": "j3"})"
      "\n"
      R"({"kind": "sleep", "seconds": 0, "after": ["j4.2", "load"], "after_any": ["first"]})"
      "\n"
      R"({"kind": "echo", "value": 1, "name": "first"})");
  ASSERT_TRUE(parsed);
  const auto& specs = *parsed;
  EXPECT_EQ(specs[0].need().after, (std::vector<Dependency>{{0, 1, false, false}}));
  EXPECT_EQ(specs[1].need().after, (std::vector<Dependency>{{3, 0, true, true}}));
  EXPECT_EQ(specs[1].need().name, "load");
  EXPECT_EQ(
      specs[2].need().after,
      (std::vector<Dependency>{{4, 2, false, false}, {0, 1, false, false}, {0, 3, false, true}}));
  EXPECT_FALSE(specs[3].needs == nullptr);
}

TEST(TaskSpecTest, ACycleUnknownNameOrTakenNameRefusesTheFileNamingLines) {
  EXPECT_EQ(ErrorOf(R"({"kind": "echo", "value": 1, "name": "a", "after": "c"})"
                    "\n"
                    R"({"kind": "echo", "value": 1, "name": "b", "after": "a"})"
                    "\n\n"
                    R"({"kind": "echo", "value": 1, "name": "c", "after": "b"})"),
            "t.jsonl: the tasks' 'after' make a cycle: 'a' (line 1) -> 'b' (line 2) -> 'c' (line "
            "4) -> 'a' (line 1)");
  EXPECT_EQ(ErrorOf(R"({"kind": "echo", "value": 1, "after": "nobody"})"),
            "t.jsonl:1: field 'after' names 'nobody', which no task in t.jsonl is called");
  EXPECT_EQ(ErrorOf(R"({"kind": "echo", "value": 1, "name": "x"})"
                    "\n"
                    R"({"kind": "echo", "value": 1, "name": "x"})"),
            "t.jsonl:2: the name 'x' is taken by line 1");
  EXPECT_EQ(ErrorOf(R"({"kind": "echo", "value": 1, "name": "x", "after": "x"})"),
            "t.jsonl:1: the task 'x' cannot run after itself");
  EXPECT_EQ(ErrorOf(R"({"kind": "echo", "value": 1, "name": "j7"})"),
            "t.jsonl:1: field 'name' 'j7' looks like a task id; pick another name");
  EXPECT_EQ(ErrorOf(R"({"kind": "echo", "value": 1, "after": "j0"})"),
            "t.jsonl:1: field 'after' names 'j0', which no task in t.jsonl is called");
}

TEST(TaskSpecTest, LimitsLocksResourcesAndQueueAreParsedAndChecked) {
  auto parsed = ParseTaskJson(
      R"({"kind": "echo", "value": 1, "limits": ["dl", "api", "dl"], "locks": {"db": "write", "cache": "read"},
          "resources": {"gpu": 2, "cpus": 4}, "queue": "fast"})",
      "x:1");
  ASSERT_TRUE(parsed);
  const Needs& n = parsed->need();
  EXPECT_EQ(n.limits, (std::vector<std::string>{"api", "dl"}));
  EXPECT_EQ(n.locks, (std::vector<LockNeed>{{"cache", LockMode::kRead}, {"db", LockMode::kWrite}}));
  EXPECT_EQ(n.resources, (std::vector<ResourceNeed>{{"gpu", 2}}));
  EXPECT_EQ(n.cpus, 4u);
  EXPECT_EQ(n.queue, "fast");
  auto error = [](const std::string& line) {
    auto p = ParseTaskJson(line, "x:1");
    return p ? "parsed" : p.error().sentence;
  };
  EXPECT_EQ(error(R"({"kind": "echo", "value": 1, "locks": {"db": "exclusive"}})"),
            "x:1: field 'locks' item 'db' must be \"read\" or \"write\", not \"exclusive\"");
  EXPECT_EQ(error(R"({"kind": "echo", "value": 1, "resources": {"gpu": 0}})"),
            "x:1: field 'resources' item 'gpu' must be a whole number from 1 to 1000000, not 0");
  EXPECT_EQ(error(R"({"kind": "echo", "value": 1, "limits": "a b"})"),
            "x:1: field 'limits' item 'a b' is not a name: use 1 to 64 letters, digits, '_', '-' "
            "or '.'");
  EXPECT_EQ(error(R"({"kind": "echo", "value": 1, "after": "load"})"),
            "x:1: field 'after' names the task 'load'; names are known only within a task file "
            "(give an id such as j7 or j7.2)");
}

TEST(TaskSpecTest, ATimeRequestIsSecondsAndMakesTheTaskHaveNeeds) {
  auto parsed = ParseTaskJson(R"({"kind": "sleep", "seconds": 1, "time_request": 600})", "x:1");
  ASSERT_TRUE(parsed);
  ASSERT_TRUE(parsed->needs);
  EXPECT_EQ(parsed->needs->time_request, 600);
  EXPECT_TRUE(ValidateSpec(*parsed).ok());
  auto bad = ParseTaskJson(R"({"kind": "sleep", "seconds": 1, "time_request": 0})", "x:1");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().sentence.find("'time_request'"), std::string::npos);
  auto words = ParseTaskJson(R"({"kind": "sleep", "seconds": 1, "time_request": "1h"})", "x:1");
  ASSERT_FALSE(words);
  EXPECT_NE(words.error().sentence.find("'time_request'"), std::string::npos);
}

}  // namespace
}  // namespace orq

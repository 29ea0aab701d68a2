// The local half of the security model, through the real binary: $ORQ_HOME is what protects a
// broker on this host, so orq refuses one that others could tamper with, keeps its own files
// owner-only, and refuses secret files that others may read.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "tests/harness.h"

namespace orq::testing {
namespace {

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST(SecurityTest, AHomeOthersMayWriteIsRefusedWithASentence) {
  OrqEnv env;
  // Given an $ORQ_HOME that its group may write to,
  ASSERT_EQ(::chmod(env.home().c_str(), 0770), 0);
  // When orq is asked to start or to talk to a broker there,
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"up", "-w", "1"}, {"status"}, {"broker"}, {"access", "list"}}) {
    RunResult r = env.Run(args);
    // Then it refuses, exit 2, saying what is wrong and how to fix it, and starts nothing.
    EXPECT_TRUE(Exits(r, 2)) << args[0];
    EXPECT_NE(r.err.find("may be written by others (mode 0770)"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("chmod 700 " + env.home()), std::string::npos) << r.err;
  }
  EXPECT_TRUE(env.Processes().empty());
  ASSERT_EQ(::chmod(env.home().c_str(), 0700), 0);
}

TEST(SecurityTest, PlainListingsShowATasksTerminalEscapesEscaped) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1"}), 0));
  // Given a task whose command, error and stderr hold terminal escape sequences,
  RunResult submit = env.Run(
      {"submit", "--", "sh", "-c", "printf '\033]0;pwned\007\033[2J' >&2; exit 3", "\033[31m"});
  ASSERT_TRUE(Exits(submit, 0));
  // when its job is listed and its failure reported in plain text,
  RunResult jobs = env.Run({"jobs"});
  ASSERT_TRUE(Exits(jobs, 0));
  RunResult gather = env.Run({"gather", JobId(submit)});
  // then nothing reaches the terminal raw: each escape shows as \x1b.
  EXPECT_NE(gather.err.find("\\x1b]0;pwned"), std::string::npos) << gather.err;
  EXPECT_EQ(gather.err.find('\x1b'), std::string::npos) << gather.err;
  EXPECT_EQ(jobs.out.find('\x1b'), std::string::npos) << jobs.out;
}

TEST(SecurityTest, AHomeSubdirectoryThatIsALinkIsNotFollowed) {
  OrqEnv env;
  // Given $ORQ_HOME/output made a link to a directory elsewhere,
  const std::string elsewhere = env.home() + "/elsewhere";
  std::filesystem::create_directory(elsewhere);
  std::filesystem::create_directory_symlink(elsewhere, env.home() + "/output");
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1"}), 0));
  // when a task prints more than a stream keeps inline (the rest would spill to that directory),
  RunResult submit = env.Run({"submit", "--", "seq", "300000"});
  ASSERT_TRUE(Exits(submit, 0));
  RunResult gather = env.Run({"gather", JobId(submit)});
  EXPECT_GE(gather.out.size(), size_t{1} << 20);  // the stream's first MiB, kept inline
  EXPECT_LT(gather.out.size(), size_t{2} << 20);
  // then nothing was written through the link (the rest was dropped, as with no directory).
  EXPECT_TRUE(std::filesystem::is_empty(elsewhere));
  EXPECT_TRUE(std::filesystem::is_symlink(env.home() + "/output"));
}

TEST(SecurityTest, AnAbstractOrForeignIpcSocketIsRefusedWithASentence) {
  OrqEnv env;
  // Given a broker asked to listen on an abstract socket (no file, no permissions), or in a
  // directory anyone may write to,
  RunResult abstract = env.Run({"broker", "--endpoint", "ipc://@orq-test-abstract"});
  EXPECT_TRUE(Exits(abstract, 2));
  EXPECT_NE(abstract.err.find("is an abstract socket"), std::string::npos) << abstract.err;
  TempDir shared_dir("orqt-shared");
  ASSERT_EQ(::chmod(shared_dir.path().c_str(), 01777), 0);  // as /tmp is
  RunResult shared = env.Run({"broker", "--endpoint", "ipc://" + shared_dir.path() + "/b.ipc"});
  EXPECT_TRUE(Exits(shared, 2));
  EXPECT_NE(shared.err.find("may be written by others"), std::string::npos) << shared.err;
  // and a client told to talk to such a socket, it refuses too.
  std::string said;
  EXPECT_EQ(RunProgram({"env", "ORQ_HOME=" + env.home(), "ORQ_ENDPOINT=ipc://@orq-test-abstract",
                        ORQ_BINARY, "status"},
                       said),
            2)
      << said;
  EXPECT_NE(said.find("is an abstract socket"), std::string::npos) << said;
  EXPECT_TRUE(env.Processes().empty());
}

TEST(SecurityTest, LinksPlantedInTheHomeAreRefusedNeverFollowed) {
  TempDir elsewhere("orqt-elsewhere");
  const std::string target = elsewhere.path() + "/precious";
  { std::ofstream(target) << "keep me\n"; }
  ASSERT_EQ(::chmod(target.c_str(), 0644), 0);
  for (const char* planted : {"broker.log", "journal.db", "broker.pid"}) {
    OrqEnv env;
    // Given a link in the home where orq keeps one of its files,
    const std::string link = env.home() + "/" + planted;
    ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
    // when the broker starts, it refuses with a sentence, and the file the link points to is
    // untouched.
    RunResult up = env.Run({"up", "-w", "0"});
    EXPECT_TRUE(Exits(up, 2)) << planted;
    EXPECT_NE((up.err + up.out).find("is a symbolic link"), std::string::npos) << planted << up.err;
    std::ifstream in(target);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(content, "keep me\n") << planted;
    EXPECT_EQ(ModeOf(target), 0644u) << planted;
    env.Run({"down"});
  }
}

TEST(SecurityTest, AHomeThatIsAnotherUsersLinkIsRefused) {
  if (::geteuid() != 0) FAIL() << "this test needs root: it makes a link owned by another user";
  TempDir base("orqt-homes");
  const std::string real = base.path() + "/real", link = base.path() + "/home";
  ASSERT_EQ(::mkdir(real.c_str(), 0700), 0);
  ASSERT_EQ(::symlink(real.c_str(), link.c_str()), 0);
  ASSERT_EQ(::lchown(link.c_str(), 65534, 65534), 0);  // nobody's
  std::string output;
  EXPECT_EQ(RunProgram({"env", "ORQ_HOME=" + link, ORQ_BINARY, "status"}, output), 2) << output;
  EXPECT_NE(output.find("is a symbolic link that belongs to another user"), std::string::npos)
      << output;
}

TEST(SecurityTest, VersionVerboseNamesTheCryptoAndStorageLibraries) {
  OrqEnv env;
  RunResult r = env.Run({"--version", "--verbose"});
  ASSERT_TRUE(Exits(r, 0));
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_EQ(lines[0].rfind("orq ", 0), 0u);
  EXPECT_EQ(lines[1].rfind("libzmq 4.", 0), 0u) << lines[1];
  EXPECT_NE(lines[1].find("(CURVE)"), std::string::npos) << lines[1];
  EXPECT_EQ(lines[2].rfind("libsodium 1.", 0), 0u) << lines[2];
  EXPECT_EQ(lines[3].rfind("SQLite 3.", 0), 0u) << lines[3];
}

TEST(SecurityTest, StateFilesAreOwnerOnly) {
  OrqEnv env;
  // Given a broker that listens on TCP too and has run a job,
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1", "--listen", "tcp://127.0.0.1:*"}), 0));
  RunResult submit = env.Run({"submit", "--echo", "1"});
  ASSERT_TRUE(Exits(submit, 0));
  ASSERT_TRUE(Exits(env.Run({"gather", JobId(submit)}), 0));
  ASSERT_TRUE(Exits(env.Run({"access", "add", "--worker", env.home() + "/w.access"}), 0));
  // Then its socket, journal, pid file, log and keys are readable by their owner alone.
  for (const char* file :
       {"broker.ipc", "journal.db", "journal.db-wal", "broker.pid", "broker.log", "keys/broker.key",
        "keys/endpoints.json", "keys/access/w.json", "w.access"}) {
    EXPECT_EQ(ModeOf(env.home() + "/" + file), 0600u) << file;
  }
  EXPECT_EQ(ModeOf(env.home() + "/keys"), 0700u);
}

TEST(SecurityTest, SecretFilesOthersMayReadAreRefused) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "0", "--listen", "tcp://127.0.0.1:*"}), 0));
  const std::string access = env.home() + "/alice.access";
  ASSERT_TRUE(Exits(env.Run({"access", "add", "--client", access}), 0));
  // Given an access file its group may read,
  ASSERT_EQ(::chmod(access.c_str(), 0640), 0);
  // When a client or a worker is given it, Then each refuses it, exit 2, before any connection.
  RunResult client = env.Run({"--access", access, "status"});
  EXPECT_TRUE(Exits(client, 2));
  EXPECT_NE(client.err.find("chmod 600 " + access), std::string::npos) << client.err;
  EXPECT_TRUE(Exits(env.Run({"worker", "--access", access}), 2));
  // The same for the broker's own key: a broker will not listen with a key others may read.
  ASSERT_TRUE(Exits(env.Run({"down"}), 0));
  ASSERT_EQ(::chmod((env.home() + "/keys/broker.key").c_str(), 0644), 0);
  RunResult broker = env.Run({"broker", "--listen", "tcp://127.0.0.1:*"});
  EXPECT_TRUE(Exits(broker, 2));
  EXPECT_NE(broker.err.find("may be read by others (mode 0644)"), std::string::npos) << broker.err;
}

TEST(SecurityTest, PlainTcpIsNeverAnOption) {
  OrqEnv env;
  // A TCP endpoint anywhere but --listen (which is always CURVE) is refused with a sentence.
  RunResult broker = env.Run({"broker", "--endpoint", "tcp://127.0.0.1:5555"});
  EXPECT_TRUE(Exits(broker, 2));
  EXPECT_NE(broker.err.find("--endpoint must be an ipc:// endpoint"), std::string::npos)
      << broker.err;
  RunResult worker = env.Run({"worker", "--connect", "tcp://127.0.0.1:5555"});
  EXPECT_TRUE(Exits(worker, 2));
  EXPECT_NE(worker.err.find("needs --access FILE"), std::string::npos) << worker.err;
  OrqEnv via_env({"env", "ORQ_ENDPOINT=tcp://127.0.0.1:5555"});
  RunResult client = via_env.Run({"status"});
  EXPECT_TRUE(Exits(client, 2));
  EXPECT_NE(client.err.find("$ORQ_ENDPOINT must be an ipc:// endpoint"), std::string::npos);
  EXPECT_TRUE(Exits(env.Run({"broker", "--listen", "udp://127.0.0.1:5555"}), 2));
}

TEST(SecurityTest, OrqAccessFromTheEnvironmentReachesARemoteBroker) {
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1", "--listen", "tcp://127.0.0.1:*"}), 0));
  const std::string access = env.home() + "/alice.access";
  ASSERT_TRUE(Exits(env.Run({"access", "add", "--client", access}), 0));
  // Given $ORQ_ACCESS and no --access, the client goes over TCP with that key.
  OrqEnv client({"env", "ORQ_ACCESS=" + access});
  RunResult submit = client.Run({"submit", "--echo", "over tcp"});
  ASSERT_TRUE(Exits(submit, 0));
  EXPECT_EQ(client.Run({"gather", JobId(submit)}).out, "over tcp\n");
  RunResult status = client.Run({"status", "--json"});
  ASSERT_TRUE(Exits(status, 0));
  EXPECT_EQ(nlohmann::json::parse(status.out)["endpoints"].size(), 2u);
  // `orq up` is for this host only.
  EXPECT_TRUE(Exits(client.Run({"up"}), 2));
}

}  // namespace
}  // namespace orq::testing

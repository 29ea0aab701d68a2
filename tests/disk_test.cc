// A full disk under the journal: the broker refuses submits (exit 6, one sentence) but stays up,
// serves gathers and status, finishes what it accepted (no new task starts meanwhile), and takes
// work again once space is freed. $ORQ_HOME is a small tmpfs the test mounts, fills and frees.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/harness.h"

namespace orq::testing {
namespace {

// A tmpfs of `bytes` mounted on `dir` (owner-only, as orq wants its home) for the test's life.
class Tmpfs {
 public:
  Tmpfs(const std::string& dir, size_t bytes) : dir_(dir) {
    const std::string options = "size=" + std::to_string(bytes) + ",mode=0700";
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) != 0)
      throw std::runtime_error("cannot mount a tmpfs on " + dir + ": " + std::strerror(errno));
  }
  ~Tmpfs() { ::umount2(dir_.c_str(), MNT_DETACH); }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

 private:
  std::string dir_;
};

// Writes `path` until the disk has no room left; returns the bytes written.
size_t Fill(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot create " + path);
  const std::string chunk(64 * 1024, 'x');
  size_t written = 0;
  for (;;) {
    const size_t n = std::fwrite(chunk.data(), 1, chunk.size(), f);
    written += n;
    if (n < chunk.size() || std::fflush(f) != 0) break;
  }
  std::fclose(f);
  return written;
}

TEST(DiskTest, AFullDiskRefusesSubmitsWhileTheBrokerServesAndFinishesWhatItAccepted) {
  if (::geteuid() != 0)
    FAIL() << "mounting a small tmpfs as $ORQ_HOME needs root (CI runs as root); this test runs "
              "as uid "
           << ::geteuid();
  OrqEnv env;
  Tmpfs disk(env.home(), 16 << 20);
  const TempDir go_dir("orq-disk");
  const std::string go = go_dir.path() + "/go";

  // Given a broker on a 16 MiB disk with one shell slot: a job done, a task running until told
  // to end, and a task queued behind it.
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "-t", "1"}), 0));
  const std::string done = JobId(env.Run({"submit", "--", "echo", "done"}));
  EXPECT_EQ(env.Run({"gather", done}).out, "done\n");
  const std::string running =
      JobId(env.Run({"submit", "--", "sh", "-c",
                     "while [ ! -e " + go + " ]; do sleep 0.05; done; echo finished"}));
  const std::string queued = JobId(env.Run({"submit", "--", "echo", "queued"}));

  // When the disk fills up,
  const std::string filler = env.home() + "/filler";
  ASSERT_GT(Fill(filler), 0u);

  // then a submit is refused in one sentence with exit code 6, and nothing of it is kept;
  RunResult refused = env.Run({"submit", "--", "echo", "refused"});
  EXPECT_TRUE(Exits(refused, 6));
  EXPECT_NE(refused.err.find("nothing was accepted"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("disk"), std::string::npos) << refused.err;
  EXPECT_EQ(refused.err.find('\n'), refused.err.size() - 1) << refused.err;
  // status says why, and gathers are served;
  nlohmann::json status = env.Status();
  ASSERT_TRUE(status["journal_problem"].is_string()) << status.dump();
  EXPECT_NE(status["journal_problem"].get<std::string>().find("disk is full"), std::string::npos);
  EXPECT_EQ(env.Run({"gather", done}).out, "done\n");
  // the running task finishes and its result is gathered, but the queued one does not start.
  { std::ofstream(go) << ""; }
  RunResult finished = env.Run({"gather", running}, "", std::chrono::seconds(30));
  EXPECT_TRUE(Exits(finished, 0));
  EXPECT_EQ(finished.out, "finished\n");
  status = env.Status();
  EXPECT_EQ(status["tasks"]["queued"], 1) << status.dump();
  EXPECT_EQ(status["tasks"]["running"], 0) << status.dump();

  // When space is freed, the queued task runs, submits are accepted, and status is clear again.
  ASSERT_EQ(::unlink(filler.c_str()), 0);
  RunResult later = env.Run({"gather", queued}, "", std::chrono::seconds(30));
  EXPECT_TRUE(Exits(later, 0));
  EXPECT_EQ(later.out, "queued\n");
  const std::string again = JobId(env.Run({"submit", "--", "echo", "again"}));
  EXPECT_EQ(env.Run({"gather", again}).out, "again\n");
  EXPECT_TRUE(env.Status()["journal_problem"].is_null());

  // And everything accepted survived in the journal: after a restart, every result is there.
  ASSERT_TRUE(Exits(env.Run({"down"}), 0));
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1"}), 0));
  RunResult all = env.Run({"gather", done, running, queued, again});
  EXPECT_TRUE(Exits(all, 0));
  EXPECT_EQ(all.out, "done\nfinished\nqueued\nagain\n");
  ASSERT_TRUE(Exits(env.Run({"down"}), 0));
}

}  // namespace
}  // namespace orq::testing

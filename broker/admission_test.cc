#include "broker/admission.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "tests/temp_dir.h"

namespace orq {
namespace {

// A gate on a router of its own, over a key store in a private directory.
class GateTest : public ::testing::Test {
 protected:
  GateTest() : dir_("orq-gate"), store_(dir_.path() + "/keys") {}

  // The access directory's modification time, which a coarse filesystem clock may leave as it was.
  timespec AccessDirTime() const {
    struct stat st {};
    EXPECT_EQ(::stat((dir_.path() + "/keys/access").c_str(), &st), 0);
    return st.st_mtim;
  }
  void SetAccessDirTime(timespec t) const {
    const timespec times[2] = {t, t};
    ASSERT_EQ(::utimensat(AT_FDCWD, (dir_.path() + "/keys/access").c_str(), times, 0), 0);
  }

  testing::TempDir dir_;
  KeyStore store_;
  zmq::context_t ctx_;
  zmq::socket_t router_{ctx_, zmq::socket_type::router};
};

TEST_F(GateTest, AChangeToTheAllowListIsSeenEvenWhenTheDirectoryTimeStaysTheSame) {
  // Given a gate that allows a worker key,
  const KeyPair old_key = NewKeyPair(), new_key = NewKeyPair();
  store_.Add({"node7", Role::kWorker, old_key.public_key, 1});
  Admission gate(ctx_, router_, store_);
  ASSERT_EQ(gate.RoleOf("peer", old_key.public_key, -1), Role::kWorker);
  EXPECT_TRUE(gate.ReloadIfChanged().empty());
  // When its name is revoked and given to another key in the same tick of the filesystem's clock
  // (the directory's time set back to what it was),
  const timespec before = AccessDirTime();
  ASSERT_TRUE(store_.Revoke("node7"));
  store_.Add({"node7", Role::kClient, new_key.public_key, 2});
  SetAccessDirTime(before);
  // Then the next check sees it: the old key is refused, the new one has its role.
  gate.ReloadIfChanged();
  EXPECT_EQ(gate.RoleOf("peer", old_key.public_key, -1), Role::kRevoked);
  EXPECT_EQ(gate.RoleOf("peer2", new_key.public_key, -1), Role::kClient);
  EXPECT_EQ(gate.allowed_keys(), 1u);
}

TEST_F(GateTest, ARevokedKeyIsDroppedAtTheNextCheck) {
  // Given two allowed keys, one of them seen on a connection,
  const KeyPair a = NewKeyPair(), b = NewKeyPair();
  store_.Add({"a", Role::kWorker, a.public_key, 1});
  store_.Add({"b", Role::kWorker, b.public_key, 1});
  Admission gate(ctx_, router_, store_);
  ASSERT_EQ(gate.RoleOf("peer-a", a.public_key, 1000), Role::kWorker);
  // When one is revoked behind the broker's back (no one tells it),
  const timespec before = AccessDirTime();
  ASSERT_TRUE(store_.Revoke("a"));
  SetAccessDirTime(before);
  // Then the next check names its connection, and the other key stays allowed.
  EXPECT_EQ(gate.ReloadIfChanged(), std::vector<std::string>{"peer-a"});
  EXPECT_EQ(gate.allowed_keys(), 1u);
  EXPECT_EQ(gate.RoleOf("peer-b", b.public_key, -1), Role::kWorker);
  EXPECT_TRUE(gate.ReloadIfChanged().empty());
}

}  // namespace
}  // namespace orq

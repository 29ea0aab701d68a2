#include "common/keys.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/paths.h"
#include "tests/temp_dir.h"

namespace orq {
namespace {

// A private temporary directory per test, removed afterwards.
class KeysTest : public ::testing::Test {
 protected:
  KeysTest() : temp_("orq-keys"), dir_(temp_.path()) {}
  testing::TempDir temp_;
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  static void Write(const std::string& path, const std::string& text, mode_t mode) {
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
  }
  static std::string ErrorOf(const std::function<void()>& f) {
    try {
      f();
    } catch (const UsageError& e) {
      return e.what();
    }
    return "(no error)";
  }
  std::string dir_;
};

AccessFile Sample() {
  AccessFile a;
  a.role = Role::kWorker;
  a.name = "node7";
  a.endpoints = {"tcp://head:5555", "tcp://10.0.0.1:5555"};
  a.broker_public_key = NewKeyPair().public_key;
  a.keys = NewKeyPair();
  return a;
}

TEST(KeyPairTest, FreshPairsAreValidAndDistinct) {
  KeyPair a = NewKeyPair(), b = NewKeyPair();
  EXPECT_TRUE(IsZ85Key(a.public_key));
  EXPECT_TRUE(IsZ85Key(a.secret_key));
  EXPECT_NE(a.public_key, b.public_key);
  EXPECT_FALSE(IsZ85Key("short"));
  EXPECT_FALSE(IsZ85Key(std::string(40, ' ')));
}

TEST_F(KeysTest, AccessFileRoundTripsAndIsPrivate) {
  // Given an access file written the way `orq access add` writes it,
  const AccessFile a = Sample();
  WritePrivateFile(Path("w.access"), FormatAccessFile(a), /*exclusive=*/true);
  // When it is read back, Then every field survives and the file is 0600.
  AccessFile b = ReadAccessFile(Path("w.access"));
  EXPECT_EQ(b.role, Role::kWorker);
  EXPECT_EQ(b.name, "node7");
  EXPECT_EQ(b.endpoints, a.endpoints);
  EXPECT_EQ(b.broker_public_key, a.broker_public_key);
  EXPECT_EQ(b.keys.public_key, a.keys.public_key);
  EXPECT_EQ(b.keys.secret_key, a.keys.secret_key);
  struct stat st {};
  ASSERT_EQ(::stat(Path("w.access").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(KeysTest, ExclusiveWriteNeverReplacesAFile) {
  WritePrivateFile(Path("f"), "first", /*exclusive=*/true);
  EXPECT_NE(ErrorOf([&] { WritePrivateFile(Path("f"), "second", true); }).find("already exists"),
            std::string::npos);
  std::ifstream in(Path("f"));
  std::string text;
  in >> text;
  EXPECT_EQ(text, "first");
}

TEST_F(KeysTest, LooseOrDamagedAccessFilesAreRefusedWithASentence) {
  const std::string good = FormatAccessFile(Sample());
  auto with = [&](const char* field, nlohmann::json value) {
    auto j = nlohmann::json::parse(good);
    j[field] = std::move(value);
    return j.dump();
  };
  Write(Path("loose"), good, 0644);
  EXPECT_NE(ErrorOf([&] { ReadAccessFile(Path("loose")); }).find("chmod 600"), std::string::npos);
  Write(Path("group"), good, 0640);
  EXPECT_NE(ErrorOf([&] { ReadAccessFile(Path("group")); }).find("mode 0640"), std::string::npos);
  Write(Path("garbage"), "not json", 0600);
  EXPECT_NE(ErrorOf([&] { ReadAccessFile(Path("garbage")); }).find("not a JSON object"),
            std::string::npos);
  Write(Path("role"), with("role", "admin"), 0600);
  EXPECT_NE(ErrorOf([&] { ReadAccessFile(Path("role")); }).find("field 'role'"), std::string::npos);
  Write(Path("key"), with("secret_key", "xyz"), 0600);
  EXPECT_NE(ErrorOf([&] { ReadAccessFile(Path("key")); }).find("field 'secret_key'"),
            std::string::npos);
  Write(Path("ep"), with("endpoints", {"ipc:///x"}), 0600);
  EXPECT_NE(ErrorOf([&] { ReadAccessFile(Path("ep")); }).find("field 'endpoints'"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] { ReadAccessFile(Path("missing")); }).find("cannot read"),
            std::string::npos);
}

TEST_F(KeysTest, StoreAddsListsAndRevokesByNameOrKey) {
  KeyStore store(Path("keys"));
  const KeyPair w = NewKeyPair(), c = NewKeyPair();
  store.Add({"node7", Role::kWorker, w.public_key, 1});
  store.Add({"alice", Role::kClient, c.public_key, 2});
  // A name or a key already allowed is refused.
  EXPECT_NE(ErrorOf([&] {
              store.Add({"node7", Role::kWorker, NewKeyPair().public_key, 3});
            }).find("is taken"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] {
              store.Add({"other", Role::kClient, w.public_key, 3});
            }).find("already allowed"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] {
              store.Add({"../x", Role::kClient, NewKeyPair().public_key, 3});
            }).find("not a usable name"),
            std::string::npos);
  auto list = store.List();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "alice");
  EXPECT_EQ(store.Load().at(w.public_key).role, Role::kWorker);

  ASSERT_TRUE(store.Revoke("node7"));
  ASSERT_TRUE(store.Revoke(c.public_key));
  EXPECT_FALSE(store.Revoke("node7"));
  EXPECT_TRUE(store.Load().empty());
}

TEST_F(KeysTest, BrokerKeyIsMadeOnceAndMustStayPrivate) {
  KeyStore store(Path("keys"));
  EXPECT_FALSE(store.HasBrokerKey());
  const KeyPair first = store.BrokerKey();
  EXPECT_EQ(store.BrokerKey().secret_key, first.secret_key);
  ::chmod(Path("keys/broker.key").c_str(), 0644);
  EXPECT_NE(ErrorOf([&] { store.BrokerKey(); }).find("may be read by others"), std::string::npos);
}

TEST_F(KeysTest, StoreRefusesADirectoryOthersMayWrite) {
  std::filesystem::create_directory(Path("open"));
  ::chmod(Path("open").c_str(), 0777);
  EXPECT_NE(ErrorOf([&] { KeyStore store(Path("open")); }).find("chmod 700"), std::string::npos);
}

TEST(DirectoryProblemTest, OnlyAnOwnDirectoryNoOneElseWritesIsFine) {
  struct stat st {};
  st.st_mode = S_IFDIR | 0700;
  st.st_uid = 1000;
  EXPECT_TRUE(DirectoryProblem(st, 1000, "/h", "$ORQ_HOME").ok());
  st.st_mode = S_IFDIR | 0755;
  EXPECT_TRUE(
      DirectoryProblem(st, 1000, "/h", "$ORQ_HOME").ok());  // readable is fine, writable not
  st.st_mode = S_IFDIR | 0770;
  EXPECT_EQ(SentenceOf(DirectoryProblem(st, 1000, "/h", "$ORQ_HOME")),
            "$ORQ_HOME /h may be written by others (mode 0770), who could replace its socket, "
            "journal or keys; run 'chmod 700 /h'");
  st.st_mode = S_IFDIR | 0702;
  EXPECT_FALSE(DirectoryProblem(st, 1000, "/h", "$ORQ_HOME").ok());
  st.st_mode = S_IFDIR | 0700;
  EXPECT_NE(SentenceOf(DirectoryProblem(st, 0, "/h", "$ORQ_HOME"))
                .find("belongs to another user (uid 1000)"),
            std::string::npos);
  st.st_mode = S_IFREG | 0700;
  EXPECT_NE(SentenceOf(DirectoryProblem(st, 1000, "/h", "$ORQ_HOME")).find("not a directory"),
            std::string::npos);
}

TEST(AdvertisedEndpointTest, WildcardHostsBecomeThisHostsName) {
  EXPECT_EQ(AdvertisedEndpoint("tcp://0.0.0.0:5555", "head"), "tcp://head:5555");
  EXPECT_EQ(AdvertisedEndpoint("tcp://*:5555", "head"), "tcp://head:5555");
  EXPECT_EQ(AdvertisedEndpoint("tcp://[::]:5555", "head"), "tcp://head:5555");
  EXPECT_EQ(AdvertisedEndpoint("tcp://10.1.2.3:5555", "head"), "tcp://10.1.2.3:5555");
}

TEST(LibzmqCheckTest, RefusesOldVersionsAndBuildsWithoutCurve) {
  EXPECT_TRUE(CheckLibzmq(4, 3, 3, true).ok());
  EXPECT_TRUE(CheckLibzmq(4, 3, 4, true).ok());
  EXPECT_TRUE(CheckLibzmq(5, 0, 0, true).ok());
  EXPECT_NE(SentenceOf(CheckLibzmq(4, 3, 2, true)).find("CVE-2019-13132"), std::string::npos);
  EXPECT_NE(SentenceOf(CheckLibzmq(4, 2, 9, true)).find("4.3.3 or later"), std::string::npos);
  EXPECT_NE(SentenceOf(CheckLibzmq(4, 3, 4, false)).find("without CURVE"), std::string::npos);
  EXPECT_TRUE(CheckRunningLibzmq().ok())
      << SentenceOf(CheckRunningLibzmq());  // the one this suite runs with
}

}  // namespace
}  // namespace orq

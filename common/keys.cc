#include "common/keys.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <tuple>

#include "common/clock.h"
#include "common/errors.h"
#include "common/paths.h"

namespace orq {
namespace {

using nlohmann::json;

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

json ParseJson(const std::string& text, const std::string& path) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw UsageError(path + " is not a JSON object");
  return j;
}

std::string Field(const json& j, const char* name, const std::string& path) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string())
    throw UsageError(path + ": field '" + name + "' is missing or not a string");
  return it->get<std::string>();
}

std::string KeyField(const json& j, const char* name, const std::string& path) {
  std::string key = Field(j, name, path);
  if (!IsZ85Key(key))
    throw UsageError(path + ": field '" + name + "' is not a CURVE key (40 Z85 characters)");
  return key;
}

Role RoleField(const json& j, const std::string& path) {
  const std::string role = Field(j, "role", path);
  if (role == "client") return Role::kClient;
  if (role == "worker") return Role::kWorker;
  throw UsageError(path + ": field 'role' must be \"client\" or \"worker\", not \"" + role + "\"");
}

AccessEntry ParseEntry(const std::string& path) {
  json j = ParseJson(ReadWhole(path), path);
  AccessEntry e;
  e.name = Field(j, "name", path);
  e.role = RoleField(j, path);
  e.public_key = KeyField(j, "public_key", path);
  e.created = j.value("created", 0.0);
  try {
    if (j.contains("queues")) e.queues = j.at("queues").get<std::vector<std::string>>();
    if (j.contains("resources")) {
      e.resources.emplace();
      for (const auto& [name, units] : j.at("resources").items())
        e.resources->push_back({name, units.get<uint32_t>()});
    }
  } catch (const json::exception&) {
    throw UsageError(path +
                     ": 'queues' must be a list of names, 'resources' an object of "
                     "NAME: UNITS");
  }
  return e;
}

}  // namespace

KeyPair NewKeyPair() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0)
    throw std::runtime_error(std::string("cannot make a CURVE key pair: ") + zmq_strerror(errno));
  return {std::string(pub, 40), std::string(sec, 40)};
}

bool IsZ85Key(std::string_view text) {
  static constexpr std::string_view kZ85 =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  return text.size() == 40 && std::all_of(text.begin(), text.end(), [](char c) {
           return kZ85.find(c) != std::string_view::npos;
         });
}

Expected<void> CheckPrivateFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return Fault("cannot read " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return Fault(path + " is not a regular file");
  if (st.st_uid != ::geteuid())
    return Fault(path + " belongs to another user (uid " + std::to_string(st.st_uid) +
                 "); it holds a secret key, so it must be yours");
  if (st.st_mode & 077)
    return Fault(path + " may be read by others (mode " + FormatMode(st.st_mode) +
                 "); it holds a secret key: run 'chmod 600 " + path + "'");
  return {};
}

void WritePrivateFile(const std::string& path, const std::string& content, bool exclusive) {
  std::random_device rd;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw UsageError("cannot write " + path + ": " + std::strerror(errno));
  const bool written =
      ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) &&
      ::fsync(fd) == 0;
  ::close(fd);
  if (!written) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw UsageError("cannot write " + path + ": " + why);
  }
  // link() refuses an existing target, so an exclusive write never replaces anything.
  const int rc =
      exclusive ? ::link(tmp.c_str(), path.c_str()) : ::rename(tmp.c_str(), path.c_str());
  const int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0) {
    if (exclusive && err == EEXIST)
      throw UsageError(path + " already exists; remove it or choose another file");
    throw UsageError("cannot write " + path + ": " + std::strerror(err));
  }
}

std::string FormatAccessFile(const AccessFile& a) {
  json j = {{"orq_access", 1},
            {"role", RoleName(a.role)},
            {"name", a.name},
            {"endpoints", a.endpoints},
            {"broker_public_key", a.broker_public_key},
            {"public_key", a.keys.public_key},
            {"secret_key", a.keys.secret_key}};
  return j.dump(2) + "\n";
}

AccessFile ReadAccessFile(const std::string& path) {
  if (auto problem = CheckPrivateFile(path); !problem.ok())
    throw UsageError(problem.error().sentence);
  json j = ParseJson(ReadWhole(path), path);
  if (j.value("orq_access", 0) != 1)
    throw UsageError(path +
                     " is not an orq access file (no \"orq_access\": 1); make one with "
                     "'orq access add'");
  AccessFile a;
  a.role = RoleField(j, path);
  a.name = Field(j, "name", path);
  auto endpoints = j.find("endpoints");
  if (endpoints == j.end() || !endpoints->is_array() || endpoints->empty())
    throw UsageError(path + ": field 'endpoints' must be a non-empty array of tcp:// endpoints");
  for (const auto& e : *endpoints) {
    if (!e.is_string() || e.get<std::string>().rfind("tcp://", 0) != 0)
      throw UsageError(path + ": field 'endpoints' must hold tcp://HOST:PORT strings");
    a.endpoints.push_back(e.get<std::string>());
  }
  a.broker_public_key = KeyField(j, "broker_public_key", path);
  a.keys.public_key = KeyField(j, "public_key", path);
  a.keys.secret_key = KeyField(j, "secret_key", path);
  return a;
}

bool IsAccessName(std::string_view name) {
  return !name.empty() && name.size() <= 64 && name.front() != '.' &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
         });
}

KeyStore::KeyStore(std::string dir) : dir_(std::move(dir)) {
  MakePrivateDirectory(dir_, "the keys directory");
  MakePrivateDirectory(AccessDir(), "the access directory");
}

bool KeyStore::HasBrokerKey() const { return ::access((dir_ + "/broker.key").c_str(), F_OK) == 0; }

KeyPair KeyStore::BrokerKey() const {
  const std::string path = dir_ + "/broker.key";
  if (!HasBrokerKey()) {
    const KeyPair fresh = NewKeyPair();
    json j = {{"public_key", fresh.public_key}, {"secret_key", fresh.secret_key}};
    try {
      WritePrivateFile(path, j.dump(2) + "\n", /*exclusive=*/true);
    } catch (const UsageError&) {
      if (!HasBrokerKey()) throw;  // else another process made it first: use theirs
    }
  }
  if (auto problem = CheckPrivateFile(path); !problem.ok())
    throw UsageError(problem.error().sentence);
  json j = ParseJson(ReadWhole(path), path);
  return {KeyField(j, "public_key", path), KeyField(j, "secret_key", path)};
}

std::vector<AccessEntry> KeyStore::List() const {
  std::vector<AccessEntry> entries;
  DIR* d = ::opendir(AccessDir().c_str());
  if (!d) return entries;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() <= 5 || name.compare(name.size() - 5, 5, ".json") != 0 || name[0] == '.')
      continue;
    try {
      entries.push_back(ParseEntry(AccessDir() + "/" + name));
    } catch (const UsageError&) {
      // A damaged entry allows nothing; `orq access list` shows only what is valid.
    }
  }
  ::closedir(d);
  std::sort(entries.begin(), entries.end(),
            [](const AccessEntry& a, const AccessEntry& b) { return a.name < b.name; });
  return entries;
}

AllowList KeyStore::Load() const {
  AllowList allowed;
  for (AccessEntry& e : List()) allowed.emplace(e.public_key, std::move(e));
  return allowed;
}

void KeyStore::Add(const AccessEntry& e) const {
  if (!IsAccessName(e.name))
    throw UsageError("'" + e.name +
                     "' is not a usable name: use letters, digits, '.', '_' and '-'"
                     " (at most 64)");
  for (const AccessEntry& other : List()) {
    if (other.public_key == e.public_key)
      throw UsageError("that key is already allowed as '" + other.name + "'");
  }
  json j = {{"name", e.name},
            {"role", RoleName(e.role)},
            {"public_key", e.public_key},
            {"created", e.created}};
  if (e.queues) j["queues"] = *e.queues;
  if (e.resources) {
    j["resources"] = json::object();
    for (const ResourceNeed& r : *e.resources) j["resources"][r.name] = r.amount;
  }
  try {
    WritePrivateFile(AccessDir() + "/" + e.name + ".json", j.dump(2) + "\n", /*exclusive=*/true);
  } catch (const UsageError&) {
    if (::access((AccessDir() + "/" + e.name + ".json").c_str(), F_OK) == 0)
      throw UsageError("the name '" + e.name +
                       "' is taken; choose another with --name, or revoke "
                       "it first with 'orq access revoke " +
                       e.name + "'");
    throw;
  }
}

std::optional<AccessEntry> KeyStore::Revoke(const std::string& name_or_key) const {
  for (const AccessEntry& e : List()) {
    if (e.name != name_or_key && e.public_key != name_or_key) continue;
    const std::string path = AccessDir() + "/" + e.name + ".json";
    if (::unlink(path.c_str()) != 0)
      throw UsageError("cannot remove " + path + ": " + std::strerror(errno));
    return e;
  }
  return std::nullopt;
}

void KeyStore::SaveEndpoints(const std::vector<std::string>& endpoints) const {
  WritePrivateFile(dir_ + "/endpoints.json", json{{"endpoints", endpoints}}.dump() + "\n",
                   /*exclusive=*/false);
}

std::vector<std::string> KeyStore::Endpoints() const {
  std::ifstream in(dir_ + "/endpoints.json");
  if (!in) return {};
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> endpoints;
  if (j.is_object() && j["endpoints"].is_array()) {
    for (const auto& e : j["endpoints"]) {
      if (e.is_string()) endpoints.push_back(e.get<std::string>());
    }
  }
  return endpoints;
}

std::string KeysDir(const std::string& home) { return home + "/keys"; }

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

std::string AdvertisedEndpoint(const std::string& bound, const std::string& host_name) {
  const std::string prefix = "tcp://";
  const auto colon = bound.rfind(':');
  if (bound.rfind(prefix, 0) != 0 || colon == std::string::npos || colon < prefix.size())
    return bound;
  const std::string host = bound.substr(prefix.size(), colon - prefix.size());
  if (host == "0.0.0.0" || host == "*" || host == "[::]" || host == "::")
    return prefix + host_name + bound.substr(colon);
  return bound;
}

Expected<void> CheckLibzmq(int major, int minor, int patch, bool has_curve) {
  const std::string version =
      std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  if (std::make_tuple(major, minor, patch) < std::make_tuple(4, 3, 3))
    return Fault("this libzmq is " + version +
                 "; orq needs 4.3.3 or later, where CVE-2019-13132 and "
                 "CVE-2020-15166 are fixed");
  if (!has_curve)
    return Fault("this libzmq (" + version +
                 ") was built without CURVE, which orq needs to encrypt and "
                 "authenticate TCP connections");
  return {};
}

Expected<void> CheckRunningLibzmq() {
  int major = 0, minor = 0, patch = 0;
  zmq_version(&major, &minor, &patch);
  return CheckLibzmq(major, minor, patch, zmq_has("curve") != 0);
}

}  // namespace orq

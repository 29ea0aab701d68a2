// orq's CURVE identities on disk: key pairs, access files and the broker's allow-list.
//
// The broker's keys directory ($ORQ_HOME/keys, mode 0700) holds:
//   broker.key        {"public_key": Z85, "secret_key": Z85}, mode 0600: the broker's own key pair
//   access/NAME.json  {"name", "role", "public_key", "created"}: one allowed key per file; revoking
//                     a key removes its file
//   endpoints.json    {"endpoints": [...]}: the TCP endpoints the broker last bound, for access
//   files
// An access file (written by `orq access add`, mode 0600) is everything a remote peer needs:
//   {"orq_access": 1, "role": "worker" | "client", "name", "endpoints": [...],
//    "broker_public_key", "public_key", "secret_key"}
//
// Every file that holds a secret must be a regular file owned by this user and readable by nobody
// else; anything else is refused with one sentence (a UsageError), as ssh refuses a loose key.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "common/protocol.h"

namespace orq {

struct KeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// A fresh CURVE key pair (libzmq's zmq_curve_keypair).
KeyPair NewKeyPair();
bool IsZ85Key(std::string_view text);

// nullopt when `path` is a regular file owned by this user that no one else may read (or write);
// otherwise the sentence saying what is wrong and how to fix it.
Expected<void> CheckPrivateFile(const std::string& path);
// Writes a new file of mode 0600 atomically (a temporary file renamed into place). With
// `exclusive`, an existing file is an error (UsageError) and is left alone.
void WritePrivateFile(const std::string& path, const std::string& content, bool exclusive);

struct AccessFile {
  Role role = Role::kClient;  // kClient or kWorker
  std::string name;
  std::vector<std::string> endpoints;  // tcp://HOST:PORT; alternatives for the same broker
  std::string broker_public_key;
  KeyPair keys;
};

std::string FormatAccessFile(const AccessFile& access);
// Reads and checks an access file: private, well-formed, every key valid. Throws UsageError with a
// sentence naming the file and field.
AccessFile ReadAccessFile(const std::string& path);

// One key on the broker's allow-list.
// The name of allocation queue `queue`'s own worker key (orq alloc add makes it): only a worker of
// that key may say an allocation of that queue started it.
inline std::string AllocationKeyName(const std::string& queue) { return "alloc-" + queue; }

struct AccessEntry {
  std::string name;
  Role role = Role::kClient;
  std::string public_key;
  double created = 0;  // seconds since the epoch
  // A worker key's scope (orq access add --worker --queues/--resources): the most it may offer.
  // Unset: any. Queues: those it may take tasks from (a worker of it must name some of them).
  // Resources: each at most so many units; a resource not named may not be offered (cpus
  // excepted, unless named).
  std::optional<std::vector<std::string>> queues;
  std::optional<std::vector<ResourceNeed>> resources;
  bool operator==(const AccessEntry&) const = default;
};
// Public key (Z85) -> entry.
using AllowList = std::unordered_map<std::string, AccessEntry>;

// Names are what `orq access revoke` takes: letters, digits, '.', '_' and '-', at most 64.
bool IsAccessName(std::string_view name);

// The broker's keys directory. Constructing it creates the directory (0700) when missing and
// refuses (UsageError) one that others may write or that belongs to someone else.
class KeyStore {
 public:
  explicit KeyStore(std::string dir);

  const std::string& dir() const { return dir_; }
  // The broker's key pair, created on first use. Refuses a broker.key others may read.
  KeyPair BrokerKey() const;
  bool HasBrokerKey() const;

  std::vector<AccessEntry> List() const;  // sorted by name
  AllowList Load() const;
  // Adds an entry; UsageError when its name is taken.
  void Add(const AccessEntry& entry) const;
  // Removes the entry named `name_or_key` (a name or a public key); nullopt when there is none.
  std::optional<AccessEntry> Revoke(const std::string& name_or_key) const;

  void SaveEndpoints(const std::vector<std::string>& endpoints) const;
  std::vector<std::string> Endpoints() const;  // empty when no broker has listened yet

 private:
  std::string AccessDir() const { return dir_ + "/access"; }
  std::string dir_;
};

// The keys directory for an $ORQ_HOME.
std::string KeysDir(const std::string& home);

// An endpoint others can dial: a wildcard host (0.0.0.0, *, [::]) becomes this host's name.
std::string AdvertisedEndpoint(const std::string& bound, const std::string& host_name);
std::string HostName();

// nullopt when this libzmq is safe for TCP (4.3.3 or later: CVE-2019-13132 and CVE-2020-15166 are
// fixed) and has CURVE; otherwise the sentence. Pure, so it is tested with any version.
Expected<void> CheckLibzmq(int major, int minor, int patch, bool has_curve);
// The same for the libzmq this process runs with.
Expected<void> CheckRunningLibzmq();

}  // namespace orq

// `orq access`: the keys that may reach a broker over TCP.
//   orq access add --worker FILE | --client FILE [--name NAME] [--endpoint tcp://HOST:PORT]...
//   orq access list [--json]
//   orq access revoke NAME|KEY...
// They edit the broker's key store (common/keys.h) on this host, with or without a running
// broker, and then tell a running one to read it again (a revoked key's connection is dropped at
// once; a broker that was not told notices within a second).

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/format.h"
#include "cli/verbs.h"
#include "client/connection.h"
#include "common/clock.h"
#include "common/errors.h"
#include "common/keys.h"
#include "common/paths.h"

namespace orq {
namespace {

struct AccessOptions {
  CLI::App* add = nullptr;
  CLI::App* list = nullptr;
  CLI::App* revoke = nullptr;
  std::string worker_file, client_file;
  std::string name;
  std::vector<std::string> endpoints;
  std::string keys_dir;  // default: $ORQ_HOME/keys
  bool json = false;
  std::vector<std::string> revoked;            // names or keys
  std::vector<std::string> queues, resources;  // a worker key's scope (empty: any)
};

// A name from an access file's path: "nodes/node7.access" -> "node7".
std::string NameFromPath(const std::string& path) {
  std::string name = std::filesystem::path(path).stem().string();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '-';
  }
  if (name.empty() || name.front() == '.') name = "key" + name;
  return name.substr(0, 64);
}

// What the broker of this host said when told the allow-list changed.
struct Told {
  bool running = false;                // a broker runs in $ORQ_HOME
  std::optional<ReloadedReply> reply;  // it answered (else it notices within a second)
};

// Tells the broker running on this host (if any) to read the allow-list again.
Told TellBroker() {
  const std::string home = OrqHome();
  Told told;
  told.running = ReadLivePid(PidFile(home)) != 0;
  if (!told.running) return told;
  try {
    Connection client({DefaultEndpoint(home), {}, ""});
    Message reply = client.Request(ReloadAccessRequest{}, std::chrono::milliseconds(5000));
    if (auto* reloaded = std::get_if<ReloadedReply>(&reply)) told.reply = *reloaded;
  } catch (const std::exception&) {
  }
  return told;
}

ExitCode Add(const AccessOptions& o, const KeyStore& store) {
  const bool worker = !o.worker_file.empty();
  const std::string file = worker ? o.worker_file : o.client_file;
  if ((!o.queues.empty() || !o.resources.empty()) && !worker)
    throw UsageError("--queues and --resources scope a worker key; a client key has no scope");
  const AccessFile access =
      AddAccessKey(store, worker ? Role::kWorker : Role::kClient,
                   o.name.empty() ? NameFromPath(file) : o.name, file, o.endpoints, o.queues,
                   o.resources.empty() ? std::nullopt : std::optional(ParseResources(o.resources)));
  std::printf("added %s '%s' (key %s) for %s\n", worker ? "worker" : "client", access.name.c_str(),
              access.keys.public_key.c_str(), access.endpoints.front().c_str());
  std::printf("%s holds its secret key: copy it to the %s host (mode 0600) and run there:\n",
              file.c_str(), worker ? "worker's" : "client's");
  if (worker)
    std::printf("  orq worker --access %s\n", file.c_str());
  else
    std::printf("  orq --access %s submit -- CMD ARGS...   (or export ORQ_ACCESS=%s)\n",
                file.c_str(), file.c_str());
  return ExitCode::kOk;
}

std::string Date(double t) {
  const std::time_t seconds = static_cast<std::time_t>(t);
  std::tm tm{};
  localtime_r(&seconds, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

ExitCode List(const AccessOptions& o, const KeyStore& store) {
  const auto entries = store.List();
  if (o.json) {
    auto all = nlohmann::json::array();
    for (const auto& e : entries) {
      nlohmann::json j = {{"name", e.name},
                          {"role", RoleName(e.role)},
                          {"public_key", e.public_key},
                          {"created", e.created}};
      if (e.queues) j["queues"] = *e.queues;
      if (e.resources) {
        j["resources"] = nlohmann::json::object();
        for (const ResourceNeed& r : *e.resources) j["resources"][r.name] = r.amount;
      }
      all.push_back(std::move(j));
    }
    std::printf("%s\n", JsonLine(all).c_str());
    return ExitCode::kOk;
  }
  if (entries.empty()) {
    std::printf("no keys may connect over TCP (add one with 'orq access add --worker FILE')\n");
    return ExitCode::kOk;
  }
  std::printf("%-20s %-7s %-40s %-16s %s\n", "NAME", "ROLE", "PUBLIC KEY", "ADDED", "SCOPE");
  for (const auto& e : entries) {
    std::string scope;
    if (e.queues) {
      scope += "queues ";
      for (size_t i = 0; i < e.queues->size(); ++i) scope += (i ? "," : "") + (*e.queues)[i];
    }
    if (e.resources) {
      scope += scope.empty() ? "" : " ";
      scope += "at most ";
      for (size_t i = 0; i < e.resources->size(); ++i)
        scope += (i ? "," : "") + (*e.resources)[i].name + "=" +
                 std::to_string((*e.resources)[i].amount);
    }
    std::printf("%-20s %-7s %-40s %-16s %s\n", e.name.c_str(),
                std::string(RoleName(e.role)).c_str(), e.public_key.c_str(),
                Date(e.created).c_str(), scope.empty() ? "-" : scope.c_str());
  }
  return ExitCode::kOk;
}

ExitCode Revoke(const AccessOptions& o, const KeyStore& store) {
  // All or nothing: every name must be there before any key is revoked.
  const auto entries = store.List();
  for (const auto& which : o.revoked) {
    if (std::none_of(entries.begin(), entries.end(), [&](const AccessEntry& e) {
          return e.name == which || e.public_key == which;
        }))
      throw UsageError("no key named '" + which + "' (see 'orq access list'); nothing was revoked");
  }
  std::vector<AccessEntry> gone;
  for (const auto& which : o.revoked) {
    if (auto entry = store.Revoke(which)) gone.push_back(*entry);  // a name given twice: once
  }
  const Told told = TellBroker();
  for (const auto& e : gone) {
    std::printf("revoked %s '%s' (key %s)\n", std::string(RoleName(e.role)).c_str(), e.name.c_str(),
                e.public_key.c_str());
  }
  if (told.reply)
    std::printf("the broker dropped %u connection%s\n", told.reply->dropped,
                told.reply->dropped == 1 ? "" : "s");
  else if (told.running)
    std::printf("the broker did not answer; it drops those connections within a second\n");
  else
    std::printf("no broker runs in this $ORQ_HOME: the key is refused from its next start\n");
  return ExitCode::kOk;
}

}  // namespace

AccessFile AddAccessKey(const KeyStore& store, Role role, const std::string& name,
                        const std::string& file, const std::vector<std::string>& endpoints,
                        const std::vector<std::string>& queues,
                        const std::optional<std::vector<ResourceNeed>>& resources) {
  AccessFile access;
  access.role = role;
  access.name = name;
  if (!IsAccessName(access.name))
    throw UsageError("--name '" + access.name +
                     "' is not usable: use letters, digits, '.', '_' "
                     "and '-' (at most 64)");
  for (const auto& e : endpoints) {
    if (e.rfind("tcp://", 0) != 0 || e.rfind(':') <= 6)
      throw UsageError("--endpoint must be tcp://HOST:PORT, not '" + e + "'");
  }
  access.endpoints = endpoints;
  if (access.endpoints.empty()) {
    const std::string host = HostName();
    for (const auto& bound : store.Endpoints())
      access.endpoints.push_back(AdvertisedEndpoint(bound, host));
  }
  if (access.endpoints.empty())
    throw UsageError(
        "no TCP endpoint is known for this broker: start it with --listen "
        "tcp://HOST:PORT first, or give --endpoint tcp://HOST:PORT");
  for (const AccessEntry& e : store.List()) {
    if (e.name == access.name)
      throw UsageError("the name '" + access.name +
                       "' is taken; choose another with --name, or "
                       "revoke it first with 'orq access revoke " +
                       access.name + "'");
  }
  AccessEntry entry{access.name, access.role, "", WallNow(), std::nullopt, std::nullopt};
  if (!queues.empty()) {
    for (const std::string& q : queues) {
      if (auto error = ValidateName(q, "--queues"); !error.ok())
        throw UsageError(error.error().sentence);
    }
    entry.queues = queues;
  }
  entry.resources = resources;
  access.broker_public_key = store.BrokerKey().public_key;
  access.keys = NewKeyPair();
  WritePrivateFile(file, FormatAccessFile(access), /*exclusive=*/true);
  try {
    entry.public_key = access.keys.public_key;
    store.Add(entry);
  } catch (...) {
    std::filesystem::remove(file);
    throw;
  }
  TellBroker();
  return access;
}

bool RevokeAccessKey(const KeyStore& store, const std::string& name) {
  if (!store.Revoke(name)) return false;
  TellBroker();
  return true;
}

Verb RegisterAccess(CLI::App& app) {
  auto o = std::make_shared<AccessOptions>();
  auto* access = app.add_subcommand(
      "access", "Manage the keys that may reach this broker over TCP (CURVE): add, list, revoke");
  access->require_subcommand(1);
  access->add_option("--keys", o->keys_dir, "the broker's keys directory (default $ORQ_HOME/keys)");
  o->add = access->add_subcommand(
      "add", "Allow a new key; write its access file (endpoints, broker key, the new key pair)");
  auto* role = o->add->add_option_group("role", "the new key's role (exactly one)");
  role->add_option("--worker", o->worker_file, "write a worker access file here");
  role->add_option("--client", o->client_file, "write a client access file here");
  role->require_option(1);
  o->add->add_option("--name", o->name, "the key's name (default: the file's name)");
  o->add
      ->add_option("--queues", o->queues,
                   "a worker key: the only queues its workers may take tasks from (a,b)")
      ->delimiter(',');
  o->add
      ->add_option("--resources", o->resources,
                   "a worker key: the most of each resource its workers may offer (gpu=2); "
                   "others but cpus may not be offered")
      ->delimiter(',');
  o->add->add_option("--endpoint", o->endpoints,
                     "tcp://HOST:PORT the other host dials (default: the broker's --listen "
                     "endpoints, a wildcard host replaced by this host's name)");
  o->list = access->add_subcommand("list", "List the keys that may connect, with their roles");
  o->list->add_flag("--json", o->json, "as a JSON array");
  o->revoke = access->add_subcommand(
      "revoke", "Remove keys: refused at their next handshake, their connections dropped now");
  o->revoke->add_option("keys", o->revoked, "names or public keys")->required();
  return {access, [o]() -> ExitCode {
            const KeyStore store(o->keys_dir.empty() ? KeysDir(OrqHome()) : o->keys_dir);
            if (*o->add) return Add(*o, store);
            if (*o->list) return List(*o, store);
            return Revoke(*o, store);
          }};
}

}  // namespace orq

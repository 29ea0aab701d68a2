// `orq access`: the keys that may reach a broker over TCP.
//   orq access add --worker FILE | --client FILE [--name NAME] [--endpoint tcp://HOST:PORT]...
//   orq access list [--json]
//   orq access revoke NAME|KEY...
// They edit the broker's key store (common/keys.h) on this host, with or without a running
// broker, and then tell a running one to read it again (a revoked key's connection is dropped at
// once; a broker that was not told notices within a second).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace orq {

struct AccessOptions {
  CLI::App* add = nullptr;
  CLI::App* list = nullptr;
  CLI::App* revoke = nullptr;
  std::string worker_file, client_file;
  std::string name;
  std::vector<std::string> endpoints;
  std::string keys_dir;  // default: $ORQ_HOME/keys
  bool json = false;
  std::vector<std::string> revoked;  // names or keys
};

// Adds `orq access` and its subcommands to the app.
CLI::App* AddAccessCommand(CLI::App& app, AccessOptions& options);
int AccessCommand(const AccessOptions& options);

}  // namespace orq

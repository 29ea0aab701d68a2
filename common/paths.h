// Where orq keeps its state: $ORQ_HOME, default ${XDG_STATE_HOME:-~/.local/state}/orq, mode 0700.
#pragma once

#include <string>

namespace orq {

// The state directory, created (mode 0700) if missing. Throws std::runtime_error with a sentence
// when it cannot be created.
std::string OrqHome();

std::string DefaultEndpoint(const std::string& home);  // ipc://HOME/broker.ipc
std::string PidFile(const std::string& home);          // HOME/broker.pid
std::string LogFile(const std::string& home);          // HOME/broker.log

// Makes a private directory for one `orq run` (mode 0700), short enough for an ipc:// path.
std::string MakeRunDirectory(const std::string& home);
void RemoveTree(const std::string& dir);

// The pid in a pid file, when that process is alive; 0 otherwise.
long ReadLivePid(const std::string& pid_file);

}  // namespace orq

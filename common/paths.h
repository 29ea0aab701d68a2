// Where orq keeps its state: $ORQ_HOME, default ${XDG_STATE_HOME:-~/.local/state}/orq, mode 0700.
// Its ipc:// socket is what protects a local broker, so a home that someone else owns or may write
// to is refused (UsageError): they could replace the socket, the journal or the keys.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>

#include "common/error.h"

namespace orq {

// The state directory, created (mode 0700) if missing. Throws UsageError with a sentence when it
// belongs to another user or others may write to it, std::runtime_error when it cannot be created.
std::string OrqHome();
// A file mode's permission bits as in ls -l's octal: "0644".
std::string FormatMode(mode_t mode);

// Creates `dir` (mode 0700) if missing, then checks it as OrqHome() does; `what` names it in the
// sentence ("$ORQ_HOME", "the keys directory"). A symbolic link there is refused (orq follows
// none under $ORQ_HOME), unless `link_ok` (the home itself: then the link must be the user's).
void MakePrivateDirectory(const std::string& dir, const std::string& what, bool link_ok = false);

// The check itself, pure: nullopt when `st` is a directory owned by `me` that no one else may
// write to, else the sentence.
Expected<void> DirectoryProblem(const struct stat& st, uid_t me, const std::string& dir,
                                const std::string& what);

std::string DefaultEndpoint(const std::string& home);  // ipc://HOME/broker.ipc
std::string PidFile(const std::string& home);          // HOME/broker.pid
std::string LogFile(const std::string& home);          // HOME/broker.log
std::string DashboardFile(const std::string& home);    // HOME/dashboard: its URL, while it runs
std::string SpillDirectory(const std::string& home);   // HOME/output
// The file the rest of a task's stream over kMaxOutputBytes goes to, in its worker's
// SpillDirectory(): "j7.2.1.out" (".err"), named from the task and the attempt alone.
std::string SpillName(uint64_t job, uint32_t index, uint32_t attempt, bool err);

// Makes a private directory for one `orq run` (mode 0700), short enough for an ipc:// path.
std::string MakeRunDirectory(const std::string& home);
// Removes `dir` and all in it. Something may still be writing there (a worker of a run that is
// ending, its output files), so it tries again for up to 2 s while entries keep appearing; false
// when the directory is still there then. std::filesystem::remove_all stops at its first error,
// which left a run's directory behind once (with the journal's 32 MiB reserve in it).
bool RemoveTree(const std::string& dir);

// The pid in a pid file, when that process is alive; 0 otherwise.
long ReadLivePid(const std::string& pid_file);

// The sentence for a file of orq's that is a symbolic link (orq never follows one).
std::string LinkRefused(const std::string& path);
// Nullopt when `endpoint` is an ipc:// socket file in a directory of the user's own that no one
// else may write to (as $ORQ_HOME is); else the sentence. An abstract socket (ipc://@NAME) has no
// permissions at all and is refused.
Expected<void> IpcEndpointProblem(const std::string& endpoint);

// Writes `content` to `path`, created with mode 0600 (truncated if it exists). A symbolic link
// there is refused (UsageError), never followed.
void WriteOwnerOnlyFile(const std::string& path, const std::string& content);

}  // namespace orq

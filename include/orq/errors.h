// orq's errors: one exception type per kind of failure, each with the exit code the orq command
// ends with for it (documented in the README: scripts depend on them). The command line and the
// client library (orq/client.h) throw the same types; what() is one sentence for the user.
#pragma once

#include <stdexcept>
#include <string>

// What the client library exports (its other symbols are hidden).
#if defined(__GNUC__)
#define ORQ_API __attribute__((visibility("default")))
#else
#define ORQ_API
#endif

namespace orq {

enum class ExitCode : int {
  kOk = 0,
  kTaskFailed = 1,   // some task did not end ok (run, gather)
  kUsage = 2,        // bad arguments, bad task file, unknown ids, unsafe files: the user can fix it
  kUnreachable = 3,  // no broker to talk to: not running, stopped answering, or did not start
  kRefused = 4,      // the broker refused our key, or the request is outside its role
  kFailed = 5,       // orq itself failed: a process, socket or file it needs (the message says)
  kDiskFull = 6,     // the broker's journal disk is full: the submit was refused, nothing accepted
  kTimeout = 124,  // a deadline passed (gather --timeout; a library call's timeout), as timeout(1)
  kInterrupted = 130,  // SIGINT/SIGTERM (as a shell reports it); everything started was stopped
};

// The base of every error below: a sentence and the exit code it maps to.
struct ORQ_API Exception : std::runtime_error {
  Exception(ExitCode code, const std::string& sentence)
      : std::runtime_error(sentence), code_(code) {}
  ExitCode code() const noexcept { return code_; }

 private:
  ExitCode code_;
};

// A mistake the user can fix; what() is one sentence naming the file, flag or field (exit 2).
struct ORQ_API UsageError : Exception {
  explicit UsageError(const std::string& sentence) : Exception(ExitCode::kUsage, sentence) {}
};
// The broker cannot be reached (exit 3): not running, stopped answering, or it shut down.
struct ORQ_API Unreachable : Exception {
  explicit Unreachable(const std::string& sentence) : Exception(ExitCode::kUnreachable, sentence) {}
};
// The broker refused us: our key was revoked or never added, we hold the wrong broker key, or the
// request is outside our key's role (exit 4).
struct ORQ_API Refused : Exception {
  explicit Refused(const std::string& sentence) : Exception(ExitCode::kRefused, sentence) {}
};
// The broker's journal disk is full, so it refused to accept a submit (exit 6).
struct ORQ_API DiskFull : Exception {
  explicit DiskFull(const std::string& sentence) : Exception(ExitCode::kDiskFull, sentence) {}
};
// A wait's deadline passed before what it waited for (exit 124).
struct ORQ_API Timeout : Exception {
  explicit Timeout(const std::string& sentence) : Exception(ExitCode::kTimeout, sentence) {}
};

}  // namespace orq

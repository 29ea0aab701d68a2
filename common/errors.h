// How orq ends: one exit code for each kind of outcome, and the exceptions that carry a sentence
// for the user from code far from main(). main() (cli/main.cc) is the one place that turns an
// exception into an exit code. The codes are documented in the README; scripts depend on them.
#pragma once

#include <stdexcept>

#include "common/protocol.h"

namespace orq {

enum class ExitCode : int {
  kOk = 0,
  kTaskFailed = 1,   // some task did not end ok (run, gather)
  kUsage = 2,        // bad arguments, bad task file, unknown ids, unsafe files: the user can fix it
  kUnreachable = 3,  // no broker to talk to: not running, stopped answering, or did not start
  kRefused = 4,      // the broker refused our key, or the request is outside its role
  kFailed = 5,       // orq itself failed: a process, socket or file it needs (the message says)
  kDiskFull = 6,     // the broker's journal disk is full: the submit was refused, nothing accepted
  kTimeout = 124,    // gather --timeout expired (as timeout(1))
  kInterrupted = 130,  // SIGINT/SIGTERM (as a shell reports it); everything started was stopped
};

// A mistake the user can fix; what() is one sentence naming the file, flag or field (exit 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The broker cannot be reached (exit 3); what() is the sentence for the user.
struct Unreachable : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The broker refused us: our key was revoked or never added, we hold the wrong broker key, or the
// request is outside our key's role (exit 4); what() is the sentence for the user.
struct Refused : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The broker's journal disk is full, so it refused to accept a submit (exit 6).
struct DiskFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The exit code for a broker's ErrorReply.
constexpr ExitCode ExitCodeOf(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadRequest:
    case ErrorCode::kUnknownId:
      return ExitCode::kUsage;
    case ErrorCode::kShuttingDown:
      return ExitCode::kUnreachable;
    case ErrorCode::kForbidden:
      return ExitCode::kRefused;
    case ErrorCode::kDiskFull:
      return ExitCode::kDiskFull;
  }
  return ExitCode::kFailed;  // a code from a newer broker
}

}  // namespace orq

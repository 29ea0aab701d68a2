// How the orq command ends: its exit codes (the README's table: scripts depend on them), the one
// for each of the library's error codes (the exceptions that carry a sentence for the user from
// code far from main() are public: include/orq/errors.h), and the one for a broker's error
// reply. main() (cli/main.cc, through cli/verbs.cc's Guard) is the one place that turns an
// exception into an exit code.
#pragma once

#include <orq/errors.h>

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
  kTimeout = 124,  // a deadline passed (gather --timeout; a library call's timeout), as timeout(1)
  kInterrupted = 130,  // SIGINT/SIGTERM (as a shell reports it); everything started was stopped
};

// The exit code for one of the library's errors.
constexpr ExitCode ExitCodeOf(Errc code) {
  switch (code) {
    case Errc::kInvalid:
      return ExitCode::kUsage;
    case Errc::kUnreachable:
      return ExitCode::kUnreachable;
    case Errc::kRefused:
      return ExitCode::kRefused;
    case Errc::kFailed:
      return ExitCode::kFailed;
    case Errc::kDiskFull:
      return ExitCode::kDiskFull;
    case Errc::kTimeout:
      return ExitCode::kTimeout;
  }
  return ExitCode::kFailed;
}

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

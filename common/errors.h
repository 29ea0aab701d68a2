// How orq ends: the exit codes and the exceptions that carry a sentence for the user from code far
// from main() are public (include/orq/errors.h: the client library throws the same); here, the
// exit code of a broker's error reply. main() (cli/main.cc) is the one place that turns an
// exception into an exit code.
#pragma once

#include <orq/errors.h>

#include "common/protocol.h"

namespace orq {

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

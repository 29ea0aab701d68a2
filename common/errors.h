// Errors a user can fix, as exceptions for code far from main(): the message is one sentence naming
// the file, flag or field, and main() prints it and exits 2 (kExitUsage). Anything else that
// escapes is an environment problem (exit 3).
#pragma once

#include <stdexcept>

namespace orq {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace orq

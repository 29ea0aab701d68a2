// orq's errors: one exception type per kind of failure, each with its code (Errc): what went
// wrong, for a program to branch on. The command line and the client library (orq/client.h)
// throw the same types; what() is one sentence for the user. The orq command ends with the exit
// code documented for each (the README's table; common/errors.h maps one to the other), which
// is the command's contract, not the library's.
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

enum class Errc : int {
  kInvalid = 1,      // a bad argument, task, task file or unknown id: the caller can fix it
  kUnreachable = 2,  // no broker to talk to: not running, stopped answering, or shut down
  kRefused = 3,      // the broker refused our key, or the request is outside its role
  kFailed = 4,       // orq itself failed: a process, socket or file it needs (the sentence says)
  kDiskFull = 5,     // the broker's journal disk is full: the submit was refused, nothing accepted
  kTimeout = 6,      // a wait's deadline passed
};

// The base of every error below: a sentence and its code.
struct ORQ_API Exception : std::runtime_error {
  Exception(Errc code, const std::string& sentence) : std::runtime_error(sentence), code_(code) {}
  Errc code() const noexcept { return code_; }

 private:
  Errc code_;
};

// A mistake the user can fix; what() is one sentence naming the file, flag or field.
struct ORQ_API UsageError : Exception {
  explicit UsageError(const std::string& sentence) : Exception(Errc::kInvalid, sentence) {}
};
// The broker cannot be reached: not running, stopped answering, or it shut down.
struct ORQ_API Unreachable : Exception {
  explicit Unreachable(const std::string& sentence) : Exception(Errc::kUnreachable, sentence) {}
};
// The broker refused us: our key was revoked or never added, we hold the wrong broker key, or the
// request is outside our key's role.
struct ORQ_API Refused : Exception {
  explicit Refused(const std::string& sentence) : Exception(Errc::kRefused, sentence) {}
};
// The broker's journal disk is full, so it refused to accept a submit.
struct ORQ_API DiskFull : Exception {
  explicit DiskFull(const std::string& sentence) : Exception(Errc::kDiskFull, sentence) {}
};
// A wait's deadline passed before what it waited for.
struct ORQ_API Timeout : Exception {
  explicit Timeout(const std::string& sentence) : Exception(Errc::kTimeout, sentence) {}
};

}  // namespace orq

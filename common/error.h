// One error type for code that can fail with a sentence for the user: Error{code, sentence}, and
// Expected<T>, a T or the Error that kept it from being made (std::expected's shape, which C++20
// lacks); Expected<void> for work that returns nothing but may fail: ok(), or its error()
// (`return {};` succeeds). It has no operator bool, so that no `if (auto e = Check())` reads an
// error as a success.
// Inside orq this is the one way to fail; exceptions are only at the edges (the CLI, the C++
// library's API, a constructor that cannot make its object). The code says what kind of failure it
// is (it travels as ErrorReply::code and becomes the CLI's exit code); the sentence is one line
// naming the id, field or flag at fault.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace orq {

enum class ErrorCode : uint8_t {
  kBadRequest = 1,  // malformed or over a limit
  kUnknownId = 2,   // gather/cancel named a job or task the broker does not have
  kShuttingDown = 3,
  kForbidden = 4,  // the peer's key may not send this (a worker key submitting, a revoked key)
  kDiskFull = 5,   // the journal cannot be written (its disk is full): the submit was not accepted
};

struct Error {
  ErrorCode code = ErrorCode::kBadRequest;
  std::string sentence;
};

template <typename T> class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
  Expected(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& operator*() { return std::get<0>(v_); }
  const T& operator*() const { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }
  Error& error() { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// A failure of kBadRequest (a field, a flag or a peer's value at fault), with its sentence.
inline Error Fault(std::string sentence) {
  return Error{ErrorCode::kBadRequest, std::move(sentence)};
}

// Succeeded, or the Error that kept it from succeeding.
template <> class [[nodiscard]] Expected<void> {
 public:
  Expected() = default;
  Expected(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT: implicit

  bool ok() const { return !failed_; }
  const Error& error() const { return error_; }
  Error& error() { return error_; }

 private:
  Error error_;
  bool failed_ = false;
};

// The sentence of a failure, empty when it succeeded (for logs and tests).
inline std::string SentenceOf(const Expected<void>& result) {
  return result.ok() ? std::string() : result.error().sentence;
}

}  // namespace orq

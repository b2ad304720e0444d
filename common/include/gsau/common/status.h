// Status and Result<T>: the project's one error model for expected failures.
//
// A Status is OK or carries a code and a message with context. Result<T> holds either a
// value or a non-OK Status. Both are [[nodiscard]]: ignoring one must be spelled out with
// IgnoreError(). Exceptions are reserved for broken invariants (config::Load returns its
// errors as a Result too, naming the field); library code never calls exit().
//
// Thread safety: values; safe to copy and move between threads.
#pragma once

#include <cassert>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace gsau {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad input from a user or a producer (bad event, bad flag)
  kNotFound,         // a file, key or topic that does not exist
  kUnavailable,      // a dependency is down or not reachable; retrying may help
  kIoError,          // a read or write failed (disk full, permission)
  kCorruption,       // stored data is not what it should be
  kAborted,          // stopped on request (shutdown, Ctrl-C)
  kUnimplemented,    // this build or this version does not have it
  kInternal,         // a bug: an invariant did not hold
  kResourceExhausted,  // a local limit is reached (a full queue): try again later, no fault of the input
  kFailedPrecondition,  // the world is not as the operation needs it (a log that is not the one the state
                        // read): retrying does not help until someone changes it
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "CodeName: message", or "OK".
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context` ("context: message").
  Status WithContext(std::string_view context) const;

  // Spells out that a failure is deliberately dropped.
  void IgnoreError() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

std::ostream& operator<<(std::ostream& os, const Status& s);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(NotOk(std::move(status))) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  // The error; Status::Ok() when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

  // REQUIRES: ok().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  // An OK Status is no value: held as it was, the Result was neither (ok() false, status() OK),
  // and GSAU_ASSIGN_OR_RETURN returned OK with its variable unset. A bug; it fails as one.
  static Status NotOk(Status s) {
    assert(!s.ok() && "Result built from an OK Status has no value");
    return s.ok() ? Status::Internal("a Result was built from an OK Status: it holds no value") : std::move(s);
  }

  std::variant<T, Status> v_;
};

}  // namespace gsau

// Returns early from the enclosing function when `expr` (a Status) is not OK.
#define GSAU_RETURN_IF_ERROR(expr)              \
  do {                                          \
    ::gsau::Status gsau_status_ = (expr);       \
    if (!gsau_status_.ok()) return gsau_status_; \
  } while (0)

#define GSAU_CONCAT_INNER_(a, b) a##b
#define GSAU_CONCAT_(a, b) GSAU_CONCAT_INNER_(a, b)

// `lhs` = the value of `rexpr` (a Result<T>), or returns its Status from the enclosing function.
#define GSAU_ASSIGN_OR_RETURN(lhs, rexpr) \
  GSAU_ASSIGN_OR_RETURN_IMPL_(GSAU_CONCAT_(gsau_result_, __LINE__), lhs, rexpr)
#define GSAU_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

// acme::Error: what the public API throws for a failure the caller cannot ignore (cppzmq's
// error_t shape: one exception type, a code to branch on, a one-line message to print).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace acme {

enum class Errc : std::uint8_t {
  BadOptions,       // the caller's options or arguments are invalid
  Unreachable,      // no broker answered by the deadline
  VersionRefused,   // the peer speaks another protocol version
  Refused,          // the broker refused a request (ERROR reply)
  BrokerGone,       // the broker stopped or forgot us mid-job
  UnknownFunction,  // no worker offers the function
  TaskFailed,       // a task failed and the caller asked for its value
  Protocol,         // a peer sent something this side cannot decode
  System,           // the operating system refused (fork, exec, bind, files)
};

[[nodiscard]] std::string_view name(Errc code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  [[nodiscard]] Errc code() const noexcept { return code_; }

 private:
  Errc code_;
};

}  // namespace acme

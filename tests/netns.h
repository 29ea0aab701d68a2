// Test hosts as Linux network namespaces, made and removed by the test itself (iproute2). Hosts are
// joined by veth pairs whose two ends carry a /30 from 198.18.0.0/15 (RFC 2544's range for
// benchmark networks) and nothing else: no route leads beyond a pair, so no test traffic can leave
// the machine. Names carry the test's pid, so tests may run side by side, and namespaces left by a
// killed test run are removed by the next one.
//
// Making namespaces needs root (CI runs as root). Where it cannot be done, Unavailable() says why,
// and the tests fail with that reason: they are never skipped silently.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace orq::testing {

class Netns {
 public:
  // Why namespaces cannot be made here (not root, no iproute2, no kernel support); nullopt when
  // they can.
  static Expected<void> Unavailable();

  // Makes namespace "orqt-<pid>-<n>-<tag>" with its loopback up. Throws std::runtime_error.
  explicit Netns(const std::string& tag);
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  const std::string& name() const { return name_; }
  // The command prefix that runs a program inside: {"ip", "netns", "exec", NAME}.
  std::vector<std::string> Exec() const;
  // Runs `fn` on a thread that has entered this namespace; sockets it makes (a zmq context it
  // creates, and so its I/O threads) live there. Rethrows what `fn` throws.
  void Run(const std::function<void()>& fn) const;
  // Sets interface `device` of this namespace up or down (a cut link).
  void SetLink(const std::string& device, bool up) const;

 private:
  std::string name_;
};

// Joins two namespaces with a veth pair: `a_device` in `a` with address `a_address`
// ("198.18.1.1/30"), `b_device` in `b` with `b_address`.
void Connect(const Netns& a, const std::string& a_device, const std::string& a_address,
             const Netns& b, const std::string& b_device, const std::string& b_address);

}  // namespace orq::testing

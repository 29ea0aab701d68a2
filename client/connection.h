// A connection to a broker: one DEALER socket, requests out, replies in, every wait with a
// deadline. A broker that stops answering is noticed (pings during long waits), never waited on
// forever. The orq command uses it directly; the client library (include/orq/client.h) polls two
// of them on its own thread. Internal: not part of the installed API.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <zmq.hpp>

#include "common/errors.h"
#include "common/protocol.h"
#include "common/zmq_util.h"

namespace orq {

using Clock = std::chrono::steady_clock;

// Where the broker is, and how to reach it.
struct BrokerAddress {
  std::string endpoint;
  std::optional<CurveClient> curve;  // set for tcp://: from the access file
  std::string access_file;           // the file it came from, for sentences
};

// The broker this command talks to: the access file given with --access or $ORQ_ACCESS (a remote
// broker, over CURVE), else $ORQ_ENDPOINT (ipc:// only), else the one running in $ORQ_HOME. Throws
// Unreachable when no local broker runs, UsageError for a bad access file or endpoint.
BrokerAddress FindBroker();
// Sets the access file FindBroker() uses (main() calls it with --access / $ORQ_ACCESS).
void UseAccessFile(std::string path);
bool UsingAccessFile();
const std::string& AccessFilePath();  // "" when none

class Connection {
 public:
  explicit Connection(BrokerAddress address);

  void Send(const Message& message);
  // The next reply, or nullopt when `deadline` passes first. Throws Unreachable when the broker
  // stays silent for kClientSilenceLimit (it is pinged every second while a wait goes on), Refused
  // when a CURVE handshake is refused or keeps failing, and std::runtime_error on a malformed
  // reply. A pong is the connection's own keepalive, never returned, unless `pong_is_reply`.
  std::optional<Message> Receive(Clock::time_point deadline, bool pong_is_reply = false);
  // Send, then the first reply within `timeout` (for a PingRequest, its pong); Unreachable if
  // none comes.
  Message Request(const Message& message, std::chrono::milliseconds timeout);
  // Request() for a submit: a job of more than kSubmitPartBytes goes in parts (SubmitPartRequest)
  // before it, so that no message exceeds kMaxRemoteMessageBytes.
  Message Submit(SubmitRequest request, std::chrono::milliseconds timeout);
  // Sends a submit as Submit() does, without waiting for its reply.
  void SendSubmit(SubmitRequest request);

  // For a caller that polls itself: the socket, the handshake monitor (remote connections only,
  // else null), and the next message already here without waiting (pongs too). TryReceive()
  // throws as Receive() does, for a malformed reply or a refusal.
  zmq::socket_t& socket() { return socket_; }
  zmq::socket_t* monitor() { return watch_ ? &watch_->socket() : nullptr; }
  std::optional<Message> TryReceive();
  // Reads the handshake monitor; throws Refused when the broker refused our key.
  void CheckHandshakes();

  const std::string& endpoint() const { return address_.endpoint; }
  bool remote() const { return address_.curve.has_value(); }

 private:
  BrokerAddress address_;
  zmq::context_t ctx_{1};
  zmq::socket_t socket_;
  std::optional<HandshakeWatch> watch_;  // remote (CURVE) connections only
  int failed_handshakes_ = 0;            // in a row
  // A handshake succeeded on this connection once: the key and the broker are right, so a later
  // failure is the broker closing the connection (restarting, or too busy), not a wrong key.
  bool authenticated_once_ = false;
  bool closed_by_broker_ = false;  // a handshake failed since the last that succeeded
  Clock::time_point last_heard_;
};

// A job's context as its submitter's (JobContext, common/protocol.h): `cwd` (empty: the current
// directory; relative: to it), this process's environment (none with `clean_env`) with `env`'s
// "NAME=VALUE" (or "NAME", its value here) on top; only `env`'s names travel to remote workers,
// unless `env_all`. Throws UsageError naming --cwd or --env.
JobContext SubmitterContext(const std::string& cwd, const std::vector<std::string>& env,
                            bool env_all, bool clean_env);

// The broker answered a request with an error: the sentence (after "VERB: "), thrown as the
// exception for its exit code (common/errors.h).
[[noreturn]] void Throw(const ErrorReply& error, const std::string& verb);

// The reply of type T, or the exception its error calls for.
template <typename T> T Expect(Message reply, const std::string& verb) {
  if (auto* error = std::get_if<ErrorReply>(&reply)) Throw(*error, verb);
  if (auto* t = std::get_if<T>(&reply)) return std::move(*t);
  throw std::runtime_error(verb + ": the broker sent an unexpected reply");
}

}  // namespace orq

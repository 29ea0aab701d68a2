#include "cli/client.h"

#include <cstdlib>

#include "common/codec.h"
#include "common/errors.h"
#include "common/keys.h"
#include "common/paths.h"
#include "common/text.h"

namespace orq {
namespace {
// Failed CURVE handshakes in a row before the client says its access file is wrong (a refusal is
// reported at once).
constexpr int kHandshakeFailuresToGiveUp = 3;

std::string access_path;  // --access or $ORQ_ACCESS

}  // namespace

void UseAccessFile(std::string path) { access_path = std::move(path); }
bool UsingAccessFile() { return !access_path.empty(); }
const std::string& AccessFilePath() { return access_path; }

BrokerAddress FindBroker() {
  if (!access_path.empty()) {
    AccessFile access = ReadAccessFile(access_path);
    if (access.role != Role::kClient)
      throw UsageError(
          access_path + " is a " + std::string(RoleName(access.role)) +
          " access file; commands need a client one ('orq access add --client FILE' on "
          "the broker's host)");
    return {access.endpoints.front(),
            CurveClient{access.broker_public_key, access.keys.public_key, access.keys.secret_key},
            access_path};
  }
  if (const char* env = std::getenv("ORQ_ENDPOINT"); env && *env) {
    if (std::string(env).rfind("ipc://", 0) != 0)
      throw UsageError(std::string("$ORQ_ENDPOINT must be an ipc:// endpoint, not '") + env +
                       "'; a broker over TCP is reached with an access file (--access FILE)");
    // Whoever could make that socket would be the broker this command talks to.
    if (auto problem = IpcEndpointProblem(env)) throw UsageError("$ORQ_ENDPOINT: " + *problem);
    return {env, std::nullopt, ""};
  }
  const std::string home = OrqHome();
  if (!ReadLivePid(PidFile(home)))
    throw Unreachable("orq is not running (no broker in " + home + "); start it with 'orq up'");
  return {DefaultEndpoint(home), std::nullopt, ""};
}

Client::Client(BrokerAddress address)
    : address_(std::move(address)), socket_(MakeSocket(ctx_, zmq::socket_type::dealer)) {
  socket_.set(zmq::sockopt::reconnect_ivl, 10);  // the broker may be binding right now (orq run)
  socket_.set(zmq::sockopt::sndhwm, 0);
  if (address_.curve) {
    SetCurveClient(socket_, *address_.curve);
    watch_.emplace(ctx_, socket_);
  }
  socket_.connect(address_.endpoint);
  last_heard_ = Clock::now();
}

void Client::CheckHandshakes() {
  switch (watch_->Read()) {
    case HandshakeWatch::Event::kNone:
      return;
    case HandshakeWatch::Event::kSucceeded:
      failed_handshakes_ = 0;
      return;
    case HandshakeWatch::Event::kRefused:
      throw Refused("the broker at " + address_.endpoint + " refused the key in " +
                    address_.access_file + ": it was revoked, or never added to this broker");
    case HandshakeWatch::Event::kFailed:
      if (++failed_handshakes_ < kHandshakeFailuresToGiveUp) return;
      throw Refused("the CURVE handshake with " + address_.endpoint + " failed " +
                    std::to_string(failed_handshakes_) + " times: " + address_.access_file +
                    " holds another broker's key, or no orq broker listens there");
  }
}

// Never blocks: a send only fails when the socket has no pipe (its handshake was refused), and the
// handshake watch then says why.
void Client::Send(const Message& message) {
  SendMessage(socket_, message, {}, zmq::send_flags::dontwait);
}

std::optional<Message> Client::Receive(Clock::time_point deadline) {
  last_heard_ = Clock::now();
  auto next_ping = last_heard_ + kClientPingInterval;
  for (;;) {
    auto now = Clock::now();
    if (now >= deadline) return std::nullopt;
    if (now - last_heard_ > kClientSilenceLimit)
      throw Unreachable("the broker at " + address_.endpoint + " stopped answering");
    auto until = std::min(deadline, next_ping);
    zmq::pollitem_t items[2] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, 0, ZMQ_POLLIN, 0}};
    if (watch_) items[1].socket = watch_->socket().handle();
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(until - now);
    try {
      zmq::poll(items, watch_ ? 2 : 1, std::max(wait, std::chrono::milliseconds(0)));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      throw Unreachable("interrupted");
    }
    if (watch_) CheckHandshakes();
    if (Clock::now() >= next_ping) {
      Send(PingRequest{});
      next_ping = Clock::now() + kClientPingInterval;
    }
    while (auto received = ReceiveMessage(socket_, /*router=*/false)) {
      last_heard_ = Clock::now();
      if (!received->message)
        throw std::runtime_error("malformed reply from the broker: " +
                                 received->message.error().sentence);
      Message& message = *received->message;
      if (std::holds_alternative<PongReply>(message)) continue;
      if (auto* error = std::get_if<ErrorReply>(&message);
          error && error->code == ErrorCode::kForbidden)
        throw Refused(error->message);
      return std::move(message);
    }
  }
}

Message Client::Request(const Message& message, std::chrono::milliseconds timeout) {
  Send(message);
  auto reply = Receive(Clock::now() + timeout);
  if (!reply)
    throw Unreachable("the broker at " + address_.endpoint + " did not answer within " +
                      std::to_string(timeout.count() / 1000) + " s");
  return std::move(*reply);
}

Message Client::Submit(SubmitRequest request, std::chrono::milliseconds timeout) {
  // A job larger than a part goes in parts, so that no message exceeds what a broker's TCP
  // listener takes (kMaxRemoteMessageBytes); the broker puts them back together.
  size_t bytes = 0, start = 0;
  for (size_t i = 0; i < request.tasks.size(); ++i) {
    const size_t more = ApproxWireBytes(request.tasks[i]);
    if (bytes + more > kSubmitPartBytes && i > start) {
      SubmitPartRequest part;
      part.tasks.assign(std::make_move_iterator(request.tasks.begin() + start),
                        std::make_move_iterator(request.tasks.begin() + i));
      Send(part);
      start = i;
      bytes = 0;
    }
    bytes += more;
  }
  if (start > 0) {
    request.tasks.erase(request.tasks.begin(), request.tasks.begin() + start);
    request.parted = static_cast<uint32_t>(start);
  }
  return Request(request, timeout);
}

[[noreturn]] void Throw(const ErrorReply& error, const std::string& verb) {
  const std::string sentence = verb + ": " + EscapeControls(error.message);
  switch (ExitCodeOf(error.code)) {
    case ExitCode::kUsage:
      throw UsageError(sentence);
    case ExitCode::kRefused:
      throw Refused(sentence);
    case ExitCode::kUnreachable:
      throw Unreachable(sentence);
    case ExitCode::kDiskFull:
      throw DiskFull(sentence);
    default:
      throw std::runtime_error(sentence);
  }
}

}  // namespace orq

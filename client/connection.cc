#include "client/connection.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

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
    if (auto problem = IpcEndpointProblem(env); !problem.ok())
      throw UsageError("$ORQ_ENDPOINT: " + problem.error().sentence);
    return {env, std::nullopt, ""};
  }
  const std::string home = OrqHome();
  if (!ReadLivePid(PidFile(home)))
    throw Unreachable("orq is not running (no broker in " + home + "); start it with 'orq up'");
  return {DefaultEndpoint(home), std::nullopt, ""};
}

Connection::Connection(BrokerAddress address)
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

void Connection::CheckHandshakes() {
  if (!watch_) return;
  switch (watch_->Read()) {
    case HandshakeWatch::Event::kNone:
    case HandshakeWatch::Event::kDisconnected:  // the silence limit decides
      return;
    case HandshakeWatch::Event::kSucceeded:
      failed_handshakes_ = 0;
      authenticated_once_ = true;
      closed_by_broker_ = false;
      return;
    case HandshakeWatch::Event::kRefused:
      throw Refused("the broker at " + address_.endpoint + " refused the key in " +
                    address_.access_file + ": it was revoked, or never added to this broker");
    case HandshakeWatch::Event::kFailed:
      if (authenticated_once_) {  // the silence limit decides, and says what happened
        closed_by_broker_ = true;
        return;
      }
      if (++failed_handshakes_ < kHandshakeFailuresToGiveUp) return;
      throw Refused("the CURVE handshake with " + address_.endpoint + " failed " +
                    std::to_string(failed_handshakes_) + " times: " + address_.access_file +
                    " holds another broker's key, or no orq broker listens there");
  }
}

// Never blocks: a send only fails when the socket has no pipe (its handshake was refused), and the
// handshake watch then says why.
void Connection::Send(const Message& message) {
  SendMessage(socket_, message, {}, zmq::send_flags::dontwait);
}

std::optional<Message> Connection::Receive(Clock::time_point deadline, bool pong_is_reply) {
  last_heard_ = Clock::now();
  auto next_ping = last_heard_ + kClientPingInterval;
  for (;;) {
    auto now = Clock::now();
    if (now >= deadline) return std::nullopt;
    if (now - last_heard_ > kClientSilenceLimit)
      throw Unreachable("the broker at " + address_.endpoint +
                        (closed_by_broker_ ? " closed the connection and did not take it back"
                                           : " stopped answering"));
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
    while (auto message = TryReceive()) {
      last_heard_ = Clock::now();
      if (std::holds_alternative<PongReply>(*message) && !pong_is_reply) continue;
      return std::move(*message);
    }
  }
}

std::optional<Message> Connection::TryReceive() {
  auto received = ReceiveMessage(socket_, /*router=*/false);
  if (!received) return std::nullopt;
  if (!received->message)
    throw std::runtime_error("malformed reply from the broker: " +
                             received->message.error().sentence);
  Message& message = *received->message;
  if (auto* error = std::get_if<ErrorReply>(&message);
      error && error->code == ErrorCode::kForbidden)
    throw Refused(error->message);
  return std::move(message);
}

Message Connection::Request(const Message& message, std::chrono::milliseconds timeout) {
  Send(message);
  auto reply = Receive(Clock::now() + timeout, std::holds_alternative<PingRequest>(message));
  if (!reply)
    throw Unreachable("the broker at " + address_.endpoint + " did not answer within " +
                      std::to_string(timeout.count() / 1000) + " s");
  return std::move(*reply);
}

Message Connection::Submit(SubmitRequest request, std::chrono::milliseconds timeout) {
  SendSubmit(std::move(request));
  auto reply = Receive(Clock::now() + timeout);
  if (!reply)
    throw Unreachable("the broker at " + address_.endpoint + " did not answer within " +
                      std::to_string(timeout.count() / 1000) + " s");
  return std::move(*reply);
}

void Connection::SendSubmit(SubmitRequest request) {
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
  Send(request);
}

namespace {
std::string CurrentDirectory() {
  std::vector<char> buf(4096);
  while (!::getcwd(buf.data(), buf.size())) {
    if (errno != ERANGE)
      throw UsageError(std::string("cannot tell the current directory: ") + std::strerror(errno) +
                       "; give --cwd DIR");
    buf.resize(buf.size() * 2);
  }
  return buf.data();
}
}  // namespace

JobContext SubmitterContext(const std::string& cwd, const std::vector<std::string>& env_given,
                            bool env_all, bool clean_env) {
  JobContext context;
  const std::string here = CurrentDirectory();
  if (!cwd.empty()) {  // absolute, without its "." and ".." (a worker may be elsewhere)
    std::string dir =
        std::filesystem::path(cwd[0] == '/' ? cwd : here + "/" + cwd).lexically_normal();
    if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    context.cwd = dir;
  } else {
    context.cwd = here;
  }
  std::vector<std::string>& env = context.env.emplace();
  if (!clean_env) {
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
  }
  // What travels to remote workers: the variables named here, unless --env-all.
  if (!env_all) context.named.emplace();
  for (const std::string& entry : env_given) {
    if (context.named) context.named->push_back(entry.substr(0, entry.find('=')));
    if (entry.find('=') != std::string::npos) {
      SetEnv(env, entry);
      continue;
    }
    const char* value = std::getenv(entry.c_str());
    if (!value)
      throw UsageError("--env " + entry + ": " + entry + " is not set here; give --env NAME=VALUE");
    SetEnv(env, entry + "=" + value);
  }
  if (auto error = ValidateEnv(env, "the environment (--env)"); !error.ok())
    throw UsageError(error.error().sentence);
  return context;
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

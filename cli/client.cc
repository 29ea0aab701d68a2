#include "cli/client.h"

#include <cstdlib>

#include "common/paths.h"
#include "common/zmq_util.h"

namespace orq {
namespace {
// While waiting for a long reply (gather), silence this long means the broker is gone.
constexpr std::chrono::milliseconds kPingEvery{1000};
constexpr std::chrono::milliseconds kSilenceLimit{5000};
}  // namespace

Client::Client(std::string endpoint)
    : endpoint_(std::move(endpoint)), socket_(MakeSocket(ctx_, zmq::socket_type::dealer)) {
  socket_.set(zmq::sockopt::reconnect_ivl, 10);  // the broker may be binding right now (orq run)
  socket_.set(zmq::sockopt::sndhwm, 0);
  socket_.connect(endpoint_);
  last_heard_ = Clock::now();
}

void Client::Send(const Message& message) { SendMessage(socket_, message); }

std::optional<Message> Client::Receive(Clock::time_point deadline) {
  last_heard_ = Clock::now();
  auto next_ping = last_heard_ + kPingEvery;
  for (;;) {
    auto now = Clock::now();
    if (now >= deadline) return std::nullopt;
    if (now - last_heard_ > kSilenceLimit)
      throw Unreachable("the broker at " + endpoint_ + " stopped answering");
    auto until = std::min(deadline, next_ping);
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(until - now);
    try {
      zmq::poll(&item, 1, std::max(wait, std::chrono::milliseconds(0)));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      throw Unreachable("interrupted");
    }
    if (Clock::now() >= next_ping) {
      SendMessage(socket_, PingRequest{});
      next_ping = Clock::now() + kPingEvery;
    }
    while (auto received = ReceiveMessage(socket_, /*router=*/false)) {
      last_heard_ = Clock::now();
      if (auto* error = std::get_if<DecodeError>(&received->message))
        throw std::runtime_error("malformed reply from the broker: " + error->what);
      auto& message = std::get<Message>(received->message);
      if (std::holds_alternative<PongReply>(message)) continue;
      return std::move(message);
    }
  }
}

Message Client::Request(const Message& message, std::chrono::milliseconds timeout) {
  Send(message);
  auto reply = Receive(Clock::now() + timeout);
  if (!reply)
    throw Unreachable("the broker at " + endpoint_ + " did not answer within " +
                      std::to_string(timeout.count() / 1000) + " s");
  return std::move(*reply);
}

std::string LocalEndpoint() {
  if (const char* env = std::getenv("ORQ_ENDPOINT"); env && *env) return env;
  const std::string home = OrqHome();
  if (!ReadLivePid(PidFile(home)))
    throw Unreachable("orq is not running (no broker in " + home + "); start it with 'orq up'");
  return DefaultEndpoint(home);
}

}  // namespace orq

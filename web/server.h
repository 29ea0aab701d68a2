// The dashboard's HTTP server (`orq broker --http ADDRESS:PORT`): the page, /api/v1 (the same JSON
// shapes as --json, common/shapes.h), /metrics (web/exposition.h) and a Server-Sent Events stream
// of the broker's events. It runs on threads of its own beside the broker's loop and reads the
// broker as any local client does, over its ipc:// socket, through the same requests the CLI
// sends, so it never blocks dispatch: one thread serves HTTP (Asio and Beast), one asks the
// broker, one follows its events. Every request passes web/guard.h first.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace orq::web {

struct ServerOptions {
  std::string address = "127.0.0.1";  // an IP address; non-loopback needs TLS and a token
  uint16_t port = 0;                  // 0: a free one (url() says which)
  std::string cert_file, key_file;    // PEM: TLS when given (both)
  std::string token_file;             // the token every request must carry; empty: a new one
  std::string broker_endpoint;        // the broker's ipc:// endpoint
};

// Connections served at once; requests a second from one address (bursts of twice as many);
// bytes of a request's header and of its body. At kMaxConnections, or kMaxUnprovenPerAddress
// from one address, the connection that has waited longest without a request that carried the
// token is closed for the new one (so idle and slow strangers cannot keep the owner out).
inline constexpr size_t kMaxConnections = 64;
inline constexpr size_t kMaxUnprovenPerAddress = 16;
inline constexpr size_t kMaxStreams = 16;  // event streams (open pages) at once
inline constexpr double kRequestsPerSecond = 50;
inline constexpr size_t kMaxHeaderBytes = 8192;
inline constexpr size_t kMaxBodyBytes = 4096;

class Server {
 public:
  // Checks the options (UsageError with the sentence for a user's mistake: a non-loopback
  // address without TLS and a token, a certificate or token file that cannot be read), binds
  // (std::runtime_error when it cannot: the port is taken) and starts serving.
  static std::unique_ptr<Server> Start(const ServerOptions& options);
  ~Server();  // stops serving and joins its threads

  const std::string& url() const;
  // url() with the token in its query (?token=...): opening it logs the browser in (a cookie)
  // and takes the token out of the address bar. Every address has a token: from the token file,
  // else one made when the server starts.
  std::string login_url() const;

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "ADDRESS:PORT" (or "[V6]:PORT", or "PORT" for 127.0.0.1) into the options; nullopt when it is
// not one.
bool ParseHttpAddress(const std::string& text, ServerOptions& options);

}  // namespace orq::web

// Who may use the dashboard, and how much: the rules every HTTP request passes before it is
// served (web/server.cc asks; this decides). Pure: a request's facts and `now` in, a refusal out.
//
//   - Where it listens: loopback unless it has TLS and a token (CheckListen).
//   - Host: the header must name the address it is bound to (or, on loopback, localhost), so that
//     a web page whose DNS name was rebound to 127.0.0.1 cannot read it.
//   - Token: with one, every request but the page's own files carries it (a cookie the page gets
//     once by POSTing it, or `Authorization: Bearer` for scripts and Prometheus).
//   - Actions (cancel, retry) are POSTs with the session's anti-CSRF header and an Origin that is
//     the dashboard's own.
//   - Rates: a token bucket per client address.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace orq::web {

struct ListenOptions {
  std::string address;  // as given to --http: an IP address
  uint16_t port = 0;    // once bound (0 asks for a free one)
  bool tls = false;     // a certificate and key were given
  std::string token;    // from the token file; empty: none
};

// Whether `address` is a loopback address (127.0.0.0/8, ::1).
bool IsLoopback(std::string_view address);
// The sentence refusing `options`: a non-loopback address without TLS and a token. Nullopt: fine.
Expected<void> CheckListen(const ListenOptions& options);

// What a request is, for the rules.
enum class Access : uint8_t {
  kAsset,   // the page and its files: anyone who passes the Host check (they hold no data)
  kLogin,   // POST the token, get the cookie
  kRead,    // GET data: the token, when there is one
  kAction,  // POST a change: the token, the anti-CSRF header and the dashboard's own Origin
};

struct RequestFacts {
  std::string_view method;  // "GET", "POST"
  std::string_view host;    // the Host header
  std::string_view origin;  // the Origin header; empty: none
  std::string_view cookie;  // the Cookie header
  std::string_view authorization;
  std::string_view csrf;  // the X-Orq-Csrf header
};

struct Refusal {
  int status = 403;
  std::string reason;      // one sentence, sent as the body
  std::string counted_as;  // its reason in orq_http_refused_total: host, token, origin, ...
};

inline constexpr std::string_view kTokenCookie = "orq_token";
inline constexpr std::string_view kCsrfHeader = "X-Orq-Csrf";

class Guard {
 public:
  // `csrf`: this server's anti-CSRF secret (random, made once when it starts); `hostname`: this
  // host's name, also accepted in the Host header of a non-loopback address.
  Guard(ListenOptions options, std::string csrf, std::string hostname);

  std::optional<Refusal> Check(const RequestFacts& request, Access access) const;
  // Whether the request carries the token (a cookie, or Authorization: Bearer).
  bool Carries(const RequestFacts& request) const { return Authorized(request); }
  // Whether `token` is the token (in constant time); true when there is none.
  bool TokenMatches(std::string_view token) const;

  const std::string& csrf() const { return csrf_; }
  const ListenOptions& options() const { return options_; }
  // "http://127.0.0.1:8080": what the Origin of the dashboard's own page is, for `host`.
  std::string OriginFor(std::string_view host) const;

 private:
  bool HostAllowed(std::string_view host) const;
  bool Authorized(const RequestFacts& request) const;

  ListenOptions options_;
  std::string csrf_;
  std::vector<std::string> hosts_;  // Host headers accepted; empty: any (a wildcard address)
};

// The dashboard's open connections, and which to close for a new one. A connection is proven
// once a request on it carried the token; one that has not (idle, slow, a stranger's) is the
// kind that is closed: the one that has waited longest when its address has more than
// `unproven_per_address` such, or when more than `total` connections are open. When every
// other connection is proven, the new one is closed instead.
class Connections {
 public:
  using Time = std::chrono::steady_clock::time_point;
  Connections(size_t total, size_t unproven_per_address)
      : total_(total), per_address_(unproven_per_address) {}
  struct Opened {
    uint64_t id;                  // the new connection's
    std::vector<uint64_t> close;  // connections to close for it (perhaps itself)
  };
  Opened Open(const std::string& address);
  void Proven(uint64_t id);
  void Closed(uint64_t id);
  size_t size() const { return open_.size(); }
  bool contains(uint64_t id) const { return open_.count(id) > 0; }

 private:
  struct Entry {
    std::string address;
    bool proven = false;
  };
  // The oldest unproven connection, of `address` when it is not empty; 0 when there is none.
  uint64_t OldestUnproven(const std::string& address) const;
  size_t total_, per_address_;
  std::map<uint64_t, Entry> open_;  // by id, so oldest first
  uint64_t next_ = 1;
};

// The value of cookie `name` in a Cookie header; empty when it has none.
std::string_view CookieValue(std::string_view header, std::string_view name);

// At most `rate` requests a second from one address, in bursts of `burst`; kMaxAddresses tracked
// (the longest quiet is forgotten first).
class Rates {
 public:
  using Time = std::chrono::steady_clock::time_point;
  Rates(double rate, double burst) : rate_(rate), burst_(burst) {}
  bool Allow(const std::string& address, Time now);
  static constexpr size_t kMaxAddresses = 1024;

 private:
  struct Bucket {
    double tokens = 0;
    Time last;
  };
  double rate_, burst_;
  std::map<std::string, Bucket> buckets_;
};

}  // namespace orq::web

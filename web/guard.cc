#include "web/guard.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace orq::web {

bool IsLoopback(std::string_view address) {
  const std::string text(address);
  in_addr v4{};
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, text.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

Expected<void> CheckListen(const ListenOptions& o) {
  if (IsLoopback(o.address)) return {};
  if (!o.tls || o.token.empty())
    return Fault(
        "--http " + o.address +
        " is not a loopback address: the dashboard serves it only with --http-cert, "
        "--http-key and --http-token-file (TLS and a token); or bind 127.0.0.1 and reach it "
        "through an SSH tunnel");
  return {};
}

namespace {

std::string Authority(std::string_view address, uint16_t port) {
  const bool v6 = address.find(':') != std::string_view::npos;
  return (v6 ? "[" + std::string(address) + "]" : std::string(address)) + ":" +
         std::to_string(port);
}

bool Wildcard(std::string_view address) { return address == "0.0.0.0" || address == "::"; }

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

Guard::Guard(ListenOptions options, std::string csrf, std::string hostname)
    : options_(std::move(options)), csrf_(std::move(csrf)) {
  if (Wildcard(options_.address)) return;  // any name: the token guards it
  hosts_.push_back(Authority(options_.address, options_.port));
  if (IsLoopback(options_.address)) {
    for (const char* name : {"localhost", "127.0.0.1", "::1"})
      hosts_.push_back(Authority(name, options_.port));
  } else if (!hostname.empty()) {
    hosts_.push_back(Authority(hostname, options_.port));
  }
}

bool Guard::HostAllowed(std::string_view host) const {
  if (hosts_.empty()) return !host.empty();
  return std::find(hosts_.begin(), hosts_.end(), host) != hosts_.end();
}

bool Guard::TokenMatches(std::string_view token) const {
  return options_.token.empty() || ConstantTimeEquals(token, options_.token);
}

bool Guard::Authorized(const RequestFacts& r) const {
  if (options_.token.empty()) return true;
  constexpr std::string_view kBearer = "Bearer ";
  if (r.authorization.substr(0, kBearer.size()) == kBearer)
    return TokenMatches(r.authorization.substr(kBearer.size()));
  const std::string_view cookie = CookieValue(r.cookie, kTokenCookie);
  return !cookie.empty() && TokenMatches(cookie);
}

std::string Guard::OriginFor(std::string_view host) const {
  return std::string(options_.tls ? "https://" : "http://") + std::string(host);
}

std::optional<Refusal> Guard::Check(const RequestFacts& r, Access access) const {
  if (!HostAllowed(r.host))
    return Refusal{421, "the Host header names another server than this dashboard", "host"};
  const bool post = r.method == "POST";
  switch (access) {
    case Access::kAsset:
      if (r.method != "GET" && r.method != "HEAD") return Refusal{405, "only GET here", "method"};
      return std::nullopt;
    case Access::kLogin:
      if (!post) return Refusal{405, "log in with a POST", "method"};
      if (!r.origin.empty() && r.origin != OriginFor(r.host))
        return Refusal{403, "a cross-origin request may not log in", "origin"};
      return std::nullopt;
    case Access::kRead:
      if (r.method != "GET" && r.method != "HEAD") return Refusal{405, "only GET here", "method"};
      if (!Authorized(r)) return Refusal{401, "this dashboard needs its token", "token"};
      return std::nullopt;
    case Access::kAction:
      if (!post) return Refusal{405, "an action is a POST", "method"};
      if (!Authorized(r)) return Refusal{401, "this dashboard needs its token", "token"};
      if (r.origin != OriginFor(r.host))
        return Refusal{403, "an action must come from the dashboard's own page (Origin)", "origin"};
      if (!ConstantTimeEquals(r.csrf, csrf_))
        return Refusal{403, "an action needs the dashboard's anti-CSRF header", "csrf"};
      return std::nullopt;
  }
  return Refusal{403, "not allowed", "method"};
}

std::string_view CookieValue(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const size_t end = std::min(header.find(';'), header.size());
    std::string_view pair = header.substr(0, end);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    if (pair.size() > name.size() && pair.substr(0, name.size()) == name &&
        pair[name.size()] == '=')
      return pair.substr(name.size() + 1);
    header.remove_prefix(std::min(end + 1, header.size()));
  }
  return {};
}

Connections::Opened Connections::Open(const std::string& address) {
  Opened opened{next_++, {}};
  open_[opened.id] = Entry{address, false};
  size_t unproven = 0;
  for (const auto& [id, e] : open_) unproven += !e.proven && e.address == address;
  auto close = [&](uint64_t id) {
    opened.close.push_back(id);
    open_.erase(id);
  };
  if (unproven > per_address_) close(OldestUnproven(address));
  // (The new one is unproven: there is always one to close, itself when all others are proven.)
  if (open_.size() > total_) close(OldestUnproven(""));
  return opened;
}

uint64_t Connections::OldestUnproven(const std::string& address) const {
  for (const auto& [id, e] : open_) {
    if (!e.proven && (address.empty() || e.address == address)) return id;
  }
  return 0;
}

void Connections::Proven(uint64_t id) {
  if (auto it = open_.find(id); it != open_.end()) it->second.proven = true;
}

void Connections::Closed(uint64_t id) { open_.erase(id); }

bool Rates::Allow(const std::string& address, Time now) {
  auto it = buckets_.find(address);
  if (it == buckets_.end()) {
    if (buckets_.size() >= kMaxAddresses) {
      buckets_.erase(std::min_element(buckets_.begin(), buckets_.end(), [](auto& a, auto& b) {
        return a.second.last < b.second.last;
      }));
    }
    it = buckets_.emplace(address, Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  b.tokens =
      std::min(burst_, b.tokens + rate_ * std::chrono::duration<double>(now - b.last).count());
  b.last = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

}  // namespace orq::web

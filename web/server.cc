#include "web/server.h"

// clang-format off
#include <utility>  // before Boost: 1.74's asio/awaitable.hpp needs it under C++20
// clang-format on

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/errors.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/shapes.h"
#include "common/words.h"
#include "common/zmq_util.h"
#include "web/assets.h"
#include "web/exposition.h"
#include "web/guard.h"

namespace orq::web {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// How long the broker gets to answer one request before the page is told it did not.
constexpr milliseconds kBrokerTimeout{10000};
// How long a client gets to send a request (its header and body), and to take a response.
constexpr seconds kRequestDeadline{10};
// An open event stream gets a comment this often, so that a dead connection is noticed.
constexpr seconds kStreamKeepAlive{15};
// Bytes an event stream may fall behind before it is closed (the page reconnects).
constexpr size_t kMaxStreamBacklog = 1 << 20;
// Events the server keeps for pages that connect: the task stream of the last minutes.
constexpr size_t kRecentEvents = 4096;
// How long one events request waits at the broker for a new event; and how long after an answer
// the next is asked for (unless it was full): events come to pages in batches, at most 5 a
// second, not one message to the broker per event (a page draws 4 frames a second).
constexpr uint32_t kEventsWaitMs = 1000;
constexpr milliseconds kEventsInterval{200};

std::string RandomHex(size_t bytes) {
  std::random_device random;
  std::string hex;
  constexpr char kDigits[] = "0123456789abcdef";
  for (size_t i = 0; i < bytes; ++i) {
    const unsigned v = random() & 0xff;
    hex += kDigits[v >> 4];
    hex += kDigits[v & 15];
  }
  return hex;
}

void CloseOnExec(int fd) {
  if (fd >= 0) ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
}

beast::string_view Field(std::string_view name) { return {name.data(), name.size()}; }
http::field Field(http::field field) { return field; }

}  // namespace

// (Outside the anonymous namespace: Server::Impl holds these.)

// ---- the broker, as a local client

// One thread and one DEALER socket: requests go out one at a time, in order; each one's replies
// come back to the HTTP thread's io_context. A request that times out closes the socket, so a
// late reply cannot be taken for the next request's.
class BrokerLink {
 public:
  using Replies = Expected<std::vector<Message>>;
  using Done = std::function<void(Replies)>;

  BrokerLink(std::string endpoint, asio::io_context& io)
      : endpoint_(std::move(endpoint)), io_(io), thread_([this] { Run(); }) {}
  ~BrokerLink() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    stopping_ = true;
    cv_.notify_one();
    thread_.join();
  }

  void Ask(Message request, Done done) {
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back({std::move(request), std::move(done)});
    }
    cv_.notify_one();
  }

 private:
  struct Job {
    Message request;
    Done done;
  };

  void Run() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
        if (stop_) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      Replies replies = RoundTrip(job.request);
      asio::post(io_, [done = std::move(job.done), r = std::move(replies)]() mutable {
        done(std::move(r));
      });
    }
  }

  // The request's replies: one, or a stream's chunks up to the final one.
  Replies RoundTrip(const Message& request) {
    if (!socket_) {
      socket_.emplace(MakeSocket(ctx_, zmq::socket_type::dealer));
      socket_->set(zmq::sockopt::reconnect_ivl, 100);
      socket_->connect(endpoint_);
    }
    auto timeout = kBrokerTimeout;
    if (const auto* events = std::get_if<EventsRequest>(&request))
      timeout += milliseconds(events->wait_ms);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (!SendMessage(*socket_, request, {}, zmq::send_flags::dontwait)) return Lost();
    std::vector<Message> replies;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || stopping_) return Lost();
      // In slices, so that a server stopping does not wait out a request.
      zmq::pollitem_t item{socket_->handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::min(left, milliseconds(100))) == 0) continue;
      auto received = ReceiveMessage(*socket_, false);
      if (!received) continue;
      if (!received->message) return Lost();
      replies.push_back(std::move(*received->message));
      const auto* chunk = std::get_if<LogChunk>(&replies.back());
      if (!chunk || chunk->final) return replies;
    }
  }

  Replies Lost() {
    socket_.reset();
    return Error{ErrorCode::kShuttingDown, "the broker did not answer"};
  }

  const std::string endpoint_;
  asio::io_context& io_;
  zmq::context_t ctx_{1};
  std::optional<zmq::socket_t> socket_;  // only the link's thread uses it
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stop_ = false;
  std::atomic<bool> stopping_ = false;
  std::thread thread_;  // last: it starts once the rest is made
};

// ---- event streams

// A page's event stream: what is still to be written to it. Only the HTTP thread touches it.
struct EventStream {
  explicit EventStream(asio::any_io_executor executor) : wake(executor) {}
  std::string pending;
  bool closed = false;
  asio::steady_timer wake;  // cancelled when `pending` grows
  void Push(const std::string& text) {
    if (pending.size() > kMaxStreamBacklog) closed = true;  // too slow a reader: it reconnects
    pending += text;
    wake.cancel();
  }
};

// Follows the broker's events while some page listens, and fans them out.
class EventHub {
 public:
  // `later(f, after)` runs f on the HTTP thread after a while.
  using Later = std::function<void(std::function<void()>, milliseconds)>;
  EventHub(BrokerLink& link, Later later) : link_(link), later_(std::move(later)) {}

  // A new stream, sent first the events kept after `after`.
  void Subscribe(const std::shared_ptr<EventStream>& stream, uint64_t after) {
    for (const auto& [seq, text] : recent_) {
      if (seq > after) stream->pending += text;
    }
    streams_.push_back(stream);
    if (!polling_) Poll();
  }
  size_t streams() {
    std::erase_if(streams_, [](const auto& s) { return s.expired() || s.lock()->closed; });
    return streams_.size();
  }
  void Stop() { stopped_ = true; }

 private:
  void Poll() {
    if (stopped_ || streams() == 0) {
      polling_ = false;
      return;
    }
    polling_ = true;
    link_.Ask(EventsRequest{after_, kEventsWaitMs}, [this](BrokerLink::Replies replies) {
      if (stopped_) return;
      const auto* reply = replies ? std::get_if<EventsReply>(&replies->front()) : nullptr;
      if (!reply) {  // the broker is gone or busy: asked again in a second (still polling)
        later_([this] { Poll(); }, milliseconds(1000));
        return;
      }
      if (reply->last < after_) after_ = 0;  // a new broker: its numbers start again
      const double offset = WallNow() - reply->now;
      std::string batch;
      for (const Event& e : reply->events) {
        std::string text =
            "id: " + std::to_string(e.seq) + "\ndata: " + JsonLine(EventJson(e, offset)) + "\n\n";
        batch += text;
        recent_.emplace_back(e.seq, std::move(text));
        if (recent_.size() > kRecentEvents) recent_.pop_front();
        after_ = e.seq;
      }
      if (reply->events.empty() && reply->last > after_) after_ = reply->last;
      if (!batch.empty()) {
        for (const auto& weak : streams_) {
          if (auto s = weak.lock()) s->Push(batch);
        }
      }
      if (reply->events.size() >= kMaxEventsPerReply)
        Poll();
      else
        later_([this] { Poll(); }, kEventsInterval);
    });
  }

  BrokerLink& link_;
  Later later_;
  uint64_t after_ = 0;
  std::deque<std::pair<uint64_t, std::string>> recent_;
  std::vector<std::weak_ptr<EventStream>> streams_;
  bool polling_ = false;  // a request is out, or the next is due: Subscribe starts no other
  bool stopped_ = false;
};

namespace {

// ---- responses

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

Response Reply(const Request& request, http::status status, std::string body,
               std::string_view type) {
  Response r{status, request.version()};
  r.set(http::field::server, "orq");
  r.set(http::field::content_type, beast::string_view(type.data(), type.size()));
  r.set(http::field::cache_control, "no-store");
  r.set("X-Content-Type-Options", "nosniff");
  r.set("Referrer-Policy", "no-referrer");
  r.set("X-Frame-Options", "DENY");
  r.set("Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
  r.keep_alive(request.keep_alive());
  r.body() = std::move(body);
  r.prepare_payload();
  return r;
}

Response Json(const Request& request, const nlohmann::json& json,
              http::status status = http::status::ok) {
  return Reply(request, status, JsonLine(json) + "\n", "application/json");
}

Response Problem(const Request& request, int status, const std::string& sentence) {
  return Json(request, {{"error", sentence}}, static_cast<http::status>(status));
}

// The broker's error as an HTTP status.
Response BrokerError(const Request& request, const Error& error) {
  const int status = error.code == ErrorCode::kUnknownId    ? 404
                     : error.code == ErrorCode::kBadRequest ? 400
                     : error.code == ErrorCode::kForbidden  ? 403
                                                            : 503;
  return Problem(request, status, error.sentence);
}

// A query string's parameter; empty when it has none.
std::string Query(std::string_view target, std::string_view name) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return "";
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const size_t end = std::min(rest.find('&'), rest.size());
    const std::string_view pair = rest.substr(0, end);
    if (pair.size() > name.size() && pair.substr(0, name.size()) == name &&
        pair[name.size()] == '=')
      return std::string(pair.substr(name.size() + 1));
    rest.remove_prefix(std::min(end + 1, rest.size()));
  }
  return "";
}

uint64_t Number(const std::string& text, uint64_t fallback, uint64_t max) {
  if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos)
    return fallback;
  return std::min<uint64_t>(std::stoull(text), max);
}

// The path's segments: "/api/v1/jobs/j7/tasks" -> {"api", "v1", "jobs", "j7", "tasks"}.
std::vector<std::string_view> Segments(std::string_view target) {
  target = target.substr(0, target.find('?'));
  std::vector<std::string_view> parts;
  while (!target.empty()) {
    if (target.front() == '/') {
      target.remove_prefix(1);
      continue;
    }
    const size_t end = std::min(target.find('/'), target.size());
    parts.push_back(target.substr(0, end));
    target.remove_prefix(end);
  }
  return parts;
}

}  // namespace

// ---- the server

struct Call;  // one API request (below)

struct Server::Impl {
  Impl(const ServerOptions& options, ListenOptions listen, std::string hostname)
      : guard(std::move(listen), RandomHex(16), std::move(hostname)),
        requests(options.broker_endpoint, io),
        events(options.broker_endpoint, io),
        hub(events,
            [this](std::function<void()> f, milliseconds after) {
              auto timer = std::make_shared<asio::steady_timer>(io, after);
              timer->async_wait([timer, f = std::move(f)](beast::error_code e) {
                if (!e) f();
              });
            }),
        acceptor(io),
        rates(kRequestsPerSecond, 2 * kRequestsPerSecond) {}

  asio::io_context io{1};
  std::optional<ssl::context> tls;
  Guard guard;
  BrokerLink requests, events;
  EventHub hub;
  tcp::acceptor acceptor;
  Rates rates;
  std::map<std::string, uint64_t> refused;  // requests refused, by reason (/metrics)
  Connections connections{kMaxConnections, kMaxUnprovenPerAddress};
  std::map<uint64_t, std::function<void()>> closers;  // each open connection's, by its id
  std::string url;
  std::thread thread;

  // Answers `request` through `respond` (on the HTTP thread), or, for an event stream, returns
  // the stream to follow.
  using Respond = std::function<void(Response)>;
  // `proven`: set when the request carried the token.
  std::shared_ptr<EventStream> Serve(const Request& request, const std::string& peer,
                                     Respond respond, bool& proven);
  // Asks the broker `m` for `call`; `shape` makes the response of its replies (an error reply,
  // or none, is answered as the problem it is).
  using Shape = std::function<Response(const Request&, std::vector<Message>&)>;
  void Ask(Message m, Call& call, Shape shape);
  // Whether the guard refuses `call` the access it needs (then it is answered, and counted).
  bool Refused(Call& call, const RequestFacts& facts, Access access);
  std::shared_ptr<EventStream> Page(Call& call, const RequestFacts& facts, bool& proven);
  // The API's handlers (Routes()).
  std::shared_ptr<EventStream> Metrics(Call& call);
  std::shared_ptr<EventStream> Login(Call& call);
  std::shared_ptr<EventStream> SessionInfo(Call& call);
  std::shared_ptr<EventStream> Status(Call& call);
  std::shared_ptr<EventStream> Limits(Call& call);
  std::shared_ptr<EventStream> Events(Call& call);
  std::shared_ptr<EventStream> Stream(Call& call);
  std::shared_ptr<EventStream> Jobs(Call& call);
  std::shared_ptr<EventStream> Job(Call& call);
  std::shared_ptr<EventStream> JobTasks(Call& call);
  std::shared_ptr<EventStream> CancelJob(Call& call);
  std::shared_ptr<EventStream> RetryJob(Call& call);
  std::shared_ptr<EventStream> TaskLogs(Call& call);
  std::shared_ptr<EventStream> TaskExplain(Call& call);
  std::shared_ptr<EventStream> CancelTask(Call& call);

  std::string SessionCookie(const std::string& token) const {
    return std::string(kTokenCookie) + "=" + token + "; Path=/; HttpOnly; SameSite=Strict" +
           (guard.options().tls ? "; Secure" : "");
  }

  // A response from another thread, awaited on a timer.
  struct Pending {
    std::optional<Response> response;
    asio::steady_timer ready;
  };
  template <typename Socket>
  asio::awaitable<void> Session(Socket stream, std::string peer, uint64_t id);
  template <typename Socket>
  asio::awaitable<bool> Exchange(Socket& stream, beast::flat_buffer& buffer,
                                 const std::string& peer, uint64_t id);
  template <typename Socket>
  asio::awaitable<void> Follow(Socket& stream, EventStream& events, unsigned version);
  asio::awaitable<void> Accept();
};

// One request to the API, once its method and path matched a route: what handlers read.
struct Call {
  const Request& request;
  std::string_view target;                 // path and query
  std::vector<std::string_view> segments;  // the path's
  uint64_t job = 0;                        // the route's :job or :task
  TaskId task;                             // the route's :task
  Server::Impl::Respond respond;
  template <typename Name> std::string_view header(Name name) const {
    auto it = request.find(Field(name));
    return it == request.end() ? std::string_view()
                               : std::string_view(it->value().data(), it->value().size());
  }
};

void Server::Impl::Ask(Message m, Call& call, Shape shape) {
  requests.Ask(std::move(m), [request = call.request, respond = call.respond,
                              shape = std::move(shape)](BrokerLink::Replies replies) {
    if (!replies) return respond(Problem(request, 503, replies.error().sentence));
    if (auto* error = std::get_if<ErrorReply>(&replies->front()))
      return respond(BrokerError(request, Error{error->code, error->message}));
    try {
      respond(shape(request, *replies));
    } catch (const std::exception& e) {  // a reply of another type than asked: said, not fatal
      respond(
          Problem(request, 502, std::string("the broker's reply was not understood: ") + e.what()));
    }
  });
}

// The HTTP API, one route a line: its method, its path (":job" is a job's id such as j7, ":task"
// a task's such as j7.2), the access it needs (web/guard.h) and its handler. A request that
// matches no route's path is a 404; one that matches a path but not its method, a 405.
struct Route {
  http::verb method;
  std::string_view path;
  Access access;
  std::shared_ptr<EventStream> (Server::Impl::*handle)(Call&);
  std::vector<std::string_view> pattern = {};  // the path's segments (Routes() splits it once)
};

const std::vector<Route>& Routes() {
  using I = Server::Impl;
  using enum http::verb;
  static const std::vector<Route> routes = [] {
    std::vector<Route> table = {
        {get, "/metrics", Access::kRead, &I::Metrics},
        {post, "/api/v1/login", Access::kLogin, &I::Login},
        {get, "/api/v1/session", Access::kRead, &I::SessionInfo},
        {get, "/api/v1/status", Access::kRead, &I::Status},
        {get, "/api/v1/limits", Access::kRead, &I::Limits},
        {get, "/api/v1/events", Access::kRead, &I::Events},
        {get, "/api/v1/stream", Access::kRead, &I::Stream},
        {get, "/api/v1/jobs", Access::kRead, &I::Jobs},
        {get, "/api/v1/jobs/:job", Access::kRead, &I::Job},
        {get, "/api/v1/jobs/:job/tasks", Access::kRead, &I::JobTasks},
        {post, "/api/v1/jobs/:job/cancel", Access::kAction, &I::CancelJob},
        {post, "/api/v1/jobs/:job/retry", Access::kAction, &I::RetryJob},
        {get, "/api/v1/tasks/:task/logs", Access::kRead, &I::TaskLogs},
        {get, "/api/v1/tasks/:task/explain", Access::kRead, &I::TaskExplain},
        {post, "/api/v1/tasks/:task/cancel", Access::kAction, &I::CancelTask},
    };
    for (Route& route : table) route.pattern = Segments(route.path);
    return table;
  }();
  return routes;
}

// Whether a request of `method` may take `route` (a HEAD as a GET).
bool Fits(const Route& route, http::verb method) {
  return route.method == method || (route.method == http::verb::get && method == http::verb::head);
}

// A token as a request's body carries it: without the line end a shell's echo adds.
std::string Token(std::string token) {
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  return token;
}

// Whether `segments` is `route`'s path; its :job or :task is read into `call` (a malformed one
// sets `bad` to what to write instead).
bool Matches(const Route& route, const std::vector<std::string_view>& segments, Call& call,
             std::string& bad) {
  const std::vector<std::string_view>& pattern = route.pattern;
  if (pattern.size() != segments.size()) return false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == ":job" || pattern[i] == ":task") {
      const bool task = pattern[i] == ":task";
      const auto id = ParseId(segments[i]);
      if (!id || id->index.has_value() != task) {
        bad = std::string(task ? "no task " : "no job ") + std::string(segments[i]) +
              (task ? " (write it j7.2)" : " (write it j7)");
      } else {
        call.job = id->job;
        call.task = {id->job, id->index.value_or(0)};
      }
    } else if (pattern[i] != segments[i]) {
      return false;
    }
  }
  return true;
}

std::shared_ptr<EventStream> Server::Impl::Serve(const Request& request, const std::string& peer,
                                                 Respond respond, bool& proven) {
  Call call{request, std::string_view(request.target().data(), request.target().size()), {}};
  call.segments = Segments(call.target);
  call.respond = std::move(respond);
  const RequestFacts facts{
      std::string_view(request.method_string().data(), request.method_string().size()),
      call.header(http::field::host),
      call.header(http::field::origin),
      call.header(http::field::cookie),
      call.header(http::field::authorization),
      call.header(kCsrfHeader)};
  proven = guard.Carries(facts);
  if (!rates.Allow(peer, std::chrono::steady_clock::now())) {
    ++refused["rate"];
    call.respond(Problem(request, 429, "too many requests from this address; slow down"));
    return nullptr;
  }
  const auto& s = call.segments;
  if (s.empty() || (s.size() == 1 && s[0] != "metrics" && s[0] != "api"))
    return Page(call, facts, proven);
  const bool api = s.size() >= 2 && s[0] == "api" && s[1] == "v1";
  const Route* found = nullptr;  // the route whose path this is (and method, if one has both)
  std::string bad;               // its :job or :task, malformed
  for (const Route& route : Routes()) {
    std::string malformed;
    if (!Matches(route, s, call, malformed)) continue;
    if (found && !Fits(*found, request.method()) && !Fits(route, request.method())) continue;
    found = &route;
    bad = std::move(malformed);
    if (Fits(route, request.method())) break;
  }
  // Nothing here says which APIs exist to those who may not use them: the guard speaks first
  // (a GET of an action is its 405), then the 404s.
  if (Refused(call, facts, found ? found->access : api ? Access::kRead : Access::kAsset))
    return nullptr;
  if (!found || !Fits(*found, request.method()) || !bad.empty()) {
    const std::string method(request.method_string().data(), request.method_string().size());
    call.respond(Problem(request, found && bad.empty() ? 405 : 404,
                         !bad.empty()   ? bad
                         : found || api ? "no such API: " + method + " " + std::string(call.target)
                                        : std::string("no such page")));
    return nullptr;
  }
  if (found->access == Access::kLogin) proven = proven || guard.TokenMatches(Token(request.body()));
  return (this->*found->handle)(call);
}

bool Server::Impl::Refused(Call& call, const RequestFacts& facts, Access access) {
  auto refusal = guard.Check(facts, access);
  if (!refusal) return false;
  ++refused[refusal->counted_as];
  call.respond(Problem(call.request, refusal->status, refusal->reason));
  return true;
}

// The page and its files. The login URL (orq dashboard prints it): its token becomes the
// session's cookie, and the browser is sent to the page without it, so the token leaves the
// address bar and history.
std::shared_ptr<EventStream> Server::Impl::Page(Call& call, const RequestFacts& facts,
                                                bool& proven) {
  const auto& s = call.segments;
  const Asset* asset = FindAsset(s.empty() ? "index.html" : s[0]);
  if (Refused(call, facts, Access::kAsset)) return nullptr;
  if (!asset) {
    call.respond(Problem(call.request, 404, "no such page"));
    return nullptr;
  }
  if (const std::string token = Query(call.target, "token"); !token.empty() && s.empty()) {
    if (!guard.TokenMatches(token)) {
      ++refused["token"];
      call.respond(Problem(call.request, 401, "that is not this dashboard's token"));
      return nullptr;
    }
    proven = true;
    Response r = Reply(call.request, http::status::see_other, "", "text/plain; charset=utf-8");
    r.set(http::field::location, "/");
    r.set(http::field::set_cookie, SessionCookie(token));
    call.respond(std::move(r));
    return nullptr;
  }
  call.respond(Reply(call.request, http::status::ok, std::string(asset->body), asset->type));
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::Metrics(Call& call) {
  Ask(StatusRequest{.metrics = true}, call,
      [this](const Request& request, std::vector<Message>& r) {
        return Reply(request, http::status::ok,
                     Exposition(std::get<StatusReply>(r.front())) + HttpExposition(refused),
                     "text/plain; version=0.0.4; charset=utf-8");
      });
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::Login(Call& call) {
  const std::string token = Token(call.request.body());
  if (guard.options().token.empty() || !guard.TokenMatches(token)) {
    call.respond(Problem(call.request, 401, "that is not this dashboard's token"));
    return nullptr;
  }
  Response r = Json(call.request, {{"ok", true}});
  r.set(http::field::set_cookie, SessionCookie(token));
  call.respond(std::move(r));
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::SessionInfo(Call& call) {
  call.respond(Json(call.request, {{"csrf", guard.csrf()},
                                   {"token", !guard.options().token.empty()},
                                   {"tls", guard.options().tls}}));
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::Status(Call& call) {
  Ask(StatusRequest{.metrics = true}, call, [](const Request& request, std::vector<Message>& r) {
    auto& status = std::get<StatusReply>(r.front());
    nlohmann::json j = StatusJson(status);
    const orq::Metrics& m = *status.metrics;
    uint64_t finished = 0;
    for (uint64_t n : m.finished) finished += n;
    j["metrics"] = {{"tasks_finished", finished},
                    {"journal_bytes", m.journal_bytes},
                    {"events", m.events},
                    {"dispatch_count", m.dispatch.count()},
                    {"dispatch_seconds_sum", m.dispatch.sum}};
    return Json(request, j);
  });
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::Limits(Call& call) {
  Ask(StatusRequest{}, call, [](const Request& request, std::vector<Message>& r) {
    const auto& status = std::get<StatusReply>(r.front());
    nlohmann::json j = {{"limits", nlohmann::json::array()}, {"locks", nlohmann::json::array()}};
    for (const GateInfo& l : status.limits) j["limits"].push_back(LimitJson(l));
    for (const GateInfo& l : status.locks) j["locks"].push_back(LockJson(l));
    return Json(request, j);
  });
  return nullptr;
}

// A page of events, for scripts.
std::shared_ptr<EventStream> Server::Impl::Events(Call& call) {
  const uint64_t after = Number(Query(call.target, "after"), 0, UINT64_MAX);
  Ask(EventsRequest{after, 0}, call, [](const Request& request, std::vector<Message>& r) {
    const auto& reply = std::get<EventsReply>(r.front());
    const double offset = WallNow() - reply.now;
    nlohmann::json events = nlohmann::json::array();
    for (const Event& e : reply.events) events.push_back(EventJson(e, offset));
    return Json(request, {{"events", events}, {"first", reply.first}, {"last", reply.last}});
  });
  return nullptr;
}

// The event stream (Server-Sent Events): returned for the session to follow.
std::shared_ptr<EventStream> Server::Impl::Stream(Call& call) {
  if (hub.streams() >= kMaxStreams) {
    call.respond(Problem(call.request, 503, "too many pages are open on this dashboard"));
    return nullptr;
  }
  uint64_t after = Number(Query(call.target, "after"), 0, UINT64_MAX);
  if (auto last = call.header("Last-Event-ID"); !last.empty())
    after = Number(std::string(last), after, UINT64_MAX);
  auto stream = std::make_shared<EventStream>(io.get_executor());
  hub.Subscribe(stream, after);
  return stream;
}

std::shared_ptr<EventStream> Server::Impl::Jobs(Call& call) {
  Ask(JobsRequest{}, call, [](const Request& request, std::vector<Message>& r) {
    nlohmann::json jobs = nlohmann::json::array();
    for (const JobInfo& j : std::get<JobsReply>(r.front()).jobs) jobs.push_back(JobJson(j));
    return Json(request, {{"jobs", jobs}});
  });
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::Job(Call& call) {
  Ask(JobsRequest{{call.job}}, call, [](const Request& request, std::vector<Message>& r) {
    return Json(request, JobJson(std::get<JobsReply>(r.front()).jobs.at(0)));
  });
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::JobTasks(Call& call) {
  const std::string state = Query(call.target, "state");
  const auto filter = TaskFilterNamed(state.empty() ? "all" : state);
  if (!filter) {
    call.respond(Problem(call.request, 400,
                         "state must be all, waiting, queued, delayed, running, finished, ok, "
                         "failed or cancelled"));
    return nullptr;
  }
  TasksRequest tasks{call.job, *filter,
                     static_cast<uint32_t>(Number(Query(call.target, "from"), 0, UINT32_MAX)),
                     static_cast<uint32_t>(Number(Query(call.target, "limit"), 100, kMaxTaskRows))};
  Ask(tasks, call, [job = call.job](const Request& request, std::vector<Message>& r) {
    const auto& reply = std::get<TasksReply>(r.front());
    nlohmann::json rows = nlohmann::json::array();
    for (const TaskRow& row : reply.tasks) rows.push_back(TaskRowJson(job, row));
    return Json(request, {{"tasks", rows}, {"size", reply.size}, {"next", reply.next}});
  });
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::CancelJob(Call& call) {
  Ask(CancelRequest{{IdRef{call.job}}}, call, [](const Request& request, std::vector<Message>& r) {
    return Json(request, {{"cancelled", std::get<CancelledReply>(r.front()).count}});
  });
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::RetryJob(Call& call) {
  Ask(RetryRequest{call.job, false}, call, [](const Request& request, std::vector<Message>& r) {
    const auto& s = std::get<SubmittedReply>(r.front());
    return Json(request, {{"job", FormatJobId(s.job)}, {"tasks", s.count}});
  });
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::TaskLogs(Call& call) {
  LogsRequest logs{call.task, Query(call.target, "stream") == "stderr"};
  Ask(logs, call, [](const Request& request, std::vector<Message>& r) {
    std::string text, note;
    bool more = false;
    for (const Message& m : r) {
      const auto& chunk = std::get<LogChunk>(m);
      text += chunk.text;
      if (!chunk.note.empty()) note = chunk.note;
      more = more || !chunk.file.empty();
    }
    return Json(request, {{"text", text}, {"note", note}, {"more_on_worker", more}});
  });
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::TaskExplain(Call& call) {
  Ask(ExplainRequest{call.task}, call,
      [task = call.task](const Request& request, std::vector<Message>& r) {
        const auto& reply = std::get<ExplainedReply>(r.front());
        std::vector<std::string> reasons;
        for (const Reason& reason : reply.reasons) reasons.push_back(Sentence(reason));
        return Json(request,
                    {{"task", FormatTaskId(task)},
                     {"state", reply.status ? StatusName(*reply.status) : StateName(reply.state)},
                     {"reasons", reasons}});
      });
  return nullptr;
}

std::shared_ptr<EventStream> Server::Impl::CancelTask(Call& call) {
  Ask(CancelRequest{{IdRef{call.task.job, call.task.index}}}, call,
      [](const Request& request, std::vector<Message>& r) {
        return Json(request, {{"cancelled", std::get<CancelledReply>(r.front()).count}});
      });
  return nullptr;
}

// An event stream: its header, then events as they come, until it closes.
template <typename Socket>
asio::awaitable<void> Server::Impl::Follow(Socket& stream, EventStream& events, unsigned version) {
  auto& tcp_stream = beast::get_lowest_layer(stream);
  http::response<http::empty_body> header{http::status::ok, version};
  header.set(http::field::server, "orq");
  header.set(http::field::content_type, "text/event-stream");
  header.set(http::field::cache_control, "no-store");
  header.set("X-Content-Type-Options", "nosniff");
  http::response_serializer<http::empty_body> serializer(header);
  tcp_stream.expires_after(kRequestDeadline);
  co_await http::async_write_header(stream, serializer, asio::use_awaitable);
  events.pending.insert(0, "retry: 2000\n\n");
  while (!events.closed) {
    if (events.pending.empty()) {
      events.wake.expires_after(kStreamKeepAlive);
      beast::error_code woke;
      co_await events.wake.async_wait(asio::redirect_error(asio::use_awaitable, woke));
      if (!woke && events.pending.empty()) events.pending = ": keep-alive\n\n";
      continue;
    }
    std::string text = std::move(events.pending);
    events.pending.clear();
    tcp_stream.expires_after(kRequestDeadline);
    co_await asio::async_write(stream, asio::buffer(text), asio::use_awaitable);
  }
}

// One request and its response; whether the connection stays open for another.
template <typename Socket>
asio::awaitable<bool> Server::Impl::Exchange(Socket& stream, beast::flat_buffer& buffer,
                                             const std::string& peer, uint64_t id) {
  auto& tcp_stream = beast::get_lowest_layer(stream);
  http::request_parser<http::string_body> parser;
  parser.header_limit(kMaxHeaderBytes);
  parser.body_limit(kMaxBodyBytes);
  tcp_stream.expires_after(kRequestDeadline);
  co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
  Request request = parser.release();
  // The answer comes from another thread's reply, posted back here: wait for it on a timer
  // (shared: a reply later than the wait must find it still there).
  auto pending = std::make_shared<Pending>(
      Pending{std::nullopt, asio::steady_timer(io, asio::steady_timer::time_point::max())});
  bool proven = false;
  auto events = Serve(
      request, peer,
      [pending](Response r) {
        pending->response = std::move(r);
        pending->ready.cancel();
      },
      proven);
  if (proven) connections.Proven(id);
  std::optional<Response>& response = pending->response;
  if (events) {
    co_await Follow(stream, *events, request.version());
    co_return false;
  }
  if (!response) {
    beast::error_code ignored;
    pending->ready.expires_after(kBrokerTimeout + seconds(5));
    co_await pending->ready.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    if (!response) response = Problem(request, 503, "the broker did not answer");
  }
  const bool keep_alive = response->keep_alive();
  tcp_stream.expires_after(kRequestDeadline);
  co_await http::async_write(stream, *response, asio::use_awaitable);
  co_return keep_alive;
}

// One connection: requests in turn (keep-alive), or an event stream to its end.
template <typename Socket>
asio::awaitable<void> Server::Impl::Session(Socket stream, std::string peer, uint64_t id) {
  auto& tcp_stream = beast::get_lowest_layer(stream);
  // Until it ends, the connection may be closed for a new one (Accept): that ends its reads.
  closers[id] = [&tcp_stream] {
    beast::error_code ignored;
    tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp_stream.socket().close(ignored);
  };
  struct Forget {
    Impl& impl;
    uint64_t id;
    ~Forget() {
      impl.closers.erase(id);
      impl.connections.Closed(id);
    }
  } forget{*this, id};
  if (!connections.contains(id)) co_return;  // closed for another before it began
  // Everything a request may make the server hold: its header, and a chunked body's chunk lines
  // and trailer, are read into this buffer, whose size is bounded (a longer line ends the
  // connection); the body goes to the request, bounded by kMaxBodyBytes.
  beast::flat_buffer buffer(kMaxHeaderBytes + kMaxBodyBytes);
  bool too_large = false;
  try {
    if constexpr (!std::is_same_v<Socket, beast::tcp_stream>) {
      tcp_stream.expires_after(kRequestDeadline);
      co_await stream.async_handshake(ssl::stream_base::server, asio::use_awaitable);
    }
    while (co_await Exchange(stream, buffer, peer, id)) {
    }
  } catch (const boost::system::system_error& e) {
    const auto code = e.code();
    too_large = code == http::error::body_limit || code == http::error::header_limit ||
                code == http::error::buffer_overflow;
    // Garbage that is not HTTP: counted; the connection closes.
    if (!too_large &&
        code.category() == http::make_error_code(http::error::bad_method).category() &&
        code != http::error::end_of_stream)
      ++refused["malformed"];
  } catch (const std::exception& e) {  // a bug of ours: this connection ends, the server goes on
    Log(std::string("dashboard: ") + e.what());
  }
  if (too_large) {  // said once, then the connection closes
    ++refused["too_large"];
    Request none;
    none.version(11);
    Response r = Problem(none, 413, "the request is too large");
    r.keep_alive(false);
    beast::error_code ignored;
    tcp_stream.expires_after(kRequestDeadline);
    co_await http::async_write(stream, r, asio::redirect_error(asio::use_awaitable, ignored));
  }
  beast::error_code ignored;
  tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<void> Server::Impl::Accept() {
  for (;;) {
    beast::error_code error;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, error));
    if (error == asio::error::operation_aborted) co_return;
    if (error) {  // no descriptor left (EMFILE), say: the connection waits in the backlog
      asio::steady_timer pause(io, milliseconds(100));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, error));
      continue;
    }
    CloseOnExec(socket.native_handle());  // not inherited by the workers the broker starts
    beast::error_code ignored;
    std::string peer = socket.remote_endpoint(ignored).address().to_string();
    // Room for it: the connection of its address (or of all) that has waited longest without
    // the token goes, perhaps this one.
    const Connections::Opened opened = connections.Open(peer);
    bool admitted = true;
    for (uint64_t closing : opened.close) {
      ++refused["connections"];
      if (closing == opened.id) {
        admitted = false;
      } else if (auto it = closers.find(closing); it != closers.end()) {
        it->second();
      }
    }
    if (!admitted) {
      socket.close(ignored);
      continue;
    }
    beast::tcp_stream stream(std::move(socket));
    if (tls) {
      asio::co_spawn(io,
                     Session(beast::ssl_stream<beast::tcp_stream>(std::move(stream), *tls),
                             std::move(peer), opened.id),
                     asio::detached);
    } else {
      asio::co_spawn(io, Session(std::move(stream), std::move(peer), opened.id), asio::detached);
    }
  }
}

bool ParseHttpAddress(const std::string& text, ServerOptions& options) {
  std::string address = "127.0.0.1", port = text;
  if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
    address = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (address.size() >= 2 && address.front() == '[' && address.back() == ']')
      address = address.substr(1, address.size() - 2);
  }
  boost::system::error_code error;
  asio::ip::make_address(address, error);
  if (error || port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
    return false;
  options.address = address;
  options.port = static_cast<uint16_t>(std::stoul(port));
  return true;
}

namespace {

std::string ReadSecret(const std::string& path, const std::string& flag) {
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token)) throw UsageError(flag + " " + path + ": cannot be read");
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.size() < 16)
    throw UsageError(flag + " " + path + ": the token must be at least 16 characters");
  if (token.find_first_of(" ;,\"\\") != std::string::npos)
    throw UsageError(flag + " " + path +
                     ": the token may not hold spaces, quotes, commas, semicolons or backslashes");
  return token;
}

}  // namespace

std::unique_ptr<Server> Server::Start(const ServerOptions& options) {
  ListenOptions listen{options.address, options.port,
                       !options.cert_file.empty() || !options.key_file.empty(), ""};
  if (options.cert_file.empty() != options.key_file.empty())
    throw UsageError("--http-cert and --http-key go together");
  // Every address has a token: on loopback too, any local user could otherwise read every task's
  // output and act as the owner. Without a token file, one made now (the login URL carries it).
  listen.token = options.token_file.empty() ? RandomHex(32)
                                            : ReadSecret(options.token_file, "--http-token-file");
  if (auto problem = CheckListen(listen); !problem.ok()) throw UsageError(problem.error().sentence);
  char hostname[256] = {};
  ::gethostname(hostname, sizeof hostname - 1);
  auto impl = std::make_unique<Impl>(options, listen, hostname);
  if (listen.tls) {
    impl->tls.emplace(ssl::context::tls_server);
    impl->tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
    boost::system::error_code error;
    impl->tls->use_certificate_chain_file(options.cert_file, error);
    if (error) throw UsageError("--http-cert " + options.cert_file + ": " + error.message());
    impl->tls->use_private_key_file(options.key_file, ssl::context::pem, error);
    if (error) throw UsageError("--http-key " + options.key_file + ": " + error.message());
  }
  const tcp::endpoint endpoint(asio::ip::make_address(options.address), options.port);
  boost::system::error_code error;
  impl->acceptor.open(endpoint.protocol(), error);
  if (!error) CloseOnExec(impl->acceptor.native_handle());
  if (!error) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), error);
  if (!error) impl->acceptor.bind(endpoint, error);
  if (!error) impl->acceptor.listen(asio::socket_base::max_listen_connections, error);
  if (error)
    throw std::runtime_error("the dashboard cannot listen on " + options.address + ":" +
                             std::to_string(options.port) + ": " + error.message());
  const uint16_t port = impl->acceptor.local_endpoint().port();
  // (The Host header check needs the port bound.)
  ListenOptions bound = listen;
  bound.port = port;
  impl->guard = Guard(bound, impl->guard.csrf(), hostname);
  const bool v6 = options.address.find(':') != std::string::npos;
  impl->url = std::string(listen.tls ? "https://" : "http://") +
              (v6 ? "[" + options.address + "]" : options.address) + ":" + std::to_string(port) +
              "/";
  asio::co_spawn(impl->io, impl->Accept(), asio::detached);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    try {
      raw->io.run();
    } catch (const std::exception& e) {
      Log(std::string("dashboard: ") + e.what());
    }
  });
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  asio::post(impl_->io, [impl = impl_.get()] {
    impl->hub.Stop();
    impl->io.stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

const std::string& Server::url() const { return impl_->url; }

std::string Server::login_url() const {
  return impl_->url + "?token=" + impl_->guard.options().token;
}

}  // namespace orq::web

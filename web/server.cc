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
  void Ask(Message m, const Request& request, Respond respond,
           std::function<Response(std::vector<Message>&)> shape) {
    requests.Ask(std::move(m), [request, respond = std::move(respond),
                                shape = std::move(shape)](BrokerLink::Replies replies) {
      if (!replies) return respond(Problem(request, 503, replies.error().sentence));
      if (auto* error = std::get_if<ErrorReply>(&replies->front()))
        return respond(BrokerError(request, Error{error->code, error->message}));
      try {
        respond(shape(*replies));
      } catch (const std::exception& e) {  // a reply of another type than asked: said, not fatal
        respond(Problem(request, 502,
                        std::string("the broker's reply was not understood: ") + e.what()));
      }
    });
  }

  std::string SessionCookie(const std::string& token) const {
    return std::string(kTokenCookie) + "=" + token + "; Path=/; HttpOnly; SameSite=Strict" +
           (guard.options().tls ? "; Secure" : "");
  }

  template <typename Socket>
  asio::awaitable<void> Session(Socket stream, std::string peer, uint64_t id);
  asio::awaitable<void> Accept();
};

std::shared_ptr<EventStream> Server::Impl::Serve(const Request& request, const std::string& peer,
                                                 Respond respond, bool& proven) {
  const std::string_view target(request.target().data(), request.target().size());
  const auto parts = Segments(target);
  const auto header = [&](auto field) {
    auto it = request.find(Field(field));
    return it == request.end() ? std::string_view()
                               : std::string_view(it->value().data(), it->value().size());
  };
  const std::string method(request.method_string());
  const RequestFacts facts{method,
                           header(http::field::host),
                           header(http::field::origin),
                           header(http::field::cookie),
                           header(http::field::authorization),
                           header(kCsrfHeader)};
  const auto refuse = [&](Access access) {
    if (auto refusal = guard.Check(facts, access)) {
      ++refused[refusal->counted_as];
      respond(Problem(request, refusal->status, refusal->reason));
      return true;
    }
    return false;
  };
  proven = guard.Carries(facts);
  if (!rates.Allow(peer, std::chrono::steady_clock::now())) {
    ++refused["rate"];
    respond(Problem(request, 429, "too many requests from this address; slow down"));
    return nullptr;
  }

  // The page and its files.
  if (parts.empty() || (parts.size() == 1 && parts[0] != "metrics" && parts[0] != "api")) {
    const Asset* asset = FindAsset(parts.empty() ? "index.html" : parts[0]);
    if (!asset) {
      if (!refuse(Access::kAsset)) respond(Problem(request, 404, "no such page"));
      return nullptr;
    }
    if (refuse(Access::kAsset)) return nullptr;
    // The login URL (orq dashboard prints it): its token becomes the session's cookie, and the
    // browser is sent to the page without it, so the token leaves the address bar and history.
    if (const std::string token = Query(target, "token"); !token.empty() && parts.empty()) {
      if (!guard.TokenMatches(token)) {
        ++refused["token"];
        respond(Problem(request, 401, "that is not this dashboard's token"));
        return nullptr;
      }
      proven = true;
      Response r = Reply(request, http::status::see_other, "", "text/plain; charset=utf-8");
      r.set(http::field::location, "/");
      r.set(http::field::set_cookie, SessionCookie(token));
      respond(std::move(r));
      return nullptr;
    }
    respond(Reply(request, http::status::ok, std::string(asset->body), asset->type));
    return nullptr;
  }
  if (parts.size() == 1 && parts[0] == "metrics") {
    if (refuse(Access::kRead)) return nullptr;
    Ask(StatusRequest{.metrics = true}, request, respond, [this, request](std::vector<Message>& r) {
      return Reply(request, http::status::ok,
                   Exposition(std::get<StatusReply>(r.front())) + HttpExposition(refused),
                   "text/plain; version=0.0.4; charset=utf-8");
    });
    return nullptr;
  }
  if (parts.size() < 3 || parts[0] != "api" || parts[1] != "v1") {
    if (!refuse(Access::kAsset)) respond(Problem(request, 404, "no such page"));
    return nullptr;
  }
  const std::string_view what = parts[2];
  const bool post = request.method() == http::verb::post;

  if (what == "login" && parts.size() == 3) {
    if (refuse(Access::kLogin)) return nullptr;
    std::string token = request.body();
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
    if (guard.options().token.empty() || !guard.TokenMatches(token)) {
      respond(Problem(request, 401, "that is not this dashboard's token"));
      return nullptr;
    }
    proven = true;
    Response r = Json(request, {{"ok", true}});
    r.set(http::field::set_cookie, SessionCookie(token));
    respond(std::move(r));
    return nullptr;
  }
  // Everything else reads data or changes something: the token (and for a change, the page's
  // own origin and the anti-CSRF header).
  const bool action = parts.back() == "cancel" || parts.back() == "retry";
  if (refuse(action ? Access::kAction : Access::kRead)) return nullptr;

  if (what == "session" && parts.size() == 3) {
    respond(Json(request, {{"csrf", guard.csrf()},
                           {"token", !guard.options().token.empty()},
                           {"tls", guard.options().tls}}));
    return nullptr;
  }
  if (what == "status" && parts.size() == 3) {
    Ask(StatusRequest{.metrics = true}, request, respond, [request](std::vector<Message>& r) {
      auto& status = std::get<StatusReply>(r.front());
      nlohmann::json j = StatusJson(status);
      const Metrics& m = *status.metrics;
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
  if (what == "limits" && parts.size() == 3) {
    Ask(StatusRequest{}, request, respond, [request](std::vector<Message>& r) {
      const auto& status = std::get<StatusReply>(r.front());
      nlohmann::json j = {{"limits", nlohmann::json::array()}, {"locks", nlohmann::json::array()}};
      for (const GateInfo& l : status.limits) j["limits"].push_back(LimitJson(l));
      for (const GateInfo& l : status.locks) j["locks"].push_back(LockJson(l));
      return Json(request, j);
    });
    return nullptr;
  }
  if (what == "events" && parts.size() == 3) {  // a page of events, for scripts
    const uint64_t after = Number(Query(target, "after"), 0, UINT64_MAX);
    Ask(EventsRequest{after, 0}, request, respond, [request](std::vector<Message>& r) {
      const auto& reply = std::get<EventsReply>(r.front());
      const double offset = WallNow() - reply.now;
      nlohmann::json events = nlohmann::json::array();
      for (const Event& e : reply.events) events.push_back(EventJson(e, offset));
      return Json(request, {{"events", events}, {"first", reply.first}, {"last", reply.last}});
    });
    return nullptr;
  }
  if (what == "stream" && parts.size() == 3) {  // the event stream (Server-Sent Events)
    if (hub.streams() >= kMaxStreams) {
      respond(Problem(request, 503, "too many pages are open on this dashboard"));
      return nullptr;
    }
    uint64_t after = Number(Query(target, "after"), 0, UINT64_MAX);
    if (auto last = header("Last-Event-ID"); !last.empty())
      after = Number(std::string(last), after, UINT64_MAX);
    auto stream = std::make_shared<EventStream>(io.get_executor());
    hub.Subscribe(stream, after);
    return stream;
  }
  if (what == "jobs") {
    if (parts.size() == 3) {
      Ask(JobsRequest{}, request, respond, [request](std::vector<Message>& r) {
        nlohmann::json jobs = nlohmann::json::array();
        for (const JobInfo& j : std::get<JobsReply>(r.front()).jobs) jobs.push_back(JobJson(j));
        return Json(request, {{"jobs", jobs}});
      });
      return nullptr;
    }
    const auto id = ParseId(parts[3]);
    if (!id || id->index) {
      respond(Problem(request, 404, "no job " + std::string(parts[3]) + " (write it j7)"));
      return nullptr;
    }
    const uint64_t job = id->job;
    if (parts.size() == 4 && !post) {
      Ask(JobsRequest{{job}}, request, respond, [request](std::vector<Message>& r) {
        return Json(request, JobJson(std::get<JobsReply>(r.front()).jobs.at(0)));
      });
      return nullptr;
    }
    if (parts.size() == 5 && parts[4] == "tasks" && !post) {
      const std::string state = Query(target, "state");
      const auto filter = TaskFilterNamed(state.empty() ? "all" : state);
      if (!filter) {
        respond(Problem(request, 400,
                        "state must be all, waiting, queued, delayed, running, finished, ok, "
                        "failed or cancelled"));
        return nullptr;
      }
      TasksRequest tasks{job, *filter,
                         static_cast<uint32_t>(Number(Query(target, "from"), 0, UINT32_MAX)),
                         static_cast<uint32_t>(Number(Query(target, "limit"), 100, kMaxTaskRows))};
      Ask(tasks, request, respond, [request, job](std::vector<Message>& r) {
        const auto& reply = std::get<TasksReply>(r.front());
        nlohmann::json rows = nlohmann::json::array();
        for (const TaskRow& row : reply.tasks) rows.push_back(TaskRowJson(job, row));
        return Json(request, {{"tasks", rows}, {"size", reply.size}, {"next", reply.next}});
      });
      return nullptr;
    }
    if (parts.size() == 5 && parts[4] == "cancel" && post) {
      Ask(CancelRequest{{IdRef{job}}}, request, respond, [request](std::vector<Message>& r) {
        return Json(request, {{"cancelled", std::get<CancelledReply>(r.front()).count}});
      });
      return nullptr;
    }
    if (parts.size() == 5 && parts[4] == "retry" && post) {
      Ask(RetryRequest{job, false}, request, respond, [request](std::vector<Message>& r) {
        const auto& s = std::get<SubmittedReply>(r.front());
        return Json(request, {{"job", FormatJobId(s.job)}, {"tasks", s.count}});
      });
      return nullptr;
    }
  }
  if (what == "tasks" && parts.size() == 5) {
    const auto id = ParseId(parts[3]);
    if (!id || !id->index) {
      respond(Problem(request, 404, "no task " + std::string(parts[3]) + " (write it j7.2)"));
      return nullptr;
    }
    const TaskId task{id->job, *id->index};
    if (parts[4] == "logs" && !post) {
      LogsRequest logs{task, Query(target, "stream") == "stderr"};
      Ask(logs, request, respond, [request](std::vector<Message>& r) {
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
    if (parts[4] == "explain" && !post) {
      Ask(ExplainRequest{task}, request, respond, [request, task](std::vector<Message>& r) {
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
    if (parts[4] == "cancel" && post) {
      Ask(CancelRequest{{IdRef{task.job, task.index}}}, request, respond,
          [request](std::vector<Message>& r) {
            return Json(request, {{"cancelled", std::get<CancelledReply>(r.front()).count}});
          });
      return nullptr;
    }
  }
  respond(Problem(request, post ? 405 : 404, "no such API: " + method + " " + std::string(target)));
  return nullptr;
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
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kMaxHeaderBytes);
      parser.body_limit(kMaxBodyBytes);
      tcp_stream.expires_after(kRequestDeadline);
      co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
      Request request = parser.release();
      // The answer comes from another thread's reply, posted back here: wait for it on a timer
      // (shared: a reply later than the wait must find it still there).
      struct Pending {
        std::optional<Response> response;
        asio::steady_timer ready;
      };
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
      if (events) {  // an event stream: its header, then events as they come, until it closes
        http::response<http::empty_body> header{http::status::ok, request.version()};
        header.set(http::field::server, "orq");
        header.set(http::field::content_type, "text/event-stream");
        header.set(http::field::cache_control, "no-store");
        header.set("X-Content-Type-Options", "nosniff");
        http::response_serializer<http::empty_body> serializer(header);
        tcp_stream.expires_after(kRequestDeadline);
        co_await http::async_write_header(stream, serializer, asio::use_awaitable);
        events->pending.insert(0, "retry: 2000\n\n");
        while (!events->closed) {
          if (events->pending.empty()) {
            events->wake.expires_after(kStreamKeepAlive);
            beast::error_code woke;
            co_await events->wake.async_wait(asio::redirect_error(asio::use_awaitable, woke));
            if (!woke && events->pending.empty()) events->pending = ": keep-alive\n\n";
            continue;
          }
          std::string text = std::move(events->pending);
          events->pending.clear();
          tcp_stream.expires_after(kRequestDeadline);
          co_await asio::async_write(stream, asio::buffer(text), asio::use_awaitable);
        }
        co_return;
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
      if (!keep_alive) break;
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
  if (too_large) {
    ++refused["too_large"];
    {  // Too large: said once, then the connection closes.
      Request none;
      none.version(11);
      Response r = Problem(none, 413, "the request is too large");
      r.keep_alive(false);
      beast::error_code ignored;
      tcp_stream.expires_after(kRequestDeadline);
      co_await http::async_write(stream, r, asio::redirect_error(asio::use_awaitable, ignored));
    }
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
  if (auto problem = CheckListen(listen)) throw UsageError(*problem);
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

#include "common/codec.h"

#include <concepts>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>

namespace orq {
namespace {

// Appends little-endian varints, length-prefixed strings and raw doubles.
class Writer {
 public:
  void U64(uint64_t v) {
    char buf[10];  // one append per varint: push_back per byte was 15 % of the broker's work
    size_t n = 0;
    while (v >= 0x80) {
      buf[n++] = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    buf[n++] = static_cast<char>(v);
    out_.append(buf, n);
  }
  void I64(int64_t v) { U64((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void F64(double v) {
    char b[8];
    std::memcpy(b, &v, 8);
    out_.append(b, 8);
  }
  void Str(std::string_view s) {
    U64(s.size());
    out_.append(s);
  }
  void Reserve(size_t n) { out_.reserve(n); }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads what Writer wrote. Every read checks bounds; the first failure sticks (ok() false).
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool AtEnd() const { return pos_ == in_.size(); }
  size_t Remaining() const { return in_.size() - pos_; }

  uint64_t U64() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= in_.size()) return Fail();
      auto b = static_cast<uint8_t>(in_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    return Fail();
  }
  uint32_t U32() {
    uint64_t v = U64();
    if (v > UINT32_MAX) return static_cast<uint32_t>(Fail());
    return static_cast<uint32_t>(v);
  }
  int64_t I64() {
    uint64_t v = U64();
    return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
  }
  double F64() {
    if (Remaining() < 8) return static_cast<double>(Fail());
    double v;
    std::memcpy(&v, in_.data() + pos_, 8);
    pos_ += 8;
    return v;
  }
  bool Bool() { return U64() != 0; }
  std::string Str() {
    uint64_t n = U64();
    if (!ok_ || n > Remaining()) return Fail(), std::string();
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  // A count of items, each at least `min_bytes` long: bounded by what is left.
  size_t Count(size_t min_bytes = 1) {
    uint64_t n = U64();
    if (!ok_ || n > Remaining() / min_bytes) return static_cast<size_t>(Fail());
    return static_cast<size_t>(n);
  }
  uint64_t Fail() {
    ok_ = false;
    pos_ = in_.size();
    return 0;
  }

 private:
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Makes alternative `index` of the variant the current one (default-constructed).
template <typename V, size_t... I>
void EmplaceIndex(V& v, size_t index, std::index_sequence<I...>) {
  ((index == I ? (void)v.template emplace<I>() : (void)0), ...);
}

// An upper bound of what a task kind's own fields take (EncodeSpecs sizes its blob with it).
struct BodySize {
  size_t& bytes;
  void operator()(const double&) { bytes += 8; }
  void operator()(const std::string& v) { bytes += 10 + v.size(); }
  void operator()(const std::vector<std::string>& v) {
    bytes += 10;
    for (const auto& s : v) bytes += 10 + s.size();
  }
  void operator()(const std::shared_ptr<const ShellTask::Place>& p) {
    bytes += 1;
    if (!p) return;
    bytes += 10 + p->cwd.size() + 10;
    for (const auto& s : p->env) bytes += 10 + s.size();
  }
  void operator()(const std::shared_ptr<const PythonTask::Function>& f) {
    bytes += 1;
    if (f) bytes += 30 + f->pickled.size() + f->name.size() + f->python.size();
  }
};

// Whether T is U, const or not: Fields(Is<TaskId> auto& id, ...) takes a const value to encode
// and a mutable one to decode into.
template <typename T, typename U>
concept Is = std::same_as<std::remove_const_t<T>, U>;
// A struct or message with no layout here: one clear line instead of pages of template errors.
template <typename T> void Fields(T&, auto&&) {
  static_assert(sizeof(T) == 0, "a struct or message needs its Fields() in common/codec.cc");
}

// Fields with a layout of their own, wrapped where a struct lists them:
// Below(v, end): an enum or small number, sent as a number, refused on decode at `end` or past.
template <typename T> struct Bounded {
  T& v;
  uint64_t end;
};
template <typename T> Bounded<T> Below(T& v, uint64_t end) { return {v, end}; }
// Exactly(v, n): counts that must number `n` (a histogram's buckets, counts by kind).
template <typename V> struct Counts {
  V& v;
  size_t size;
};
template <typename V> Counts<V> Exactly(V& v, size_t size) { return {v, size}; }
// Two flags in one number: bit 0 and bit 1.
template <typename B> struct FlagPair {
  B& low;
  B& high;
};
template <typename B> FlagPair<B> Flags(B& low, B& high) { return {low, high}; }
// A spec's kind (TaskBody's index), sent before the fields every kind shares.
template <typename V> struct KindOf { V& body; };
template <typename V> KindOf<V> KindIndexOf(V& body) { return {body}; }

// Each struct's layout, written once for both directions (as the messages' below): Fields(x, f)
// calls f on each field in wire order, f being Out (encode) or In (decode). The journal keeps
// specs, outcomes and contexts in these layouts: a change is a new kJournalFormat.
void Fields(Is<TaskId> auto& id, auto&& f) { f(id.job), f(id.index); }
// A job (index 0 on the wire) or one task of it (its index + 1).
void Fields(Is<IdRef> auto& id, auto&& f) { f(id.job), f(id.index); }
void Fields(Is<Lease> auto& l, auto&& f) { f(l.id), f(l.attempt); }
void Fields(Is<ResourceNeed> auto& n, auto&& f) { f(n.name), f(n.amount); }
void Fields(Is<Dependency> auto& d, auto&& f) {
  f(d.job), f(d.index), f(Flags(d.whole_job, d.any));
}
void Fields(Is<LockNeed> auto& l, auto&& f) {
  f(l.name), f(Below(l.mode, uint64_t{static_cast<uint8_t>(LockMode::kWrite)} + 1));
}
// A spec's Needs (after a flag: a spec without any has none).
void Fields(Is<Needs> auto& n, auto&& f) {
  f(n.name), f(n.after), f(n.cpus), f(n.resources), f(n.queue), f(n.limits), f(n.locks),
      f(n.time_request);
}
void Fields(Is<ShellTask::Place> auto& p, auto&& f) { f(p.cwd), f(p.env); }
void Fields(Is<PythonTask::Function> auto& fn, auto&& f) {
  f(fn.pickled), f(fn.name), f(fn.python);
}
// A spec: its kind, the fields every kind shares, then the kind's own (TaskBody's structs list
// them in their Fields()).
void Fields(Is<TaskSpec> auto& s, auto&& f) {
  f(KindIndexOf(s.body)), f(s.delay), f(s.timeout), f(s.priority), f(s.attempts), f(s.retries),
      f(s.backoff_base), f(s.backoff_max), f(s.needs), f(s.body);
}
void Fields(Is<ShellOutput::More> auto& m, auto&& f) {
  f(m.stdout_file), f(m.stderr_file), f(m.host), f(m.key), f(m.argv);
}
void Fields(Is<ShellOutput> auto& s, auto&& f) {
  f(s.exit_code), f(s.stdout_text), f(s.stderr_text), f(s.truncated), f(s.more);
}
void Fields(Is<TaskOutcome> auto& o, auto&& f) {
  f(o.id), f(Below(o.status, kTaskStatusCount)), f(o.attempt), f(o.worker_pid), f(o.started),
      f(o.finished), f(o.result), f(o.error), f(o.last_error), f(o.shell);
}
void Fields(Is<Assignment> auto& a, auto&& f) {
  f(a.id), f(a.attempt), f(a.spec), f(a.context), f(a.env), f(a.inputs);
}
void Fields(Is<JobInfo> auto& i, auto&& f) {
  f(i.job), f(i.age), f(i.tasks), f(i.waiting), f(i.queued), f(i.delayed), f(i.running), f(i.ok),
      f(i.failed), f(i.cancelled), f(i.finished_age), f(i.label);
}
void Fields(Is<LimitSpec> auto& l, auto&& f) { f(l.name), f(l.max), f(l.rate), f(l.burst); }
void Fields(Is<WorkerInfo> auto& i, auto&& f) {
  f(i.pid), f(i.host), f(i.remote), f(i.threads), f(i.running), f(i.slots), f(i.resources),
      f(i.queues), f(i.last_heard), f(i.done), f(i.failed), f(i.allocation), f(i.ends_in);
}
void Fields(Is<Histogram> auto& h, auto&& f) {
  f(Exactly(h.counts, kLatencyBuckets.size() + 1)), f(h.sum);
}
void Fields(Is<Metrics> auto& m, auto&& f) {
  f(Exactly(m.submitted, kTaskKindCount)),
      f(Exactly(m.finished, kTaskKindCount * kTaskStatusCount)), f(m.dispatch), f(m.end_to_end),
      f(m.commit), f(m.journal_bytes), f(m.events), f(m.jobs_submitted);
}
void Fields(Is<Event> auto& e, auto&& f) {
  f(e.seq), f(e.at), f(Below(e.kind, uint64_t{Event::kLastKind} + 1)), f(e.task), f(e.count),
      f(e.worker), f(Below(e.status, kTaskStatusCount)), f(Below(e.task_kind, kTaskKindCount)),
      f(e.host);
}
void Fields(Is<Reason> auto& x, auto&& f) {
  f(Below(x.kind, uint64_t{Reason::kLastKind} + 1)), f(x.name), f(x.id),
      f(Below(x.state, kTaskStateCount)), f(x.holders), f(x.count), f(x.max), f(x.seconds),
      f(x.rate), f(x.pid), f(x.any),
      f(Below(x.mode, uint64_t{static_cast<uint8_t>(LockMode::kWrite)} + 1));
}
void Fields(Is<GateInfo> auto& g, auto&& f) {
  f(g.name), f(g.limit), f(g.mode), f(g.holders), f(g.held), f(g.waiting);
}
void Fields(Is<TaskRow> auto& t, auto&& f) {
  f(t.index), f(Below(t.state, kTaskStateCount)), f(t.status), f(t.attempt), f(t.worker),
      f(t.started), f(t.finished), f(t.label), f(t.after), f(t.error);
}
void Fields(Is<AllocQueueSpec> auto& q, auto&& f) {
  f(q.name), f(q.backend), f(q.time_limit_s), f(q.workers_per_alloc), f(q.max_workers),
      f(q.backlog), f(q.idle_timeout_s), f(q.worker_args), f(q.queues), f(q.resources),
      f(q.backend_args);
}
void Fields(Is<AllocationInfo> auto& a, auto&& f) {
  f(a.id), f(a.state), f(a.workers), f(a.workers_seen), f(a.submitted), f(a.started), f(a.ended),
      f(a.end);
}
void Fields(Is<AllocQueueInfo> auto& q, auto&& f) {
  f(q.spec), f(q.paused), f(q.pause_reason), f(q.last_error), f(q.failures_in_row), f(q.submits),
      f(q.failures), f(q.access_file), f(q.allocations);
}

// A job's context: its directory, then flags (bit 0 an environment follows, bit 1 the named
// variables follow; journals written before bit 1 existed hold 0 or 1, and read the same).
// Written by hand: the flags say which optional follows.
void Put(Writer& w, const JobContext& c) {
  w.Str(c.cwd);
  w.U64(uint64_t{c.env.has_value()} | uint64_t{c.named.has_value()} << 1);
  for (const auto* list : {&c.env, &c.named}) {
    if (!*list) continue;
    w.U64((*list)->size());
    for (const auto& e : **list) w.Str(e);
  }
}
void Get(Reader& r, JobContext& c) {
  c.cwd = r.Str();
  const uint64_t flags = r.U64();
  if (flags > 3) return void(r.Fail());
  for (auto [list, bit] : {std::pair{&c.env, 1}, std::pair{&c.named, 2}}) {
    if (!(flags & bit)) continue;
    auto& items = list->emplace();
    items.resize(r.Count());
    for (auto& e : items) e = r.Str();
  }
}

// Named counts (TaskCounts, BrokerCounters) travel as their values in ForEach order.
template <typename T> void PutCounts(Writer& w, const T& counts) {
  T::ForEach(counts, [&](const char*, uint64_t v) { w.U64(v); });
}
template <typename T> void GetCounts(Reader& r, T& counts) {
  T::ForEach(counts, [&](const char*, uint64_t& v) { v = r.U64(); });
}

// Encodes through a Writer: numbers, strings and the layouts above.
struct Out {
  Writer& w;
  void operator()(const uint64_t& v) { w.U64(v); }
  void operator()(const uint32_t& v) { w.U64(v); }
  void operator()(const int64_t& v) { w.I64(v); }
  void operator()(const int32_t& v) { w.I64(v); }
  void operator()(const bool& v) { w.U64(v); }
  void operator()(const double& v) { w.F64(v); }
  void operator()(const std::string& v) { w.Str(v); }
  void operator()(const ErrorCode& v) { w.U64(static_cast<uint8_t>(v)); }
  void operator()(const Slots& v) {
    for (uint32_t s : v) w.U64(s);
  }
  void operator()(const TaskCounts& v) { PutCounts(w, v); }
  void operator()(const BrokerCounters& v) { PutCounts(w, v); }
  void operator()(const TaskFilter& v) { w.U64(static_cast<uint8_t>(v)); }
  void operator()(const JobContext& v) { Put(w, v); }
  void operator()(const LimitRequest::Op& v) { w.U64(static_cast<uint8_t>(v)); }
  void operator()(const AllocRequest::Op& v) { w.U64(static_cast<uint8_t>(v)); }
  void operator()(const AllocState& v) { w.U64(static_cast<uint8_t>(v)); }
  void operator()(const TaskState& v) { w.U64(static_cast<uint8_t>(v)); }
  // An optional enum: 0 for none, else 1 + its value.
  void operator()(const std::optional<TaskStatus>& v) {
    w.U64(v ? 1 + static_cast<uint8_t>(*v) : 0);
  }
  void operator()(const std::optional<LockMode>& v) { w.U64(v ? 1 + static_cast<uint8_t>(*v) : 0); }
  // An optional index: 0 for none, else 1 + it.
  void operator()(const std::optional<uint32_t>& v) { w.U64(v ? uint64_t{*v} + 1 : 0); }
  template <typename T> void operator()(const Bounded<T>& b) { w.U64(static_cast<uint64_t>(b.v)); }
  template <typename V> void operator()(const Counts<V>& c) { (*this)(c.v); }
  template <typename B> void operator()(const FlagPair<B>& p) {
    w.U64(uint64_t{p.low} | uint64_t{p.high} << 1);
  }
  template <typename V> void operator()(const KindOf<V>& k) { w.U64(k.body.index()); }
  void operator()(const TaskBody& body) {
    std::visit([&](const auto& b) { std::decay_t<decltype(b)>::Fields(b, *this); }, body);
  }
  template <typename T> void operator()(const std::vector<T>& v) {
    w.U64(v.size());
    for (const auto& item : v) (*this)(item);
  }
  // A struct that may be absent: a flag, then its layout.
  template <typename T> void operator()(const std::optional<T>& v) {
    w.U64(v.has_value());
    if (v) (*this)(*v);
  }
  template <typename T> void operator()(const std::shared_ptr<const T>& p) {
    w.U64(p != nullptr);
    if (p) (*this)(*p);
  }
  // A python task's function: 2 when it is the one written last in this message (or window of
  // specs), so a job's calls of one function carry it once.
  void operator()(const std::shared_ptr<const PythonTask::Function>& p) {
    if (p && last_function && *p == *last_function) return w.U64(2);
    w.U64(p != nullptr);
    if (!p) return;
    Fields(*p, *this);
    last_function = p.get();
  }
  template <typename T> void operator()(const T& v) { Fields(v, *this); }
  const PythonTask::Function* last_function = nullptr;
};

// Decodes through a Reader into the same layouts; a value out of its range fails the Reader.
struct In {
  Reader& r;
  void operator()(uint64_t& v) { v = r.U64(); }
  void operator()(uint32_t& v) { v = r.U32(); }
  void operator()(int64_t& v) { v = r.I64(); }
  void operator()(int32_t& v) {
    const int64_t wide = r.I64();
    if (wide < INT32_MIN || wide > INT32_MAX) return void(r.Fail());
    v = static_cast<int32_t>(wide);
  }
  void operator()(bool& v) { v = r.Bool(); }
  void operator()(double& v) { v = r.F64(); }
  void operator()(std::string& v) { v = r.Str(); }
  void operator()(ErrorCode& v) {
    uint64_t c = r.U64();
    if (c < 1 || c > static_cast<uint8_t>(ErrorCode::kDiskFull)) r.Fail();
    v = static_cast<ErrorCode>(c);
  }
  void operator()(Slots& v) {
    for (auto& s : v) s = r.U32();
  }
  void operator()(TaskCounts& v) { GetCounts(r, v); }
  void operator()(BrokerCounters& v) { GetCounts(r, v); }
  void operator()(TaskFilter& v) { (*this)(Below(v, uint64_t{kLastTaskFilter} + 1)); }
  void operator()(JobContext& v) { Get(r, v); }
  void operator()(LimitRequest::Op& v) {
    (*this)(Below(v, uint64_t{static_cast<uint8_t>(LimitRequest::Op::kRemove)} + 1));
  }
  void operator()(AllocRequest::Op& v) {
    (*this)(Below(v, uint64_t{static_cast<uint8_t>(AllocRequest::Op::kRemove)} + 1));
  }
  void operator()(AllocState& v) { (*this)(Below(v, kAllocStateCount)); }
  void operator()(TaskState& v) { (*this)(Below(v, kTaskStateCount)); }
  void operator()(std::optional<TaskStatus>& v) { Optional(v, kTaskStatusCount); }
  void operator()(std::optional<LockMode>& v) {
    Optional(v, uint64_t{static_cast<uint8_t>(LockMode::kWrite)} + 1);
  }
  void operator()(std::optional<uint32_t>& v) { Optional(v, uint64_t{UINT32_MAX} + 1); }
  template <typename T> void operator()(const Bounded<T>& b) {
    const uint64_t value = r.U64();
    if (value >= b.end) return void(r.Fail());
    b.v = static_cast<T>(value);
  }
  template <typename V> void operator()(const Counts<V>& c) {
    if (r.Count() != c.size) return void(r.Fail());
    c.v.assign(c.size, 0);
    for (auto& n : c.v) n = r.U64();
  }
  template <typename B> void operator()(const FlagPair<B>& p) {
    const uint64_t flags = r.U64();
    if (flags > 3) return void(r.Fail());
    p.low = flags & 1;
    p.high = flags & 2;
  }
  template <typename V> void operator()(const KindOf<V>& k) {
    const uint64_t kind = r.U64();
    if (kind >= std::variant_size_v<TaskBody>) return void(r.Fail());
    EmplaceIndex(k.body, static_cast<size_t>(kind),
                 std::make_index_sequence<std::variant_size_v<TaskBody>>{});
  }
  void operator()(TaskBody& body) {
    std::visit([&](auto& b) { std::decay_t<decltype(b)>::Fields(b, *this); }, body);
  }
  template <typename T> void operator()(std::vector<T>& v) {
    v.resize(r.Count());
    for (auto& item : v) {
      if (!r.ok()) return;
      (*this)(item);
    }
  }
  template <typename T> void operator()(std::optional<T>& v) {
    v.reset();
    if (r.Bool()) (*this)(v.emplace());
  }
  template <typename T> void operator()(std::shared_ptr<const T>& p) {
    if (!r.Bool()) return p.reset();
    auto value = std::make_shared<T>();
    (*this)(*value);
    p = std::move(value);
  }
  void operator()(std::shared_ptr<const PythonTask::Function>& p) {
    const uint64_t tag = r.U64();
    if (tag == 0) return p.reset();
    if (tag == 2 && last_function) return void(p = last_function);
    if (tag != 1) return void(r.Fail());
    auto value = std::make_shared<PythonTask::Function>();
    Fields(*value, *this);
    p = last_function = std::move(value);
  }
  template <typename T> void operator()(T& v) { Fields(v, *this); }
  std::shared_ptr<const PythonTask::Function> last_function;  // the one read last (tag 2)

 private:
  // 0 for none, else 1 + a value below `end`.
  template <typename T> void Optional(std::optional<T>& v, uint64_t end) {
    const uint64_t value = r.U64();
    if (value > end) return void(r.Fail());
    v = value == 0 ? std::nullopt : std::optional<T>(static_cast<T>(value - 1));
  }
};

void Fields(Is<SubmitRequest> auto& m, auto&& f) {
  f(m.tasks), f(m.context), f(m.key), f(m.parted), f(m.halt.now), f(m.halt.on_failure),
      f(m.halt.percent), f(m.halt.threshold);
}
void Fields(Is<GatherRequest> auto& m, auto&& f) { f(m.ids), f(m.stream); }
void Fields(Is<StatusRequest> auto& m, auto&& f) { f(m.metrics); }
void Fields(Is<EventsRequest> auto& m, auto&& f) { f(m.after), f(m.wait_ms), f(m.max); }
void Fields(Is<EventsReply> auto& m, auto&& f) { f(m.events), f(m.first), f(m.last), f(m.now); }
void Fields(Is<TasksRequest> auto& m, auto&& f) { f(m.job), f(m.filter), f(m.from), f(m.limit); }
void Fields(Is<TasksReply> auto& m, auto&& f) { f(m.tasks), f(m.size), f(m.next); }
void Fields(Is<CancelRequest> auto& m, auto&& f) { f(m.ids), f(m.running); }
void Fields(Is<ShutdownRequest> auto&, auto&&) {}
void Fields(Is<PingRequest> auto&, auto&&) {}
void Fields(Is<ForgetRequest> auto& m, auto&& f) { f(m.jobs); }
void Fields(Is<JobsRequest> auto& m, auto&& f) { f(m.jobs); }
void Fields(Is<RetryRequest> auto& m, auto&& f) { f(m.job), f(m.all); }
void Fields(Is<JobsReply> auto& m, auto&& f) { f(m.jobs); }
void Fields(Is<ScaleRequest> auto& m, auto&& f) { f(m.workers); }
void Fields(Is<ScaledReply> auto& m, auto&& f) { f(m.before), f(m.after); }
void Fields(Is<AllocRequest> auto& m, auto&& f) {
  f(m.op), f(m.name), f(m.spec), f(m.access_file), f(m.keep);
}
void Fields(Is<AllocReply> auto& m, auto&& f) { f(m.queues); }
void Fields(Is<LogsRequest> auto& m, auto&& f) {
  f(m.task), f(m.err), f(m.follow), f(m.rest), f(m.offset);
}
void Fields(Is<LogChunk> auto& m, auto&& f) {
  f(m.text), f(m.final), f(m.note), f(m.file), f(m.host), f(m.attempt);
}
void Fields(Is<OutputMessage> auto& m, auto&& f) {
  f(m.id), f(m.attempt), f(m.out_offset), f(m.out), f(m.err_offset), f(m.err);
}
void Fields(Is<WatchMessage> auto& m, auto&& f) { f(m.ids); }
void Fields(Is<ForgottenReply> auto& m, auto&& f) { f(m.count); }
void Fields(Is<GoodbyeMessage> auto&, auto&&) {}
void Fields(Is<ReregisterMessage> auto&, auto&&) {}
void Fields(Is<ReloadAccessRequest> auto&, auto&&) {}
void Fields(Is<ReloadedReply> auto& m, auto&& f) { f(m.keys), f(m.dropped); }
void Fields(Is<SubmittedReply> auto& m, auto&& f) { f(m.job), f(m.count), f(m.existing); }
void Fields(Is<ResultsReply> auto& m, auto&& f) { f(m.outcomes), f(m.final), f(m.sizes); }
void Fields(Is<StatusReply> auto& m, auto&& f) {
  f(m.broker_pid), f(m.endpoints), f(m.workers), f(m.tasks), f(m.jobs), f(m.counters), f(m.limits),
      f(m.locks), f(m.journal_problem), f(m.metrics), f(m.allocs);
}
void Fields(Is<LimitRequest> auto& m, auto&& f) { f(m.op), f(m.limit); }
void Fields(Is<LimitsReply> auto& m, auto&& f) { f(m.limits); }
void Fields(Is<ExplainRequest> auto& m, auto&& f) { f(m.task); }
void Fields(Is<ResultsAck> auto&, auto&&) {}
void Fields(Is<SubmitPartRequest> auto& m, auto&& f) { f(m.tasks); }
void Fields(Is<DropOutputMessage> auto& m, auto&& f) { f(m.attempts); }
void Fields(Is<ReadOutputMessage> auto& m, auto&& f) {
  f(m.fetch), f(m.attempt), f(m.err), f(m.offset);
}
void Fields(Is<OutputPieceMessage> auto& m, auto&& f) {
  f(m.fetch), f(m.found), f(m.end), f(m.text);
}
void Fields(Is<ExplainedReply> auto& m, auto&& f) {
  f(m.state), f(m.status), f(m.reasons), f(m.eligible_in);
}
void Fields(Is<CancelledReply> auto& m, auto&& f) { f(m.count); }
void Fields(Is<ErrorReply> auto& m, auto&& f) { f(m.code), f(m.message); }
void Fields(Is<PongReply> auto& m, auto&& f) { f(m.broker_pid); }
void Fields(Is<ShutdownAck> auto&, auto&&) {}
void Fields(Is<ReadyMessage> auto& m, auto&& f) {
  f(m.pid), f(m.threads), f(m.slots), f(m.running), f(m.host), f(m.resources), f(m.queues),
      f(m.allocation), f(m.lifetime_ms);
}
void Fields(Is<WorkerResultsMessage> auto& m, auto&& f) { f(m.outcomes); }
void Fields(Is<HeartbeatMessage> auto&, auto&&) {}
void Fields(Is<TasksMessage> auto& m, auto&& f) { f(m.tasks); }
void Fields(Is<CancelTasksMessage> auto& m, auto&& f) { f(m.ids); }
void Fields(Is<BrokerHeartbeatMessage> auto&, auto&&) {}
void Fields(Is<StopMessage> auto& m, auto&& f) { f(m.grace_ms); }

Error Undecodable(std::string why) { return {ErrorCode::kBadRequest, std::move(why)}; }

// Decodes body into alternative I of Message when its command matches.
template <size_t I = 0> Expected<Message> DecodeAs(Command command, std::string_view body) {
  if constexpr (I == std::variant_size_v<Message>) {
    return Undecodable("unknown command " + std::to_string(static_cast<int>(command)));
  } else {
    using T = std::variant_alternative_t<I, Message>;
    if (T::kCommand != command) return DecodeAs<I + 1>(command, body);
    T message;
    Reader r(body);
    Fields(message, In{r});
    if (!r.ok()) return Undecodable("truncated or malformed body");
    if (!r.AtEnd()) return Undecodable("trailing bytes after the body");
    return Message(std::move(message));
  }
}

}  // namespace

namespace {
template <typename T> std::optional<std::vector<T>> DecodeBlob(std::string_view bytes) {
  Reader r(bytes);
  std::vector<T> items;
  In{r}(items);
  if (!r.ok() || !r.AtEnd()) return std::nullopt;
  return items;
}
}  // namespace

std::string EncodeSpecs(std::span<const TaskSpec> specs) {
  // Sized up front: a job's blob can be tens of megabytes, and doubling a string to get there
  // costs twice that at the peak.
  size_t bytes = 10;
  for (const TaskSpec& s : specs) {
    bytes += 64;  // the shared fields, at most
    if (const Needs* n = s.needs.get()) {
      bytes += 64 + n->name.size() + n->queue.size() + 30 * n->after.size();
      for (const auto& r : n->resources) bytes += 20 + r.name.size();
      for (const auto& l : n->limits) bytes += 10 + l.size();
      for (const auto& l : n->locks) bytes += 20 + l.name.size();
    }
    std::visit(
        [&](const auto& body) { std::decay_t<decltype(body)>::Fields(body, BodySize{bytes}); },
        s.body);
  }
  Writer w;
  w.Reserve(bytes);
  w.U64(specs.size());  // as a vector is written
  Out out{w};           // one for the window: a function its python tasks share is written once
  for (const TaskSpec& s : specs) out(s);
  return w.Take();
}
std::optional<std::vector<TaskSpec>> DecodeSpecs(std::string_view bytes) {
  return DecodeBlob<TaskSpec>(bytes);
}
std::optional<std::pair<size_t, TaskSpec>> DecodeFirstSpec(std::string_view bytes) {
  Reader r(bytes);
  std::pair<size_t, TaskSpec> first{r.Count(), TaskSpec{}};
  if (first.first > 0) In{r}(first.second);
  if (!r.ok()) return std::nullopt;
  return first;
}
namespace {
template <typename T> std::string EncodeOne(const T& value) {
  Writer w;
  Out{w}(value);
  return w.Take();
}
template <typename T> std::optional<T> DecodeOne(std::string_view bytes) {
  Reader r(bytes);
  T value;
  In{r}(value);
  if (!r.ok() || !r.AtEnd()) return std::nullopt;
  return value;
}
}  // namespace

std::string EncodeOutcome(const TaskOutcome& outcome) { return EncodeOne(outcome); }
std::optional<TaskOutcome> DecodeOutcome(std::string_view bytes) {
  return DecodeOne<TaskOutcome>(bytes);
}
std::string EncodeAllocQueue(const AllocQueueInfo& queue) { return EncodeOne(queue); }
std::optional<AllocQueueInfo> DecodeAllocQueue(std::string_view bytes) {
  return DecodeOne<AllocQueueInfo>(bytes);
}
std::string EncodeContext(const JobContext& context) { return EncodeOne(context); }
std::optional<JobContext> DecodeContext(std::string_view bytes) {
  return DecodeOne<JobContext>(bytes);
}

namespace {
// What a message's body will take, when outcomes (a task's output: megabytes) make it large: the
// writer is sized up front, so the output is copied once, not once per doubling.
template <typename T> size_t BodyBytesHint(const T&) { return 0; }
template <typename T>
requires requires(const T& m) { m.outcomes.front(); }
size_t BodyBytesHint(const T& m) {
  size_t bytes = 64;
  for (const TaskOutcome& o : m.outcomes) bytes += ApproxWireBytes(o);
  return bytes;
}
}  // namespace

EncodedMessage Encode(const Message& message) {
  return std::visit(
      [](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        Writer w;
        w.Reserve(BodyBytesHint(m));
        Fields(m, Out{w});
        return EncodedMessage{T::kCommand, w.Take()};
      },
      message);
}

Expected<Message> Decode(std::string_view version, std::string_view command,
                         std::string_view body) {
  if (version != kProtocolVersion) return Undecodable("wrong protocol version frame");
  if (command.size() != 1) return Undecodable("command frame must be one byte");
  return DecodeAs(static_cast<Command>(static_cast<uint8_t>(command[0])), body);
}

size_t ApproxWireBytes(const TaskSpec& spec) {
  size_t n = 64;
  if (const auto* shell = std::get_if<ShellTask>(&spec.body)) {
    for (const std::string& arg : shell->argv) n += arg.size() + 5;
    if (shell->place) {
      n += shell->place->cwd.size();
      for (const std::string& e : shell->place->env) n += e.size() + 5;
    }
  } else if (const auto* echo = std::get_if<EchoTask>(&spec.body)) {
    n += echo->value.size();
  } else if (const auto* sleep = std::get_if<SleepTask>(&spec.body)) {
    n += sleep->result.size();
  } else if (const auto* python = std::get_if<PythonTask>(&spec.body)) {
    const PythonTask::Function& fn = python->function();
    n += fn.pickled.size() + python->args.size() + fn.name.size() + fn.python.size() + 20;
  }
  if (spec.needs) {
    const Needs& need = *spec.needs;
    n += need.name.size() + need.queue.size() + need.after.size() * 16;
    for (const auto& r : need.resources) n += r.name.size() + 10;
    for (const auto& l : need.limits) n += l.size() + 5;
    for (const auto& l : need.locks) n += l.name.size() + 6;
  }
  return n;
}

size_t ApproxWireBytes(const TaskOutcome& outcome) {
  size_t n = 64 + outcome.result.size() + outcome.error.size() + outcome.last_error.size();
  if (const auto& shell = outcome.shell) {
    n += shell->stdout_text.size() + shell->stderr_text.size();
    if (const auto& more = shell->more) {
      n += more->stdout_file.size() + more->stderr_file.size() + more->host.size() + 15;
      for (const std::string& arg : more->argv) n += arg.size() + 5;
    }
  }
  return n;
}

}  // namespace orq

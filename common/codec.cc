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

template <typename T> void PutVector(Writer& w, const std::vector<T>& v);
template <typename T> void GetVector(Reader& r, std::vector<T>& v);
void Put(Writer& w, const std::string& s);
void Get(Reader& r, std::string& s);

void Put(Writer& w, const TaskId& id) {
  w.U64(id.job);
  w.U64(id.index);
}
void Get(Reader& r, TaskId& id) {
  id.job = r.U64();
  id.index = r.U32();
}

// A kind's own fields (TaskBody's structs list them in Fields()): numbers, strings, string lists.
// (A shell task's Place: a flag, then its cwd and env.)
struct BodyOut {
  Writer& w;
  void operator()(const double& v) { w.F64(v); }
  void operator()(const std::string& v) { w.Str(v); }
  void operator()(const std::vector<std::string>& v) {
    w.U64(v.size());
    for (const auto& s : v) w.Str(s);
  }
  void operator()(const std::shared_ptr<const ShellTask::Place>& p) {
    w.U64(p != nullptr);
    if (!p) return;
    w.Str(p->cwd);
    (*this)(p->env);
  }
};
struct BodyIn {
  Reader& r;
  void operator()(double& v) { v = r.F64(); }
  void operator()(std::string& v) { v = r.Str(); }
  void operator()(std::vector<std::string>& v) {
    v.resize(r.Count());
    for (auto& s : v) s = r.Str();
  }
  void operator()(std::shared_ptr<const ShellTask::Place>& p) {
    if (!r.Bool()) return p.reset();
    auto place = std::make_shared<ShellTask::Place>();
    place->cwd = r.Str();
    (*this)(place->env);
    p = std::move(place);
  }
};

// An upper bound of what BodyOut writes.
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
};

// Makes alternative `index` of the variant the current one (default-constructed).
template <typename V, size_t... I>
void EmplaceIndex(V& v, size_t index, std::index_sequence<I...>) {
  ((index == I ? (void)v.template emplace<I>() : (void)0), ...);
}

void Put(Writer& w, const ResourceNeed& n) {
  w.Str(n.name);
  w.U64(n.amount);
}
void Get(Reader& r, ResourceNeed& n) {
  n.name = r.Str();
  n.amount = r.U32();
}

// A spec's Needs: a flag, then each field.
void Put(Writer& w, const std::shared_ptr<const Needs>& p) {
  w.U64(p != nullptr);
  if (!p) return;
  const Needs& n = *p;
  w.Str(n.name);
  w.U64(n.after.size());
  for (const Dependency& d : n.after) {
    w.U64(d.job);
    w.U64(d.index);
    w.U64(uint64_t{d.whole_job} | uint64_t{d.any} << 1);
  }
  w.U64(n.cpus);
  PutVector(w, n.resources);
  w.Str(n.queue);
  w.U64(n.limits.size());
  for (const std::string& l : n.limits) w.Str(l);
  w.U64(n.locks.size());
  for (const LockNeed& l : n.locks) {
    w.Str(l.name);
    w.U64(static_cast<uint8_t>(l.mode));
  }
  w.U64(n.time_request);
}
void Get(Reader& r, std::shared_ptr<const Needs>& p) {
  if (!r.Bool()) return p.reset();
  auto n = std::make_shared<Needs>();
  n->name = r.Str();
  n->after.resize(r.Count(3));
  for (Dependency& d : n->after) {
    d.job = r.U64();
    d.index = r.U32();
    const uint64_t flags = r.U64();
    if (flags > 3) return void(r.Fail());
    d.whole_job = flags & 1;
    d.any = flags & 2;
  }
  n->cpus = r.U32();
  GetVector(r, n->resources);
  n->queue = r.Str();
  n->limits.resize(r.Count());
  for (std::string& l : n->limits) l = r.Str();
  n->locks.resize(r.Count(2));
  for (LockNeed& l : n->locks) {
    l.name = r.Str();
    const uint64_t mode = r.U64();
    if (mode > static_cast<uint8_t>(LockMode::kWrite)) return void(r.Fail());
    l.mode = static_cast<LockMode>(mode);
  }
  n->time_request = r.U32();
  p = std::move(n);
}

// A spec: its kind (TaskBody's index), the fields every kind shares, then the kind's own.
void Put(Writer& w, const TaskSpec& s) {
  w.U64(s.body.index());
  w.F64(s.delay);
  w.F64(s.timeout);
  w.I64(s.priority);
  w.U64(s.attempts);
  w.U64(s.retries);
  w.F64(s.backoff_base);
  w.F64(s.backoff_max);
  Put(w, s.needs);
  std::visit([&](const auto& body) { std::decay_t<decltype(body)>::Fields(body, BodyOut{w}); },
             s.body);
}
void Get(Reader& r, TaskSpec& s) {
  const uint64_t kind = r.U64();
  if (kind >= std::variant_size_v<TaskBody>) return void(r.Fail());
  EmplaceIndex(s.body, static_cast<size_t>(kind),
               std::make_index_sequence<std::variant_size_v<TaskBody>>{});
  s.delay = r.F64();
  s.timeout = r.F64();
  int64_t priority = r.I64();
  if (priority < INT32_MIN || priority > INT32_MAX) return void(r.Fail());
  s.priority = static_cast<int32_t>(priority);
  s.attempts = r.U32();
  s.retries = r.U32();
  s.backoff_base = r.F64();
  s.backoff_max = r.F64();
  Get(r, s.needs);
  std::visit([&](auto& body) { std::decay_t<decltype(body)>::Fields(body, BodyIn{r}); }, s.body);
}

void Put(Writer& w, const TaskOutcome& o) {
  Put(w, o.id);
  w.U64(static_cast<uint8_t>(o.status));
  w.U64(o.attempt);
  w.I64(o.worker_pid);
  w.F64(o.started);
  w.F64(o.finished);
  w.Str(o.result);
  w.Str(o.error);
  w.Str(o.last_error);
  w.U64(o.shell.has_value());
  if (o.shell) {
    w.I64(o.shell->exit_code);
    w.Str(o.shell->stdout_text);
    w.Str(o.shell->stderr_text);
    w.U64(o.shell->truncated);
    const auto& more = o.shell->more;
    w.U64(more != nullptr);
    if (more) {
      w.Str(more->stdout_file);
      w.Str(more->stderr_file);
      w.Str(more->host);
      w.Str(more->key);
      w.U64(more->argv.size());
      for (const auto& a : more->argv) w.Str(a);
    }
  }
}
void Get(Reader& r, TaskOutcome& o) {
  Get(r, o.id);
  uint64_t status = r.U64();
  if (status > static_cast<uint8_t>(TaskStatus::kDependencyFailed)) return void(r.Fail());
  o.status = static_cast<TaskStatus>(status);
  o.attempt = r.U32();
  o.worker_pid = r.I64();
  o.started = r.F64();
  o.finished = r.F64();
  o.result = r.Str();
  o.error = r.Str();
  o.last_error = r.Str();
  if (r.Bool()) {
    ShellOutput& shell = o.shell.emplace();
    int64_t code = r.I64();
    if (code < INT32_MIN || code > INT32_MAX) return void(r.Fail());
    shell.exit_code = static_cast<int32_t>(code);
    shell.stdout_text = r.Str();
    shell.stderr_text = r.Str();
    shell.truncated = r.Bool();
    if (r.Bool()) {
      auto more = std::make_shared<ShellOutput::More>();
      more->stdout_file = r.Str();
      more->stderr_file = r.Str();
      more->host = r.Str();
      more->key = r.Str();
      more->argv.resize(r.Count());
      for (auto& a : more->argv) a = r.Str();
      shell.more = std::move(more);
    }
  }
}

void Put(Writer& w, const Lease& l) {
  Put(w, l.id);
  w.U64(l.attempt);
}
void Get(Reader& r, Lease& l) {
  Get(r, l.id);
  l.attempt = r.U32();
}

// Flags: bit 0 an environment follows, bit 1 the named variables follow (journals written
// before bit 1 existed hold 0 or 1, and read the same).
void Put(Writer& w, const JobContext& c) {
  w.Str(c.cwd);
  w.U64(uint64_t{c.env.has_value()} | uint64_t{c.named.has_value()} << 1);
  if (c.env) {
    w.U64(c.env->size());
    for (const auto& e : *c.env) w.Str(e);
  }
  if (c.named) {
    w.U64(c.named->size());
    for (const auto& n : *c.named) w.Str(n);
  }
}
void Get(Reader& r, JobContext& c) {
  c.cwd = r.Str();
  const uint64_t flags = r.U64();
  if (flags > 3) return void(r.Fail());
  if (flags & 1) {
    auto& env = c.env.emplace();
    env.resize(r.Count());
    for (auto& e : env) e = r.Str();
  }
  if (flags & 2) {
    auto& named = c.named.emplace();
    named.resize(r.Count());
    for (auto& n : named) n = r.Str();
  }
}

void Put(Writer& w, const Assignment& a) {
  Put(w, a.id);
  w.U64(a.attempt);
  Put(w, a.spec);
  w.U64(a.context != nullptr);
  if (a.context) Put(w, *a.context);
  w.U64(a.env.size());
  for (const auto& e : a.env) w.Str(e);
}
void Get(Reader& r, Assignment& a) {
  Get(r, a.id);
  a.attempt = r.U32();
  Get(r, a.spec);
  if (r.Bool()) {
    auto context = std::make_shared<JobContext>();
    Get(r, *context);
    a.context = std::move(context);
  }
  a.env.resize(r.Count());
  for (auto& e : a.env) e = r.Str();
}

void Put(Writer& w, const JobInfo& i) {
  w.U64(i.job);
  w.F64(i.age);
  for (uint32_t v :
       {i.tasks, i.waiting, i.queued, i.delayed, i.running, i.ok, i.failed, i.cancelled})
    w.U64(v);
  w.F64(i.finished_age);
  w.Str(i.label);
}
void Get(Reader& r, JobInfo& i) {
  i.job = r.U64();
  i.age = r.F64();
  for (uint32_t* v :
       {&i.tasks, &i.waiting, &i.queued, &i.delayed, &i.running, &i.ok, &i.failed, &i.cancelled})
    *v = r.U32();
  i.finished_age = r.F64();
  i.label = r.Str();
}

void Put(Writer& w, const LimitSpec& l) {
  w.Str(l.name);
  w.U64(l.max);
  w.F64(l.rate);
  w.U64(l.burst);
}
void Get(Reader& r, LimitSpec& l) {
  l.name = r.Str();
  l.max = r.U32();
  l.rate = r.F64();
  l.burst = r.U32();
}

void Put(Writer& w, const GateInfo& g);
void Get(Reader& r, GateInfo& g);
void Put(Writer& w, const Reason& x);
void Get(Reader& r, Reason& x);

void Put(Writer& w, const WorkerInfo& i) {
  w.I64(i.pid);
  w.Str(i.host);
  w.U64(i.remote);
  w.U64(i.threads);
  w.U64(i.running);
  for (uint32_t s : i.slots) w.U64(s);
  PutVector(w, i.resources);
  PutVector(w, i.queues);
  w.F64(i.last_heard);
  w.U64(i.done);
  w.U64(i.failed);
  w.Str(i.allocation);
  w.F64(i.ends_in);
}
void Get(Reader& r, WorkerInfo& i) {
  i.pid = r.I64();
  i.host = r.Str();
  i.remote = r.Bool();
  i.threads = r.U32();
  i.running = r.U32();
  for (uint32_t& s : i.slots) s = r.U32();
  GetVector(r, i.resources);
  GetVector(r, i.queues);
  i.last_heard = r.F64();
  i.done = r.U64();
  i.failed = r.U64();
  i.allocation = r.Str();
  i.ends_in = r.F64();
}

// Allocation queues (their layouts with the messages' below).
void Put(Writer& w, const AllocQueueSpec& q);
void Get(Reader& r, AllocQueueSpec& q);
void Put(Writer& w, const AllocationInfo& a);
void Get(Reader& r, AllocationInfo& a);
void Put(Writer& w, const AllocQueueInfo& q);
void Get(Reader& r, AllocQueueInfo& q);

// A vector of counts that must have `size` of them (a histogram's buckets, counts by kind).
void PutCountVector(Writer& w, const std::vector<uint64_t>& v) {
  w.U64(v.size());
  for (uint64_t c : v) w.U64(c);
}
void GetCountVector(Reader& r, std::vector<uint64_t>& v, size_t size) {
  if (r.Count() != size) return void(r.Fail());
  v.assign(size, 0);
  for (uint64_t& c : v) c = r.U64();
}
void Put(Writer& w, const Histogram& h) {
  PutCountVector(w, h.counts);
  w.F64(h.sum);
}
void Get(Reader& r, Histogram& h) {
  GetCountVector(r, h.counts, kLatencyBuckets.size() + 1);
  h.sum = r.F64();
}
void Put(Writer& w, const Metrics& m) {
  PutCountVector(w, m.submitted);
  PutCountVector(w, m.finished);
  for (const Histogram* h : {&m.dispatch, &m.end_to_end, &m.commit}) Put(w, *h);
  w.U64(m.journal_bytes);
  w.U64(m.events);
  w.U64(m.jobs_submitted);
}
void Get(Reader& r, Metrics& m) {
  GetCountVector(r, m.submitted, kTaskKindCount);
  GetCountVector(r, m.finished, kTaskKindCount * kTaskStatusCount);
  for (Histogram* h : {&m.dispatch, &m.end_to_end, &m.commit}) Get(r, *h);
  m.journal_bytes = r.U64();
  m.events = r.U64();
  m.jobs_submitted = r.U64();
}

void Put(Writer& w, const IdRef& id);
void Get(Reader& r, IdRef& id);

void Put(Writer& w, const Event& e) {
  w.U64(e.seq);
  w.F64(e.at);
  w.U64(static_cast<uint8_t>(e.kind));
  Put(w, e.task);
  w.U64(e.count);
  w.I64(e.worker);
  w.U64(static_cast<uint8_t>(e.status));
  w.U64(e.task_kind);
  w.Str(e.host);
}
void Get(Reader& r, Event& e) {
  e.seq = r.U64();
  e.at = r.F64();
  const uint64_t kind = r.U64();
  if (kind > Event::kLastKind) return void(r.Fail());
  e.kind = static_cast<Event::Kind>(kind);
  Get(r, e.task);
  e.count = r.U32();
  e.worker = r.I64();
  const uint64_t status = r.U64();
  if (status >= kTaskStatusCount) return void(r.Fail());
  e.status = static_cast<TaskStatus>(status);
  const uint64_t task_kind = r.U64();
  if (task_kind >= kTaskKindCount) return void(r.Fail());
  e.task_kind = static_cast<uint8_t>(task_kind);
  e.host = r.Str();
}

void Put(Writer& w, const TaskRow& t);
void Get(Reader& r, TaskRow& t);

// Named counts (TaskCounts, BrokerCounters) travel as their values in ForEach order.
template <typename T> void PutCounts(Writer& w, const T& counts) {
  T::ForEach(counts, [&](const char*, uint64_t v) { w.U64(v); });
}
template <typename T> void GetCounts(Reader& r, T& counts) {
  T::ForEach(counts, [&](const char*, uint64_t& v) { v = r.U64(); });
}

void Put(Writer& w, const std::string& s) { w.Str(s); }
void Get(Reader& r, std::string& s) { s = r.Str(); }
void Put(Writer& w, uint32_t v) { w.U64(v); }
void Get(Reader& r, uint32_t& v) { v = r.U32(); }
void Put(Writer& w, uint64_t v) { w.U64(v); }
void Get(Reader& r, uint64_t& v) { v = r.U64(); }
// A job (index 0) or one task of it (its index + 1).
void Put(Writer& w, const IdRef& id) {
  w.U64(id.job);
  w.U64(id.index ? uint64_t{*id.index} + 1 : 0);
}
void Get(Reader& r, IdRef& id) {
  id.job = r.U64();
  const uint64_t index = r.U64();
  if (index > uint64_t{UINT32_MAX} + 1) return void(r.Fail());
  id.index = index == 0 ? std::nullopt : std::optional<uint32_t>(index - 1);
}

template <typename T> void PutVector(Writer& w, const std::vector<T>& v) {
  w.U64(v.size());
  for (const auto& item : v) Put(w, item);
}
template <typename T> void GetVector(Reader& r, std::vector<T>& v) {
  v.resize(r.Count());
  for (auto& item : v) {
    if (!r.ok()) return;
    Get(r, item);
  }
}

void Put(Writer& w, const Reason& x) {
  w.U64(static_cast<uint8_t>(x.kind));
  w.Str(x.name);
  Put(w, x.id);
  w.U64(static_cast<uint8_t>(x.state));
  PutVector(w, x.holders);
  w.U64(x.count);
  w.U64(x.max);
  w.F64(x.seconds);
  w.F64(x.rate);
  w.I64(x.pid);
  w.U64(x.any);
  w.U64(static_cast<uint8_t>(x.mode));
}
void Get(Reader& r, Reason& x) {
  const uint64_t kind = r.U64();
  if (kind > Reason::kLastKind) return void(r.Fail());
  x.kind = static_cast<Reason::Kind>(kind);
  x.name = r.Str();
  Get(r, x.id);
  const uint64_t state = r.U64();
  if (state >= kTaskStateCount) return void(r.Fail());
  x.state = static_cast<TaskState>(state);
  GetVector(r, x.holders);
  x.count = r.U64();
  x.max = r.U64();
  x.seconds = r.F64();
  x.rate = r.F64();
  x.pid = r.I64();
  x.any = r.Bool();
  const uint64_t mode = r.U64();
  if (mode > static_cast<uint8_t>(LockMode::kWrite)) return void(r.Fail());
  x.mode = static_cast<LockMode>(mode);
}

void Put(Writer& w, const GateInfo& g) {
  w.Str(g.name);
  Put(w, g.limit);
  w.U64(g.mode ? 1 + static_cast<uint8_t>(*g.mode) : 0);  // 0: free
  PutVector(w, g.holders);
  w.U64(g.held);
  w.U64(g.waiting);
}
void Get(Reader& r, GateInfo& g) {
  g.name = r.Str();
  Get(r, g.limit);
  const uint64_t mode = r.U64();
  if (mode > 1 + static_cast<uint8_t>(LockMode::kWrite)) return void(r.Fail());
  if (mode > 0) g.mode = static_cast<LockMode>(mode - 1);
  GetVector(r, g.holders);
  g.held = r.U32();
  g.waiting = r.U32();
}

void Put(Writer& w, const TaskRow& t) {
  w.U64(t.index);
  w.U64(static_cast<uint8_t>(t.state));
  w.U64(t.status ? 1 + static_cast<uint8_t>(*t.status) : 0);
  w.U64(t.attempt);
  w.I64(t.worker);
  w.F64(t.started);
  w.F64(t.finished);
  w.Str(t.label);
  PutVector(w, t.after);
  w.Str(t.error);
}
void Get(Reader& r, TaskRow& t) {
  t.index = r.U32();
  const uint64_t state = r.U64();
  if (state >= kTaskStateCount) return void(r.Fail());
  t.state = static_cast<TaskState>(state);
  const uint64_t status = r.U64();
  if (status > kTaskStatusCount) return void(r.Fail());
  t.status = status == 0 ? std::nullopt : std::optional(static_cast<TaskStatus>(status - 1));
  t.attempt = r.U32();
  t.worker = r.I64();
  t.started = r.F64();
  t.finished = r.F64();
  t.label = r.Str();
  GetVector(r, t.after);
  t.error = r.Str();
}

// Whether T is U, const or not: Fields(Is<SubmitRequest> auto& m, ...) takes a const message to
// encode and a mutable one to decode into.
template <typename T, typename U>
concept Is = std::same_as<std::remove_const_t<T>, U>;
// A message with no layout below: one clear line instead of pages of template errors.
template <typename T> void Fields(T&, auto&&) {
  static_assert(sizeof(T) == 0, "a message needs its Fields() in common/codec.cc");
}

// Each message's body layout, written once for both directions: Fields(message, f) calls f on each
// field in wire order, and f is Out (encode through a Writer) or In (decode through a Reader).
// The command code is the message's own kCommand (common/protocol.h).
struct Out {
  Writer& w;
  void operator()(const uint64_t& v) { w.U64(v); }
  void operator()(const uint32_t& v) { w.U64(v); }
  void operator()(const int64_t& v) { w.I64(v); }
  void operator()(const bool& v) { w.U64(v); }
  void operator()(const double& v) { w.F64(v); }
  void operator()(const std::string& v) { w.Str(v); }
  void operator()(const ErrorCode& v) { w.U64(static_cast<uint8_t>(v)); }
  void operator()(const Slots& v) {
    for (uint32_t s : v) w.U64(s);
  }
  void operator()(const TaskCounts& v) { PutCounts(w, v); }
  void operator()(const BrokerCounters& v) { PutCounts(w, v); }
  void operator()(const std::optional<Metrics>& v) {
    w.U64(v.has_value());
    if (v) Put(w, *v);
  }
  void operator()(const TaskFilter& v) { w.U64(static_cast<uint8_t>(v)); }
  void operator()(const JobContext& v) { Put(w, v); }
  void operator()(const TaskId& v) { Put(w, v); }
  void operator()(const Lease& v) { Put(w, v); }
  void operator()(const LimitSpec& v) { Put(w, v); }
  void operator()(const LimitRequest::Op& v) { w.U64(static_cast<uint8_t>(v)); }
  void operator()(const AllocRequest::Op& v) { w.U64(static_cast<uint8_t>(v)); }
  void operator()(const AllocState& v) { w.U64(static_cast<uint8_t>(v)); }
  void operator()(const AllocQueueSpec& v) { Put(w, v); }
  void operator()(const TaskState& v) { w.U64(static_cast<uint8_t>(v)); }
  void operator()(const std::optional<TaskStatus>& v) {  // 0: none
    w.U64(v ? 1 + static_cast<uint8_t>(*v) : 0);
  }
  template <typename T> void operator()(const std::vector<T>& v) { PutVector(w, v); }
};
struct In {
  Reader& r;
  void operator()(uint64_t& v) { v = r.U64(); }
  void operator()(uint32_t& v) { v = r.U32(); }
  void operator()(int64_t& v) { v = r.I64(); }
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
  void operator()(std::optional<Metrics>& v) {
    v.reset();
    if (r.Bool()) Get(r, v.emplace());
  }
  void operator()(TaskFilter& v) {
    const uint64_t filter = r.U64();
    if (filter > kLastTaskFilter) return void(r.Fail());
    v = static_cast<TaskFilter>(filter);
  }
  void operator()(JobContext& v) { Get(r, v); }
  void operator()(TaskId& v) { Get(r, v); }
  void operator()(Lease& v) { Get(r, v); }
  void operator()(LimitSpec& v) { Get(r, v); }
  void operator()(LimitRequest::Op& v) {
    const uint64_t op = r.U64();
    if (op > static_cast<uint8_t>(LimitRequest::Op::kRemove)) r.Fail();
    v = static_cast<LimitRequest::Op>(op);
  }
  void operator()(AllocRequest::Op& v) {
    const uint64_t op = r.U64();
    if (op > static_cast<uint8_t>(AllocRequest::Op::kRemove)) r.Fail();
    v = static_cast<AllocRequest::Op>(op);
  }
  void operator()(AllocState& v) {
    const uint64_t state = r.U64();
    if (state >= kAllocStateCount) return void(r.Fail());
    v = static_cast<AllocState>(state);
  }
  void operator()(AllocQueueSpec& v) { Get(r, v); }
  void operator()(TaskState& v) {
    const uint64_t state = r.U64();
    if (state >= kTaskStateCount) return void(r.Fail());
    v = static_cast<TaskState>(state);
  }
  void operator()(std::optional<TaskStatus>& v) {
    const uint64_t status = r.U64();
    if (status > 1 + static_cast<uint8_t>(TaskStatus::kDependencyFailed)) return void(r.Fail());
    v = status == 0 ? std::nullopt : std::optional(static_cast<TaskStatus>(status - 1));
  }
  template <typename T> void operator()(std::vector<T>& v) { GetVector(r, v); }
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
void Put(Writer& w, const AllocQueueSpec& q) { Fields(q, Out{w}); }
void Get(Reader& r, AllocQueueSpec& q) { Fields(q, In{r}); }
void Put(Writer& w, const AllocationInfo& a) { Fields(a, Out{w}); }
void Get(Reader& r, AllocationInfo& a) { Fields(a, In{r}); }
void Put(Writer& w, const AllocQueueInfo& q) { Fields(q, Out{w}); }
void Get(Reader& r, AllocQueueInfo& q) { Fields(q, In{r}); }
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
  GetVector(r, items);
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
  w.U64(specs.size());  // as PutVector writes a vector
  for (const TaskSpec& s : specs) Put(w, s);
  return w.Take();
}
std::optional<std::vector<TaskSpec>> DecodeSpecs(std::string_view bytes) {
  return DecodeBlob<TaskSpec>(bytes);
}
std::optional<std::pair<size_t, TaskSpec>> DecodeFirstSpec(std::string_view bytes) {
  Reader r(bytes);
  std::pair<size_t, TaskSpec> first{r.Count(), TaskSpec{}};
  if (first.first > 0) Get(r, first.second);
  if (!r.ok()) return std::nullopt;
  return first;
}
namespace {
template <typename T> std::string EncodeOne(const T& value) {
  Writer w;
  Put(w, value);
  return w.Take();
}
template <typename T> std::optional<T> DecodeOne(std::string_view bytes) {
  Reader r(bytes);
  T value;
  Get(r, value);
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

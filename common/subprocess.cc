// The loop half of common/process.h: Subprocess, a shell task's child on the worker's Asio loop.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/process.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/posix.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <optional>
#include <unordered_map>
#include <utility>  // before Asio under C++20 with Boost 1.74

#include "common/process.h"

namespace bp = boost::process;
namespace asio = boost::asio;

namespace orq {

struct Subprocess::Impl {
  explicit Impl(asio::io_context& loop)
      : out_pipe(loop), err_pipe(loop), kill_timer(loop), timeout_timer(loop) {}
  std::optional<bp::async_pipe> in_pipe;  // options.stdin_pipe
  std::deque<std::string> writes;         // to in_pipe, the front one being written
  bp::async_pipe out_pipe;
  bp::async_pipe err_pipe;
  asio::steady_timer kill_timer;     // the grace between TERM and KILL
  asio::steady_timer timeout_timer;  // options.timeout
  SubprocessOptions options;
  bool timed_out = false;
  int open_streams = 2;
  char out_buf[8192];
  char err_buf[8192];
  SubprocessResult result{Exited{0}, {}, {}, false};
  Done done;
};

Subprocess::Subprocess(asio::io_context& loop) : impl_(std::make_unique<Impl>(loop)) {}

Subprocess::~Subprocess() {
  // Never leave a child behind: kill the group and reap the leader.
  if (pid_ > 0 && !reaped_) {
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

namespace {

// One stream being read: what is kept in memory, and where the rest goes.
struct Stream {
  std::string& text;
  bool& truncated;
  size_t limit;
  std::string spill_path;                      // empty: the rest is dropped
  std::string& spilled;                        // spill_path once something was written there
  std::function<void(std::string_view)> sink;  // set: every byte goes here instead
  int fd = -1;                                 // the spill file, opened on its first byte
  ~Stream() {
    if (fd >= 0) ::close(fd);
  }
  void Add(const char* data, size_t n) {
    if (sink) return sink(std::string_view(data, n));
    const size_t keep = text.size() < limit ? std::min(n, limit - text.size()) : 0;
    text.append(data, keep);
    if (keep == n) return;
    truncated = true;
    if (spill_path.empty()) return;
    if (fd < 0) {
      fd = OpenBeneath(spill_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd < 0) return void(spill_path.clear());  // nowhere to put it: dropped
      spilled = spill_path;
    }
    for (size_t done = keep; done < n;) {
      const ssize_t w = ::write(fd, data + done, n - done);
      if (w <= 0) return;  // a full disk drops the rest rather than stop the task
      done += static_cast<size_t>(w);
    }
  }
};

// Reads one stream to its end.
void ReadStream(std::shared_ptr<Subprocess> self, bp::async_pipe& pipe, char* buf, size_t size,
                std::shared_ptr<Stream> stream, std::function<void()> closed) {
  pipe.async_read_some(asio::buffer(buf, size), [self, &pipe, buf, size, stream, closed](
                                                    const boost::system::error_code& ec, size_t n) {
    if (n > 0) stream->Add(buf, n);
    if (ec) return closed();
    ReadStream(self, pipe, buf, size, stream, closed);
  });
}

std::string SearchProgram(const std::string& name,
                          const std::optional<std::vector<std::string>>& env);

// argv[0] as execvp() would find it: as it is when it holds a '/', else in the child's PATH
// (the caller's when the child gets the caller's environment). A search costs a stat or two per
// directory of the PATH, which was a tenth of a worker's system calls for 2,000 `true`: what it
// found is kept for a second, per PATH and name.
std::string FindProgram(const std::string& name,
                        const std::optional<std::vector<std::string>>& env) {
  if (name.find('/') != std::string::npos) return name;
  std::string key = name + '\0';
  if (env) {
    for (const std::string& e : *env) {
      if (e.rfind("PATH=", 0) == 0) key += e;
    }
  } else if (const char* path = std::getenv("PATH")) {
    key += path;
  }
  struct Found {
    std::string path;
    std::chrono::steady_clock::time_point when;
  };
  thread_local std::unordered_map<std::string, Found> found;
  const auto now = std::chrono::steady_clock::now();
  if (auto it = found.find(key);
      it != found.end() && now - it->second.when < std::chrono::seconds(1))
    return it->second.path;
  std::string path = SearchProgram(name, env);
  if (found.size() >= 256) found.clear();
  if (!path.empty()) found[std::move(key)] = {path, now};
  return path;
}

std::string SearchProgram(const std::string& name,
                          const std::optional<std::vector<std::string>>& env) {
  boost::filesystem::path path;
  if (!env) {
    path = bp::search_path(name);
  } else {
    std::vector<boost::filesystem::path> dirs;
    std::string_view search = "/bin:/usr/bin";  // execvp()'s default when there is no PATH
    for (const std::string& e : *env) {
      if (e.rfind("PATH=", 0) == 0) search = std::string_view(e).substr(5);
    }
    for (size_t start = 0; start <= search.size();) {
      size_t end = search.find(':', start);
      if (end == std::string_view::npos) end = search.size();
      dirs.emplace_back(std::string(end > start ? search.substr(start, end - start) : "."));
      start = end + 1;
    }
    path = bp::search_path(name, dirs);
  }
  return path.empty() ? std::string() : path.string();
}

}  // namespace

std::shared_ptr<Subprocess> Subprocess::Start(asio::io_context& loop, SubprocessOptions options,
                                              Done done) {
  std::shared_ptr<Subprocess> self(new Subprocess(loop));
  Impl& impl = *self->impl_;
  impl.options = std::move(options);
  impl.done = std::move(done);
  const auto& argv = impl.options.argv;
  const std::string& cwd = impl.options.cwd;
  auto fail = [&](std::string why) {
    impl.result.status = NotStarted{std::move(why)};
    self->reaped_ = true;
    impl.open_streams = 0;
    asio::post(loop, [self] { self->MaybeDone(); });
    return self;
  };
  const std::string program = FindProgram(argv[0], impl.options.env);
  if (program.empty()) return fail("cannot run '" + argv[0] + "': command not found");
  struct stat st {};
  if (!cwd.empty() && (::stat(cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)))
    return fail("cannot run '" + argv[0] + "': the directory " + cwd +
                " does not exist (any more) on this host");

  // The environment as execve() takes it; built before the fork (nothing may allocate after vfork).
  std::vector<char*> envp;
  if (impl.options.env) {
    envp.reserve(impl.options.env->size() + 1);
    for (std::string& e : *impl.options.env) envp.push_back(e.data());
    envp.push_back(nullptr);
  }
  std::error_code ec;
  auto spawn = [&](auto&& std_in) {
    return bp::child(
        bp::exe = program, bp::args = std::vector<std::string>(argv.begin() + 1, argv.end()),
        std::forward<decltype(std_in)>(std_in), bp::std_out > impl.out_pipe,
        bp::std_err > impl.err_pipe,
        bp::posix::use_vfork,  // no copy of the worker's page tables per task
        bp::extend::on_setup([&envp](auto& exec) {
          if (!envp.empty()) exec.env = envp.data();
        }),
        bp::extend::on_exec_setup([&cwd](auto&) {
          if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
          ::setpgid(0, 0);  // its own group: TERM/KILL reach its children too
          sigset_t none;
          sigemptyset(&none);
          sigprocmask(SIG_SETMASK, &none, nullptr);
          std::signal(SIGPIPE, SIG_DFL);  // the worker ignores SIGPIPE; the task should not
        }),
        ec);
  };
  if (impl.options.stdin_pipe) impl.in_pipe.emplace(loop);
  bp::child child = impl.in_pipe ? spawn(bp::std_in < *impl.in_pipe) : spawn(bp::std_in < bp::null);
  if (ec) return fail("cannot run '" + argv[0] + "': " + ec.message());
  self->pid_ = child.id();
  ::setpgid(self->pid_, self->pid_);  // also from the parent, so a kill(-pid) right now works
  child.detach();                     // reaped by Poll()

  if (impl.options.timeout > 0) {
    impl.timeout_timer.expires_after(std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(impl.options.timeout)));
    impl.timeout_timer.async_wait(
        [weak = std::weak_ptr<Subprocess>(self)](const boost::system::error_code& ec) {
          auto self = weak.lock();
          if (ec || !self || self->reaped_) return;
          self->impl_->timed_out = true;
          self->Terminate();
        });
  }
  auto closed = [self] {
    --self->impl_->open_streams;
    self->MaybeDone();
  };
  const size_t limit = impl.options.output_limit;
  const std::string& spill = impl.options.spill;
  ReadStream(self, impl.out_pipe, impl.out_buf, sizeof impl.out_buf,
             std::make_shared<Stream>(Stream{impl.result.stdout_text, impl.result.truncated, limit,
                                             spill.empty() ? "" : spill + ".out",
                                             impl.result.stdout_file, impl.options.on_stdout}),
             closed);
  ReadStream(self, impl.err_pipe, impl.err_buf, sizeof impl.err_buf,
             std::make_shared<Stream>(Stream{impl.result.stderr_text, impl.result.truncated, limit,
                                             spill.empty() ? "" : spill + ".err",
                                             impl.result.stderr_file}),
             closed);
  return self;
}

void Subprocess::Write(std::string bytes) {
  Impl& impl = *impl_;
  if (!impl.in_pipe || reaped_ || !impl.in_pipe->is_open()) return;
  impl.writes.push_back(std::move(bytes));
  if (impl.writes.size() == 1) WriteNext();
}

void Subprocess::WriteNext() {
  Impl& impl = *impl_;
  asio::async_write(*impl.in_pipe, asio::buffer(impl.writes.front()),
                    [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                      auto& writes = self->impl_->writes;
                      if (ec) {  // it closed its stdin, or is gone: its end tells the rest
                        writes.clear();
                        return;
                      }
                      writes.pop_front();
                      if (!writes.empty()) self->WriteNext();
                    });
}

const std::string& Subprocess::stdout_so_far() const { return impl_->result.stdout_text; }
const std::string& Subprocess::stderr_so_far() const { return impl_->result.stderr_text; }

void Subprocess::Poll() {
  if (pid_ <= 0 || reaped_) return;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return;
  reaped_ = true;
  impl_->result.status = FromWaitStatus(status);
  if (impl_->timed_out)
    impl_->result.status = TimedOut{impl_->options.timeout, ShellCode(impl_->result.status)};
  // The leader is gone; whatever it started in its group goes too, which also closes the pipes.
  ::kill(-pid_, SIGKILL);
  MaybeDone();
}

// The stop sequence of StopProcess(), on the loop and for the whole group.
void Subprocess::Terminate() {
  if (pid_ <= 0 || reaped_) return;
  ::kill(-pid_, SIGTERM);
  impl_->kill_timer.expires_after(impl_->options.kill_grace);
  impl_->kill_timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec && !self->reaped_) ::kill(-self->pid_, SIGKILL);
  });
}

void Subprocess::Kill() {
  impl_->done = nullptr;
  if (pid_ <= 0 || reaped_) return;
  ::kill(-pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  reaped_ = true;
}

void Subprocess::MaybeDone() {
  if (reaped_ && impl_->in_pipe && impl_->in_pipe->is_open()) {
    boost::system::error_code ignored;
    impl_->in_pipe->close(ignored);
  }
  if (!reaped_ || impl_->open_streams > 0 || !impl_->done) return;
  impl_->kill_timer.cancel();
  impl_->timeout_timer.cancel();
  auto done = std::move(impl_->done);
  impl_->done = nullptr;
  done(std::move(impl_->result));
}

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         size_t limit) {
  asio::io_context loop;
  std::optional<SubprocessResult> result;
  SubprocessOptions options;
  options.argv = argv;
  options.output_limit = limit;
  options.timeout = std::chrono::duration<double>(timeout).count();
  auto child = Subprocess::Start(loop, std::move(options),
                                 [&](SubprocessResult r) { result = std::move(r); });
  // Its own timeout stops it; this bound only keeps a child that will not die from holding us.
  const auto deadline = std::chrono::steady_clock::now() + timeout + std::chrono::seconds(10);
  while (!result && std::chrono::steady_clock::now() < deadline) {
    loop.restart();
    loop.run_for(std::chrono::milliseconds(10));
    child->Poll();  // no SIGCHLD handler here: look for its end each turn
  }
  if (!result) {
    child->Kill();
    return {TimedOut{std::chrono::duration<double>(timeout).count(), 128 + SIGKILL}, "", ""};
  }
  return {std::move(result->status), std::move(result->stdout_text),
          std::move(result->stderr_text)};
}

}  // namespace orq

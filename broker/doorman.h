// The doorman: what strangers on the broker's TCP listeners may cost it. libzmq accepts TCP
// connections in its I/O thread and reads whole frames (up to the listener's ZMQ_MAXMSGSIZE)
// before CURVE and ZAP judge them, so without a doorman a crowd of strangers could fill the
// broker's memory or its descriptor table, and libzmq 4.3 aborts the process when an ipc accept
// then finds no descriptor. The doorman watches the router's socket monitor from a thread of its
// own (so a busy broker loop never delays it) and closes, at once:
//
// - a connection accepted into the descriptor reserve (its descriptor number is at least
//   RLIMIT_NOFILE minus the reserve: the kernel hands out the lowest free number, so fewer than
//   the reserve were free), leaving room for local clients, local workers and the journal;
// - the oldest connection still in its handshake when more than kMaxPendingHandshakes are, or
//   more than kMaxPendingPerAddress from one address, so strangers hold at most
//   kMaxPendingHandshakes * kMaxRemoteMessageBytes of memory however many they are.
//
// Only connections in their handshake count, and only they are ever closed: an authenticated
// connection is settled for good. libzmq does not say which connection a handshake succeeded on
// (its event carries 0, not the descriptor), so a connection is settled when the broker loop
// reads its first authenticated message (Authenticated(), from the message's ZMQ_SRCFD), or once
// it has lived past kHandshakeTimeout: libzmq closes every connection whose handshake takes
// longer, so one still open then is authenticated.
//
// DoormanRules is the decision, pure; Doorman the thread around it. The thread forwards every
// monitor event it reads to the broker loop (events()), which keeps its own use of them.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <zmq.hpp>

namespace orq {

// The reserve kept free out of `limit` descriptors.
size_t DescriptorReserve(size_t limit);

class DoormanRules {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // A TCP connection was accepted on descriptor `fd` from `address` (its peer's host address, as
  // bytes) at `now` while `limit` descriptors may be open. Returns the descriptors to close: `fd`
  // itself when it is in the reserve, else the oldest pending ones past a bound (possibly `fd`).
  std::vector<int> Accepted(int fd, const std::string& address, size_t limit, TimePoint now);
  // The broker read an authenticated message from `fd`: its handshake succeeded, it is settled.
  void Authenticated(int fd);
  // libzmq reported a TCP handshake that failed, without saying on which descriptor.
  void HandshakeFailed() { ++failures_unclaimed_; }
  // `fd` closed. True when it closed in its handshake with no result reported (a frame over the
  // listener's limit): a failure no other event counted.
  bool Closed(int fd);
  // The doorman closed `fd` (it was pending): it leaves the count now; its close follows.
  void Shed(int fd);
  size_t pending() const { return pending_.size(); }

 private:
  struct Pending {
    int fd;
    std::string address;
    TimePoint since;
  };
  void Expire(TimePoint now);
  void Remove(std::deque<Pending>::iterator it);
  void Forget(int fd);           // leaves pending_, if there
  std::deque<Pending> pending_;  // oldest first; at most kMaxPendingHandshakes + 1 entries
  std::unordered_map<std::string, size_t> per_address_;  // pending_ counted by address
  // Open TCP connections with no handshake result known: pending_, and those expired from it or
  // shed whose close has not come yet.
  std::unordered_set<int> handshaking_;
  // Handshake failures libzmq reported that no close has claimed yet; never more than
  // handshaking_ holds.
  size_t failures_unclaimed_ = 0;
};

class Doorman {
 public:
  // Watches `router`'s monitor (the events Admission needs and those the doorman needs).
  Doorman(zmq::context_t& ctx, zmq::socket_t& router, int forwarded_events);
  ~Doorman();
  Doorman(const Doorman&) = delete;
  Doorman& operator=(const Doorman&) = delete;

  // The monitor's events, as libzmq sends them (two frames each), for the broker loop; only those
  // in `forwarded_events`.
  zmq::socket_t& events() { return events_; }
  uint64_t shed() const { return shed_.load(std::memory_order_relaxed); }
  // TCP connections that closed in their handshake without libzmq reporting it failed (a frame
  // over the listener's limit), since the last call.
  uint64_t TakeUnfinished() { return unfinished_.exchange(0, std::memory_order_relaxed); }
  // From the broker loop: a message with a key came on TCP connection `fd` (ZMQ_SRCFD). The
  // connection is never shed; the doorman reads this before its next decision.
  void Authenticated(int fd);

 private:
  void Run();
  void Admit(int fd);  // a TCP connection was accepted
  void Shed(int fd);
  void TakeAuthenticated();

  void* router_;           // the socket watched (it outlives the doorman)
  zmq::socket_t monitor_;  // the doorman thread's: PAIR on the router's monitor endpoint
  zmq::socket_t out_;      // the doorman thread's: PAIR it forwards events on
  zmq::socket_t events_;   // the broker loop's end of out_; a message on it stops the thread
  int forwarded_events_;
  DoormanRules rules_;                          // the doorman thread's
  std::unordered_map<int, std::string> peers_;  // the doorman thread's: open TCP fds' peers
  std::mutex authenticated_mutex_;
  std::vector<int> authenticated_;  // guarded by authenticated_mutex_: fds the loop vouched for
  std::atomic<uint64_t> shed_{0};
  std::atomic<uint64_t> unfinished_{0};
  std::thread thread_;
};

}  // namespace orq

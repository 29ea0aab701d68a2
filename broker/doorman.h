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
// DoormanRules is the decision, pure; Doorman the thread around it. The thread forwards every
// monitor event it reads to the broker loop (events()), which keeps its own use of them.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstddef>
#include <deque>
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
  // A TCP connection was accepted on descriptor `fd` from `address` (its peer address, as bytes)
  // while `limit` descriptors may be open. Returns the descriptors to close: `fd` itself when it
  // is in the reserve, else the oldest pending ones past a bound (possibly `fd`).
  std::vector<int> Accepted(int fd, const std::string& address, size_t limit);
  // Its handshake ended (succeeded or failed) or it closed: it is no longer pending.
  void Settled(int fd);
  size_t pending() const { return pending_.size(); }

 private:
  struct Pending {
    int fd;
    std::string address;
  };
  void Remove(std::deque<Pending>::iterator it);
  std::deque<Pending> pending_;  // oldest first; at most kMaxPendingHandshakes + 1 entries
  std::unordered_map<std::string, size_t> per_address_;
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
  // over the listener's limit, a peer that hung up), since the last call.
  uint64_t TakeUnfinished() { return unfinished_.exchange(0, std::memory_order_relaxed); }

 private:
  void Run();
  void Admit(int fd);  // a TCP connection was accepted
  void Shed(int fd);

  void* router_;           // the socket watched (it outlives the doorman)
  zmq::socket_t monitor_;  // the doorman thread's: PAIR on the router's monitor endpoint
  zmq::socket_t out_;      // the doorman thread's: PAIR it forwards events on
  zmq::socket_t events_;   // the broker loop's end of out_; a message on it stops the thread
  int forwarded_events_;
  DoormanRules rules_;                   // the doorman thread's
  std::unordered_set<int> handshaking_;  // the doorman thread's: TCP fds with no handshake result
  std::unordered_map<int, std::string> peers_;  // the doorman thread's: pending fds' peers
  std::atomic<uint64_t> shed_{0};
  std::atomic<uint64_t> unfinished_{0};
  std::thread thread_;
};

}  // namespace orq

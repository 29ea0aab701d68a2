// The broker's admission: who may connect, and who each connection is. The broker shell owns one
// and calls it around its ROUTER socket.
//
// - The ZAP handler (a REP socket on inproc://zeromq.zap.01 in the broker's context) is bound when
//   the Admission is made, before any listener exists, so no handshake can happen without it; it
//   answers with broker/zap.h's decision. libzmq 4.3 has no ZAP_ENFORCE_DOMAIN: this order is what
//   makes the handler mandatory.
// - Bind() sets each listener's mechanism before binding it (libzmq copies socket options into a
//   listener at bind time): ipc:// gets NULL with kIpcDomain, tcp:// gets CURVE with the broker's
//   secret key, kTcpDomain and kHandshakeTimeout. Any other transport is refused.
// - RoleOf() turns a message's User-Id into a Role, per message, against the current allow-list,
//   so a key revoked a moment ago sends nothing more; its connection is shut down then and there.
// - A socket monitor counts handshakes that failed before ZAP (no CURVE, a wrong broker key,
//   garbage) and forgets connections that closed. Its events come through the doorman
//   (broker/doorman.h), which bounds what strangers cost: a TCP listener takes frames of at most
//   kMaxRemoteMessageBytes, handshakes in progress are capped, descriptors kept in reserve.
#pragma once

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "broker/doorman.h"
#include "common/keys.h"
#include "common/protocol.h"

namespace orq {

class Admission {
 public:
  // `keys`: the broker's key store; without one, only ipc:// may be bound.
  Admission(zmq::context_t& ctx, zmq::socket_t& router, std::optional<KeyStore> keys);

  // Binds `endpoint` on the router with the mechanism its transport requires and returns the
  // endpoint bound (a tcp port of '*' resolved). Throws UsageError for a transport other than
  // ipc:// and tcp://, or tcp:// without a key store.
  std::string Bind(const std::string& endpoint);

  zmq::socket_t& zap_socket() { return zap_; }
  zmq::socket_t& monitor_socket() { return doorman_.events(); }
  // Answers every waiting ZAP request; counts refusals.
  void ServeZap(BrokerCounters& counters);
  // Reads every waiting monitor event; counts failed handshakes and connections shed.
  void ReadMonitor(BrokerCounters& counters);

  // The role of the sender of a message that arrived with `user_id` (its connection's ZAP User-Id)
  // from connection `fd` (ZMQ_SRCFD). A key no longer on the allow-list is kRevoked, and its
  // connection is shut down.
  Role RoleOf(const std::string& identity, const std::string& user_id, int fd);

  // Re-reads the allow-list. Returns the identities of the connections whose key is no longer on
  // it; those connections are shut down already.
  std::vector<std::string> Reload();
  // Reload(), when the allow-list on disk differs from the one in use. It compares what the
  // access files say, not the directory's modification time: a filesystem with a coarse clock
  // (tmpfs, ext3) can leave that time unchanged by a revoke and an add in the same tick, and a
  // revoked key must never stay allowed.
  std::vector<std::string> ReloadIfChanged();
  size_t allowed_keys() const { return allowed_.size(); }
  // The allow-list's entry of `user_id` (a ZAP User-Id); null for local peers and unknown keys.
  const AccessEntry* EntryOf(const std::string& user_id) const {
    auto it = allowed_.find(user_id);
    return it == allowed_.end() ? nullptr : &it->second;
  }

 private:
  struct Peer {
    std::string identity;  // its ROUTER identity
    std::string user_id;   // its key (Z85)
  };
  void Drop(int fd);
  // Makes `allowed` the allow-list in use; returns (and drops) the connections no longer on it.
  std::vector<std::string> Use(AllowList allowed);

  zmq::socket_t& router_;
  std::optional<KeyStore> keys_;
  zmq::socket_t zap_;  // REP, inproc://zeromq.zap.01
  Doorman doorman_;    // watches the router's connections; forwards their events to us
  AllowList allowed_;  // invariant: what keys_ held at the last Reload()
  // TCP connections seen, by file descriptor; entries leave when the monitor reports the close.
  std::unordered_map<int, Peer> peers_;
};

}  // namespace orq

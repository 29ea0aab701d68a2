// `orq logs` of the rest of an ended task's stream, which spilled to a file on its worker's host
// (common/paths.h's SpillName there): the broker asks a connected worker on that host for it, a
// piece (kOutputPieceBytes) per client request, so that nothing piles up in the broker or the
// client however large the file is. A worker that has no such file (another worker on that host,
// with another $ORQ_HOME) or leaves before it answers makes the next one on that host be asked;
// when none is left, or none answers within kRequestTimeout, the client is told where the file
// is. Pure: OutputReaders calls it with the workers it knows and the time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/core/outbox.h"
#include "common/clock.h"
#include "common/protocol.h"

namespace orq {

class SpillFetches {
 public:
  explicit SpillFetches(Outbox& out) : out_(out) {}

  // The identity of worker number `worker` while it is connected, else nullptr.
  using IdentityOf = std::function<const std::string*(uint32_t worker)>;

  struct Request {
    std::string client;
    Lease attempt;
    bool err = false;
    uint64_t offset = 0;
    std::string where;  // for people: "j7.2.1.out in the output directory of ... on node3"
  };
  // Asks the first of `workers` (those on the file's host, in the order to try) for the piece;
  // with none, tells the client where the file is.
  void Begin(Request request, std::vector<uint32_t> workers, SteadyTime now,
             const IdentityOf& identity_of);
  // A worker's answer: the piece goes to the client, or the next worker is asked. False when no
  // fetch of this worker's has that number (a peer's noise, or one that timed out: counted).
  bool Piece(uint32_t worker, OutputPieceMessage& piece, const IdentityOf& identity_of);
  // Worker `worker` is gone: what it was asked goes to the next worker.
  void WorkerGone(uint32_t worker, const IdentityOf& identity_of);
  // Fetches whose worker has not answered by their deadline end, telling the client so.
  void Expire(SteadyTime now);
  // The client is gone: its fetches are dropped (their pieces, should they come, are noise).
  void ClientGone(const std::string& client);
  size_t size() const { return fetches_.size(); }

 private:
  struct Fetch {
    Request request;
    std::vector<uint32_t> left;  // workers still to ask, last first
    uint32_t asked = 0;          // the worker asked now
    SteadyTime deadline;
  };
  // Asks the next worker still connected, or ends the fetch with where the file is.
  void AskNext(uint64_t number, const IdentityOf& identity_of);
  void End(uint64_t number, std::string note);

  Outbox& out_;
  std::unordered_map<uint64_t, Fetch> fetches_;
  uint64_t next_ = 1;
};

}  // namespace orq

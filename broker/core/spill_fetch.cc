#include "broker/core/spill_fetch.h"

#include <algorithm>
#include <utility>

namespace orq {

void SpillFetches::Begin(Request request, std::vector<uint32_t> workers, SteadyTime now,
                         const IdentityOf& identity_of) {
  std::reverse(workers.begin(), workers.end());
  const uint64_t number = next_++;
  fetches_.emplace(number, Fetch{std::move(request), std::move(workers), 0, now + kRequestTimeout});
  AskNext(number, identity_of);
}

void SpillFetches::AskNext(uint64_t number, const IdentityOf& identity_of) {
  Fetch& f = fetches_.at(number);
  while (!f.left.empty()) {
    const uint32_t worker = f.left.back();
    f.left.pop_back();
    const std::string* identity = identity_of(worker);
    if (!identity) continue;  // gone since
    f.asked = worker;
    return out_.Send(
        {*identity, ReadOutputMessage{number, f.request.attempt, f.request.err, f.request.offset}});
  }
  End(number,
      "the rest of its output is in " + f.request.where + ", which no connected worker has");
}

void SpillFetches::End(uint64_t number, std::string note) {
  auto it = fetches_.find(number);
  LogChunk last;
  last.note = std::move(note);
  out_.Send({it->second.request.client, std::move(last)});
  fetches_.erase(it);
}

bool SpillFetches::Piece(uint32_t worker, OutputPieceMessage& piece,
                         const IdentityOf& identity_of) {
  auto it = fetches_.find(piece.fetch);
  if (it == fetches_.end() || it->second.asked != worker) return false;
  if (!piece.found) {
    AskNext(piece.fetch, identity_of);
    return true;
  }
  LogChunk chunk;
  chunk.text = std::move(piece.text);
  chunk.final = piece.end;
  out_.Send({it->second.request.client, std::move(chunk)});
  fetches_.erase(it);
  return true;
}

void SpillFetches::WorkerGone(uint32_t worker, const IdentityOf& identity_of) {
  std::vector<uint64_t> asked;
  for (const auto& [number, f] : fetches_) {
    if (f.asked == worker) asked.push_back(number);
  }
  for (uint64_t number : asked) AskNext(number, identity_of);
}

void SpillFetches::Expire(SteadyTime now) {
  std::vector<uint64_t> late;
  for (const auto& [number, f] : fetches_) {
    if (now >= f.deadline) late.push_back(number);
  }
  for (uint64_t number : late) {
    const Fetch& f = fetches_.at(number);
    End(number, "the rest of its output is in " + f.request.where +
                    ", whose worker did not send it within " +
                    std::to_string(
                        std::chrono::duration_cast<std::chrono::seconds>(kRequestTimeout).count()) +
                    " s");
  }
}

void SpillFetches::ClientGone(const std::string& client) {
  std::erase_if(fetches_, [&](const auto& entry) { return entry.second.request.client == client; });
}

}  // namespace orq

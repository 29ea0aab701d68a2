// What a peer may send, field by field. The codec bounds a message's shape (lengths it can read);
// these bound what the broker would keep: a worker's registration (host name, resources, queues,
// slots) and a task's outcome (its streams, result, error, command). Pure: the broker shell
// checks each message with them before its core sees it; a Ready over a bound is refused with the
// sentence, an outcome over a bound becomes a failure that says why. Either is logged and counted
// (`counters.over_bounds`), and nothing of it is kept.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/protocol.h"

namespace orq {

inline constexpr size_t kMaxHostBytes = 255;        // a host name (RFC 1123's limit)
inline constexpr size_t kMaxOffered = 64;           // resources, or queues, one worker offers
inline constexpr uint32_t kMaxSlots = 1 << 20;      // a worker's slots of one class, or its threads
inline constexpr size_t kMaxErrorBytes = 64 << 10;  // an outcome's error sentences

// Ok when `ready` is within every bound; else one sentence naming the field.
Expected<void> CheckReady(const ReadyMessage& ready);
// Ok when `ready` offers no more than a worker key's scope allows (`queues`, `resources`:
// common/keys.h's AccessEntry; unset: any); else one sentence saying what it may offer.
Expected<void> CheckScope(const ReadyMessage& ready,
                          const std::optional<std::vector<std::string>>& queues,
                          const std::optional<std::vector<ResourceNeed>>& resources);
// Ok when `outcome` is within every bound; else one sentence naming the field.
Expected<void> CheckOutcome(const TaskOutcome& outcome);
// The outcome a worker should have sent instead of one over a bound: failed, with `why`, and
// none of what it carried.
TaskOutcome OverBounds(const TaskOutcome& outcome, const std::string& why);

}  // namespace orq

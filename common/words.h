// How orq puts its data in words for people: why a task waits (a Reason, as `orq explain` and
// the tests say it) and rates. The broker sends data; the CLI and the tests say it with these.
#pragma once

#include <optional>
#include <string>

#include "common/protocol.h"

namespace orq {

// One line: "lock db is held for write by j2.0", "waiting for j3.1 (running)".
std::string Sentence(const Reason& reason);

// "10/s", "600/m", "3/h": starts per second; nullopt when `text` is not a rate.
std::optional<double> ParseRate(const std::string& text);
std::string FormatRate(double per_second);

}  // namespace orq

// When a local worker that died is started again: a pure step (time in, time out) so its policy is
// tested with a fake clock. A worker that lived long is replaced after kRestartMin; one that keeps
// dying young (within kRestartWindow of its start) waits twice as long each time, up to
// kRestartMax, so a worker that cannot start does not spin the machine.
#pragma once

#include <algorithm>
#include <chrono>

namespace orq {

class RestartBackoff {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kRestartMin{100};
  static constexpr std::chrono::milliseconds kRestartMax{10000};
  static constexpr std::chrono::milliseconds kRestartWindow{5000};

  // The worker started at `started` died at `now`: returns how long to wait before its
  // replacement starts.
  std::chrono::milliseconds Died(Clock::time_point started, Clock::time_point now) {
    backoff_ = now - started < kRestartWindow ? std::min(backoff_ * 2, kRestartMax) : kRestartMin;
    return backoff_;
  }

 private:
  std::chrono::milliseconds backoff_ =
      kRestartMin / 2;  // so the first young death waits kRestartMin
};

}  // namespace orq

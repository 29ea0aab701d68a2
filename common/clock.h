// Time in orq: the cores take steady time as an argument; shells read it here. Wall-clock time is
// for display and for the journal's due times only.
#pragma once

#include <chrono>

namespace orq {

using SteadyTime = std::chrono::steady_clock::time_point;

// Wall-clock seconds since the epoch.
inline double WallNow() {
  using namespace std::chrono;
  return duration_cast<duration<double>>(system_clock::now().time_since_epoch()).count();
}

}  // namespace orq

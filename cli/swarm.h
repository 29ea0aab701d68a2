// Simulated remote workers, for `orq bench swarm`: what the broker pays per worker, measured with
// a thousand of them on one machine. Each is the real worker's protocol side (WorkerCore) with a
// DEALER socket of its own: CURVE with its host's key, dialling from its host's address
// (127.0.H.N: the broker sees many hosts), reconnect intervals drawn per socket as a real
// worker's are. Echo tasks end the moment they arrive; other kinds fail. One thread drives them
// all; nothing here is shared with it but atomics.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/keys.h"

namespace orq {

struct SwarmOptions {
  std::string endpoint;            // the broker's "tcp://127.0.0.1:PORT"
  std::string broker_public_key;   // Z85
  std::vector<KeyPair> host_keys;  // one per host; worker i is on host i / workers_per_host
  int workers = 1000;
  int workers_per_host = 25;
  uint32_t async_slots = 64;  // each worker's, for echo tasks
};

class Swarm {
 public:
  // Throws when this process may not open the descriptors `options.workers` need.
  explicit Swarm(SwarmOptions options);
  ~Swarm();  // stops the thread; every socket closes without lingering
  Swarm(const Swarm&) = delete;
  Swarm& operator=(const Swarm&) = delete;

  uint64_t answered() const { return answered_.load(std::memory_order_relaxed); }  // tasks
  // Throws, saying why, once the swarm's thread has stopped on an error (descriptors, libzmq).
  void Check() const;

 private:
  void Run();

  SwarmOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> answered_{0};
  std::atomic<bool> failed_{false};
  std::string error_;  // written before failed_ is set, read after
  std::thread thread_;
};

}  // namespace orq

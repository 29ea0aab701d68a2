// The seed's slow_function: ten tasks of 1 to 5 s, started one by one (create_task) and
// gathered: their durations in submission order, in about the longest of them, not the sum.
#include <orq/client.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

int main() try {
  const auto start = std::chrono::steady_clock::now();
  orq::Client client = orq::Client::FromEnvironment();
  std::mt19937 random(std::random_device{}());
  std::vector<orq::Future> futures;
  for (int i = 0; i < 10; ++i) {
    const int seconds = std::uniform_int_distribution<int>(1, 5)(random);
    futures.push_back(client.Start({{orq::Task::Sleep(seconds)}}).front());  // one job each
  }
  std::printf("[");
  const auto outcomes = client.Gather(futures, std::chrono::seconds(60));
  for (size_t i = 0; i < outcomes.size(); ++i)
    std::printf("%s%s", i ? ", " : "", outcomes[i].result.c_str());
  std::printf("]\ntook %.2f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
} catch (const orq::Exception& e) {
  std::fprintf(stderr, "slow_function: %s\n", e.what());
  return 1;
}

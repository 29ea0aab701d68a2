// The seed's say_after: three sleeps of 1, 2 and 3 s on orq's workers, gathered; about 3 s in
// all, not 6. Run it where `orq up` runs (or with ORQ_ACCESS set to a client access file).
#include <orq/client.h>

#include <chrono>
#include <cstdio>

int main() try {
  const auto start = std::chrono::steady_clock::now();
  orq::Client client = orq::Client::FromEnvironment();
  orq::Job job = client.Submit({{orq::Task::Sleep(1, "\"hello\""), orq::Task::Sleep(2, "\"world\""),
                                 orq::Task::Sleep(3, "\"!!!\"")}});
  for (const orq::Outcome& o : client.Gather(job.tasks(), std::chrono::seconds(60)))
    std::printf("%s\n", o.ok() ? o.result.c_str() : o.error.c_str());
  std::printf("took %.2f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
} catch (const orq::Exception& e) {
  std::fprintf(stderr, "say_after: %s\n", e.what());
  return 1;
}

// `orq bench`: the performance workloads against an embedded broker and workers, reported as
// figures (tasks/s, per-task overhead, latency percentiles, peak RSS). Benchmarks report numbers;
// they assert nothing.
#pragma once

#include <string>
#include <vector>

namespace orq {

struct BenchOptions {
  int workers = 2;
  int threads = 0;  // 0 = cores
  bool json = false;
  std::vector<std::string> workloads;  // empty = all
};

int BenchCommand(const BenchOptions& options);

}  // namespace orq

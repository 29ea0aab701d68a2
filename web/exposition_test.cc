#include "web/exposition.h"

#include <gtest/gtest.h>

namespace orq::web {
namespace {

StatusReply Sample() {
  StatusReply s;
  s.tasks.queued = 3, s.tasks.done = 7;
  s.jobs = 2;
  s.workers = {{7, "node7", true, 4, 3, {16, 4, 4}}, {8, "head", false, 1, 1, {8, 2, 2}}};
  s.counters.auth_refused = 5;
  s.limits = {{"api\"x", {"api\"x", 2, 0, 0}, std::nullopt, {}, 1, 4}};
  s.metrics.emplace();
  s.metrics->finished[3 * kTaskStatusCount + 1] = 2;  // shell, failed
  s.metrics->dispatch.Observe(0.003);
  s.metrics->dispatch.Observe(100);
  return s;
}

bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

TEST(ExpositionTest, TasksWorkersAndCountersAreSamplesWithTheirLabels) {
  const std::string text = "\n" + Exposition(Sample());
  EXPECT_TRUE(Has(text, "orq_tasks{state=\"queued\"} 3"));
  EXPECT_TRUE(Has(text, "orq_tasks{state=\"done\"} 7"));
  EXPECT_TRUE(Has(text, "orq_workers{location=\"remote\",state=\"busy\"} 1"));
  EXPECT_TRUE(Has(text, "orq_workers{location=\"local\",state=\"idle\"} 0"));
  EXPECT_TRUE(Has(text, "orq_worker_slots{class=\"async\"} 24"));
  EXPECT_TRUE(Has(text, "orq_worker_slots_busy 4"));
  EXPECT_TRUE(Has(text, "orq_auth_refused_total 5"));
  EXPECT_TRUE(Has(text, "orq_tasks_finished_total{kind=\"shell\",status=\"failed\"} 2"));
  EXPECT_TRUE(Has(text, "# TYPE orq_tasks_finished_total counter"));
  // A label value is escaped
  EXPECT_TRUE(Has(text, "orq_limit_waiters{limit=\"api\\\"x\"} 4"));
}

TEST(ExpositionTest, AHistogramsBucketsAreCumulative) {
  const std::string text = "\n" + Exposition(Sample());
  EXPECT_TRUE(Has(text, "# TYPE orq_task_dispatch_seconds histogram"));
  EXPECT_TRUE(Has(text, "orq_task_dispatch_seconds_bucket{le=\"0.001\"} 0"));
  EXPECT_TRUE(Has(text, "orq_task_dispatch_seconds_bucket{le=\"0.005\"} 1"));
  EXPECT_TRUE(Has(text, "orq_task_dispatch_seconds_bucket{le=\"60\"} 1"));
  EXPECT_TRUE(Has(text, "orq_task_dispatch_seconds_bucket{le=\"600\"} 2"));
  EXPECT_TRUE(Has(text, "orq_task_dispatch_seconds_bucket{le=\"+Inf\"} 2"));
  EXPECT_TRUE(Has(text, "orq_task_dispatch_seconds_count 2"));
  EXPECT_TRUE(Has(text, "orq_task_dispatch_seconds_sum 100.003"));
}

TEST(ExpositionTest, EveryFamilyHasHelpAndTypeOnce) {
  const std::string text = Exposition(Sample());
  size_t help = 0, type = 0;
  for (size_t at = 0; (at = text.find("# HELP ", at)) != std::string::npos; ++at) ++help;
  for (size_t at = 0; (at = text.find("# TYPE ", at)) != std::string::npos; ++at) ++type;
  EXPECT_EQ(help, type);
  EXPECT_GT(help, 20u);
  EXPECT_EQ(text.back(), '\n');
}

}  // namespace
}  // namespace orq::web

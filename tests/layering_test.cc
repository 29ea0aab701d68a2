// The code's structure, read from its #include lines (ORQ_SOURCE_DIR is the checkout):
// - layers: common/ is below everything; client/ (the connection to a broker and the client
//   library on it) sits on common/; alloc/ (allocation queues: the policy and the batch
//   systems) sits on common/; broker/ on common/ and alloc/; worker/ and web/ (the dashboard, a
//   client of the broker's) on common/, and none of these three includes another; cli/ sits on
//   all of them; nothing includes tests/.
// - inside broker/: broker/core/ (the pure core: BrokerCore and its parts) includes nothing of the
//   broker process around it (broker/*.h: sockets, the SQLite journal, local workers) and no
//   header that reaches the outside world (zmq, SQLite, threads, clocks' now, files); its unit
//   tests may (the model test restarts through a real journal).
// - functions fit a screen: in broker/, web/ and cli/results.cc none is longer than 80 lines.
// - no include cycle between units (foo.h and foo.cc are one unit), anywhere. In the broker this
//   is what keeps its parts (the worker pool, parking, the dependency graph, the stores) from
//   calling back into BrokerCore: the core includes them, so any of them including the core
//   would close a cycle.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kDirs = {"common", "client", "alloc", "broker",
                                        "worker", "web",    "cli",   "tests"};

// "broker/core/parking.cc" -> "broker/core/parking"
std::string UnitOf(const std::string& path) { return path.substr(0, path.rfind('.')); }
std::string DirOf(const std::string& path) { return path.substr(0, path.find('/')); }

// Every .h and .cc file, relative to the checkout, with the project headers it includes.
std::map<std::string, std::vector<std::string>> ReadIncludes() {
  const fs::path root = ORQ_SOURCE_DIR;
  const std::regex include(R"re(^\s*#\s*include\s+"([^"]+)")re");
  std::map<std::string, std::vector<std::string>> files;
  for (const std::string& dir : kDirs) {
    for (const auto& entry : fs::recursive_directory_iterator(root / dir)) {
      const std::string ext = entry.path().extension();
      if (!entry.is_regular_file() || (ext != ".h" && ext != ".cc")) continue;
      const std::string rel = fs::relative(entry.path(), root).string();
      std::ifstream in(entry.path());
      std::vector<std::string>& includes = files[rel];
      for (std::string line; std::getline(in, line);) {
        std::smatch m;
        if (std::regex_search(line, m, include)) includes.push_back(m[1]);
      }
    }
  }
  return files;
}

// A cycle in the unit graph, as "a -> b -> a"; empty when there is none.
std::string FindCycle(const std::map<std::string, std::set<std::string>>& graph) {
  std::map<std::string, int> state;  // 0 unseen, 1 on the path, 2 done
  std::vector<std::string> path;
  std::string cycle;
  std::function<bool(const std::string&)> visit = [&](const std::string& unit) {
    state[unit] = 1;
    path.push_back(unit);
    auto it = graph.find(unit);
    if (it != graph.end()) {
      for (const std::string& next : it->second) {
        if (state[next] == 1) {
          auto from = std::find(path.begin(), path.end(), next);
          for (; from != path.end(); ++from) cycle += *from + " -> ";
          cycle += next;
          return true;
        }
        if (state[next] == 0 && visit(next)) return true;
      }
    }
    path.pop_back();
    state[unit] = 2;
    return false;
  };
  for (const auto& [unit, edges] : graph) {
    if (state[unit] == 0 && visit(unit)) return cycle;
  }
  return "";
}

TEST(LayeringTest, TheSourcesAreFound) {
  const auto files = ReadIncludes();
  // A check that reads nothing checks nothing: the core and its parts must be there.
  for (const char* file :
       {"broker/core/broker_core.cc", "broker/core/parking.h", "broker/core/worker_pool.h",
        "broker/core/dependency_graph.h", "common/protocol.h"})
    EXPECT_TRUE(files.count(file)) << file << " not found under " << ORQ_SOURCE_DIR;
  EXPECT_GT(files.size(), 100u);
}

TEST(LayeringTest, EachLayerIncludesOnlyTheLayersBelowIt) {
  // What each directory may include, besides itself.
  const std::map<std::string, std::set<std::string>> allowed = {
      {"common", {}},
      {"client", {"common"}},
      {"alloc", {"common"}},
      {"broker", {"common", "alloc"}},
      {"worker", {"common"}},
      {"web", {"common"}},
      {"cli", {"common", "client", "alloc", "broker", "worker", "web"}},
      {"tests", {"common", "client", "alloc", "broker", "worker", "web", "cli"}},
  };
  for (const auto& [file, includes] : ReadIncludes()) {
    const std::string dir = DirOf(file);
    for (const std::string& inc : includes) {
      const std::string to = DirOf(inc);
      if (!allowed.count(to) || to == dir) continue;  // not ours, or its own layer
      // Unit tests beside the code may use the test helpers (tests/temp_dir.h).
      if (to == "tests" && file.find("_test.") != std::string::npos) continue;
      EXPECT_TRUE(allowed.at(dir).count(to))
          << file << " includes " << inc << ": " << dir << "/ may not include " << to << "/";
    }
  }
}

TEST(LayeringTest, TheBrokersCoreIncludesNothingOfTheProcessAroundIt) {
  // Headers that would let the core reach sockets, disks, threads or the clock.
  const std::set<std::string> outside = {"zmq.hpp",  "zmq.h",  "sqlite3.h", "thread",
                                         "mutex",    "future", "fstream",   "filesystem",
                                         "unistd.h", "poll.h", "csignal",   "signal.h"};
  const std::regex system(R"re(^\s*#\s*include\s+<([^>]+)>)re");
  size_t core_files = 0;
  for (const auto& [file, includes] : ReadIncludes()) {
    if (file.rfind("broker/core/", 0) != 0 || file.find("_test.") != std::string::npos ||
        file.find("fixture") != std::string::npos)
      continue;
    ++core_files;
    for (const std::string& inc : includes) {
      EXPECT_TRUE(DirOf(inc) != "broker" || inc.rfind("broker/core/", 0) == 0)
          << file << " includes " << inc
          << ": broker/core/ may not include the broker process's own files (broker/*.h)";
    }
    std::ifstream in(fs::path(ORQ_SOURCE_DIR) / file);
    for (std::string line; std::getline(in, line);) {
      std::smatch m;
      if (!std::regex_search(line, m, system)) continue;
      EXPECT_FALSE(outside.count(m[1]))
          << file << " includes <" << m[1] << ">: the core is pure (no sockets, disks, threads or "
          << "clock)";
    }
  }
  EXPECT_GT(core_files, 20u) << "broker/core/ not found under " << ORQ_SOURCE_DIR;
}

// The functions defined in `path` (clang-formatted: a definition's opening line ends in "{" at
// namespace or class level, its body ends at "}" on a line of the same indentation), as
// "path:line Name" and their length in lines.
std::vector<std::pair<std::string, size_t>> FunctionLengths(const fs::path& path,
                                                            const std::string& rel) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  const std::regex opening(R"re(^( {0,4})[A-Za-z~].*\)[^;=]*\{$)re");
  const std::regex not_a_function(
      R"re(^\s*(if|for|while|switch|else|do|try|catch|return|namespace|class|struct|enum|union|case)\b)re");
  std::vector<std::pair<std::string, size_t>> found;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::smatch m;
    if (!std::regex_match(lines[i], m, opening) || std::regex_search(lines[i], not_a_function))
      continue;
    const std::string closing = m[1].str() + "}";
    size_t end = i + 1;
    while (end < lines.size() && lines[end] != closing) ++end;
    if (end == lines.size()) continue;  // not a body this reading understands
    const std::string name = lines[i].substr(0, lines[i].find('('));
    found.push_back({rel + ":" + std::to_string(i + 1) + " " + name, end - i + 1});
    i = end;
  }
  return found;
}

TEST(LayeringTest, FunctionsInTheBrokerTheDashboardAndGatherFitAScreen) {
  constexpr size_t kMaxLines = 80;
  const fs::path root = ORQ_SOURCE_DIR;
  std::vector<fs::path> files = {root / "cli" / "results.cc"};
  for (const char* dir : {"broker", "web"}) {
    for (const auto& entry : fs::recursive_directory_iterator(root / dir)) {
      const std::string name = entry.path().filename();
      const std::string ext = entry.path().extension();
      if ((ext == ".cc" || ext == ".h") && name.find("_test.") == std::string::npos)
        files.push_back(entry.path());
    }
  }
  size_t functions = 0;
  for (const fs::path& file : files) {
    for (const auto& [where, length] : FunctionLengths(file, fs::relative(file, root).string())) {
      ++functions;
      EXPECT_LE(length, kMaxLines) << where << " is " << length << " lines long";
    }
  }
  // A check that finds no function checks nothing.
  EXPECT_GT(functions, 300u);
}

TEST(LayeringTest, NoUnitsIncludeEachOtherInACircle) {
  const auto files = ReadIncludes();
  std::map<std::string, std::set<std::string>> graph;
  for (const auto& [file, includes] : files) {
    std::set<std::string>& edges = graph[UnitOf(file)];
    for (const std::string& inc : includes) {
      if (files.count(inc) && UnitOf(inc) != UnitOf(file)) edges.insert(UnitOf(inc));
    }
  }
  EXPECT_EQ(FindCycle(graph), "") << "an include cycle between units (foo.h + foo.cc)";
  // And the core's parts are below it: BrokerCore includes each, none includes it.
  for (const char* part :
       {"worker_pool", "parking", "dependency_graph", "delivery", "output_readers", "queues",
        "store", "journal", "task_table", "reports", "spec_windows", "job_builder"}) {
    EXPECT_TRUE(graph.at("broker/core/broker_core").count("broker/core/" + std::string(part)))
        << "the core includes broker/core/" << part;
  }
}

}  // namespace

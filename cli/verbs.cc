#include "cli/verbs.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string_view>
#include <thread>

#include "cli/client.h"
#include "common/keys.h"

namespace orq {

void Say(const std::string& sentence) { std::fprintf(stderr, "%s\n", sentence.c_str()); }

int Cores() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

std::string Tail(const std::string& file, size_t lines) {
  std::ifstream in(file);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += "  " + all[i] + "\n";
  return out;
}

namespace {

bool dashes = false;

}  // namespace

bool CommandAfterDashes() { return dashes; }

namespace {

// Runs a verb; what escapes it becomes one sentence and its exit code. The one place that maps
// errors to exit codes: a user's mistake 2, no broker to reach 3, refused 4, anything else 5.
ExitCode Guard(const std::function<ExitCode()>& verb) {
  try {
    return verb();
  } catch (const UsageError& e) {
    Say(std::string("orq: ") + e.what());
    return ExitCode::kUsage;
  } catch (const Unreachable& e) {
    Say(std::string("orq: ") + e.what());
    return ExitCode::kUnreachable;
  } catch (const Refused& e) {
    Say(std::string("orq: ") + e.what());
    return ExitCode::kRefused;
  } catch (const std::exception& e) {
    Say(std::string("orq: ") + e.what());
    return ExitCode::kFailed;
  }
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{
      "orq: submit tasks from the shell, gather their results; orq runs them across "
      "worker processes.",
      "orq"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "orq 0.1.0");
  app.fallthrough();  // `orq submit --access FILE ...` as well as `orq --access FILE submit ...`
  std::string access_file;
  app.add_option("--access", access_file,
                 "reach a broker over TCP with this access file (from 'orq access add')")
      ->envname("ORQ_ACCESS");

  const Verb verbs[] = {
      RegisterRun(app),    RegisterSubmit(app), RegisterGather(app), RegisterStatus(app),
      RegisterCancel(app), RegisterForget(app), RegisterUp(app),     RegisterDown(app),
      RegisterBroker(app), RegisterWorker(app), RegisterAccess(app), RegisterBench(app),
  };
  dashes = std::find_if(argv + 1, argv + argc,
                        [](const char* a) { return std::string_view(a) == "--"; }) != argv + argc;
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return static_cast<int>(ExitCode::kUsage);
  }
  if (auto problem = CheckRunningLibzmq()) {
    Say("orq: " + *problem);
    return static_cast<int>(ExitCode::kFailed);
  }
  for (const Verb& verb : verbs) {
    if (*verb.command) {
      return static_cast<int>(Guard([&] {
        if (!access_file.empty()) UseAccessFile(access_file);
        return verb.main();
      }));
    }
  }
  return static_cast<int>(ExitCode::kUsage);  // require_subcommand(1) makes this unreachable
}

}  // namespace orq

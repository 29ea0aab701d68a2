#include "cli/verbs.h"

#include <sqlite3.h>
#include <zmq.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string_view>
#include <thread>

#include "client/connection.h"
#include "common/ids.h"
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
std::vector<std::string> command_words;

}  // namespace

bool CommandAfterDashes() { return dashes; }
const std::vector<std::string>& CommandWords() { return command_words; }

namespace {

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace

namespace {

// Where the verb a command line names is: its first word that is not an option or the value of
// --access; 0 when there is none.
int NamedVerbAt(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view word = argv[i];
    if (word == "--") return 0;
    if (word == "--access") {
      ++i;
      continue;
    }
    if (!word.empty() && word[0] != '-') return i;
  }
  return 0;
}
std::string_view NamedVerb(int argc, char** argv) {
  const int at = NamedVerbAt(argc, argv);
  return at ? argv[at] : std::string_view();
}

// GNU parallel's options that orq spells otherwise, with the way to say them here ("" for others).
std::string ParallelHint(const std::string& option) {
  static const std::pair<std::vector<std::string>, const char*> kHints[] = {
      {{"-j", "--jobs", "-P", "--max-procs"},
       "; submitted tasks run as many at once as the broker's workers have slots: orq up -w N "
       "-t T starts N workers of T slots, orq scale -w N changes how many (orq run takes -j)"},
      {{"-k", "--keep-order"},
       "; results print in the order of their tasks already (--unordered prints them as they "
       "finish)"},
      {{"--link", "--xapply"}, "; link input sources with :::+ (or ::::+) instead of :::"},
      {{"-q", "--quote"},
       "; a command's words are passed as they are, as parallel -q passes them (one word with "
       "spaces runs under sh)"},
      {{"-u", "--ungroup", "--line-buffer", "--lb"},
       "; output is grouped per task; follow one live with orq logs --follow TASK"},
  };
  for (const auto& [names, hint] : kHints) {
    for (const std::string& name : names) {
      if (option == name || option.rfind(name + "=", 0) == 0) return hint;
    }
  }
  return "";
}

// A sentence for the parse errors CLI11 words poorly: an unknown verb or option (with "did you
// mean"), and a number out of range (CLI11 prints the whole range of the type). nullopt: CLI11's
// own message is fine.
std::optional<std::string> Explain(const CLI::App& app, const CLI::ParseError& e, int argc,
                                   char** argv) {  // argc: the words CLI11 parsed
  const std::string what = e.what();
  // The verb given, if any.
  const CLI::App* verb = nullptr;
  for (const CLI::App* sub : app.get_subcommands()) verb = sub;
  if (dynamic_cast<const CLI::ExtrasError*>(&e)) {
    // The first extra word as it was typed: the first argument CLI11 did not take.
    for (int i = 1; i < argc; ++i) {
      const std::string word = argv[i];
      if (word == "--") break;
      if (word == "--access") {  // its value is a file name, not a word CLI11 refused
        ++i;
        continue;
      }
      if (what.find(word) == std::string::npos) continue;
      if (!verb)
        return "unknown command '" + word + "'" + DidYouMean(app, word) +
               " (orq --help lists them)";
      if (word.size() > 1 && word[0] == '-') {
        const bool runs = verb->get_name() == "run" || verb->get_name() == "submit";
        std::string hint = runs ? ParallelHint(word) : "";
        if (hint.empty()) hint = DidYouMean(*verb, word);
        if (hint.empty() && runs)
          hint =
              "; orq's options go before the command, and every word after the command is "
              "the command's (orq " +
              verb->get_name() + " --help lists orq's)";
        return verb->get_name() + ": unknown option " + word + hint;
      }
    }
  }
  if (dynamic_cast<const CLI::RequiredError*>(&e) && verb && what.rfind("ids is required", 0) == 0)
    return verb->get_name() + ": name the jobs or tasks (j7, j7.2); 'orq jobs' lists them";
  if (dynamic_cast<const CLI::RequiredError*>(&e) && !verb &&
      what.find("subcommand") != std::string::npos) {
    if (const std::string word(NamedVerb(argc, argv)); !word.empty())
      return "unknown command '" + word + "'" + DidYouMean(app, word) + " (orq --help lists them)";
  }
  if (dynamic_cast<const CLI::ValidationError*>(&e)) {
    // "--attempts: Value 0 not in range 1 to 1000000" -> "--attempts must be from 1 to 1000000,
    // not 0".
    const size_t colon = what.find(": Value ");
    const size_t range = what.find(" not in range ");
    if (colon != std::string::npos && range != std::string::npos)
      return what.substr(0, colon) + " must be from " + what.substr(range + 14) + ", not " +
             what.substr(colon + 8, range - colon - 8);
    // "--timeout: must be more than 0, not -5" (ours) -> without the colon.
    if (const size_t c = what.find(": must be "); c != std::string::npos)
      return what.substr(0, c) + what.substr(c + 1);
  }
  return std::nullopt;
}

}  // namespace

namespace {

CLI::Validator NumberCheck(bool zero_allowed) {
  return CLI::Validator(
      [zero_allowed](std::string& text) -> std::string {
        double v = 0;
        try {
          size_t used = 0;
          v = std::stod(text, &used);
          if (used != text.size()) throw std::invalid_argument(text);
        } catch (const std::exception&) {
          return "must be a number, not '" + text + "'";
        }
        if (!std::isfinite(v) || v < 0 || (!zero_allowed && v == 0))
          return std::string(zero_allowed ? "must be 0 or more" : "must be more than 0") +
                 ", not " + text;
        return "";
      },
      zero_allowed ? "NUMBER >= 0" : "NUMBER > 0");
}

}  // namespace

CLI::Validator MoreThanZero() { return NumberCheck(false); }
CLI::Validator ZeroOrMore() { return NumberCheck(true); }

std::optional<uint64_t> ParseDuration(std::string_view text) {
  auto digits = [](std::string_view t) {
    return !t.empty() && t.size() <= 9 &&
           std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (text.find(':') != std::string_view::npos) {  // [D-]HH:MM:SS, HH:MM:SS or MM:SS
    uint64_t days = 0;
    if (auto dash = text.find('-'); dash != std::string_view::npos) {
      if (!digits(text.substr(0, dash))) return std::nullopt;
      days = std::stoull(std::string(text.substr(0, dash)));
      text.remove_prefix(dash + 1);
    }
    std::vector<uint64_t> parts;
    for (size_t from = 0;;) {
      const size_t colon = text.find(':', from);
      const std::string_view part = text.substr(from, colon - from);
      if (!digits(part)) return std::nullopt;
      parts.push_back(std::stoull(std::string(part)));
      if (colon == std::string_view::npos) break;
      from = colon + 1;
    }
    if (parts.size() > 3) return std::nullopt;
    uint64_t seconds = 0;
    for (uint64_t p : parts) seconds = seconds * 60 + p;
    return days * 86400 + seconds;
  }
  if (digits(text)) return std::stoull(std::string(text));
  uint64_t seconds = 0;
  size_t from = 0;
  for (const char unit : {'d', 'h', 'm', 's'}) {  // each at most once, in this order
    const size_t at = text.find(unit, from);
    if (at == std::string_view::npos) continue;
    if (!digits(text.substr(from, at - from))) return std::nullopt;
    const uint64_t n = std::stoull(std::string(text.substr(from, at - from)));
    seconds += n * (unit == 'd' ? 86400 : unit == 'h' ? 3600 : unit == 'm' ? 60 : 1);
    from = at + 1;
  }
  if (from == 0 || from != text.size()) return std::nullopt;
  return seconds;
}

CLI::Validator DurationCheck() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto seconds = ParseDuration(text);
        if (!seconds)
          return "'" + text + "' is not a length of time (90s, 30m, 1h30m, 2d, 1:30:00)";
        text = std::to_string(*seconds);
        return "";
      },
      "DURATION");
}

CLI::Validator TaskIdCheck() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto id = ParseId(text);
        return id && id->index ? "" : "'" + text + "' is not a task id (j7.2)";
      },
      "TASK");
}

CLI::Validator IdCheck(bool tasks) {
  return CLI::Validator(
      [tasks](std::string& text) {
        auto id = ParseId(text);
        if (id && id->job > 0 && (tasks || !id->index)) return std::string();
        return "'" + text + "' is not a " + (tasks ? "job or task id (j7 or j7.2)" : "job id (j7)");
      },
      tasks ? "ID" : "JOB");
}

std::vector<IdRef> ToIds(const std::vector<std::string>& texts) {
  std::vector<IdRef> ids;
  for (const std::string& text : texts) {
    auto id = ParseId(text);
    if (!id) throw UsageError("'" + text + "' is not a job or task id (j7 or j7.2)");
    ids.push_back(*id);
  }
  return ids;
}

std::vector<uint64_t> ToJobs(const std::vector<std::string>& texts) {
  std::vector<uint64_t> jobs;
  for (const IdRef& id : ToIds(texts)) {
    if (id.index) throw UsageError("'" + FormatId(id) + "' is not a job id (j7)");
    jobs.push_back(id.job);
  }
  return jobs;
}

TaskId ToTask(const std::string& text) {
  auto id = ParseId(text);
  if (!id || !id->index) throw UsageError("'" + text + "' is not a task id (j7.2)");
  return {id->job, *id->index};
}

std::optional<CommandSplit> SplitAtCommand(const CLI::App& app,
                                           const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  const int argc = static_cast<int>(argv.size());
  const int verb_at = NamedVerbAt(argc, argv.data());
  if (!verb_at || (args[verb_at] != "run" && args[verb_at] != "submit")) return std::nullopt;
  const CLI::App* verb = nullptr;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->get_name() == args[verb_at]) verb = sub;
  if (!verb) return std::nullopt;  // not registered (a verb not named)
  for (int i = verb_at + 1; i < argc; ++i) {
    const std::string& word = args[i];
    if (word == "--") return CommandSplit{i, i + 1, true};
    if (word.size() < 2 || word[0] != '-') return CommandSplit{i, i, false};  // ("-": a file)
    std::string name = word;  // --name=value, -wVALUE: the value is in the word
    bool attached = false;
    if (word[1] == '-') {
      if (const size_t eq = word.find('='); eq != std::string::npos) {
        name = word.substr(0, eq);
        attached = true;
      }
    } else if (word.size() > 2) {
      name = word.substr(0, 2);
      attached = true;
    }
    const CLI::Option* option = verb->get_option_no_throw(name);
    if (!option) option = app.get_option_no_throw(name);
    if (!option) return CommandSplit{i + 1, i + 1, false};
    if (option->get_expected_max() > 0 && !attached) ++i;  // its value (a flag has none)
  }
  return CommandSplit{argc, argc, false};
}

std::string DidYouMean(const CLI::App& app, const std::string& word) {
  std::vector<std::string> names;
  for (const CLI::Option* option : app.get_options()) {
    for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
  }
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (!sub->get_name().empty()) names.push_back(sub->get_name());
  }
  const std::string bare = word.substr(0, word.find('='));  // --timout=5
  std::string best;
  size_t best_distance = 3;
  for (const std::string& name : names) {
    size_t d = EditDistance(bare, name);
    if (bare.size() >= 4 && name.rfind(bare, 0) == 0) d = std::min<size_t>(d, 1);
    if (d < best_distance) {
      best_distance = d;
      best = name;
    }
  }
  return best.empty() ? "" : "; did you mean " + best + "?";
}

namespace {

// Runs a verb; what escapes it becomes one sentence and its exit code. The one place that maps
// errors to exit codes: a user's mistake 2, no broker to reach 3, refused 4, a full journal disk 6,
// anything else 5.
ExitCode Guard(const std::function<ExitCode()>& verb) {
  // "orq: " before the sentence, unless it names its verb already ("orq gather: ...").
  auto say = [](const std::exception& e) {
    const std::string what = e.what();
    Say(what.rfind("orq ", 0) == 0 ? what : "orq: " + what);
  };
  try {
    return verb();
  } catch (const Exception& e) {
    say(e);
    return ExitCodeOf(e.code());
  } catch (const std::exception& e) {
    say(e);
    return ExitCode::kFailed;
  }
}

}  // namespace

std::span<const VerbEntry> AllVerbs() {
  static constexpr VerbEntry kVerbs[] = {
      {"run", RegisterRun},
      {"submit", RegisterSubmit},
      {"gather", RegisterGather},
      {"status", RegisterStatus},
      {"cancel", RegisterCancel},
      {"forget", RegisterForget},
      {"up", RegisterUp},
      {"down", RegisterDown},
      {"broker", RegisterBroker},
      {"worker", RegisterWorker},
      {"access", RegisterAccess},
      {"bench", RegisterBench},
      {"jobs", RegisterJobs},
      {"retry", RegisterRetry},
      {"logs", RegisterLogs},
      {"scale", RegisterScale},
      {"completion", RegisterCompletion},
      {"manpage", RegisterManpage},
      {"limit", RegisterLimit},
      {"explain", RegisterExplain},
      {"events", RegisterEvents},
      {"dashboard", RegisterDashboard},
      {"alloc", RegisterAlloc},
  };
  return kVerbs;
}

constexpr const char* kOrqVersion = "0.1.0";

// libsodium's: linked statically with libzmq, or (weak, so a build without it still links)
// loaded with the shared libzmq.
#ifdef ORQ_STATIC_DEPS_LINKED
extern "C" const char* sodium_version_string();
#else
extern "C" const char* sodium_version_string() __attribute__((weak));
#endif

static const char* SodiumVersion() {
#ifdef ORQ_STATIC_DEPS_LINKED
  return sodium_version_string();
#else
  return sodium_version_string ? sodium_version_string() : "unknown";
#endif
}

static std::string VersionReport() {
  int major = 0, minor = 0, patch = 0;
  zmq_version(&major, &minor, &patch);
  std::string report = "orq " + std::string(kOrqVersion) + "\n";
  report += "libzmq " + std::to_string(major) + "." + std::to_string(minor) + "." +
            std::to_string(patch) + (zmq_has("curve") ? " (CURVE)" : " (no CURVE)") + "\n";
  report += "libsodium " + std::string(SodiumVersion()) + "\n";
  report += "SQLite " + std::string(sqlite3_libversion()) + "\n";
#ifdef ORQ_STATIC_DEPS_LINKED
  report +=
      "libzmq, libsodium and SQLite are linked statically: rebuild orq to take a security "
      "update of any of them\n";
#else
  report += "libzmq, libsodium and SQLite are the system's shared libraries\n";
#endif
  return report;
}

int Main(int argc, char** argv) {
  CLI::App app{
      "orq: submit tasks from the shell, gather their results; orq runs them across "
      "worker processes.",
      "orq"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "orq " + std::string(kOrqVersion));
  app.fallthrough();  // `orq submit --access FILE ...` as well as `orq --access FILE submit ...`
  std::string access_file;
  app.add_option("--access", access_file,
                 "reach a broker over TCP with this access file (from 'orq access add')")
      ->envname("ORQ_ACCESS");

  // Only the verb the command line names is registered: building all twenty, with their options
  // and validators, was a fifth of a short call's time. Help, completion, the man page and a
  // mistyped verb need them all; `orq --version` none.
  const std::string_view named = NamedVerb(argc, argv);
  const bool all = named.empty() || named == "completion" || named == "manpage" ||
                   std::none_of(AllVerbs().begin(), AllVerbs().end(),
                                [&](const VerbEntry& e) { return e.name == named; });
  const bool version_only = named.empty() && std::any_of(argv + 1, argv + argc, [](const char* a) {
                              return std::string_view(a) == "--version";
                            });
  if (version_only && std::any_of(argv + 1, argv + argc, [](const char* a) {
        return std::string_view(a) == "--verbose";
      })) {
    std::printf("%s", VersionReport().c_str());
    return static_cast<int>(ExitCode::kOk);
  }
  std::vector<Verb> verbs;
  for (const VerbEntry& entry : AllVerbs()) {
    if (version_only || (!all && entry.name != named)) continue;
    verbs.push_back(entry.registrar(app));
  }
  AddExamples(app);
  if (argc == 1) {  // bare `orq`: what it is and what it does
    std::printf("%s", app.help().c_str());
    return static_cast<int>(ExitCode::kOk);
  }
  // run and submit: the command and its input sources are not orq's to parse.
  int parsed = argc;
  if (auto split = SplitAtCommand(app, std::vector<std::string>(argv, argv + argc))) {
    parsed = split->options_end;
    dashes = split->dashes;
    command_words.assign(argv + split->command_at, argv + argc);
  }
  try {
    app.parse(parsed, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (auto sentence = Explain(app, e, parsed, argv)) {
      Say("orq: " + *sentence);
    } else {
      app.exit(e);
    }
    return static_cast<int>(ExitCode::kUsage);
  }
  if (auto problem = CheckRunningLibzmq(); !problem.ok()) {
    Say("orq: " + problem.error().sentence);
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

// What orq says about itself, generated from the command line as registered (so it cannot drift
// from it): examples at the end of each verb's --help, shell completion (`orq completion bash|zsh|
// fish`) and the man page orq(1) (`orq manpage`, run at build time; installed by cmake --install).
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cli/verbs.h"

namespace orq {
namespace {

// 2-3 examples per verb, shown after its options.
const std::map<std::string, std::string>& Examples() {
  static const std::map<std::string, std::string> examples = {
      {"run",
       "  orq run examples/say_after.jsonl\n"
       "  orq run --tag gzip -v ::: *.log\n"
       "  find . -name '*.log' | orq run gzip\n"
       "  orq run --halt now,fail=1 --joblog log :::: commands.txt"},
      {"submit",
       "  orq submit convert {} {.}.png ::: *.jpg\n"
       "  orq submit --lines commands.txt --timeout 60 --retries 2\n"
       "  orq submit --array 1-100 --cwd /data ./sim.sh {}\n"
       "  orq submit --after j7 --limit download --key nightly ./fetch.sh\n"
       "  orq submit --lock db:write --resource gpu=1 --queue gpu ./train.sh"},
      {"limit",
       "  orq limit set download 2\n  orq limit set api --rate 10/s,burst=5\n  orq limit list\n"
       "  orq limit rm download"},
      {"explain", "  orq explain j7.2\n  orq explain --json j7.2"},
      {"dashboard", "  orq up --http 8080 && orq dashboard\n  orq dashboard --open"},
      {"alloc",
       "  orq alloc dry-run slurm --time-limit 30m -- -p short\n"
       "  orq alloc add slurm --time-limit 30m --max-workers 16 -- -p short -A myproject\n"
       "  orq alloc info slurm"},
      {"events",
       "  orq events --follow\n"
       "  orq events --follow --json | jq 'select(.event == \"task_ended\" and .status != "
       "\"ok\")'"},
      {"gather",
       "  orq gather j7\n"
       "  orq gather --json --as-completed j7 j8.2\n"
       "  orq gather --status failed --tag j7"},
      {"status", "  orq status\n  orq status j7\n  orq status --json"},
      {"jobs", "  orq jobs\n  orq jobs --json"},
      {"retry", "  orq retry j7\n  orq retry --all j7"},
      {"logs", "  orq logs j7.2\n  orq logs --stderr --follow j7.2"},
      {"cancel", "  orq cancel j7\n  orq cancel j7.2 j7.3"},
      {"forget", "  orq forget j7 j8"},
      {"up",
       "  orq up -w 4\n  orq up -w 2 --listen tcp://0.0.0.0:5555\n  orq up -w 8   # while up: "
       "scale"},
      {"scale", "  orq scale -w 8\n  orq scale -w 1"},
      {"down", "  orq down"},
      {"broker", "  orq broker --listen tcp://0.0.0.0:5555"},
      {"worker",
       "  orq worker --access node.access -t 8\n"
       "  orq worker --access gpu1.access --resources gpu=4 --queues gpu,default"},
      {"access",
       "  orq access add --worker node1 --endpoint tcp://head:5555\n"
       "  orq access list\n  orq access revoke node1"},
      {"bench", "  orq bench\n  orq bench --json noop latency"},
      {"completion",
       "  source <(orq completion bash)\n"
       "  orq completion zsh > ~/.zfunc/_orq\n"
       "  orq completion fish > ~/.config/fish/completions/orq.fish"},
  };
  return examples;
}

// A verb's long options, and those of its option groups (unnamed sub-apps).
void LongOptions(const CLI::App& app, std::vector<std::pair<std::string, std::string>>& out) {
  for (const CLI::Option* o : app.get_options()) {
    for (const std::string& name : o->get_lnames())
      out.emplace_back("--" + name, o->get_description());
  }
  for (const CLI::App* group :
       app.get_subcommands([](const CLI::App* a) { return a->get_name().empty(); }))
    LongOptions(*group, out);
}

std::vector<const CLI::App*> Verbs(const CLI::App& app) {
  std::vector<const CLI::App*> verbs;
  for (const CLI::App* sub :
       app.get_subcommands([](const CLI::App* a) { return !a->get_name().empty(); })) {
    if (!sub->get_group().empty()) verbs.push_back(sub);  // hidden ones have an empty group
  }
  return verbs;
}

std::string Bash(const CLI::App& app) {
  std::string names, cases;
  for (const CLI::App* verb : Verbs(app)) {
    names += (names.empty() ? "" : " ") + verb->get_name();
    std::vector<std::pair<std::string, std::string>> options;
    LongOptions(*verb, options);
    std::string words;
    for (const auto& [name, unused] : options) words += (words.empty() ? "" : " ") + name;
    cases += "    " + verb->get_name() + ") opts=\"" + words + "\" ;;\n";
  }
  return "# orq completion for bash: source <(orq completion bash)\n"
         "_orq() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]} opts=\"\"\n"
         "  if (( COMP_CWORD == 1 )); then\n"
         "    COMPREPLY=($(compgen -W \"" +
         names +
         " --help --version\" -- \"$cur\"))\n"
         "    return\n"
         "  fi\n"
         "  case ${COMP_WORDS[1]} in\n" +
         cases +
         "  esac\n"
         "  if [[ $cur == -* ]]; then\n"
         "    COMPREPLY=($(compgen -W \"$opts --help\" -- \"$cur\"))\n"
         "  else\n"
         "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
         "  fi\n"
         "}\n"
         "complete -o filenames -F _orq orq\n";
}

std::string Zsh(const CLI::App& app) {
  return "#compdef orq\n# orq completion for zsh (bash's, through bashcompinit)\n"
         "autoload -U +X bashcompinit && bashcompinit\n" +
         Bash(app);
}

std::string Quote(const std::string& s) {  // for fish and roff: single quotes, \' escaped
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("\\'") : std::string(1, c);
  return out + "'";
}

std::string Fish(const CLI::App& app) {
  std::string out =
      "# orq completion for fish: orq completion fish > ~/.config/fish/completions/orq.fish\n";
  std::string names;
  for (const CLI::App* verb : Verbs(app)) {
    names += (names.empty() ? "" : " ") + verb->get_name();
    out += "complete -c orq -f -n '__fish_use_subcommand' -a " + verb->get_name() + " -d " +
           Quote(verb->get_description()) + "\n";
    std::vector<std::pair<std::string, std::string>> options;
    LongOptions(*verb, options);
    for (const auto& [name, description] : options)
      out += "complete -c orq -n '__fish_seen_subcommand_from " + verb->get_name() + "' -l " +
             name.substr(2) + " -d " + Quote(description) + "\n";
  }
  return out;
}

// roff text: backslashes and leading dots escaped.
std::string Roff(const std::string& text) {
  std::string out;
  bool line_start = true;
  for (char c : text) {
    if (c == '\\') {
      out += "\\e";
    } else if (line_start && (c == '.' || c == '\'')) {
      out += "\\&";
      out += c;
    } else if (c == '-') {
      out += "\\-";
    } else {
      out += c;
    }
    line_start = c == '\n';
  }
  return out;
}

std::string Manpage(const CLI::App& app) {
  std::string out =
      ".TH ORQ 1 \"\" \"orq 0.1.0\" \"User Commands\"\n"
      ".SH NAME\norq \\- submit tasks from the shell and gather their results, across worker "
      "processes\n"
      ".SH SYNOPSIS\n.B orq\n.I COMMAND\n[\\fIOPTIONS\\fR]\n"
      ".SH DESCRIPTION\n" +
      Roff(app.get_description()) +
      "\ndocs/CLI.md (\"Commands without JSON\", \"Where shell tasks run\") and docs/SEMANTICS.md "
      "say more; every command takes \\fB\\-\\-help\\fR.\n"
      ".SH COMMANDS\n";
  for (const CLI::App* verb : Verbs(app)) {
    out += ".SS orq " + verb->get_name() + "\n" + Roff(verb->get_description()) + "\n";
    std::vector<std::pair<std::string, std::string>> options;
    LongOptions(*verb, options);
    for (const auto& [name, description] : options) {
      if (name == "--help") continue;
      out += ".TP\n.B " + Roff(name) + "\n" + Roff(description) + "\n";
    }
    if (auto it = Examples().find(verb->get_name()); it != Examples().end())
      out += ".PP\nExamples:\n.nf\n" + Roff(it->second) + "\n.fi\n";
  }
  out +=
      ".SH EXIT STATUS\n0 success; 1 a task did not end ok; 2 a usage mistake; 3 no broker to "
      "reach; 4 refused; 5 orq itself failed; 124 gather \\-\\-timeout; 130 interrupted.\n"
      ".SH ENVIRONMENT\n.TP\n.B ORQ_HOME\nwhere the broker keeps its socket, journal and keys "
      "(default ${XDG_STATE_HOME:\\-~/.local/state}/orq)\n.TP\n.B ORQ_ACCESS\nan access file: "
      "reach a broker on another host\n"
      ".SH SEE ALSO\n.BR parallel (1)\n";
  return out;
}

}  // namespace

void AddExamples(CLI::App& app) {
  for (CLI::App* verb : app.get_subcommands([](const CLI::App*) { return true; })) {
    auto it = Examples().find(verb->get_name());
    if (it == Examples().end()) continue;
    const std::string before = verb->get_footer();  // what the verb said of itself
    verb->footer((before.empty() ? "" : before + "\n\n") + "Examples:\n" + it->second);
  }
}

Verb RegisterCompletion(CLI::App& app) {
  auto shell = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("completion", "Print shell completion for bash, zsh or fish");
  cmd->add_option("shell", *shell, "bash, zsh or fish")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh", "fish"}));
  return {cmd, [shell, &app] {
            const std::string text = *shell == "bash"  ? Bash(app)
                                     : *shell == "zsh" ? Zsh(app)
                                                       : Fish(app);
            std::fwrite(text.data(), 1, text.size(), stdout);
            return ExitCode::kOk;
          }};
}

Verb RegisterManpage(CLI::App& app) {
  auto* cmd = app.add_subcommand("manpage", "Print the man page orq(1) in roff");
  cmd->group("");  // hidden: the build runs it
  return {cmd, [&app] {
            const std::string text = Manpage(app);
            std::fwrite(text.data(), 1, text.size(), stdout);
            return ExitCode::kOk;
          }};
}

}  // namespace orq

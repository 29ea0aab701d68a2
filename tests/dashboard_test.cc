// The dashboard (orq broker --http) with real components: its /metrics checked by Debian's
// promtool and scraped by a real Prometheus server on loopback, its page driven by Debian's
// chromium through puppeteer-core (tests/browser/dashboard.mjs, installed by scripts/setup.sh),
// and its security rules over real HTTP (curl). A component that is missing fails the test with
// the reason: it is never skipped.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/process.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

namespace orq::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

// A free TCP port on loopback (bound and closed: taken again at once by whoever asks next).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct HttpReply {
  int status = 0;
  std::string body;
};

// curl ARGS... URL: the status and body (status 0 when curl could not connect).
HttpReply Curl(std::vector<std::string> args) {
  args.insert(args.begin(), {"curl", "-s", "-g", "-k", "--max-time", "20", "-w", "\n%{http_code}"});
  std::string out;
  RunProgram(args, out, seconds(30));
  HttpReply reply;
  const size_t nl = out.rfind('\n');
  if (nl == std::string::npos) return reply;
  reply.status = std::atoi(out.c_str() + nl + 1);
  reply.body = out.substr(0, nl);
  return reply;
}

std::string Which(const std::string& program) {
  std::string out;
  if (RunProgram({"sh", "-c", "command -v " + program}, out, seconds(5)) != 0) return "";
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Each component the tests need, or a failure naming how to get it.
::testing::AssertionResult Have(const std::string& program) {
  if (!Which(program).empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << program << " is not installed: scripts/setup.sh installs it (the test command runs it)";
}

// The dashboard of a broker started with `orq up ... --http ...`: its login URL (with its token:
// what `orq dashboard` prints), from $ORQ_HOME.
std::string LoginUrl(const OrqEnv& env) {
  std::string url = ReadFile(env.home() + "/dashboard");
  while (!url.empty() && url.back() == '\n') url.pop_back();
  return url;
}
// Its page: the login URL without the token.
std::string DashboardUrl(const OrqEnv& env) {
  const std::string login = LoginUrl(env);
  return login.substr(0, login.find('?'));
}
std::string TokenOf(const OrqEnv& env) {
  const std::string login = LoginUrl(env);
  const size_t at = login.find("?token=");
  return at == std::string::npos ? "" : login.substr(at + 7);
}

// "http://127.0.0.1:4711/" -> "127.0.0.1:4711"
std::string HostPort(std::string url) {
  url = url.substr(url.find("//") + 2);
  return url.substr(0, url.find('/'));
}

// A child process of the test (not orq): killed and reaped when it goes.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv, const std::string& log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::setpgid(0, 0);
      std::vector<std::string> copy = argv;
      std::vector<char*> args;
      for (auto& a : copy) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Child() {
    ::kill(-pid_, SIGTERM);
    if (!WaitGone(pid_, seconds(10))) ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

TEST(DashboardTest, PromtoolPassesItsMetricsAndPrometheusScrapesThem) {
  ASSERT_TRUE(Have("promtool"));
  ASSERT_TRUE(Have("prometheus"));
  ASSERT_TRUE(Have("curl"));
  // Given a broker with a dashboard, and a Prometheus on loopback scraping it every second
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "1", "--http", "127.0.0.1:0"}), 0));
  const std::string url = DashboardUrl(env);
  ASSERT_FALSE(url.empty());
  const int port = FreePort();
  const std::string config =
      env.WriteFile("prometheus.yml",
                    "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: orq\n"
                    "    authorization:\n      credentials: " +
                        TokenOf(env) +
                        "\n"
                        "    static_configs:\n      - targets: ['" +
                        HostPort(url) + "']\n");
  Child prometheus(
      {"prometheus", "--config.file=" + config, "--storage.tsdb.path=" + env.home() + "/prometheus",
       "--web.listen-address=127.0.0.1:" + std::to_string(port)},
      env.home() + "/prometheus.log");
  const std::string api = "http://127.0.0.1:" + std::to_string(port);
  ASSERT_TRUE(WaitUntil([&] { return Curl({api + "/-/ready"}).status == 200; }, seconds(60)))
      << ReadFile(env.home() + "/prometheus.log");
  // When a job of 5 tasks runs (one fails)
  const RunResult submit =
      env.Run({"submit", "--", "sh", "-c", "exit $(({} == 3))", ":::", "1", "2", "3", "4", "5"});
  ASSERT_TRUE(Exits(submit, 0));
  env.Run({"gather", JobId(submit)});
  // Then promtool finds the exposition well-formed
  const HttpReply metrics = Curl({"-H", "Authorization: Bearer " + TokenOf(env), url + "metrics"});
  ASSERT_EQ(metrics.status, 200);
  const std::string file = env.WriteFile("metrics.txt", metrics.body);
  std::string lint;
  EXPECT_EQ(RunProgram({"sh", "-c", "promtool check metrics < " + file}, lint), 0) << lint;
  // And Prometheus, asked through its HTTP API, counts the job's tasks
  std::string last;
  EXPECT_TRUE(WaitUntil(
      [&] {
        last = Curl({api + "/api/v1/query?query=sum(orq_tasks_finished_total)"}).body;
        return last.find("\"5\"]") != std::string::npos;
      },
      seconds(60), std::chrono::milliseconds(500)))
      << last;
  last = Curl({api + "/api/v1/query?query=orq_tasks_finished_total{status=%22failed%22}"}).body;
  EXPECT_NE(last.find("\"1\"]"), std::string::npos) << last;
}

TEST(DashboardTest, RequestsOutsideTheRulesAreRefused) {
  ASSERT_TRUE(Have("curl"));
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "0", "--http", "127.0.0.1:0"}), 0));
  const std::string url = DashboardUrl(env);
  const std::string origin = "http://" + HostPort(url);
  const std::string jar = env.home() + "/cookies";
  // The page loads for anyone, but no data without the token, on loopback too;
  EXPECT_EQ(Curl({url}).status, 200);
  EXPECT_EQ(Curl({url + "api/v1/status"}).status, 401);
  EXPECT_EQ(Curl({url + "?token=wrong-token-wrong-token"}).status, 401);
  // the login URL gives the cookie and sends the browser to the page without the token,
  const HttpReply login = Curl({"-c", jar, "-L", LoginUrl(env)});
  EXPECT_EQ(login.status, 200);
  EXPECT_EQ(login.body.find(TokenOf(env)), std::string::npos);
  EXPECT_EQ(Curl({"-b", jar, url + "api/v1/status"}).status, 200);
  // A Host that is not the dashboard's (DNS rebinding) is refused
  EXPECT_EQ(Curl({"-b", jar, "-H", "Host: attacker.example", url + "api/v1/status"}).status, 421);
  // An action from another origin, or without the anti-CSRF header, is refused
  const RunResult submit = env.Run({"submit", "--", "sleep", "60"});
  ASSERT_TRUE(Exits(submit, 0));
  const std::string cancel = url + "api/v1/jobs/" + JobId(submit) + "/cancel";
  EXPECT_EQ(
      Curl({"-b", jar, "-X", "POST", "-H", "Origin: https://attacker.example", cancel}).status,
      403);
  EXPECT_EQ(Curl({"-b", jar, "-X", "POST", "-H", "Origin: " + origin, cancel}).status, 403);
  EXPECT_EQ(Curl({"-b", jar, cancel}).status, 405);  // an action is never a GET
  // With the page's header and origin, it is done
  const HttpReply session = Curl({"-b", jar, url + "api/v1/session"});
  const auto csrf = nlohmann::json::parse(session.body).at("csrf").get<std::string>();
  const HttpReply done = Curl(
      {"-b", jar, "-X", "POST", "-H", "Origin: " + origin, "-H", "X-Orq-Csrf: " + csrf, cancel});
  EXPECT_EQ(done.status, 200) << done.body;
  EXPECT_TRUE(env.WaitStatus([](const nlohmann::json& s) { return s["tasks"]["cancelled"] == 1; }));
  // A request over the bounds is refused, and the dashboard goes on
  EXPECT_EQ(
      Curl({"-b", jar, "-H", "X-Big: " + std::string(20000, 'x'), url + "api/v1/status"}).status,
      413);
  EXPECT_EQ(Curl({"-b", jar, url + "api/v1/status"}).status, 200);
}

TEST(DashboardTest, AnotherLocalUserGetsNothingButThePage) {
  ASSERT_TRUE(Have("curl"));
  ASSERT_TRUE(Have("setpriv"));
  ASSERT_EQ(::geteuid(), 0u) << "acting as another user needs root (CI runs as root)";
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "0", "--http", "127.0.0.1:0"}), 0));
  const std::string url = DashboardUrl(env);
  // Given another user on this host (nobody), who can reach the dashboard's loopback port,
  const auto as_nobody = [](std::vector<std::string> args) {
    args.insert(args.begin(), {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
    std::string out;
    const int code = RunProgram(args, out, seconds(30));
    return std::make_pair(code, out);
  };
  // when they ask it for data, then it wants the token they cannot read ($ORQ_HOME is 0700),
  const auto [code, status] =
      as_nobody({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url + "api/v1/status"});
  EXPECT_EQ(status, "401");
  EXPECT_NE(as_nobody({"cat", env.home() + "/dashboard"}).first, 0);
  const RunResult submit = env.Run({"submit", "--", "sleep", "60"});
  ASSERT_TRUE(Exits(submit, 0));
  const auto [posted, cancel] =
      as_nobody({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                 url + "api/v1/jobs/" + JobId(submit) + "/cancel"});
  EXPECT_EQ(cancel, "401");
  // and the owner's job runs on.
  EXPECT_EQ(env.Status()["tasks"]["cancelled"], 0);
}

// A socket of the test's own on loopback, from `from` (an address of 127.0.0.0/8) to the
// dashboard at `url`; -1 when it cannot connect.
int Connect(const std::string& url, uint32_t from) {
  const std::string host_port = HostPort(url);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(host_port.rfind(':') + 1))));
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in source{};
  source.sin_family = AF_INET;
  source.sin_addr.s_addr = htonl(from);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof source) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

TEST(DashboardTest, IdleSlowAndEndlessRequestsDoNotKeepTheOwnerOut) {
  ASSERT_TRUE(Have("curl"));
  const char* asan = std::getenv("ASAN_OPTIONS");  // a peak is what was held at once
  ScopedEnv quarantine("ASAN_OPTIONS",
                       std::string(asan ? asan : "") + ":quarantine_size_mb=8:max_redzone=256");
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "0", "--http", "127.0.0.1:0"}), 0));
  const std::string url = DashboardUrl(env);
  const pid_t broker = env.Status()["broker"]["pid"].get<pid_t>();
  const std::string bearer = "Authorization: Bearer " + TokenOf(env);
  std::vector<int> fds;
  // Given 16 connections that each send a chunked request whose chunk line never ends (64 MiB of
  // chunk extension, as far as the server takes it),
  const std::string head = "POST /api/v1/login HTTP/1.1\r\nHost: " + HostPort(url) +
                           "\r\nTransfer-Encoding: chunked\r\n\r\n1;";
  const std::string junk(1 << 20, 'e');
  const size_t before = PeakRss(broker);
  size_t taken = 0;
  for (int i = 0; i < 16; ++i) {
    const int fd = Connect(url, 0x7f000001);
    ASSERT_GE(fd, 0);
    timeval second{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &second, sizeof second);
    ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
    for (int mib = 0; mib < 64; ++mib) {
      const ssize_t w = ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
      if (w <= 0) break;  // the server closed it, or stopped reading
      taken += static_cast<size_t>(w);
    }
    ::close(fd);
  }
  // and 80 connections from 40 addresses that say nothing, or a header byte now and then,
  for (int i = 0; i < 80; ++i) {
    const int fd = Connect(url, 0x7f000002 + static_cast<uint32_t>(i % 40));
    if (fd < 0) continue;
    if (i % 2) ::send(fd, "GET / HTTP/1.1\r\nX-Slow: ", 24, MSG_NOSIGNAL);
    fds.push_back(fd);
  }
  // when the owner asks for data 30 times, then every answer comes,
  int answered = 0;
  for (int i = 0; i < 30; ++i)
    answered += Curl({"-H", bearer, url + "api/v1/status"}).status == 200;
  EXPECT_EQ(answered, 30);
  for (int fd : fds) ::close(fd);
  // the endless lines cost the broker a few MiB, not what was sent,
  const size_t peak = PeakRss(broker);
  EXPECT_LT(peak, before + (32u << 20)) << "before " << (before >> 20) << " MiB, at most "
                                        << (peak >> 20) << " MiB, " << (taken >> 20) << " MiB sent";
  // and what was refused is counted.
  const HttpReply metrics = Curl({"-H", bearer, url + "metrics"});
  EXPECT_NE(metrics.body.find("orq_http_refused_total{reason=\"connections\"}"), std::string::npos);
}

TEST(DashboardTest, WithTlsAndATokenEveryRequestCarriesIt) {
  ASSERT_TRUE(Have("curl"));
  ASSERT_TRUE(Have("openssl"));
  OrqEnv env;
  // A non-loopback address without TLS and a token is refused, naming the flags
  const RunResult refused = env.Run({"broker", "--http", "0.0.0.0:0"});
  EXPECT_EQ(refused.code, 2);
  EXPECT_NE(refused.err.find("--http-cert, --http-key and --http-token-file"), std::string::npos)
      << refused.err;
  // Given a dashboard with a certificate and a token
  const std::string cert = env.home() + "/cert.pem", key = env.home() + "/key.pem";
  std::string out;
  ASSERT_EQ(RunProgram({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert},
                       out),
            0)
      << out;
  const std::string token = "correct-horse-battery-staple";
  const std::string token_file = env.WriteFile("token", token + "\n");
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "0", "--http", "127.0.0.1:0", "--http-cert", cert,
                             "--http-key", key, "--http-token-file", token_file}),
                    0));
  const std::string url = DashboardUrl(env);
  ASSERT_EQ(url.rfind("https://", 0), 0u) << url;
  // Then the page loads (it asks for the token), but no data without the token
  EXPECT_EQ(Curl({url}).status, 200);
  EXPECT_EQ(Curl({url + "metrics"}).status, 401);
  EXPECT_EQ(Curl({"-H", "Authorization: Bearer wrong-token-wrong-token", url + "metrics"}).status,
            401);
  EXPECT_EQ(Curl({"-H", "Authorization: Bearer " + token, url + "metrics"}).status, 200);
  // And the page's login gives a cookie that then opens the API
  const std::string jar = env.home() + "/cookies";
  EXPECT_EQ(Curl({"-c", jar, "-X", "POST", "--data-binary", "nope", url + "api/v1/login"}).status,
            401);
  EXPECT_EQ(Curl({"-c", jar, "-X", "POST", "--data-binary", token, url + "api/v1/login"}).status,
            200);
  EXPECT_EQ(Curl({"-b", jar, url + "api/v1/status"}).status, 200);
}

TEST(DashboardTest, InARealBrowserThePageShowsAndCancelsWork) {
  ASSERT_TRUE(Have("node"));
  ASSERT_TRUE(Have("chromium"));
  const std::string script = std::string(ORQ_SOURCE_DIR) + "/tests/browser/dashboard.mjs";
  ASSERT_TRUE(
      fs::exists(std::string(ORQ_SOURCE_DIR) + "/tests/browser/node_modules/puppeteer-core"))
      << "puppeteer-core is not installed in tests/browser: scripts/setup.sh installs it";
  // Given a broker with two workers and its dashboard
  OrqEnv env;
  ASSERT_TRUE(Exits(env.Run({"up", "-w", "2", "-t", "2", "--http", "127.0.0.1:0"}), 0));
  // When the script opens the page, submits work and uses the page (see dashboard.mjs)
  const std::string shots = std::string(ORQ_BUILD_DIR) + "/dashboard-screenshots";
  fs::create_directories(shots);
  std::string out;
  const int code = RunProgram({"env", "ORQ=" + std::string(ORQ_BINARY), "ORQ_HOME=" + env.home(),
                               "DASHBOARD_URL=" + LoginUrl(env), "SCREENSHOTS=" + shots,
                               "CHROMIUM=" + Which("chromium"), "node", script},
                              out, seconds(240));
  // Then every check of the script held, and it saved the two screenshots
  EXPECT_EQ(code, 0) << out;
  EXPECT_TRUE(fs::exists(shots + "/overview.png")) << out;
  EXPECT_TRUE(fs::exists(shots + "/job.png")) << out;
}

}  // namespace
}  // namespace orq::testing

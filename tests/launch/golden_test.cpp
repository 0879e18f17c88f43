// Golden job scripts: `acme-launch BACKEND --dry-run ...` prints the job script and a
// "# submit: ..." line, compared byte for byte with golden/<name>.sh. The acme-worker path is
// written /opt/acme/bin/acme-worker and $ACME_HOME is written @ACME_HOME@, so
// the files do not depend on the machine. ACME_UPDATE_GOLDEN=1 rewrites them (then review the
// diff: these files are the contract with each scheduler's syntax).
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "launch_test.hpp"

namespace acme::launch_test {
namespace {

constexpr const char* kWorker = "/opt/acme/bin/acme-worker";

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

class LaunchGolden : public LaunchTest {
 protected:
  // ACME_WORKER_EXE stays the built acme-worker (acme-launch checks that it exists, even for
  // --dry-run); its path is replaced by kWorker in the output.

  /// The common request of every golden script, then `extra`.
  static std::vector<std::string> request(const std::string& backend,
                                          const std::vector<std::string>& extra) {
    std::vector<std::string> args{backend,
                                  "--dry-run",
                                  "--broker",
                                  "tcp://10.0.0.1:5555",
                                  "--id",
                                  "golden",
                                  "--n",
                                  "4",
                                  "--cpus-per-worker",
                                  "2",
                                  "--mem-per-worker",
                                  "3G",
                                  "--time",
                                  "1:30:00",
                                  "--partition",
                                  "short",
                                  "--account",
                                  "proj",
                                  "--log-dir",
                                  "/logs"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  void expect_golden(const std::string& name, const std::vector<std::string>& args) {
    const auto run = acme_launch(args, 30s);
    ASSERT_EQ(run.code, 0) << run.err;
    auto script = run.out;
    replace_all(script, home_.string(), "@ACME_HOME@");
    replace_all(script, ::acme::test::program("acme-worker"), kWorker);
    const auto lines = lines_of(script);
    ASSERT_FALSE(lines.empty());
    EXPECT_TRUE(lines.back().starts_with("# submit: ")) << script;
    EXPECT_TRUE(lines.front().starts_with("#!")) << script;
    EXPECT_FALSE(fs::exists(broker_file())) << "a dry run wrote $ACME_HOME/broker";
    EXPECT_TRUE(leftovers().empty()) << "a dry run left processes:\n" << describe(leftovers());

    const auto golden = test_dir() / "golden" / (name + ".sh");
    const char* update = std::getenv("ACME_UPDATE_GOLDEN");
    if (update != nullptr && std::string(update) == "1") {
      std::ofstream(golden, std::ios::binary) << script;
      std::cerr << "rewrote " << golden << "\n";
      return;
    }
    ASSERT_TRUE(fs::exists(golden)) << golden << " is missing; ACME_UPDATE_GOLDEN=1 writes it";
    EXPECT_EQ(script, read_text(golden))
        << "differs from " << golden << " (ACME_UPDATE_GOLDEN=1 rewrites it)";
  }
};

TEST_F(LaunchGolden, Slurm) {
  expect_golden(
      "slurm", request("slurm", {"--extra", "--qos=high", "--extra", "#SBATCH --constraint=avx2"}));
}

TEST_F(LaunchGolden, SlurmWorkerCmd) {
  expect_golden("slurm_worker_cmd", request("slurm", {"--worker-cmd", "python3 -m acme.worker"}));
}

TEST_F(LaunchGolden, Sge) {
  expect_golden("sge", request("sge", {"--extra", "-P myproject", "--extra", "#$ -R y"}));
}

TEST_F(LaunchGolden, PbsPro) {
  expect_golden("pbs_pro",
                request("pbs", {"--extra", "-l place=scatter", "--extra", "#PBS -m abe"}));
}

TEST_F(LaunchGolden, PbsTorque) {
  expect_golden("pbs_torque", request("pbs", {"--pbs-flavour", "torque", "--extra", "-m abe",
                                              "--extra", "#PBS -V"}));
}

TEST_F(LaunchGolden, QueueIsAnAliasOfPartition) {
  auto with_queue = request("sge", {});
  for (auto& arg : with_queue) {
    if (arg == "--partition") arg = "--queue";
  }
  const auto a = acme_launch(request("sge", {}), 30s);
  const auto b = acme_launch(with_queue, 30s);
  EXPECT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
}

}  // namespace
}  // namespace acme::launch_test

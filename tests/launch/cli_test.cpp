// acme-launch's command line: exit 2 and a message naming the bad value for every bad option,
// exit 1 for an unknown launch, and a plain answer from status with no launches. Each bad
// option is the only fault of an otherwise valid --dry-run command line, so a rejection is for
// that option and nothing else.
#include <regex>

#include <gtest/gtest.h>

#include "launch_test.hpp"

namespace acme::launch_test {
namespace {

class LaunchCli : public LaunchTest {
 protected:
  /// A valid dry run of `backend` plus `extra`.
  ::acme::test::Run dry_run(const std::string& backend, const std::vector<std::string>& extra) {
    std::vector<std::string> args{backend, "--dry-run", "--broker", "tcp://10.0.0.1:5555",
                                  "--id",  "cli"};
    args.insert(args.end(), extra.begin(), extra.end());
    return acme_launch(args, 30s);
  }

  /// Exit 2, a message on stderr that names `value`, nothing on stdout, no launch left behind.
  void expect_usage_error(const ::acme::test::Run& run, const std::string& value) {
    EXPECT_EQ(run.code, 2) << "stdout:\n" << run.out << "stderr:\n" << run.err;
    EXPECT_TRUE(
        std::regex_search(run.err, std::regex("(^|[^A-Za-z0-9])" + value + "([^A-Za-z0-9]|$)")))
        << "stderr does not name '" << value << "':\n"
        << run.err;
    EXPECT_EQ(run.out, "");
    EXPECT_FALSE(fs::exists(launch_dir("cli"))) << "a refused command line left a launch";
    EXPECT_FALSE(fs::exists(broker_file()));
  }
};

TEST_F(LaunchCli, ValidDryRunIsAccepted) {  // the baseline the other tests vary
  const auto run = dry_run("slurm", {"--n", "1"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_TRUE(contains(run.out, "# submit: ")) << run.out;
}

TEST_F(LaunchCli, UnknownBackendIsAUsageError) {
  expect_usage_error(dry_run("lsf", {"--n", "1"}), "lsf");
}

TEST_F(LaunchCli, ZeroWorkersIsAUsageError) {
  const auto run = dry_run("slurm", {"--n", "0"});
  expect_usage_error(run, "0");
  EXPECT_TRUE(contains(run.err, "--n") || contains(run.err, "-n")) << run.err;
}

TEST_F(LaunchCli, MissingWorkerCountIsAUsageError) {
  const auto run = dry_run("slurm", {});
  EXPECT_EQ(run.code, 2) << run.out << run.err;
  EXPECT_TRUE(contains(run.err, "--n")) << run.err;
}

TEST_F(LaunchCli, BadMemoryIsAUsageError) {
  expect_usage_error(dry_run("slurm", {"--n", "1", "--mem-per-worker", "2X"}), "2X");
}

TEST_F(LaunchCli, BadTimeIsAUsageError) {
  expect_usage_error(dry_run("slurm", {"--n", "1", "--time", "abc"}), "abc");
}

TEST_F(LaunchCli, OutOfRangeTimeFieldIsAUsageError) {  // 1:75:00 has 75 minutes
  expect_usage_error(dry_run("slurm", {"--n", "1", "--time", "1:75:00"}), "1:75:00");
}

TEST_F(LaunchCli, BadPbsFlavourIsAUsageError) {
  const auto run = dry_run("pbs", {"--n", "1", "--pbs-flavour", "x"});
  expect_usage_error(run, "x");
  EXPECT_TRUE(contains(run.err, "flavour")) << run.err;
}

TEST_F(LaunchCli, EveryTimeAndMemoryFormIsAccepted) {
  for (const std::string time : {"90", "05:00", "1:30:00", "2-00:00:00"}) {
    const auto run = dry_run("slurm", {"--n", "1", "--time", time});
    EXPECT_EQ(run.code, 0) << "--time " << time << ": " << run.err;
  }
  for (const std::string mem : {"2G", "500M", "1024K", "1T", "2g"}) {
    const auto run = dry_run("slurm", {"--n", "1", "--mem-per-worker", mem});
    EXPECT_EQ(run.code, 0) << "--mem-per-worker " << mem << ": " << run.err;
  }
}

TEST_F(LaunchCli, StopUnknownIdFails) {
  const auto run = acme_launch({"stop", "--id", "nosuch"}, 30s);
  EXPECT_EQ(run.code, 1) << run.out << run.err;
  EXPECT_TRUE(contains(run.err, "nosuch")) << run.err;
}

TEST_F(LaunchCli, StatusWithNoLaunchesSaysNone) {
  const auto run = acme_launch({"status"}, 30s);
  EXPECT_EQ(run.code, 0) << run.err;
  const auto said = run.out + run.err;
  EXPECT_TRUE(std::regex_search(said, std::regex("[Nn]o( active)? launch|none"))) << said;

  const auto json = acme_launch({"status", "--json"}, 30s);
  EXPECT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(Json::parse(json.out, nullptr, false), Json::array()) << json.out;
}

TEST_F(LaunchCli, UnknownInterfaceIsAUsageErrorListingTheInterfaces) {
  const auto run = acme_launch({"slurm", "--dry-run", "--n", "1", "--interface", "nosuch0"}, 30s);
  expect_usage_error(run, "nosuch0");
  EXPECT_TRUE(contains(run.err, "lo (127.0.0.1)")) << run.err;
}

TEST_F(LaunchCli, UnreachableBrokerFailsNamingItAndLeavesNoLaunch) {
  const auto run =
      acme_launch({"local", "--n", "1", "--broker", "tcp://127.0.0.1:1", "--id", "nobroker"}, 30s);
  EXPECT_EQ(run.code, 1) << run.out << run.err;
  EXPECT_TRUE(contains(run.err, "no broker answered at tcp://127.0.0.1:1")) << run.err;
  EXPECT_FALSE(fs::exists(broker_file()));
  EXPECT_TRUE(contains(acme_launch({"status"}, 30s).out, "no active launch"));
}

}  // namespace

}  // namespace acme::launch_test

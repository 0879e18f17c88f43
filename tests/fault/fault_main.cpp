// The main of acme_fault_tests: registers the fault functions and serves them when this binary
// was started as a worker (the embedded default's local workers are copies of it), else runs
// the tests.
#include <gtest/gtest.h>

#include <acme/worker.hpp>

#include "fault_functions.hpp"

int main(int argc, char** argv) {
  acme::fault::add_fault_functions(acme::functions());
  acme::serve_if_worker();
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

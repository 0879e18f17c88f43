// The main of acme_client_tests: it registers the test functions and calls serve_if_worker()
// before gtest, so that the copies the embedded default starts of this binary are its workers.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <acme/worker.hpp>

int main(int argc, char** argv) {
  acme::define("square", [](std::int64_t x) { return x * x; });
  acme::define("add", [](double x, double y) { return x + y; });
  acme::define("fail_odd", [](std::int64_t x) {
    if (x % 2 != 0) throw std::runtime_error("odd input " + std::to_string(x));
    return x;
  });
  acme::define("die_on_3", [](std::int64_t x) {
    // The worker process dies mid-task, some time after it started (as a real crash would).
    if (x == 3) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::_Exit(3);
    }
    return x;
  });
  acme::define("nap", [](std::int64_t ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  });
  // Reads the named argument "z" of the job's common frame (acme::kw).
  acme::functions().add_raw(
      "scale", [](const msgpack::object& args, const msgpack::object& kwargs,
                  msgpack::packer<msgpack::sbuffer>& result, acme::TaskContext& /*context*/) {
        const auto x = args.via.array.ptr[0].as<std::int64_t>();
        std::int64_t z = 1;
        if (kwargs.type == msgpack::type::MAP) {
          for (std::uint32_t i = 0; i < kwargs.via.map.size; ++i) {
            if (kwargs.via.map.ptr[i].key.as<std::string>() == "z") {
              z = kwargs.via.map.ptr[i].val.as<std::int64_t>();
            }
          }
        }
        result.pack(x * z);
      });
  acme::serve_if_worker();  // a copy started as a worker serves the functions above here
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

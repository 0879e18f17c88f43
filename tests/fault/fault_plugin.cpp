// The fault functions as an acme-worker plugin: acme-worker --plugin libacme_fault_plugin.so
#include <acme/worker.hpp>

#include "fault_functions.hpp"

ACME_PLUGIN(registry) {
  acme::fault::add_fault_functions(registry);
}
